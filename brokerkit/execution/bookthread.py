"""`BookThread`: the one thread on which an `ExecutionService` talks to its book.

Calls run one at a time, in the order they were queued (FIFO): a write queued without waiting
(an order's acknowledgement) lands before any book call queued after it, so the service always
reads what it wrote. Handing a call over is a queue put (no executor bookkeeping), and the
thread keeps the book's pinned connection warm.

The thread is a daemon (it never holds the interpreter open), and at exit it is drained: what
was queued before exit is written, within `DRAIN_TIMEOUT` seconds.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import weakref
from collections.abc import Callable

__all__ = ["DRAIN_TIMEOUT", "BookThread"]

log = logging.getLogger("brokerkit.execution")

#: Seconds the exit handler waits for queued book writes.
DRAIN_TIMEOUT = 10.0

_STOP = object()
_live: weakref.WeakSet[BookThread] = weakref.WeakSet()


class BookThread:
    """A single worker thread taking `Callable[[], None]` jobs in order."""

    def __init__(self, name: str = "brokerkit-book") -> None:
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        _live.add(self)

    def submit(self, job: Callable[[], None]) -> None:
        """Queue `job`; raises RuntimeError once the thread is shut down. `job` must handle
        its own errors (one that escapes is logged, and the thread goes on)."""
        if self._closed:
            raise RuntimeError("the book thread is shut down")
        self._queue.put(job)

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        """Take no more jobs; those queued still run. With `wait`, until they have."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)
        if wait and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _main(self) -> None:
        get = self._queue.get
        while True:
            job = get()
            if job is _STOP:
                return
            try:
                job()  # type: ignore[operator]
            except BaseException:  # a job's own error handling failed: keep serving
                log.exception("a book call failed unexpectedly")


@atexit.register
def _drain() -> None:
    for thread in list(_live):
        thread.shutdown(wait=True, timeout=DRAIN_TIMEOUT)
