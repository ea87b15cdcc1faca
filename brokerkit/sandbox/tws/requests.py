"""Parsers of client→server requests, mirroring ib_async 2.1.0's `Client` encoders.

`parse_place_order` reads placeOrder (3) sequentially, including every conditional block the
client may send (BAG legs, delta-neutral, scale, hedge, algo, PEG BENCH, conditions, the
version-gated tail), and checks that it used up every field.
"""

from __future__ import annotations

from dataclasses import dataclass

from .codec import FieldError, Fields
from .contracts import ContractQuery

__all__ = ["PlaceOrderRequest", "parse_contract", "parse_place_order"]

# Fields per order condition after condType (ib_async's dataclasses minus condType).
_CONDITION_FIELDS = {1: 6, 3: 3, 4: 3, 5: 4, 6: 5, 7: 5}


def parse_contract(f: Fields) -> ContractQuery:
    """The 12 contract fields (conId, symbol, secType, expiry, strike, right, multiplier,
    exchange, primaryExchange, currency, localSymbol, tradingClass)."""
    con_id = f.int()
    symbol, sec_type, expiry = f.str(), f.str(), f.str()
    strike = f.float() or 0.0
    right, mult, exch, prim, ccy, local, tclass = (f.str() for _ in range(7))
    return ContractQuery(con_id, symbol, sec_type, expiry, strike, right, mult, exch, prim,
                         ccy, local, tclass)


@dataclass
class PlaceOrderRequest:
    """The placeOrder fields the gateway uses."""

    order_id: int
    contract: ContractQuery
    action: str
    total_qty: float
    order_type: str
    lmt_price: float | None
    aux_price: float | None
    tif: str
    oca_group: str
    account: str
    open_close: str
    origin: int
    order_ref: str
    transmit: bool
    parent_id: int
    outside_rth: bool
    hidden: bool
    good_after_time: str
    good_till_date: str
    trail_stop_price: float | None
    trailing_percent: float | None
    what_if: bool
    cash_qty: float | None
    leftover: int = 0


def parse_place_order(v: int, fields: list[str]) -> PlaceOrderRequest:
    """Parse placeOrder (fields after the message id) at server version `v`."""
    f = Fields(fields)
    order_id = f.int()
    contract = parse_contract(f)
    f.skip(2)  # secIdType, secId
    action = f.str()
    qty = f.float() or 0.0
    order_type = f.str()
    lmt, aux = f.float(), f.float()
    tif, oca, account, open_close = f.str(), f.str(), f.str(), f.str()
    origin = f.int()
    order_ref = f.str()
    transmit = f.bool()
    parent_id = f.int()
    f.skip(4)  # blockOrder, sweepToFill, displaySize, triggerMethod
    outside_rth, hidden = f.bool(), f.bool()
    if contract.sec_type == "BAG":
        for _ in range(f.int()):
            f.skip(8)
        for _ in range(f.int()):
            f.skip(1)
        for _ in range(f.int()):
            f.skip(2)
    f.skip(2)  # sharesAllocation, discretionaryAmt
    good_after, good_till = f.str(), f.str()
    f.skip(3)  # faGroup, faMethod, faPercentage
    if v < 177:
        f.skip(1)  # faProfile
    f.skip(22)  # modelCode .. volatilityType (22 fields)
    dn_type = f.str()
    f.skip(1)  # deltaNeutralAuxPrice
    if dn_type:
        f.skip(8)
    f.skip(2)  # continuousUpdate, referencePriceType
    trail_stop, trailing_pct = f.float(), f.float()
    f.skip(2)  # scaleInitLevelSize, scaleSubsLevelSize
    increment = f.float()
    if increment is not None and increment > 0:
        f.skip(7)
    f.skip(3)  # scaleTable, activeStartTime, activeStopTime
    if f.str():  # hedgeType
        f.skip(1)
    f.skip(4)  # optOutSmartRouting, clearingAccount, clearingIntent, notHeld
    if f.bool():  # deltaNeutralContract
        f.skip(3)
    if f.str():  # algoStrategy
        for _ in range(f.int()):
            f.skip(2)
    f.skip(1)  # algoId
    what_if = f.bool()
    f.skip(4)  # orderMiscOptions, solicited, randomizeSize, randomizePrice
    if order_type in ("PEG BENCH", "PEGBENCH"):
        f.skip(5)
    n_conditions = f.int()
    if n_conditions:
        for _ in range(n_conditions):
            cond_type = f.int()
            if cond_type not in _CONDITION_FIELDS:
                raise FieldError(f"unknown order condition type {cond_type}")
            f.skip(_CONDITION_FIELDS[cond_type])
        f.skip(2)
    f.skip(10)  # adjustedOrderType .. softDollarTier.val (10 fields)
    cash_qty = f.float()
    f.skip(8)  # mifid2 x4, dontUseAutoPriceForHedge, isOmsContainer, discUpTo, priceMgmt
    for gate in (158, 160, 162, 166, 169):
        if v >= gate:
            f.skip(1)
    if v >= 170:
        if contract.exchange == "IBKRATS":
            f.skip(1)
        if order_type in ("PEG BEST", "PEGBEST"):
            f.skip(1)
            if f.str() == "Infinite":
                f.skip(2)
        elif order_type in ("PEG MID", "PEGMID"):
            f.skip(2)
    return PlaceOrderRequest(
        order_id, contract, action.upper(), qty, order_type.upper(), lmt, aux, tif, oca,
        account, open_close or "O", origin, order_ref, transmit, parent_id, outside_rth,
        hidden, good_after, good_till, trail_stop, trailing_pct, what_if, cash_qty,
        leftover=len(f.remaining))
