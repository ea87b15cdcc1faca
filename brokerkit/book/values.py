"""What the book hands its callers besides frames: the trading state, and the errors they
catch by meaning (the database's own failures are `brokerkit.errors.BookUnavailable`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from ..errors import BrokerkitError
from . import tables as t

__all__ = [
    "INITIAL_STATE",
    "SELECT_STATE",
    "BookBusy",
    "DuplicateClientOrderId",
    "OrderNotSendable",
    "TradingBlocked",
    "TradingState",
    "UnknownOrder",
]


@dataclass(frozen=True, slots=True)
class TradingState:
    """The kill switch as the book holds it; `version` grows by one on every change."""

    state: str
    reason: str
    actor: str
    changed_at: datetime
    version: int

    @property
    def active(self) -> bool:
        return self.state == "ACTIVE"

    @property
    def reducing(self) -> bool:
        return self.state == "REDUCING"

    @property
    def halted(self) -> bool:
        return self.state == "HALTED"


STATE_COLUMNS = (t.trading_state.c.state, t.trading_state.c.reason, t.trading_state.c.actor,
                 t.trading_state.c.changed_at, t.trading_state.c.version)
SELECT_STATE = sa.select(*STATE_COLUMNS).where(t.trading_state.c.id == 1)
INITIAL_STATE = TradingState("ACTIVE", "no trading state row", "brokerkit",
                             datetime(1970, 1, 1, tzinfo=UTC), 0)


class DuplicateClientOrderId(BrokerkitError):
    """An order with this client order id is already in the journal: every order needs a new one."""

    def __init__(self, client_order_id: str) -> None:
        self.client_order_id = client_order_id
        super().__init__(f"client order id {client_order_id!r} is already in the journal; "
                         "a new order needs a new client order id")


class UnknownOrder(BrokerkitError, KeyError):
    """No order with this client order id is in the journal."""

    def __init__(self, client_order_id: str) -> None:
        self.client_order_id = client_order_id
        super().__init__(f"no order with client order id {client_order_id!r} in the journal")

    def __str__(self) -> str:
        return str(self.args[0])


class OrderNotSendable(BrokerkitError):
    """`mark_sent` on an order that is not JOURNALED (rejected, or already sent)."""

    def __init__(self, client_order_id: str, status: str) -> None:
        self.client_order_id, self.status = client_order_id, status
        super().__init__(f"order {client_order_id!r} is {status}, not JOURNALED: "
                         "it must not be sent")


class BookBusy(BrokerkitError):
    """A write that must not wait (`nowait=True`) found the book's write lock held by another
    writer; nothing was written. Do it again where waiting is fine."""


class TradingBlocked(BrokerkitError):
    """The journal guard refused an order: it is in the journal as REJECTED with `reason`.

    `state` is the trading state the guard saw, read in the journal's own transaction.
    """

    def __init__(self, client_order_id: str, reason: str, state: TradingState) -> None:
        self.client_order_id, self.reason, self.state = client_order_id, reason, state
        super().__init__(f"order {client_order_id!r} rejected (trading state {state.state}): "
                         f"{reason}")
