"""The sandbox: a local, seeded imitation of brokers that brokerkit talks to on 127.0.0.1.

One `Market` (deterministic prices, market hours, FX rates) and one `MatchingEngine` sit behind
every simulated broker, so an instrument has one price everywhere. `PaperBroker` keeps account
state (cash and margin accounts, positions, orders, fills, buying power); `FaultInjector` adds
latency, errors, timeouts and dropped answers; `Sandbox` holds them together with the demo
accounts and the loopback servers. `service` runs one sandbox per user as a local service
that every process shares (its state persisted by `persist`); with nothing configured,
brokerkit's embedded profile (`brokerkit.profile`) connects to it. The sandbox knows nothing of
brokerkit's adapters or services: they talk to it over loopback, as to a real broker.

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
    "get_sandbox",
    "reset_sandbox",
]
