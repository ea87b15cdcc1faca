"""The send gate: once a trading-state change commits, no order reaches a broker that was
journaled under the state before it.

The journal refuses an order when it reads a state that forbids it, in the same transaction
that writes the row (`Book.journal_order`). That leaves one window: an order journaled just
before a halt commits is still sent after it. The gate closes it for every process on this
machine that shares the book:

- a sender reads the gate's *generation* before its journal transaction reads the state, and
  sends holding the gate shared (`sending(expect)`): if the generation moved meanwhile, the
  state changed under it and nothing is sent (`TradingStateChanged`);
- a state change is made holding the gate exclusively (`changing()`): it first marks itself
  pending (new sends wait, so a stream of orders cannot starve it), waits for the sends in
  progress (at most a submit's timeout), commits, bumps the generation, and lets the waiting
  sends through, which then see the new generation. A change that dies while pending holds
  sends back for at most `CHANGE_WAIT` seconds.

So every send either completes before the change commits, or sees it. The gate is an
`flock`ed file beside a SQLite book (for another database, under the user data directory,
named after the book's URL); processes on other machines sharing a PostgreSQL book are not
covered by it: for them the halt's sweep waits for and cancels the orders in flight
(`killswitch`). Where `fcntl` is missing (Windows) the gate covers this process only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import BrokerkitError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from ..book import Book

__all__ = ["CHANGE_WAIT", "SendGate", "TradingStateChanged"]

#: Seconds a state change waits for the sends in progress (longer than a submit may take).
CHANGE_WAIT = 30.0
_POLL = 0.002


class TradingStateChanged(BrokerkitError):
    """The trading state changed between an order's journal and its send: nothing was sent."""


class SendGate:
    """A cross-process reader/writer gate with a generation counter (see the module doc)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._holders = 0
        self._lock = threading.Lock()  # the shared hold is this process's, counted
        self._local = threading.Lock()  # changes from this process, one at a time

    def __repr__(self) -> str:
        return f"<SendGate {self.path}>"

    @classmethod
    def for_book(cls, book: Book) -> SendGate:
        """The gate of `book` (one per process and book): beside its SQLite file, else under
        the user data directory, named after the book's URL."""
        url = book.engine.url
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            path = Path(f"{url.database}.sendgate")
        else:
            from ..config import user_data_dir

            name = hashlib.sha256(url.render_as_string(hide_password=True).encode())
            path = user_data_dir() / "sendgates" / name.hexdigest()[:24]
        with _GATES_LOCK:
            gate = _GATES.get(path)
            if gate is None:
                gate = _GATES[path] = cls(path)
            return gate

    def generation(self) -> int:
        """How many state changes this gate has seen (read before the journal's state)."""
        raw = os.pread(self._fd, 8, 0)
        return int.from_bytes(raw, "little") if len(raw) == 8 else 0

    def _pending(self) -> bool:
        """Whether a state change is waiting for the gate (its mark not yet expired)."""
        raw = os.pread(self._fd, 8, 8)
        return len(raw) == 8 and struct.unpack("<d", raw)[0] > time.time()

    @contextlib.asynccontextmanager
    async def sending(self, expect: int) -> AsyncIterator[None]:
        """Hold the gate shared while an order is sent; `TradingStateChanged`, sending
        nothing, when the generation is no longer `expect`."""
        while not self._share():
            await asyncio.sleep(_POLL)  # a change holds it: wait for its commit
        try:
            if self.generation() != expect:
                raise TradingStateChanged(
                    "the trading state changed after the order was journaled and before it "
                    "was sent: nothing was sent")
            yield
        finally:
            self._unshare()

    @contextlib.contextmanager
    def changing(self, timeout: float = CHANGE_WAIT) -> Iterator[None]:
        """Hold the gate exclusively around a state change (blocking: run it off the event
        loop); the generation is bumped when the block ends, committed or not (a send
        journaled before it is refused either way: the safe side)."""
        with self._local:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.pwrite(fd, struct.pack("<d", time.time() + timeout), 8)  # new sends wait
            try:
                self._exclusive(fd, timeout)
                try:
                    yield
                finally:  # committed or not, the sends journaled before it are refused
                    os.pwrite(fd, (self.generation() + 1).to_bytes(8, "little"), 0)
                    if fcntl is not None:
                        fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.pwrite(fd, struct.pack("<d", 0.0), 8)
                os.close(fd)

    def _exclusive(self, fd: int, timeout: float) -> None:
        if fcntl is None:
            return
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"orders were still being sent after {timeout:g} s "
                                       f"({self.path})") from None
                time.sleep(_POLL)

    def _share(self) -> bool:
        if self._pending():
            return False
        with self._lock:
            if self._holders == 0 and fcntl is not None:
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    return False
            elif self._holders == 0 and self._local.locked():
                return False  # no fcntl: this process's own change holds it
            self._holders += 1
            return True

    def _unshare(self) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0 and fcntl is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)


_GATES: dict[Path, SendGate] = {}
_GATES_LOCK = threading.Lock()
