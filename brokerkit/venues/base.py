"""Shapes shared by the venue modules."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["RateLimit"]

_NO_COSTS: Mapping[str, int] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A published request limit: at most `requests` units in any `per_seconds` seconds.

    An operation (`submit`, `cancel`, `balances`, `positions`, `orders`, `lookup`, `fills`...)
    costs `costs[op]` units, `default_cost` when not listed; `source` says where the numbers
    come from.
    """

    requests: int
    per_seconds: float
    source: str
    costs: Mapping[str, int] = field(default_factory=lambda: _NO_COSTS)
    default_cost: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.requests, bool) or not isinstance(self.requests, int) \
                or self.requests < 1:
            raise ValueError(f"requests must be a positive integer, got {self.requests!r}")
        if not (isinstance(self.per_seconds, int | float) and math.isfinite(self.per_seconds)
                and self.per_seconds > 0):
            raise ValueError(f"per_seconds must be positive, got {self.per_seconds!r}")
        object.__setattr__(self, "costs", MappingProxyType(dict(self.costs)))

    @property
    def per_minute(self) -> float:
        """The limit as requests per minute (of cost-1 requests)."""
        return self.requests * 60.0 / self.per_seconds
