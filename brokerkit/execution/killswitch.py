"""The kill switch: trading state ACTIVE / REDUCING / HALTED, kept in the book.

The state lives in the book's database, so every process (notebook kernels, the dashboard
server, scripts) sees a change on its very next order; the journal re-reads it in the same
transaction that writes the order. `SYSTEM_HALTED=1` (or true/yes/on) in the environment
forces HALTED whatever the book says. Every change is recorded with who, when and why.

- `halt(reason, cancel_open=True)`: stop all new orders; cancel open orders at every trading
  connection (cancels are never blocked).
- `reduce_only(reason)`: only orders that bring a position towards flat pass.
- `resume(reason)`: back to ACTIVE.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import runtime
from ..model import OrderStatus

if TYPE_CHECKING:
    from ..book import Book, TradingState
    from ..service import BrokerageService

__all__ = ["ENV_VAR", "HaltReport", "KillSwitch", "StateView", "env_halted"]

ENV_VAR = "SYSTEM_HALTED"
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
class HaltReport:
    """What a state change did: the new state and, for a halt, the orders it cancelled."""

    state: StateView
    canceled: list[dict[str, Any]] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


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
        new = await asyncio.to_thread(self.book.set_trading_state, state, reason.strip(), actor)
        return StateView.of(new)

    async def halt_async(self, reason: str, *, cancel_open: bool = True,
                         actor: str | None = None) -> HaltReport:
        """HALTED: no new orders anywhere; with `cancel_open`, cancel every open order."""
        report = HaltReport(await self._set("HALTED", reason, actor))
        if cancel_open and self.brokerage is not None:
            await self._cancel_open(report)
            await asyncio.to_thread(self.book.audit, "cancel_open_orders", "all",
                                    {"canceled": report.canceled, "errors": report.errors},
                                    "ok" if not report.errors else "partial", actor)
        return report

    async def reduce_only_async(self, reason: str, *, actor: str | None = None) -> HaltReport:
        return HaltReport(await self._set("REDUCING", reason, actor))

    async def resume_async(self, reason: str, *, actor: str | None = None) -> HaltReport:
        return HaltReport(await self._set("ACTIVE", reason, actor))

    def halt(self, reason: str, *, cancel_open: bool = True,
             actor: str | None = None) -> HaltReport:
        return runtime.run(self.halt_async(reason, cancel_open=cancel_open, actor=actor))

    def reduce_only(self, reason: str, *, actor: str | None = None) -> HaltReport:
        return runtime.run(self.reduce_only_async(reason, actor=actor))

    def resume(self, reason: str, *, actor: str | None = None) -> HaltReport:
        return runtime.run(self.resume_async(reason, actor=actor))

    async def _cancel_open(self, report: HaltReport) -> None:
        svc = self.brokerage
        assert svc is not None

        async def one(name: str) -> None:
            try:
                adapter = svc.adapter(name)
                if not adapter.capabilities.trading:
                    return
                orders = await adapter.orders_async()
                is_open = orders["status"].map(lambda s: OrderStatus.parse(s).is_open)
                open_ = orders[is_open.astype(bool)]
                for order_id in open_["order_id"]:
                    ack = await adapter.cancel_async(str(order_id))
                    report.canceled.append({"connection": name, "order_id": str(order_id),
                                            "status": ack.status.value})
            except Exception as exc:  # one broker failing must not stop the others' cancels
                report.errors[name] = str(exc) or type(exc).__name__

        await asyncio.gather(*(one(n) for n in svc.connections))
