"""An Alpaca-compatible sandbox server: alpaca-py runs against it unchanged (`url_override`).

Trading API v2 and the market-data latest endpoints on one loopback port, backed by a
`PaperBroker` of the shared `Sandbox` (`sandbox.broker("alpaca")`), so prices come from the
shared market and account state outlives client reconnects (and server restarts). The broker
holds one Alpaca paper account, `PA-DEMO-1` (margin, USD, with a few positions, fractional
too), opened on first use.

=====================================  ========================================================
GET    /v2/account                     TradeAccount
GET    /v2/positions[/{symbol}]        Position list / one (404 when none)
POST   /v2/orders                      market, limit, stop, stop_limit, trailing_stop; qty or
                                       notional; client_order_id unique (422 on reuse)
GET    /v2/orders                      status=open|closed|all, limit, after, until, direction,
                                       side, symbols, nested
GET    /v2/orders/{id}                 one order (404)
GET    /v2/orders:by_client_order_id   ?client_order_id= (404)
DELETE /v2/orders/{id}                 204; 422 when already final; 404
DELETE /v2/orders                      207 multi-status, one entry per open order
GET    /v2/account/activities[/{t}]    FILL activities; page_size (<= 100) and page_token
GET    /v2/assets[/{symbol_or_id}]     us_equity and crypto assets
GET    /v2/clock, /v2/calendar         the sandbox market's clock, weekday sessions
GET    /v2/stocks/quotes/latest        also trades/latest and /v2/stocks/{symbol}/...
GET    /v1beta3/crypto/us/latest/...   quotes and trades (anonymous allowed)
=====================================  ========================================================

Auth: `APCA-API-KEY-ID` / `APCA-API-SECRET-KEY`; wrong or missing keys answer 401
`{"code": 40110000, "message": "request is not authorized"}` on the trading API and 403
`access key verification failed` on the data API. Errors carry Alpaca's codes: 403 40310000
(buying power, short sales), 422 40010001 / 42210000 (invalid orders), 404 40410000, 429
42910000. Rate limit: `rate_limit` requests per minute per bucket (trading, data), a sliding
window, with `X-Ratelimit-Limit/Remaining/Reset` on every response (None: no limit, no
headers); refused requests do not count.

Faults come from the broker's shared `FaultInjector` (`broker.faults`, also set through the
control server with `{"broker": "alpaca", ...}`), by endpoint name: balances (account),
positions, orders (list), lookup (get one, by client id), submit, cancel, fills (activities),
instruments (assets), clock (clock, calendar), quotes (market data). An injected error answers
its status; a timeout hangs `timeout_s` then answers 504; `drop_after_accept` on submit places
the order and closes the socket without an answer.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import weakref
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from ..adapters.alpaca import (
    CRYPTO_ORDER_TYPES,
    CRYPTO_TIME_IN_FORCE,
    FRACTIONAL_ORDER_TYPES,
    FRACTIONAL_TIME_IN_FORCE,
    NOTIONAL_ORDER_TYPES,
)
from ..errors import InvalidIntent
from ..model import AssetClass, OrderStatus, OrderType, Side, TimeInForce, to_decimal
from .broker import DuplicateClientOrderId, PaperBroker, UnknownOrder
from .faults import InjectedFault

if TYPE_CHECKING:
    from aiohttp import web

    from .demo import Sandbox
    from .market import Fill, Listing, Order

__all__ = ["ACCOUNT", "DEMO_KEY_ID", "DEMO_SECRET_KEY", "AlpacaServer", "start_alpaca"]

#: The Alpaca paper account every sandbox server serves.
ACCOUNT = "PA-DEMO-1"
#: Demo credentials `Sandbox.start_servers_async` gives its Alpaca server.
DEMO_KEY_ID = "PKSANDBOXDEMO0000001"
DEMO_SECRET_KEY = "sandbox-demo-secret-not-a-real-key"
_SEED_CASH = {"USD": 100_000.0}
_SEED_POSITIONS = (("AAPL", "10", "201.50"), ("SPY", "5.5", "560.00"), ("NVDA", "0.75", "118.20"))
_NY = ZoneInfo("America/New_York")
_OPEN, _CLOSE = dtime(9, 30), dtime(16, 0)
_US_EXCHANGES = {"NASDAQ": "NASDAQ", "NYSE": "NYSE", "ARCA": "ARCA"}
_NS = uuid.UUID("6c1f0ad2-1c8e-4a4e-9a57-3b0c5ad0a1c7")
_CREATED = "2025-01-02T15:00:00Z"
_MAX_CLIENT_ID = 48
_STATUS = {
    OrderStatus.PENDING: "pending_new", OrderStatus.ACCEPTED: "new",
    OrderStatus.PARTIALLY_FILLED: "partially_filled", OrderStatus.FILLED: "filled",
    OrderStatus.CANCELED: "canceled", OrderStatus.EXPIRED: "expired",
    OrderStatus.REJECTED: "rejected", OrderStatus.ERROR: "rejected",
}
_OPEN_STATUSES = {OrderStatus.PENDING, OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED}
_ACTIVITY_TYPES = frozenset((
    "FILL", "ACATC", "ACATS", "CFEE", "CIL", "CSD", "CSW", "DIV", "DIVCGL", "DIVCGS", "DIVNRA",
    "DIVROC", "DIVTXEX", "DIVWH", "EXTRD", "FEE", "FXTRD", "INT", "INTPNL", "JNLC", "JNLS", "MA",
    "MEM", "NC", "OCT", "OPASN", "OPCSH", "OPEXC", "OPEXP", "OPTRD", "PTC", "REORG", "SPIN",
    "SPLIT", "SWP", "VOF", "WH"))


def _id(kind: str, name: str) -> str:
    """A stable UUID for an account, asset or fill name."""
    return str(uuid.uuid5(_NS, f"{kind}:{name}"))


def _s(value: Decimal | float | int | None) -> str | None:
    """A decimal as Alpaca writes it: a plain string, no exponent."""
    if value is None:
        return None
    d = value if isinstance(value, Decimal) else Decimal(repr(float(value)))
    text = format(d.normalize(), "f")
    return "0" if text in ("-0", "") else text


def _ts(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------------------------
# Errors


class _Reply(Exception):
    """An Alpaca error answer: HTTP status and a JSON body with `code` and `message`."""

    def __init__(self, status: int, code: int, message: str, **extra: Any) -> None:
        self.status, self.body = status, {"code": code, "message": message, **extra}
        super().__init__(message)


def _unprocessable(message: str, code: int = 40010001) -> _Reply:
    return _Reply(422, code, message)


def _not_found(message: str) -> _Reply:
    return _Reply(404, 40410000, message)


class _Drop(Exception):
    """Close the connection without answering."""


# --------------------------------------------------------------------------------------------
# Rate limit


class _Bucket:
    """A sliding one-minute log of admitted requests."""

    __slots__ = ("log",)

    def __init__(self) -> None:
        self.log: deque[float] = deque()

    def admit(self, limit: int, now: float) -> tuple[bool, int, int]:
        """(admitted, remaining, reset epoch second)."""
        while self.log and self.log[0] + 60.0 <= now:
            self.log.popleft()
        ok = len(self.log) < limit
        if ok:
            self.log.append(now)
        reset = self.log[0] + 60.0 if self.log else now
        return ok, max(0, limit - len(self.log)), int(reset) + 1


# --------------------------------------------------------------------------------------------
# The venue: what Alpaca keeps beyond the paper broker


@dataclass
class _Venue:
    """Alpaca-side facts of one broker's orders (kept with the broker, across restarts)."""

    extended_hours: dict[str, bool] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)  # orders answered with 403/422: not shown


