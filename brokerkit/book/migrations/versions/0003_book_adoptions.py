"""Adoptions of brokers' positions, and the fills each already held (its fill watermark).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "book_adoptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection", sa.String(), nullable=False),
        sa.Column("opening", sa.String(), nullable=True),
        sa.Column("read_at", _time(), nullable=False),
        sa.Column("adopted_at", _time(), nullable=False),
        sa.Column("actor", sa.String(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("fill_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_book_adoptions"),
        sa.UniqueConstraint("opening", name="uq_book_adoptions_opening"),
    )
    op.create_index("ix_book_adoptions_connection", "book_adoptions", ["connection"])
    op.create_table(
        "adopted_fills",
        sa.Column("connection", sa.String(), nullable=False),
        sa.Column("fill_id", sa.String(), nullable=False),
        sa.Column("adoption_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["adoption_id"], ["book_adoptions.id"],
                                name="fk_adopted_fills_adoption_id_book_adoptions",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("connection", "fill_id", name="pk_adopted_fills"),
    )


def downgrade() -> None:
    op.drop_table("adopted_fills")
    op.drop_index("ix_book_adoptions_connection", table_name="book_adoptions")
    op.drop_table("book_adoptions")
