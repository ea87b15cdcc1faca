"""Rate-limit leases: one budget per broker credential, shared by every process on the book.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_leases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("granted_at", sa.Float(), nullable=False),
        sa.Column("until", sa.Float(), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_rate_leases"),
    )
    op.create_index("ix_rate_leases_key_scope_until", "rate_leases",
                    ["key", "scope", "until"])


def downgrade() -> None:
    op.drop_index("ix_rate_leases_key_scope_until", table_name="rate_leases")
    op.drop_table("rate_leases")
