"""The initial book: order journal, fills, positions, snapshots, trading state, audit log.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _money() -> sa.Numeric:
    return sa.Numeric(asdecimal=True)


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("client_order_id", sa.String(), nullable=False),
        sa.Column("connection", sa.String(), nullable=False),
        sa.Column("account", sa.String(), nullable=True),
        sa.Column("instrument", sa.String(), nullable=False),
        sa.Column("symbol", sa.String(), nullable=True),
        sa.Column("asset_class", sa.String(), nullable=True),
        sa.Column("side", sa.String(), nullable=False),
        sa.Column("order_type", sa.String(), nullable=False),
        sa.Column("quantity", _money(), nullable=True),
        sa.Column("notional", _money(), nullable=True),
        sa.Column("limit_price", _money(), nullable=True),
        sa.Column("stop_price", _money(), nullable=True),
        sa.Column("time_in_force", sa.String(), nullable=True),
        sa.Column("intent", sa.Text(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("broker_order_id", sa.String(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("violations", sa.Text(), nullable=True),
        sa.Column("filled_quantity", _money(), nullable=False),
        sa.Column("avg_fill_price", _money(), nullable=True),
        sa.Column("trading_state", sa.String(), nullable=True),
        sa.Column("actor", sa.String(), nullable=True),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("sent_at", _time(), nullable=True),
        sa.Column("updated_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("client_order_id", name="pk_orders"),
    )
    op.create_index("ix_orders_status", "orders", ["status"])

    op.create_table(
        "fills",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection", sa.String(), nullable=False),
        sa.Column("account", sa.String(), nullable=True),
        sa.Column("fill_id", sa.String(), nullable=False),
        sa.Column("order_id", sa.String(), nullable=True),
        sa.Column("client_order_id", sa.String(), nullable=True),
        sa.Column("instrument", sa.String(), nullable=False),
        sa.Column("symbol", sa.String(), nullable=True),
        sa.Column("asset_class", sa.String(), nullable=True),
        sa.Column("side", sa.String(), nullable=False),
        sa.Column("quantity", _money(), nullable=False),
        sa.Column("price", _money(), nullable=False),
        sa.Column("fee", _money(), nullable=True),
        sa.Column("fee_currency", sa.String(), nullable=True),
        sa.Column("currency", sa.String(), nullable=True),
        sa.Column("executed_at", _time(), nullable=True),
        sa.Column("trade_date", sa.Date(), nullable=True),
        sa.Column("settle_date", sa.Date(), nullable=True),
        sa.Column("recorded_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_fills"),
        sa.UniqueConstraint("connection", "fill_id", name="uq_fills_connection_fill_id"),
    )
    op.create_index("ix_fills_client_order_id", "fills", ["client_order_id"])

    op.create_table(
        "book_positions",
        sa.Column("connection", sa.String(), nullable=False),
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("instrument", sa.String(), nullable=False),
        sa.Column("symbol", sa.String(), nullable=True),
        sa.Column("asset_class", sa.String(), nullable=True),
        sa.Column("quantity", _money(), nullable=False),
        sa.Column("avg_cost", _money(), nullable=True),
        sa.Column("currency", sa.String(), nullable=True),
        sa.Column("updated_at", _time(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("connection", "account", "instrument",
                                name="pk_book_positions"),
    )

    op.create_table(
        "broker_position_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("snapshot_id", sa.String(), nullable=False),
        sa.Column("connection", sa.String(), nullable=False),
        sa.Column("account", sa.String(), nullable=True),
        sa.Column("instrument", sa.String(), nullable=False),
        sa.Column("symbol", sa.String(), nullable=True),
        sa.Column("asset_class", sa.String(), nullable=True),
        sa.Column("quantity", _money(), nullable=False),
        sa.Column("avg_cost", _money(), nullable=True),
        sa.Column("market_price", _money(), nullable=True),
        sa.Column("currency", sa.String(), nullable=True),
        sa.Column("as_of", _time(), nullable=True),
        sa.Column("taken_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_broker_position_snapshots"),
    )
    op.create_index("ix_broker_position_snapshots_snapshot_id",
                    "broker_position_snapshots", ["snapshot_id"])
    op.create_index("ix_broker_position_snapshots_connection_taken_at",
                    "broker_position_snapshots", ["connection", "taken_at"])

    trading_state = op.create_table(
        "trading_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(), nullable=True),
        sa.Column("changed_at", _time(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_trading_state_single_row"),
        sa.CheckConstraint("state IN ('ACTIVE', 'REDUCING', 'HALTED')",
                           name="ck_trading_state_state"),
        sa.PrimaryKeyConstraint("id", name="pk_trading_state"),
    )
    # The one row: a new book trades. SQLite keeps the UTC wall time, as UtcDateTime does.
    now = datetime.now(UTC)
    op.bulk_insert(trading_state, [{
        "id": 1, "state": "ACTIVE", "reason": "new book", "actor": "brokerkit",
        "changed_at": now.replace(tzinfo=None) if op.get_context().dialect.name == "sqlite"
        else now,
        "version": 1,
    }])

    op.create_table(
        "trading_state_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("previous_state", sa.String(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(), nullable=True),
        sa.Column("host", sa.String(), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("changed_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_trading_state_history"),
    )

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", _time(), nullable=False),
        sa.Column("actor", sa.String(), nullable=True),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=True),
        sa.Column("details", sa.Text(), nullable=True),
        sa.Column("result", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("trading_state_history")
    op.drop_table("trading_state")
    op.drop_table("broker_position_snapshots")
    op.drop_table("book_positions")
    op.drop_table("fills")
    op.drop_table("orders")
