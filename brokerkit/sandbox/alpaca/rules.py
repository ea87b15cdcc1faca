"""Alpaca's order rules, as the Alpaca server enforces them on `POST /v2/orders`.

Written from Alpaca's documentation and its recorded answers, independently of the adapter's
pre-trade checks (`adapters.alpaca.check_intent`): both read the facts in
`brokerkit.venues.alpaca`, each with its own code, so a test of one against the other can
fail. The checks run in Alpaca's order: the request's shape (422 40010001), then the rules
of the asset (422 42210000, 403 40310000). The paper broker's own refusals (buying power,
short sales, ticks) come back through `refusal` in Alpaca's words.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ...model import AssetClass, OrderType, Side, TimeInForce
from ...venues import alpaca as venue
from .errors import Reply, unprocessable
from .params import decimal_param
from .shapes import dec
from .state import ACCOUNT, AppState

if TYPE_CHECKING:
    from ..market import Order

__all__ = ["check_order", "refusal"]

_PRICES = ("limit_price", "stop_price", "trail_price", "trail_percent")
#: The price fields each order type needs (the rest must be absent).
_NEEDS = {"limit": ("limit_price",), "stop": ("stop_price",),
          "stop_limit": ("limit_price", "stop_price")}


def _shape(data: Mapping[str, Any]) -> dict[str, Any]:
    """The request's fields, checked as Alpaca checks a body before it looks at the asset."""
    if data.get("order_class") not in (None, "", "simple"):
        raise unprocessable(f"order_class {data['order_class']!r} is not supported")
    symbol = data.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        raise unprocessable("symbol is required")
    side, otype, tif = data.get("side"), data.get("type"), data.get("time_in_force")
    if side not in ("buy", "sell"):
        raise unprocessable(f"invalid side: {side!r}" if side else "side is required")
    if otype not in {t.value for t in OrderType}:
        raise unprocessable(f"invalid order type: {otype!r}" if otype else "type is required")
    if tif not in {t.value for t in TimeInForce}:
        raise unprocessable(f"invalid time_in_force: {tif!r}" if tif
                            else "time_in_force is required")
    qty, notional = decimal_param(data, "qty"), decimal_param(data, "notional")
    if (qty is None) == (notional is None):
        raise unprocessable("qty or notional is required" if qty is None
                            else "only one of qty or notional may be given")
    prices = {n: decimal_param(data, n) for n in _PRICES}
    needs = _NEEDS.get(otype, ())
    for name in ("limit_price", "stop_price"):
        if name in needs and prices[name] is None:
            raise unprocessable(f"{name} is required for {otype} orders")
        if name not in needs and prices[name] is not None:
            raise unprocessable(f"{name} must not be given for {otype} orders")
    trails = [n for n in ("trail_price", "trail_percent") if prices[n] is not None]
    if otype == "trailing_stop" and len(trails) != 1:
        raise unprocessable("exactly one of trail_price or trail_percent is required")
    if otype != "trailing_stop" and trails:
        raise unprocessable(f"{trails[0]} is only for trailing_stop orders")
    coid = data.get("client_order_id")
    if coid is None or coid == "":
        coid = str(uuid.uuid4())
    if not isinstance(coid, str) or len(coid) > venue.CLIENT_ORDER_ID_MAX:
        raise unprocessable(f"client_order_id must be a string of at most "
                            f"{venue.CLIENT_ORDER_ID_MAX} characters")
    return {"symbol": symbol, "side": Side(side), "order_type": OrderType(otype),
            "time_in_force": TimeInForce(tif), "quantity": qty, "notional": notional,
            "client_order_id": coid, "extended_hours": data.get("extended_hours") in
            (True, "true", "True"), **{n: v for n, v in prices.items() if v is not None}}


def _crypto_rules(order: Mapping[str, Any]) -> None:
    otype, tif = order["order_type"], order["time_in_force"]
    if otype not in venue.ORDER_TYPES["crypto"]:
        raise unprocessable(f"{otype.value} orders are not supported for crypto", 42210000)
    if tif not in venue.TIME_IN_FORCE["crypto"]:
        raise unprocessable(f"invalid crypto time_in_force {tif.value}", 42210000)


