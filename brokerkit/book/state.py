"""The trading state (the kill switch every process sees at once) with its history, and the
audit log of who did what.

The state is one row, read from the database on every call (never cached); a change writes
the row, its history and an audit row in one transaction.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import tables as t
from .actor import current_actor
from .base import BookBase
from .convert import _frame, _now, _state_name, _to_json
from .engine import reads, writes
from .values import INITIAL_STATE, SELECT_STATE, TradingState

__all__ = ["TradingStates", "write_audit"]


def write_audit(conn: Connection, action: str, target: str, details: Any, result: str,
                actor: str, at: datetime) -> None:
    """One audit row, in the caller's transaction (`details` stored as JSON)."""
    conn.execute(t.audit_log.insert().values(
        at=at, actor=actor, action=action, target=target, details=_to_json(details),
        result=result))


class TradingStates(BookBase):
    """The book's trading state, its history and the audit log."""

    # -- trading state -------------------------------------------------------------------

    @staticmethod
    def _read_state(conn: Connection, lock: str | None = None) -> TradingState:
        query = SELECT_STATE
        if lock == "share":
            query = query.with_for_update(read=True)
        elif lock == "update":
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            return INITIAL_STATE
        return TradingState(row.state, row.reason or "", row.actor or "", row.changed_at,
                            row.version)

    @reads
    def get_trading_state(self) -> TradingState:
        """The trading state now, read from the database (never cached)."""
        with self.connect() as conn:
            return self._read_state(conn)

    @writes
    def set_trading_state(self, state: str, reason: str,
                          actor: str | None = None) -> TradingState:
        """Change the trading state (ACTIVE, REDUCING, HALTED), writing its history and an
        audit row in the same transaction; returns the new state."""
        name = _state_name(state)
        if not isinstance(reason, str):
            raise TypeError(f"the reason for a trading state change must be text, got {reason!r}")
        actor = actor or current_actor()
        now = _now()
        with self._writer.begin() as conn:
            previous = self._read_state(conn, lock="update")
            new = TradingState(name, reason, actor, now, previous.version + 1)
            values = {"state": name, "reason": reason, "actor": actor, "changed_at": now,
                      "version": new.version}
            done = conn.execute(t.trading_state.update().where(t.trading_state.c.id == 1)
                                .values(values)).rowcount
            if not done:
                conn.execute(t.trading_state.insert().values(id=1, **values))
            conn.execute(t.trading_state_history.insert().values(
                state=name, previous_state=previous.state, reason=reason, actor=actor,
                host=socket.gethostname(), pid=os.getpid(), changed_at=now))
            write_audit(conn, "set_trading_state", name,
                        {"previous": previous.state, "reason": reason, "version": new.version},
                        "ok", actor, now)
        return new

    @reads
    def trading_state_history(self) -> pd.DataFrame:
        """Every trading state change, oldest first."""
        with self.connect() as conn:
            rows = conn.execute(sa.select(t.trading_state_history)
                                .order_by(t.trading_state_history.c.id)).all()
        return _frame(t.trading_state_history.columns, rows)

    # -- audit log -----------------------------------------------------------------------

    @writes
    def audit(self, action: str, target: str = "", details: Any = None, result: str = "",
              actor: str | None = None) -> None:
        """Record who (`actor`, default `current_actor()`) did `action` to `target`;
        `details` is stored as JSON."""
        if not isinstance(action, str) or not action.strip():
            raise ValueError(f"audit needs an action, got {action!r}")
        with self._writer.begin() as conn:
            write_audit(conn, action, target, details, result, actor or current_actor(), _now())

    @reads
    def audit_frame(self, limit: int | None = 500) -> pd.DataFrame:
        """The newest `limit` audit rows (all if None), newest first; `details` as JSON text."""
        query = sa.select(t.audit_log).order_by(t.audit_log.c.id.desc())
        if limit is not None:
            query = query.limit(limit)
        with self.connect() as conn:
            rows = conn.execute(query).all()
        return _frame(t.audit_log.columns, rows)
