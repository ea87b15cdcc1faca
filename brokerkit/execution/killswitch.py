"""The kill switch: trading state ACTIVE / REDUCING / HALTED, kept in the book.

The state lives in the book's database, so every process (notebook kernels, the dashboard
server, scripts) sees a change on its very next order; the journal re-reads it in the same
transaction that writes the order. `SYSTEM_HALTED=1` (or true/yes/on) in the environment
forces HALTED whatever the book says. Every change is recorded with who, when and why.

- `halt(reason, cancel_open=True)`: stop all new orders; cancel every open order at every
  trading connection (cancels are never blocked).
- `reduce_only(reason, cancel_open=True)`: only orders that bring a position towards flat
  pass; the open orders that would not pass now (open from flat, add, flip, or cannot be
  shown to reduce) are cancelled, the reducing ones stay working.
- `resume(reason)`: back to ACTIVE.

The cancels work from any process: each trading connection is connected if it is not, and
asked for every open order it has, whoever placed them (`Adapter.open_orders_async`, all
pages; `cancel_all_async`, the broker's cancel-all call where it has one). The `HaltReport`
says per connection what was cancelled, what is still open and why, or that the connection
could not be reached; `report.complete` is True only when nothing meant to be cancelled is
left open or unknown. One connection failing never stops the others' cancels.

Every change commits holding the send gate (`sendgate`): it waits for the sends in progress
on this machine, and an order journaled under the old state but not yet sent is refused, so
no order reaches a broker after the change commits. A process on another machine sharing a
PostgreSQL book is outside the gate, so the sweep also waits, up to `IN_FLIGHT_WAIT` seconds,
for the broker's answer to every order the journal shows being sent (JOURNALED, SENT or
UNCERTAIN, touched in the last `IN_FLIGHT_WAIT` seconds; older ones are recovery's), then
cancels again at their connections; one still unanswered by then is reported as possibly live
(`failed`, by client order id), so `complete` is False.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .. import runtime
from ..adapters.base import cancel_listed
from ..errors import AdapterError
from ..service import _describe
from .sendgate import SendGate

if TYPE_CHECKING:
    import pandas as pd

    from ..adapters.base import Adapter
    from ..book import Book, TradingState
    from ..service import BrokerageService

__all__ = ["ENV_VAR", "ConnectionCancels", "HaltReport", "KillSwitch", "StateView",
           "env_halted"]

ENV_VAR = "SYSTEM_HALTED"
#: Seconds a broker has, after the cancels, to stop listing the cancelled orders as open.
SETTLE_S = 5.0
#: Seconds a halt or reduce-only waits for the answers to orders being sent when it changed
#: the state (longer than a submit may take: `submit.SUBMIT_TIMEOUT`).
IN_FLIGHT_WAIT = 20.0
_TRUE = {"1", "true", "yes", "on"}
STATES = ("ACTIVE", "REDUCING", "HALTED")


def env_halted() -> bool:
    """True when `SYSTEM_HALTED` is set to a true value in this process's environment."""
    return os.environ.get(ENV_VAR, "").strip().lower() in _TRUE


@dataclass(frozen=True)
class StateView:
    """The trading state in force: the book's, unless the environment forces HALTED."""

    state: str
    reason: str
    actor: str
    changed_at: datetime | None
    version: int
    forced_by_env: bool = False

    @classmethod
    def of(cls, book_state: TradingState) -> StateView:
        if env_halted():
            return cls("HALTED", f"{ENV_VAR} is set in the environment", "environment",
                       book_state.changed_at, book_state.version, True)
        return cls(book_state.state, book_state.reason, book_state.actor,
                   book_state.changed_at, book_state.version)

    @classmethod
    def of_view(cls, view: StateView) -> StateView:
        """`view` with the environment applied again (it may have changed since)."""
        if env_halted() and not view.forced_by_env:
            return cls("HALTED", f"{ENV_VAR} is set in the environment", "environment",
                       view.changed_at, view.version, True)
        return view

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "reason": self.reason, "actor": self.actor,
                "changed_at": self.changed_at.isoformat() if self.changed_at else None,
                "version": self.version, "forced_by_env": self.forced_by_env}


