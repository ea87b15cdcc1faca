"""`AlpacaAdapter`: the connection type "alpaca", over alpaca-py's official clients.

Uses `TradingClient` (account, positions, orders, activities, assets, clock) and
`StockHistoricalDataClient` / `CryptoHistoricalDataClient` (latest quotes and trades).
alpaca-py is synchronous: every call runs in a worker thread, so the runtime loop never blocks.
Options (`ConnectionConfig.options`):

==============  ==============================================================================
paper           true (default): paper trading endpoints; false: live
url             trading base URL override (e.g. the sandbox's); no trailing slash
data_url        market-data base URL override (default: `url` when given)
timeout         seconds an HTTP request may take (default 10); a submit that times out raises
                `SubmitUncertain`
rate_limit      false, or { requests = N, per_seconds = S }: replaces Alpaca's 200/min as the
                pipeline's budget for orders (read by `brokerkit.execution`)
request_limit   false, or N: requests per minute the adapter sends in all (reads, orders,
                cancels); default: the `rate_limit` windows. With `rate_limit` set under it
                (e.g. 192 for 200), reads get what orders leave, and beyond that share are
                served from their last answer
==============  ==============================================================================

Secrets (`ConnectionConfig.secrets`): `api_key` and `secret_key`, names in the secret store.

Submits are sent exactly once: the client that sends orders has alpaca-py's 429/504 retries
turned off (`_retry = 0`), and a timeout or dropped connection raises `SubmitUncertain` so the
pipeline looks the order up by client order id. A broker refusal (4xx) comes back as a
REJECTED `BrokerOrder` with Alpaca's message. Every request first passes the connection's own
rate limiter (Alpaca's published limit, a little stricter so skew never trips the server),
one budget per API key for every process on the book when the brokerage service hands down
the book's store (`Adapter.rate_limits`, `brokerkit.execution.sharedlimit`);
under rate pressure, balances, positions, fills and the clock are served from their last
answer (at most `STALE_READ_S` old) rather than spend a request an order needs, and a submit
that would wait more than `SUBMIT_WAIT_MAX` for a slot is refused unsent.

Alpaca's order rules are data in `brokerkit.venues.alpaca` (`NOTIONAL_ORDER_TYPES`,
`FRACTIONAL_ORDER_TYPES`, `MIN_NOTIONAL`...), checked pre-trade by `check_intent`; the Alpaca
sandbox server enforces the same facts with its own code.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from .. import frames
from ..errors import AdapterError, ConfigError, ConnectionDown, SubmitUncertain
from ..model import (
    AssetClass,
    Instrument,
    OrderIntent,
    OrderStatus,
    OrderType,
    Violation,
)
from ..venues import alpaca as venue
from .base import Adapter, BrokerOrder, Capabilities, Options, fills_frame

if TYPE_CHECKING:
    import pandas as pd

    from ..config import ConnectionConfig
    from ..execution.ratelimit import RateLimiter
    from ..secrets import Secret

__all__ = [
    "CRYPTO_ORDER_TYPES",
    "CRYPTO_TIME_IN_FORCE",
    "EXTENDED_HOURS_ORDER_TYPES",
    "EXTENDED_HOURS_TIME_IN_FORCE",
    "FRACTIONAL_ORDER_TYPES",
    "FRACTIONAL_TIME_IN_FORCE",
    "NOTIONAL_ORDER_TYPES",
    "AlpacaAdapter",
]

T = TypeVar("T")

# -- Alpaca's order rules: data in brokerkit.venues.alpaca, each with its source ---------------
NOTIONAL_ORDER_TYPES = venue.NOTIONAL_ORDER_TYPES
FRACTIONAL_ORDER_TYPES = venue.FRACTIONAL_ORDER_TYPES
FRACTIONAL_TIME_IN_FORCE = venue.FRACTIONAL_TIME_IN_FORCE
EXTENDED_HOURS_ORDER_TYPES = venue.EXTENDED_HOURS_ORDER_TYPES
EXTENDED_HOURS_TIME_IN_FORCE = venue.EXTENDED_HOURS_TIME_IN_FORCE
CRYPTO_ORDER_TYPES = venue.CRYPTO_ORDER_TYPES
CRYPTO_TIME_IN_FORCE = venue.CRYPTO_TIME_IN_FORCE

#: Seconds balances and positions may be served from their last answer under rate pressure.
STALE_READ_S = 60.0
#: Seconds added to each rate window, so client/server timing skew never trips the server.
RATE_SKEW_S = 0.5
DEFAULT_TIMEOUT = 10.0
#: Longest wait for a request slot before a submit; longer, and it is refused unsent.
SUBMIT_WAIT_MAX = 5.0
#: Fills of at most this many unknown orders look those orders up one by one; more, and the
#: adapter lists the latest 500 orders once.
ORDER_LOOKUPS_MAX = 5
#: Orders per page of `GET /v2/orders`: Alpaca's maximum `limit` (Alpaca API reference, "Get
#: All Orders": "Defaults to 50 and max is 500"; alpaca-py `GetOrdersRequest`).
ORDERS_PAGE = 500

_OPTIONS = {"paper", "url", "data_url", "timeout", "rate_limit", "request_limit"}
_NY = ZoneInfo("America/New_York")
_CRYPTO_QUOTES = ("USDT", "USDC", "USD", "BTC")
_STATUS: dict[str, OrderStatus] = {
    "new": OrderStatus.ACCEPTED, "accepted": OrderStatus.ACCEPTED,
    "pending_new": OrderStatus.PENDING, "accepted_for_bidding": OrderStatus.ACCEPTED,
    "held": OrderStatus.ACCEPTED, "calculated": OrderStatus.ACCEPTED,
    "stopped": OrderStatus.ACCEPTED, "pending_cancel": OrderStatus.ACCEPTED,
    "pending_replace": OrderStatus.ACCEPTED, "pending_review": OrderStatus.PENDING,
    "done_for_day": OrderStatus.ACCEPTED, "partially_filled": OrderStatus.PARTIALLY_FILLED,
    "filled": OrderStatus.FILLED, "canceled": OrderStatus.CANCELED,
    "replaced": OrderStatus.CANCELED, "expired": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED, "suspended": OrderStatus.REJECTED,
}


def _f(value: Any) -> float:
    """A float from Alpaca's decimal strings and numbers; NaN for None and ''."""
    if value is None or value == "":
        return math.nan
    return float(value)


