"""Post-trade: the book reconciled against what brokers report, and settlement.

- `reconcile`: `reconcile(book, broker, ...)` classes every position (MATCH, QUANTITY_BREAK,
  MISSING_AT_BROKER, UNKNOWN_TO_BOOK, EXPLAINED, UNKNOWN) with its differences.
- `runs`: `Reconciler` reads every broker, stores runs in the book, and syncs breaks.
- `settlement`: settlement dates on real exchange and settlement calendars (the one source of
  settle dates).
- `cash`: the cash ladder and good-faith violations.
"""

from __future__ import annotations

from .cash import cash_ladder, good_faith_violations
from .reconcile import (
    COLUMNS,
    RECONCILIATION,
    STATUSES,
    UNEXPLAINED,
    Tolerance,
    reconcile,
    reconcile_reference,
)
from .settlement import (
    settlement_dates,
    settlement_status,
    with_settlement,
)

__all__ = ["COLUMNS", "RECONCILIATION", "STATUSES", "UNEXPLAINED", "Tolerance", "cash_ladder",
           "good_faith_violations", "reconcile", "reconcile_reference", "settlement_dates",
           "settlement_status", "with_settlement"]
