"""Post-trade: the book reconciled against what brokers report, and settlement.

- `reconcile`: `reconcile(book, broker, ...)` classes every position (MATCH, QUANTITY_BREAK,
  CURRENCY_BREAK, MISSING_AT_BROKER, UNKNOWN_TO_BOOK, EXPLAINED, UNKNOWN) with its
  differences, explaining what fills, open orders, broker fills not yet in the book and
  corporate actions account for; `reconcile_reference` is the same, row by row (the
  yardstick of tests and benchmarks).
- `runs`: `Reconciler` reads every broker, stores runs in the book, and syncs breaks.
- `settlement`: the one source of trade and settle dates, on exchange, settlement and banking
  calendars.
- `cash`: the cash ladder and good-faith violations.
"""

from __future__ import annotations

from .cash import cash_ladder, good_faith_violations
from .reconcile import (
    COLUMNS,
    CORPORATE_ACTIONS,
    DEFAULT_MULTIPLIERS,
    RECONCILIATION,
    STATUSES,
    UNEXPLAINED,
    Tolerance,
    reconcile,
)
from .reconcile_reference import reconcile_reference
from .settlement import (
    settlement_dates,
    settlement_status,
    with_settlement,
)

__all__ = ["COLUMNS", "CORPORATE_ACTIONS", "DEFAULT_MULTIPLIERS", "RECONCILIATION", "STATUSES",
           "UNEXPLAINED", "Tolerance", "cash_ladder", "good_faith_violations", "reconcile",
           "reconcile_reference", "settlement_dates", "settlement_status", "with_settlement"]
