"""Alpaca (Trading API v2): order rules per asset class, fractional, notional and
extended-hours rules, minimums and request limits.

Read by `adapters.alpaca` (pre-trade checks), `execution.ratelimit` (the request budget) and
`sandbox.alpaca.rules` (which enforces them with its own code). Where Alpaca's own pages
disagree, the API documentation (docs.alpaca.markets) wins over support articles; each case
is noted beside the fact.
"""

from __future__ import annotations

from datetime import time
from decimal import Decimal
from types import MappingProxyType

from ..model import OrderType, TimeInForce
from .base import RateLimit

__all__ = [
    "ASSET_CLASSES",
    "CLIENT_ORDER_ID_MAX",
    "CRYPTO_ORDER_TYPES",
    "CRYPTO_TIME_IN_FORCE",
    "EQUITY_EXCHANGES",
    "EQUITY_ORDER_TYPES",
    "EQUITY_TIME_IN_FORCE",
    "EXTENDED_HOURS",
    "EXTENDED_HOURS_ORDER_TYPES",
    "EXTENDED_HOURS_TIME_IN_FORCE",
    "FRACTIONAL_ORDER_TYPES",
    "FRACTIONAL_SHORT",
    "FRACTIONAL_TIME_IN_FORCE",
    "MIN_NOTIONAL",
    "NOTIONAL_ORDER_TYPES",
    "ORDER_TYPES",
    "TIME_IN_FORCE",
    "TRADING_API_RATE",
]

# -- US equities ------------------------------------------------------------------------------
# source: https://docs.alpaca.markets/docs/orders-at-alpaca ("Order Types": market, limit,
# stop, stop_limit, trailing_stop; "Time in Force": day, gtc, opg, cls, ioc, fok)
EQUITY_ORDER_TYPES = frozenset({OrderType.MARKET, OrderType.LIMIT, OrderType.STOP,
                                OrderType.STOP_LIMIT, OrderType.TRAILING_STOP})
EQUITY_TIME_IN_FORCE = frozenset({TimeInForce.DAY, TimeInForce.GTC, TimeInForce.OPG,
                                  TimeInForce.CLS, TimeInForce.IOC, TimeInForce.FOK})

#: Order types that take fractional quantities (equities).
# source: https://docs.alpaca.markets/docs/fractional-trading (market, limit, stop and stop
# limit, day orders); the changelog entry of 2024-08-20 "Fractional USD Stop & Stop Limit
# Orders" (https://docs.alpaca.markets/us/changelog: "Submit Stop & Stop Limit Orders with
# fractional quantities"); the older support article (market day orders only) predates both
FRACTIONAL_ORDER_TYPES = frozenset({OrderType.MARKET, OrderType.LIMIT, OrderType.STOP,
                                    OrderType.STOP_LIMIT})
#: Times in force of fractional and notional equity orders.
# source: https://docs.alpaca.markets/docs/fractional-trading ("time_in_force": "day" only)
FRACTIONAL_TIME_IN_FORCE = frozenset({TimeInForce.DAY})
#: Fractional shares are held long only: a fractional or notional sale may not open or add to
#: a short position.
# source: https://alpaca.markets/support/what-is-fractional-trading ("We only support long
# fractional trading positions; short selling fractional shares is not supported")
FRACTIONAL_SHORT = False

#: Order types that take a notional (dollar) amount instead of a quantity (equities): the
#: fractional order types.
# source: Alpaca's announcement "Fractional Shares Trading Supports Limit Orders and Extended
# Hours" (alpaca.markets blog: "limit orders with fractional quantity or notional value, in
# addition to market orders"); changelog 2024-08-20 (https://docs.alpaca.markets/us/changelog:
# "Submit Stop & Stop Limit Orders with notional amounts"). Trailing stops take no notional.
NOTIONAL_ORDER_TYPES = frozenset({OrderType.MARKET, OrderType.LIMIT, OrderType.STOP,
                                  OrderType.STOP_LIMIT})

#: The smallest notional amount, USD.
# source: https://docs.alpaca.markets/docs/fractional-trading ("buy as little as $1 worth of
# shares"); https://alpaca.markets/learn/fractional-shares-api/ ("a notional amount of $1.00")
MIN_NOTIONAL = Decimal("1")

#: Extended-hours orders: limit orders, day only, whole or fractional.
# source: https://docs.alpaca.markets/docs/orders-at-alpaca (Extended Hours Trading: limit
# orders with time_in_force day); the API's 422 "extended hours order must be DAY limit
# orders"; fractional limit orders in extended hours: Alpaca's announcement "Fractional Shares
# Trading Supports Limit Orders and Extended Hours" (pre-market 4:00-9:30, post-market
# 4:00-8:00 p.m. ET)
EXTENDED_HOURS_ORDER_TYPES = frozenset({OrderType.LIMIT})
EXTENDED_HOURS_TIME_IN_FORCE = frozenset({TimeInForce.DAY})
#: Extended sessions, New York time: (pre-market open, after-hours close).
# source: https://alpaca.markets/support/how-do-you-trade-in-extended-hours-with-alpaca
# (pre-market 4:00 am - 9:30 am ET, after-hours 4:00 pm - 8:00 pm ET)
EXTENDED_HOURS = (time(4, 0), time(20, 0))

#: Exchanges Alpaca lists US equities on (asset `exchange` field), by our exchange name.
# source: https://docs.alpaca.markets/reference/get-v2-assets (exchange: AMEX, ARCA, BATS,
# NYSE, NASDAQ, NYSEARCA, OTC)
EQUITY_EXCHANGES = MappingProxyType({"NASDAQ": "NASDAQ", "NYSE": "NYSE", "ARCA": "ARCA"})

# -- crypto -----------------------------------------------------------------------------------
# source: https://docs.alpaca.markets/docs/crypto-orders (types market, limit, stop_limit;
# time_in_force gtc and ioc). A support article also lists fok; the API docs do not, and the
# API docs win.
CRYPTO_ORDER_TYPES = frozenset({OrderType.MARKET, OrderType.LIMIT, OrderType.STOP_LIMIT})
CRYPTO_TIME_IN_FORCE = frozenset({TimeInForce.GTC, TimeInForce.IOC})

#: By Alpaca's asset class (`us_equity`, `crypto`): the order types and times in force taken.
ASSET_CLASSES = ("us_equity", "crypto")
ORDER_TYPES = MappingProxyType({"us_equity": EQUITY_ORDER_TYPES,
                                "crypto": CRYPTO_ORDER_TYPES})
TIME_IN_FORCE = MappingProxyType({"us_equity": EQUITY_TIME_IN_FORCE,
                                  "crypto": CRYPTO_TIME_IN_FORCE})

# -- requests ---------------------------------------------------------------------------------
#: Longest client order id, characters.
# source: Alpaca API v2 order entity docs ("client_order_id <= 48 characters"),
# shared/reference/http-apis.md §1.5 (newer docs allow more; 48 is safe everywhere)
CLIENT_ORDER_ID_MAX = 48

#: The Trading API's request limit, per account (paper and live alike).
# source: https://alpaca.markets/support/usage-limit-api-calls/ ("200 requests per minute,
# per account"); https://forum.alpaca.markets/t/executing-orders/12029 (429 and the
# X-Ratelimit-Limit/Remaining/Reset headers)
TRADING_API_RATE = RateLimit(200, 60.0, "Alpaca Trading API: 200 requests/min per account "
                             "(alpaca.markets/support/usage-limit-api-calls)")
