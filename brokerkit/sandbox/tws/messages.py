"""Builders of server→client messages, mirroring ib_async 2.1.0's `Decoder` field by field.

Every builder returns the list of fields (message id first); `codec.frame` encodes it.
Version-dependent fields are gated on the negotiated server version `v` with the decoder's
own thresholds (errorMsg json ≥166, execDetails pendingPriceRevision ≥178, openOrder/
completedOrder faProfile <177 and tails ≥159/160/162/170, contractDetails layout <164).
"""

from __future__ import annotations

from .codec import UNSET_DOUBLE_TEXT as UD
from .codec import UNSET_INTEGER as UI
from .contracts import TwsContract
from .records import TwsExecution, TwsOrder, WhatIfState

__all__ = [
    "account_download_end", "account_summary", "account_summary_end", "account_time",
    "account_update_multi", "account_update_multi_end", "account_value", "commission_report",
    "completed_order", "completed_orders_end", "contract_details", "contract_details_end",
    "current_time", "error", "exec_details", "exec_details_end", "managed_accounts",
    "market_data_type", "next_valid_id", "open_order", "open_order_end", "order_status",
    "portfolio", "position", "position_end", "tick_price", "tick_req_params", "tick_size",
    "tick_snapshot_end", "tick_string",
]

Msg = list[object]


def _d(value: float | None) -> object:
    """A double that may be unset (TWS's long text)."""
    return UD if value is None else value


def managed_accounts(accounts: list[str]) -> Msg:
    return [15, 1, ",".join(accounts)]


def next_valid_id(order_id: int) -> Msg:
    return [9, 1, order_id]


def current_time(epoch: int) -> Msg:
    return [49, 1, epoch]


def error(v: int, req_id: int, code: int, text: str, advanced_json: str = "") -> Msg:
    out: Msg = [4, 2, req_id, code, text]
    if v >= 166:
        out.append(advanced_json)
    return out


# -- positions and account ----------------------------------------------------------------

def position(account: str, c: TwsContract, qty: float, avg_cost: float) -> Msg:
    return [61, 3, account, c.con_id, c.symbol, c.sec_type, c.last_trade_date, c.strike,
            c.right, c.multiplier, c.position_exchange(), c.currency, c.local_symbol,
            c.trading_class, qty, avg_cost]


def position_end() -> Msg:
    return [62, 1]


def account_value(key: str, value: str, currency: str, account: str) -> Msg:
    return [6, 2, key, value, currency, account]


def portfolio(c: TwsContract, qty: float, price: float, value: float, avg_cost: float,
              unrealized: float, realized: float, account: str) -> Msg:
    return [7, 8, c.con_id, c.symbol, c.sec_type, c.last_trade_date, c.strike, c.right,
            c.multiplier, c.primary_exchange, c.currency, c.local_symbol, c.trading_class,
            qty, price, value, avg_cost, unrealized, realized, account]


def account_time(hhmm: str) -> Msg:
    return [8, 1, hhmm]


def account_download_end(account: str) -> Msg:
    return [54, 1, account]


def account_update_multi(req_id: int, account: str, model: str, key: str, value: str,
                         currency: str) -> Msg:
    return [73, 1, req_id, account, model, key, value, currency]


def account_update_multi_end(req_id: int) -> Msg:
    return [74, 1, req_id]


def account_summary(req_id: int, account: str, tag: str, value: str, currency: str) -> Msg:
    return [63, 1, req_id, account, tag, value, currency]


def account_summary_end(req_id: int) -> Msg:
    return [64, 1, req_id]


# -- contract details -----------------------------------------------------------------------

