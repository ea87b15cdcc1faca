"""Reconciliation runs: read every broker, compare with the book, store the result, and sync.

`Reconciler.run()` reads positions and orders from every connection at once, pulls each
trading connection's new fills into the book (so the book is current: a fill executed after the
broker's snapshot explains its difference), compares the book's positions with the brokers'
(`reconcile.reconcile`), and stores the run with its rows in the book. A connection that could
not be read, or whose fills could not be pulled, yields UNKNOWN rows, never "flat" nor a break
that a sync would wrongly settle. What the broker knows and the book does not yet explains its
difference, named, instead of a bare break: of each connection, since the book was opened
from it (all, when it never was), the fills the book does not hold of orders no longer open
(`broker_fills`: a connection that cannot trade, where nothing is pulled, and a completed
order whose fills the pull has not brought), the part of each open order's filled quantity
the book holds no fill of (`open_orders`, netted per order against the book's fills and the
fills inside an adopted position), and the corporate actions the broker applied
(`corporate_actions`). With `[book] open_from_brokers = true`, a connection the book holds
nothing of is first opened from its broker's positions (`brokerkit.book.feed`), so a fresh
book reconciles clean.
`Reconciler.sync(run_id, rows, reason)` adopts the broker's view for the chosen rows, writing a
book correction and an audit row for each: the book's average cost is kept per unit, and for a
row a corporate action explains, its total cost (a split changes quantity, not cost basis).
`adopt(connection, reason)` opens a book from a broker's positions (and the fills inside them,
never applied again). The next run then matches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from .. import frames, runtime
from ..book.feed import BrokerFeed
from ..errors import AdapterError
from ..venues.symbols import instrument_key
from .reconcile import UNEXPLAINED, Tolerance, reconcile

if TYPE_CHECKING:
    from ..book import Book
    from ..service import BrokerageService

__all__ = ["Reconciler", "ReconciliationRun"]

#: Order statuses still working at a broker.
_OPEN = ("PENDING", "ACCEPTED", "PARTIALLY_FILLED")
#: What `Reconciler._read` gives of one connection: its positions, its open orders (filled
#: quantity netted against the book), its fills the book does not hold, its corporate actions.
_Read = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]


@dataclass
class ReconciliationRun:
    """One stored run: its id, its rows (the `reconcile` frame), connections not read."""

    run_id: str
    rows: pd.DataFrame
    failed: dict[str, str] = field(default_factory=dict)
    started_at: datetime | None = None

    @property
    def breaks(self) -> pd.DataFrame:
        """The rows that need a person: breaks that nothing explains, and UNKNOWN rows."""
        return self.rows[self.rows["status"].isin(UNEXPLAINED)]

    @property
    def unexplained(self) -> int:
        return len(self.breaks)

    @property
    def counts(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.rows["status"].value_counts().items()}

    def to_dict(self) -> dict[str, Any]:
        import json

        rows = json.loads(self.rows.to_json(orient="records", date_format="iso"))
        return {"run_id": self.run_id, "started_at": self.started_at.isoformat()
                if self.started_at else None, "counts": self.counts,
                "unexplained": self.unexplained, "failed": self.failed, "rows": rows}


class Reconciler(runtime.Bridged):
    """Book against brokers, over a `BrokerageService` and a `Book`."""

    def __init__(self, brokerage: BrokerageService | None = None, book: Book | None = None,
                 tolerances: Mapping[str, Tolerance | float] | None = None) -> None:
        if brokerage is None:
            from ..service import get_brokerage_service

            brokerage = get_brokerage_service()
        if book is None:
            from ..book import open_book

            book = open_book(brokerage.settings.book_url)
        self.brokerage, self.book, self.tolerances = brokerage, book, tolerances
        self.feed = BrokerFeed(book, brokerage)

    async def _read(self, name: str) -> _Read:
        """The broker's positions and orders, then its new fills pulled into the book (a fill
        executed after the snapshot is then in the book and explains its difference), then
        what the broker knows that the book does not (`_unbooked`)."""
        adapter = await self.brokerage.connected_adapter_async(name)
        positions, orders = await asyncio.gather(adapter.positions_async(),
                                                 adapter.orders_async())
        if adapter.capabilities.trading:
            try:
                await self.feed.pull_async(name)
            except Exception as exc:  # compared with a stale book, a break would mislead
                raise AdapterError(name, f"its fills could not be pulled into the book, so "
                                         f"the book is not current: {exc}") from exc
        return await self._unbooked(adapter, name, positions, orders)

    async def _unbooked(self, adapter: Any, name: str, positions: pd.DataFrame,
                        orders: pd.DataFrame) -> _Read:
        """Since the book was opened from `name` (`adopted_through`; from the start when it
        never was): the broker's fills the book does not hold, by fill id, of orders no
        longer open; its open orders with `filled_quantity` netted against the book's fills
        of each (recorded, or inside the adopted position: executed before the adoption);
        and its corporate actions."""
        opened = await asyncio.to_thread(self.book.adopted_through, name)
        is_open = orders["status"].isin(_OPEN)
        working = orders[is_open & (orders["filled_quantity"].fillna(0.0) > 0)]
        since = opened
        if opened is not None and len(working):  # an open order's fills before the adoption
            first = working["submitted_at"].min()
            since = min(opened, first.to_pydatetime()) if first == first else None
        fills, actions = await asyncio.gather(adapter.fills_async(since),
                                              self._actions(adapter, name, opened))
        booked = await asyncio.to_thread(self.book.fills_frame, name, since)
        held = fills["fill_id"].isin(booked["fill_id"])
        adopted = ~held & (fills["executed_at"] < opened) if opened is not None \
            else pd.Series(False, index=fills.index)
        counted = frames.concat(frames.FILLS, [booked, fills[adopted]])  # the book's part
        per_order = counted.groupby("order_id")["quantity"].sum()
        open_orders = orders[is_open].copy()
        open_orders["filled_quantity"] = (
            open_orders["filled_quantity"].fillna(0.0)
            - open_orders["order_id"].map(per_order).fillna(0.0)).clip(lower=0.0)
        unbooked = fills[~held & ~adopted & ~fills["order_id"].isin(open_orders["order_id"])]
        return positions, open_orders, unbooked, actions

    @staticmethod
    async def _actions(adapter: Any, name: str, since: datetime | None) -> pd.DataFrame:
        """The corporate actions of `name` since `since`. Not read, the connection is not
        compared: a split shown as a bare break would be synced at the wrong cost basis."""
        try:
            return await adapter.corporate_actions_async(since)  # type: ignore[no-any-return]
        except Exception as exc:
            raise AdapterError(name, f"its corporate actions could not be read, so a split "
                                     f"would look like a break: {exc}") from exc

    async def run_async(self, connections: Sequence[str] | None = None) -> ReconciliationRun:
        """Compare the book with every connection (or those named) and store the run."""
        started = datetime.now(UTC)
        names = list(connections) if connections else self.brokerage.connections
        await self.feed.open_async(names)  # a fresh book: from the brokers' positions
        results = await asyncio.gather(
            *(asyncio.wait_for(self._read(n), self.brokerage.call_timeout) for n in names),
            return_exceptions=True)
        failed: dict[str, str] = {}
        read: list[_Read] = []
        for name, res in zip(names, results, strict=True):
            if isinstance(res, BaseException):
                if not isinstance(res, Exception):
                    raise res
                failed[name] = str(res) or type(res).__name__
                continue
            read.append(res)
        broker = frames.concat(frames.POSITIONS, (r[0] for r in read))
        book = await asyncio.to_thread(self.book.book_positions_frame)
        book = book[book["connection"].isin(names)]
        rows = reconcile(book, broker,
                         open_orders=frames.concat(frames.ORDERS, (r[1] for r in read)),
                         fills_after=await self._booked_after(broker),
                         broker_fills=frames.concat(frames.FILLS, (r[2] for r in read)),
                         corporate_actions=frames.concat(frames.CORPORATE_ACTIONS,
                                                         (r[3] for r in read)),
                         failed=failed, tolerances=self.tolerances)
        await asyncio.to_thread(self.book.snapshot_broker_positions, broker)
        unexplained = int(rows["status"].isin(UNEXPLAINED).sum())
        run_id = await asyncio.to_thread(
            self.book.save_reconciliation, rows, connections=names, failed=failed,
            started_at=started, unexplained=unexplained)
        return ReconciliationRun(run_id, rows, failed, started)

    async def _booked_after(self, broker: pd.DataFrame) -> pd.DataFrame:
        """Fills the book recorded after each connection's broker snapshot was taken: in the
        book, not yet in the snapshot."""
        if broker.empty:
            return frames.empty(frames.FILLS)
        since = broker.groupby("connection")["as_of"].min()
        fills = await asyncio.to_thread(self.book.fills_frame, None,
                                        since.min().to_pydatetime())
        if fills.empty:
            return fills
        cutoff = fills["connection"].map(since)
        return fills[fills["executed_at"] > cutoff]

    def run(self, connections: Sequence[str] | None = None) -> ReconciliationRun:
        return runtime.run(self.run_async(connections))

    def sync(self, run_id: str, rows: Iterable[int] | None = None, *, reason: str,
             actor: str | None = None) -> int:
        """Adopt the broker's quantity for rows of a stored run (by position in the run;
        all breaks when None). UNKNOWN rows are never synced: there is no broker view; nor
        CURRENCY_BREAK rows: a quantity cannot settle which currency is right.
        Returns the number of book positions corrected."""
        stored = self.book.reconciliation_rows(run_id)
        if stored.empty:
            raise KeyError(f"no reconciliation run {run_id!r} (or it has no rows)")
        chosen = stored if rows is None else stored.iloc[list(rows)]
        if rows is None:
            chosen = chosen[chosen["status"].isin(UNEXPLAINED)]
        chosen = chosen[~chosen["status"].isin(["UNKNOWN", "CURRENCY_BREAK"])]
        held = self.book.book_positions_frame()
        cost = {(c, a or "", instrument_key(i)): (q, avg) for c, a, i, q, avg in zip(
            held["connection"], held["account"], held["instrument"], held["quantity"],
            held["avg_cost"], strict=True)}
        corrections = []
        for r in chosen.itertuples():
            quantity = 0.0 if r.broker_quantity != r.broker_quantity else r.broker_quantity
            before_q, avg = cost.get((r.connection, r.account or "", r.instrument),
                                     (None, None))
            if avg is not None and avg == avg and before_q and quantity and str(
                    r.explanation or "").startswith("corporate action"):
                avg = avg * before_q / quantity  # the total cost stays: a split's basis
            corrections.append({"connection": r.connection, "account": r.account,
                                "instrument": r.instrument, "symbol": r.symbol,
                                "asset_class": r.asset_class, "currency": r.currency,
                                "quantity": quantity, "avg_cost": avg})
        return self.book.correct_positions(corrections, actor,
                                           f"reconciliation {run_id}: {reason}")

    async def adopt_async(self, connection: str, *, reason: str, actor: str | None = None
                          ) -> int:
        """Open (or reset) the book of `connection` from the broker's positions, audited.
        The fills the broker holds are inside those quantities: a later pull never applies
        them again. Returns the positions written."""
        adapter = await self.brokerage.connected_adapter_async(connection)
        positions, fill_ids, read_at = await BrokerFeed.read_broker_async(adapter)
        accounts = [(connection, a) for a in adapter.accounts]
        return await asyncio.to_thread(self.book.adopt_positions, positions, actor, reason,
                                       accounts=accounts, fill_ids={connection: fill_ids},
                                       read_at=read_at)

    def adopt(self, connection: str, *, reason: str, actor: str | None = None) -> int:
        return runtime.run(self.adopt_async(connection, reason=reason, actor=actor))
