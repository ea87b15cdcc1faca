"""What the Alpaca server keeps: the demo account, the venue-side order facts, the running
server, and the per-application state its handlers read (`request.app[STATE]`)."""

from __future__ import annotations

import weakref
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..broker import PaperBroker, UnknownOrder
from .errors import not_found
from .shapes import alpaca_class, uid

if TYPE_CHECKING:
    from ..faults import FaultInjector
    from ..market import Listing, Market, Order

__all__ = ["ACCOUNT", "DEMO_KEY_ID", "DEMO_SECRET_KEY", "STATE", "AlpacaServer", "AppState",
           "Bucket", "VenueState", "venue_state"]

#: The Alpaca paper account every sandbox server serves.
ACCOUNT = "PA-DEMO-1"
#: Demo credentials `Sandbox.start_servers_async` gives its Alpaca server.
DEMO_KEY_ID = "PKSANDBOXDEMO0000001"
DEMO_SECRET_KEY = "sandbox-demo-secret-not-a-real-key"
_SEED_CASH = {"USD": 100_000.0}
_SEED_POSITIONS = (("AAPL", "10", "201.50"), ("SPY", "5.5", "560.00"), ("NVDA", "0.75", "118.20"))


class Bucket:
    """A sliding one-minute log of admitted requests (one per rate-limited API)."""

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

@dataclass
class VenueState:
    """Alpaca-side facts of one broker's orders (kept with the broker, across restarts)."""

    extended_hours: dict[str, bool] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)  # orders answered with 403/422: not shown


_venues: weakref.WeakKeyDictionary[PaperBroker, VenueState] = weakref.WeakKeyDictionary()


def venue_state(broker: PaperBroker) -> VenueState:
    """`broker`'s Alpaca state; the first call opens the demo account with its positions."""
    venue = _venues.get(broker)
    if venue is None:
        venue = _venues[broker] = VenueState()
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
    _buckets: dict[str, Bucket] = field(default_factory=dict)

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


class AppState:
    """What one application's handlers share: its server, broker, market and Alpaca assets."""

    def __init__(self, server: AlpacaServer, key_id: str, secret_key: str) -> None:
        self.server = server
        self.broker: PaperBroker = server.broker
        self.market: Market = self.broker.market
        self.faults: FaultInjector = self.broker.faults
        self.venue = venue_state(self.broker)
        self.keys = (key_id, secret_key)
        self.assets: dict[str, Listing] = {li.symbol: li for li in self.market.listings
                                           if alpaca_class(li) is not None}
        self.by_id = {uid("asset", s): li for s, li in self.assets.items()}
        self.trade_seq: Iterator[int] = iter(range(52_983_525_029_461, 10**18))

    def asset(self, symbol: str) -> Listing | None:
        """The listing of `symbol` (`AAPL`, `BTC/USD`, `BTCUSD`) or of an asset id."""
        text = symbol.strip().upper()
        found = self.assets.get(text) or self.by_id.get(symbol.strip().lower())
        if found is None and "/" not in text:
            for quote in ("USD", "USDT", "BTC"):
                pair = f"{text[:-len(quote)]}/{quote}"
                if text.endswith(quote) and pair in self.assets:
                    return self.assets[pair]
        return found

    def visible(self, o: Order) -> bool:
        """Orders Alpaca refused (403/422) were never placed: not shown."""
        return o.order_id not in self.venue.refused

    def order_of(self, order_id: str) -> Order:
        """One order of the account by id; 404 otherwise."""
        try:
            o = self.broker.order(order_id)
        except UnknownOrder:
            raise not_found("order not found") from None
        if o.account != ACCOUNT or not self.visible(o):
            raise not_found("order not found")
        return o


STATE: web.AppKey[AppState] = web.AppKey("alpaca", AppState)