_venues: weakref.WeakKeyDictionary[PaperBroker, _Venue] = weakref.WeakKeyDictionary()


def _venue(broker: PaperBroker) -> _Venue:
    venue = _venues.get(broker)
    if venue is None:
        venue = _venues[broker] = _Venue()
        if ACCOUNT not in broker.accounts:
            broker.open_account(ACCOUNT, "margin", "USD", _SEED_CASH)
            for symbol, qty, cost in _SEED_POSITIONS:
                broker.set_position(ACCOUNT, symbol, qty, cost)
    return venue


@dataclass
class AlpacaServer:
    """A running Alpaca sandbox server.

    `info` is what `Sandbox.start_servers_async` reports (`url`, `data_url`, `host`, `port`,
    `credentials`, `account`); `requests` counts requests by "METHOD /route" (tests read it);
    `rate_limit` (requests per minute, None for none) may be changed while it runs.
    """

    runner: web.AppRunner
    info: dict[str, Any]
    broker: PaperBroker
    rate_limit: int | None = 200
    requests: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return str(self.info["url"])

    async def close(self) -> None:
        """Stop serving; the broker's state stays in the sandbox."""
        await self.runner.cleanup()

    def reset_counters(self) -> None:
        """Forget request counts and the rate-limit windows."""
        self.requests.clear()
        self.rate_limited = 0
        self._buckets.clear()


# --------------------------------------------------------------------------------------------
# JSON shapes


def _alpaca_class(listing: Listing) -> str | None:
    """'us_equity' or 'crypto' for listings Alpaca trades, else None."""
    ac = listing.asset_class
    if ac in (AssetClass.EQUITY, AssetClass.ETF) and listing.currency == "USD" \
            and listing.exchange in _US_EXCHANGES:
        return "us_equity"
    if ac is AssetClass.CRYPTO:
        return "crypto"
    return None


