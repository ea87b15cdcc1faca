"""The order journal: every order written before it is sent, what the broker answered, and
every order refused before it could be sent, with why.

An order's row is written (`journal_order`) in the transaction that re-reads the trading
state, before anything reaches a broker; acknowledgements (`record_ack(s)`) settle it. A
refused order (`record_refused`) is written as REJECTED with its violations and never sent.
The hot writes run on the journal's hot path (`hotpath.Hot`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import pandas as pd
import sqlalchemy as sa

from ..errors import SchemaError
from ..model import Violation, reason_of
from . import tables as t
from .actor import current_actor
from .base import BookBase
from .convert import (
    _CONVERT,
    _clean,
    _frame,
    _from_json,
    _now,
    _require,
    _state_name,
    _status,
    _to_json,
    _to_str,
    _to_time,
)
from .engine import reads, writes
from .values import (
    BookBusy,
    DuplicateClientOrderId,
    OrderNotSendable,
    TradingBlocked,
    TradingState,
    UnknownOrder,
)

__all__ = ["Journal"]

log = logging.getLogger("brokerkit.book")

_ORDER_COLUMNS = frozenset(c.name for c in t.orders.columns)
_UPDATABLE = _ORDER_COLUMNS - {"client_order_id", "created_at"}
#: The columns of a refused order taken from its intent (the others the book sets).
_FROM_INTENT = ("instrument", "symbol", "asset_class", "side", "order_type", "quantity",
                "notional", "limit_price", "stop_price", "time_in_force")


def _fitting(intent: Mapping[str, Any]) -> dict[str, Any]:
    """The intent's values for the journal's columns, converted; a value that does not fit
    its column (a refused intent may be malformed) is left out."""
    out: dict[str, Any] = {}
    for name in _FROM_INTENT:
        try:
            value = _CONVERT["orders"][name](intent.get(name))
        except (TypeError, ValueError, ArithmeticError):
            continue
        lower = name in ("side", "order_type", "time_in_force") and value
        out[name] = value.lower() if lower else value
    return out


def _violation(v: Any, what: str) -> dict[str, str]:
    """One violation as `{"code", "message"}` (a mapping, or an object with `to_dict`)."""
    data = v.to_dict() if hasattr(v, "to_dict") else v
    if not isinstance(data, Mapping) or not data.get("code"):
        raise ValueError(f"{what}: a violation needs a code and a message, got {v!r}")
    return {"code": str(data["code"]), "message": str(data.get("message") or "")}


class Journal(BookBase):
    """The book's order journal."""

    # -- the order journal ---------------------------------------------------------------

    @writes
    def journal_order(self, row: Mapping[str, Any],
                      guard: Callable[[TradingState], str | None] | None = None, *,
                      acks: Iterable[tuple[str, Mapping[str, Any]]] = (),
                      nowait: bool = False) -> TradingState:
        """Write an order to the journal before it is sent; returns the trading state read in
        the same transaction.

        `row` holds `orders` columns: `client_order_id`, `connection`, `instrument`, `side` and
        `order_type` are required; `status` defaults to JOURNALED, times to now, `actor` to
        `current_actor()`; `intent` and `violations` may be objects (stored as JSON).
        If `guard(state)` returns a reason, the order is written as REJECTED with it and
        `TradingBlocked` is raised. A client order id already journaled raises
        `DuplicateClientOrderId` (and writes nothing).

        `acks` are acknowledgements of earlier orders, `(client order id, fields)` as for
        `record_ack`, recorded in the same transaction (one commit for both: how the
        execution service's deferred writes ride along); if the order cannot be written, they
        are still recorded on their own.

        With `nowait` (SQLite; see `writes_nowait`), the write never waits: when another
        writer holds the lock, `BookBusy` is raised and nothing is written (nor the `acks`),
        so the caller can do it again where waiting is fine. Such a write is about a tenth of
        a millisecond: an event loop may do it itself instead of handing it to a thread.
        """
        what = f"journal row {row.get('client_order_id')!r}"
        unknown = set(row) - _ORDER_COLUMNS
        if unknown:
            raise SchemaError(f"{what}: unknown columns {sorted(unknown)}; "
                              f"the journal has {sorted(_ORDER_COLUMNS)}")
        values = dict.fromkeys(_ORDER_COLUMNS)
        values.update(_clean(t.orders, row, what))
        _require(values, ("client_order_id", "connection", "instrument", "side", "order_type"),
                 what)
        now = _now()
        values["status"] = _status(values["status"] or "JOURNALED")
        values["filled_quantity"] = values["filled_quantity"] or Decimal(0)
        values["created_at"] = values["created_at"] or now
        values["updated_at"] = values["updated_at"] or values["created_at"]
        values["actor"] = values["actor"] or current_actor()
        coid = values["client_order_id"]
        prepared = self._acks(acks)
        try:
            state, reason = self._hot.journal(values, guard, prepared, nowait)
        except BookBusy:
            raise
        except sa.exc.IntegrityError:
            self._record_acks_alone(prepared, nowait)
            if self.get_order(coid) is not None:
                raise DuplicateClientOrderId(coid) from None
            raise
        except BaseException:
            self._record_acks_alone(prepared, nowait)
            raise
        if reason:
            raise TradingBlocked(coid, reason, state)
        return state

    @property
    def writes_nowait(self) -> bool:
        """Whether `journal_order(nowait=True)` can write (SQLite) rather than always raise
        `BookBusy` (PostgreSQL: every write is a network round trip, done on a thread)."""
        return self._hot.sqlite and self._hot.pinnable

    def checkpoint_due(self) -> bool:
        """True, once, when no-wait writes have grown the WAL enough that `checkpoint()`
        should run (from a thread that may wait: they never checkpoint themselves)."""
        return self._hot.take_checkpoint()

    @writes
    def checkpoint(self) -> None:
        """Copy the WAL into the database file as far as readers allow (SQLite's PASSIVE
        checkpoint: it never blocks writers); nothing to do on PostgreSQL."""
        if self._hot.sqlite:
            with self.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    @writes
    def mark_sent(self, client_order_id: str) -> None:
        """JOURNALED → SENT, stamping `sent_at`; raises `OrderNotSendable` from any other
        status and `UnknownOrder` if it is not journaled."""
        o = t.orders.c
        now = _now()
        with self.begin() as conn:
            done = conn.execute(
                t.orders.update()
                .where(o.client_order_id == client_order_id, o.status == "JOURNALED")
                .values(status="SENT", sent_at=now, updated_at=now)).rowcount
            if not done:
                status = conn.scalar(sa.select(o.status).where(o.client_order_id ==
                                                               client_order_id))
                if status is None:
                    raise UnknownOrder(client_order_id)
                raise OrderNotSendable(client_order_id, status)

    @writes
    def update_order(self, client_order_id: str, /, **fields: Any) -> None:
        """Set journal columns of an order (status, broker_order_id, filled_quantity,
        avg_fill_price, reason, violations...); `updated_at` defaults to now."""
        what = f"update of order {client_order_id!r}"
        if not self._hot.update([(client_order_id, self._update_values(fields, what))])[0]:
            raise UnknownOrder(client_order_id)

    @writes
    def record_ack(self, client_order_id: str, /, **fields: Any) -> bool:
        """Record what the broker answered (status, broker_order_id, fills so far, sent_at)
        on an order the journal still holds as JOURNALED, SENT or UNCERTAIN; returns whether
        it did. An order resolved meanwhile (by recovery in another process, say) keeps what
        it has: an acknowledgement recorded late never overwrites a newer answer."""
        return self.record_acks([(client_order_id, fields)]) == 1

    @writes
    def record_acks(self, acks: Iterable[tuple[str, Mapping[str, Any]]]) -> int:
        """`record_ack` for each `(client order id, fields)`, in one transaction; returns how
        many orders took their acknowledgement."""
        prepared = self._acks(acks)
        return sum(self._hot.update(prepared, only_open=True)) if prepared else 0

    def _acks(self, acks: Iterable[tuple[str, Mapping[str, Any]]]
              ) -> list[tuple[str, dict[str, Any]]]:
        return [(coid, self._update_values(fields, f"acknowledgement of order {coid!r}"))
                for coid, fields in acks]

    def _record_acks_alone(self, prepared: list[tuple[str, dict[str, Any]]],
                           nowait: bool) -> None:
        """The acknowledgements that rode along a journal write that failed, on their own
        (a failure here leaves the orders unresolved: recovery looks them up)."""
        if not prepared:
            return
        try:
            self._hot.update(prepared, only_open=True, nowait=nowait)
        except Exception as exc:
            log.error(
                "recording %d acknowledgements failed: %s; recovery will look the orders up",
                len(prepared), exc)

    @staticmethod
    def _update_values(fields: Mapping[str, Any], what: str) -> dict[str, Any]:
        bad = set(fields) - _UPDATABLE
        if bad:
            raise SchemaError(f"{what}: cannot set {sorted(bad)}; settable: {sorted(_UPDATABLE)}")
        values = _clean(t.orders, fields, what)
        if "status" in values:
            values["status"] = _status(values["status"])
        values.setdefault("updated_at", _now())
        return values

    @writes
    def record_refused(self, client_order_id: str, intent: Mapping[str, Any], *,
                       connection: str | None, account: str | None, trading_state: str,
                       violations: Sequence[Mapping[str, Any]], actor: str | None = None,
                       at: datetime | None = None) -> None:
        """Journal an order that was refused before it was sent: status REJECTED, never sent,
        with its `violations` (each a mapping with `code` and `message`, stored as a JSON
        list) and the reason they make (`CODE: message; CODE: message`).

        `intent` is the order as given (stored as JSON); its columns (symbol, side,
        quantity...) are filled where its values fit them, and left empty where they do not
        (a refused intent may be malformed: the JSON keeps what was given). `connection` is
        None when no route was found; `trading_state` is the state the checks read; `at`
        defaults to now, `actor` to `current_actor()`. A client order id already in the
        journal raises `DuplicateClientOrderId` and writes nothing.
        """
        what = f"refused order {client_order_id!r}"
        if not isinstance(client_order_id, str) or not client_order_id.strip():
            raise ValueError(f"{what}: a refused order needs a client order id")
        if not isinstance(intent, Mapping):
            raise TypeError(f"{what}: intent must be a mapping, got {type(intent).__name__}")
        found = [_violation(v, what) for v in violations]
        if not found:
            raise ValueError(f"{what}: violations must name at least one reason")
        when = _to_time(at) or _now()
        values = dict.fromkeys(_ORDER_COLUMNS) | _fitting(intent)
        values.update(
            client_order_id=client_order_id, connection=_to_str(connection),
            account=_to_str(account), intent=_to_json(dict(intent)), status="REJECTED",
            reason=reason_of(Violation(**v) for v in found), violations=_to_json(found),
            filled_quantity=Decimal(0),
            trading_state=_state_name(trading_state), actor=actor or current_actor(),
            created_at=when, updated_at=when, sent_at=None, broker_order_id=None,
            avg_fill_price=None)
        try:
            with self.begin() as conn:
                conn.execute(t.orders.insert(), values)
        except sa.exc.IntegrityError:
            if self.get_order(client_order_id) is not None:
                raise DuplicateClientOrderId(client_order_id) from None
            raise

    @staticmethod
    def _order(row: Any) -> dict[str, Any]:
        out = dict(row._mapping)
        out["intent"] = _from_json(out["intent"])
        out["violations"] = _from_json(out["violations"])
        return out

    @reads
    def get_order(self, client_order_id: str) -> dict[str, Any] | None:
        """The journal row (Decimals, UTC datetimes, `intent`/`violations` decoded), or None."""
        with self.connect() as conn:
            row = conn.execute(sa.select(t.orders).where(
                t.orders.c.client_order_id == client_order_id)).first()
        return None if row is None else self._order(row)

    @reads
    def unresolved_orders(self) -> list[dict[str, Any]]:
        """Orders whose fate the broker has not told yet (JOURNALED, SENT, UNCERTAIN), oldest
        first: what recovery must `lookup` by client order id."""
        with self.connect() as conn:
            rows = conn.execute(sa.select(t.orders)
                                .where(t.orders.c.status.in_(t.OPEN_JOURNAL_STATUSES))
                                .order_by(t.orders.c.created_at)).all()
        return [self._order(r) for r in rows]

    @reads
    def orders_frame(self, since: datetime | None = None) -> pd.DataFrame:
        """The journal (every `orders` column, JSON as text), oldest first; `since` filters on
        `created_at`."""
        query = sa.select(t.orders).order_by(t.orders.c.created_at)
        if since is not None:
            query = query.where(t.orders.c.created_at >= _to_time(since))
        with self.connect() as conn:
            rows = conn.execute(query).all()
        return _frame(t.orders.columns, rows)