def _v(value: Any) -> str:
    """An enum's value or the string itself."""
    return str(getattr(value, "value", value))


def _crypto_symbol(symbol: str) -> str:
    """'BTC/USD' from 'BTCUSD' or 'BTC/USD'."""
    if "/" in symbol:
        return symbol
    for quote in _CRYPTO_QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return f"{symbol[:-len(quote)]}/{quote}"
    return symbol


def _instrument(symbol: str, crypto: bool) -> Instrument:
    if crypto:
        base, _, quote = _crypto_symbol(symbol).partition("/")
        return Instrument.crypto(base, quote or "USD")
    return Instrument.equity(symbol)


def _describe(exc: BaseException) -> str:
    """Alpaca's message and status from an `APIError`, else the exception's text."""
    status = getattr(exc, "status_code", None)
    if status is not None:
        try:
            message = exc.message  # type: ignore[attr-defined]
        except Exception:  # a body without JSON or without `message`
            message = str(exc)[:200]
        return f"{message} (HTTP {status})"
    return str(exc) or type(exc).__name__


class AlpacaAdapter(Adapter):
    """A trading connection to Alpaca (paper or live), or to the Alpaca sandbox server."""

    institution = "Alpaca"
    capabilities = Capabilities(
        trading=True,
        asset_classes=frozenset({AssetClass.EQUITY, AssetClass.ETF, AssetClass.CRYPTO}),
        fractional=True, notional=True, order_types=frozenset(OrderType),
        notional_order_types=NOTIONAL_ORDER_TYPES, short_selling=True)

    def __init__(self, config: ConnectionConfig, secrets: Mapping[str, Secret] | None = None
                 ) -> None:
        super().__init__(config, secrets)
        opts = Options(config, _OPTIONS)
        fail, where = opts.fail, opts.where
        self._paper = opts.flag("paper", True)
        for key in ("url", "data_url"):
            value = opts.get(key)
            if value is not None and not (isinstance(value, str) and _is_url(value)):
                raise fail(key, value, "an http(s) URL without a trailing slash")
        self._url: str | None = opts.get("url")
        self._data_url: str | None = opts.get("data_url") or self._url
        timeout = opts.get("timeout", DEFAULT_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise fail("timeout", timeout, "a number of seconds > 0")
        self._timeout = float(timeout)
        missing = [k for k in ("api_key", "secret_key") if k not in self.secrets]
        if missing:
            raise ConfigError(f"secret {missing[0]!r} is not configured",
                              key=f"connections.{config.name}.secrets.{missing[0]}",
                              expected="the name of a secret in the store")
        self._limiter = _request_limiter(opts, config.name, f"{where}.request_limit")
        self._data_limiter = _request_limiter(opts, config.name, f"{where}.request_limit")
        self._read_limiter = _read_limiter(opts, self._limiter, config.name)
        #: this process's own request limiters, shared per key on connect (`_share_limits`)
        self._own_limiters = (self._limiter, self._data_limiter, self._read_limiter)
        self._trading: Any = None  # TradingClient for reads and cancels
        self._orders: Any = None  # TradingClient that sends orders: no retries
        self._stocks: Any = None
        self._crypto: Any = None
        self._account: str | None = None
        self._account_type: str | None = None
        self._coids: dict[str, str] = {}  # order id -> client order id
        self._crypto_symbols: set[str] = set()
        self._cache: dict[str, tuple[float, Any]] = {}  # last answers, for rate pressure
        self._clock: tuple[float, float, bool] | None = None  # fresh until, change, open

    @property
    def accounts(self) -> list[str]:
        return [self._account] if self._account else list(self.config.accounts)

    # -- lifecycle ------------------------------------------------------------------------
    async def connect_async(self) -> None:
        """Build the clients and read the account; raises `ConnectionDown` on failure."""
        url, data_url, keys = await self._endpoints()
        try:
            self._build(url, data_url, keys)
            account = await self._call(self._trading.get_account)
        except AdapterError as exc:
            raise ConnectionDown(self.name, f"connect failed: {exc}") from exc
        self._account = str(account.account_number)
        self._account_type = "cash" if str(account.multiplier or "1") == "1" else "margin"
        self._cache["account"] = (time.monotonic(), account)
        if self.config.accounts and self._account not in self.config.accounts:
            wanted = ", ".join(self.config.accounts)
            raise ConnectionDown(self.name, f"connect failed: the keys are for account "
                                            f"{self._account}, not {wanted}")

    async def close_async(self) -> None:
        for client in (self._trading, self._orders, self._stocks, self._crypto):
            session = getattr(client, "_session", None)
            if session is not None:
                session.close()
        self._trading = self._orders = self._stocks = self._crypto = None

    async def _endpoints(self) -> tuple[str | None, str | None, tuple[str, str]]:
        """Trading URL, data URL and (key id, secret key) for the clients."""
        url, data_url = self._url, self._data_url
        keys: tuple[str, str] | None = None
        if "api_key" in self.secrets and "secret_key" in self.secrets:
            keys = (self.secrets["api_key"].reveal(), self.secrets["secret_key"].reveal())
        assert keys is not None  # checked in __init__
        return url, data_url, keys

    def _build(self, url: str | None, data_url: str | None, keys: tuple[str, str]) -> None:
        from alpaca.data.historical import CryptoHistoricalDataClient, StockHistoricalDataClient
        from alpaca.trading.client import TradingClient

        key, secret = keys
        self._share_limits(key)
        self._trading = TradingClient(key, secret, paper=self._paper, url_override=url)
        self._orders = TradingClient(key, secret, paper=self._paper, url_override=url)
        # RESTClient's constructor treats 0 as "default", so set the attribute it reads:
        # a 429 or 504 on a submit is answered once, never re-sent behind our back.
        self._orders._retry = 0
        self._stocks = StockHistoricalDataClient(key, secret, url_override=data_url)
        self._crypto = CryptoHistoricalDataClient(key, secret, url_override=data_url)
        local = url is not None and urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1")
        for client in (self._trading, self._orders, self._stocks, self._crypto):
            _configure_session(client._session, self._timeout, trust_env=not local)

    def _share_limits(self, key_id: str) -> None:
        """With the book's store handed down (`rate_limits`), make the request limiters one
        budget per API key for every process on the book: `alpaca:<sha256(key id)[:16]>` for
        the trading API, the same with `:data` for the market-data limiter and `:reads` for
        the reads' share."""
        if self.rate_limits is None:
            return
        from ..execution.sharedlimit import credential_key

        key = credential_key("alpaca", key_id=key_id)
        if getattr(self._limiter, "key", None) != key:  # not yet, or the key was rotated
            own, own_data, own_reads = self._own_limiters
            self._limiter = self.rate_limits.share(own, key)
            self._data_limiter = self.rate_limits.share(own_data, f"{key}:data")
            if own_reads is not None:
                self._read_limiter = self.rate_limits.share(own_reads, f"{key}:reads")

    # -- calls ----------------------------------------------------------------------------
    async def _call(self, fn: Callable[..., T], *args: Any, data: bool = False,
                    operation: str = "read") -> T:
        """Run one alpaca-py call in a worker thread, within the rate limit; errors become
        `AdapterError` (`ConnectionDown` when not connected)."""
        if self._trading is None:
            raise ConnectionDown(self.name, "not connected; call connect() first")
        await (self._data_limiter if data else self._limiter).acquire(operation=operation)
        if not data and self._read_limiter is not None:
            self._read_limiter.try_acquire(operation=operation)  # recorded when it has room
        try:
            return await asyncio.to_thread(fn, *args)
        except Exception as exc:
            raise AdapterError(self.name, _describe(exc)) from exc

    async def _read(self, key: str, fn: Callable[[], T]) -> T:
        """A read that, while the rate limit is full, returns its last answer when that is at
        most `STALE_READ_S` old instead of waiting for a request an order needs."""
        hit = self._cache.get(key)
        if hit is not None and self._pressed() and time.monotonic() - hit[0] < STALE_READ_S:
            return hit[1]  # type: ignore[no-any-return]
        value = await self._call(fn)
        self._cache[key] = (time.monotonic(), value)
        return value

    def _pressed(self) -> bool:
        """True when the rate limit, or the reads' share of it, has no room now."""
        return self._limiter.wait_time(operation="read") > 0 or (
            self._read_limiter is not None and self._read_limiter.wait_time() > 0)

    # -- reads ----------------------------------------------------------------------------
    async def balances_async(self) -> pd.DataFrame:
        """One row: the account's USD cash, buying power, equity and margin."""
        a = await self._read("account", lambda: self._trading.get_account())
        row = {"account": str(a.account_number), "currency": a.currency or "USD",
               "cash": _f(a.cash), "settled_cash": _f(a.cash),
               "buying_power": _f(a.buying_power), "equity": _f(a.equity),
               "margin_init": _f(a.initial_margin), "margin_maint": _f(a.maintenance_margin)}
        return frames.make(frames.BALANCES, [row], connection=self.name,
                           institution=self._institution, as_of=datetime.now(UTC))

    async def positions_async(self) -> pd.DataFrame:
        """Every open position (short positions have negative quantity)."""
        got = await self._read("positions", lambda: self._trading.get_all_positions())
        rows = []
        for p in got:
            crypto = _v(p.asset_class) == "crypto"
            symbol = _crypto_symbol(p.symbol) if crypto else p.symbol
            if crypto:
                self._crypto_symbols.add(symbol)
            qty = abs(_f(p.qty)) * (-1 if _v(p.side) == "short" else 1)
            rows.append({"account": self._account, "symbol": symbol,
                         "instrument": _instrument(symbol, crypto).key,
                         "asset_class": "crypto" if crypto else "equity", "quantity": qty,
                         "avg_cost": _f(p.avg_entry_price), "market_price": _f(p.current_price),
                         "market_value": _f(p.market_value), "currency": "USD",
                         "unrealized_pnl": _f(p.unrealized_pl),
                         "exchange": _v(p.exchange) if p.exchange else None,
                         "multiplier": 1.0})
        return frames.make(frames.POSITIONS, rows, connection=self.name,
                           institution=self._institution, as_of=datetime.now(UTC))

    async def orders_async(self) -> pd.DataFrame:
        """The account's orders, open and closed (Alpaca's latest 500), oldest first."""
        got = await self._all_orders()
        return frames.make(frames.ORDERS, [self._order_row(o) for o in reversed(got)],
                           connection=self.name)

    async def open_orders_async(self) -> pd.DataFrame:
        """Every open order of the account, from all pages, oldest first.

        `GET /v2/orders?status=open` answers at most `ORDERS_PAGE` orders, newest first; the
        next page asks `until` the oldest `submitted_at` seen. `until` is exclusive, and
        orders may share a timestamp, so each page asks from a microsecond after it and
        drops the orders it already has (Alpaca's own recipe: alpaca.markets/learn-api/
        get-all-orders). A page that brings no older order raises rather than loop."""
        from alpaca.common.enums import Sort
        from alpaca.trading.enums import QueryOrderStatus
        from alpaca.trading.requests import GetOrdersRequest

        seen: dict[str, Any] = {}
        until: datetime | None = None
        while True:
            req = GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=ORDERS_PAGE,
                                   direction=Sort.DESC, nested=False, until=until)
            page = await self._call(self._trading.get_orders, req)
            for o in page:
                self._coids[str(o.id)] = o.client_order_id
                seen.setdefault(str(o.id), o)
            if len(page) < ORDERS_PAGE:
                break
            oldest = min(o.submitted_at for o in page)
            nxt = oldest + timedelta(microseconds=1)
            if until is not None and nxt >= until:
                raise AdapterError(self.name, f"more than {ORDERS_PAGE} open orders were "
                                              f"submitted at {oldest.isoformat()}: they cannot "
                                              f"be listed page by page")
            until = nxt
        got = sorted(seen.values(), key=lambda o: (o.submitted_at, str(o.id)))
        return frames.make(frames.ORDERS, [self._order_row(o) for o in got],
                           connection=self.name)

    async def _all_orders(self) -> list[Any]:
        from alpaca.trading.enums import QueryOrderStatus
        from alpaca.trading.requests import GetOrdersRequest

        req = GetOrdersRequest(status=QueryOrderStatus.ALL, limit=500, nested=False)
        got = await self._call(self._trading.get_orders, req)
        for o in got:
            self._coids[str(o.id)] = o.client_order_id
        return got

    async def fills_async(self, since: datetime | None = None) -> pd.DataFrame:
        """Every FILL activity (executed at or after `since` if given), from all pages,
        oldest first. Under rate pressure, the last answer when it covers `since` and is at
        most `STALE_READ_S` old."""
        hit = self._cache.get("fills")
        if hit is not None and self._pressed() and time.monotonic() - hit[0] < STALE_READ_S:
            cached_since, df = hit[1]
            if cached_since is None or (since is not None and cached_since <= since):
                return df if since is None else df[df["executed_at"] >= since] \
                    .reset_index(drop=True)
        started = time.monotonic()
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {"activity_types": "FILL", "direction": "asc",
                                      "page_size": 100}
            if since is not None:  # Alpaca's `after` is exclusive: ask from a second before
                params["after"] = (since.astimezone(UTC) - timedelta(seconds=1)).isoformat()
            if token:
                params["page_token"] = token
            page = await self._call(self._trading.get, "/account/activities", params)
            if not isinstance(page, list):
                raise AdapterError(self.name, f"activities: expected a list, got "
                                              f"{type(page).__name__}")
            items.extend(page)
            if len(page) < 100:
                break
            token = str(page[-1]["id"])
        await self._learn_client_order_ids({str(a.get("order_id")) for a in items})
        rows = [self._fill_row(a) for a in items if a.get("activity_type", "FILL") == "FILL"]
        df = fills_frame(rows, self.name)
        self._cache["fills"] = (started, (since, df))
        return df

    async def corporate_actions_async(self, since: datetime | None = None) -> pd.DataFrame:
        """Forward and reverse splits of the stocks the account holds, from Alpaca's
        corporate actions (`GET /v1/corporate-actions` of the market-data API, through
        alpaca-py's `CorporateActionsClient`; source:
        https://docs.alpaca.markets/reference/corporateactions-1), processed from `since`'s
        date (from 2000-01-01 when None) through tomorrow in UTC (so that no time zone hides
        today's): one row per split for the account, ratio `new_rate / old_rate`, action id
        Alpaca's `id`, effective date the `ex_date` (the first session traded split-adjusted).
        """
        from datetime import date

        from alpaca.data.enums import CorporateActionsType
        from alpaca.data.historical.corporate_actions import CorporateActionsClient
        from alpaca.data.requests import CorporateActionsRequest

        start = since.astimezone(UTC).date() if since is not None else date(2000, 1, 1)
        end = datetime.now(UTC).date() + timedelta(days=1)
        held = await self.positions_async()
        symbols = sorted(set(held.loc[held["asset_class"] == "equity", "symbol"]))
        if not symbols or start > end:
            return frames.empty(frames.CORPORATE_ACTIONS)
        _, data_url, (key, secret) = await self._endpoints()
        client = CorporateActionsClient(key, secret, url_override=data_url)
        local = data_url is not None and urlsplit(data_url).hostname in (
            "127.0.0.1", "localhost", "::1")
        _configure_session(client._session, self._timeout, trust_env=not local)
        request = CorporateActionsRequest(
            symbols=symbols, types=[CorporateActionsType.FORWARD_SPLIT,
                                    CorporateActionsType.REVERSE_SPLIT],
            start=start, end=end, limit=None)
        try:
            got = await self._call(client.get_corporate_actions, request, data=True)
        finally:
            client._session.close()
        kinds = {"forward_splits": "split", "reverse_splits": "reverse_split"}
        rows = [{"account": self._account, "instrument": _instrument(a.symbol, False).key,
                 "symbol": a.symbol, "ratio": float(a.new_rate) / float(a.old_rate),
                 "kind": kinds[group], "action_id": str(a.id), "effective_date": a.ex_date}
                for group, found in got.data.items() if group in kinds for a in found]
        return frames.make(frames.CORPORATE_ACTIONS, rows, connection=self.name)

    async def _learn_client_order_ids(self, order_ids: set[str]) -> None:
        """Client order ids of orders this adapter did not place (another process, another
        tool): a few are asked for one by one, many with one list of the latest orders."""
        unknown = order_ids - self._coids.keys()
        if len(unknown) > ORDER_LOOKUPS_MAX:
            await self._all_orders()
            return
        for order_id in unknown:
            try:
                o = await self._call(self._trading.get_order_by_id, order_id)
            except AdapterError:  # gone or not ours: the fill keeps no client order id
                continue
            self._coids[str(o.id)] = o.client_order_id

    def _names(self, symbols: Sequence[str]) -> list[str]:
        """Alpaca's symbols for order symbols or canonical keys; an `AdapterError` naming a key
        of something Alpaca does not trade."""
        try:
            return [_alpaca_symbol(s.strip().upper()) for s in symbols]
        except ValueError as e:
            raise AdapterError(self.name, str(e)) from None

    async def quotes_async(self, symbols: Sequence[str]) -> pd.DataFrame:
        """Latest bid, ask and last trade for `symbols` (stocks, and crypto pairs 'BTC/USD');
        a symbol without a quote is an `AdapterError` naming it."""
        from alpaca.data.requests import (
            CryptoLatestQuoteRequest,
            CryptoLatestTradeRequest,
            StockLatestQuoteRequest,
            StockLatestTradeRequest,
        )

        names = self._names(symbols)
        crypto = [s for s in names if "/" in s or s in self._crypto_symbols]
        stocks = [s for s in names if s not in crypto]
        calls = []
        if stocks:
            calls += [self._call(self._stocks.get_stock_latest_quote,
                                 StockLatestQuoteRequest(symbol_or_symbols=stocks), data=True),
                      self._call(self._stocks.get_stock_latest_trade,
                                 StockLatestTradeRequest(symbol_or_symbols=stocks), data=True)]
        if crypto:
            pairs = [_crypto_symbol(s) for s in crypto]
            calls += [self._call(self._crypto.get_crypto_latest_quote,
                                 CryptoLatestQuoteRequest(symbol_or_symbols=pairs), data=True),
                      self._call(self._crypto.get_crypto_latest_trade,
                                 CryptoLatestTradeRequest(symbol_or_symbols=pairs), data=True)]
        results = await asyncio.gather(*calls)
        quotes: dict[str, Any] = {}
        trades: dict[str, Any] = {}
        for i in range(0, len(results), 2):
            quotes.update(results[i])
            trades.update(results[i + 1])
        rows = []
        for s in names:
            is_crypto = s in crypto
            key = _crypto_symbol(s) if is_crypto else s
            q = quotes.get(key)
            if q is None:
                raise AdapterError(self.name, f"no quote for {s!r} at Alpaca")
            t = trades.get(key)
            rows.append({"instrument": _instrument(key, is_crypto).key, "symbol": key,
                         "bid": q.bid_price, "ask": q.ask_price,
                         "last": t.price if t is not None else math.nan, "currency": "USD",
                         "as_of": q.timestamp})
        return frames.make(frames.QUOTES, rows, connection=self.name)

    async def instruments_async(self, symbols: Sequence[str]) -> pd.DataFrame:
        """Alpaca's asset facts (tradable, fractionable, shortable, ticks) for `symbols`; an
        unknown symbol is an `AdapterError` naming it."""
        names = self._names(symbols)
        got = await asyncio.gather(*(self._call(self._trading.get_asset, s.replace("/", ""))
                                     for s in names))
        rows = []
        for a in got:
            crypto = _v(a.asset_class) == "crypto"
            symbol = _crypto_symbol(a.symbol) if crypto else a.symbol
            if crypto:
                self._crypto_symbols.add(symbol)
            minimum = a.min_order_size if a.min_order_size else \
                (1e-9 if a.fractionable else 1.0)
            rows.append({"instrument": _instrument(symbol, crypto).key, "symbol": symbol,
                         "asset_class": "crypto" if crypto else "equity", "currency": "USD",
                         "exchange": _v(a.exchange), "tradable": a.tradable,
                         "fractionable": a.fractionable, "shortable": a.shortable,
                         "min_quantity": minimum,
                         "price_increment": a.price_increment or 0.01, "multiplier": 1.0})
        return frames.make(frames.INSTRUMENTS, rows, connection=self.name)

    async def account_types_async(self) -> dict[str, str]:
        """{account: "margin" | "cash"}: Alpaca accounts with multiplier 1 trade as cash."""
        if self._account is None or self._account_type is None:
            return {}
        return {self._account: self._account_type}

    async def market_open_async(self, symbol: str) -> bool | None:
        """Whether Alpaca's clock says the market is open (crypto: always); the answer is
        kept for 30 s, and under rate pressure until the next open or close."""
        (name,) = self._names([symbol])
        if "/" in name or name in self._crypto_symbols:
            return True
        now = time.monotonic()
        if self._clock is not None:
            fresh_until, change_at, is_open = self._clock
            if now < fresh_until or (now < change_at and self._pressed()):
                return is_open
        c = await self._call(self._trading.get_clock)
        change = c.next_close if c.is_open else c.next_open
        until_change = max(0.0, (change - c.timestamp).total_seconds())
        self._clock = (now + min(30.0, until_change), now + until_change, bool(c.is_open))
        return bool(c.is_open)

    # -- trading --------------------------------------------------------------------------
    def check_intent(self, intent: OrderIntent, instrument: Mapping[str, Any] | None
                     ) -> list[Violation]:
        """The base rules plus Alpaca's (`brokerkit.venues.alpaca`): fractional and notional
        orders (fractionable asset, market/limit/stop/stop-limit types, day only, notional at
        least $1), extended hours (limit day orders), crypto types and times in force; a
        canonical key of something Alpaca does not trade (`STK:SAP@XETRA`) is refused. A
        fractional short sale needs the position, so the pipeline's `check_short_sale` says
        so."""
        out = super().check_intent(intent, instrument)
        try:
            symbol = _alpaca_symbol(intent.symbol)
        except ValueError as exc:
            return [*out, Violation("UNSUPPORTED_ORDER", str(exc))]
        crypto = intent.asset_class is AssetClass.CRYPTO or "/" in symbol or (
            instrument is not None and instrument.get("asset_class") == "crypto")
        otype, tif = intent.order_type, intent.time_in_force
        if crypto:
            if otype not in CRYPTO_ORDER_TYPES:
                out.append(Violation("UNSUPPORTED_ORDER", f"Alpaca takes crypto orders of "
                                     f"type {_names(CRYPTO_ORDER_TYPES)}, not {otype.value}"))
            if tif not in CRYPTO_TIME_IN_FORCE:
                out.append(Violation("UNSUPPORTED_ORDER", f"Alpaca takes crypto orders with "
                                     f"time in force {_names(CRYPTO_TIME_IN_FORCE)}, not "
                                     f"{tif.value}"))
            return out
        if intent.extended_hours and (otype not in EXTENDED_HOURS_ORDER_TYPES
                                      or tif not in EXTENDED_HOURS_TIME_IN_FORCE):
            out.append(Violation("UNSUPPORTED_ORDER", f"Alpaca takes extended-hours orders "
                                 f"only as day limit orders, not {otype.value} {tif.value}"))
        if intent.notional is not None and intent.notional < venue.MIN_NOTIONAL:
            out.append(Violation("UNSUPPORTED_ORDER", f"Alpaca takes notional orders of at "
                                 f"least ${venue.MIN_NOTIONAL}, not ${intent.notional}"))
        fractional = intent.notional is not None or (
            intent.quantity is not None and intent.quantity % 1 != 0)
        if not fractional:
            return out
        what = "a notional order" if intent.notional is not None \
            else f"fractional quantity {intent.quantity}"
        if instrument is not None and not instrument.get("fractionable", False):
            out.append(Violation("NOT_FRACTIONABLE", f"{what}: {intent.symbol} is not "
                                 f"fractionable at Alpaca"))
        if intent.notional is None and otype not in FRACTIONAL_ORDER_TYPES:
            out.append(Violation("UNSUPPORTED_ORDER", f"Alpaca takes {what} only on "
                                 f"{_names(FRACTIONAL_ORDER_TYPES)} orders, not {otype.value}"))
        if tif not in FRACTIONAL_TIME_IN_FORCE:
            out.append(Violation("UNSUPPORTED_ORDER", f"Alpaca takes {what} only with time in "
                                 f"force {_names(FRACTIONAL_TIME_IN_FORCE)}, not {tif.value}"))
        return out

    async def submit_async(self, intent: OrderIntent, client_order_id: str) -> BrokerOrder:
        """Send `intent` once with `client_order_id`. A refusal (4xx) comes back REJECTED with
        Alpaca's message; a timeout, dropped connection or 5xx raises `SubmitUncertain`."""
        request = self._submit_request(intent, client_order_id)
        if isinstance(request, BrokerOrder):
            return request
        await self._limiter.acquire(operation="submit")
        return await asyncio.to_thread(self._send_order, request, client_order_id)

    def _submit_request(self, intent: OrderIntent, client_order_id: str) -> Any:
        """alpaca-py's request for `intent`, or the REJECTED answer when it cannot be sent."""
        if not self.capabilities.trading:
            raise self._read_only("submit")
        if self._orders is None:
            raise ConnectionDown(self.name, "not connected; call connect() first")
        if intent.account is not None and intent.account != self._account:
            raise AdapterError(self.name, f"account {intent.account!r} is not on connection "
                                          f"{self.name} (account: {self._account})")
        try:
            request = _order_request(intent, client_order_id)
        except ValueError as exc:
            return self._refused(client_order_id, f"alpaca-py refused the order: {exc}")
        wait = self._limiter.wait_time(operation="submit")
        if wait > SUBMIT_WAIT_MAX:
            return self._refused(client_order_id, f"Alpaca's request limit ({self._limiter}) "
                                 f"is used up for the next {wait:.1f} s; the order was not "
                                 f"sent (lower the connection's rate_limit for orders)")
        return request

    def _send_order(self, request: Any, client_order_id: str) -> BrokerOrder:
        """POST the order (blocking; alpaca-py never retries it: `_orders._retry = 0`)."""
        try:
            order = self._orders.submit_order(request)
        except Exception as exc:
            status = getattr(exc, "status_code", None)
            if status is not None and 400 <= status < 500:
                return self._refused(client_order_id, _describe(exc), raw=exc)
            raise SubmitUncertain(self.name, client_order_id, _describe(exc)) from exc
        return self._broker_order(order)

    async def cancel_async(self, order_id: str) -> BrokerOrder:
        """Cancel an open order; returns its state afterwards (a final order unchanged, with
        Alpaca's reason)."""
        if not self.capabilities.trading:
            raise self._read_only("cancel")
        reason = ""
        try:
            await self._call(self._trading.cancel_order_by_id, order_id, operation="cancel")
        except AdapterError as exc:
            if getattr(exc.__cause__, "status_code", None) != 422:
                raise
            reason = _describe(exc.__cause__)
        order = await self._call(self._trading.get_order_by_id, order_id)
        ack = self._broker_order(order)
        return replace(ack, reason=reason) if reason else ack

    async def cancel_all_async(self) -> list[BrokerOrder]:
        """Cancel every open order with one `DELETE /v2/orders`: Alpaca answers 207 with one
        entry per open order, HTTP 200 when its cancel was taken, else the failure (500 when
        the order can no longer be canceled) (Alpaca API reference, "Delete All Orders";
        shared/reference/http-apis.md, CancelOrderResponse). `body` is the order, or the
        error of an entry that failed."""
        if not self.capabilities.trading:
            raise self._read_only("cancel")
        answers = await self._call(self._trading.cancel_orders, operation="cancel")
        out: list[BrokerOrder] = []
        for a in answers:
            body = a.body if isinstance(a.body, Mapping) else {}
            order_id = str(a.id)
            state = _STATUS.get(str(body.get("status", "")), OrderStatus.ACCEPTED)
            if a.status == 200 and state.is_open:
                state = OrderStatus.CANCELED  # the cancel was taken
            out.append(BrokerOrder(
                order_id=order_id,
                client_order_id=str(body.get("client_order_id")
                                    or self._coids.get(order_id, "")),
                account=self._account or "", status=state,
                reason="" if a.status == 200 else
                f"{body.get('message') or 'cancel refused'} (HTTP {a.status})",
                raw={"answer": a}))
        return out

    async def lookup_async(self, client_order_id: str) -> BrokerOrder | None:
        """The order placed with `client_order_id`, or None when Alpaca has none (404)."""
        if not self.capabilities.trading:
            raise self._read_only("lookup")
        try:
            order = await self._call(self._trading.get_order_by_client_id, client_order_id,
                                     operation="lookup")
        except AdapterError as exc:
            if getattr(exc.__cause__, "status_code", None) == 404:
                return None
            raise
        return self._broker_order(order)

    # -- conversions ----------------------------------------------------------------------
    @property
    def _institution(self) -> str:
        return self.config.institution or self.institution

    def _refused(self, client_order_id: str, reason: str, raw: Any = None) -> BrokerOrder:
        return BrokerOrder(order_id="", client_order_id=client_order_id,
                           account=self._account or "", status=OrderStatus.REJECTED,
                           reason=reason, raw={"error": raw} if raw is not None else {})

    def _broker_order(self, o: Any) -> BrokerOrder:
        self._coids[str(o.id)] = o.client_order_id
        filled = _f(o.filled_qty)
        return BrokerOrder(order_id=str(o.id), client_order_id=o.client_order_id,
                           account=self._account or "",
                           status=_STATUS.get(_v(o.status), OrderStatus.ACCEPTED),
                           filled_quantity=0.0 if math.isnan(filled) else filled,
                           avg_fill_price=None if o.filled_avg_price is None
                           else float(o.filled_avg_price),
                           submitted_at=o.submitted_at, raw={"order": o})

    def _order_row(self, o: Any) -> dict[str, Any]:
        crypto = _v(o.asset_class) == "crypto"
        symbol = _crypto_symbol(o.symbol) if crypto else o.symbol
        notional = _f(o.notional)
        return {"account": self._account, "order_id": str(o.id),
                "client_order_id": o.client_order_id,
                "instrument": _instrument(symbol, crypto).key if symbol else None,
                "symbol": symbol, "asset_class": "crypto" if crypto else "equity",
                "side": _v(o.side), "order_type": _v(o.order_type or o.type),
                "quantity": math.nan if not math.isnan(notional) else _f(o.qty),
                "notional": notional, "limit_price": _f(o.limit_price),
                "stop_price": _f(o.stop_price), "time_in_force": _v(o.time_in_force),
                "status": _STATUS.get(_v(o.status), OrderStatus.ACCEPTED).value,
                "filled_quantity": _f(o.filled_qty) if o.filled_qty else 0.0,
                "avg_fill_price": _f(o.filled_avg_price), "submitted_at": o.submitted_at,
                "updated_at": o.updated_at}

    def _fill_row(self, a: Mapping[str, Any]) -> dict[str, Any]:
        symbol = str(a["symbol"])
        crypto = "/" in symbol or _crypto_symbol(symbol) in self._crypto_symbols
        if crypto:
            symbol = _crypto_symbol(symbol)
        at = datetime.fromisoformat(str(a["transaction_time"]).replace("Z", "+00:00"))
        order_id = str(a["order_id"])
        return {"account": self._account, "fill_id": str(a["id"]), "order_id": order_id,
                "client_order_id": self._coids.get(order_id),
                "instrument": _instrument(symbol, crypto).key, "symbol": symbol,
                "asset_class": "crypto" if crypto else "equity", "side": str(a["side"]),
                "quantity": abs(_f(a["qty"])), "price": _f(a["price"]), "fee": 0.0,
                "fee_currency": "USD", "currency": "USD", "executed_at": at,
                "trade_date": None, "settle_date": None}


