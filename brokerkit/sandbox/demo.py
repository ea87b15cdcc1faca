"""The `Sandbox`: one market, one matching engine, named paper brokers, the demo accounts, and
the loopback servers.

Every paper broker a `Sandbox` makes is seeded with the demo accounts of `DEMO_CONNECTIONS`
(deterministically); `describe()` publishes those connections and the routing they need, from
which `brokerkit.profile` builds the embedded configuration. `start_servers_async()` starts the
loopback servers on the runtime loop and returns, per server, its address and demo
credentials. The user's sandbox runs as a service of its own (`sandbox.service`);
`get_sandbox()` is a sandbox of this process (one per seed), for tests and benchmarks.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .. import runtime
from .broker import AccountType, CorporateAction, PaperBroker
from .market import Clock, ClockMode, Market, MatchingEngine

__all__ = [
    "DEFAULT_BROKER",
    "DEMO_CONNECTIONS",
    "EMBEDDED_ROUTING",
    "SERVER_NAMES",
    "DemoAccount",
    "DemoConnection",
    "Sandbox",
    "get_sandbox",
    "reset_sandbox",
]

DEFAULT_BROKER = "paper"

#: The sandbox's servers, in the order of their ports when a base port is given.
SERVER_NAMES = ("control", "paper", "alpaca", "tws")


@dataclass(frozen=True)
class DemoAccount:
    """A demo account: type, base currency, starting cash, and (symbol, qty, avg cost);
    `holds` is what it is for, as the connection publishes it for routing: `kind` ("crypto"
    for a crypto account), `asset_classes` (empty: any), with the currencies of its cash and
    positions."""

    account_id: str
    type: AccountType
    base_currency: str
    cash: Mapping[str, float]
    positions: tuple[tuple[str, float, float], ...] = ()
    kind: str | None = None
    asset_classes: tuple[str, ...] = ()


@dataclass(frozen=True)
class DemoConnection:
    """A demo connection of type "paper" and the accounts it shows."""

    name: str
    institution: str
    accounts: tuple[DemoAccount, ...]


DEMO_CONNECTIONS: tuple[DemoConnection, ...] = (
    DemoConnection("paper-us", "Sandbox Paper US", (
        DemoAccount("DEMO-MARGIN-1", "margin", "USD", {"USD": 250_000.0}, (
            ("AAPL", 120, 190.25), ("NVDA", 80, 98.40), ("MSFT", 40, 405.10),
            ("SPY", 50, 520.00), ("TSLA", -20, 275.50)), "margin"),
        DemoAccount("DEMO-CASH-1", "cash", "USD", {"USD": 50_000.0}, (
            ("QQQ", 30, 445.00), ("AMZN", 25.5, 176.80), ("GOOGL", 15, 160.30)), "cash"),
    )),
    DemoConnection("paper-global", "Sandbox Paper Global", (
        DemoAccount("DEMO-GLOBAL-1", "margin", "EUR",
                    {"EUR": 80_000.0, "GBP": 20_000.0, "JPY": 3_000_000.0, "HKD": 100_000.0,
                     "USD": 10_000.0}, (
            ("STK:SAP@XETRA", 60, 205.40), ("STK:VOD@LSE", 5000, 0.745),
            ("STK:7203@TSE", 300, 2650.0), ("STK:0700@SEHK", 200, 372.0),
            ("STK:SHOP@TSX", 40, 98.0)), "margin", ("equity", "etf", "fx")),
        DemoAccount("DEMO-CRYPTO-1", "cash", "USD", {"USD": 20_000.0, "USDT": 5_000.0}, (
            ("BTC/USD", 0.35, 61_500.0), ("ETH/USD", 4, 3_050.0), ("SOL/USD", 50, 142.0)),
            "crypto"),
    )),
)


class Sandbox(runtime.Bridged):
    """One simulated market with its paper brokers and loopback servers.

    Brokers are made on first use by name and seeded with every demo account, so a test can
    take a fresh broker (`sandbox.broker("t-123")`) without disturbing the shared one.
    """

    def __init__(self, seed: int = 0, *, clock: Clock | None = None,
                 clock_mode: ClockMode = "always-open") -> None:
        self.seed = seed
        self.market = Market(seed, clock=clock, clock_mode=clock_mode)
        self.engine = MatchingEngine(self.market)
        self._brokers: dict[str, PaperBroker] = {}
        self._servers: dict[str, Any] = {}
        self._warming: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"<Sandbox seed={self.seed} brokers={list(self._brokers)} " \
               f"servers={list(self._servers)}>"

    # -- brokers --------------------------------------------------------------------------
    @property
    def brokers(self) -> dict[str, PaperBroker]:
        return dict(self._brokers)

    def broker(self, name: str = DEFAULT_BROKER) -> PaperBroker:
        """The paper broker `name`, made and seeded with the demo accounts on first use."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"broker name must be a non-empty string, got {name!r}")
        broker = self._brokers.get(name)
        if broker is None:
            broker = PaperBroker(name, self.market, self.engine)
            for conn in DEMO_CONNECTIONS:
                for acct in conn.accounts:
                    broker.open_account(acct.account_id, acct.type, acct.base_currency,
                                        acct.cash)
                    for symbol, qty, cost in acct.positions:
                        broker.set_position(acct.account_id, symbol, repr(qty), repr(cost))
            self._brokers[name] = broker
        return broker

    def apply_split(self, symbol: str, ratio: Decimal | float | int | str, *,
                    action_id: str | None = None) -> dict[str, CorporateAction]:
        """Split `symbol` across the sandbox, as an issuer's split reaches every broker: each
        broker's positions and open orders (`PaperBroker.apply_split`, under one action id)
        and the market's price from now on. Fills due before it trade at the old terms.
        Returns each broker's recorded action by broker name; the errors of
        `PaperBroker.apply_split`, with nothing changed."""
        brokers = self.brokers or {DEFAULT_BROKER: self.broker()}
        for b in brokers.values():
            b.process()
        action_id = action_id or f"CA-{uuid.uuid4().hex[:12]}"
        first, *rest = brokers.values()
        done = {first.name: first.apply_split(symbol, ratio, action_id=action_id)}  # checks
        for b in rest:
            done[b.name] = b.apply_split(symbol, ratio, action_id=action_id)
        self.market.split(symbol, done[first.name].ratio)
        return done

    def restore_brokers(self, engine: MatchingEngine, brokers: Mapping[str, PaperBroker]
                        ) -> None:
        """Take `brokers` (sharing `engine`) restored from disk in place of this sandbox's."""
        if self._servers:
            raise RuntimeError("restore the sandbox's brokers before its servers start")
        self.engine = engine
        self._brokers = dict(brokers)

    def state_mark(self) -> tuple[Any, ...]:
        """A cheap mark that changes whenever the brokers' state changes (orders, fills,
        accounts, open orders, the clock): what decides that the state is saved again."""
        clock = self.market.clock
        return (len(self.engine.open_orders), clock._offset, clock._frozen,
                tuple((n, len(b._orders), len(b._fills), len(b._accounts), len(b._actions))
                      for n, b in self._brokers.items()))

    def describe(self) -> dict[str, Any]:
        """The demo connections, the currencies they hold and the routing they need, as plain
        data: what a sandbox service publishes beside its servers' addresses."""
        currencies = {ccy for c in DEMO_CONNECTIONS for a in c.accounts for ccy in a.cash}
        currencies |= {self.market.listing(symbol).currency for c in DEMO_CONNECTIONS
                       for a in c.accounts for symbol, _, _ in a.positions}
        def holds(a: DemoAccount) -> dict[str, Any]:
            ccys = set(a.cash) | {self.market.listing(sym).currency for sym, _, _ in a.positions}
            return {"kind": a.kind, "currencies": sorted(ccys),
                    "asset_classes": list(a.asset_classes)}

        return {"connections": [{"name": c.name, "institution": c.institution,
                                 "accounts": [a.account_id for a in c.accounts],
                                 "profiles": {a.account_id: holds(a) for a in c.accounts}}
                                for c in DEMO_CONNECTIONS],
                "currencies": sorted(currencies), "routing": dict(EMBEDDED_ROUTING)}

    @staticmethod
    def demo_accounts(connection: str) -> tuple[str, ...]:
        """The demo accounts a connection of that name shows ((): not a demo connection)."""
        for conn in DEMO_CONNECTIONS:
            if conn.name == connection:
                return tuple(a.account_id for a in conn.accounts)
        return ()

    # -- servers --------------------------------------------------------------------------
    @property
    def servers(self) -> dict[str, dict[str, Any]]:
        """What `start_servers_async` returned, for servers still running."""
        return {name: dict(s.info) for name, s in self._servers.items()}

    async def start_servers_async(self, host: str = "127.0.0.1", *,
                                  alpaca_rate_limit: int | None = 200,
                                  ports: Mapping[str, int] | None = None
                                  ) -> dict[str, dict[str, Any]]:
        """Start the loopback servers unless running; returns, per server, its address
        (`url`, `host`, `port`) and demo `credentials`. `ports` gives a server's port by name
        (`SERVER_NAMES`; the others take free ports); `alpaca_rate_limit` is the Alpaca
        server's requests per minute (None or 0: no limit)."""
        port = dict(ports or {}).get
        if not self._servers:  # the first fill's calendars, built while the servers start
            self._warming = asyncio.get_running_loop().run_in_executor(
                None, self.market.warm_dates)
        if "control" not in self._servers:
            from .control import start_control

            self._servers["control"] = await start_control(self, host, port("control", 0))
        if "paper" not in self._servers:
            from .paper import start_paper

            self._servers["paper"] = await start_paper(self, host, port("paper", 0))
        if "alpaca" not in self._servers:
            from .alpaca import start_alpaca

            self._servers["alpaca"] = await start_alpaca(self, host, port("alpaca", 0),
                                                         rate_limit=alpaca_rate_limit)
        if "tws" not in self._servers:
            from .tws import start_tws

            self._servers["tws"] = await start_tws(self, host, port("tws", 0))
        return self.servers

    async def server_async(self, name: str) -> dict[str, Any] | None:
        """The address and credentials of server `name` ("alpaca", "tws", "control", "paper"),
        starting the servers if it is not running; None when the sandbox has no such server."""
        servers = self.servers
        if name not in servers:
            servers = await self.start_servers_async()
        return servers.get(name)

    async def stop_servers_async(self) -> None:
        """Stop every server started by `start_servers_async`."""
        servers, self._servers = self._servers, {}
        for server in servers.values():
            await server.close()

    def start_servers(self, host: str = "127.0.0.1", *, alpaca_rate_limit: int | None = 200
                      ) -> dict[str, dict[str, Any]]:
        return runtime.run(self.start_servers_async(host, alpaca_rate_limit=alpaca_rate_limit))

    def stop_servers(self) -> None:
        runtime.run(self.stop_servers_async())


