"""The sandbox: a local, seeded imitation of brokers that brokerkit talks to on 127.0.0.1.

One `Market` (deterministic prices, market hours, FX rates) and one `MatchingEngine` sit behind
every simulated broker, so an instrument has one price everywhere. `PaperBroker` keeps account
state (cash and margin accounts, positions, orders, fills, buying power); `FaultInjector` adds
latency, errors, timeouts and dropped answers; `Sandbox` holds them together with the demo
accounts and the loopback servers. With nothing configured, brokerkit connects to
`embedded_connections()` of `get_sandbox()`.

Importing this package is light: servers (aiohttp) load only when started.
"""

from __future__ import annotations

from .broker import (
    Account,
    BalanceRow,
    DuplicateClientOrderId,
    PaperBroker,
    Position,
    PositionRow,
    UnknownAccount,
    UnknownOrder,
)
from .demo import (
    DEMO_CONNECTIONS,
    DemoAccount,
    DemoConnection,
    Sandbox,
    embedded_connections,
    embedded_routing,
    get_sandbox,
    reset_sandbox,
)
from .faults import FaultInjector, FaultSettings, InjectedFault
from .market import (
    UNIVERSE,
    Clock,
    FeeSchedule,
    Fill,
    Listing,
    Market,
    MatchingEngine,
    Order,
    Quote,
    UnknownSymbol,
)

__all__ = [
    "DEMO_CONNECTIONS",
    "UNIVERSE",
    "Account",
    "BalanceRow",
    "Clock",
    "DemoAccount",
    "DemoConnection",
    "DuplicateClientOrderId",
    "FaultInjector",
    "FaultSettings",
    "FeeSchedule",
    "Fill",
    "InjectedFault",
    "Listing",
    "Market",
    "MatchingEngine",
    "Order",
    "PaperBroker",
    "Position",
    "PositionRow",
    "Quote",
    "Sandbox",
    "UnknownAccount",
    "UnknownOrder",
    "UnknownSymbol",
    "embedded_connections",
    "embedded_routing",
    "get_sandbox",
    "reset_sandbox",
]
