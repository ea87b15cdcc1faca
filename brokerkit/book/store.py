"""`Book`: the order journal, fills, book positions, broker snapshots, trading state and audit log.

One database behind a URL: a SQLite file (WAL mode) under the user data directory by default,
PostgreSQL (psycopg 3) for a team. Opening a book runs Alembic's `upgrade head` once per
process and URL, under a lock, so two processes opening the same new database both succeed.

Every write is one short transaction, serialized where it must be: on SQLite a write begins
with `BEGIN IMMEDIATE` (it takes the write lock before it reads), on PostgreSQL the trading
state row is locked (`FOR SHARE` by the journal, `FOR UPDATE` by a state change) and position
writers take an advisory lock. So an order journaled after a halt committed always sees it, in
any process: the trading state is never cached.

    >>> book = Book("sqlite:///tmp/book.db")                            # doctest: +SKIP
    >>> book.journal_order(row, guard=lambda s: "halted" if s.halted else None)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import socket
import sqlite3
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, is_dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from .. import frames
from ..errors import BrokerkitError, ConfigError, SchemaError
from . import tables as t
from .actor import current_actor
from .adoption import (
    OPENING_REASON,
    adopted_fill_ids,
    is_fresh,
    latest_read_at,
    record_adoption,
)

__all__ = [
    "MIGRATIONS_DIR",
    "Book",
    "BookBusy",
    "DuplicateClientOrderId",
    "OrderNotSendable",
    "TradingBlocked",
    "TradingState",
    "UnknownOrder",
    "apply_fill",
    "close_books",
    "create_book_engine",
    "migrate",
    "open_book",
]

#: The Alembic script directory shipped inside the package.
MIGRATIONS_DIR = Path(__file__).with_name("migrations")

_BUSY_TIMEOUT_MS = 5000
T = TypeVar("T")
log = logging.getLogger("brokerkit.book")
_WRITE = "brokerkit_write"  # execution option: this transaction writes (SQLite: BEGIN IMMEDIATE)


# --------------------------------------------------------------------------------------------
# Errors and values


class DuplicateClientOrderId(BrokerkitError):
    """An order with this client order id is already in the journal: every order needs a new one."""

    def __init__(self, client_order_id: str) -> None:
        self.client_order_id = client_order_id
        super().__init__(f"client order id {client_order_id!r} is already in the journal; "
                         "a new order needs a new client order id")


class UnknownOrder(BrokerkitError, KeyError):
    """No order with this client order id is in the journal."""

    def __init__(self, client_order_id: str) -> None:
        self.client_order_id = client_order_id
        super().__init__(f"no order with client order id {client_order_id!r} in the journal")

    def __str__(self) -> str:
        return str(self.args[0])


class OrderNotSendable(BrokerkitError):
    """`mark_sent` on an order that is not JOURNALED (rejected, or already sent)."""

    def __init__(self, client_order_id: str, status: str) -> None:
        self.client_order_id, self.status = client_order_id, status
        super().__init__(f"order {client_order_id!r} is {status}, not JOURNALED: "
                         "it must not be sent")


class BookBusy(BrokerkitError):
    """A write that must not wait (`nowait=True`) found the book's write lock held by another
    writer; nothing was written. Do it again where waiting is fine."""


@dataclass(frozen=True, slots=True)
class TradingState:
    """The kill switch as the book holds it; `version` grows by one on every change."""

    state: str
    reason: str
    actor: str
    changed_at: datetime
    version: int

    @property
    def active(self) -> bool:
        return self.state == "ACTIVE"

    @property
    def reducing(self) -> bool:
        return self.state == "REDUCING"

    @property
    def halted(self) -> bool:
        return self.state == "HALTED"


class TradingBlocked(BrokerkitError):
    """The journal guard refused an order: it is in the journal as REJECTED with `reason`.

    `state` is the trading state the guard saw, read in the journal's own transaction.
    """

    def __init__(self, client_order_id: str, reason: str, state: TradingState) -> None:
        self.client_order_id, self.reason, self.state = client_order_id, reason, state
        super().__init__(f"order {client_order_id!r} rejected (trading state {state.state}): "
                         f"{reason}")


# --------------------------------------------------------------------------------------------
# Engines and migrations


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # the driver must not BEGIN on its own: _sqlite_begin does
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    # Switching a new file to WAL does not wait on the busy handler: when another process
    # is switching it at the same moment, try again until the busy timeout.
    deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    # A writer takes the write lock before it reads, so what it read is still true at commit.
    write = conn.get_execution_options().get(_WRITE)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _parse_url(url: str | URL) -> URL:
    try:
        return sa.make_url(url)
    except sa.exc.ArgumentError:  # the text may hold a password: do not repeat it
        raise ConfigError("the book URL is not a database URL", key="book.url",
                          expected="sqlite:///path or postgresql+psycopg://...") from None


def create_book_engine(url: str | URL) -> Engine:
    """A new engine for a book URL: SQLite set up for WAL (its directory created), or
    PostgreSQL through psycopg 3 (`postgresql://` means `postgresql+psycopg://`)."""
    u = _parse_url(url)
    backend = u.get_backend_name()
    if backend == "postgresql":
        if u.drivername == "postgresql":
            u = u.set(drivername="postgresql+psycopg")
        return sa.create_engine(u, pool_pre_ping=True)
    if backend == "sqlite":
        db = u.database or ""
        if db and db != ":memory:" and not db.startswith("file:"):
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(u, connect_args={"timeout": _BUSY_TIMEOUT_MS / 1000})
        sa.event.listen(engine, "connect", _sqlite_connect)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    raise ConfigError(f"the book supports SQLite and PostgreSQL, not {backend!r}",
                      key="book.url", expected="sqlite:///path or postgresql+psycopg://...")


def _lock_key(name: str) -> int:
    return zlib.crc32(f"brokerkit.book.{name}".encode())


def _serialize(conn: Connection, name: str) -> None:
    """On PostgreSQL, hold a transaction-scoped advisory lock `name` (SQLite: the write
    transaction already excludes every other writer)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_key(name))))