def _equity_rules(order: Mapping[str, Any], fractionable: bool, symbol: str) -> None:
    otype, tif = order["order_type"], order["time_in_force"]
    qty, notional = order["quantity"], order["notional"]
    if otype not in venue.ORDER_TYPES["us_equity"] or tif not in venue.TIME_IN_FORCE["us_equity"]:
        raise unprocessable(f"{otype.value} {tif.value} orders are not supported", 42210000)
    if order["extended_hours"] and (otype not in venue.EXTENDED_HOURS_ORDER_TYPES
                                    or tif not in venue.EXTENDED_HOURS_TIME_IN_FORCE):
        raise unprocessable("extended hours order must be DAY limit orders", 42210000)
    if notional is not None and otype not in venue.NOTIONAL_ORDER_TYPES:
        kinds = ", ".join(sorted(t.value for t in venue.NOTIONAL_ORDER_TYPES))
        raise unprocessable(f"notional orders only supported for {kinds} orders", 42210000)
    if not (notional is not None or qty % 1 != 0):
        return
    if not fractionable:
        raise unprocessable(f"asset {symbol} is not fractionable", 42210000)
    if otype not in venue.FRACTIONAL_ORDER_TYPES:
        raise unprocessable(f"fractional orders are not supported for {otype.value} orders",
                            42210000)
    if tif not in venue.FRACTIONAL_TIME_IN_FORCE:
        raise unprocessable("fractional orders must be DAY orders", 42210000)
    if notional is not None and notional < venue.MIN_NOTIONAL:
        # Alpaca's answer to an order worth under $1 (as recorded by its users)
        raise Reply(403, 40310000, f"cost basis must be >= {dec(venue.MIN_NOTIONAL)}")


def _no_fractional_short(state: AppState, order: Mapping[str, Any], key: str) -> None:
    """Fractional shares are held long only (`venue.FRACTIONAL_SHORT`): a fractional or
    notional sale larger than the position held is refused."""
    qty, notional = order["quantity"], order["notional"]
    if venue.FRACTIONAL_SHORT or order["side"] is not Side.SELL or not (
            notional is not None or qty % 1 != 0):
        return
    held = next((Decimal(repr(p.quantity)) for p in state.broker.positions([ACCOUNT])
                 if p.listing.key == key), Decimal(0))
    # a notional sale is sized at its fill: with nothing held it can only open a short
    if (held <= 0) if notional is not None else (qty > held):
        raise Reply(403, 40310000, "short selling fractional shares is not supported",
                    available=dec(held))


def check_order(state: AppState, data: Mapping[str, Any]) -> dict[str, Any]:
    """Alpaca's own order rules for a `POST /v2/orders` body; returns the `broker.submit`
    keywords (plus `extended_hours`), or raises the `Reply` Alpaca would give."""
    order = _shape(data)
    li = state.asset(order["symbol"])
    if li is None:
        raise unprocessable(f"asset {order['symbol']!r} not found")
    if li.asset_class is AssetClass.CRYPTO:
        _crypto_rules(order)
    else:
        _equity_rules(order, li.fractionable, li.symbol)
        _no_fractional_short(state, order, li.key)
    return {**order, "symbol": li.key}


def refusal(state: AppState, o: Order, kwargs: Mapping[str, Any]) -> Reply:
    """Alpaca's answer to an order the paper broker rejected."""
    reason = o.reason
    broker = state.broker
    if "insufficient buying power" in reason:
        li = o.listing
        assert li is not None
        price = kwargs.get("limit_price") or kwargs.get("stop_price") \
            or state.market.quote(li).ask
        cost = o.notional if o.quantity is None else o.quantity * price
        return Reply(403, 40310000, "insufficient buying power",
                     buying_power=dec(broker.buying_power(ACCOUNT)), cost_basis=dec(cost))
    if "short sale" in reason or "not shortable" in reason:
        held: Decimal | float = next((p.quantity for p in broker.positions([ACCOUNT])
                                      if o.listing and p.listing.key == o.listing.key), 0.0)
        if "not shortable" in reason:
            return Reply(403, 40310000, f"asset {o.symbol} cannot be sold short")
        return Reply(403, 40310000, f"insufficient qty available for order (requested: "
                     f"{dec(o.quantity)}, available: {dec(held)})",
                     available=dec(held), symbol=o.symbol)
    if "not a multiple of the tick" in reason:
        name = reason.split()[0]
        return unprocessable(f"invalid {name} {dec(getattr(o, name))}. sub-penny increment "
                             f"does not fulfill minimum pricing criteria", 42210000)
    if "not tradable" in reason:
        return unprocessable(f"asset {o.symbol} is not tradable", 42210000)
    return unprocessable(reason, 42210000)