def _asset_json(li: Listing) -> dict[str, Any]:
    crypto = li.asset_class is AssetClass.CRYPTO
    out: dict[str, Any] = {
        "id": _id("asset", li.symbol), "class": _alpaca_class(li),
        "exchange": "CRYPTO" if crypto else _US_EXCHANGES[li.exchange], "symbol": li.symbol,
        "name": li.symbol, "status": "active", "tradable": li.tradable,
        "marginable": not crypto, "shortable": li.shortable and not crypto,
        "easy_to_borrow": li.shortable and not crypto, "fractionable": li.fractionable,
        "maintenance_margin_requirement": 100.0 if crypto else 30.0,
        "price_increment": float(li.tick),
        "attributes": ["fractional_eh_enabled"] if li.fractionable and not crypto else [],
    }
    if crypto:
        out["min_order_size"] = float(li.min_quantity)
        out["min_trade_increment"] = float(li.lot_size)
    return out


def _order_json(o: Order, venue: _Venue) -> dict[str, Any]:
    li = o.listing
    status = o.status
    final_at = o.updated_at if status in (OrderStatus.FILLED, OrderStatus.CANCELED,
                                          OrderStatus.EXPIRED) else None
    otype = o.order_type.value
    return {
        "id": o.order_id, "client_order_id": o.client_order_id,
        "created_at": _ts(o.submitted_at), "updated_at": _ts(o.updated_at),
        "submitted_at": _ts(o.submitted_at),
        "filled_at": _ts(final_at) if status is OrderStatus.FILLED else None,
        "expired_at": _ts(final_at) if status is OrderStatus.EXPIRED else None,
        "canceled_at": _ts(final_at) if status is OrderStatus.CANCELED else None,
        "failed_at": _ts(o.updated_at) if status is OrderStatus.REJECTED else None,
        "replaced_at": None, "replaced_by": None, "replaces": None,
        "asset_id": _id("asset", li.symbol) if li else None, "symbol": o.symbol,
        "asset_class": _alpaca_class(li) if li else None,
        "notional": _s(o.notional),
        "qty": _s(o.quantity) if o.notional is None or status is OrderStatus.FILLED else None,
        "filled_qty": _s(o.filled_quantity), "filled_avg_price": _s(o.avg_fill_price),
        "order_class": "", "order_type": otype, "type": otype, "side": o.side.value,
        "position_intent": None, "time_in_force": o.time_in_force.value,
        "limit_price": _s(o.limit_price), "stop_price": _s(o.stop_price),
        "status": _STATUS[status], "extended_hours": venue.extended_hours.get(o.order_id, False),
        "legs": None, "trail_percent": _s(o.trail_percent), "trail_price": _s(o.trail_price),
        "hwm": _s(o.water_mark), "expires_at": None,
    }


def _quote_json(q: Any, crypto: bool) -> dict[str, Any]:
    if crypto:
        return {"ap": float(q.ask), "as": float(q.ask_size), "bp": float(q.bid),
                "bs": float(q.bid_size), "t": _ts(q.as_of)}
    return {"ap": float(q.ask), "as": int(q.ask_size), "ax": "V", "bp": float(q.bid),
            "bs": int(q.bid_size), "bx": "V", "c": ["R"], "t": _ts(q.as_of), "z": "C"}


def _trade_json(q: Any, crypto: bool, seq: int) -> dict[str, Any]:
    out: dict[str, Any] = {"p": float(q.last), "s": 100 if not crypto else 0.01,
                           "t": _ts(q.as_of), "i": seq}
    if crypto:
        out["tks"] = "B"
    else:
        out.update({"x": "V", "c": ["@"], "z": "C"})
    return out


def _sessions(now: datetime) -> tuple[datetime, datetime]:
    """(next_open, next_close) of the US equity market after `now` (weekdays, no holidays)."""
    local = now.astimezone(_NY)

    def first(t: dtime) -> datetime:
        day = local.date()
        while True:
            at = datetime.combine(day, t, _NY)
            if day.weekday() < 5 and at > local:
                return at
            day += timedelta(days=1)

    return first(_OPEN), first(_CLOSE)


# --------------------------------------------------------------------------------------------
# The application