_lock = threading.Lock()
_sandboxes: dict[int, Sandbox] = {}


def get_sandbox(seed: int | None = None) -> Sandbox:
    """The process-wide sandbox for `seed` (default 0), made on first use."""
    key = 0 if seed is None else seed
    if isinstance(key, bool) or not isinstance(key, int):
        raise TypeError(f"sandbox seed must be an int, got {seed!r}")
    with _lock:
        sandbox = _sandboxes.get(key)
        if sandbox is None:
            sandbox = _sandboxes[key] = Sandbox(key)
        return sandbox


def reset_sandbox(seed: int | None = None) -> None:
    """Forget the process-wide sandbox of `seed` (default: all); for tests. Servers of a
    forgotten sandbox keep running until `stop_servers` is called on it."""
    with _lock:
        if seed is None:
            _sandboxes.clear()
        else:
            _sandboxes.pop(seed, None)


#: Where orders go when nothing is configured: US equities and ETFs to the US paper accounts,
#: crypto and FX to the global paper accounts (which hold the other currencies), options and
#: futures to the sandbox's IBKR account.
EMBEDDED_ROUTING: Mapping[str, Any] = {
    "equity": "paper-us", "etf": "paper-us", "crypto": "paper-global", "fx": "paper-global",
    "option": "ibkr-paper", "future": "ibkr-paper", "default": "paper-us",
    "markets": {m: "paper-global" for m in ("XETRA", "LSE", "TSE", "SEHK", "TSX")},
}
