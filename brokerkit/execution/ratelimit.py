"""Client-side rate limits per connection, preset from each broker's published limits.

A `RateLimiter` holds one or more sliding windows ("200 per 60 s"). A window logs what it
admitted and admits more only while the total within the last `period` seconds stays within
`limit`, so no window of that length ever sees more than the limit, and a steady burst runs at
the full limit. Each window weighs operations (`submit`, `cancel`, `balances`...) as the broker
does: Kraken charges nothing for AddOrder on its 1 s counter, Binance.US charges 10 for an
account read.

`try_acquire` answers at once (for `on_rate_limit = "reject"`) and is thread-safe; `acquire`
waits on the event loop until admitted (for `"wait"`). Both read an injectable monotonic clock.
`limiter_for(connection_type, options)` builds a connection's limiter from `PRESETS`, made from
the venues' published limits in `brokerkit.venues` (each with its source).

A `RateLimiter` counts in one process. `brokerkit.execution.sharedlimit` makes its windows one
budget per broker credential for every process on the book (`RateLimitStore.share`).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType
from typing import Any

from ..errors import ConfigError
from ..venues import alpaca as alpaca_venue
from ..venues import ibkr as ibkr_venue
from ..venues import tradestation as tradestation_venue
from ..venues.base import RateLimit
from ..venues.crypto import CCXT

__all__ = ["CCXT_PRESETS", "PRESETS", "RateLimiter", "RatePreset", "Window", "limiter_for"]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[Any]]
_NO_WEIGHTS: Mapping[str, int] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Window:
    """At most `limit` units in any `period` seconds; an operation costs `weights[op]` units
    (`default_weight` when not listed)."""

    limit: int
    period: float
    weights: Mapping[str, int] = field(default_factory=lambda: _NO_WEIGHTS)
    default_weight: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise ValueError(f"window limit must be a positive integer, got {self.limit!r}")
        if not (isinstance(self.period, int | float) and math.isfinite(self.period)
                and self.period > 0):
            raise ValueError(f"window period must be positive seconds, got {self.period!r}")

    def weight(self, operation: str) -> int:
        return self.weights.get(operation, self.default_weight)

    def __str__(self) -> str:
        return f"{self.limit} per {self.period:g} s"


@dataclass(frozen=True)
class RatePreset:
    """A broker's published limits as windows, with where the numbers come from."""

    windows: tuple[Window, ...]
    source: str


def _window(limit: RateLimit) -> Window:
    """A venue's published limit as a window."""
    return Window(limit.requests, float(limit.per_seconds), limit.costs, limit.default_cost)


def _preset(limit: RateLimit) -> RatePreset:
    return RatePreset((_window(limit),), limit.source)


def _ccxt(rate_limit_ms: int, weights: Mapping[str, int] | None = None) -> RatePreset:
    """ccxt's `rateLimit` (ms per unit of cost) as a window: N per second, or, when a second
    holds less than the heaviest operation, as many units as that weighs per N x rateLimit."""
    w = MappingProxyType(dict(weights or {}))
    per_second = 1000 // rate_limit_ms
    heaviest = max([1, *w.values()])
    if per_second >= heaviest:
        window = Window(per_second, 1.0, w)
    else:
        window = Window(heaviest, heaviest * rate_limit_ms / 1000, w)
    return RatePreset((window,), f"ccxt rateLimit = {rate_limit_ms} ms")


#: Published limits per connection type (crypto: see CCXT_PRESETS); an empty tuple is no limit.
#: The numbers and their sources live in `brokerkit.venues`.
PRESETS: Mapping[str, RatePreset] = MappingProxyType({
    "alpaca": _preset(alpaca_venue.TRADING_API_RATE),
    "ibkr": _preset(ibkr_venue.MESSAGE_RATE),
    "tradestation": _preset(tradestation_venue.REQUEST_RATE),
    "paper": RatePreset((), "paper: local simulator, no limit"),
    "statements": RatePreset((), "statement files: no requests"),
})

#: ccxt exchanges by id: `rateLimit` and per-operation costs (`brokerkit.venues.crypto`).
CCXT_PRESETS: Mapping[str, RatePreset] = MappingProxyType({
    name: _ccxt(budget.rate_limit_ms, budget.costs) for name, budget in CCXT.items()})


class _Log:
    """One window's record of what it admitted: (time, units), oldest first."""

    __slots__ = ("entries", "total", "window")

    def __init__(self, window: Window) -> None:
        self.window = window
        self.entries: deque[tuple[float, int]] = deque()
        self.total = 0

    def expire(self, now: float) -> None:
        # `at + period <= now`, the exact complement of the wait below being positive
        period, entries = self.window.period, self.entries
        while entries and entries[0][0] + period <= now:
            self.total -= entries.popleft()[1]

    def wait(self, now: float, units: int) -> float:
        """Seconds until `units` more fit (0 when they fit now); call after `expire`."""
        excess = self.total + units - self.window.limit
        if excess <= 0:
            return 0.0
        for at, n in self.entries:
            excess -= n
            if excess <= 0:
                return at + self.window.period - now
        return math.inf  # unreachable: units never exceed the limit here


