"""Fault injection for sandbox servers and the paper adapter: latency, errors, timeouts, drops.

A `FaultInjector` holds settings per endpoint name ("balances", "submit", "connect", ...), with
`"*"` for every endpoint; an endpoint's own values override `"*"` field by field::

    faults = FaultInjector(seed=1)
    faults.set("*", latency_ms=200)
    faults.set("submit", error_next=2)            # the next two submits fail
    faults.set("submit", drop_after_accept=True)  # place the order, then lose the answer
    faults.set("submit", accept_late_next=1, accept_late_s=15)  # place it 15 s late
    faults.set("submit", error_rate=0.04, rate_limit_rate=0.04, timeout_rate=0.04,
               drop_rate=0.04, accept_late_rate=0.04)  # a fifth of submits, every kind
    await faults.apply("submit")                  # sleeps / raises as configured

Errors raise `InjectedFault` (carrying an HTTP-like `status`, so REST servers can answer with
it); a timeout sleeps `timeout_s` and raises `TimeoutError`. Random rates are seeded, each
kind from its own generator (`error_rate` 5xx answers, `rate_limit_rate` 429 answers,
`timeout_rate` timeouts, `drop_rate` lost answers, `accept_late_rate` late accepts), so
setting one kind never changes which calls another kind hits.

A late accept (`take_late`) is a broker that receives an order `accept_late_s` after it was
sent (a proxy held it): until then a lookup by client order id finds nothing, then the order is
placed and trades, whether or not the client still waits. Servers place late orders through
`LateOrders`, which runs each in a task of its own.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

from ..errors import BrokerkitError

__all__ = ["FaultInjector", "FaultSettings", "InjectedFault", "LateOrders"]

_log = logging.getLogger(__name__)
T = TypeVar("T")
_RATES = ("error_rate", "rate_limit_rate", "timeout_rate", "drop_rate", "accept_late_rate")


class InjectedFault(BrokerkitError):
    """A failure the fault injector was told to produce."""

    def __init__(self, endpoint: str, message: str, status: int = 500) -> None:
        self.endpoint, self.status = endpoint, status
        super().__init__(f"{endpoint}: {message} (injected fault, status {status})")


@dataclass(frozen=True)
class FaultSettings:
    """The effective faults of one endpoint."""

    latency_ms: float = 0.0
    error_next: int = 0  # fail the next N calls
    error_rate: float = 0.0  # then fail this fraction of calls (seeded)
    error_status: int = 500
    error_message: str = "service unavailable"
    rate_limit_rate: float = 0.0  # this fraction of calls answered 429 (seeded)
    timeout: bool = False  # hang for timeout_s, then raise TimeoutError
    timeout_rate: float = 0.0  # this fraction of calls hang for timeout_s (seeded)
    timeout_s: float = 30.0
    drop_after_accept: bool | int = False  # True: every submit; N: the next N submits
    drop_rate: float = 0.0  # then this fraction of accepted submits lose their answer
    accept_late_next: int = 0  # place the next N submits accept_late_s late
    accept_late_rate: float = 0.0  # then this fraction of submits (seeded)
    accept_late_s: float = 15.0  # how long a late submit is held before the broker places it

    @property
    def active(self) -> bool:
        return self != FaultSettings()


_FIELDS = {f.name: f for f in fields(FaultSettings)}


def _check(endpoint: str, name: str, value: Any) -> Any:
    if name not in _FIELDS:
        raise ValueError(f"unknown fault setting {name!r} for endpoint {endpoint!r}; expected "
                         f"one of {', '.join(_FIELDS)}")
    default = getattr(FaultSettings(), name)
    if name == "drop_after_accept":
        ok = isinstance(value, bool) or (isinstance(value, int) and value >= 0)
    elif isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    else:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
        if ok and name in _RATES:
            ok = value <= 1
    if not ok:
        raise ValueError(f"fault {name}={value!r} for endpoint {endpoint!r} is invalid "
                         f"(expected {type(default).__name__}"
                         f"{' between 0 and 1' if name in _RATES else ' >= 0'})")
    return float(value) if isinstance(default, float) else value


class FaultInjector:
    """Per-endpoint fault settings and the coroutine that applies them."""

    def __init__(self, settings: Mapping[str, Mapping[str, Any]] | None = None, *,
                 seed: int = 0) -> None:
        self._rules: dict[str, dict[str, Any]] = {}
        #: how many faults were injected, per (endpoint, kind); kinds: "error", "rate_limit",
        #: "timeout", "drop", "accept_late" (tests print them as their figures)
        self.hits: Counter[tuple[str, str]] = Counter()
        self._rng = random.Random(seed)
        # one generator per kind: errors' draws stay as they were whatever else is set
        self._kind_rng = {kind: random.Random(f"{kind}:{seed}")
                          for kind in ("accept_late", "rate_limit", "timeout", "drop")}
        for endpoint, values in (settings or {}).items():
            if not isinstance(values, Mapping):
                raise ValueError(f"faults for endpoint {endpoint!r} must be a table of "
                                 f"settings, got {values!r}")
            self.set(endpoint, **values)

    def __repr__(self) -> str:
        return f"<FaultInjector {self._rules or 'none'}>"

    def set(self, endpoint: str = "*", **values: Any) -> FaultSettings:
        """Change some settings of `endpoint` ("*": every endpoint); returns its effect."""
        checked = {k: _check(endpoint, k, v) for k, v in values.items()}
        self._rules.setdefault(endpoint, {}).update(checked)
        return self.settings(endpoint)

    def clear(self, endpoint: str | None = None) -> None:
        """Remove the faults of `endpoint`, or of every endpoint."""
        if endpoint is None:
            self._rules.clear()
        else:
            self._rules.pop(endpoint, None)

    def settings(self, endpoint: str) -> FaultSettings:
        """The effective settings of `endpoint`: its own values over those of "*"."""
        return FaultSettings(**{**self._rules.get("*", {}), **self._rules.get(endpoint, {})})

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every endpoint's explicitly set values (for the control server)."""
        return {e: dict(v) for e, v in self._rules.items()}

    def _rule_with(self, endpoint: str, name: str) -> dict[str, Any] | None:
        for key in (endpoint, "*"):
            rule = self._rules.get(key)
            if rule is not None and name in rule:
                return rule
        return None

    async def apply(self, endpoint: str) -> None:
        """Apply `endpoint`'s faults: sleep the latency, then hang or raise if configured."""
        s = self.settings(endpoint)
        if s.latency_ms:
            await asyncio.sleep(s.latency_ms / 1000)
        kind = self.take_fault(endpoint)
        if kind == "timeout":
            await asyncio.sleep(s.timeout_s)
            raise TimeoutError(f"{endpoint}: injected timeout after {s.timeout_s:g} s")
        if kind == "error":
            raise InjectedFault(endpoint, s.error_message, s.error_status)
        if kind == "rate_limit":
            raise InjectedFault(endpoint, "too many requests", 429)

    def take_fault(self, endpoint: str) -> str | None:
        """The fault this call of `endpoint` meets before it is handled: "timeout", "error"
        (a 5xx), "rate_limit" (a 429), or None; consumes a counted one and counts it in
        `hits` (`apply` acts on it; a server without HTTP statuses, such as the TWS gateway,
        acts on it in its own terms)."""
        s = self.settings(endpoint)
        kind: str | None = None
        if s.timeout or (s.timeout_rate and self._draw("timeout", s.timeout_rate)):
            kind = "timeout"
        elif s.error_next:
            rule = self._rule_with(endpoint, "error_next")
            assert rule is not None
            rule["error_next"] -= 1
            kind = "error"
        elif s.error_rate and self._rng.random() < s.error_rate:
            kind = "error"
        elif s.rate_limit_rate and self._draw("rate_limit", s.rate_limit_rate):
            kind = "rate_limit"
        if kind is not None:
            self.hits[(endpoint, kind)] += 1
        return kind

    def _draw(self, kind: str, rate: float) -> bool:
        """A seeded draw of `kind`'s own generator: True for a fraction `rate` of calls."""
        return self._kind_rng[kind].random() < rate

    def hit(self, endpoint: str, kind: str) -> bool:
        """Count one injected fault of `kind` at `endpoint` (also for a server that injects
        it itself); True."""
        self.hits[(endpoint, kind)] += 1
        return True

    def take_drop(self, endpoint: str = "submit") -> bool:
        """True when this accepted request's answer must be lost (consumes a counted drop)."""
        s = self.settings(endpoint)
        if s.drop_after_accept is True:
            return self.hit(endpoint, "drop")
        if s.drop_after_accept:
            rule = self._rule_with(endpoint, "drop_after_accept")
            assert rule is not None
            rule["drop_after_accept"] -= 1
            return self.hit(endpoint, "drop")
        return bool(s.drop_rate) and self._draw("drop", s.drop_rate) and self.hit(endpoint, "drop")

    def take_late(self, endpoint: str = "submit") -> float | None:
        """The seconds this request must be held before the broker places it (a late
        accept), or None to place it now; consumes a counted late accept (`accept_late_next`
        first, then a seeded draw against `accept_late_rate`)."""
        s = self.settings(endpoint)
        if s.accept_late_next:
            rule = self._rule_with(endpoint, "accept_late_next")
            assert rule is not None
            rule["accept_late_next"] -= 1
            self.hits[(endpoint, "accept_late")] += 1
            return s.accept_late_s
        if s.accept_late_rate and self._draw("accept_late", s.accept_late_rate):
            self.hits[(endpoint, "accept_late")] += 1
            return s.accept_late_s
        return None

    def as_dict(self, endpoint: str) -> dict[str, Any]:
        """The effective settings of `endpoint` as plain JSON-ready values."""
        return asdict(self.settings(endpoint))


