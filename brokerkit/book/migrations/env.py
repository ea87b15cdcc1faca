"""Alembic environment of the book.

`Book` passes its open connection (inside the transaction that holds the migration lock) as
`config.attributes["connection"]`; the `alembic` command line gets an engine built the way
`Book` builds one, from `-x url=...`, `BROKERKIT_DATABASE_URL` or the configured book URL.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy.engine import Connection

from brokerkit.book.tables import UtcDateTime, metadata

config = context.config


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Write brokerkit's column types as plain SQLAlchemy ones, so migrations stand alone."""
    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(**kwargs: Any) -> None:
    context.configure(target_metadata=metadata, render_as_batch=True,
                      render_item=_render_item, compare_type=True, **kwargs)


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    if url:
        return url
    from brokerkit.config import load_settings

    return load_settings().book_url


def _run(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    """Run the migrations on the given connection, a new one, or as SQL (offline mode)."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    elif context.is_offline_mode():
        _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
        with context.begin_transaction():
            context.run_migrations()
    else:
        from brokerkit.book.engine import create_book_engine

        engine = create_book_engine(_url())
        try:
            with engine.connect() as conn:
                _run(conn)
                conn.commit()
        finally:
            engine.dispose()


run()
