"""Rate limits shared across processes: one budget per broker credential, kept in the book.

A broker counts requests per credential (Alpaca: "200 requests per minute, per account",
alpaca.markets/support/usage-limit-api-calls), whichever process sends them. Two processes on
one key, each with its own `RateLimiter`, would together send twice the limit. Here every
process leases its slots from one shared log in the book (`rate_leases`, SQLite or
PostgreSQL), so all processes on a key together stay within its limit.

Key: `credential_key()`: the connection type and the first 16 hex digits of the SHA-256 of the
API key id (`alpaca:3f2a...`), never the key itself; a connection without credentials keys on
its endpoint's host and port (`ibkr@127.0.0.1:7497`). Limiters with one key share one budget.

Leases, not a write per request. A process takes a small batch of units (a lease) for one
window in one short transaction, and spends them locally (no I/O) until they run out or the
lease ends, `lease_s = min(LEASE_S, period / 10)` after it was granted. The log holds one row
per lease: `granted_at`, `until` (when the lease ends; once the lease is settled, its last
use) and `units` (granted; once settled, used). A lease is granted only while the units of
every row with `until >= now - period` plus the new ones stay within the limit, under a
per-key lock (PostgreSQL advisory lock; SQLite's write lock) and one clock (PostgreSQL's
`clock_timestamp()`; for SQLite, the host's wall clock: all its processes share the file and
the host). The bound this gives: the units used in any window of `period` seconds, across
all processes, never exceed the limit. (Every unit of a row is used within
[`granted_at`, `until`]; the latest lease of any window was granted after every other
lease used in it, and then counted all of them.) A process that dies holding a lease loses
nothing but capacity: its row counts in full until `until + period`, so the limit holds.
What it costs: a unit counts from its grant, not its use, so a saturated key runs at about
`limit / (period + spread)` where `spread` (at most `lease_s`, 1 s for a one-minute window)
is how long a lease takes to use up: >= 98% of the limit. Each process starts with leases of
one unit and doubles them while they run out before they end (at most a tenth of the limit,
so one process never holds another's share): a busy limiter does one transaction per batch
(benchmarks/shared_limit_bench.py: 0.13 per admission at Alpaca's 200/min), an idle one
one per request.

Windows shorter than `SHARE_MIN_PERIOD` (brokerkit's own per-second cap) stay per process.

When the book cannot be reached, a limiter falls back to its own in-process windows (logged
once, the book tried again after `RETRY_STORE_S`): orders then fail closed at the journal
anyway, while reads keep the per-process limit.

Why not a library: `limits` (PyPI) keeps its state in Redis, Memcached, MongoDB or etcd, none
of which a brokerkit user runs; `pyrate-limiter`'s SQLite and PostgreSQL buckets each open
their own driver connection (sqlite3 with a file lock, a psycopg pool) beside the book's
engine, create their own table outside Alembic, and write once per request. The leases here
run on the book's own engine and schema, and write once per batch.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .ratelimit import RateLimiter, Window

if TYPE_CHECKING:
    import sqlalchemy as sa

    from ..book import Book
    from ..secrets import Secret

__all__ = ["LEASE_S", "RETRY_STORE_S", "SHARE_MIN_PERIOD", "RateLimitStore", "SharedRateLimiter",
           "connection_key", "credential_key", "share_orders"]

log = logging.getLogger("brokerkit.execution.sharedlimit")

#: Longest lease (seconds); a window of `period` seconds leases for at most `period / 10`.
LEASE_S = 1.0
#: Windows shorter than this stay per process: brokerkit's own per-second order cap
#: (`max_orders_per_second`) is a safety cap for one process's bursts, not a broker's published
#: budget, and sharing it would cost a book transaction every few orders (its leases last a
#: tenth of its second). Brokers publish per-minute (or longer) budgets; those are shared.
SHARE_MIN_PERIOD = 10.0
#: Seconds a limiter keeps to its own windows after the book could not be reached.
RETRY_STORE_S = 30.0
#: Seconds added to a computed wait, so the row it waits for has left the window.
_EPS = 1e-3


def credential_key(connection_type: str, *, key_id: str | None = None,
                   endpoint: str | None = None, name: str = "") -> str:
    """The key of a broker credential: `type:` and the first 16 hex digits of the SHA-256 of
    `key_id`; without one, `type@host:port` of `endpoint` (a URL or `host:port`); without
    either, `type#name` (the connection's name: shared by the processes of one config)."""
    if key_id:
        return f"{connection_type}:{hashlib.sha256(key_id.encode()).hexdigest()[:16]}"
    if endpoint:
        parts = urlsplit(endpoint if "//" in endpoint else f"//{endpoint}")
        host = parts.hostname or "?"  # never the userinfo or path of a URL
        try:
            port = parts.port
        except ValueError:  # not a number: the host alone
            port = None
        return f"{connection_type}@{host}:{port}" if port else f"{connection_type}@{host}"
    return f"{connection_type}#{name}"


def connection_key(connection_type: str, name: str, options: Mapping[str, Any],
                   secrets: Mapping[str, Secret]) -> str:
    """`credential_key` of a configured connection: its `api_key` secret, else its `url`
    option, else its `host` and `port` options, else its name."""
    api_key = secrets.get("api_key")
    if api_key is not None:
        return credential_key(connection_type, key_id=api_key.reveal())
    url, host = options.get("url"), options.get("host")
    if isinstance(url, str) and url:
        return credential_key(connection_type, endpoint=url)
    if isinstance(host, str) and host:
        port = options.get("port")
        return credential_key(connection_type, endpoint=f"{host}:{port}" if port else host)
    return credential_key(connection_type, name=name)


def share_orders(limiter: RateLimiter, book: Book, connection_type: str, name: str,
                 options: Mapping[str, Any], secrets: Mapping[str, Secret]) -> RateLimiter:
    """The pipeline's order limiter of a connection as one budget per credential
    (`connection_key(...)` + `:orders`) for every process on `book`."""
    key = connection_key(connection_type, name, options, secrets)
    return RateLimitStore(book).share(limiter, f"{key}:orders")


def _scope(window: Window) -> str:
    """A window's identity within a key: its length and, when not 1 each, its weights."""
    if not window.weights and window.default_weight == 1:
        return f"{window.period:g}s"
    weights = ",".join(f"{op}={n}" for op, n in sorted(window.weights.items()))
    return f"{window.period:g}s[{weights};*={window.default_weight}]"


@dataclass(frozen=True, slots=True)
class _Ask:
    """Lease `want` units of a window, or none when fewer than `need` are free."""

    scope: str
    limit: int
    period: float
    lease_s: float
    need: int
    want: int


@dataclass(frozen=True, slots=True)
class _Settle:
    """A lease that is over: `used` units, the last `age` seconds before the transaction."""

    row: int
    used: int
    age: float


@dataclass(frozen=True, slots=True)
class _Grant:
    row: int | None  # None: refused
    units: int
    wait: float  # refused: seconds until `need` units are free


class RateLimitStore:
    """The shared lease log of one book (`rate_leases`). Give it the `Book`, or the book's
    URL to open it when first needed (how the brokerage service hands it to adapters)."""

    def __init__(self, book: Book | str) -> None:
        self._book: Book | None = None if isinstance(book, str) else book
        self._url = book if isinstance(book, str) else None
        self._open = threading.Lock()
        self.owner = f"{socket.gethostname()}:{os.getpid()}"

    def __repr__(self) -> str:
        return f"RateLimitStore({self.book.url if self._book else '(not opened)'})"

    @property
    def book(self) -> Book:
        if self._book is None:
            with self._open:
                if self._book is None:
                    from ..book import open_book

                    self._book = open_book(self._url)
        return self._book

    def share(self, limiter: RateLimiter, key: str, *,
              min_period: float = SHARE_MIN_PERIOD) -> RateLimiter:
        """`limiter`'s windows of `min_period` seconds or longer as one budget for every
        process and limiter on `key`, its shorter ones per process (a limiter without windows
        is returned as it is: nothing to share)."""
        if limiter.unlimited:
            return limiter
        return SharedRateLimiter(limiter.windows, name=limiter.name, clock=limiter.clock,
                                 sleep=limiter.sleep, key=key, store=self,
                                 min_period=min_period)

    def lease(self, key: str, asks: Sequence[_Ask], settles: Sequence[_Settle]
              ) -> list[_Grant]:
        """One transaction: record the `settles`, then grant or refuse each ask."""
        import sqlalchemy as sa

        from ..book.tables import rate_leases as t

        with self.book.begin(lock=f"rate_leases:{key}") as conn:
            now = self._now(conn)
            for s in settles:
                row = t.c.id == s.row
                if s.used:
                    conn.execute(sa.update(t).where(row).values(units=s.used,
                                                                until=now - s.age))
                else:
                    conn.execute(sa.delete(t).where(row))
            return [self._grant(conn, t, key, ask, now) for ask in asks]

    def _grant(self, conn: sa.Connection, t: sa.Table, key: str, ask: _Ask, now: float
               ) -> _Grant:
        import sqlalchemy as sa

        mine = (t.c.key == key) & (t.c.scope == ask.scope)
        conn.execute(sa.delete(t).where(mine & (t.c.until < now - ask.period)))
        rows = conn.execute(sa.select(t.c.until, t.c.units).where(mine)
                            .order_by(t.c.until)).all()
        free = ask.limit - sum(units for _, units in rows)
        if free >= ask.need:
            units = min(ask.want, free)
            result = conn.execute(sa.insert(t).values(
                key=key, scope=ask.scope, granted_at=now, until=now + ask.lease_s,
                units=units, owner=self.owner))
            return _Grant(int(result.inserted_primary_key[0]), units, 0.0)
        excess = ask.need - free
        for until, units in rows:  # oldest first: the wait until enough of them leave
            excess -= units
            if excess <= 0:
                return _Grant(None, 0, max(_EPS, until + ask.period - now + _EPS))
        return _Grant(None, 0, ask.period)  # unreachable: need never exceeds the limit

    @staticmethod
    def _now(conn: sa.Connection) -> float:
        """The shared clock, read after the lock: PostgreSQL's; SQLite's host's."""
        if conn.dialect.name == "postgresql":
            import sqlalchemy as sa

            return float(conn.execute(sa.text(
                "SELECT EXTRACT(EPOCH FROM clock_timestamp())")).scalar_one())
        return time.time()


@dataclass(slots=True)
class _Lease:
    row: int
    units: int
    deadline: float  # local monotonic; no use at or after it
    used: int = 0
    last_use: float = -math.inf


@dataclass(slots=True)
class _Shared:
    """One window's leases in this limiter."""

    window: Window
    scope: str
    lease_s: float
    leases: list[_Lease] = field(default_factory=list)
    over: list[_Lease] = field(default_factory=list)  # ended, to settle
    batch: int = 1
    retry_at: float = -math.inf  # after a refusal: when to ask the book again
    free_at: float = -math.inf  # after a refusal: when the book's leases leave the window

    @property
    def max_batch(self) -> int:
        return max(1, self.window.limit // 10)

    def room(self, now: float) -> int:
        """Units left in the live leases; ends the leases that are over."""
        live = []
        for lease in self.leases:
            if lease.deadline <= now or lease.used >= lease.units:
                self.over.append(lease)
                if lease.used >= lease.units and lease.last_use < lease.deadline:
                    self.batch = min(self.max_batch, self.batch * 2)  # used up in time
                else:
                    self.batch = max(1, lease.used)
            else:
                live.append(lease)
        self.leases = live
        return sum(lease.units - lease.used for lease in live)

    def take(self, now: float, units: int) -> None:
        for lease in sorted(self.leases, key=lambda le: le.deadline):
            n = min(units, lease.units - lease.used)
            lease.used += n
            lease.last_use = now
            units -= n
            if not units:
                return


@dataclass(eq=False)
class SharedRateLimiter(RateLimiter):
    """A `RateLimiter` whose windows are one budget for every limiter on `key`, in every
    process on the book of `store` (see the module docstring). Same API: `try_acquire`,
    `acquire`, `wait_time`; the inherited in-process windows serve while the book is down.
    """

    key: str = ""
    store: RateLimitStore | None = None
    min_period: float = SHARE_MIN_PERIOD  # shorter windows stay per process
    _shared: tuple[_Shared | None, ...] = field(init=False, repr=False)  # None: per process
    _leasing: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)
    _down_until: float = field(init=False, repr=False, default=-math.inf)

    def __post_init__(self) -> None:
        RateLimiter.__post_init__(self)
        if self.store is None or not self.key:
            raise ValueError("a shared rate limiter needs a key and a store")
        self._shared = tuple(_Shared(w, _scope(w), min(LEASE_S, w.period / 10))
                             if w.period >= self.min_period else None for w in self.windows)

    def __str__(self) -> str:
        return f"{RateLimiter.__str__(self)} (shared by {self.key})"

    @property
    def _leased(self) -> tuple[_Shared, ...]:
        """The windows shared through the book."""
        return tuple(s for s in self._shared if s is not None)

    def try_acquire(self, cost: int = 1, *, operation: str = "submit") -> bool:
        return self._admit(self._units(cost, operation), take=True) == 0.0

    async def acquire(self, cost: int = 1, *, operation: str = "submit") -> None:
        units = self._units(cost, operation)
        while True:
            with self._lock:
                wait = None if self._store_down() else self._local(self.clock(), units,
                                                                    take=True)
            if wait is None:  # the leases fall short: ask the book, off the event loop
                wait = await asyncio.to_thread(self._admit, units, True)
            if wait == 0.0:
                return
            await self.sleep(wait)

    def wait_time(self, cost: int = 1, *, operation: str = "submit") -> float:
        """Seconds until `try_acquire(cost)` would succeed; 0 when it would now. May lease
        units for this process (the next acquire spends them), never spends any."""
        return self._admit(self._units(cost, operation), take=False)

    def close(self) -> None:
        """End this limiter's leases and settle them: their unused units go back at once."""
        with self._lock:
            now = self.clock()
            for s in self._leased:
                for lease in s.leases:
                    lease.deadline = min(lease.deadline, now)
                s.room(now)
        self._admit((0,) * len(self._shared), take=False, settle=True)

    # -- internals -------------------------------------------------------------------------
    def _store_down(self) -> bool:
        return self.clock() < self._down_until

    def _local(self, now: float, units: tuple[int, ...], *, take: bool) -> float | None:
        """0.0 when the live leases hold `units` (spent when `take`); the seconds to wait
        when the book refused lately; None when the book must be asked. Under `_lock`."""
        short = False
        wait = own = 0.0
        for s, log, n in zip(self._shared, self._logs, units, strict=True):
            if not n:
                continue
            if s is None:  # a per-process window
                log.expire(now)
                own = max(own, log.wait(now, n))
            elif s.room(now) < n:
                short = True
                wait = max(wait, s.retry_at - now)
        if own > 0.0:
            return own
        if short:
            return wait if wait > 0.0 else None
        if take:
            for s, log, n in zip(self._shared, self._logs, units, strict=True):
                if not n:
                    continue
                if s is None:
                    log.entries.append((now, n))
                    log.total += n
                else:
                    s.take(now, n)
        return 0.0

    def _admit(self, units: tuple[int, ...], take: bool, settle: bool = False) -> float:
        """Admit from the live leases, leasing more from the book when they fall short (and
        settling, in the same transaction, the leases that are over; `settle`: now in any
        case); returns 0.0 (admitted, or would be) or the seconds to wait. Blocks on the
        book."""
        if self._store_down():
            return self._fallback(units, take)
        with self._leasing:  # one transaction at a time per limiter; waiters then re-check
            with self._lock:
                start = self.clock()
                wait = self._local(start, units, take=take)
                settles = [_Settle(le.row, le.used, max(0.0, start - le.last_use))
                           for s in self._leased for le in s.over]
                if wait is not None and not (settle and settles):
                    return wait if take or wait == 0.0 else self._estimate(start, units)
                asks, lacking = [], []
                for s, n in zip(self._shared, units, strict=True):
                    if s is None:
                        continue
                    more = n - s.room(start)
                    if n and more > 0 and s.retry_at <= start:
                        asks.append(_Ask(s.scope, s.window.limit, s.window.period,
                                         s.lease_s, more,
                                         min(s.window.limit, max(more, s.batch))))
                        lacking.append(s)
                for s in self._leased:
                    s.over = []
            assert self.store is not None
            try:
                grants = self.store.lease(self.key, asks, settles)
            except Exception as exc:
                self._down_until = self.clock() + RETRY_STORE_S
                log.warning("rate limit %s: the book cannot be reached (%s); this process "
                            "keeps to its own windows for %g s", self.key,
                            type(exc).__name__, RETRY_STORE_S)
                return self._fallback(units, take)
            with self._lock:
                for s, grant in zip(lacking, grants, strict=True):
                    if grant.row is None:  # asked again by then at the latest, for
                        # the units other processes settle or give back before they leave
                        s.retry_at = start + min(grant.wait, s.lease_s)
                        s.free_at = start + grant.wait
                    else:
                        s.leases.append(_Lease(grant.row, grant.units, start + s.lease_s))
                        s.retry_at = -math.inf
                now = self.clock()
                wait = self._local(now, units, take=take)
                wait = _EPS if wait is None else wait
                return wait if take or wait == 0.0 else self._estimate(now, units)

    def _estimate(self, now: float, units: tuple[int, ...]) -> float:
        """Seconds until the windows short of `units` have room, as the book last said (less
        when other processes give units back early). Under `_lock`."""
        return max([_EPS, *(max(s.free_at, s.retry_at) - now
                            for s, n in zip(self._shared, units, strict=True)
                            if s is not None and n and s.room(now) < n),
                    *(log.wait(now, n) for s, log, n in zip(self._shared, self._logs, units,
                                                            strict=True) if s is None and n)])

    def _fallback(self, units: tuple[int, ...], take: bool) -> float:
        """The in-process windows (while the book is down): 0.0 or the seconds to wait."""
        with self._lock:
            now = self.clock()
            if take:
                return self._take(now, units)
            waits = [0.0]
            for window_log, n in zip(self._logs, units, strict=True):
                window_log.expire(now)
                if n:
                    waits.append(window_log.wait(now, n))
            return max(waits)