@dataclass
class ConnectionCancels:
    """One connection's part of a halt or reduce-only: the open orders it cancelled, those
    left working (reduce-only keeps the reducing ones), and why anything is still open."""

    connection: str
    canceled: list[dict[str, Any]] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    #: order id -> why it is still open after its cancel
    failed: dict[str, str] = field(default_factory=dict)
    #: the connection could not be reached or listed: its open orders are unknown
    error: str | None = None
    #: why the connection was passed over (a read-only connection has no orders)
    skipped: str | None = None

    @property
    def complete(self) -> bool:
        """Every open order the change meant to cancel is cancelled (nothing unknown)."""
        return self.error is None and not self.failed

    def problem(self) -> str | None:
        """One line on what is not done, or None."""
        if self.error is not None:
            return self.error
        if self.failed:
            first, why = next(iter(self.failed.items()))
            more = f" (and {len(self.failed) - 1} more)" if len(self.failed) > 1 else ""
            return f"{len(self.failed)} open order(s) not cancelled: {first}: {why}{more}"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"connection": self.connection, "complete": self.complete,
                "canceled": self.canceled, "kept": self.kept, "failed": self.failed,
                "error": self.error, "skipped": self.skipped}


@dataclass
class HaltReport:
    """What a state change did: the new state and, for a halt or reduce-only, per connection
    the open orders it cancelled or why it could not (`complete` is False then)."""

    state: StateView
    connections: dict[str, ConnectionCancels] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """True when every open order meant to be cancelled, at every connection, is."""
        return all(c.complete for c in self.connections.values())

    @property
    def canceled(self) -> list[dict[str, Any]]:
        """Every cancelled order: `connection`, `order_id`, `client_order_id`, `status`."""
        return [{"connection": c.connection, **o} for c in self.connections.values()
                for o in c.canceled]

    @property
    def errors(self) -> dict[str, str]:
        """Connection -> what is not done there (unreachable, or orders still open)."""
        return {n: p for n, c in self.connections.items() if (p := c.problem()) is not None}

    def to_dict(self) -> dict[str, Any]:
        return {**self.state.to_dict(), "complete": self.complete,
                "connections": [c.to_dict() for c in self.connections.values()]}


