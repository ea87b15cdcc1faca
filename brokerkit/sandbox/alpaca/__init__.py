"""An Alpaca-compatible sandbox server: alpaca-py runs against it unchanged (`url_override`).

Trading API v2 and the market-data latest endpoints on one loopback port, backed by a
`PaperBroker` of the shared `Sandbox` (`sandbox.broker("alpaca")`), so prices come from the
shared market and account state outlives client reconnects (and server restarts). The broker
holds one Alpaca paper account, `PA-DEMO-1` (margin, USD, with a few positions, fractional
too), opened on first use.

=====================================  ========================================================
GET    /v2/account                     TradeAccount                                 `account`
GET    /v2/positions[/{symbol}]        Position list / one (404 when none)          `account`
GET    /v2/account/activities[/{t}]    FILL activities; page_size (<= 100),         `account`
                                       page_token
POST   /v2/orders                      market, limit, stop, stop_limit,             `orders`
                                       trailing_stop; qty or notional; Alpaca's
                                       order rules (`rules`); client_order_id
                                       unique (422 on reuse)
GET    /v2/orders                      status=open|closed|all, limit, after,        `orders`
                                       until, direction, side, symbols, nested
GET    /v2/orders/{id}                 one order (404)                              `orders`
GET    /v2/orders:by_client_order_id   ?client_order_id= (404)                      `orders`
DELETE /v2/orders/{id}                 204; 422 when already final; 404             `orders`
DELETE /v2/orders                      207 multi-status, one entry per open order   `orders`
GET    /v2/assets[/{symbol_or_id}]     us_equity and crypto assets                  `market_data`
GET    /v2/clock, /v2/calendar         the sandbox market's clock, weekday sessions `market_data`
GET    /v2/stocks/quotes/latest        also trades/latest and /v2/stocks/{symbol}/  `market_data`
GET    /v1beta3/crypto/us/latest/...   quotes and trades (anonymous allowed)        `market_data`
GET    /v1/corporate-actions           forward and reverse splits the broker        `corporate_`
                                       applied (`PaperBroker.apply_split`)          `actions`
=====================================  ========================================================

Each module holds a `web.RouteTableDef`; `middleware` has what every route passes through
(request counts, auth, the rate limit, error answers, injected faults). Auth:
`APCA-API-KEY-ID` / `APCA-API-SECRET-KEY`; wrong or missing keys answer 401
`{"code": 40110000, "message": "request is not authorized"}` on the trading API and 403
`access key verification failed` on the data API. Errors carry Alpaca's codes: 403 40310000
(buying power, short sales, under the $1 minimum), 422 40010001 / 42210000 (invalid orders),
404 40410000, 429 42910000. Rate limit: `rate_limit` requests per minute per bucket (trading,
data), a sliding window, with `X-Ratelimit-Limit/Remaining/Reset` on every response (None: no
limit, no headers); refused requests do not count.

Faults come from the broker's shared `FaultInjector` (`broker.faults`, also set through the
control server with `{"broker": "alpaca", ...}`), by endpoint name: balances (account),
positions, orders (list), lookup (get one, by client id), submit, cancel, fills (activities),
instruments (assets), clock (clock, calendar), quotes (market data), corporate_actions. An
injected error answers its status; a timeout hangs `timeout_s` then answers 504;
`drop_after_accept` on submit places the order and closes the socket without an answer;
`accept_late_next` / `accept_late_rate` hold a submit `accept_late_s` before the broker places
it, even after the client gave up (the answer goes to a client still waiting).

The order rules come from `brokerkit.venues.alpaca` and are enforced by `rules`, never by
importing the Alpaca adapter.
"""

from __future__ import annotations

from .server import make_app, start_alpaca
from .state import ACCOUNT, DEMO_KEY_ID, DEMO_SECRET_KEY, AlpacaServer

__all__ = ["ACCOUNT", "DEMO_KEY_ID", "DEMO_SECRET_KEY", "AlpacaServer", "make_app",
           "start_alpaca"]
