"""Fault injection for sandbox servers and the paper adapter: latency, errors, timeouts, drops.

A `FaultInjector` holds settings per endpoint name ("balances", "submit", "connect", ...), with
`"*"` for every endpoint; an endpoint's own values override `"*"` field by field::

    faults = FaultInjector(seed=1)
    faults.set("*", latency_ms=200)
    faults.set("submit", error_next=2)            # the next two submits fail
    faults.set("submit", drop_after_accept=True)  # place the order, then lose the answer
    await faults.apply("submit")                  # sleeps / raises as configured

Errors raise `InjectedFault` (carrying an HTTP-like `status`, so REST servers can answer with
it); a timeout sleeps `timeout_s` and raises `TimeoutError`. Random error rates are seeded.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import BrokerkitError

__all__ = ["FaultInjector", "FaultSettings", "InjectedFault"]


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
    timeout: bool = False  # hang for timeout_s, then raise TimeoutError
    timeout_s: float = 30.0
    drop_after_accept: bool | int = False  # True: every submit; N: the next N submits

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
        if ok and name == "error_rate":
            ok = value <= 1
    if not ok:
        raise ValueError(f"fault {name}={value!r} for endpoint {endpoint!r} is invalid "
                         f"(expected {type(default).__name__}"
                         f"{' between 0 and 1' if name == 'error_rate' else ' >= 0'})")
    return float(value) if isinstance(default, float) else value


class FaultInjector:
    """Per-endpoint fault settings and the coroutine that applies them."""

    def __init__(self, settings: Mapping[str, Mapping[str, Any]] | None = None, *,
                 seed: int = 0) -> None:
        self._rules: dict[str, dict[str, Any]] = {}
        self._rng = random.Random(seed)
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
        if s.timeout:
            await asyncio.sleep(s.timeout_s)
            raise TimeoutError(f"{endpoint}: injected timeout after {s.timeout_s:g} s")
        if s.error_next:
            rule = self._rule_with(endpoint, "error_next")
            assert rule is not None
            rule["error_next"] -= 1
            raise InjectedFault(endpoint, s.error_message, s.error_status)
        if s.error_rate and self._rng.random() < s.error_rate:
            raise InjectedFault(endpoint, s.error_message, s.error_status)

    def take_drop(self, endpoint: str = "submit") -> bool:
        """True when this accepted request's answer must be lost (consumes a counted drop)."""
        s = self.settings(endpoint)
        if s.drop_after_accept is True:
            return True
        if s.drop_after_accept:
            rule = self._rule_with(endpoint, "drop_after_accept")
            assert rule is not None
            rule["drop_after_accept"] -= 1
            return True
        return False

    def as_dict(self, endpoint: str) -> dict[str, Any]:
        """The effective settings of `endpoint` as plain JSON-ready values."""
        return asdict(self.settings(endpoint))
