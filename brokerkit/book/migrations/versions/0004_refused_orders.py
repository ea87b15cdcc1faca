"""Refused orders in the journal: an order refused before it was sent may have no route
(NO_ROUTE: no connection) and, from a malformed intent, no instrument, side or order type;
the journal keeps it anyway, with its violations and the intent as given.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_MAYBE_UNKNOWN = ("connection", "instrument", "side", "order_type")


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:  # SQLite: the table is copied
        for name in _MAYBE_UNKNOWN:
            batch.alter_column(name, existing_type=sa.String(), nullable=True)


def downgrade() -> None:
    # Refused orders that lack a value get '' (the column must be NOT NULL again).
    for name in _MAYBE_UNKNOWN:
        op.execute(sa.text(f"UPDATE orders SET {name} = '' WHERE {name} IS NULL"))
    with op.batch_alter_table("orders") as batch:
        for name in _MAYBE_UNKNOWN:
            batch.alter_column(name, existing_type=sa.String(), nullable=False)
