"""The ledger: fills and the book's own positions they build, adoptions of a broker's
positions (with the fills inside them, never counted twice), corrections, and snapshots of
what the brokers reported."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import frames
from ..errors import SchemaError
from . import tables as t
from .actor import current_actor
from .adoption import (
    OPENING_REASON,
    adopted_fill_ids,
    is_fresh,
    latest_read_at,
    record_adoption,
)
from .base import BookBase
from .convert import _CONVERT, _clean, _frame, _now, _records, _require, _to_time
from .engine import reads, writes
from .state import write_audit

__all__ = ["Ledger", "apply_fill"]

#: Journal statuses a fill moves on: an order the broker accepted is PARTIALLY_FILLED or FILLED
#: by its fills; a final one (CANCELED, EXPIRED...) keeps its status and only counts what
#: filled before it ended. A row still waiting for the broker's answer (JOURNALED, SENT,
#: UNCERTAIN) is left to that answer (`record_acks`: the status, the broker's order id).
_FILLABLE = ("PENDING", "ACCEPTED", "PARTIALLY_FILLED")
_UNANSWERED = ("JOURNALED", "SENT", "UNCERTAIN")


def _fill_orders(conn: Connection, coids: set[str], now: datetime) -> None:
    """The journal rows of `coids` brought up to their recorded fills: filled quantity,
    average price and, while working, PARTIALLY_FILLED or FILLED (the broker's first answer
    may precede its fills: an IBKR market order is ACCEPTED, then filled)."""
    if not coids:
        return
    f, o = t.fills.c, t.orders.c
    totals = conn.execute(
        sa.select(f.client_order_id, sa.func.sum(f.quantity),
                  sa.func.sum(f.quantity * f.price))
        .where(f.client_order_id.in_(sorted(coids))).group_by(f.client_order_id)).all()
    for coid, filled, value in totals:
        row = conn.execute(sa.select(o.quantity, o.status, o.filled_quantity)
                           .where(o.client_order_id == coid)).first()
        if row is None or row.status in _UNANSWERED or filled is None \
                or filled <= (row.filled_quantity or 0):
            continue
        values: dict[str, Any] = {"filled_quantity": filled,
                                  "avg_fill_price": value / filled, "updated_at": now}
        if row.status in _FILLABLE and row.quantity is not None:  # a notional order: its
            values["status"] = "FILLED" if filled >= row.quantity \
                else "PARTIALLY_FILLED"                           # broker's answer says
        conn.execute(t.orders.update().where(o.client_order_id == coid).values(values))


def apply_fill(quantity: Decimal, avg_cost: Decimal | None, signed_fill: Decimal,
               price: Decimal) -> tuple[Decimal, Decimal | None]:
    """The position after one fill, as `(quantity, avg_cost)`.

    Increases weight the average cost; reductions keep it; a flat position has no cost; a fill
    that flips through zero starts the new side at the fill price.
    """
    new = quantity + signed_fill
    if new == 0:
        return new, None
    if quantity == 0 or (quantity > 0) != (new > 0):  # opened, or flipped through zero
        return new, price
    if (signed_fill > 0) == (quantity > 0):  # increase
        cost = avg_cost if avg_cost is not None else price
        return new, (abs(quantity) * cost + abs(signed_fill) * price) / abs(new)
    return new, avg_cost  # reduction


_FILL_COLUMNS = [c.name for c in t.fills.columns if c.name != "id"]
_SNAPSHOT_COLUMNS = [c.name for c in t.broker_position_snapshots.columns if c.name != "id"]


class Ledger(BookBase):
    """Fills, book positions, adoptions, corrections and broker snapshots."""

    # -- fills and book positions --------------------------------------------------------

    @writes
    def record_fills(self, fills: pd.DataFrame | Iterable[Mapping[str, Any]]) -> int:
        """Store the fills not seen before (by connection and fill id) and apply each new one
        to the book's positions, in one transaction; returns how many were new. Fills an
        adoption already counted (`adopt_positions`'s `fill_ids`) are not new.

        Rows follow the FILLS frame: `connection`, `fill_id`, `instrument`, `side`,
        `quantity` (positive) and `price` are required; other columns are ignored.
        """
        now = _now()
        batch: dict[tuple[str, str], dict[str, Any]] = {}
        for i, row in enumerate(_records(fills)):
            what = f"fill row {i} ({row.get('fill_id')!r})"
            values = _clean(t.fills, row, what)
            _require(values, ("connection", "fill_id", "instrument", "side", "quantity",
                              "price"), what)
            values["side"] = values["side"].strip().lower()
            if values["side"] not in ("buy", "sell"):
                raise SchemaError(f"{what}: side {row['side']!r} is not buy or sell")
            if values["quantity"] <= 0:
                raise SchemaError(f"{what}: quantity {row['quantity']!r} must be positive")
            values.pop("id", None)
            values["recorded_at"] = now
            batch.setdefault((values["connection"], values["fill_id"]), values)
        if not batch:
            return 0
        f = t.fills.c
        with self.begin(lock="positions") as conn:
            seen: set[tuple[str, str]] = set()
            by_connection: dict[str, list[str]] = {}
            for connection, fill_id in batch:
                by_connection.setdefault(connection, []).append(fill_id)
            for connection, ids in by_connection.items():
                for start in range(0, len(ids), 500):
                    found = conn.execute(sa.select(f.fill_id).where(
                        f.connection == connection, f.fill_id.in_(ids[start:start + 500])))
                    seen.update((connection, fid) for fid in found.scalars())
                # fills inside an adopted quantity (the adoption's fill watermark)
                seen.update((connection, fid) for fid in adopted_fill_ids(conn, connection, ids))
            new = [v for k, v in batch.items() if k not in seen]
            if new:
                conn.execute(t.fills.insert(), [dict.fromkeys(_FILL_COLUMNS) | v for v in new])
                self._apply_fills(conn, new, now)
                _fill_orders(conn, {v["client_order_id"] for v in new if v["client_order_id"]},
                             now)
        return len(new)

    @staticmethod
    def _apply_fills(conn: Connection, new: list[dict[str, Any]], now: datetime) -> None:
        p = t.book_positions.c
        far = datetime.max.replace(tzinfo=UTC)
        ordered = sorted(new, key=lambda v: v["executed_at"] or far)
        keys = {(v["connection"], v["account"] or "", v["instrument"]) for v in ordered}
        current = {
            (r.connection, r.account, r.instrument): r._asdict()
            for r in conn.execute(sa.select(t.book_positions).where(
                sa.tuple_(p.connection, p.account, p.instrument).in_(sorted(keys))))
        }
        existed = set(current)
        for v in ordered:
            key = (v["connection"], v["account"] or "", v["instrument"])
            pos = current.get(key) or {"connection": key[0], "account": key[1],
                                       "instrument": key[2], "quantity": Decimal(0),
                                       "avg_cost": None}
            signed = v["quantity"] if v["side"] == "buy" else -v["quantity"]
            pos["quantity"], pos["avg_cost"] = apply_fill(pos["quantity"], pos["avg_cost"],
                                                          signed, v["price"])
            pos.update(symbol=v["symbol"] or pos.get("symbol"),
                       asset_class=v["asset_class"] or pos.get("asset_class"),
                       currency=v["currency"] or pos.get("currency"),
                       updated_at=now, source="fills")
            current[key] = pos
        for key, pos in current.items():
            where = (p.connection == key[0], p.account == key[1], p.instrument == key[2])
            if key in existed and pos["quantity"] == 0:
                conn.execute(t.book_positions.delete().where(*where))
            elif key in existed:
                conn.execute(t.book_positions.update().where(*where).values(
                    {k: pos[k] for k in ("symbol", "asset_class", "quantity", "avg_cost",
                                         "currency", "updated_at", "source")}))
            elif pos["quantity"] != 0:
                conn.execute(t.book_positions.insert(), pos)

    @reads
    def fills_frame(self, connection: str | None = None, since: datetime | None = None,
                    client_order_id: str | None = None) -> pd.DataFrame:
        """Recorded fills as the canonical FILLS frame, in execution order; filters optional
        (`since` on `executed_at`)."""
        f = t.fills.c
        query = sa.select(*(f[name] for name in frames.FILLS.names)).order_by(f.executed_at,
                                                                              f.id)
        if connection is not None:
            query = query.where(f.connection == connection)
        if since is not None:
            query = query.where(f.executed_at >= _to_time(since))
        if client_order_id is not None:
            query = query.where(f.client_order_id == client_order_id)
        with self.connect() as conn:
            rows = conn.execute(query).all()
        return frames.make(frames.FILLS, _frame([f[n] for n in frames.FILLS.names], rows))

    @reads
    def book_positions_frame(self, connection: str | None = None) -> pd.DataFrame:
        """The book's own positions (from fills or adoption): one row per connection, account
        ('' if none) and instrument, flat positions omitted."""
        query = sa.select(t.book_positions).order_by(*t.book_positions.primary_key.columns)
        if connection is not None:
            query = query.where(t.book_positions.c.connection == connection)
        with self.connect() as conn:
            rows = conn.execute(query).all()
        return _frame(t.book_positions.columns, rows)

    @writes
    def adopt_positions(self, positions: pd.DataFrame | Iterable[Mapping[str, Any]],
                        actor: str | None, reason: str, *,
                        accounts: Iterable[tuple[str, str]] = (),
                        fill_ids: Mapping[str, Iterable[str]] | None = None,
                        read_at: datetime | None = None) -> int:
        """Make the broker's positions the book's: for every (connection, account) in
        `positions` (and in `accounts`, to adopt "no positions"), replace the book's rows and
        write one audit row with what was there before. Returns the number of rows written.

        `fill_ids` maps a connection to the ids of the fills its broker held when the
        positions were read (at `read_at`, default now): they are inside the adopted
        quantities, so `record_fills` never applies them again (the adoption's fill
        watermark). Every adopted connection gets a `book_adoptions` row."""
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"adopt_positions needs a reason for the audit log, got {reason!r}")
        actor = actor or current_actor()
        now = _now()
        pairs = self._adoption_pairs(positions, accounts, now)
        with self.begin(lock="positions") as conn:
            return self._adopt(conn, pairs, fill_ids or {}, _to_time(read_at) or now, actor,
                               reason, now, opening=False)

    @writes
    def open_from_broker(self, connection: str,
                         positions: pd.DataFrame | Iterable[Mapping[str, Any]], *,
                         accounts: Iterable[str] = (), fill_ids: Iterable[str] = (),
                         read_at: datetime, actor: str | None = None) -> int | None:
        """Open a fresh connection's book from its broker: adopt `positions` (rows of
        `connection`; every account in `accounts` is adopted, with or without positions) and
        `fill_ids` as `adopt_positions` does, audited with the reason `OPENING_REASON`; only
        when the book holds nothing of `connection` yet (no order, fill, book position or
        adoption). Decided in the transaction that writes it, so it happens once per
        connection whatever the processes. Returns the positions written, or None when the
        book was not fresh (or another process opened it first)."""
        if not isinstance(connection, str) or not connection:
            raise ValueError(f"open_from_broker needs a connection name, got {connection!r}")
        actor = actor or current_actor()
        now = _now()
        rows = _records(positions)
        stray = {r.get("connection") for r in rows} - {connection}
        if stray:
            raise SchemaError(f"open_from_broker({connection!r}): rows of other connections "
                              f"{sorted(map(str, stray))}")
        pairs = self._adoption_pairs(rows, [(connection, a) for a in accounts], now)
        try:
            with self.begin(lock="positions") as conn:
                if not is_fresh(conn, connection):
                    return None
                return self._adopt(conn, pairs, {connection: fill_ids},
                                   _to_time(read_at) or now, actor, OPENING_REASON, now,
                                   opening=True)
        except sa.exc.IntegrityError:  # another process's opening committed first
            return None

    @reads
    def opening_needed(self, connection: str) -> bool:
        """True while the book holds nothing of `connection` (no order, fill, book position
        or adoption): `open_from_broker` would open it."""
        with self.connect() as conn:
            return is_fresh(conn, connection)

    @reads
    def adopted_through(self, connection: str) -> datetime | None:
        """When the newest adoption of `connection` read its broker: fills executed before
        it are inside the book's positions (None: never adopted)."""
        with self.connect() as conn:
            return latest_read_at(conn, connection)

    @reads
    def adoptions_frame(self) -> pd.DataFrame:
        """Every adoption of a broker's positions, oldest first (`opening` names the
        connection on the adoption that opened a fresh book)."""
        a = t.book_adoptions
        with self.connect() as conn:
            rows = conn.execute(sa.select(a).order_by(a.c.id)).all()
        return _frame(a.columns, rows)

    @staticmethod
    def _adoption_pairs(positions: pd.DataFrame | Iterable[Mapping[str, Any]],
                        accounts: Iterable[tuple[str, str]], now: datetime
                        ) -> dict[tuple[str, str], list[dict[str, Any]]]:
        """The rows to adopt per (connection, account), checked and converted."""
        pairs: dict[tuple[str, str], list[dict[str, Any]]] = {
            (c, a or ""): [] for c, a in accounts}
        for i, row in enumerate(_records(positions)):
            what = f"position row {i} ({row.get('instrument')!r})"
            values = _clean(t.book_positions, row, what)
            _require(values, ("connection", "instrument"), what)
            values["account"] = values.get("account") or ""
            if values.get("quantity") is None:
                raise SchemaError(f"{what}: 'quantity' is required")
            values.update(updated_at=now, source="adoption")
            pairs.setdefault((values["connection"], values["account"]), [])
            if values["quantity"] != 0:
                pairs[(values["connection"], values["account"])].append(
                    dict.fromkeys(_CONVERT["book_positions"]) | values)
        return pairs

    def _adopt(self, conn: Connection, pairs: Mapping[tuple[str, str], list[dict[str, Any]]],
               fill_ids: Mapping[str, Iterable[str]], read_at: datetime, actor: str,
               reason: str, now: datetime, *, opening: bool) -> int:
        """Replace the book's positions of each (connection, account) of `pairs`, with one
        audit row each, and record one adoption per connection with its fill watermark."""
        p = t.book_positions.c
        written = 0
        for connection in sorted({c for c, _ in pairs} | set(fill_ids)):
            ids = list(fill_ids.get(connection, ()))
            record_adoption(conn, connection, fill_ids=ids, read_at=read_at, adopted_at=now,
                            actor=actor, reason=reason, opening=opening)
        for (connection, account), rows in pairs.items():
            where = (p.connection == connection, p.account == account)
            before = conn.execute(sa.select(p.instrument, p.quantity, p.avg_cost)
                                  .where(*where)).all()
            conn.execute(t.book_positions.delete().where(*where))
            if rows:
                conn.execute(t.book_positions.insert(), rows)
            written += len(rows)
            write_audit(conn, "adopt_positions", f"{connection}/{account}", {
                "reason": reason, "opening": opening, "read_at": read_at,
                "fills_at_broker": len(set(fill_ids.get(connection, ()))),
                "before": [{"instrument": r.instrument, "quantity": r.quantity,
                            "avg_cost": r.avg_cost} for r in before],
                "after": [{"instrument": r["instrument"], "quantity": r["quantity"],
                           "avg_cost": r["avg_cost"]} for r in rows],
            }, f"adopted {len(rows)} positions", actor, now)
        return written

    @writes
    def correct_positions(self, positions: pd.DataFrame | Iterable[Mapping[str, Any]],
                          actor: str | None, reason: str) -> int:
        """Set the book's position of each given (connection, account, instrument) to the row's
        quantity and average cost (0 removes it), leaving every other position alone; one audit
        row per correction with the book's value before. Returns the number corrected."""
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"correct_positions needs a reason for the audit log, got "
                             f"{reason!r}")
        actor = actor or current_actor()
        now = _now()
        p = t.book_positions.c
        done = 0
        with self.begin(lock="positions") as conn:
            for i, row in enumerate(_records(positions)):
                what = f"correction row {i} ({row.get('instrument')!r})"
                values = _clean(t.book_positions, row, what)
                _require(values, ("connection", "instrument"), what)
                if values.get("quantity") is None:
                    raise SchemaError(f"{what}: 'quantity' is required")
                values["account"] = values.get("account") or ""
                where = (p.connection == values["connection"], p.account == values["account"],
                         p.instrument == values["instrument"])
                before = conn.execute(sa.select(p.quantity, p.avg_cost).where(*where)).first()
                conn.execute(t.book_positions.delete().where(*where))
                if values["quantity"] != 0:
                    values.update(updated_at=now, source="correction")
                    conn.execute(t.book_positions.insert(),
                                 dict.fromkeys(_CONVERT["book_positions"]) | values)
                write_audit(conn, "correct_position",
                            f"{values['connection']}/{values['account']}/{values['instrument']}",
                            {"reason": reason,
                             "before": None if before is None else
                             {"quantity": before.quantity, "avg_cost": before.avg_cost},
                             "after": {"quantity": values["quantity"],
                                       "avg_cost": values.get("avg_cost")}},
                            "corrected", actor, now)
                done += 1
        return done

    # -- broker position snapshots -------------------------------------------------------

    @writes
    def snapshot_broker_positions(self, positions: pd.DataFrame | Iterable[Mapping[str, Any]],
                                  taken_at: datetime | None = None) -> str:
        """Store the broker's positions (POSITIONS frame rows) as one snapshot; returns its id."""
        snapshot_id = str(uuid.uuid4())
        stamp = _to_time(taken_at) or _now()
        rows = []
        for i, row in enumerate(_records(positions)):
            what = f"snapshot row {i} ({row.get('instrument')!r})"
            values = _clean(t.broker_position_snapshots, row, what)
            _require(values, ("connection", "instrument"), what)
            values.pop("id", None)
            values["quantity"] = values.get("quantity") or Decimal(0)
            values.update(snapshot_id=snapshot_id, taken_at=stamp)
            rows.append(dict.fromkeys(_SNAPSHOT_COLUMNS) | values)
        if rows:
            with self.begin() as conn:
                conn.execute(t.broker_position_snapshots.insert(), rows)
        return snapshot_id

    @reads
    def latest_snapshot(self, connection: str) -> pd.DataFrame:
        """The rows of the newest snapshot holding `connection`'s positions (empty if none)."""
        s = t.broker_position_snapshots.c
        newest = (sa.select(s.snapshot_id).where(s.connection == connection)
                  .order_by(s.taken_at.desc(), s.id.desc()).limit(1).scalar_subquery())
        cols = [s[n] for n in _SNAPSHOT_COLUMNS]
        with self.connect() as conn:
            rows = conn.execute(sa.select(*cols).where(
                s.connection == connection, s.snapshot_id == newest).order_by(s.id)).all()
        return _frame(cols, rows)
