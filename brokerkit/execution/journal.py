"""How the execution service talks to its book: one book thread, and journal updates that
never wait on the critical path.

- `db(fn, ...)` runs a book call on the service's own `BookThread` (FIFO, its pinned
  connection kept warm) and hands the answer to the awaiting coroutine.
- `journal(row, guard)` writes an order to the journal, the trading state re-read in the same
  transaction. On SQLite it is first tried right here on the runtime loop without waiting
  (about a tenth of a millisecond); when another writer holds the lock it goes to the book
  thread, which waits. PostgreSQL writes always go to the book thread.
- `queue(coid, fields)` records a submit transition (SENT, UNCERTAIN, the broker's answer)
  after the answer, off the critical path: it rides along the next journal write (same
  transaction), or any other book call, or is written on its own after `ACK_FLUSH_DELAY`; so
  every later book call of this service sees it, and `flush` waits for it. It is written with
  `Book.record_acks`: only on rows still JOURNALED, SENT or UNCERTAIN, so a late transition
  never overwrites an answer recorded meanwhile (by recovery in another process, say). A
  crash before it lands leaves the row unresolved, and recovery looks the order up.

Everything but the book thread's own work runs on the runtime loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .bookthread import BookThread

if TYPE_CHECKING:
    from ..book import Book

__all__ = ["ACK_FLUSH_DELAY", "Journal"]

log = logging.getLogger("brokerkit.execution")
T = TypeVar("T")

#: Seconds a queued transition may wait for the next journal write to carry it to the book
#: before it is written on its own.
ACK_FLUSH_DELAY = 0.01

Update = tuple[str, dict[str, Any]]


class Journal:
    """The book access of one execution service (see the module doc)."""

    def __init__(self, book: Book) -> None:
        self.book = book
        self.thread = BookThread()
        #: transitions waiting for the book (runtime loop only)
        self.pending: list[Update] = []
        self._timer: asyncio.TimerHandle | None = None
        self._since: float | None = None  # when the oldest of them was queued

    # -- book calls -----------------------------------------------------------------------
    def db(self, fn: Callable[..., T], /, *args: Any, _flush: bool = True, **kwargs: Any
           ) -> asyncio.Future[T]:
        """Run a book call on the book thread: off the event loop, and always on the same
        thread. The thread takes calls in order (FIFO), and transitions waiting for the book
        are queued first, so a call sees every write this service made before it. The answer
        is handed straight to the awaiting future (one wake-up of the loop)."""
        if _flush:
            self.flush_pending()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        ctx = contextvars.copy_context()  # the acting user (book.acting_as) goes along

        def job() -> None:
            try:
                result = ctx.run(fn, *args, **kwargs)
            except BaseException as exc:  # handed to the awaiting task
                _settle_soon(loop, fut, None, exc)
            else:
                _settle_soon(loop, fut, result, None)

        self.thread.submit(job)
        return fut

    def later(self, fn: Callable[[], Any]) -> None:
        """Queue a book call on the book thread without waiting for it (errors logged)."""
        def job() -> None:
            try:
                fn()
            except Exception as exc:
                log.warning("book call %s failed: %s", getattr(fn, "__name__", fn), exc)

        self.thread.submit(job)

    async def journal(self, row: dict[str, Any], guard: Callable[[Any], str | None]) -> None:
        """Write the order to the journal, the trading state re-read in the same
        transaction; transitions waiting for the book ride along (one commit). Raises as
        `Book.journal_order`."""
        if self._timer is not None:  # they go now: no separate write later
            self._timer.cancel()
            self._timer = None
        if self.book.writes_nowait and self._journal_now(row, guard):
            return
        await self.db(self.book.journal_order, row, guard, acks=self._take(), _flush=False)

    def _journal_now(self, row: dict[str, Any], guard: Callable[[Any], str | None]) -> bool:
        """The SQLite journal write that never waits; False when another writer holds the
        lock (nothing was written, and the transitions wait on)."""
        from ..book import BookBusy

        acks = self._take()
        ctx = contextvars.copy_context()  # as on the book thread: a copy of the context
        try:
            ctx.run(self.book.journal_order, row, guard, acks=acks, nowait=True)
        except BookBusy:
            self.pending[:0] = acks  # back in front, in their order
            if acks and self._since is None:
                self._since = time.monotonic()
            return False
        if self.book.checkpoint_due():
            self.later(self.book.checkpoint)
        return True

    # -- transitions ----------------------------------------------------------------------
    def queue(self, coid: str, fields: dict[str, Any]) -> None:
        """Record `fields` on the journal row of `coid` soon (see the module doc)."""
        if not self.pending:
            self._since = time.monotonic()
        self.pending.append((coid, fields))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(ACK_FLUSH_DELAY, self._due)

    def flush_pending(self) -> None:
        """Queue the waiting transitions as one write on the book thread. If it fails, the
        orders stay unresolved in the journal and recovery settles them by lookup at the
        broker, never by sending again."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        acks = self._take()
        if not acks:
            return
        ctx = contextvars.copy_context()
        book = self.book

        def job() -> None:
            try:
                ctx.run(book.record_acks, acks)
            except Exception as exc:
                log.error("recording %d journal updates failed: %s; the orders stay "
                          "unresolved until recovery looks them up", len(acks), exc)

        try:
            self.thread.submit(job)
        except RuntimeError as exc:  # the service was closed under these orders
            log.error("%d journal updates not recorded (%s); recovery will look the orders "
                      "up", len(acks), exc)

    async def flush(self) -> None:
        """Wait until every book write queued so far has landed."""
        await self.db(int)  # FIFO: behind every write queued so far, transitions too

    def _take(self) -> list[Update]:
        acks, self.pending, self._since = self.pending, [], None
        return acks

    def _due(self) -> None:
        """The timer: what has waited ACK_FLUSH_DELAY for a journal write to carry it is
        written on its own; while orders keep coming each journal write carries what waits,
        and the timer only waits again (no write of its own to collide with theirs)."""
        self._timer = None
        if self._since is None:
            return
        left = self._since + ACK_FLUSH_DELAY - time.monotonic()
        if left > 0:
            self._timer = asyncio.get_running_loop().call_later(left, self._due)
        else:
            self.flush_pending()

    def shutdown(self) -> None:
        """Write what waits, and stop the book thread once it has."""
        self.flush_pending()
        self.thread.shutdown(wait=True)


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.cancelled():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


def _settle_soon(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Any], result: Any,
                 exc: BaseException | None) -> None:
    try:
        loop.call_soon_threadsafe(_settle, fut, result, exc)
    except RuntimeError:  # the loop is closed: nobody waits any more
        pass