def contract_details(v: int, req_id: int, c: TwsContract, exchange: str,
                     trading_hours: str, liquid_hours: str) -> Msg:
    head: Msg = [10]
    if v < 164:
        head.append(8)  # message version
    head += [req_id, c.symbol, c.sec_type, c.last_trade_date, c.strike, c.right, exchange,
             c.currency, c.local_symbol, c.market_name, c.trading_class, c.con_id, c.min_tick]
    if v < 164:
        head.append(1)  # mdSizeMultiplier
    head += [c.multiplier, c.order_types, ",".join(c.valid_exchanges), 1, c.under_con_id,
             c.long_name, c.primary_exchange, c.contract_month, "", "", "", c.time_zone,
             trading_hours, liquid_hours, "", "",
             0,  # secIdList count
             1, c.under_symbol, c.under_sec_type, "26", c.last_trade_date, c.stock_type]
    if v == 163:
        head.append(c.size_increment)
    if v >= 164:
        head += [c.min_size, c.size_increment, c.size_increment]
    return head


def contract_details_end(req_id: int) -> Msg:
    return [52, 1, req_id]


# -- orders ----------------------------------------------------------------------------------

def open_order(v: int, o: TwsOrder, status: str | None = None,
               what_if: WhatIfState | None = None) -> Msg:
    """openOrder (5) in the "simple order" shape: every variable-length block empty."""
    c = o.contract
    out: Msg = [5, o.order_id, *c.c11(o.exchange),
                o.action, o.total_qty, o.order_type, _d(o.lmt_price), _d(o.aux_price), o.tif,
                o.oca_group, o.account, o.open_close, o.origin, o.order_ref,
                o.client_id, 0 if what_if else o.perm_id, o.outside_rth, o.hidden,
                0.0,  # discretionaryAmt
                o.good_after_time,
                "",  # sharesAllocation
                "", "", ""]  # faGroup, faMethod, faPercentage
    if v < 177:
        out.append("")  # faProfile
    out += ["",  # modelCode
            o.good_till_date, "", UD, "",  # goodTillDate, rule80A, percentOffset, settlingFirm
            0, "", -1, 0,  # shortSaleSlot, designatedLocation, exemptCode, auctionStrategy
            UD, UD, UD, UD, UD,  # startingPrice, stockRefPrice, delta, stockRangeLower/Upper
            0, 0, 0, 0, UI,  # displaySize, blockOrder, sweepToFill, allOrNone, minQty
            0, 0, 0, UD,  # ocaType, eTradeOnly, firmQuoteOnly, nbboPriceCap
            o.parent_id, 0, UD, UI,  # parentId, triggerMethod, volatility, volatilityType
            "", UD,  # deltaNeutralOrderType (empty: no block), deltaNeutralAuxPrice
            0, UI, _d(o.trail_stop_price), _d(o.trailing_percent),  # continuousUpdate ...
            UD, UI,  # basisPoints, basisPointsType
            "",  # comboLegsDescrip
            0, 0, 0,  # comboLegs, orderComboLegs, smartComboRoutingParams counts
            UI, UI, UD,  # scaleInitLevelSize, scaleSubsLevelSize, scalePriceIncrement
            "",  # hedgeType
            0, "", "", 0,  # optOutSmartRouting, clearingAccount, clearingIntent, notHeld
            0,  # deltaNeutralContract present
            "",  # algoStrategy
            0, 1 if what_if else 0]  # solicited, whatIf
    if what_if is None:
        out += [status or o.status, UD, UD, UD, UD, UD, UD, UD, UD, UD, UD, UD, UD, "", ""]
    else:
        w = what_if
        out += [status or "PreSubmitted",
                f"{w.init_before:.2f}", f"{w.maint_before:.2f}", f"{w.ewl_before:.2f}",
                f"{w.init_change:.2f}", f"{w.maint_change:.2f}", f"{w.ewl_change:.2f}",
                f"{w.init_after:.2f}", f"{w.maint_after:.2f}", f"{w.ewl_after:.2f}",
                w.commission, w.commission, w.commission, w.commission_currency, w.warning]
    out += [0, 0,  # randomizeSize, randomizePrice
            0,  # conditions count
            "", UD, _d(o.trail_stop_price), UD, UD, UD, UD, 0,  # adjusted* block
            "", "", "",  # softDollarTier name, val, displayName
            _d(o.cash_qty), 0, 0, 0, 0]  # cashQty, dontUseAutoPrice, isOms, discUpTo, priceMgmt
    if v >= 159:
        out.append(UI)  # duration
    if v >= 160:
        out.append(UI)  # postToAts
    if v >= 162:
        out.append(0)  # autoCancelParent
    if v >= 170:
        out += [UI, UI, UD, UD, UD]  # minTradeQty, minCompeteSize, 3 peg offsets
    return out


