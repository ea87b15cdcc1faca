"""`BookBase`: what every part of the book stands on: its URL, its engine (shared in the
process), the journal's hot path, and transactions whose failures read as `BookUnavailable`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import URL, Connection, Engine

from .engine import WRITE, parse_url, serialize, translating
from .hotpath import Hot
from .shared import close_books, engine_for, hot_for

__all__ = ["BookBase"]


class BookBase:
    """The book at `url` (default: the configured book, `load_settings().book_url`), opened
    and migrated; a database that cannot be used raises `BookUnavailable`.

    Books of one URL share an engine and a connection pool in a process; `shared=False` gives
    this one its own (as another process would have). Safe to use from several threads.
    """

    def __init__(self, url: str | URL | None = None, *, shared: bool = True) -> None:
        if url is None:
            from ..config import load_settings

            url = load_settings().book_url
        self._url = parse_url(url)
        self._shared = shared
        with translating(self._url):
            self._engine = engine_for(self._url, shared)
            self._writer: Engine = self._engine.execution_options(**{WRITE: True})
            self._hot: Hot = hot_for(self._url, self._engine, shared)

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
        with translating(self._url), self._writer.begin() as conn:
            if lock:
                serialize(conn, lock)
            yield conn

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for reading (its transaction is rolled back at the end)."""
        with translating(self._url), self._engine.connect() as conn:
            yield conn

    def close(self) -> None:
        """Release this book's connections (a shared engine is closed for every Book of it)."""
        if self._shared:
            close_books(self._url)
        else:
            self._hot.release()
            self._engine.dispose()

    def __enter__(self) -> BookBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
