"""The book's tables, as SQLAlchemy Core `metadata`: the shape the migrations must produce.

Alembic owns the schema: `migrations/versions/` creates and changes these tables, and a test
checks that the migrated database matches this module exactly. Change both together.

Money and quantities are `Numeric` (Decimal in Python: what is sent to a broker is never a
float artefact); times are `UtcDateTime` (tz-aware UTC in and out, on SQLite too); JSON is
kept as text so both dialects store it the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

__all__ = [
    "JOURNAL_STATUSES",
    "OPEN_JOURNAL_STATUSES",
    "TRADING_STATES",
    "UtcDateTime",
    "adopted_fills",
    "audit_log",
    "book_adoptions",
    "book_positions",
    "broker_position_snapshots",
    "fills",
    "metadata",
    "orders",
    "rate_leases",
    "reconciliation_rows",
    "reconciliation_runs",
    "trading_state",
    "trading_state_history",
]

#: Journal statuses before the broker answers; after it, the broker's `OrderStatus` values.
OPEN_JOURNAL_STATUSES = ("JOURNALED", "SENT", "UNCERTAIN")
JOURNAL_STATUSES = (*OPEN_JOURNAL_STATUSES, "PENDING", "ACCEPTED", "PARTIALLY_FILLED", "FILLED",
                    "CANCELED", "REJECTED", "EXPIRED", "ERROR")
TRADING_STATES = ("ACTIVE", "REDUCING", "HALTED")

#: Constraint names are derived, so every dialect (and every later migration) agrees on them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(sa.TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back tz-aware in UTC (naive input is UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if hasattr(value, "to_pydatetime"):  # pandas.Timestamp
            value = value.to_pydatetime()
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {value!r}")
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        # SQLite has no time zones: store the UTC wall time.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _money() -> sa.Numeric[Any]:
    return sa.Numeric(asdecimal=True)


metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

#: The journal. `connection`, `instrument`, `side` and `order_type` are required of every order
#: journaled to be sent (`Book.journal_order`), and may be NULL only on an order refused before
#: it was sent (`Book.record_refused`: no route, or a malformed intent), which is REJECTED with
#: its `violations`.
orders = sa.Table(
    "orders", metadata,
    sa.Column("client_order_id", sa.String, primary_key=True),
    sa.Column("connection", sa.String),
    sa.Column("account", sa.String),
    sa.Column("instrument", sa.String),
    sa.Column("symbol", sa.String),
    sa.Column("asset_class", sa.String),
    sa.Column("side", sa.String),
    sa.Column("order_type", sa.String),
    sa.Column("quantity", _money()),
    sa.Column("notional", _money()),
    sa.Column("limit_price", _money()),
    sa.Column("stop_price", _money()),
    sa.Column("time_in_force", sa.String),
    sa.Column("intent", sa.Text),  # JSON of the full intent
    sa.Column("status", sa.String, nullable=False),
    sa.Column("broker_order_id", sa.String),
    sa.Column("reason", sa.Text),
    sa.Column("violations", sa.Text),  # JSON list
    sa.Column("filled_quantity", _money(), nullable=False),
    sa.Column("avg_fill_price", _money()),
    sa.Column("trading_state", sa.String),  # the state read when journaled
    sa.Column("actor", sa.String),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("sent_at", UtcDateTime),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Index(None, "status"),
)

fills = sa.Table(
    "fills", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("connection", sa.String, nullable=False),
    sa.Column("account", sa.String),
    sa.Column("fill_id", sa.String, nullable=False),
    sa.Column("order_id", sa.String),
    sa.Column("client_order_id", sa.String),
    sa.Column("instrument", sa.String, nullable=False),
    sa.Column("symbol", sa.String),
    sa.Column("asset_class", sa.String),
    sa.Column("side", sa.String, nullable=False),
    sa.Column("quantity", _money(), nullable=False),
    sa.Column("price", _money(), nullable=False),
    sa.Column("fee", _money()),
    sa.Column("fee_currency", sa.String),
    sa.Column("currency", sa.String),
    sa.Column("executed_at", UtcDateTime),
    sa.Column("trade_date", sa.Date),
    sa.Column("settle_date", sa.Date),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("connection", "fill_id"),
    sa.Index(None, "client_order_id"),
)

book_positions = sa.Table(
    "book_positions", metadata,
    sa.Column("connection", sa.String, primary_key=True),
    sa.Column("account", sa.String, primary_key=True),  # '' when the broker names none
    sa.Column("instrument", sa.String, primary_key=True),
    sa.Column("symbol", sa.String),
    sa.Column("asset_class", sa.String),
    sa.Column("quantity", _money(), nullable=False),
    sa.Column("avg_cost", _money()),
    sa.Column("currency", sa.String),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("source", sa.String, nullable=False),  # 'fills' | 'adoption': what last set it
)

#: Every adoption of a connection's positions from its broker. `opening` is the connection's
#: name on the one adoption that opened a fresh book (unique: decided once, whichever process
#: gets there first), NULL on adoptions asked for by a person. `read_at` is when the broker's
#: positions and fills were read: fills executed before it are in the adopted quantities.
book_adoptions = sa.Table(
    "book_adoptions", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("connection", sa.String, nullable=False),
    sa.Column("opening", sa.String, unique=True),
    sa.Column("read_at", UtcDateTime, nullable=False),
    sa.Column("adopted_at", UtcDateTime, nullable=False),
    sa.Column("actor", sa.String),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("fill_count", sa.Integer, nullable=False),  # fills at the broker when read
    sa.Index(None, "connection"),
)

#: The fills a broker already held when its positions were adopted (the adoption's fill
#: watermark): part of the adopted quantities, so never applied to the book's positions.
adopted_fills = sa.Table(
    "adopted_fills", metadata,
    sa.Column("connection", sa.String, primary_key=True),
    sa.Column("fill_id", sa.String, primary_key=True),
    sa.Column("adoption_id", sa.Integer, sa.ForeignKey("book_adoptions.id",
                                                       ondelete="CASCADE"), nullable=False),
)

broker_position_snapshots = sa.Table(
    "broker_position_snapshots", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("snapshot_id", sa.String, nullable=False),
    sa.Column("connection", sa.String, nullable=False),
    sa.Column("account", sa.String),
    sa.Column("instrument", sa.String, nullable=False),
    sa.Column("symbol", sa.String),
    sa.Column("asset_class", sa.String),
    sa.Column("quantity", _money(), nullable=False),
    sa.Column("avg_cost", _money()),
    sa.Column("market_price", _money()),
    sa.Column("currency", sa.String),
    sa.Column("as_of", UtcDateTime),
    sa.Column("taken_at", UtcDateTime, nullable=False),
    sa.Index(None, "snapshot_id"),
    sa.Index(None, "connection", "taken_at"),
)

trading_state = sa.Table(
    "trading_state", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("state", sa.String, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("actor", sa.String),
    sa.Column("changed_at", UtcDateTime, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.CheckConstraint("id = 1", name="single_row"),
    sa.CheckConstraint("state IN ('ACTIVE', 'REDUCING', 'HALTED')", name="state"),
)

trading_state_history = sa.Table(
    "trading_state_history", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("state", sa.String, nullable=False),
    sa.Column("previous_state", sa.String),
    sa.Column("reason", sa.Text),
    sa.Column("actor", sa.String),
    sa.Column("host", sa.String),
    sa.Column("pid", sa.Integer),
    sa.Column("changed_at", UtcDateTime, nullable=False),
)

audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("actor", sa.String),
    sa.Column("action", sa.String, nullable=False),
    sa.Column("target", sa.String),
    sa.Column("details", sa.Text),  # JSON
    sa.Column("result", sa.String),
    sa.Index(None, "at"),
)

reconciliation_runs = sa.Table(
    "reconciliation_runs", metadata,
    sa.Column("run_id", sa.String, primary_key=True),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("finished_at", UtcDateTime),
    sa.Column("actor", sa.String),
    sa.Column("connections", sa.Text),  # JSON list of the connections compared
    sa.Column("failed", sa.Text),  # JSON {connection: error} of connections not read
    sa.Column("counts", sa.Text),  # JSON {status: rows}
    sa.Column("unexplained", sa.Integer, nullable=False),
    sa.Index(None, "started_at"),
)

reconciliation_rows = sa.Table(
    "reconciliation_rows", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.String, sa.ForeignKey("reconciliation_runs.run_id",
                                                 ondelete="CASCADE"), nullable=False),
    sa.Column("connection", sa.String, nullable=False),
    sa.Column("account", sa.String),
    sa.Column("instrument", sa.String, nullable=False),
    sa.Column("symbol", sa.String),
    sa.Column("asset_class", sa.String),
    sa.Column("currency", sa.String),
    sa.Column("book_quantity", _money()),
    sa.Column("broker_quantity", _money()),
    sa.Column("quantity_diff", _money()),
    sa.Column("price", _money()),
    sa.Column("value_diff", _money()),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("explanation", sa.Text),
    sa.Index(None, "run_id"),
)

#: Rate-limit leases shared by every process on the book (`brokerkit.execution.sharedlimit`):
#: `units` of the window `scope` (its length and weights) of the credential `key` (never a
#: secret: a hash or a host), granted at `granted_at` for use until `until`; once the lease is
#: over, `units` is what was used and `until` the last use. Times are seconds since the epoch
#: on one clock (PostgreSQL's, or the SQLite host's): a rate limit is arithmetic on seconds.
#: `owner` is host:pid.
rate_leases = sa.Table(
    "rate_leases", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("key", sa.String, nullable=False),
    sa.Column("scope", sa.String, nullable=False),
    sa.Column("granted_at", sa.Float, nullable=False),
    sa.Column("until", sa.Float, nullable=False),
    sa.Column("units", sa.Integer, nullable=False),
    sa.Column("owner", sa.String),
    sa.Index(None, "key", "scope", "until"),
)
