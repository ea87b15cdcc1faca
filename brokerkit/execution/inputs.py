"""What the pre-trade checks read, cached per connection: instrument facts, quotes, market
hours, positions, buying power, account types, and the trading state.

Positions and balances are kept for `STATE_TTL` seconds and adjusted by the service's own
fills in between (`note_fill`); instrument facts for `FACTS_TTL`; a quote is used as is for
`QUOTE_TTL` and, up to `QUOTE_STALE`, while a fresh one is fetched in the background. When all
of it is fresh (a running service) `now()` hands it over without a single await; else
`gather()` fetches what is missing, all at once. A fact that cannot be fetched is None
(unknown), which the checks report rather than pass. Everything here runs on the runtime loop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..adapters import Adapter
from ..model import AssetClass, OrderIntent, Side
from .killswitch import KillSwitch, StateView

if TYPE_CHECKING:
    from ..service import BrokerageService

__all__ = ["FACTS_TTL", "HOURS_TTL", "QUOTE_STALE", "QUOTE_TTL", "STATE_CHECK_TTL", "STATE_TTL",
           "CheckInputs", "Inputs", "decimal_of", "needs_margin_preview"]

log = logging.getLogger("brokerkit.execution")

#: Seconds cached positions and balances stay fresh (own fills adjust them in between).
STATE_TTL = 5.0
#: Seconds a cached quote is used as is; up to QUOTE_STALE it is used while a fresh one is
#: fetched in the background; older, the order waits for a fresh quote.
QUOTE_TTL = 1.0
QUOTE_STALE = 5.0
#: Seconds cached instrument facts and market hours stay fresh.
FACTS_TTL = 600.0
HOURS_TTL = 30.0
#: Seconds the trading state read for the checks is reused (the journal always re-reads it).
STATE_CHECK_TTL = 0.5
#: Share of a TTL after which positions, balances and the trading state are read again in the
#: background while orders keep using what is cached: a stream of orders never waits for them.
REFRESH_AHEAD = 0.6

#: (facts row, quote row, market open, (positions, balances), account types, trading state)
Inputs = tuple[Any, ...]
Positions = dict[tuple[str, str], Decimal]  # (account, instrument) -> quantity
Balances = dict[str, list[tuple[str, float]]]  # account -> [(currency, buying power)]


def decimal_of(value: Any) -> Decimal | None:
    """`value` as a Decimal (through its float repr), or None when missing or NaN."""
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else Decimal(repr(f))


@dataclass
class _Cache:
    """Cached broker state for one connection."""

    positions: Positions | None = None
    balances: Balances | None = None
    exposure: Decimal | None = None  # gross |market value| in the base currency (all brokers)
    state_at: float = -math.inf
    account_types: dict[str, str] | None = None
    facts: dict[str, tuple[float, dict[str, Any] | None]] = field(default_factory=dict)
    quotes: dict[str, tuple[float, dict[str, Any] | None]] = field(default_factory=dict)
    hours: dict[str, tuple[float, bool | None]] = field(default_factory=dict)
    refreshing: set[str] = field(default_factory=set)  # quotes being fetched in background
    #: own fills since the last refresh: (account, instrument) -> signed quantity
    deltas: Positions = field(default_factory=dict)
    spent: dict[str, Decimal] = field(default_factory=dict)  # account -> cash committed
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class CheckInputs:
    """The cached inputs of the pre-trade checks, for every connection of a service."""

    def __init__(self, brokerage: BrokerageService, killswitch: KillSwitch,
                 db: Callable[..., Awaitable[Any]]) -> None:
        self._brokerage = brokerage
        self._killswitch = killswitch
        self._db = db  # runs a book call on the service's book thread
        self._caches: dict[str, _Cache] = {}
        self._state_view: StateView | None = None
        self._state_at = -math.inf
        self._background: set[asyncio.Future[Any]] = set()  # held until done (the loop won't)

    def cache(self, connection: str) -> _Cache:
        cache = self._caches.get(connection)
        if cache is None:
            cache = self._caches[connection] = _Cache()
        return cache

    # -- all at once ----------------------------------------------------------------------
    def now(self, connection: str, adapter: Adapter, symbol: str) -> Inputs | None:
        """Everything the checks read, when all of it is cached and fresh (the usual case for
        a running service): no task, no await. A quote between QUOTE_TTL and QUOTE_STALE old
        is used while a fresh one is fetched in the background. None when anything must be
        fetched."""
        cache = self.cache(connection)
        now = time.monotonic()
        view = self._state_view
        if (view is None or now - self._state_at >= STATE_CHECK_TTL
                or now - cache.state_at >= STATE_TTL or cache.account_types is None):
            return None
        facts, quote, hours = cache.facts.get(symbol), cache.quotes.get(symbol), \
            cache.hours.get(symbol)
        if (facts is None or now - facts[0] >= FACTS_TTL or quote is None
                or now - quote[0] >= QUOTE_STALE or hours is None
                or now - hours[0] >= HOURS_TTL):
            return None
        if now - quote[0] >= QUOTE_TTL and symbol not in cache.refreshing:
            self._revalidate(cache.quotes, symbol, _quote_fetch(adapter, symbol),
                             f"quote for {symbol} at {adapter.name}", cache.refreshing)
        if now - cache.state_at >= STATE_TTL * REFRESH_AHEAD:
            self._ahead(cache, "*state", lambda: self._state(cache, adapter, force=True))
        if now - self._state_at >= STATE_CHECK_TTL * REFRESH_AHEAD:
            self._ahead(cache, "*trading", lambda: self.trading_state(fresh=True))
        return (facts[1], quote[1], hours[1], (cache.positions, cache.balances),
                cache.account_types, StateView.of_view(view))

    def _ahead(self, cache: _Cache, key: str, read: Callable[[], Awaitable[Any]]) -> None:
        """Run `read()` in the background unless it runs already (errors logged)."""
        if key in cache.refreshing:
            return
        cache.refreshing.add(key)

        async def run() -> None:
            try:
                await read()
            except Exception as exc:  # the next order reads it inline if it is too old
                log.warning("refreshing %s failed: %s", key.lstrip("*"), exc)
            finally:
                cache.refreshing.discard(key)

        self._keep(asyncio.ensure_future(run()))

    def _keep(self, task: asyncio.Future[Any]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def gather(self, connection: str, adapter: Adapter, symbol: str, *,
                     fresh_state: bool = False) -> Inputs:
        """Everything the checks read, fetching what is missing or stale, all at once."""
        cache = self.cache(connection)
        return tuple(await asyncio.gather(
            self._facts(cache, adapter, symbol), self._quote(cache, adapter, symbol),
            self._hours(cache, adapter, symbol), self._state(cache, adapter),
            self._account_types(cache, adapter), self.trading_state(fresh=fresh_state)))

    async def trading_state(self, fresh: bool = False) -> StateView:
        """The trading state for the checks, re-read at most every STATE_CHECK_TTL seconds.
        It only words the violations: the journal re-reads the state in the transaction that
        writes the order, so a halt from any process stops the very next order."""
        now = time.monotonic()
        if fresh or self._state_view is None or now - self._state_at >= STATE_CHECK_TTL:
            self._state_view = await self._db(self._killswitch.state)
            self._state_at = now
        return StateView.of_view(self._state_view)

    def forget_state(self) -> None:
        """Read the trading state again for the next order."""
        self._state_at = -math.inf

    # -- positions and buying power -------------------------------------------------------
    def position(self, connection: str, positions: Positions | None, account: str,
                 instrument: str) -> Decimal | None:
        """The account's position (cached, plus own fills since), or None when unknown."""
        if positions is None:
            return None
        key = (account, instrument)
        return positions.get(key, Decimal(0)) + self.cache(connection).deltas.get(key,
                                                                                  Decimal(0))

    def buying_power(self, connection: str, balances: Balances | None, account: str,
                     currency: str) -> Decimal | None:
        """The account's buying power in `currency` (rows in other currencies converted),
        less what this service's own fills spent since the last refresh."""
        if balances is None or account not in balances:
            return None
        try:
            total = sum(bp * self._brokerage.fx.rate(ccy, currency)
                        for ccy, bp in balances[account] if bp)  # 0 needs no rate
        except Exception:
            return None
        spent = self.cache(connection).spent.get(account, Decimal(0))
        return Decimal(repr(total)) - spent

    def note_fill(self, connection: str, account: str, instrument: str, side: Side,
                  quantity: float, price: float | None) -> None:
        """Count an own fill into the cached position and buying power until the next
        refresh reads the broker's."""
        cache = self.cache(connection)
        key = (account, instrument)
        signed = Decimal(repr(quantity)) * side.sign
        cache.deltas[key] = cache.deltas.get(key, Decimal(0)) + signed
        if side is Side.BUY and price:
            cost = Decimal(repr(quantity * price))
            cache.spent[account] = cache.spent.get(account, Decimal(0)) + cost

    async def margin_required(self, adapter: Adapter, intent: OrderIntent, account: str,
                              currency: str) -> Decimal | None:
        """The initial margin `intent` adds at `account`, in `currency`, from the
        connection's own preview (IBKR's what-if `initMarginChange`, in the account's base
        currency); None when the adapter has no preview or it fails (the buying-power check
        then applies `brokerkit.venues.margin`'s rule). One round trip: call it only for
        orders `needs_margin_preview` names, never for a stock order."""
        preview = getattr(adapter, "what_if_async", None)
        if preview is None:
            return None
        try:
            row = (await preview(replace(intent, account=account))).iloc[0]
            change = decimal_of(row["initial_margin_change"])
            if change is None:
                return None
            rate = self._brokerage.fx.rate(str(row["currency"]), currency)
        except Exception as exc:  # no preview: the rule stands in
            log.warning("margin preview of %s at %s failed: %s", intent.symbol, adapter.name,
                        exc)
            return None
        return change * Decimal(repr(rate))

    async def gross_exposure(self) -> Decimal | None:
        """Sum of |market value| of every position at every connection, in the base
        currency; None when any connection could not be read (unknown is not zero)."""
        cache = self.cache("*")
        if time.monotonic() - cache.state_at >= STATE_TTL:
            df = await self._brokerage.positions_async()
            if df.attrs.get("errors"):
                return None
            cache.exposure = decimal_of(df["market_value_base"].abs().sum())
            cache.state_at = time.monotonic()
        return cache.exposure

    # -- one input each -------------------------------------------------------------------
    async def _state(self, cache: _Cache, adapter: Adapter, *, force: bool = False
                     ) -> tuple[Positions | None, Balances | None]:
        """Positions and buying power of the connection, indexed for O(1) lookups; refreshed
        every STATE_TTL seconds (own fills adjust them in between), or now with `force`."""
        ttl = 0.0 if force else STATE_TTL
        if time.monotonic() - cache.state_at < ttl:
            return cache.positions, cache.balances
        async with cache.lock:
            if time.monotonic() - cache.state_at >= ttl:
                try:
                    pos, bal = await asyncio.gather(adapter.positions_async(),
                                                    adapter.balances_async())
                except Exception as exc:  # unknown state: the checks will say so
                    log.warning("reading state of %s failed: %s", adapter.name, exc)
                    return None, None
                held: Positions = {}
                for acct, inst, qty in zip(pos["account"], pos["instrument"], pos["quantity"],
                                           strict=True):
                    held[(acct, inst)] = held.get((acct, inst), Decimal(0)) + \
                        (decimal_of(qty) or Decimal(0))
                power: Balances = {}
                for acct, ccy, bp in zip(bal["account"], bal["currency"], bal["buying_power"],
                                         strict=True):
                    if bp == bp:  # NaN: the broker did not say
                        power.setdefault(acct, []).append((ccy, float(bp)))
                cache.positions, cache.balances = held, power
                cache.deltas.clear()
                cache.spent.clear()
                cache.state_at = time.monotonic()
        return cache.positions, cache.balances

    @staticmethod
    async def _account_types(cache: _Cache, adapter: Adapter) -> dict[str, str]:
        if cache.account_types is None:
            try:
                cache.account_types = await adapter.account_types_async()
            except Exception:
                return {}
        return cache.account_types

    @staticmethod
    async def _fetch(store: dict[str, tuple[float, Any]], key: str,
                     fetch: Callable[[], Awaitable[Any]], what: str) -> Any:
        """Fetch a fact for the checks and cache it; a failure is logged and gives None
        (unknown), which the checks report rather than pass."""
        try:
            value = await fetch()
        except Exception as exc:
            log.warning("%s failed: %s", what, exc)
            return None
        store[key] = (time.monotonic(), value)
        return value

    async def _cached(self, store: dict[str, tuple[float, Any]], key: str, ttl: float,
                      fetch: Callable[[], Awaitable[Any]], what: str,
                      stale: float | None = None, refreshing: set[str] | None = None) -> Any:
        """`store[key]` while younger than `ttl`; else fetched. With `stale`, a value younger
        than that is still returned while a fresh one is fetched in the background."""
        hit = store.get(key)
        age = math.inf if hit is None else time.monotonic() - hit[0]
        if hit is not None and age < ttl:
            return hit[1]
        if hit is not None and stale is not None and refreshing is not None and age < stale:
            self._revalidate(store, key, fetch, what, refreshing)
            return hit[1]
        return await self._fetch(store, key, fetch, what)

    async def _facts(self, cache: _Cache, adapter: Adapter, symbol: str
                     ) -> dict[str, Any] | None:
        async def fetch() -> dict[str, Any] | None:
            df = await adapter.instruments_async([symbol])
            return df.iloc[0].to_dict() if len(df) else None

        return await self._cached(cache.facts, symbol, FACTS_TTL, fetch,
                                  f"instrument facts for {symbol} at {adapter.name}")

    async def _quote(self, cache: _Cache, adapter: Adapter, symbol: str
                     ) -> dict[str, Any] | None:
        return await self._cached(cache.quotes, symbol, QUOTE_TTL, _quote_fetch(adapter, symbol),
                                  f"quote for {symbol} at {adapter.name}", QUOTE_STALE,
                                  cache.refreshing)

    async def _hours(self, cache: _Cache, adapter: Adapter, symbol: str) -> bool | None:
        return await self._cached(cache.hours, symbol, HOURS_TTL,
                                  lambda: adapter.market_open_async(symbol),
                                  f"market hours of {symbol} at {adapter.name}")

    def _revalidate(self, store: dict[str, tuple[float, Any]], key: str,
                    fetch: Callable[[], Awaitable[Any]], what: str,
                    refreshing: set[str]) -> None:
        """Fetch `key` again in the background unless that is under way already."""
        if key not in refreshing:
            refreshing.add(key)
            task = asyncio.ensure_future(self._fetch(store, key, fetch, what))
            task.add_done_callback(lambda _t: refreshing.discard(key))
            self._keep(task)


def needs_margin_preview(asset_class: AssetClass, intent: OrderIntent) -> bool:
    """Whether the buying-power check needs the order's initial margin: a future, or an
    option sale (which may open a short); never a stock order (no extra round trip)."""
    return asset_class is AssetClass.FUTURE or (
        asset_class is AssetClass.OPTION and intent.side is Side.SELL)


def _quote_fetch(adapter: Adapter, symbol: str
                 ) -> Callable[[], Awaitable[dict[str, Any] | None]]:
    async def fetch() -> dict[str, Any] | None:
        df = await adapter.quotes_async([symbol])
        return df.iloc[0].to_dict() if len(df) else None

    return fetch


def quote_price(quote: Mapping[str, Any] | None) -> Decimal | None:
    """The price a quote gives an order: its last trade, else the mid of bid and ask."""
    if not quote:
        return None
    last = decimal_of(quote.get("last"))
    if last is not None and last > 0:
        return last
    bid, ask = decimal_of(quote.get("bid")), decimal_of(quote.get("ask"))
    if bid and ask and bid > 0 and ask > 0:
        return (bid + ask) / 2
    return None