@dataclass(eq=False)
class RateLimiter:
    """Sliding-window limiter for one connection; no windows means no limit.

    `try_acquire(cost)` admits now or refuses (thread-safe); `await acquire(cost)` waits until
    admitted. `operation` names what is being charged (default `submit`), so each window can
    weigh it as its broker does.
    """

    windows: Sequence[Window] = ()
    name: str = ""
    clock: Clock = time.monotonic
    sleep: Sleep = asyncio.sleep
    _logs: tuple[_Log, ...] = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.windows = tuple(self.windows)
        self._logs = tuple(_Log(w) for w in self.windows)

    @classmethod
    def per_second(cls, rate: float, **kwargs: Any) -> RateLimiter:
        """A limiter of `rate` submits per second (fractional rates as N per M seconds)."""
        return cls((_per_second_window(rate),), **kwargs)

    @property
    def unlimited(self) -> bool:
        return not self._logs

    def try_acquire(self, cost: int = 1, *, operation: str = "submit") -> bool:
        """Take `cost` units of `operation` now if every window has room; never blocks."""
        with self._lock:
            return self._take(self.clock(), self._units(cost, operation)) == 0.0

    async def acquire(self, cost: int = 1, *, operation: str = "submit") -> None:
        """Wait (on the running event loop) until `cost` units of `operation` are admitted."""
        units = self._units(cost, operation)
        while True:
            with self._lock:
                wait = self._take(self.clock(), units)
            if wait == 0.0:
                return
            await self.sleep(wait)

    def wait_time(self, cost: int = 1, *, operation: str = "submit") -> float:
        """Seconds until `try_acquire(cost)` would succeed; 0 when it would now. Takes nothing."""
        units = self._units(cost, operation)
        with self._lock:
            now = self.clock()
            waits = [0.0]
            for log, n in zip(self._logs, units, strict=True):
                log.expire(now)
                waits.append(log.wait(now, n))
            return max(waits)

    def __str__(self) -> str:
        limits = " and ".join(str(w) for w in self.windows) or "no limit"
        return f"{self.name}: {limits}" if self.name else limits

    def _units(self, cost: int, operation: str) -> tuple[int, ...]:
        if isinstance(cost, bool) or not isinstance(cost, int) or cost < 0:
            raise ValueError(f"cost must be an integer >= 0, got {cost!r}")
        units = tuple(cost * w.weight(operation) for w in self.windows)
        for w, n in zip(self.windows, units, strict=True):
            if n > w.limit:
                raise ValueError(f"{operation} x{cost} costs {n} units, more than the window "
                                 f"{w} can ever admit")
        return units

    def _take(self, now: float, units: tuple[int, ...]) -> float:
        """Record `units` in every window and return 0.0, or return the seconds to wait."""
        wait = 0.0
        for log, n in zip(self._logs, units, strict=True):
            log.expire(now)
            if n:
                wait = max(wait, log.wait(now, n))
        if wait > 0.0:
            return wait
        for log, n in zip(self._logs, units, strict=True):
            if n:
                log.entries.append((now, n))
                log.total += n
        return 0.0


def _per_second_window(rate: float) -> Window:
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate) \
            or rate <= 0:
        raise ValueError(f"rate must be a positive number of orders per second, got {rate!r}")
    frac = Fraction(rate).limit_denominator(1000)
    # An order-rate cap counts submits only: reads and cancels do not use it up.
    return Window(frac.numerator, float(frac.denominator), {"submit": 1}, default_weight=0)


def limiter_for(connection_type: str, options: Mapping[str, Any] | None = None, *,
                name: str = "", max_orders_per_second: float | None = None,
                clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> RateLimiter:
    """The limiter for a connection: its broker's preset, plus a cap on submits per second.

    `options` are the connection's options: `exchange` picks the ccxt preset of a `crypto`
    connection (ids ccxt knows but `CCXT_PRESETS` does not are read from ccxt itself), and
    `rate_limit = { requests = 100, per_seconds = 60 }` replaces the preset, or
    `rate_limit = false` removes it. Raises `ConfigError` naming the option at fault.
    """
    options = options or {}
    where = f"connections.{name}.options" if name else "options"
    override = options.get("rate_limit")
    if override is not None:
        windows = _override_windows(override, f"{where}.rate_limit")
    elif connection_type == "crypto":
        windows = _ccxt_preset(options.get("exchange"), f"{where}.exchange").windows
    elif connection_type in PRESETS:
        windows = PRESETS[connection_type].windows
    else:
        raise ConfigError(f"no rate-limit preset for connection type {connection_type!r}",
                          key=f"connections.{name}.type" if name else "type",
                          expected="one of " + ", ".join([*PRESETS, "crypto"]))
    if max_orders_per_second is not None:
        windows = (*windows, _per_second_window(max_orders_per_second))
    return RateLimiter(windows, name=name, clock=clock, sleep=sleep)


def _override_windows(value: Any, key: str) -> tuple[Window, ...]:
    expected = "false, or a table like { requests = 100, per_seconds = 60 }"
    if value is False:
        return ()
    if not isinstance(value, Mapping) or set(value) != {"requests", "per_seconds"}:
        raise ConfigError(f"is {value!r}", key=key, expected=expected)
    try:
        return (Window(value["requests"], value["per_seconds"]),)
    except ValueError as exc:
        raise ConfigError(str(exc), key=key, expected=expected) from None


def _ccxt_preset(exchange: Any, key: str) -> RatePreset:
    if isinstance(exchange, str) and exchange in CCXT_PRESETS:
        return CCXT_PRESETS[exchange]
    expected = "a ccxt exchange id such as " + ", ".join(CCXT_PRESETS)
    if not isinstance(exchange, str) or not exchange:
        raise ConfigError(f"is {exchange!r}", key=key, expected=expected)
    try:
        import ccxt
    except ImportError:
        raise ConfigError(f"{exchange!r} has no preset and ccxt is not installed", key=key,
                          expected=expected) from None
    cls = getattr(ccxt, exchange, None)
    if not (isinstance(cls, type) and issubclass(cls, ccxt.Exchange)):
        raise ConfigError(f"{exchange!r} is not a ccxt exchange", key=key, expected=expected)
    return _ccxt(int(cls().describe()["rateLimit"]))