def _names(kinds: frozenset[Any]) -> str:
    return ", ".join(sorted(k.value for k in kinds))


def _is_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not value.endswith("/")


def _request_limiter(options: Mapping[str, Any], name: str, key: str) -> RateLimiter:
    """The limiter every request of the adapter passes: `request_limit` (requests per minute,
    or false) else the windows of `rate_limit` / Alpaca's preset, each a little longer
    (`RATE_SKEW_S`) so timing skew never trips the server's count."""
    from ..execution.ratelimit import RateLimiter, Window, limiter_for

    given = options.get("request_limit")
    if given is None:
        windows = limiter_for("alpaca", options, name=name).windows
    elif given is False:
        windows = ()
    elif isinstance(given, int) and not isinstance(given, bool) and given > 0:
        windows = (Window(given, 60.0),)
    else:
        raise ConfigError(f"is {given!r}", key=key,
                          expected="false, or a number of requests per minute")
    return RateLimiter(tuple(Window(w.limit, w.period + RATE_SKEW_S, w.weights,
                                    w.default_weight) for w in windows), name=name)


def _configure_session(session: Any, timeout: float, *, trust_env: bool) -> None:
    """Give a client's requests session a default timeout (alpaca-py sets none) through a
    mounted transport adapter; loopback sessions ignore proxy variables."""
    from requests.adapters import HTTPAdapter

    class _TimeoutAdapter(HTTPAdapter):
        def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = timeout
            return super().send(request, **kwargs)

    adapter = _TimeoutAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.trust_env = trust_env


