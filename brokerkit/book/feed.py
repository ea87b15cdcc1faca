"""`BrokerFeed`: what reaches the book from the brokers (a fresh book's opening positions, and
fills), for the execution service and the reconciler alike.

- `open_async(names)`: with `[book] open_from_brokers = true`, every trading connection the
  book holds nothing of yet is opened from its broker (`Book.open_from_broker`): its positions
  and the ids of the fills it already holds, read so that no fill lands between them (fills,
  positions, fills again, until both fill reads agree). The book decides it in the
  transaction that writes it, once per connection whatever the processes; a feed asks the
  book once per connection, then remembers.
- `pull_async(name)`: the connection's fills not yet in the book, recorded and applied to its
  positions (`Book.record_fills` skips those recorded or adopted before, so nothing counts
  twice). A feed's first pull starts where the newest adoption read the broker (fills before
  it are in the adopted quantities), or at the beginning; later ones at the newest fill it
  has seen; both less `FILL_LOOKBACK`, for late reports and clock skew.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..errors import AdapterError

if TYPE_CHECKING:
    from ..adapters import Adapter
    from ..service import BrokerageService
    from .store import Book

__all__ = ["FILL_LOOKBACK", "OPENING_READS", "BrokerFeed"]

log = logging.getLogger("brokerkit.book")

#: How far before the newest fill already seen (or the adoption's read) a pull starts again.
FILL_LOOKBACK = timedelta(minutes=2)
#: Tries at reading a broker's positions with no fill landing meanwhile, for an opening.
OPENING_READS = 3

Db = Callable[..., Awaitable[Any]]


class BrokerFeed:
    """Opening positions and fills from the brokers of `brokerage` into `book`.

    `db(fn, *args, **kwargs)` runs a book call off the event loop (default
    `asyncio.to_thread`; the execution service passes its own book thread). Use on the
    runtime loop (the async methods of its owners run there)."""

    def __init__(self, book: Book, brokerage: BrokerageService, *, db: Db | None = None,
                 opens: bool | None = None) -> None:
        self.book, self.brokerage = book, brokerage
        self._db: Db = db or asyncio.to_thread
        #: open fresh connections from their brokers (default: `[book] open_from_brokers`)
        self.opens = brokerage.settings.book_open_from_brokers if opens is None else opens
        self._decided: set[str] = set()  # connections whose opening the book has settled
        self._locks: dict[str, asyncio.Lock] = {}
        self._seen: dict[str, datetime] = {}  # newest fill executed_at pulled, per connection
        self._ids: dict[str, set[str]] = {}  # fill ids this feed saw in the book, per connection

    def pending(self, name: str) -> bool:
        """True while `open_async([name])` may still have something to do."""
        return self.opens and name not in self._decided

    # -- opening ----------------------------------------------------------------------------
    async def open_async(self, names: Iterable[str]) -> dict[str, int]:
        """Open each trading connection of `names` that the book holds nothing of from its
        broker's positions (when `opens`); returns the positions adopted per connection opened
        here. A connection that cannot be read is logged and tried again next time."""
        todo = [n for n in dict.fromkeys(names) if self.pending(n)]
        if not todo:
            return {}
        results = await asyncio.gather(*(self._open(n) for n in todo), return_exceptions=True)
        opened: dict[str, int] = {}
        for name, res in zip(todo, results, strict=True):
            if isinstance(res, BaseException):
                if not isinstance(res, Exception):
                    raise res
                log.warning("opening the book of %s from its broker failed: %s", name, res)
            elif res is not None:
                opened[name] = res
        return opened

    async def _open(self, name: str) -> int | None:
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            if name in self._decided:
                return None
            try:
                trading = self.brokerage.adapter(name).capabilities.trading
            except Exception:  # unknown or unavailable: nothing to open now
                trading = True
            if not trading or not await self._db(self.book.opening_needed, name):
                self._decided.add(name)
                return None
            adapter = await self.brokerage.connected_adapter_async(name)
            positions, fill_ids, read_at = await asyncio.wait_for(
                self.read_broker_async(adapter), self.brokerage.call_timeout * OPENING_READS)
            written = await self._db(self.book.open_from_broker, name, positions,
                                     accounts=adapter.accounts, fill_ids=fill_ids,
                                     read_at=read_at)
            self._decided.add(name)
            if written is not None:
                log.info("opened the book of %s from its broker: %d positions", name, written)
            return written

    @staticmethod
    async def read_broker_async(adapter: Adapter) -> tuple[pd.DataFrame, list[str], datetime]:
        """A broker's positions, the ids of the fills inside them, and when the reading began:
        fills, positions, fills again, until both fill reads agree (no fill landed between)."""
        for _ in range(OPENING_READS):
            read_at = datetime.now(UTC)
            before = await adapter.fills_async()
            positions = await adapter.positions_async()
            after = await adapter.fills_async()
            ids = set(map(str, before["fill_id"]))
            if ids == set(map(str, after["fill_id"])):
                return positions, sorted(ids), read_at
        raise AdapterError(adapter.name, f"fills kept arriving while its positions were read "
                                         f"({OPENING_READS} tries); adopt again when it is quiet")

    # -- fills ------------------------------------------------------------------------------
    async def pull_async(self, name: str) -> int:
        """Pull `name`'s new fills into the book (opening it first when it is fresh); returns
        how many were new to the book."""
        if self.pending(name):
            await self.open_async([name])
        adapter = await self.brokerage.connected_adapter_async(name)
        since = self._seen.get(name)
        if since is None:
            since = await self._db(self.book.adopted_through, name)
        fills = await adapter.fills_async(None if since is None else since - FILL_LOOKBACK)
        seen = self._ids.setdefault(name, set())
        fresh = fills[~fills["fill_id"].isin(seen)] if seen else fills
        if not len(fresh):
            return 0
        new = int(await self._db(self.book.record_fills, fresh))
        seen.update(fresh["fill_id"])
        latest = fresh["executed_at"].max()
        if latest == latest:  # not NaT
            latest = latest.to_pydatetime()
            if name not in self._seen or latest > self._seen[name]:
                self._seen[name] = latest
        return new
