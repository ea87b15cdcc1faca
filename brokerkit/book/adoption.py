"""Adoptions in the database: which connections were adopted, and the fills each broker held.

An adoption makes a broker's positions the book's (`Book.adopt_positions`). The broker's
fills executed before its positions were read are inside those quantities, so the adoption
keeps their ids (its fill watermark, table `adopted_fills`): `Book.record_fills` never applies
one of them again, whichever process pulls fills later and from however far back.

The opening of a fresh book (`Book.open_from_broker`) is decided in the transaction that
writes it: the connection must have nothing in the book yet (no order, fill, position or
adoption), and its `book_adoptions` row carries the connection's name in the unique column
`opening`, so two processes opening the same book at once adopt once.

These helpers take an open SQLAlchemy connection; `Book` owns the transactions.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import tables as t

__all__ = ["OPENING_REASON", "adopted_fill_ids", "is_fresh", "latest_read_at",
           "record_adoption"]

#: The audit reason of the adoption that opens a fresh book.
OPENING_REASON = "opening positions of a fresh book"

_CHUNK = 500  # ids per IN (...) list: well under every dialect's bound-parameter limit


def _chunks(ids: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start:start + _CHUNK]


def is_fresh(conn: Connection, connection: str) -> bool:
    """True when the book holds nothing of `connection`: no order, fill, book position or
    adoption (the condition for opening it from its broker)."""
    for table in (t.orders, t.fills, t.book_positions, t.book_adoptions):
        found = conn.execute(sa.select(sa.literal(1)).select_from(table)
                             .where(table.c.connection == connection).limit(1)).first()
        if found is not None:
            return False
    return True


def adopted_fill_ids(conn: Connection, connection: str, ids: Iterable[str]) -> set[str]:
    """Those of `ids` that an adoption of `connection` already counted."""
    a = t.adopted_fills.c
    out: set[str] = set()
    for chunk in _chunks(list(ids)):
        out.update(conn.execute(sa.select(a.fill_id).where(
            a.connection == connection, a.fill_id.in_(chunk))).scalars())
    return out


def record_adoption(conn: Connection, connection: str, *, fill_ids: Iterable[str],
                    read_at: datetime, adopted_at: datetime, actor: str, reason: str,
                    opening: bool) -> int:
    """Write the adoption row of `connection` and its fill watermark: the ids of `fill_ids`
    not yet in the book (neither recorded as fills nor adopted before). Returns the adoption
    id. With `opening`, a second opening of the connection raises `IntegrityError`."""
    ids = sorted({str(i) for i in fill_ids})
    adoption_id = conn.execute(t.book_adoptions.insert().values(
        connection=connection, opening=connection if opening else None, read_at=read_at,
        adopted_at=adopted_at, actor=actor, reason=reason, fill_count=len(ids),
    )).inserted_primary_key[0]
    f = t.fills.c
    known: set[str] = adopted_fill_ids(conn, connection, ids)
    for chunk in _chunks(ids):
        known.update(conn.execute(sa.select(f.fill_id).where(
            f.connection == connection, f.fill_id.in_(chunk))).scalars())
    rows = [{"connection": connection, "fill_id": i, "adoption_id": adoption_id}
            for i in ids if i not in known]
    if rows:
        conn.execute(t.adopted_fills.insert(), rows)
    return int(adoption_id)


def latest_read_at(conn: Connection, connection: str) -> datetime | None:
    """When the newest adoption of `connection` read its broker (None: never adopted)."""
    b = t.book_adoptions.c
    return conn.execute(sa.select(sa.func.max(b.read_at)).where(
        b.connection == connection)).scalar()