def migrate(engine: Engine) -> None:
    """Bring the database to the newest schema (`alembic upgrade head`), under a lock."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    with engine.connect() as conn:
        conn.execution_options(**{_WRITE: True})
        with conn.begin():
            _serialize(conn, "migrate")
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")


_LOCK = threading.Lock()
_ENGINES: dict[str, Engine] = {}
_HOTS: dict[str, _Hot] = {}  # the journal's hot path of each shared engine
_MIGRATED: set[str] = set()


def _key(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def _engine_for(url: URL, shared: bool) -> Engine:
    key = _key(url)
    with _LOCK:
        engine = _ENGINES.get(key) if shared else None
        if engine is None:
            engine = create_book_engine(url)
            if shared:
                _ENGINES[key] = engine
        if key not in _MIGRATED:
            try:
                migrate(engine)
            except BaseException:
                _ENGINES.pop(key, None)
                engine.dispose()
                raise
            _MIGRATED.add(key)
        return engine


def close_books(url: str | URL | None = None) -> None:
    """Close the shared engines (of `url`, else all); the next `Book` opens and checks anew."""
    with _LOCK:
        keys = [_key(sa.make_url(url))] if url is not None else list(_ENGINES)
        for key in keys:
            hot = _HOTS.pop(key, None)
            if hot is not None:
                hot.release()
            engine = _ENGINES.pop(key, None)
            if engine is not None:
                engine.dispose()
            _MIGRATED.discard(key)


def _hot_for(url: URL, engine: Engine, shared: bool) -> _Hot:
    """The hot path of `engine`: one per shared engine (so a process pins one connection
    per database, however many `Book`s it opens), else the `Book`'s own."""
    if not shared:
        return _Hot(engine)
    key = _key(url)
    with _LOCK:
        hot = _HOTS.get(key)
        if hot is None or hot.engine is not engine:
            hot = _HOTS[key] = _Hot(engine)
        return hot


