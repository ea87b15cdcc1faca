"""Alembic migrations of the book: the source of truth for its schema.

`Book` runs `upgrade head` itself when it opens a database. To write the next migration,
change `brokerkit/book/tables.py`, then let autogenerate draft it against an up-to-date book
(the URL comes from `-x url=...`, else `BROKERKIT_DATABASE_URL`, else the configured book)::

    alembic -c brokerkit/book/migrations/alembic.ini \
        revision --autogenerate --rev-id 0002 -m "add reconciliation runs"

and read the draft before keeping it: it must run on SQLite and on PostgreSQL.
"""