def make_app(server: AlpacaServer, *, key_id: str, secret_key: str) -> web.Application:
    """The aiohttp application of `server` (its broker, venue, limits and counters)."""
    from aiohttp import web

    broker = server.broker
    market = broker.market
    venue = _venue(broker)
    faults = broker.faults
    assets: dict[str, Listing] = {li.symbol: li for li in market.listings
                                  if _alpaca_class(li) is not None}
    by_id = {_id("asset", s): li for s, li in assets.items()}
    trade_seq = iter(range(52_983_525_029_461, 10**18))

    # -- plumbing -------------------------------------------------------------------------
    def bucket_of(path: str) -> str:
        return "data" if path.startswith(("/v2/stocks", "/v1beta3/")) else "trading"

    def authorized(request: web.Request, bucket: str) -> bool:
        given = (request.headers.get("APCA-API-KEY-ID"), request.headers.get("APCA-API-SECRET-KEY"))
        if given == (None, None) and request.path.startswith("/v1beta3/crypto"):
            return True  # the crypto data API takes anonymous requests
        return given == (key_id, secret_key)

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        route = request.match_info.route.resource
        name = route.canonical if route is not None else request.path
        server.requests[f"{request.method} {name}"] += 1
        bucket = bucket_of(request.path)
        headers: dict[str, str] = {}
        try:
            if not authorized(request, bucket):
                if bucket == "data":
                    raise _Reply(403, 40110000, "access key verification failed")
                raise _Reply(401, 40110000, "request is not authorized")
            limit = server.rate_limit
            if limit:
                ok, remaining, reset = server._buckets.setdefault(bucket, _Bucket()).admit(
                    limit, time.monotonic())
                reset += int(time.time() - time.monotonic())
                headers = {"X-Ratelimit-Limit": str(limit),
                           "X-Ratelimit-Remaining": str(remaining),
                           "X-Ratelimit-Reset": str(reset)}
                if not ok:
                    server.rate_limited += 1
                    raise _Reply(429, 42910000, "rate limit exceeded")
            response = await handler(request)
        except _Reply as exc:
            response = web.json_response(exc.body, status=exc.status)
        except _Drop:
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError() from None
        response.headers.update(headers)
        return response

    async def fault(endpoint: str) -> None:
        try:
            await faults.apply(endpoint)
        except InjectedFault as exc:
            if exc.status == 429:
                raise _Reply(429, 42910000, "rate limit exceeded") from None
            raise _Reply(exc.status, exc.status * 100_000, str(exc)) from None
        except TimeoutError:
            raise _Reply(504, 50400000, "gateway timeout") from None

    def endpoint(name: str, fn: Callable[[web.Request], Awaitable[Any]]
                 ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            await fault(name)
            broker.process()
            out = await fn(request)
            if isinstance(out, web.StreamResponse):
                return out
            return web.json_response(out)

        return handle

    def asset(symbol: str) -> Listing | None:
        text = symbol.strip().upper()
        found = assets.get(text) or by_id.get(symbol.strip().lower())
        if found is None and "/" not in text:
            for quote in ("USD", "USDT", "BTC"):
                if text.endswith(quote) and f"{text[:-len(quote)]}/{quote}" in assets:
                    return assets[f"{text[:-len(quote)]}/{quote}"]
        return found

    def visible(o: Order) -> bool:
        return o.order_id not in venue.refused

    def decimal_param(data: Mapping[str, Any], name: str) -> Decimal | None:
        value = data.get(name)
        if value is None:
            return None
        try:
            d = to_decimal(value, name)
        except InvalidIntent:
            raise _unprocessable(f"invalid {name}: {value!r}") from None
        if d <= 0:
            raise _unprocessable(f"{name} must be > 0")
        return d

    def time_param(request: web.Request, name: str) -> datetime | None:
        raw = request.query.get(name)
        if not raw:
            return None
        try:
            at = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise _unprocessable(f"invalid {name}: {raw!r}") from None
        return at if at.tzinfo else at.replace(tzinfo=UTC)

    def int_param(request: web.Request, name: str, default: int, maximum: int) -> int:
        raw = request.query.get(name)
        if raw is None or raw == "":
            return default
        try:
            n = int(raw)
        except ValueError:
            raise _unprocessable(f"invalid {name}: {raw!r}") from None
        if n < 1:
            raise _unprocessable(f"{name} must be >= 1")
        return min(n, maximum)

    def order_of(order_id: str) -> Order:
        try:
            o = broker.order(order_id)
        except UnknownOrder:
            raise _not_found("order not found") from None
        if o.account != ACCOUNT or not visible(o):
            raise _not_found("order not found")
        return o

    # -- account and positions ------------------------------------------------------------
    async def account(request: web.Request) -> dict[str, Any]:
        acct = broker.account(ACCOUNT)
        rows = [r for r in broker.balances([ACCOUNT]) if r.currency == "USD"]
        row = rows[0]
        long_mv = sum(p.market_value for p in broker.positions([ACCOUNT]) if p.quantity > 0)
        short_mv = sum(p.market_value for p in broker.positions([ACCOUNT]) if p.quantity < 0)
        bp = broker.buying_power(ACCOUNT)
        margin = acct.type == "margin"
        return {
            "id": _id("account", ACCOUNT), "account_number": ACCOUNT, "status": "ACTIVE",
            "crypto_status": "ACTIVE", "currency": "USD", "buying_power": _s(bp),
            "regt_buying_power": _s(bp), "daytrading_buying_power": "0",
            "non_marginable_buying_power": _s(bp / 2 if margin else bp),
            "cash": _s(row.cash), "accrued_fees": "0", "pending_transfer_in": "0",
            "pending_transfer_out": "0", "portfolio_value": _s(row.equity),
            "equity": _s(row.equity), "last_equity": _s(row.equity),
            "long_market_value": _s(long_mv), "short_market_value": _s(short_mv),
            "initial_margin": _s(row.margin_init), "maintenance_margin": _s(row.margin_maint),
            "last_maintenance_margin": _s(row.margin_maint), "sma": "0",
            "multiplier": "2" if margin else "1", "shorting_enabled": margin,
            "pattern_day_trader": False, "trading_blocked": False, "transfers_blocked": False,
            "account_blocked": False, "trade_suspended_by_user": False,
            "created_at": _CREATED, "daytrade_count": 0, "options_buying_power": _s(bp / 2),
            "options_approved_level": 0, "options_trading_level": 0,
        }

    def position_json(p: Any) -> dict[str, Any]:
        li = p.listing
        qty = Decimal(repr(p.quantity))
        cost = Decimal(repr(p.avg_cost)) * qty
        mv = Decimal(repr(p.market_value))
        price = Decimal(repr(p.market_price))
        pl = mv - cost
        crypto = li.asset_class is AssetClass.CRYPTO
        return {
            "asset_id": _id("asset", li.symbol), "symbol": li.symbol.replace("/", ""),
            "exchange": "CRYPTO" if crypto else _US_EXCHANGES.get(li.exchange, ""),
            "asset_class": _alpaca_class(li) or "us_equity", "asset_marginable": not crypto,
            "avg_entry_price": _s(p.avg_cost), "qty": _s(qty), "qty_available": _s(qty),
            "side": "long" if qty > 0 else "short", "market_value": _s(mv),
            "cost_basis": _s(cost), "unrealized_pl": _s(pl),
            "unrealized_plpc": _s(round(pl / abs(cost), 6)) if cost else "0",
            "unrealized_intraday_pl": _s(pl),
            "unrealized_intraday_plpc": _s(round(pl / abs(cost), 6)) if cost else "0",
            "current_price": _s(price), "lastday_price": _s(price), "change_today": "0",
        }

    async def positions(request: web.Request) -> list[dict[str, Any]]:
        return [position_json(p) for p in broker.positions([ACCOUNT])
                if _alpaca_class(p.listing)]

    async def position(request: web.Request) -> dict[str, Any]:
        li = asset(request.match_info["symbol"])
        for p in broker.positions([ACCOUNT]):
            if li is not None and p.listing.key == li.key:
                return position_json(p)
        raise _not_found("position does not exist")

    # -- orders ---------------------------------------------------------------------------
    def check_order(data: Mapping[str, Any]) -> dict[str, Any]:
        """Alpaca's own order rules; returns the broker.submit keywords."""
        if data.get("order_class") not in (None, "", "simple"):
            raise _unprocessable(f"order_class {data['order_class']!r} is not supported")
        symbol = data.get("symbol")
        if not isinstance(symbol, str) or not symbol:
            raise _unprocessable("symbol is required")
        side, otype, tif = data.get("side"), data.get("type"), data.get("time_in_force")
        if side not in ("buy", "sell"):
            raise _unprocessable(f"invalid side: {side!r}" if side else "side is required")
        if otype not in {t.value for t in OrderType}:
            raise _unprocessable(f"invalid order type: {otype!r}" if otype
                                 else "type is required")
        if tif not in {t.value for t in TimeInForce}:
            raise _unprocessable(f"invalid time_in_force: {tif!r}" if tif
                                 else "time_in_force is required")
        qty, notional = decimal_param(data, "qty"), decimal_param(data, "notional")
        if (qty is None) == (notional is None):
            raise _unprocessable("qty or notional is required" if qty is None
                                 else "only one of qty or notional may be given")
        prices = {n: decimal_param(data, n) for n in ("limit_price", "stop_price",
                                                       "trail_price", "trail_percent")}
        order_type = OrderType(otype)
        needs = {"limit": ("limit_price",), "stop": ("stop_price",),
                 "stop_limit": ("limit_price", "stop_price")}.get(otype, ())
        for name in ("limit_price", "stop_price"):
            if name in needs and prices[name] is None:
                raise _unprocessable(f"{name} is required for {otype} orders")
            if name not in needs and prices[name] is not None:
                raise _unprocessable(f"{name} must not be given for {otype} orders")
        trails = [n for n in ("trail_price", "trail_percent") if prices[n] is not None]
        if order_type is OrderType.TRAILING_STOP and len(trails) != 1:
            raise _unprocessable("exactly one of trail_price or trail_percent is required")
        if order_type is not OrderType.TRAILING_STOP and trails:
            raise _unprocessable(f"{trails[0]} is only for trailing_stop orders")
        coid = data.get("client_order_id")
        if coid is None or coid == "":
            coid = str(uuid.uuid4())
        if not isinstance(coid, str) or len(coid) > _MAX_CLIENT_ID:
            raise _unprocessable(f"client_order_id must be a string of at most "
                                 f"{_MAX_CLIENT_ID} characters")
        li = asset(symbol)
        if li is None:
            raise _unprocessable(f"asset {symbol!r} not found")
        extended = data.get("extended_hours") in (True, "true", "True")
        fractional = notional is not None or (qty is not None and qty % 1 != 0)
        time_in_force = TimeInForce(tif)
        if li.asset_class is AssetClass.CRYPTO:
            if order_type not in CRYPTO_ORDER_TYPES:
                raise _unprocessable(f"{otype} orders are not supported for crypto", 42210000)
            if time_in_force not in CRYPTO_TIME_IN_FORCE:
                raise _unprocessable(f"invalid crypto time_in_force {tif}", 42210000)
        else:
            if extended and (order_type is not OrderType.LIMIT
                             or time_in_force is not TimeInForce.DAY):
                raise _unprocessable("extended hours order must be DAY limit orders", 42210000)
            if notional is not None and order_type not in NOTIONAL_ORDER_TYPES:
                raise _unprocessable("notional orders only supported for market orders",
                                     42210000)
            if fractional:
                if not li.fractionable:
                    raise _unprocessable(f"asset {li.symbol} is not fractionable", 42210000)
                if order_type not in FRACTIONAL_ORDER_TYPES:
                    raise _unprocessable(f"fractional orders are not supported for {otype} "
                                         f"orders", 42210000)
                if time_in_force not in FRACTIONAL_TIME_IN_FORCE:
                    raise _unprocessable("fractional orders must be DAY orders", 42210000)
        return {"symbol": li.key, "side": Side(side), "quantity": qty, "notional": notional,
                "order_type": order_type, "time_in_force": time_in_force,
                "client_order_id": coid, "extended_hours": extended,
                **{n: v for n, v in prices.items() if v is not None}}

    def refusal(o: Order, kwargs: Mapping[str, Any]) -> _Reply:
        """Alpaca's answer to an order the paper broker rejected."""
        reason = o.reason
        if "insufficient buying power" in reason:
            li = o.listing
            assert li is not None
            price = kwargs.get("limit_price") or kwargs.get("stop_price") \
                or market.quote(li).ask
            cost = o.notional if o.quantity is None else o.quantity * price
            return _Reply(403, 40310000, "insufficient buying power",
                          buying_power=_s(broker.buying_power(ACCOUNT)),
                          cost_basis=_s(cost))
        if "short sale" in reason or "not shortable" in reason:
            held = next((p.quantity for p in broker.positions([ACCOUNT])
                         if o.listing and p.listing.key == o.listing.key), 0.0)
            if "not shortable" in reason:
                return _Reply(403, 40310000, f"asset {o.symbol} cannot be sold short")
            return _Reply(403, 40310000, f"insufficient qty available for order (requested: "
                          f"{_s(o.quantity)}, available: {_s(held)})",
                          available=_s(held), symbol=o.symbol)
        if "not a multiple of the tick" in reason:
            name = reason.split()[0]
            return _unprocessable(f"invalid {name} {_s(getattr(o, name))}. sub-penny increment "
                                  f"does not fulfill minimum pricing criteria", 42210000)
        if "not tradable" in reason:
            return _unprocessable(f"asset {o.symbol} is not tradable", 42210000)
        return _unprocessable(reason, 42210000)

    async def submit(request: web.Request) -> web.StreamResponse:
        try:
            data = await request.json()
        except ValueError:
            raise _unprocessable("request body format is invalid") from None
        if not isinstance(data, dict):
            raise _unprocessable("request body format is invalid")
        await fault("submit")
        broker.process()
        kwargs = check_order(data)
        extended = kwargs.pop("extended_hours")
        symbol = kwargs.pop("symbol")
        try:
            o = broker.submit(ACCOUNT, symbol, **kwargs)
        except DuplicateClientOrderId:
            raise _unprocessable("client_order_id must be unique") from None
        if o.status is OrderStatus.REJECTED:
            venue.refused.add(o.order_id)
            raise refusal(o, kwargs)
        venue.extended_hours[o.order_id] = extended
        if faults.take_drop("submit"):
            raise _Drop()
        return web.json_response(_order_json(o, venue))

    async def list_orders(request: web.Request) -> list[dict[str, Any]]:
        q = request.query
        status = q.get("status", "open")
        if status not in ("open", "closed", "all"):
            raise _unprocessable(f"invalid status: {status!r}")
        limit = int_param(request, "limit", 50, 500)
        after, until = time_param(request, "after"), time_param(request, "until")
        direction = q.get("direction", "desc")
        if direction not in ("asc", "desc"):
            raise _unprocessable(f"invalid direction: {direction!r}")
        side = q.get("side")
        symbols = {s.strip().upper() for s in q.get("symbols", "").split(",") if s.strip()}
        out = []
        for o in broker.orders([ACCOUNT]):
            if not visible(o) or (side and o.side.value != side):
                continue
            is_open = o.status in _OPEN_STATUSES
            if (status == "open" and not is_open) or (status == "closed" and is_open):
                continue
            if symbols and o.symbol not in symbols:
                continue
            at = o.submitted_at
            if at is not None and ((after and at <= after) or (until and at >= until)):
                continue
            out.append(o)
        if direction == "desc":
            out.reverse()
        return [_order_json(o, venue) for o in out[:limit]]

    async def get_order(request: web.Request) -> dict[str, Any]:
        return _order_json(order_of(request.match_info["order_id"]), venue)

    async def by_client_id(request: web.Request) -> dict[str, Any]:
        coid = request.query.get("client_order_id", "")
        o = broker.find_client_order(coid, [ACCOUNT]) if coid else None
        if o is None or not visible(o):
            raise _not_found("order not found")
        return _order_json(o, venue)

    async def cancel(request: web.Request) -> web.StreamResponse:
        o = order_of(request.match_info["order_id"])
        if o.status not in _OPEN_STATUSES:
            raise _unprocessable(f'order is already in "{_STATUS[o.status]}" state', 42210000)
        broker.cancel(o.order_id)
        return web.Response(status=204)

    async def cancel_all(request: web.Request) -> web.StreamResponse:
        out = []
        for o in broker.orders([ACCOUNT]):
            if visible(o) and o.status in _OPEN_STATUSES:
                broker.cancel(o.order_id)
                out.append({"id": o.order_id, "status": 200, "body": _order_json(o, venue)})
        return web.json_response(out, status=207)

    # -- activities -----------------------------------------------------------------------
    def fill_activities() -> list[dict[str, Any]]:
        cum: dict[str, Decimal] = {}
        out = []
        for f in broker.fills([ACCOUNT]):
            o = broker.order(f.order_id)
            cum[f.order_id] = cum.get(f.order_id, Decimal(0)) + f.quantity
            leaves = (o.quantity or cum[f.order_id]) - cum[f.order_id]
            out.append(activity_json(f, cum[f.order_id], leaves))
        return out

    def activity_json(f: Fill, cum: Decimal, leaves: Decimal) -> dict[str, Any]:
        at = f.executed_at.astimezone(UTC)
        partial = leaves > 0
        return {
            "id": f"{at:%Y%m%d%H%M%S}{at.microsecond // 1000:03d}::{_id('fill', f.fill_id)}",
            "activity_type": "FILL", "transaction_time": _ts(at),
            "type": "partial_fill" if partial else "fill", "price": _s(f.price),
            "qty": _s(f.quantity), "side": f.side.value, "symbol": f.symbol,
            "leaves_qty": _s(leaves), "order_id": f.order_id,
            "cum_qty": _s(cum), "order_status": "partially_filled" if partial else "filled",
        }

    async def activities(request: web.Request) -> list[dict[str, Any]]:
        q = request.query
        kinds = request.match_info.get("activity_type") or q.get("activity_types", "")
        wanted = {k.strip().upper() for k in kinds.split(",") if k.strip()}
        for kind in wanted:
            if kind not in _ACTIVITY_TYPES:
                raise _unprocessable(f"invalid activity type: {kind}")
        category = q.get("category")
        if category not in (None, "trade_activity", "non_trade_activity"):
            raise _unprocessable(f"invalid category: {category}")
        if (wanted and "FILL" not in wanted) or category == "non_trade_activity":
            return []
        items = fill_activities()
        after, until = time_param(request, "after"), time_param(request, "until")
        day = q.get("date")
        if day:
            try:
                d = date.fromisoformat(day[:10])
            except ValueError:
                raise _unprocessable(f"invalid date: {day!r}") from None
            after = datetime.combine(d, dtime(), _NY)
            until = after + timedelta(days=1)
        if after or until:
            items = [a for a in items
                     if (not after or _at(a) > after) and (not until or _at(a) < until)]
        direction = q.get("direction", "desc")
        if direction not in ("asc", "desc"):
            raise _unprocessable(f"invalid direction: {direction!r}")
        if direction == "desc":
            items.reverse()
        token = q.get("page_token")
        if token:
            ids = [a["id"] for a in items]
            if token not in ids:
                raise _unprocessable(f"invalid page_token: {token!r}")
            items = items[ids.index(token) + 1:]
        return items[:int_param(request, "page_size", 100, 100)]

    # -- assets, clock, calendar ----------------------------------------------------------
    async def list_assets(request: web.Request) -> list[dict[str, Any]]:
        q = request.query
        status, klass, exchange = q.get("status"), q.get("asset_class"), q.get("exchange")
        attributes = {a for a in q.get("attributes", "").split(",") if a}
        out = []
        for li in assets.values():
            a = _asset_json(li)
            if (status and status != a["status"]) or (klass and klass != a["class"]) \
                    or (exchange and exchange != a["exchange"]) \
                    or (attributes and not attributes & set(a["attributes"])):
                continue
            out.append(a)
        return out

    async def get_asset(request: web.Request) -> dict[str, Any]:
        symbol = request.match_info["symbol"]
        li = asset(symbol)
        if li is None:
            raise _not_found(f"asset not found for {symbol}")
        return _asset_json(li)

    async def clock(request: web.Request) -> dict[str, Any]:
        now = market.now()
        next_open, next_close = _sessions(now)
        return {"timestamp": now.astimezone(_NY).isoformat(),
                "is_open": market.is_open(assets["AAPL"]) if "AAPL" in assets else False,
                "next_open": next_open.isoformat(), "next_close": next_close.isoformat()}

    async def calendar(request: web.Request) -> list[dict[str, Any]]:
        today = market.now().astimezone(_NY).date()
        try:
            start = date.fromisoformat(request.query.get("start", "")[:10]) \
                if request.query.get("start") else today - timedelta(days=30)
            end = date.fromisoformat(request.query.get("end", "")[:10]) \
                if request.query.get("end") else today + timedelta(days=30)
        except ValueError:
            raise _unprocessable("invalid start or end date") from None
        out, day = [], start
        while day <= end and len(out) < 10_000:
            if day.weekday() < 5:
                settle = day + timedelta(days=1 if day.weekday() < 4 else 3)
                out.append({"date": day.isoformat(), "open": "09:30", "close": "16:00",
                            "session_open": "0400", "session_close": "2000",
                            "settlement_date": settle.isoformat()})
            day += timedelta(days=1)
        return out

    # -- market data ----------------------------------------------------------------------
    def data_symbols(request: web.Request, crypto: bool) -> list[Listing]:
        raw = request.match_info.get("symbol") or request.query.get("symbols", "")
        names = [s.strip() for s in raw.split(",") if s.strip()]
        if not names:
            raise _Reply(400, 40010001, "symbols is required")
        out = []
        for name in names:
            li = asset(name)
            if li is not None and (li.asset_class is AssetClass.CRYPTO) == crypto:
                out.append(li)
        return out

    def latest(kind: str, crypto: bool, single: bool = False
               ) -> Callable[[web.Request], Awaitable[dict[str, Any]]]:
        async def handle(request: web.Request) -> dict[str, Any]:
            listings = data_symbols(request, crypto)
            rows = {}
            for q in market.quotes(listings):
                rows[q.symbol] = _quote_json(q, crypto) if kind == "quote" \
                    else _trade_json(q, crypto, next(trade_seq))
            if single:
                if not rows:
                    raise _not_found(f"no {kind} found for {request.match_info['symbol']}")
                symbol, row = next(iter(rows.items()))
                return {"symbol": symbol, kind: row}
            return {f"{kind}s": rows}

        return handle

    app = web.Application(middlewares=[middleware])
    r = app.router
    r.add_get("/v2/account", endpoint("balances", account))
    r.add_get("/v2/positions", endpoint("positions", positions))
    r.add_get("/v2/positions/{symbol:.+}", endpoint("positions", position))
    r.add_post("/v2/orders", submit)
    r.add_get("/v2/orders", endpoint("orders", list_orders))
    r.add_delete("/v2/orders", endpoint("cancel", cancel_all))
    r.add_get("/v2/orders:by_client_order_id", endpoint("lookup", by_client_id))
    r.add_get("/v2/orders/{order_id}", endpoint("lookup", get_order))
    r.add_delete("/v2/orders/{order_id}", endpoint("cancel", cancel))
    r.add_get("/v2/account/activities", endpoint("fills", activities))
    r.add_get("/v2/account/activities/{activity_type}", endpoint("fills", activities))
    r.add_get("/v2/assets", endpoint("instruments", list_assets))
    r.add_get("/v2/assets/{symbol:.+}", endpoint("instruments", get_asset))
    r.add_get("/v2/clock", endpoint("clock", clock))
    r.add_get("/v2/calendar", endpoint("clock", calendar))
    for kind in ("quote", "trade"):
        r.add_get(f"/v2/stocks/{kind}s/latest", endpoint("quotes", latest(kind, False)))
        r.add_get(f"/v2/stocks/{{symbol}}/{kind}s/latest",
                  endpoint("quotes", latest(kind, False, single=True)))
        r.add_get(f"/v1beta3/crypto/us/latest/{kind}s", endpoint("quotes", latest(kind, True)))
    return app


def _at(activity: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(str(activity["transaction_time"]).replace("Z", "+00:00"))


async def start_alpaca(sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0, *,
                       key_id: str = DEMO_KEY_ID, secret_key: str = DEMO_SECRET_KEY,
                       rate_limit: int | None = 200, broker: str = "alpaca") -> AlpacaServer:
    """Serve an Alpaca-compatible API for `sandbox`'s broker `broker` on `host` (a free port
    unless given); returns the running server. `rate_limit` is requests per minute (None or
    0: no limit)."""
    from aiohttp import web

    if rate_limit is not None and (isinstance(rate_limit, bool) or not isinstance(rate_limit, int)
                                   or rate_limit < 0):
        raise ValueError(f"rate_limit must be a number of requests per minute >= 0 or None, "
                         f"got {rate_limit!r}")
    for name, value in (("key_id", key_id), ("secret_key", secret_key)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string")
    paper = sandbox.broker(broker)
    server = AlpacaServer(runner=None, info={}, broker=paper,  # type: ignore[arg-type]
                          rate_limit=rate_limit or None)
    runner = web.AppRunner(make_app(server, key_id=key_id, secret_key=secret_key),
                           access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound}"
    server.runner = runner
    server.info = {"url": url, "data_url": url, "host": host, "port": bound,
                   "account": ACCOUNT,
                   "credentials": {"key_id": key_id, "secret_key": secret_key}}
    return server