def _after_fork() -> None:  # a child must not use its parent's sockets or SQLite handles
    for hot in _HOTS.values():
        hot.forget()
    for engine in _ENGINES.values():
        engine.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


# --------------------------------------------------------------------------------------------
# Converting values on the way in and out


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (
        isinstance(v, float | Decimal) and v != v)  # NaN is the only value unequal to itself


def _to_decimal(v: Any) -> Decimal | None:
    if v is None:
        return None
    if type(v) is Decimal:  # the journal's usual value: checked without the generic path
        if v.is_finite():
            return v
        if v.is_nan():
            return None
        raise ValueError("not a finite number")
    if _missing(v):
        return None
    if isinstance(v, bool):
        raise TypeError("a bool is not a quantity")
    if isinstance(v, Decimal):
        out = v
    elif isinstance(v, numbers.Integral):
        out = Decimal(int(v))
    elif isinstance(v, numbers.Real):
        out = Decimal(repr(float(v)))
    elif isinstance(v, str):
        out = Decimal(v.strip())
    else:
        raise TypeError(f"expected a number, got {type(v).__name__}")
    if not out.is_finite():
        raise ValueError("not a finite number")
    return out


def _to_time(v: Any) -> datetime | None:
    if v is None:
        return None
    if type(v) is datetime and v.tzinfo is UTC:
        return v
    if _missing(v):
        return None
    if isinstance(v, str):
        v = pd.Timestamp(v)
    if isinstance(v, pd.Timestamp):
        v = v.to_pydatetime()
    if not isinstance(v, datetime):
        raise TypeError(f"expected a datetime, got {type(v).__name__}")
    return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)


def _to_date(v: Any) -> date | None:
    if _missing(v):
        return None
    if isinstance(v, str):
        v = pd.Timestamp(v)
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    raise TypeError(f"expected a date, got {type(v).__name__}")


def _to_str(v: Any) -> str | None:
    if v is None or type(v) is str:
        return v
    if _missing(v):
        return None
    return v.value if isinstance(v, Enum) else str(v)


def _json_default(v: Any) -> Any:
    if isinstance(v, Enum):
        return v.value
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, datetime | date):
        return v.isoformat()
    if is_dataclass(v) and not isinstance(v, type):
        return asdict(v)
    if isinstance(v, Mapping):
        return dict(v)
    if isinstance(v, set | frozenset | tuple):
        return list(v)
    return str(v)


def _to_json(v: Any) -> str | None:
    if v is None or isinstance(v, str):
        return v
    if is_dataclass(v) and not isinstance(v, type):
        v = asdict(v)
    return json.dumps(v, default=_json_default, sort_keys=True)


def _from_json(v: str | None) -> Any:
    if v is None:
        return None
    try:
        return json.loads(v)
    except ValueError:
        return v


_JSON_COLUMNS = frozenset({"intent", "violations", "details"})


def _converters(table: sa.Table) -> dict[str, Callable[[Any], Any]]:
    out: dict[str, Callable[[Any], Any]] = {}
    for col in table.columns:
        if col.name in _JSON_COLUMNS:
            out[col.name] = _to_json
        elif isinstance(col.type, sa.Numeric):
            out[col.name] = _to_decimal
        elif isinstance(col.type, t.UtcDateTime):
            out[col.name] = _to_time
        elif isinstance(col.type, sa.Date):
            out[col.name] = _to_date
        elif isinstance(col.type, sa.Integer):
            out[col.name] = lambda v: None if _missing(v) else int(v)
        else:
            out[col.name] = _to_str
    return out


_CONVERT = {table.name: _converters(table) for table in t.metadata.sorted_tables}


