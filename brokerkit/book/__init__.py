"""The Sovereign Book: what brokerkit itself knows, kept in one database.

The order journal (written before anything is sent), fills and the positions they build,
snapshots of what brokers reported, the trading state (the kill switch every process sees at
once) with its history, and an audit log of who did what. SQLite (WAL) under the user data
directory by default, PostgreSQL for a team; Alembic migrations own the schema. A database
that cannot be used (missing, read-only, corrupt, unreachable, its connection lost) raises
`brokerkit.errors.BookUnavailable` from every method, naming it and what to do.

    >>> import brokerkit as bk
    >>> book = bk.open_book()                       # doctest: +SKIP
    >>> book.get_trading_state().state              # doctest: +SKIP
    'ACTIVE'

SQLAlchemy and Alembic load when a name below is first used, not on `import brokerkit.book`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

__all__ = [
    "Book",
    "BookBusy",
    "DuplicateClientOrderId",
    "OrderNotSendable",
    "TradingBlocked",
    "TradingState",
    "UnknownOrder",
    "acting_as",
    "close_books",
    "current_actor",
    "open_book",
]

_LAZY = {name: "brokerkit.book.store" for name in __all__} | {
    "acting_as": "brokerkit.book.actor",
    "current_actor": "brokerkit.book.actor",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .actor import acting_as, current_actor
    from .store import (
        Book,
        DuplicateClientOrderId,
        OrderNotSendable,
        TradingBlocked,
        TradingState,
        UnknownOrder,
        close_books,
        open_book,
    )