def order_status(o: TwsOrder, status: str | None = None) -> Msg:
    return [3, o.order_id, status or o.status, o.filled, o.remaining, o.avg_fill_price,
            o.perm_id, o.parent_id, o.last_fill_price, o.client_id, "", 0.0]


def open_order_end() -> Msg:
    return [53, 1]


def completed_order(v: int, o: TwsOrder) -> Msg:
    """completedOrder (101): no orderId, no clientId; keyed by permId."""
    c = o.contract
    out: Msg = [101, *c.c11(o.exchange),
                o.action, o.total_qty, o.order_type, _d(o.lmt_price), _d(o.aux_price), o.tif,
                o.oca_group, o.account, o.open_close, o.origin, o.order_ref, o.perm_id,
                o.outside_rth, o.hidden, 0.0, o.good_after_time,
                "", "", ""]  # faGroup, faMethod, faPercentage
    if v < 177:
        out.append("")  # faProfile
    out += ["", o.good_till_date, "", UD, "",  # modelCode .. settlingFirm
            0, "", -1,  # shortSaleSlot, designatedLocation, exemptCode
            UD, UD, UD, UD, UD,  # startingPrice .. stockRangeUpper
            0, 0, 0, UI, 0, 0,  # displaySize, sweepToFill, allOrNone, minQty, ocaType, trigger
            UD, UI, "", UD,  # volatility, volatilityType, deltaNeutralOrderType, dnAuxPrice
            0, UI, _d(o.trail_stop_price), _d(o.trailing_percent),
            "", 0, 0, 0,  # comboLegsDescrip, 3 counts
            UI, UI, UD, "",  # scale init/subs, scalePriceIncrement, hedgeType
            "", "", 0, 0,  # clearingAccount, clearingIntent, notHeld, dnc present
            "",  # algoStrategy
            0, o.status, 0, 0,  # solicited, status, randomizeSize, randomizePrice
            0,  # conditions count
            _d(o.trail_stop_price), UD, _d(o.cash_qty), 0, 0,
            "", o.filled, 0, 0, "", 0, 0, 0,  # autoCancelDate .. parentPermId
            o.completed_time, o.completed_status or o.status]
    if v >= 170:
        out += [UI, UI, UD, UD, UD]
    return out


def completed_orders_end() -> Msg:
    return [102]


def exec_details(v: int, req_id: int, e: TwsExecution) -> Msg:
    o = e.order
    out: Msg = [11, req_id, o.order_id, *o.contract.c11(o.exchange),
                e.exec_id, e.time, o.account, e.venue, e.side, e.shares, e.price, o.perm_id,
                o.client_id, 0, e.cum_qty, e.avg_price, o.order_ref, "", "", "", 2]
    if v >= 178:
        out.append(0)  # pendingPriceRevision
    return out


def commission_report(e: TwsExecution) -> Msg:
    return [59, 1, e.exec_id, e.commission, e.commission_currency, _d(e.realized_pnl), UD, ""]


def exec_details_end(req_id: int) -> Msg:
    return [55, 1, req_id]


# -- market data -----------------------------------------------------------------------------

def tick_price(req_id: int, tick_type: int, price: float, size: float, attr: int = 0) -> Msg:
    return [1, 6, req_id, tick_type, price, size, attr]


def tick_size(req_id: int, tick_type: int, size: float) -> Msg:
    return [2, 6, req_id, tick_type, size]


def tick_string(req_id: int, tick_type: int, value: str) -> Msg:
    return [46, 6, req_id, tick_type, value]


def tick_snapshot_end(req_id: int) -> Msg:
    return [57, 1, req_id]


def market_data_type(req_id: int, data_type: int) -> Msg:
    return [58, 1, req_id, data_type]


def tick_req_params(req_id: int, min_tick: float, bbo_exchange: str, permissions: int) -> Msg:
    return [81, req_id, min_tick, bbo_exchange, permissions]