def _clean(table: sa.Table, row: Mapping[str, Any], what: str) -> dict[str, Any]:
    """`row`'s values for `table`'s columns (others ignored), converted; errors name the value."""
    convert = _CONVERT[table.name]
    out: dict[str, Any] = {}
    for name, value in row.items():
        fn = convert.get(name)
        if fn is None:
            continue
        try:
            out[name] = fn(value)
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise SchemaError(f"{what}: column {name!r} cannot hold {value!r} ({exc})") from None
    return out


def _require(values: Mapping[str, Any], names: Iterable[str], what: str) -> None:
    for name in names:
        if values.get(name) in (None, ""):
            raise SchemaError(f"{what}: {name!r} is required, got {values.get(name)!r}")


def _records(data: pd.DataFrame | Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    if isinstance(data, pd.DataFrame):
        return data.to_dict("records")  # type: ignore[return-value]
    if isinstance(data, Mapping):
        raise TypeError("expected a DataFrame or an iterable of rows, got a single mapping")
    return list(data)


def _frame(columns: Iterable[sa.Column[Any]], rows: Iterable[Any]) -> pd.DataFrame:
    """A DataFrame of `rows` with analysis dtypes: float64 money, UTC times, naive dates."""
    cols = list(columns)
    data = [tuple(r) for r in rows]
    out: dict[str, pd.Series] = {}
    for i, col in enumerate(cols):
        values = [r[i] for r in data]
        if isinstance(col.type, sa.Numeric):
            out[col.name] = pd.Series([math.nan if v is None else float(v) for v in values],
                                      dtype="float64")
        elif isinstance(col.type, t.UtcDateTime):
            out[col.name] = pd.Series(pd.to_datetime(values, utc=True),
                                      dtype="datetime64[ns, UTC]")
        elif isinstance(col.type, sa.Date):
            out[col.name] = pd.Series(pd.to_datetime(values), dtype="datetime64[ns]")
        elif isinstance(col.type, sa.Integer):
            out[col.name] = pd.Series(values, dtype="Int64")
        else:
            out[col.name] = pd.Series(values, dtype=object)
    return pd.DataFrame(out, columns=[c.name for c in cols])


# --------------------------------------------------------------------------------------------
# Positions from fills


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


# --------------------------------------------------------------------------------------------
# The book

_ORDER_COLUMNS = frozenset(c.name for c in t.orders.columns)
_UPDATABLE = _ORDER_COLUMNS - {"client_order_id", "created_at"}
_FILL_COLUMNS = [c.name for c in t.fills.columns if c.name != "id"]
_SNAPSHOT_COLUMNS = [c.name for c in t.broker_position_snapshots.columns if c.name != "id"]
_STATE_COLUMNS = (t.trading_state.c.state, t.trading_state.c.reason, t.trading_state.c.actor,
                  t.trading_state.c.changed_at, t.trading_state.c.version)
_SELECT_STATE = sa.select(*_STATE_COLUMNS).where(t.trading_state.c.id == 1)
_INITIAL_STATE = TradingState("ACTIVE", "no trading state row", "brokerkit",
                              datetime(1970, 1, 1, tzinfo=UTC), 0)


def _status(value: Any) -> str:
    text = str(value.value if isinstance(value, Enum) else value).strip().upper()
    text = {"CANCELLED": "CANCELED"}.get(text, text)
    if text not in t.JOURNAL_STATUSES:
        raise SchemaError(f"order status {value!r} is not one of: "
                          f"{', '.join(t.JOURNAL_STATUSES)}")
    return text


def _state_name(value: Any) -> str:
    text = str(value.value if isinstance(value, Enum) else value).strip().upper()
    if text not in t.TRADING_STATES:
        raise ValueError(f"trading state {value!r} is not one of: {', '.join(t.TRADING_STATES)}")
    return text


def _now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------------------------
# The journal's hot path: its two statements, prepared, on a pinned DBAPI connection

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


class _Hot:
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
        query = _SELECT_STATE if self.sqlite else _SELECT_STATE.with_for_update(read=True)
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
            return _INITIAL_STATE
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


class Book:
    """The book at `url` (default: the configured book, `load_settings().book_url`).

    Books of one URL share an engine and a connection pool in a process; `shared=False` gives
    this one its own (as another process would have). Safe to use from several threads.
    """

    def __init__(self, url: str | URL | None = None, *, shared: bool = True) -> None:
        if url is None:
            from ..config import load_settings

            url = load_settings().book_url
        self._url = _parse_url(url)
        self._shared = shared
        self._engine = _engine_for(self._url, shared)
        self._writer = self._engine.execution_options(**{_WRITE: True})
        self._hot = _hot_for(self._url, self._engine, shared)

    # -- plumbing ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return self._url.render_as_string(hide_password=True)

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def dialect(self) -> str:
        """'sqlite' or 'postgresql'."""
        return self._engine.dialect.name

    def __repr__(self) -> str:
        return f"Book({self.url!r})"

    @contextmanager
    def begin(self, lock: str | None = None) -> Iterator[Connection]:
        """A write transaction, committed on success. Writers exclude each other on SQLite;
        `lock` names an advisory lock also held on PostgreSQL (e.g. 'positions')."""
        with self._writer.begin() as conn:
            if lock:
                _serialize(conn, lock)
            yield conn

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for reading (its transaction is rolled back at the end)."""
        with self._engine.connect() as conn:
            yield conn

    def close(self) -> None:
        """Release this book's connections (a shared engine is closed for every Book of it)."""
        if self._shared:
            close_books(self._url)
        else:
            self._hot.release()
            self._engine.dispose()

    def __enter__(self) -> Book:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the order journal ---------------------------------------------------------------

    def journal_order(self, row: Mapping[str, Any],
                      guard: Callable[[TradingState], str | None] | None = None, *,
                      acks: Iterable[tuple[str, Mapping[str, Any]]] = (),
                      nowait: bool = False) -> TradingState:
        """Write an order to the journal before it is sent; returns the trading state read in
        the same transaction.

        `row` holds `orders` columns: `client_order_id`, `connection`, `instrument`, `side` and
        `order_type` are required; `status` defaults to JOURNALED, times to now, `actor` to
        `current_actor()`; `intent` and `violations` may be objects (stored as JSON).
        If `guard(state)` returns a reason, the order is written as REJECTED with it and
        `TradingBlocked` is raised. A client order id already journaled raises
        `DuplicateClientOrderId` (and writes nothing).

        `acks` are acknowledgements of earlier orders, `(client order id, fields)` as for
        `record_ack`, recorded in the same transaction (one commit for both: how the
        execution service's deferred writes ride along); if the order cannot be written, they
        are still recorded on their own.

        With `nowait` (SQLite; see `writes_nowait`), the write never waits: when another
        writer holds the lock, `BookBusy` is raised and nothing is written (nor the `acks`),
        so the caller can do it again where waiting is fine. Such a write is about a tenth of
        a millisecond: an event loop may do it itself instead of handing it to a thread.
        """
        what = f"journal row {row.get('client_order_id')!r}"
        unknown = set(row) - _ORDER_COLUMNS
        if unknown:
            raise SchemaError(f"{what}: unknown columns {sorted(unknown)}; "
                              f"the journal has {sorted(_ORDER_COLUMNS)}")
        values = dict.fromkeys(_ORDER_COLUMNS)
        values.update(_clean(t.orders, row, what))
        _require(values, ("client_order_id", "connection", "instrument", "side", "order_type"),
                 what)
        now = _now()
        values["status"] = _status(values["status"] or "JOURNALED")
        values["filled_quantity"] = values["filled_quantity"] or Decimal(0)
        values["created_at"] = values["created_at"] or now
        values["updated_at"] = values["updated_at"] or values["created_at"]
        values["actor"] = values["actor"] or current_actor()
        coid = values["client_order_id"]
        prepared = self._acks(acks)
        try:
            state, reason = self._hot.journal(values, guard, prepared, nowait)
        except BookBusy:
            raise
        except sa.exc.IntegrityError:
            self._record_acks_alone(prepared, nowait)
            if self.get_order(coid) is not None:
                raise DuplicateClientOrderId(coid) from None
            raise
        except BaseException:
            self._record_acks_alone(prepared, nowait)
            raise
        if reason:
            raise TradingBlocked(coid, reason, state)
        return state

    @property
    def writes_nowait(self) -> bool:
        """Whether `journal_order(nowait=True)` can write (SQLite) rather than always raise
        `BookBusy` (PostgreSQL: every write is a network round trip, done on a thread)."""
        return self._hot.sqlite and self._hot.pinnable

    def checkpoint_due(self) -> bool:
        """True, once, when no-wait writes have grown the WAL enough that `checkpoint()`
        should run (from a thread that may wait: they never checkpoint themselves)."""
        return self._hot.take_checkpoint()

    def checkpoint(self) -> None:
        """Copy the WAL into the database file as far as readers allow (SQLite's PASSIVE
        checkpoint: it never blocks writers); nothing to do on PostgreSQL."""
        if self._hot.sqlite:
            with self._engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def mark_sent(self, client_order_id: str) -> None:
        """JOURNALED → SENT, stamping `sent_at`; raises `OrderNotSendable` from any other
        status and `UnknownOrder` if it is not journaled."""
        o = t.orders.c
        now = _now()
        with self._writer.begin() as conn:
            done = conn.execute(
                t.orders.update()
                .where(o.client_order_id == client_order_id, o.status == "JOURNALED")
                .values(status="SENT", sent_at=now, updated_at=now)).rowcount
            if not done:
                status = conn.scalar(sa.select(o.status).where(o.client_order_id ==
                                                               client_order_id))
                if status is None:
                    raise UnknownOrder(client_order_id)
                raise OrderNotSendable(client_order_id, status)

    def update_order(self, client_order_id: str, /, **fields: Any) -> None:
        """Set journal columns of an order (status, broker_order_id, filled_quantity,
        avg_fill_price, reason, violations...); `updated_at` defaults to now."""
        what = f"update of order {client_order_id!r}"
        if not self._hot.update([(client_order_id, self._update_values(fields, what))])[0]:
            raise UnknownOrder(client_order_id)

    def record_ack(self, client_order_id: str, /, **fields: Any) -> bool:
        """Record what the broker answered (status, broker_order_id, fills so far, sent_at)
        on an order the journal still holds as JOURNALED, SENT or UNCERTAIN; returns whether
        it did. An order resolved meanwhile (by recovery in another process, say) keeps what
        it has: an acknowledgement recorded late never overwrites a newer answer."""
        return self.record_acks([(client_order_id, fields)]) == 1

    def record_acks(self, acks: Iterable[tuple[str, Mapping[str, Any]]]) -> int:
        """`record_ack` for each `(client order id, fields)`, in one transaction; returns how
        many orders took their acknowledgement."""
        prepared = self._acks(acks)
        return sum(self._hot.update(prepared, only_open=True)) if prepared else 0

    def _acks(self, acks: Iterable[tuple[str, Mapping[str, Any]]]
              ) -> list[tuple[str, dict[str, Any]]]:
        return [(coid, self._update_values(fields, f"acknowledgement of order {coid!r}"))
                for coid, fields in acks]

    def _record_acks_alone(self, prepared: list[tuple[str, dict[str, Any]]],
                           nowait: bool) -> None:
        """The acknowledgements that rode along a journal write that failed, on their own
        (a failure here leaves the orders unresolved: recovery looks them up)."""
        if not prepared:
            return
        try:
            self._hot.update(prepared, only_open=True, nowait=nowait)
        except Exception as exc:
            log.error(
                "recording %d acknowledgements failed: %s; recovery will look the orders up",
                len(prepared), exc)

    @staticmethod
    def _update_values(fields: Mapping[str, Any], what: str) -> dict[str, Any]:
        bad = set(fields) - _UPDATABLE
        if bad:
            raise SchemaError(f"{what}: cannot set {sorted(bad)}; settable: {sorted(_UPDATABLE)}")
        values = _clean(t.orders, fields, what)
        if "status" in values:
            values["status"] = _status(values["status"])
        values.setdefault("updated_at", _now())
        return values

    @staticmethod
    def _order(row: Any) -> dict[str, Any]:
        out = dict(row._mapping)
        out["intent"] = _from_json(out["intent"])
        out["violations"] = _from_json(out["violations"])
        return out

    def get_order(self, client_order_id: str) -> dict[str, Any] | None:
        """The journal row (Decimals, UTC datetimes, `intent`/`violations` decoded), or None."""
        with self.connect() as conn:
            row = conn.execute(sa.select(t.orders).where(
                t.orders.c.client_order_id == client_order_id)).first()
        return None if row is None else self._order(row)

    def unresolved_orders(self) -> list[dict[str, Any]]:
        """Orders whose fate the broker has not told yet (JOURNALED, SENT, UNCERTAIN), oldest
        first: what recovery must `lookup` by client order id."""
        with self.connect() as conn:
            rows = conn.execute(sa.select(t.orders)
                                .where(t.orders.c.status.in_(t.OPEN_JOURNAL_STATUSES))
                                .order_by(t.orders.c.created_at)).all()
        return [self._order(r) for r in rows]

    def orders_frame(self, since: datetime | None = None) -> pd.DataFrame:
        """The journal (every `orders` column, JSON as text), oldest first; `since` filters on
        `created_at`."""
        query = sa.select(t.orders).order_by(t.orders.c.created_at)
        if since is not None:
            query = query.where(t.orders.c.created_at >= _to_time(since))
        with self.connect() as conn:
            rows = conn.execute(query).all()
        return _frame(t.orders.columns, rows)

    # -- fills and book positions --------------------------------------------------------

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

    def book_positions_frame(self, connection: str | None = None) -> pd.DataFrame:
        """The book's own positions (from fills or adoption): one row per connection, account
        ('' if none) and instrument, flat positions omitted."""
        query = sa.select(t.book_positions).order_by(*t.book_positions.primary_key.columns)
        if connection is not None:
            query = query.where(t.book_positions.c.connection == connection)
        with self.connect() as conn:
            rows = conn.execute(query).all()
        return _frame(t.book_positions.columns, rows)

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

    def opening_needed(self, connection: str) -> bool:
        """True while the book holds nothing of `connection` (no order, fill, book position
        or adoption): `open_from_broker` would open it."""
        with self.connect() as conn:
            return is_fresh(conn, connection)

    def adopted_through(self, connection: str) -> datetime | None:
        """When the newest adoption of `connection` read its broker: fills executed before
        it are inside the book's positions (None: never adopted)."""
        with self.connect() as conn:
            return latest_read_at(conn, connection)

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
            self._audit(conn, "adopt_positions", f"{connection}/{account}", {
                "reason": reason, "opening": opening, "read_at": read_at,
                "fills_at_broker": len(set(fill_ids.get(connection, ()))),
                "before": [{"instrument": r.instrument, "quantity": r.quantity,
                            "avg_cost": r.avg_cost} for r in before],
                "after": [{"instrument": r["instrument"], "quantity": r["quantity"],
                           "avg_cost": r["avg_cost"]} for r in rows],
            }, f"adopted {len(rows)} positions", actor, now)
        return written

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
                self._audit(conn, "correct_position",
                            f"{values['connection']}/{values['account']}/{values['instrument']}",
                            {"reason": reason,
                             "before": None if before is None else
                             {"quantity": before.quantity, "avg_cost": before.avg_cost},
                             "after": {"quantity": values["quantity"],
                                       "avg_cost": values.get("avg_cost")}},
                            "corrected", actor, now)
                done += 1
        return done

    # -- reconciliation runs -------------------------------------------------------------

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
            self._audit(conn, "reconcile", run_id, {"counts": counts, "failed": failed or {}},
                        f"{unexplained} unexplained", actor, now)
        return run_id

    def reconciliation_runs(self, limit: int = 50) -> pd.DataFrame:
        """The latest runs, newest first (JSON columns as text)."""
        r = t.reconciliation_runs
        with self.connect() as conn:
            rows = conn.execute(sa.select(r).order_by(r.c.started_at.desc()).limit(limit)).all()
        return _frame(r.columns, rows)

    def reconciliation_rows(self, run_id: str) -> pd.DataFrame:
        """The rows of one run, in the order they were stored."""
        r = t.reconciliation_rows
        with self.connect() as conn:
            rows = conn.execute(sa.select(r).where(r.c.run_id == run_id).order_by(r.c.id)).all()
        return _frame(r.columns, rows)

    # -- broker position snapshots -------------------------------------------------------

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
            with self._writer.begin() as conn:
                conn.execute(t.broker_position_snapshots.insert(), rows)
        return snapshot_id

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

    # -- trading state -------------------------------------------------------------------

    @staticmethod
    def _read_state(conn: Connection, lock: str | None = None) -> TradingState:
        query = _SELECT_STATE
        if lock == "share":
            query = query.with_for_update(read=True)
        elif lock == "update":
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            return _INITIAL_STATE
        return TradingState(row.state, row.reason or "", row.actor or "", row.changed_at,
                            row.version)

    def get_trading_state(self) -> TradingState:
        """The trading state now, read from the database (never cached)."""
        with self.connect() as conn:
            return self._read_state(conn)

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
            self._audit(conn, "set_trading_state", name,
                        {"previous": previous.state, "reason": reason, "version": new.version},
                        "ok", actor, now)
        return new

    def trading_state_history(self) -> pd.DataFrame:
        """Every trading state change, oldest first."""
        with self.connect() as conn:
            rows = conn.execute(sa.select(t.trading_state_history)
                                .order_by(t.trading_state_history.c.id)).all()
        return _frame(t.trading_state_history.columns, rows)

    # -- audit log -----------------------------------------------------------------------

    @staticmethod
    def _audit(conn: Connection, action: str, target: str, details: Any, result: str,
               actor: str, at: datetime) -> None:
        conn.execute(t.audit_log.insert().values(
            at=at, actor=actor, action=action, target=target, details=_to_json(details),
            result=result))

    def audit(self, action: str, target: str = "", details: Any = None, result: str = "",
              actor: str | None = None) -> None:
        """Record who (`actor`, default `current_actor()`) did `action` to `target`;
        `details` is stored as JSON."""
        if not isinstance(action, str) or not action.strip():
            raise ValueError(f"audit needs an action, got {action!r}")
        with self._writer.begin() as conn:
            self._audit(conn, action, target, details, result, actor or current_actor(), _now())

    def audit_frame(self, limit: int | None = 500) -> pd.DataFrame:
        """The newest `limit` audit rows (all if None), newest first; `details` as JSON text."""
        query = sa.select(t.audit_log).order_by(t.audit_log.c.id.desc())
        if limit is not None:
            query = query.limit(limit)
        with self.connect() as conn:
            rows = conn.execute(query).all()
        return _frame(t.audit_log.columns, rows)



def open_book(url: str | URL | None = None) -> Book:
    """The book at `url`, default the configured one (`BROKERKIT_DATABASE_URL` or brokerkit.toml
    or a SQLite file in the user data directory), migrated to the newest schema."""
    return Book(url)
