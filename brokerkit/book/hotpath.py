"""The journal's hot path: its insert and update, compiled once, on a pinned DBAPI connection.

What `Book.journal_order`, `update_order` and `record_ack(s)` run: no pool checkout and no
statement building per order. Errors come out as SQLAlchemy's, which the book's methods
turn into `BookUnavailable` (`engine.writes`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from . import tables as t
from .values import INITIAL_STATE, SELECT_STATE, BookBusy, TradingState

__all__ = ["Hot"]

T = TypeVar("T")

_ABANDONED: list[Any] = []  # pinned connections inherited over fork: never used nor closed
#: No-wait commits after which their WAL wants a checkpoint (about 1000 WAL pages, SQLite's
#: own auto-checkpoint point).
_CHECKPOINT_EVERY = 300


class _Statement:
    """One statement compiled once for a dialect: its SQL, the order of its binds and the
    columns' own bind processors (exactly what SQLAlchemy applies), for a DBAPI cursor."""

    __slots__ = ("names", "pairs", "positional", "sql")

    def __init__(self, statement: Any, keys: Iterable[str], dialect: Any) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        self.sql: str = compiled.string
        self.positional: bool = bool(compiled.positional)
        self.names: tuple[str, ...] = tuple(compiled.positiontup if self.positional
                                            else compiled.binds)
        types = {c.name: c.type for c in t.orders.columns}
        self.pairs: tuple[tuple[str, Callable[[Any], Any] | None], ...] = tuple(
            (name, types[name].dialect_impl(dialect).bind_processor(dialect)
             if name in types else None) for name in self.names)

    def params(self, values: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        get = values.get
        out = [v if (v := get(name)) is None or fn is None else fn(v) for name, fn in self.pairs]
        return tuple(out) if self.positional else dict(zip(self.names, out, strict=True))


class Hot:
    """The journal insert and the order update of one engine, compiled once and run on a
    DBAPI connection kept checked out for them: no pool checkout and no statement building per
    order, and each driver keeps the statements prepared (sqlite3's statement cache,
    psycopg's automatic prepare). The rules are the SQLAlchemy path's: on SQLite a write
    begins with BEGIN IMMEDIATE, on PostgreSQL the journal reads the trading state FOR SHARE,
    in the transaction that writes the order.

    One thread at a time uses the pinned connection; another thread meanwhile takes one from
    the pool, so threads never queue behind each other here.

    On SQLite a second connection, outside the pool, serves writes that must not wait
    (`nowait`): its busy timeout is 0 (a write lock held by another writer raises `BookBusy`
    at once, before anything is written) and it never checkpoints the WAL itself (no I/O
    burst in the caller): `take_checkpoint` says when another thread should."""

    def __init__(self, engine: Engine) -> None:
        d = engine.dialect
        self.engine = engine
        self.dialect = d
        self.sqlite = d.name == "sqlite"
        self.dbapi: Any = d.loaded_dbapi
        # A connection is pinned only from a real pool: an in-memory SQLite database has one
        # connection per thread (SingletonThreadPool), which must stay the pool's.
        self.pinnable = isinstance(engine.pool, sa.pool.QueuePool)
        self.insert = _Statement(t.orders.insert(), [c.name for c in t.orders.columns], d)
        query = SELECT_STATE if self.sqlite else SELECT_STATE.with_for_update(read=True)
        self.read_state = str(query.compile(dialect=d, compile_kwargs={"literal_binds": True}))
        self.changed_at = t.trading_state.c.changed_at.type.dialect_impl(d).result_processor(
            d, None)
        self.updates: dict[tuple[tuple[str, ...], bool], _Statement] = {}
        self._lock = threading.Lock()
        self._conn: Any = None
        self._pool: Any = None
        self._pid = 0
        self._nowait_lock = threading.Lock()
        self._nowait: Any = None
        self._nowait_pid = 0
        self._nowait_commits = 0

    # -- the connection ------------------------------------------------------------------

    def take_checkpoint(self) -> bool:
        """True once every `_CHECKPOINT_EVERY` no-wait commits (the WAL they grew wants a
        checkpoint, which they never run themselves); the count starts again."""
        if self._nowait_commits < _CHECKPOINT_EVERY:
            return False
        self._nowait_commits = 0
        return True

    @contextmanager
    def _nowait_connection(self) -> Iterator[Any]:
        if not (self.sqlite and self.pinnable) or not self._nowait_lock.acquire(
                blocking=False):
            raise BookBusy("no connection for a write that must not wait")
        try:
            conn, pid = self._nowait, os.getpid()
            if conn is not None and self._nowait_pid != pid:
                _ABANDONED.append(conn)
                conn = self._nowait = None
            if conn is not None and not conn.is_valid:  # invalidated when it was lost
                conn = self._nowait = None
            if conn is None:
                conn = self.engine.raw_connection()
                conn.detach()  # ours alone: its settings never reach the pool
                cur = conn.cursor()
                cur.execute("PRAGMA busy_timeout=0")
                cur.execute("PRAGMA wal_autocheckpoint=0")
                cur.close()
                self._nowait, self._nowait_pid = conn, pid
            yield conn
        finally:
            self._nowait_lock.release()

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        if not self.pinnable or not self._lock.acquire(blocking=False):  # pinned one busy
            conn = self.engine.raw_connection()
            try:
                yield conn
            finally:
                conn.close()
            return
        try:
            conn, pid = self._conn, os.getpid()
            if conn is not None and self._pid != pid:  # forked: the parent's, not ours
                _ABANDONED.append(conn)
                conn = self._conn = None
            if conn is not None and not conn.is_valid:  # invalidated when it was lost
                conn = self._conn = None
            if conn is not None and self._pool is not self.engine.pool:  # engine disposed
                self._conn = None
                _discard(conn)
                conn = None
            if conn is None:
                conn = self._conn = self.engine.raw_connection()
                self._pool, self._pid = self.engine.pool, pid
            yield conn
        finally:
            self._lock.release()

    def release(self) -> None:
        """Give the pinned connection back to the pool (before the engine is disposed)."""
        with self._nowait_lock:
            conn, self._nowait = self._nowait, None
            if conn is not None:
                if self._nowait_pid == os.getpid():
                    _discard(conn)
                else:
                    _ABANDONED.append(conn)
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            if self._pid == os.getpid():
                try:
                    conn.close()
                except Exception:  # pragma: no cover - closing a broken connection
                    pass
            else:
                _ABANDONED.append(conn)

    def forget(self) -> None:
        """After fork: the pinned connections are the parent's; never touch them again."""
        for conn in (self._conn, self._nowait):
            if conn is not None:
                _ABANDONED.append(conn)
        self._conn = self._nowait = None

    def _run(self, work: Callable[[Any], T], nowait: bool = False) -> T:
        """`work(cursor)` in one transaction, committed when it returns, rolled back when it
        raises. A connection found lost before the commit was sent (e.g. the server closed an
        idle one) is replaced and the transaction run once more, as the pool's pre-ping would
        have: the server rolled the first attempt back. DBAPI errors come out as
        SQLAlchemy's (`sa.exc.IntegrityError`...)."""
        for attempt in (0, 1):
            with self._nowait_connection() if nowait else self._connection() as conn:
                cur = conn.cursor()
                committing = False
                try:
                    if self.sqlite:
                        cur.execute("BEGIN IMMEDIATE")
                    result = work(cur)
                    committing = True
                    conn.commit()
                    if nowait:
                        self._nowait_commits += 1
                    return result
                except self.dbapi.Error as exc:
                    _rollback(conn)
                    if nowait and not committing and _is_busy(exc):
                        raise BookBusy(str(exc)) from exc
                    try:
                        lost = bool(self.dialect.is_disconnect(exc, conn.dbapi_connection, cur))
                    except Exception:  # pragma: no cover - a dialect that cannot tell
                        lost = False
                    if lost:
                        conn.invalidate(exc)
                        if attempt == 0 and not committing:
                            continue
                    raise sa.exc.DBAPIError.instance(
                        None, None, exc, self.dbapi.Error, connection_invalidated=lost,
                        dialect=self.dialect) from exc
                except BaseException:
                    _rollback(conn)
                    raise
                finally:
                    try:
                        cur.close()
                    except Exception:  # pragma: no cover - a cursor of a lost connection
                        pass
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the statements ------------------------------------------------------------------

    def _state(self, row: Any) -> TradingState:
        if row is None:
            return INITIAL_STATE
        changed = row[3] if self.changed_at is None else self.changed_at(row[3])
        return TradingState(row[0], row[1] or "", row[2] or "", changed, row[4])

    def journal(self, values: Mapping[str, Any], guard: Callable[[TradingState], str | None]
                | None, acks: Iterable[tuple[str, Mapping[str, Any]]] = (),
                nowait: bool = False) -> tuple[TradingState, str | None]:
        """Record `acks` (prepared by `Book._update_values`), read the trading state and
        insert the order (REJECTED when `guard` says why), in one transaction; returns the
        state read and the guard's reason."""
        updates = [self._prepare_update(coid, fields, True) for coid, fields in acks]

        def work(cur: Any) -> tuple[TradingState, str | None]:
            for sql, params in updates:
                cur.execute(sql, params)
            cur.execute(self.read_state)
            state = self._state(cur.fetchone())
            reason = guard(state) if guard is not None else None
            row = dict(values)
            if reason:
                row["status"], row["reason"] = "REJECTED", reason
            row["trading_state"] = state.state
            cur.execute(self.insert.sql, self.insert.params(row))
            return state, reason

        return self._run(work, nowait)

    def _prepare_update(self, client_order_id: str, values: Mapping[str, Any],
                        only_open: bool) -> tuple[str, Any]:
        keys = tuple(values)
        stmt = self.updates.get((keys, only_open))
        if stmt is None:
            o = t.orders.c
            query = t.orders.update().where(o.client_order_id == sa.bindparam("coid_"))
            if only_open:
                query = query.where(o.status.in_(
                    [sa.literal_column(f"'{s}'") for s in t.OPEN_JOURNAL_STATUSES]))
            stmt = self.updates[(keys, only_open)] = _Statement(query, keys, self.dialect)
        return stmt.sql, stmt.params({**values, "coid_": client_order_id})

    def update(self, updates: Iterable[tuple[str, Mapping[str, Any]]],
               only_open: bool = False, nowait: bool = False) -> list[int]:
        """Set each `(client order id, values)` in one transaction; with `only_open`, only on
        orders still JOURNALED, SENT or UNCERTAIN. Returns the rows changed by each (0 or 1)."""
        prepared = [self._prepare_update(coid, values, only_open) for coid, values in updates]

        def work(cur: Any) -> list[int]:
            done = []
            for sql, params in prepared:
                cur.execute(sql, params)
                done.append(int(cur.rowcount))
            return done

        return self._run(work, nowait)


def _is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _rollback(conn: Any) -> None:
    try:
        conn.rollback()
    except Exception:  # a lost connection: the server has rolled back already
        pass


def _discard(conn: Any) -> None:
    try:
        conn.invalidate()
    except Exception:  # pragma: no cover
        pass
