"""The book's database: engines, URLs, SQLite's pragmas, migrations, and how its failures read.

`create_book_engine` makes the engine of a URL (SQLite in WAL mode, its directory created; or
PostgreSQL through psycopg 3, pinging pooled connections before use), `migrate` brings it to
the newest schema under a lock.

Every failure of the database reaches a caller as one error, `BookUnavailable`, naming the
database (its password hidden), what failed and what to do: `translating(url)` turns
SQLAlchemy's and the drivers' errors into it (a context manager, around `Book.connect` and
`Book.begin`), and the `reads` and `writes` decorators put it around every public method of
the book. A read whose connection was lost (a PostgreSQL server restarted, a backend
terminated) is done once more on a fresh connection: reading twice is harmless. A write is
not: whether it committed is unknown, so it raises. Errors that mean something to a caller
(`IntegrityError`: a duplicate key) pass unchanged.
"""

from __future__ import annotations

import functools
import logging
import os
import sqlite3
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from ..errors import BookUnavailable, ConfigError

__all__ = [
    "MIGRATIONS_DIR",
    "WRITE",
    "create_book_engine",
    "migrate",
    "parse_url",
    "reads",
    "serialize",
    "translating",
    "unavailable",
    "writes",
]

#: The Alembic script directory shipped inside the package.
MIGRATIONS_DIR = Path(__file__).with_name("migrations")

_BUSY_TIMEOUT_MS = 5000
#: Seconds a PostgreSQL connection attempt may take (unless the URL sets `connect_timeout`):
#: an unreachable server gives `BookUnavailable` instead of a wait without end.
_CONNECT_TIMEOUT_S = 10
WRITE = "brokerkit_write"  # execution option: this transaction writes (SQLite: BEGIN IMMEDIATE)
log = logging.getLogger("brokerkit.book")


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
    write = conn.get_execution_options().get(WRITE)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def parse_url(url: str | URL) -> URL:
    try:
        return sa.make_url(url)
    except sa.exc.ArgumentError:  # the text may hold a password: do not repeat it
        raise ConfigError("the book URL is not a database URL", key="book.url",
                          expected="sqlite:///path or postgresql+psycopg://...") from None


def create_book_engine(url: str | URL) -> Engine:
    """A new engine for a book URL: SQLite set up for WAL (its directory created), or
    PostgreSQL through psycopg 3 (`postgresql://` means `postgresql+psycopg://`)."""
    u = parse_url(url)
    backend = u.get_backend_name()
    if backend == "postgresql":
        if u.drivername == "postgresql":
            u = u.set(drivername="postgresql+psycopg")
        args = {} if "connect_timeout" in u.query else {"connect_timeout": _CONNECT_TIMEOUT_S}
        return sa.create_engine(u, pool_pre_ping=True, connect_args=args)
    if backend == "sqlite":
        db = u.database or ""
        if db and db != ":memory:" and not db.startswith("file:"):
            try:
                Path(db).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise BookUnavailable(u, "cannot_open", detail=f"its directory "
                                      f"{Path(db).parent} cannot be created: "
                                      f"{exc.strerror or exc}") from exc
        engine = sa.create_engine(u, connect_args={"timeout": _BUSY_TIMEOUT_MS / 1000})
        sa.event.listen(engine, "connect", _sqlite_connect)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    raise ConfigError(f"the book supports SQLite and PostgreSQL, not {backend!r}",
                      key="book.url", expected="sqlite:///path or postgresql+psycopg://...")


def _lock_key(name: str) -> int:
    return zlib.crc32(f"brokerkit.book.{name}".encode())


def serialize(conn: Connection, name: str) -> None:
    """On PostgreSQL, hold a transaction-scoped advisory lock `name` (SQLite: the write
    transaction already excludes every other writer)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_key(name))))


def migrate(engine: Engine) -> None:
    """Bring the database to the newest schema (`alembic upgrade head`), under a lock."""
    from alembic import command
    from alembic.config import Config
    from alembic.util.exc import CommandError

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    with engine.connect() as conn:
        conn.execution_options(**{WRITE: True})
        with conn.begin():
            serialize(conn, "migrate")
            cfg.attributes["connection"] = conn
            try:
                command.upgrade(cfg, "head")
            except CommandError as exc:  # e.g. a revision this brokerkit does not know
                raise BookUnavailable(engine.url, "not_migrated",
                                      detail=_first_line(exc, engine.url)) from exc


# --------------------------------------------------------------------------------------------
# Failures, as `BookUnavailable`

_DETAIL_CHARS = 240
# What the drivers say, lower-cased, and what it means (the first match wins).
_SIGNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("corrupt", ("file is not a database", "malformed", "not a database")),
    ("read_only", ("readonly database", "read-only", "read only")),
    ("unreachable", ("connection failed", "could not connect", "connection refused",
                     "could not translate host name", "name or service not known",
                     "timeout expired", "authentication failed", "no pg_hba.conf entry",
                     "connection to server at")),
    ("lost", ("server closed the connection", "terminating connection", "consuming input",
              "connection is lost", "connection is closed", "connection not open",
              "connection already closed", "connection reset", "broken pipe", "eof detected",
              "the database system is shutting down", "the database system is starting up")),
    ("busy", ("database is locked", "database table is locked", "lock timeout")),
    ("not_migrated", ("no such table", "no such column", "undefinedtable",
                      "undefinedcolumn")),
    ("cannot_open", ("unable to open database file", "disk i/o error", "database or disk is full",
                     "out of memory")),
)


def _first_line(exc: BaseException, url: URL) -> str:
    """The driver's own words, one line, the URL's password (if any) never repeated."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0].strip()
    if url.password:
        text = text.replace(str(url.password), "***")
    return text[:_DETAIL_CHARS]


