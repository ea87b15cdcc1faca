"""Reconciliation runs: each comparison of the book's positions with the brokers', stored
with its rows (the `post_trade.reconcile` frame) and an audit row."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime

import pandas as pd
import sqlalchemy as sa

from . import tables as t
from .actor import current_actor
from .base import BookBase
from .convert import _frame, _missing, _now, _to_decimal, _to_json
from .engine import reads, writes
from .state import write_audit

__all__ = ["Reconciliations"]


class Reconciliations(BookBase):
    """The book's reconciliation runs."""

    @writes
    def save_reconciliation(self, rows: pd.DataFrame, *, connections: Iterable[str],
                            failed: Mapping[str, str] | None = None,
                            started_at: datetime | None = None, unexplained: int = 0,
                            actor: str | None = None) -> str:
        """Store a reconciliation run and its rows (the `post_trade.reconcile` frame) in one
        transaction; returns the run id."""
        run_id = uuid.uuid4().hex
        now = _now()
        actor = actor or current_actor()
        counts = {str(k): int(v) for k, v in rows["status"].value_counts().items()} \
            if len(rows) else {}
        wanted = [c.name for c in t.reconciliation_rows.columns if c.name not in ("id",
                                                                                  "run_id")]
        records = []
        for rec in rows.reindex(columns=wanted).to_dict("records"):
            clean = {k: (None if _missing(v) else v) for k, v in rec.items()}
            for k in ("book_quantity", "broker_quantity", "quantity_diff", "price",
                      "value_diff"):
                clean[k] = _to_decimal(clean[k])
            records.append({"run_id": run_id, **clean})
        with self.begin() as conn:
            conn.execute(t.reconciliation_runs.insert().values(
                run_id=run_id, started_at=started_at or now, finished_at=now, actor=actor,
                connections=_to_json(sorted(connections)), failed=_to_json(dict(failed or {})),
                counts=_to_json(counts), unexplained=unexplained))
            if records:
                conn.execute(t.reconciliation_rows.insert(), records)
            write_audit(conn, "reconcile", run_id, {"counts": counts, "failed": failed or {}},
                        f"{unexplained} unexplained", actor, now)
        return run_id

    @reads
    def reconciliation_runs(self, limit: int = 50) -> pd.DataFrame:
        """The latest runs, newest first (JSON columns as text)."""
        r = t.reconciliation_runs
        with self.connect() as conn:
            rows = conn.execute(sa.select(r).order_by(r.c.started_at.desc()).limit(limit)).all()
        return _frame(r.columns, rows)

    @reads
    def reconciliation_rows(self, run_id: str) -> pd.DataFrame:
        """The rows of one run, in the order they were stored."""
        r = t.reconciliation_rows
        with self.connect() as conn:
            rows = conn.execute(sa.select(r).where(r.c.run_id == run_id).order_by(r.c.id)).all()
        return _frame(r.columns, rows)