class LateOrders:
    """Requests a broker accepts late: each is held its delay, then placed by a task of its
    own, so it is placed even when the client has given up (a server cancels the handler of a
    request whose client went away); a client still waiting gets the answer.

    `close()` (also an aiohttp `on_shutdown` receiver) cancels the held ones: an order held
    when the sandbox stops is never placed, as a broker that never received it. With
    `tasks`, each held task is also kept in that set while it runs (a set its owner cancels
    when it stops, as the TWS gateway does with its connections).
    """

    def __init__(self, tasks: set[asyncio.Task[Any]] | None = None) -> None:
        self._held: set[asyncio.Task[Any]] = set()
        self._owner = tasks

    def __repr__(self) -> str:
        return f"<LateOrders held={len(self)}>"

    def __len__(self) -> int:
        """How many requests are held now."""
        return len(self._held)

    def hold(self, delay: float, place: Callable[[], T]) -> asyncio.Task[T]:
        """Run `place()` after `delay` seconds, whatever becomes of the caller; an error it
        raises when nobody awaits it is logged."""
        async def later() -> T:
            await asyncio.sleep(delay)
            return place()

        task = asyncio.ensure_future(later())
        for held in (self._held, self._owner):
            if held is not None:
                held.add(task)
                task.add_done_callback(held.discard)
        task.add_done_callback(_log_unheard)
        return task

    async def placed(self, delay: float, place: Callable[[], T]) -> T:
        """`place()`'s result after `delay` seconds; cancelling the caller (its client went
        away) leaves the placing to go on."""
        return await asyncio.shield(self.hold(delay, place))

    async def close(self, _app: object = None) -> None:
        """Cancel every held request (none of them is placed) and wait for them to end."""
        held = list(self._held)
        for task in held:
            task.cancel()
        if held:
            await asyncio.gather(*held, return_exceptions=True)


def _log_unheard(task: asyncio.Task[Any]) -> None:
    """Retrieve a late request's error (its client may be gone) so it is logged once, here."""
    if not task.cancelled() and task.exception() is not None:
        _log.debug("a late-accepted request failed: %s", task.exception())
