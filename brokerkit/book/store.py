"""`Book`: the order journal, fills, book positions, broker snapshots, trading state and audit log.

One database behind a URL: a SQLite file (WAL mode) under the user data directory by default,
PostgreSQL (psycopg 3) for a team. Opening a book runs Alembic's `upgrade head` once per
process and URL, under a lock, so two processes opening the same new database both succeed.

Every write is one short transaction, serialized where it must be: on SQLite a write begins
with `BEGIN IMMEDIATE` (it takes the write lock before it reads), on PostgreSQL the trading
state row is locked (`FOR SHARE` by the journal, `FOR UPDATE` by a state change) and position
writers take an advisory lock. So an order journaled after a halt committed always sees it, in
any process: the trading state is never cached.

The book fails closed: a database that cannot be opened, is read-only, corrupt, unreachable or
drops its connection raises `BookUnavailable` from every method, naming the database (its
password hidden) and what to do (`engine.translating`); a read is done once more on a fresh
connection when its connection was lost.

`Book` is composed of its parts, one module each: `journal` (orders), `ledger` (fills,
positions, adoptions, snapshots), `state` (trading state and audit log), `reconciliation`
(runs); `base` holds the plumbing, `engine` the database, `hotpath` the journal's prepared
statements, `shared` the engines of the process.

    >>> book = Book("sqlite:///tmp/book.db")                            # doctest: +SKIP
    >>> book.journal_order(row, guard=lambda s: "halted" if s.halted else None)  # doctest: +SKIP
"""

from __future__ import annotations

from sqlalchemy.engine import URL

from .engine import MIGRATIONS_DIR, create_book_engine, migrate
from .journal import Journal
from .ledger import Ledger, apply_fill
from .reconciliation import Reconciliations
from .shared import close_books
from .state import TradingStates
from .values import (
    BookBusy,
    DuplicateClientOrderId,
    OrderNotSendable,
    TradingBlocked,
    TradingState,
    UnknownOrder,
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


class Book(Journal, Ledger, TradingStates, Reconciliations):
    """The book at `url` (default: the configured book, `load_settings().book_url`).

    Books of one URL share an engine and a connection pool in a process; `shared=False` gives
    this one its own (as another process would have). Safe to use from several threads. A
    database that cannot be used raises `brokerkit.errors.BookUnavailable`, here and from
    every method.
    """

    def __enter__(self) -> Book:
        return self


def open_book(url: str | URL | None = None) -> Book:
    """The book at `url`, default the configured one (`BROKERKIT_DATABASE_URL` or brokerkit.toml
    or a SQLite file in the user data directory), migrated to the newest schema; raises
    `BookUnavailable` when it cannot be used."""
    return Book(url)
