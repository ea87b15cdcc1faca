"""The gateway server: listener, session registry, event routing, background matching."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import messages as m
from .faults import GatewayFaults
from .margin import MarginModel
from .recorder import Recorder
from .records import TwsExecution, TwsOrder
from .session import Session
from .state import PortfolioLine, TwsBroker, tws_broker

if TYPE_CHECKING:
    from ..demo import Sandbox

__all__ = ["MAX_SERVER_VERSION", "MIN_SERVER_VERSION", "TwsGateway", "start_tws"]

MIN_SERVER_VERSION, MAX_SERVER_VERSION = 157, 178
_log = logging.getLogger(__name__)


@dataclass
class TwsGateway:
    """A running TWS-protocol gateway.

    `info`: host, port, accounts, server_version. `sessions`: API-started sessions by
    clientId. `faults`: see `brokerkit.sandbox.tws.faults`. `recorder`: per-session message
    journals. `state`: the shared `TwsBroker`.
    """

    state: TwsBroker
    server_version: int
    info: dict[str, Any] = field(default_factory=dict)
    sessions: dict[int, Session] = field(default_factory=dict)
    recorder: Recorder = field(default_factory=Recorder)
    tick_interval: float = 0.25
    faults: GatewayFaults = field(init=False)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _ticker: asyncio.Task[None] | None = None
    _unsubscribe: Any = None
    _last_stream: float = 0.0

    def __post_init__(self) -> None:
        self.faults = GatewayFaults(self)

    @property
    def host(self) -> str:
        return str(self.info["host"])

    @property
    def port(self) -> int:
        return int(self.info["port"])

    @property
    def accounts(self) -> list[str]:
        return list(self.state.accounts)

    # -- lifecycle --------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                     ) -> None:
        session = Session(self, reader, writer)
        await session.run()

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop serving and drop every connection; the broker state stays in the sandbox."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        self.drop_sessions(None)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.tick_interval)
            try:
                self.state.process()
                if loop.time() - self._last_stream >= 1.0:
                    self._last_stream = loop.time()
                    for s in list(self.sessions.values()):
                        for req_id, c in list(s.mkt_subs.items()):
                            s.send_ticks(req_id, c)
            except Exception:  # keep ticking
                _log.exception("tws gateway tick failed")

    # -- sessions ---------------------------------------------------------------------------
    def forget(self, session: Session) -> None:
        if session.client_id is not None and self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]

    def drop_sessions(self, client_id: int | None) -> int:
        victims = [s for cid, s in self.sessions.items() if client_id in (None, cid)]
        for s in victims:
            s.abort()
        return len(victims)

    def drop_connections(self, client_id: int | None = None) -> int:
        """Abort the sockets of `client_id` (default: every session); returns how many."""
        return self.drop_sessions(client_id)

    def broadcast_error(self, code: int, text: str) -> None:
        for s in list(self.sessions.values()):
            s.error(-1, code, text)

    # -- routing ----------------------------------------------------------------------------
    def _on_event(self, kind: str, o: TwsOrder | None, e: TwsExecution | None) -> None:
        if o is None:
            return
        owner = self.sessions.get(o.client_id)
        if kind == "exec" and e is not None:
            if owner is not None:
                owner.send(m.exec_details(owner.version, -1, e))
                owner.send(m.commission_report(e))
                owner.send(m.order_status(o, "Filled" if o.status == "Filled" else "Submitted"))
                if o.status == "Filled":
                    owner.send(m.open_order(owner.version, o, "Filled"))
            self.position_changed(o)
        elif kind == "status" and owner is not None:
            owner.send(m.order_status(o))

    def order_cancelled(self, o: TwsOrder) -> None:
        owner = self.sessions.get(o.client_id)
        if owner is not None:
            owner.send(m.order_status(o, "Cancelled"))
            owner.error(o.order_id, 202, "Order Canceled - reason:")

    def position_changed(self, o: TwsOrder) -> None:
        """Push the position, portfolio line and account values after a fill."""
        account, c = o.account, o.contract
        snap = self.state.snapshot(account)
        lines = [ln for ln in snap.lines if ln.contract.con_id == c.con_id]
        qty = lines[0].qty if lines else 0.0
        avg = lines[0].avg_cost if lines else 0.0
        if not lines:
            lines = [PortfolioLine(c, 0.0, float(self.state.market.quote(c.listing).last),
                                   0.0, 0.0, 0.0, 0.0)]
        for s in list(self.sessions.values()):
            if s.positions_sub:
                s.send(m.position(account, c, qty, avg))
            if s.account_sub == account:
                s.send_account(account, lines=lines)
            for req_id, tags in s.summary_subs.items():
                s.send_summary(req_id, tags)


async def start_tws(sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0, *,
                    server_version: int = MAX_SERVER_VERSION, broker: str = "ibkr",
                    pacing_limit: int | None = 50, margin: MarginModel | None = None,
                    tick_interval: float = 0.25) -> TwsGateway:
    """Serve the TWS API protocol for `sandbox`'s broker `broker` on `host` (a free port
    unless given); returns the running gateway. `server_version` is the highest server
    version it negotiates (157..178); `pacing_limit` is messages per second per session
    before error 100 (None: no limit)."""
    if isinstance(server_version, bool) or not isinstance(server_version, int) or \
            not MIN_SERVER_VERSION <= server_version <= MAX_SERVER_VERSION:
        raise ValueError(f"server_version must be an int from {MIN_SERVER_VERSION} to "
                         f"{MAX_SERVER_VERSION}, got {server_version!r}")
    state = tws_broker(sandbox, broker, margin=margin)
    loop = asyncio.get_running_loop()
    state.bind_loop(loop)
    gw = TwsGateway(state, server_version, tick_interval=tick_interval)
    gw.faults.pacing_limit = pacing_limit or None
    gw._unsubscribe = state.subscribe(gw._on_event)
    gw._server = await asyncio.start_server(gw._on_connect, host, port)
    bound = gw._server.sockets[0].getsockname()[1]
    gw.info = {"host": host, "port": bound, "accounts": list(state.accounts),
               "account": state.accounts[0], "server_version": server_version,
               "url": f"tws://{host}:{bound}", "credentials": {}}
    gw._ticker = asyncio.ensure_future(gw._tick())
    return gw
