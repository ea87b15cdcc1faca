"""Records the gateway keeps about orders and executions (shared by every session)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .contracts import TwsContract

__all__ = ["OPEN_STATUSES", "TwsExecution", "TwsOrder", "WhatIfState"]

OPEN_STATUSES = frozenset({"PendingSubmit", "PreSubmitted", "Submitted", "PendingCancel"})


@dataclass
class TwsOrder:
    """One order as TWS knows it: what the client sent, plus ids and progress."""

    perm_id: int
    client_id: int
    order_id: int
    account: str
    contract: TwsContract
    exchange: str  # the routing exchange the client asked for
    action: str
    total_qty: float
    order_type: str
    lmt_price: float | None = None
    aux_price: float | None = None
    tif: str = "DAY"
    oca_group: str = ""
    open_close: str = "O"
    origin: int = 0
    order_ref: str = ""
    outside_rth: bool = False
    hidden: bool = False
    good_after_time: str = ""
    good_till_date: str = ""
    parent_id: int = 0
    trailing_percent: float | None = None
    trail_stop_price: float | None = None
    cash_qty: float | None = None
    status: str = "PreSubmitted"
    filled: float = 0.0
    avg_fill_price: float = 0.0
    last_fill_price: float = 0.0
    paper_order_id: str | None = None
    completed_time: str = ""
    completed_status: str = ""
    reason: str = ""
    revision: int = 0  # how many times it was sent to the paper broker (modifications)
    exec_ids: list[str] = field(default_factory=list)

    @property
    def remaining(self) -> float:
        return max(0.0, self.total_qty - self.filled)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass
class TwsExecution:
    """One fill: the execDetails and commissionReport fields."""

    exec_id: str
    order: TwsOrder
    time: str  # "YYYYMMDD HH:MM:SS UTC"
    venue: str
    side: str  # BOT / SLD
    shares: float
    price: float
    cum_qty: float
    avg_price: float
    commission: float
    commission_currency: str
    realized_pnl: float | None = None


@dataclass
class WhatIfState:
    """The OrderState block of a whatIf answer (margin values are strings of numbers)."""

    init_before: float
    maint_before: float
    ewl_before: float
    init_change: float
    maint_change: float
    ewl_change: float
    init_after: float
    maint_after: float
    ewl_after: float
    commission: float
    commission_currency: str
    warning: str = ""
