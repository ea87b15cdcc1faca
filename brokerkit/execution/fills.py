"""Fills reach the book: pulled from a connection shortly after one of its orders filled (one
pull for a burst), and drained before the service closes or the process exits.

A pull is `BrokerFeed.pull_async` (idempotent: fills already in the book, or inside an adopted
position, are skipped, so nothing is counted twice). Everything runs on the runtime loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..book.feed import BrokerFeed
    from ..service import BrokerageService

__all__ = ["FILL_DRAIN_TIMEOUT", "FILL_SYNC_DELAY", "FillSync"]

log = logging.getLogger("brokerkit.execution")

#: Seconds to wait after a fill before pulling the connection's fills into the book, so a
#: burst of orders costs one pull.
FILL_SYNC_DELAY = 1.0
#: Seconds `close()` and interpreter exit wait for the last fill pulls (they run at once, not
#: after FILL_SYNC_DELAY), so a script that places an order and ends leaves its fills in the book.
FILL_DRAIN_TIMEOUT = 10.0


class FillSync:
    """The fill pulls of one execution service."""

    def __init__(self, feed: BrokerFeed, brokerage: BrokerageService,
                 trading_connections: Callable[[], list[str]]) -> None:
        self._feed = feed
        self._brokerage = brokerage
        self._trading_connections = trading_connections
        self._tasks: dict[str, asyncio.Task[int]] = {}
        #: connections that acknowledged an order since their last fill pull
        self.unpulled: set[str] = set()
        self._drain = asyncio.Event()  # set: scheduled pulls run now (close, exit)

    def acknowledged(self, connection: str, filled: bool) -> None:
        """An order of `connection` was acknowledged: its fills are pulled before exit, and
        soon when it filled."""
        self.unpulled.add(connection)
        if filled:
            self.schedule(connection)

    def schedule(self, connection: str) -> None:
        """Pull `connection`'s fills after FILL_SYNC_DELAY unless a pull is pending."""
        task = self._tasks.get(connection)
        if task is None or task.done():
            self._tasks[connection] = asyncio.create_task(self._pull_later(connection))

    async def sync_async(self, connection: str | None = None) -> int:
        """Pull fills from trading connections into the book now; returns how many were new."""
        names = [connection] if connection else self._trading_connections()
        new = 0
        for name in names:
            self.unpulled.discard(name)  # an acknowledgement from now on wants another pull
            new += await self._feed.pull_async(name)
        return new

    async def drain_async(self, timeout: float = FILL_DRAIN_TIMEOUT) -> None:
        """Pull now the fills of every connection that acknowledged an order since its last
        pull (scheduled pulls skip their delay), waiting at most `timeout` seconds; what is
        not pulled by then is left to the next pull, from any process."""
        self._drain.set()
        for name in set(self.unpulled):
            self.schedule(name)
        pending = [t for t in self._tasks.values() if not t.done()]
        if not pending:
            return
        _done, late = await asyncio.wait(pending, timeout=timeout)
        for task in late:
            log.warning("pulling fills before closing took over %.0f s; the next pull will "
                        "bring them", timeout)
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    async def _pull_later(self, connection: str) -> int:
        if not self._drain.is_set():  # let a burst of fills arrive, then pull once
            try:
                await asyncio.wait_for(self._drain.wait(), FILL_SYNC_DELAY)
            except TimeoutError:
                pass
        if self._brokerage.health(connection).status == "disconnected":
            return 0  # closed meanwhile: the next service start pulls them
        try:
            return await self.sync_async(connection)
        except Exception as exc:  # retried on the next fill or by an explicit sync
            log.warning("pulling fills from %s failed: %s", connection, exc)
            return 0