class KillSwitch(runtime.Bridged):
    """Reads and changes the trading state; cancels open orders on halt."""

    def __init__(self, book: Book, brokerage: BrokerageService | None = None) -> None:
        self.book = book
        self.brokerage = brokerage

    def state(self) -> StateView:
        """The state in force now (read from the book every time, never cached)."""
        return StateView.of(self.book.get_trading_state())

    async def _set(self, state: str, reason: str, actor: str | None) -> StateView:
        if not reason or not reason.strip():
            raise ValueError("a reason is required for every trading state change")
        new = await asyncio.to_thread(self._change, state, reason.strip(), actor)
        return StateView.of(new)

    def _change(self, state: str, reason: str, actor: str | None) -> Any:
        """Commit the change holding the send gate: no order journaled under the old state
        is sent after it (`sendgate`)."""
        with SendGate.for_book(self.book).changing():
            return self.book.set_trading_state(state, reason, actor)

    async def halt_async(self, reason: str, *, cancel_open: bool = True,
                         actor: str | None = None) -> HaltReport:
        """HALTED: no new orders anywhere; with `cancel_open`, cancel every open order at
        every trading connection, connecting those that are not (from any process)."""
        report = HaltReport(await self._set("HALTED", reason, actor))
        if cancel_open and self.brokerage is not None:
            await self._sweep(report, None)
            await self._audit("cancel_open_orders", report, actor)
        return report

    async def reduce_only_async(self, reason: str, *, cancel_open: bool = True,
                                actor: str | None = None) -> HaltReport:
        """REDUCING: only orders that bring a position towards flat pass. With
        `cancel_open`, the open orders that would not pass now are cancelled at every
        trading connection: those that would open from flat, add to a position or flip it
        (checked oldest first against the broker's position, each counted as if the older
        reducing ones filled), and any whose effect cannot be shown (unknown position,
        notional size). Reducing orders stay working."""
        report = HaltReport(await self._set("REDUCING", reason, actor))
        if cancel_open and self.brokerage is not None:
            await self._sweep(report, _increasing)
            await self._audit("cancel_increasing_orders", report, actor)
        return report

    async def resume_async(self, reason: str, *, actor: str | None = None) -> HaltReport:
        return HaltReport(await self._set("ACTIVE", reason, actor))

    async def _audit(self, action: str, report: HaltReport, actor: str | None) -> None:
        details = {"connections": [c.to_dict() for c in report.connections.values()]}
        await asyncio.to_thread(self.book.audit, action, "all", details,
                                "ok" if report.complete else "partial", actor)

    def halt(self, reason: str, *, cancel_open: bool = True,
             actor: str | None = None) -> HaltReport:
        return runtime.run(self.halt_async(reason, cancel_open=cancel_open, actor=actor))

    def reduce_only(self, reason: str, *, cancel_open: bool = True,
                    actor: str | None = None) -> HaltReport:
        return runtime.run(self.reduce_only_async(reason, cancel_open=cancel_open,
                                                  actor=actor))

    def resume(self, reason: str, *, actor: str | None = None) -> HaltReport:
        return runtime.run(self.resume_async(reason, actor=actor))

    async def _sweep(self, report: HaltReport, select: _Select | None) -> None:
        """Cancel open orders at every trading connection concurrently: all of them (halt,
        `select` None) or those `select` picks from the open orders and positions."""
        svc = self.brokerage
        assert svc is not None
        since = report.state.changed_at or datetime.now(UTC)
        in_flight = await self._in_flight(since)
        done = await asyncio.gather(*(self._sweep_one(svc, n, select)
                                      for n in svc.connections))
        report.connections = {c.connection: c for c in done}
        if not in_flight:
            return
        left = await self._answered(in_flight)
        again = await asyncio.gather(*(self._sweep_one(svc, n, select)
                                       for n in sorted(set(in_flight.values()))
                                       if n in report.connections))
        for later in again:
            report.connections[later.connection] = _merged(
                report.connections[later.connection], later)
        for coid, name in left.items():
            if name in report.connections:
                report.connections[name].failed[coid] = \
                    f"sent before the change and not answered within {IN_FLIGHT_WAIT:g} s: " \
                    f"it may be live (look it up by client order id {coid})"

    async def _in_flight(self, changed_at: datetime) -> dict[str, str]:
        """Client order id -> connection of the orders being sent when the state changed."""
        since = _utc(changed_at) - timedelta(seconds=IN_FLIGHT_WAIT)
        rows = await asyncio.to_thread(self.book.unresolved_orders)
        return {r["client_order_id"]: r["connection"] for r in rows
                if r["connection"] and _utc(r["updated_at"] or r["created_at"]) >= since}

    async def _answered(self, in_flight: dict[str, str]) -> dict[str, str]:
        """Wait up to IN_FLIGHT_WAIT for the orders of `in_flight` to be answered (their
        processes record the broker's answer, or recovery does); those still unanswered."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + IN_FLIGHT_WAIT
        left = dict(in_flight)
        while left and loop.time() < deadline:
            await asyncio.sleep(0.1)
            open_ = {r["client_order_id"]
                     for r in await asyncio.to_thread(self.book.unresolved_orders)}
            left = {c: n for c, n in left.items() if c in open_}
        return left

    async def _sweep_one(self, svc: BrokerageService, name: str, select: _Select | None
                         ) -> ConnectionCancels:
        out = ConnectionCancels(name)
        try:
            if not svc.adapter(name).capabilities.trading:
                out.skipped = "read-only connection"
                return out
            adapter = await svc.connected_adapter_async(name)
            if select is None:
                acks = await adapter.cancel_all_async()
                targets = None
            else:
                open_ = await adapter.open_orders_async()
                targets = select(open_, await _positions(adapter) if len(open_) else None)
                out.kept = [str(i) for i in open_["order_id"] if str(i) not in targets]
                acks = [await cancel_listed(adapter, row)
                        for row in open_[open_["order_id"].astype(str).isin(targets)]
                        .itertuples(index=False)]
            left = await _still_open(adapter, targets)
        except Exception as exc:  # one broker failing must not stop the others' cancels
            out.error = _describe(exc)
            return out
        for ack in acks:
            if ack.order_id in left:
                out.failed[ack.order_id] = ack.reason or "still open after its cancel"
            else:
                out.canceled.append({"order_id": ack.order_id,
                                     "client_order_id": ack.client_order_id or None,
                                     "status": ack.status.value})
        for order_id in left.keys() - out.failed.keys():  # opened while the cancels ran
            out.failed[order_id] = "open after the cancels (placed while they ran?)"
        return out


_Select = Callable[["pd.DataFrame", "pd.DataFrame | None"], set[str]]


def _utc(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _merged(first: ConnectionCancels, later: ConnectionCancels) -> ConnectionCancels:
    """A connection's cancels over two sweeps: what either cancelled, and what the later one
    (after the orders in flight were answered) still found open or could not reach."""
    done = {o["order_id"] for o in first.canceled}
    return ConnectionCancels(
        first.connection,
        canceled=first.canceled + [o for o in later.canceled if o["order_id"] not in done],
        kept=later.kept, failed=dict(later.failed), error=later.error,
        skipped=later.skipped or first.skipped)


async def _positions(adapter: Adapter) -> pd.DataFrame | None:
    """The broker's positions, or None when they cannot be read (then no order can be shown
    to reduce one)."""
    try:
        return await adapter.positions_async()
    except AdapterError:
        return None


async def _still_open(adapter: Adapter, targets: set[str] | None) -> dict[str, str]:
    """The open orders (of `targets` if given) left after the cancels, order id -> status,
    once the broker has had up to `SETTLE_S` to finish cancelling (Alpaca answers a cancel
    with `pending_cancel` before `canceled`)."""
    deadline = asyncio.get_running_loop().time() + SETTLE_S
    while True:
        open_ = await adapter.open_orders_async()
        left = {str(i): str(s) for i, s in zip(open_["order_id"], open_["status"], strict=True)
                if targets is None or str(i) in targets}
        if not left or asyncio.get_running_loop().time() >= deadline:
            return left
        await asyncio.sleep(0.2)


def _increasing(open_: pd.DataFrame, positions: pd.DataFrame | None) -> set[str]:
    """The open orders a REDUCING state would refuse now: per account and instrument, oldest
    first, an order passes when it is against the position and no larger than what is left
    of it once the older passing orders fill (risk.py's rule: reducing may not open from
    flat, add or flip). Unknown sizes and positions do not pass."""
    held: dict[tuple[str, str], float] = {}
    if positions is not None:
        for acct, inst, qty in zip(positions["account"], positions["instrument"],
                                   positions["quantity"], strict=True):
            held[(str(acct), str(inst))] = held.get((str(acct), str(inst)), 0.0) + float(qty)
    out: set[str] = set()
    order = open_.sort_values("submitted_at", kind="stable", na_position="first")
    for row in order.itertuples(index=False):
        key = (str(row.account), str(row.instrument))
        pos = held.get(key, 0.0)
        left = float(row.quantity) - float(row.filled_quantity or 0.0)
        signed = left if str(row.side).lower() == "buy" else -left
        if row.instrument is None or math.isnan(signed) or pos == 0 or (pos > 0) == (signed > 0) \
                or abs(signed) > abs(pos):
            out.add(str(row.order_id))
        else:
            held[key] = pos + signed
    return out

