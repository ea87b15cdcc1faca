"""Interactive Brokers through the TWS API: the order types and times in force brokerkit
sends (with IB's codes), whole quantities only, no notional amounts, the message rate.

Read by `adapters.ibkr` (order building and pre-trade checks) and `execution.ratelimit`.
"""

from __future__ import annotations

from types import MappingProxyType

from ..model import OrderType, TimeInForce
from .base import RateLimit

__all__ = [
    "FRACTIONAL",
    "MAX_ACTIVE_ORDERS_PER_CONTRACT_SIDE",
    "MESSAGE_RATE",
    "NOTIONAL",
    "ORDER_TYPE_CODES",
    "TIME_IN_FORCE_CODES",
]

#: Our order types and IB's `Order.orderType` codes for them.
# source: https://interactivebrokers.github.io/tws-api/basic_orders.html (MKT, LMT, STP,
# STP LMT, TRAIL); shared/reference/tws-protocol.md §6 placeOrder field 18 (orderType)
ORDER_TYPE_CODES = MappingProxyType({
    OrderType.MARKET: "MKT", OrderType.LIMIT: "LMT", OrderType.STOP: "STP",
    OrderType.STOP_LIMIT: "STP LMT", OrderType.TRAILING_STOP: "TRAIL",
})
#: Our times in force and IB's `Order.tif` codes; close-auction orders (CLS) are an order
#: type at IB (MOC/LOC), not a time in force, so they are not taken.
# source: https://interactivebrokers.github.io/tws-api/classIBApi_1_1Order.html (Order.Tif);
# shared/reference/tws-protocol.md §6 placeOrder field 21 (tif: DAY, GTC, IOC, GTD, OPG, FOK)
TIME_IN_FORCE_CODES = MappingProxyType({
    TimeInForce.DAY: "DAY", TimeInForce.GTC: "GTC", TimeInForce.IOC: "IOC",
    TimeInForce.FOK: "FOK", TimeInForce.OPG: "OPG",
})

#: Fractional quantities: brokerkit sends whole share quantities to IB.
# source: IB grants fractional-share API trading per account on request, not by default
# (https://www.interactivebrokers.com/en/trading/fractional-trading.php); without that
# permission TWS rejects a fractional totalQuantity, so the adapter takes whole quantities
FRACTIONAL = False
#: Notional (cash quantity) orders: not sent; `Order.cashQty` is IB's field for them, accepted
#: for FX and permissioned accounts only.
# source: https://interactivebrokers.github.io/tws-api/classIBApi_1_1Order.html (cashQty)
NOTIONAL = False

#: Messages an API client may send TWS; the excess gets error 100, then a disconnect.
# source: https://interactivebrokers.github.io/tws-api/order_limitations.html ("the TWS API's
# inherent limitation of 50 messages per second"); .../rtd_fqa_errors.html
MESSAGE_RATE = RateLimit(50, 1.0, "IBKR TWS API: 50 messages/s client to TWS "
                         "(tws-api/order_limitations.html)")
#: Working orders allowed per contract, per side, per account.
# source: https://interactivebrokers.github.io/tws-api/order_limitations.html
MAX_ACTIVE_ORDERS_PER_CONTRACT_SIDE = 20