def _read_limiter(options: Mapping[str, Any], requests: RateLimiter, name: str
                  ) -> RateLimiter | None:
    """The reads' share of the request limit when the pipeline's order budget (`rate_limit`)
    is set under it (`request_limit`): what the orders leave, per window; else None."""
    from ..execution.ratelimit import RateLimiter, Window

    budget, total = options.get("rate_limit"), options.get("request_limit")
    if not isinstance(budget, Mapping) or not isinstance(total, int) or not requests.windows:
        return None
    try:
        per_minute = float(budget["requests"]) * 60.0 / float(budget["per_seconds"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    share = int(total - per_minute)
    if share < 1:
        return None
    return RateLimiter((Window(share, requests.windows[0].period),), name=f"{name} reads")


def _alpaca_symbol(symbol: str) -> str:
    """Alpaca's symbol for an order's symbol or canonical key (`STK:AAPL` -> AAPL,
    `CRYPTO:BTC/USD` -> BTC/USD); raises ValueError, naming it, for a key of something Alpaca
    does not trade here (a listing outside the US, an option, a future, FX)."""
    if ":" not in symbol:
        return symbol
    inst = Instrument.parse_key(symbol)
    ac = inst.asset_class
    if ac is AssetClass.CRYPTO:
        return inst.symbol
    if ac is AssetClass.EQUITY and (not inst.exchange or inst.exchange in venue.EQUITY_EXCHANGES):
        return inst.symbol
    where = f" on {inst.exchange}" if inst.exchange else ""
    raise ValueError(f"Alpaca trades US equities and crypto here, not {symbol} "
                     f"({ac.value}{where})")


def _order_request(intent: OrderIntent, client_order_id: str) -> Any:
    """alpaca-py's request object for `intent` (raises ValueError when it refuses it)."""
    from alpaca.trading import enums
    from alpaca.trading import requests as r

    def num(d: Decimal | None) -> float | None:
        return None if d is None else float(d)

    symbol = _alpaca_symbol(intent.symbol)
    crypto = intent.asset_class is AssetClass.CRYPTO or "/" in symbol
    common: dict[str, Any] = {
        "symbol": symbol, "qty": num(intent.quantity), "notional": num(intent.notional),
        "side": enums.OrderSide(intent.side.value),
        "time_in_force": enums.TimeInForce(intent.time_in_force.value),
        "client_order_id": client_order_id,
    }
    if intent.extended_hours and not crypto:
        common["extended_hours"] = True
    otype = intent.order_type
    if otype is OrderType.MARKET:
        return r.MarketOrderRequest(**common)
    if otype is OrderType.LIMIT:
        return r.LimitOrderRequest(**common, limit_price=num(intent.limit_price))
    if otype is OrderType.STOP:
        return r.StopOrderRequest(**common, stop_price=num(intent.stop_price))
    if otype is OrderType.STOP_LIMIT:
        return r.StopLimitOrderRequest(**common, stop_price=num(intent.stop_price),
                                       limit_price=num(intent.limit_price))
    return r.TrailingStopOrderRequest(**common, trail_price=num(intent.trail_price),
                                      trail_percent=num(intent.trail_percent))
