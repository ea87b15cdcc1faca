"""Guarded execution: routing, risk limits, pre-trade checks and client-side rate limits.

- `routing`: `route(intent, routing, connections)` picks the connection, or `NO_ROUTE`.
- `limits`: `parse_risk` reads `[risk]` into `RiskLimits`; `for_order` resolves the levels.
- `risk`: `run_checks(CheckContext)` runs every pre-trade check and reports every violation.
- `ratelimit`: `limiter_for(connection_type, options)` builds a connection's `RateLimiter`.
- `killswitch`: `KillSwitch` reads and changes the trading state (ACTIVE, REDUCING, HALTED).
- `service`: `ExecutionService.place_order(intent)`, the pipeline that joins them all, and
  `get_execution_service()`; its parts: `pipeline` (validate, route, checks, the journal row),
  `inputs` (the checks' cached inputs), `journal` (the book thread and deferred journal
  updates), `submit` (the submit state machine: SENT, ACKNOWLEDGED, REJECTED, UNCERTAIN),
  `recovery` (periodic lookup of unresolved rows) and `fills` (fill pulls and the exit drain).

The pipeline (`service`) and the kill switch are imported on first use.
"""

from __future__ import annotations

from .._lazy import lazy_exports
from .limits import EffectiveLimits, RiskLimits, parse_risk
from .ratelimit import PRESETS, RateLimiter, Window, limiter_for
from .risk import (
    CHECKS,
    CODES,
    CheckContext,
    DuplicateDetector,
    InstrumentFacts,
    intent_fingerprint,
    run_checks,
)
from .routing import Route, RouteTarget, RoutingTable, infer_asset_class, parse_routing, route

_LAZY = {
    "ExecutionService": "brokerkit.execution.service",
    "Preview": "brokerkit.execution.service",
    "get_execution_service": "brokerkit.execution.service",
    "reset_execution_service": "brokerkit.execution.service",
    "new_client_order_id": "brokerkit.execution.service",
    "KillSwitch": "brokerkit.execution.killswitch",
    "StateView": "brokerkit.execution.killswitch",
}


__all__ = [
    "CHECKS",
    "CODES",
    "PRESETS",
    "CheckContext",
    "DuplicateDetector",
    "EffectiveLimits",
    "ExecutionService",
    "InstrumentFacts",
    "KillSwitch",
    "Preview",
    "RateLimiter",
    "RiskLimits",
    "Route",
    "RouteTarget",
    "RoutingTable",
    "StateView",
    "Window",
    "get_execution_service",
    "infer_asset_class",
    "intent_fingerprint",
    "limiter_for",
    "new_client_order_id",
    "parse_risk",
    "parse_routing",
    "reset_execution_service",
    "route",
    "run_checks",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
