"""Reconciliation runs and their rows, kept with their results.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _money() -> sa.Numeric:
    return sa.Numeric(asdecimal=True)


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "reconciliation_runs",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("started_at", _time(), nullable=False),
        sa.Column("finished_at", _time(), nullable=True),
        sa.Column("actor", sa.String(), nullable=True),
        sa.Column("connections", sa.Text(), nullable=True),
        sa.Column("failed", sa.Text(), nullable=True),
        sa.Column("counts", sa.Text(), nullable=True),
        sa.Column("unexplained", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name="pk_reconciliation_runs"),
    )
    op.create_index("ix_reconciliation_runs_started_at", "reconciliation_runs",
                    ["started_at"])
    op.create_table(
        "reconciliation_rows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("connection", sa.String(), nullable=False),
        sa.Column("account", sa.String(), nullable=True),
        sa.Column("instrument", sa.String(), nullable=False),
        sa.Column("symbol", sa.String(), nullable=True),
        sa.Column("asset_class", sa.String(), nullable=True),
        sa.Column("currency", sa.String(), nullable=True),
        sa.Column("book_quantity", _money(), nullable=True),
        sa.Column("broker_quantity", _money(), nullable=True),
        sa.Column("quantity_diff", _money(), nullable=True),
        sa.Column("price", _money(), nullable=True),
        sa.Column("value_diff", _money(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("explanation", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["reconciliation_runs.run_id"],
                                name="fk_reconciliation_rows_run_id_reconciliation_runs",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_reconciliation_rows"),
    )
    op.create_index("ix_reconciliation_rows_run_id", "reconciliation_rows", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_reconciliation_rows_run_id", table_name="reconciliation_rows")
    op.drop_table("reconciliation_rows")
    op.drop_index("ix_reconciliation_runs_started_at", table_name="reconciliation_runs")
    op.drop_table("reconciliation_runs")