def _driver_error(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.Error):
        return not isinstance(exc, sqlite3.IntegrityError)
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(exc, psycopg.Error):
        return not isinstance(exc, psycopg.IntegrityError | psycopg.DataError)
    return False


def _sqlite_file(url: URL) -> Path | None:
    db = url.database or ""
    if url.get_backend_name() != "sqlite" or not db or db == ":memory:" or db.startswith("file:"):
        return None
    return Path(db)


def _problem(exc: BaseException, orig: BaseException, url: URL) -> str:
    words = f"{type(orig).__name__} {orig}".lower()
    for problem, signs in _SIGNS:
        if any(s in words for s in signs):
            if problem == "cannot_open" and _read_only_file(url):
                return "read_only"
            return problem
    if getattr(exc, "connection_invalidated", False):
        return "lost"
    if "relation" in words and "does not exist" in words:  # PostgreSQL: a missing table
        return "not_migrated"
    return "error"


def _read_only_file(url: URL) -> bool:
    """True when the SQLite file of `url` exists but this user may not write it or its
    directory (SQLite then cannot make its -wal and -shm files)."""
    path = _sqlite_file(url)
    if path is None or not path.exists():
        return False
    return not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))


def unavailable(exc: BaseException, url: URL) -> BookUnavailable | None:
    """The `BookUnavailable` that `exc` means for the book at `url`, or None when `exc` is
    not a failure of the database (a duplicate key, a bad value, a bug: those stay as
    they are)."""
    if isinstance(exc, sa.exc.IntegrityError | sa.exc.DataError):
        return None
    if isinstance(exc, sa.exc.DBAPIError):
        orig: BaseException = exc.orig if exc.orig is not None else exc
    elif isinstance(exc, sa.exc.TimeoutError):  # the pool had no connection to give
        return BookUnavailable(url, "busy", detail=_first_line(exc, url))
    elif _driver_error(exc):
        orig = exc
    else:
        return None
    return BookUnavailable(url, _problem(exc, orig, url), detail=_first_line(orig, url))


@contextmanager
def translating(url: URL) -> Iterator[None]:
    """Within the block, a failure of the database at `url` raises `BookUnavailable` (from
    the original error); every other exception passes unchanged."""
    try:
        yield
    except Exception as exc:
        _translate(exc, url)
        raise


def _translate(exc: Exception, url: URL) -> None:
    """Raise the `BookUnavailable` that `exc` means, if it means one."""
    if isinstance(exc, BookUnavailable):
        return
    err = unavailable(exc, url)
    if err is not None:
        raise err from exc


P = ParamSpec("P")
R = TypeVar("R")


class _HasUrl(Protocol):
    _url: URL


def writes(fn: Callable[P, R]) -> Callable[P, R]:
    """A public book method that writes (or must not run twice): its database failures
    raise `BookUnavailable`."""

    @functools.wraps(fn)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # a plain try: this wraps the journal's hot path
            _translate(exc, _url_of(args))
            raise

    guarded.__book_guard__ = "writes"  # type: ignore[attr-defined]
    return guarded


def reads(fn: Callable[P, R]) -> Callable[P, R]:
    """A public book method that only reads: its database failures raise `BookUnavailable`,
    except that a lost connection is replaced and the read done once more."""

    @functools.wraps(fn)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                _translate(exc, _url_of(args))
                raise
        except BookUnavailable as exc:
            if exc.problem != "lost":
                raise
            log.warning("%s: reading the book again on a new connection (%s)",
                        fn.__qualname__, exc.detail)
        with translating(_url_of(args)):
            return fn(*args, **kwargs)

    guarded.__book_guard__ = "reads"  # type: ignore[attr-defined]
    return guarded


def _url_of(args: tuple[Any, ...]) -> URL:
    book: _HasUrl = args[0]
    return book._url
