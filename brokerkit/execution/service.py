"""The order pipeline: no order reaches a broker without passing it.

`ExecutionService.place_order(intent)`:

1. **validate** the intent (a dict, keywords or an `OrderIntent`): bad input is REJECTED with
   `INVALID_INTENT` naming the field; nothing is journaled.
2. **route** it: explicit connection, else the account's connection, else the asset-class
   default; read-only connections never route; none is REJECTED `NO_ROUTE`.
3. run **every pre-trade check** (`risk.run_checks`) against cached broker state (positions,
   buying power, instrument facts, quotes), the trading state and the rate limiter, and report
   every violation.
4. **journal** it with a client order id, re-reading the trading state in the same transaction
   (a halt committed by any process a microsecond earlier rejects it).
5. **submit** it. A submit is never retried: after a timeout or a dropped connection,
   `lookup(client_order_id)` decides whether the broker has it.
6. **record** the acknowledgement (fills are pulled into the book in the background) and
   answer with an `OrderResult`: FILLED, PARTIALLY_FILLED, ACCEPTED, REJECTED or ERROR.

Broker state used by the checks is cached per connection (positions and balances for a few
seconds, adjusted by the service's own fills in between; instrument facts for longer); when
all of it is fresh the checks run without a single await. So the pipeline's own cost per order
is local work plus one journal write:

- On SQLite the journal write is tried on the runtime loop itself, without waiting (busy
  timeout 0, no WAL checkpoint: about a tenth of a millisecond, like the checks); if another
  writer holds the lock nothing was written and the write goes to the book thread, which
  waits. PostgreSQL writes always go to the book thread. Either way the statements are
  prepared once, on a pinned connection (`Book.journal_order`).
- A caller that waits (`place_order`, not `place_order_async`) on a thread that may block,
  with every input of the checks cached, on SQLite, to a connection whose SDK is synchronous
  (`Adapter.submits_here`: Alpaca) has its order checked, journaled and sent on its own
  thread, like a bare SDK call: no hand-over to the runtime loop and a worker thread and back
  (each costs about 0.1 ms, as much as the checks and the journal together). What it shares
  with the loop (acknowledgements waiting for the book, cached positions and buying power) is
  touched under one lock; after the journal write, anything that must wait or went wrong
  continues on the loop from where it stands.
- The acknowledgement is recorded after the answer, off the critical path: it rides along the
  next journal write (same transaction), or any other book call of this service, or is
  written on its own after `ACK_FLUSH_DELAY`; so every later book call of this service sees it,
  and `flush()` waits for it. A crash before it lands leaves the row JOURNALED, and recovery
  settles it by lookup at the broker (never by sending again; fills are pulled by fill id).
  A late acknowledgement never overwrites an answer recovery recorded meanwhile
  (`Book.record_ack`).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import threading
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from .. import runtime
from ..adapters import Adapter, BrokerOrder
from ..book.feed import BrokerFeed
from ..errors import AdapterError, InvalidIntent, SubmitUncertain
from ..model import AssetClass, OrderIntent, OrderResult, OrderStatus, Side, Violation
from .bookthread import BookThread
from .killswitch import KillSwitch, StateView
from .limits import RiskLimits
from .ratelimit import RateLimiter, limiter_for
from .risk import CheckContext, DuplicateDetector, InstrumentFacts, intent_fingerprint, run_checks
from .routing import Route, RouteTarget, RoutingTable, route

if TYPE_CHECKING:

    from ..book import Book
    from ..service import BrokerageService

__all__ = ["ExecutionService", "Preview", "get_execution_service", "new_client_order_id",
           "reset_execution_service"]

log = logging.getLogger("brokerkit.execution")
T = TypeVar("T")

#: Seconds cached positions and balances stay fresh (own fills adjust them in between).
STATE_TTL = 5.0
#: Seconds a cached quote is used as is; up to QUOTE_STALE it is used while a fresh one is
#: fetched in the background; older, the order waits for a fresh quote.
QUOTE_TTL = 1.0
QUOTE_STALE = 5.0
#: Seconds cached instrument facts and market hours stay fresh.
FACTS_TTL = 600.0
HOURS_TTL = 30.0
#: Seconds the trading state read for the checks is reused (the journal always re-reads it).
STATE_CHECK_TTL = 0.5
#: Seconds a submit may take before its outcome is looked up instead.
SUBMIT_TIMEOUT = 15.0
#: Waits between lookups of an order whose submit outcome is unknown.
LOOKUP_BACKOFF = (0.2, 0.5, 1.0, 2.0)
#: Seconds to wait after a fill before pulling the connection's fills into the book, so a
#: burst of orders costs one pull.
FILL_SYNC_DELAY = 1.0
#: Seconds `close()` and interpreter exit wait for the last fill pulls (they run at once, not
#: after FILL_SYNC_DELAY), so a script that places an order and ends leaves its fills in the book.
FILL_DRAIN_TIMEOUT = 10.0
#: Journal rows younger than this are left to the process that is sending them.
RECOVER_MIN_AGE = 10.0
#: Seconds an acknowledgement may wait for the next journal write to carry it to the book
#: before it is written on its own.
ACK_FLUSH_DELAY = 0.01


def new_client_order_id() -> str:
    """A fresh client order id: `bk-` and 24 hex digits (unique, safe at every broker)."""
    return f"bk-{uuid.uuid4().hex[:24]}"


def _d(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else Decimal(repr(f))


@dataclass(frozen=True)
class Preview(Mapping[str, Any]):
    """What `place_order` would do, without sending anything: the route, every check's
    verdict, and the order's estimated size and effect on buying power."""

    ok: bool
    connection: str | None
    account: str | None
    symbol: str
    side: str
    asset_class: str | None
    violations: tuple[Violation, ...] = ()
    checks_passed: tuple[str, ...] = ()
    price: float | None = None
    quantity: float | None = None
    notional: float | None = None
    currency: str | None = None
    buying_power: float | None = None
    buying_power_after: float | None = None
    trading_state: str = "ACTIVE"
    reason: str = ""

    def __getitem__(self, key: str) -> Any:
        if key == "violations":
            return [v.to_dict() for v in self.violations]
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.__dataclass_fields__)

    def __len__(self) -> int:
        return len(self.__dataclass_fields__)


@dataclass
class _Cache:
    """Cached broker state for one connection."""

    positions: dict[tuple[str, str], Decimal] | None = None  # (account, instrument) -> qty
    balances: dict[str, list[tuple[str, float]]] | None = None  # account -> (ccy, bp)
    exposure: Decimal | None = None  # gross |market value| in the base currency (all brokers)
    state_at: float = -math.inf
    account_types: dict[str, str] | None = None
    facts: dict[str, tuple[float, dict[str, Any] | None]] = field(default_factory=dict)
    quotes: dict[str, tuple[float, dict[str, Any] | None]] = field(default_factory=dict)
    hours: dict[str, tuple[float, bool | None]] = field(default_factory=dict)
    refreshing: set[str] = field(default_factory=set)  # quotes being fetched in background
    #: own fills since the last refresh: (account, instrument) -> signed quantity
    deltas: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    spent: dict[str, Decimal] = field(default_factory=dict)  # account -> cash committed
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class _Order:
    """One order on its way through the pipeline."""

    intent: OrderIntent
    route: Route
    adapter: Adapter
    ctx: CheckContext
    instrument: str
    currency: str
    violations: list[Violation]
    fingerprint: str = ""  # of the intent at its connection and account (duplicate check)


class ExecutionService(runtime.Bridged):
    """The guarded order pipeline over a `BrokerageService` and a `Book`."""

    def __init__(self, brokerage: BrokerageService | None = None, book: Book | None = None
                 ) -> None:
        if brokerage is None:
            from ..service import get_brokerage_service

            brokerage = get_brokerage_service()
        self.brokerage = brokerage
        settings = brokerage.settings
        if book is None:
            from ..book import open_book

            book = open_book(settings.book_url)
        self.book = book
        self.limits = RiskLimits.from_settings(settings)
        self.routing = RoutingTable.from_settings(settings)
        self.killswitch = KillSwitch(book, brokerage)
        window = self.limits.for_order(None, None, None).duplicate_window_seconds
        self._duplicates = DuplicateDetector(window)
        self._limiters: dict[str, RateLimiter] = {}
        self._caches: dict[str, _Cache] = {}
        self._fill_syncs: dict[str, asyncio.Task[int]] = {}
        #: connections that acknowledged an order since their last fill pull (under _mutex)
        self._unpulled: set[str] = set()
        self._drain = asyncio.Event()  # set: scheduled fill pulls run now (close, exit)
        self._closed = False
        self._db_thread = BookThread()
        #: the fills of the service's connections reach the book through it, and a fresh
        #: book is opened from the brokers' positions before a connection's first order
        self._feed = BrokerFeed(book, brokerage, db=self._db)
        self._state_view: StateView | None = None
        self._state_at = -math.inf
        #: acknowledgements waiting for the book (touched on the runtime loop only): they ride
        #: along the next journal write, or any other book call, or go on their own after
        #: ACK_FLUSH_DELAY
        self._acks: list[tuple[str, dict[str, Any]]] = []
        self._ack_timer: asyncio.TimerHandle | None = None
        self._acks_since: float | None = None  # when the oldest of them was queued
        #: guards what `place_order`'s fast path (the caller's thread) shares with the loop:
        #: the acknowledgements waiting for the book, and the cached positions and buying
        #: power with the service's own fills since their last refresh. Held briefly, never
        #: across an await or a broker call.
        self._mutex = threading.RLock()
        #: the fast path's journal writes, one at a time: a caller's thread may wait its turn
        #: (a tenth of a millisecond) where the loop's no-wait write would find the book busy
        self._journal_turn = threading.Lock()
        _live.add(self)

    def __repr__(self) -> str:
        return f"<ExecutionService connections={self.brokerage.connections} book={self.book!r}>"

    # -- public API -------------------------------------------------------------------------
    async def place_order_async(self, intent: OrderIntent | Mapping[str, Any] | None = None,
                                /, **kwargs: Any) -> OrderResult:
        """Validate, route, check, journal, submit and record one order (see module doc)."""
        try:
            parsed = OrderIntent.of(intent, **kwargs)
        except InvalidIntent as exc:
            return await self._reject_invalid(intent, kwargs, exc)
        prepared = await self._prepare(parsed)
        if isinstance(prepared, OrderResult):
            return prepared
        if prepared.violations:
            return await self._reject(prepared)
        return await self._send(prepared)

    def place_order(self, intent: OrderIntent | Mapping[str, Any] | None = None, /,
                    **kwargs: Any) -> OrderResult:
        """`place_order_async` for a caller that waits. When the caller's thread may block
        (a script, a notebook cell, a worker thread), everything the checks read is cached and
        fresh, and the connection's SDK is synchronous (`Adapter.submits_here`), the order goes
        from this thread: the same checks, journal and submit, without handing it to the
        runtime loop, to a worker thread and back (each hand-over costs about 0.1 ms, as much
        as the checks and the journal together). Anything else, and every fault after the
        journal write, goes through the runtime loop."""
        if not runtime.in_runtime():
            done = self._place_here(intent, kwargs)
            if done is not None:
                return done
        return runtime.run(self.place_order_async(intent, **kwargs))

    async def preview_async(self, intent: OrderIntent | Mapping[str, Any] | None = None, /,
                            **kwargs: Any) -> Preview:
        """Everything `place_order` does except journaling and sending."""
        try:
            parsed = OrderIntent.of(intent, **kwargs)
        except InvalidIntent as exc:
            v = Violation("INVALID_INTENT", str(exc))
            raw = {**(intent if isinstance(intent, Mapping) else {}), **kwargs}
            return Preview(False, None, None, str(raw.get("symbol", "")),
                           str(raw.get("side", "")), None, (v,), reason=str(exc))
        prepared = await self._prepare(parsed, preview=True)
        if isinstance(prepared, OrderResult):
            return Preview(False, None, None, parsed.symbol, parsed.side.value,
                           None, prepared.violations, reason=prepared.reason,
                           trading_state=self.killswitch.state().state)
        ctx = prepared.ctx
        failed = {v.code for v in prepared.violations}
        from .risk import CHECKS

        passed = tuple(c.__name__.removeprefix("check_") for c in CHECKS
                       if c(ctx) is None) if not failed else ()
        after = None
        if ctx.buying_power is not None and ctx.notional is not None:
            after = ctx.buying_power - (ctx.notional if parsed.side is Side.BUY else 0)
        return Preview(
            ok=not prepared.violations, connection=prepared.route.connection,
            account=ctx.account, symbol=parsed.symbol, side=parsed.side.value,
            asset_class=ctx.asset_class.value, violations=tuple(prepared.violations),
            checks_passed=passed, price=_f(ctx.price), quantity=_f(ctx.quantity),
            notional=_f(ctx.notional), currency=prepared.currency,
            buying_power=_f(ctx.buying_power), buying_power_after=_f(after),
            trading_state=ctx.trading_state, reason=_reason(prepared.violations))

    def preview(self, intent: OrderIntent | Mapping[str, Any] | None = None, /,
                **kwargs: Any) -> Preview:
        return runtime.run(self.preview_async(intent, **kwargs))

    async def cancel_async(self, client_order_id: str) -> OrderResult:
        """Cancel a journaled order by its client order id (never blocked by the kill switch)."""
        row = await self._db(self.book.get_order, client_order_id)
        if row is None:
            return OrderResult(OrderStatus.ERROR, reason=f"no journaled order {client_order_id}",
                               client_order_id=client_order_id)
        adapter = await self.brokerage.connected_adapter_async(row["connection"])
        order_id = row["broker_order_id"]
        if not order_id:
            found = await adapter.lookup_async(client_order_id)
            if found is None:
                return OrderResult(OrderStatus.ERROR, client_order_id=client_order_id,
                                   reason="the broker has no such order to cancel")
            order_id = found.order_id
        ack = await adapter.cancel_async(str(order_id))
        await self._db(self.book.update_order, client_order_id,
                                status=ack.status.value, reason=ack.reason or "canceled")
        await self._db(self.book.audit, "cancel_order", client_order_id,
                                {"order_id": order_id}, ack.status.value)
        return _result(ack, row["connection"], row["account"], row["symbol"], row["side"],
                       _f(row["quantity"]))

    def cancel(self, client_order_id: str) -> OrderResult:
        return runtime.run(self.cancel_async(client_order_id))

    async def flush_async(self) -> None:
        """Wait until every book write queued so far has landed (acknowledgements are
        recorded on the book thread after `place_order` answers)."""
        await self._db(int)  # FIFO: behind every write queued so far, acknowledgements too

    def flush(self) -> None:
        runtime.run(self.flush_async())

    async def close_async(self) -> None:
        """Pull the fills still due (within FILL_DRAIN_TIMEOUT), finish the book writes, and
        stop the book thread (the brokerage stays open)."""
        await self.drain_fills_async()
        self._flush_acks()
        self._db_thread.shutdown(wait=True)
        self._closed = True

    async def drain_fills_async(self, timeout: float = FILL_DRAIN_TIMEOUT) -> None:
        """Pull now the fills of every connection that acknowledged an order since its last
        pull (scheduled pulls skip their delay), waiting at most `timeout` seconds; what is
        not pulled by then is left to the next pull, from any process."""
        self._drain.set()
        with self._mutex:
            names = set(self._unpulled)
        for name in names:
            self._schedule_fill_sync(name)
        pending = [t for t in self._fill_syncs.values() if not t.done()]
        if not pending:
            return
        _done, late = await asyncio.wait(pending, timeout=timeout)
        for task in late:
            log.warning("pulling fills before closing took over %.0f s; the next pull will "
                        "bring them", timeout)
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    def drain_fills(self, timeout: float = FILL_DRAIN_TIMEOUT) -> None:
        runtime.run(self.drain_fills_async(timeout))

    def close(self) -> None:
        runtime.run(self.close_async())

    def state(self) -> StateView:
        """The trading state in force (the kill switch)."""
        return self.killswitch.state()

    async def sync_fills_async(self, connection: str | None = None) -> int:
        """Pull fills from trading connections into the book; returns how many were new.
        Idempotent: fills already recorded (or inside an adopted position) are skipped, so
        nothing is ever counted twice. Only fills since the last one seen (less
        FILL_LOOKBACK) are asked for (`brokerkit.book.feed.BrokerFeed.pull_async`)."""
        names = [connection] if connection else self._trading_connections()
        new = 0
        for name in names:
            with self._mutex:  # an acknowledgement from now on wants another pull
                self._unpulled.discard(name)
            new += await self._feed.pull_async(name)
        return new

    def sync_fills(self, connection: str | None = None) -> int:
        return runtime.run(self.sync_fills_async(connection))

    async def recover_async(self, min_age: float = RECOVER_MIN_AGE) -> list[OrderResult]:
        """Resolve journal rows left JOURNALED, SENT or UNCERTAIN (a crash, a timeout) by
        looking each up at its broker by client order id; never by sending it again."""
        rows = await self._db(self.book.unresolved_orders)
        now = datetime.now(UTC)
        out: list[OrderResult] = []
        for row in rows:
            updated = row["updated_at"]
            if updated is not None and (now - _utc(updated)).total_seconds() < min_age:
                continue
            out.append(await self._recover_one(row))
        return out

    def recover(self, min_age: float = RECOVER_MIN_AGE) -> list[OrderResult]:
        return runtime.run(self.recover_async(min_age))

    # -- pipeline ---------------------------------------------------------------------------
    async def _prepare(self, intent: OrderIntent, preview: bool = False
                       ) -> _Order | OrderResult:
        """Route the intent and gather everything the checks need; run them."""
        targets = self._targets()
        chosen = route(intent, self.routing, targets)
        if isinstance(chosen, Violation):
            if preview:
                return OrderResult(OrderStatus.REJECTED, reason=_reason([chosen]),
                                   symbol=intent.symbol, violations=(chosen,))
            return await self._rejected_unrouted(intent, chosen)
        try:
            adapter = await self.brokerage.connected_adapter_async(chosen.connection)
        except AdapterError as exc:
            v = Violation("NO_ROUTE", f"{chosen.connection} is unavailable: {exc}")
            if preview:
                return OrderResult(OrderStatus.REJECTED, reason=_reason([v]),
                                   symbol=intent.symbol, violations=(v,))
            return await self._rejected_unrouted(intent, v)
        if self._feed.pending(chosen.connection):  # a fresh book opens before its first order
            await self._feed.open_async([chosen.connection])
        account = chosen.account or self._default_account(chosen.connection, adapter)
        cache = self._cache(chosen.connection)
        inputs = None if preview else self._inputs_now(cache, adapter, intent.symbol)
        if inputs is None:  # something to fetch: all of it at once
            inputs = await asyncio.gather(
                self._facts(cache, adapter, intent.symbol),
                self._quote(cache, adapter, intent.symbol),
                self._hours(cache, adapter, intent.symbol), self._state(cache, adapter),
                self._account_types(cache, adapter), self._trading_state(fresh=preview))
        ac, limits = self._order_limits(intent, chosen, inputs[0])
        exposure = await self._gross_exposure() if limits.max_gross_exposure else None
        return self._checked(intent, chosen, adapter, account, cache, tuple(inputs), ac, limits,
                             exposure)

    def _prepare_now(self, intent: OrderIntent) -> _Order | None:
        """`_prepare` from the caller's thread (`place_order`'s fast path): only when the
        order routes to a connected adapter that submits from the caller's thread and every
        input of the checks is cached and fresh; else None (nothing done)."""
        chosen = route(intent, self.routing, self._targets())
        if isinstance(chosen, Violation) or self._feed.pending(chosen.connection):
            return None
        try:
            adapter = self.brokerage.adapter(chosen.connection)
            if not adapter.submits_here or self.brokerage.health(
                    chosen.connection).status not in ("connected", "degraded"):
                return None
            account = chosen.account or self._default_account(chosen.connection, adapter)
        except AdapterError:
            return None
        cache = self._cache(chosen.connection)
        with self._mutex:
            inputs = self._inputs_now(cache, adapter, intent.symbol, here=True)
            if inputs is None:
                return None
            ac, limits = self._order_limits(intent, chosen, inputs[0])
            exposure = None
            if limits.max_gross_exposure:
                whole = self._cache("*")
                if time.monotonic() - whole.state_at >= STATE_TTL:
                    return None
                exposure = whole.exposure
            return self._checked(intent, chosen, adapter, account, cache, inputs, ac, limits,
                                 exposure)

    def _order_limits(self, intent: OrderIntent, chosen: Route,
                      facts_row: Mapping[str, Any] | None) -> tuple[AssetClass, Any]:
        """The order's asset class (the broker's facts win over the route's guess) and the
        risk limits that apply to it."""
        ac = chosen.asset_class
        if facts_row is not None:
            ac = intent.asset_class or AssetClass.parse(facts_row["asset_class"])
        return ac, self.limits.for_order(chosen.connection, ac, intent.symbol)

    def _checked(self, intent: OrderIntent, chosen: Route, adapter: Adapter, account: str,
                 cache: _Cache, inputs: tuple[Any, ...], ac: AssetClass, limits: Any,
                 exposure: Decimal | None) -> _Order:
        """Run every pre-trade check on the gathered inputs (no await, no I/O)."""
        facts_row, quote, hours, (positions, balances), types, state = inputs
        instrument = facts_row["instrument"] if facts_row else f"?:{intent.symbol}"
        currency = (facts_row or {}).get("currency") or intent.currency or "USD"
        limiter = self._limiter(chosen.connection, adapter)
        base = self.brokerage.base_currency
        try:
            fx = Decimal(repr(self.brokerage.fx.rate(currency, base)))
        except Exception:
            fx = None
        # only when duplicates are looked for (`duplicate_window_seconds` > 0)
        fingerprint = intent_fingerprint(intent, chosen.connection, account) \
            if self._duplicates.window else ""
        with self._mutex:  # the cached state and the own fills since, read together
            position = self._position(cache, positions, account, instrument)
            buying_power = self._buying_power(cache, balances, account, currency)
        ctx = CheckContext(
            intent=intent, connection=chosen.connection, account=account, asset_class=ac,
            limits=limits, trading_state=state.state, position=position,
            price=_price(quote), currency=currency, base_currency=base, fx_to_base=fx,
            gross_exposure=exposure, buying_power=buying_power,
            instrument=_facts(facts_row), market_open=hours, account_type=types.get(account),
            within_rate_limit=limiter.wait_time() == 0.0 or limits.on_rate_limit == "wait",
            rate_limit=str(limiter),
            duplicate=bool(fingerprint) and self._duplicates.seen(fingerprint),
        )
        violations = [_with_state(v, state) for v in run_checks(ctx)]
        violations += adapter.check_intent(intent, facts_row)
        return _Order(intent, chosen, adapter, ctx, instrument, currency, violations,
                      fingerprint)

    async def _send(self, order: _Order) -> OrderResult:
        from ..book import DuplicateClientOrderId, TradingBlocked

        coid, sent, row = self._journal_row(order)
        try:
            await self._journal(row, self._guard(order.ctx))
        except (TradingBlocked, DuplicateClientOrderId) as exc:
            return await self._journal_refused(order, coid, exc)
        return await self._dispatch(order, coid, sent)

    def _place_here(self, intent: OrderIntent | Mapping[str, Any] | None,
                    kwargs: Mapping[str, Any]) -> OrderResult | None:
        """`place_order` on the caller's thread (see there); None when it must go through the
        runtime loop instead, and then nothing was journaled or sent. Once the order is
        journaled it is never handed back: a refusal, a full rate limit, a submit that must
        wait or fails goes on through the loop's same steps from where it stands."""
        from ..book import DuplicateClientOrderId, TradingBlocked

        if not self.book.writes_nowait:  # PostgreSQL: the journal is a network round trip
            return None
        try:
            parsed = OrderIntent.of(intent, **kwargs)
        except InvalidIntent:  # worded and audited by the loop's path
            return None
        order = self._prepare_now(parsed)
        if order is None or order.violations:
            return None
        limiter = self._limiter(order.ctx.connection, order.adapter)
        if limiter.wait_time() > 0.0:
            return None
        coid, sent, row = self._journal_row(order)
        try:
            with self._journal_turn:  # callers on several threads take turns, not the loop
                written = self._journal_now(row, self._guard(order.ctx))
            if not written:
                return None  # another writer holds the lock: nothing written
        except (TradingBlocked, DuplicateClientOrderId) as exc:
            return runtime.run(self._journal_refused(order, coid, exc))
        if not limiter.try_acquire():  # taken meanwhile by another thread
            return runtime.run(self._dispatch(order, coid, sent))
        self._duplicates.remember(order.fingerprint)
        sent_at = datetime.now(UTC)
        try:
            ack = order.adapter.submit_here(sent, coid)
        except (SubmitUncertain, TimeoutError, ConnectionError, AdapterError, OSError) as exc:
            return runtime.run(self._uncertain(order, coid, sent_at, exc))
        except BaseException as exc:  # interrupted (Ctrl-C in a notebook) with the order out:
            runtime.spawn(self._uncertain(order, coid, sent_at, exc))  # the loop finds out
            raise
        if ack is None:  # the adapter's request limit wants a wait: the loop waits
            return runtime.run(self._dispatch(order, coid, sent, admitted=True))
        filled = self._note_ack(coid, ack, order, sent_at)
        # The loop is woken only when it has something to do: no timer is armed for the
        # acknowledgement (one that is armed, or the next journal write, takes it along:
        # `_ack_timer` is cleared before the acknowledgements are taken), or a fill wants a
        # pull and none is pending.
        if self._ack_timer is None or (filled and not self._fill_sync_pending(
                order.ctx.connection)):
            runtime.get_loop().call_soon_threadsafe(self._after_ack, order.ctx.connection,
                                                    filled)
        return self._answer(order, ack)

    @staticmethod
    def _journal_row(order: _Order) -> tuple[str, OrderIntent, dict[str, Any]]:
        """The client order id, the intent as sent, and the journal row of `order`."""
        intent, ctx = order.intent, order.ctx
        coid = intent.client_order_id or new_client_order_id()
        sent = intent.routed(coid, ctx.connection, ctx.account, ctx.asset_class)
        row = {
            "client_order_id": coid, "connection": ctx.connection, "account": ctx.account,
            "instrument": order.instrument, "symbol": intent.symbol,
            "asset_class": ctx.asset_class.value, "side": intent.side.value,
            "order_type": intent.order_type.value, "quantity": intent.quantity,
            "notional": intent.notional, "limit_price": intent.limit_price,
            "stop_price": intent.stop_price, "time_in_force": intent.time_in_force.value,
            "intent": sent.to_dict(),
        }
        return coid, sent, row

    async def _journal_refused(self, order: _Order, coid: str, exc: Exception) -> OrderResult:
        """The journal refused the order: trading is halted or reducing (the row is written
        REJECTED), or its client order id was used before (nothing written)."""
        from ..book import TradingBlocked

        if isinstance(exc, TradingBlocked):
            code = "TRADING_HALTED" if exc.state.halted or "HALTED" in exc.reason \
                else "REDUCE_ONLY_WOULD_INCREASE_POSITION"
            v = Violation(code, exc.reason)
            await self._db(self.book.update_order, coid, violations=[v.to_dict()])
        else:
            v = Violation("DUPLICATE_INTENT", f"client order id {coid} was already used")
        return self._result_rejected(order.intent, order.ctx, (v,), coid)

    async def _dispatch(self, order: _Order, coid: str, sent: OrderIntent,
                        admitted: bool = False) -> OrderResult:
        """Send a journaled order: the rate limit (unless `admitted` already), the submit,
        and on a fault the lookup; then record and answer."""
        intent, ctx = order.intent, order.ctx
        limiter = self._limiter(ctx.connection, order.adapter)
        if not admitted and ctx.limits.on_rate_limit == "wait":
            await limiter.acquire()
        elif not admitted and not limiter.try_acquire():
            v = Violation("RATE_LIMIT_EXCEEDED", f"{limiter} reached")
            await self._db(self.book.update_order, coid, status="REJECTED",
                           reason=v.message, violations=[v.to_dict()])
            return self._result_rejected(intent, ctx, (v,), coid)
        self._duplicates.remember(order.fingerprint)
        # The journal row is committed (JOURNALED): from here the broker may have the order,
        # and recovery finds it by client order id. The acknowledgement records `sent_at`.
        sent_at = datetime.now(UTC)
        try:
            async with asyncio.timeout(SUBMIT_TIMEOUT):  # no extra task, unlike wait_for
                ack = await order.adapter.submit_async(sent, coid)
        except (SubmitUncertain, TimeoutError, ConnectionError, AdapterError, OSError) as exc:
            return await self._uncertain(order, coid, sent_at, exc)
        self._record(coid, ack, order, sent_at)
        return self._answer(order, ack)

    async def _uncertain(self, order: _Order, coid: str, sent_at: datetime,
                         exc: BaseException) -> OrderResult:
        """The submit timed out or failed: the broker may or may not have the order. Look it
        up by client order id (never send it again) and answer with what the broker has."""
        ctx = order.ctx
        why = str(exc) or type(exc).__name__
        log.warning("submit of %s to %s uncertain (%s): looking it up", coid, ctx.connection,
                    why)
        await self._db(self.book.update_order, coid, status="UNCERTAIN", reason=why,
                       sent_at=sent_at)
        found = await self._lookup(order.adapter, coid)
        if found is None:
            return await self._unresolved(coid, ctx, order.intent, why, order.adapter)
        self._record(coid, found, order, sent_at)
        return self._answer(order, found)

    @staticmethod
    def _answer(order: _Order, ack: BrokerOrder) -> OrderResult:
        intent, ctx = order.intent, order.ctx
        return _result(ack, ctx.connection, ctx.account, intent.symbol, intent.side.value,
                       _f(ctx.quantity) if intent.quantity is None else float(intent.quantity))

    async def _journal(self, row: dict[str, Any], guard: Callable[[Any], str | None]) -> None:
        """Write the order to the journal, the trading state re-read in the same transaction;
        acknowledgements waiting for the book ride along (one commit).

        On SQLite the write is first tried right here on the runtime loop without waiting
        (`_journal_now`); if another writer holds the lock it is done on the book thread,
        which waits for the lock. PostgreSQL always goes to the book thread."""
        if self._ack_timer is not None:  # they go now: no separate write later
            self._ack_timer.cancel()
            self._ack_timer = None
        if self.book.writes_nowait and self._journal_now(row, guard):
            return
        await self._db(self.book.journal_order, row, guard, acks=self._take_acks(),
                       _flush=False)

    def _journal_now(self, row: dict[str, Any], guard: Callable[[Any], str | None]) -> bool:
        """The SQLite journal write that never waits, with the acknowledgements waiting for
        the book: a tenth of a millisecond, like the checks, so the runtime loop or the
        caller's thread does it itself. False when another writer holds the lock: nothing
        was written, and the acknowledgements wait on. Raises as `Book.journal_order`."""
        from ..book import BookBusy

        acks = self._take_acks()
        ctx = contextvars.copy_context()  # as on the book thread: a copy of the context
        try:
            ctx.run(self.book.journal_order, row, guard, acks=acks, nowait=True)
        except BookBusy:
            with self._mutex:
                self._acks[:0] = acks  # back in front, in their order
                if acks and self._acks_since is None:
                    self._acks_since = time.monotonic()
            return False
        if self.book.checkpoint_due():
            self._db_later(self.book.checkpoint)
        return True

    def _guard(self, ctx: CheckContext):  # type: ignore[no-untyped-def]
        """The check the journal runs on the trading state it reads in its own transaction."""
        increases = ctx.increases_position

        def guard(state: Any) -> str | None:
            view = StateView.of(state)
            if view.state == "HALTED":
                return f"trading is HALTED: {view.reason}"
            if view.state == "REDUCING" and increases is not False:
                return f"trading is REDUCING ({view.reason}): the order does not reduce " \
                       f"the position"
            return None

        return guard

    async def _lookup(self, adapter: Adapter, coid: str) -> BrokerOrder | None:
        """Ask the broker for `coid`, retrying the *lookup* (never the submit)."""
        last: Exception | None = None
        for delay in (0.0, *LOOKUP_BACKOFF):
            if delay:
                await asyncio.sleep(delay)
            try:
                return await asyncio.wait_for(adapter.lookup_async(coid), SUBMIT_TIMEOUT)
            except Exception as exc:
                last = exc
        raise AdapterError(adapter.name, f"lookup of {coid} failed: {last}") from last

    async def _unresolved(self, coid: str, ctx: CheckContext, intent: OrderIntent, why: str,
                          adapter: Adapter) -> OrderResult:
        """The broker answered a lookup and has no such order: it was never placed."""
        reason = f"submit failed ({why}) and {ctx.connection} has no order {coid}: not placed"
        await self._db(self.book.update_order, coid, status="ERROR", reason=reason)
        return OrderResult(OrderStatus.ERROR, reason=reason, client_order_id=coid,
                           connection=ctx.connection, account=ctx.account,
                           symbol=intent.symbol, side=intent.side.value,
                           quantity=_f(intent.quantity))

    def _record(self, coid: str, ack: BrokerOrder, order: _Order,
                sent_at: datetime | None = None) -> None:
        """Record an acknowledgement (on the runtime loop)."""
        self._after_ack(order.ctx.connection, self._note_ack(coid, ack, order, sent_at))

    def _note_ack(self, coid: str, ack: BrokerOrder, order: _Order,
                  sent_at: datetime | None) -> bool:
        """Queue the acknowledgement for the book and count its fill into the cached state
        (any thread); True when it filled (its fills are then pulled: `_after_ack`).

        Off the critical path: the answer goes back to the caller now, and the book gets it
        with the next journal write (one transaction), or with any other book call of this
        service, or on its own after ACK_FLUSH_DELAY, whichever is first; so every later
        book call of this service sees it. A crash before it lands leaves the row
        unresolved, and recovery looks the order up at the broker (never sends it again)."""
        fields: dict[str, Any] = {"status": ack.status.value, "sent_at": sent_at,
                                  "broker_order_id": ack.order_id,
                                  "filled_quantity": ack.filled_quantity,
                                  "avg_fill_price": ack.avg_fill_price}
        if ack.reason:
            fields["reason"] = ack.reason
        with self._mutex:
            if not self._acks:
                self._acks_since = time.monotonic()
            self._acks.append((coid, fields))
            self._unpulled.add(order.ctx.connection)  # its fills are pulled before exit
            if not ack.filled_quantity:
                return False
            cache = self._cache(order.ctx.connection)
            key = (order.ctx.account, order.instrument)
            signed = Decimal(repr(ack.filled_quantity)) * order.intent.side.sign
            cache.deltas[key] = cache.deltas.get(key, Decimal(0)) + signed
            if order.intent.side is Side.BUY and ack.avg_fill_price:
                cost = Decimal(repr(ack.filled_quantity * ack.avg_fill_price))
                cache.spent[order.ctx.account] = cache.spent.get(order.ctx.account,
                                                                 Decimal(0)) + cost
        return True

    def _after_ack(self, connection: str, filled: bool) -> None:
        """On the runtime loop after `_note_ack`: the timer that writes acknowledgements no
        journal write carried, and the pull of the connection's fills."""
        if self._ack_timer is None and self._acks:
            self._ack_timer = asyncio.get_running_loop().call_later(ACK_FLUSH_DELAY,
                                                                    self._ack_due)
        if filled:
            self._schedule_fill_sync(connection)

    def _fill_sync_pending(self, connection: str) -> bool:
        task = self._fill_syncs.get(connection)
        return task is not None and not task.done()

    def _schedule_fill_sync(self, connection: str) -> None:
        if not self._fill_sync_pending(connection):
            self._fill_syncs[connection] = asyncio.create_task(self._fill_sync(connection))

    async def _fill_sync(self, connection: str) -> int:
        if not self._drain.is_set():  # let a burst of fills arrive, then pull once
            try:
                await asyncio.wait_for(self._drain.wait(), FILL_SYNC_DELAY)
            except TimeoutError:
                pass
        if self.brokerage.health(connection).status == "disconnected":
            return 0  # closed meanwhile: the next service start pulls them
        try:
            return await self.sync_fills_async(connection)
        except Exception as exc:  # retried on the next fill or by an explicit sync
            log.warning("pulling fills from %s failed: %s", connection, exc)
            return 0

    async def _recover_one(self, row: Mapping[str, Any]) -> OrderResult:
        coid, name = row["client_order_id"], row["connection"]
        try:
            adapter = await self.brokerage.connected_adapter_async(name)
            found = await self._lookup(adapter, coid)
        except Exception as exc:
            return OrderResult(OrderStatus.ERROR, client_order_id=coid, connection=name,
                               reason=f"still unresolved: {exc}")
        if found is None:
            reason = f"{name} has no order {coid}: it was not placed (the process stopped " \
                     f"before or while sending it)"
            await self._db(self.book.update_order, coid, status="ERROR", reason=reason)
            await self._db(self.book.audit, "recover_order", coid, {"found": False},
                                    "ERROR")
            return OrderResult(OrderStatus.ERROR, client_order_id=coid, connection=name,
                               account=row["account"], symbol=row["symbol"], reason=reason)
        await self._db(self.book.update_order, coid, status=found.status.value,
                                broker_order_id=found.order_id,
                                filled_quantity=found.filled_quantity,
                                avg_fill_price=found.avg_fill_price)
        await self._db(self.book.audit, "recover_order", coid,
                                {"found": True, "order_id": found.order_id},
                                found.status.value)
        if found.filled_quantity:
            self._schedule_fill_sync(name)
        return _result(found, name, row["account"], row["symbol"], row["side"],
                       _f(row["quantity"]))

    # -- rejections -------------------------------------------------------------------------
    async def _reject_invalid(self, intent: Any, kwargs: Mapping[str, Any],
                              exc: InvalidIntent) -> OrderResult:
        v = Violation("INVALID_INTENT", str(exc))
        raw = {**(intent if isinstance(intent, Mapping) else {}), **kwargs}
        await self._db(self.book.audit, "place_order", str(raw.get("symbol", "")),
                                {"intent": {k: str(v) for k, v in raw.items()},
                                 "violations": [v.to_dict()]}, "REJECTED")
        return OrderResult(OrderStatus.REJECTED, reason=_reason([v]), violations=(v,),
                           symbol=str(raw["symbol"]) if raw.get("symbol") else None)

    async def _rejected_unrouted(self, intent: OrderIntent, v: Violation) -> OrderResult:
        await self._db(self.book.audit, "place_order", intent.symbol,
                                {"intent": intent.to_dict(), "violations": [v.to_dict()]},
                                "REJECTED")
        return OrderResult(OrderStatus.REJECTED, reason=_reason([v]), violations=(v,),
                           symbol=intent.symbol, side=intent.side.value,
                           quantity=_f(intent.quantity))

    async def _reject(self, order: _Order) -> OrderResult:
        ctx = order.ctx
        await self._db(self.book.audit, "place_order", order.intent.symbol,
                                {"intent": order.intent.to_dict(), "connection": ctx.connection,
                                 "account": ctx.account,
                                 "violations": [v.to_dict() for v in order.violations]},
                                "REJECTED")
        return self._result_rejected(order.intent, ctx, tuple(order.violations), None)

    @staticmethod
    def _result_rejected(intent: OrderIntent, ctx: CheckContext,
                         violations: tuple[Violation, ...], coid: str | None) -> OrderResult:
        return OrderResult(OrderStatus.REJECTED, reason=_reason(violations),
                           violations=violations, client_order_id=coid,
                           connection=ctx.connection, account=ctx.account, symbol=intent.symbol,
                           side=intent.side.value, quantity=_f(ctx.quantity))

    # -- the book ---------------------------------------------------------------------------
    def _db(self, fn: Callable[..., T], /, *args: Any, _flush: bool = True, **kwargs: Any
            ) -> asyncio.Future[T]:
        """Run a book call on the service's own database thread: off the event loop, and
        always on the same thread, so its pinned connection stays warm. The thread takes
        calls in order (FIFO), and acknowledgements waiting for the book are queued first,
        so a call sees every write this service made before it. The answer is handed straight
        to the awaiting future (one wake-up of the loop)."""
        if _flush:
            self._flush_acks()
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

        self._db_thread.submit(job)
        return fut

    def _db_later(self, fn: Callable[[], Any]) -> None:
        """Queue a book call on the database thread without waiting for it (errors logged)."""
        def job() -> None:
            try:
                fn()
            except Exception as exc:
                log.warning("book call %s failed: %s", getattr(fn, "__name__", fn), exc)

        self._db_thread.submit(job)

    def _flush_acks(self) -> None:
        """Queue the acknowledgements waiting for the book as one write (runtime loop only).
        If it fails, the orders stay unresolved in the journal and recovery settles them by
        lookup at the broker, never by sending again."""
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        acks = self._take_acks()
        if not acks:
            return
        ctx = contextvars.copy_context()

        def job() -> None:
            try:
                ctx.run(self.book.record_acks, acks)
            except Exception as exc:
                log.error("recording %d acknowledgements failed: %s; the journal rows stay "
                          "unresolved until recovery looks them up", len(acks), exc)

        try:
            self._db_thread.submit(job)
        except RuntimeError as exc:  # the service was closed under these orders
            log.error("%d acknowledgements not recorded (%s); recovery will look them up",
                      len(acks), exc)

    def _take_acks(self) -> list[tuple[str, dict[str, Any]]]:
        """The acknowledgements waiting for the book, taken (any thread)."""
        with self._mutex:
            acks, self._acks, self._acks_since = self._acks, [], None
        return acks

    def _ack_due(self) -> None:
        """The acknowledgement timer (runtime loop): what has waited ACK_FLUSH_DELAY for a
        journal write to carry it is written on its own; while orders keep coming each one
        is carried by the next order's journal write within that time, and the timer only
        waits again (no write of its own to collide with theirs)."""
        self._ack_timer = None
        with self._mutex:
            since = self._acks_since
        if since is None:
            return
        left = since + ACK_FLUSH_DELAY - time.monotonic()
        if left > 0:
            self._ack_timer = asyncio.get_running_loop().call_later(left, self._ack_due)
        else:
            self._flush_acks()

    # -- cached broker state ----------------------------------------------------------------
    async def _trading_state(self, fresh: bool = False) -> StateView:
        """The trading state for the checks, re-read at most every STATE_CHECK_TTL seconds.
        It only words the violations: the journal re-reads the state in the transaction that
        writes the order, so a halt from any process stops the very next order."""
        now = time.monotonic()
        if fresh or self._state_view is None or now - self._state_at >= STATE_CHECK_TTL:
            self._state_view = await self._db(self.killswitch.state)
            self._state_at = now
        return StateView.of_view(self._state_view)

    def _inputs_now(self, cache: _Cache, adapter: Adapter, symbol: str, *,
                    here: bool = False) -> tuple[Any, ...] | None:
        """Everything the checks read, when all of it is cached and fresh (the usual case for
        a running service): no task, no await. A quote between QUOTE_TTL and QUOTE_STALE old
        is used while a fresh one is fetched in the background, as `_quote` does. On a
        caller's thread that may block (`here`), a trading state read more than
        STATE_CHECK_TTL ago is read again right there. None when anything must be fetched."""
        now = time.monotonic()
        if here and (self._state_view is None or now - self._state_at >= STATE_CHECK_TTL):
            self._state_view, self._state_at = self.killswitch.state(), now
        view = self._state_view
        if (view is None or now - self._state_at >= STATE_CHECK_TTL
                or now - cache.state_at >= STATE_TTL or cache.account_types is None):
            return None
        facts, quote, hours = cache.facts.get(symbol), cache.quotes.get(symbol), \
            cache.hours.get(symbol)
        if (facts is None or now - facts[0] >= FACTS_TTL or quote is None
                or now - quote[0] >= QUOTE_STALE or hours is None
                or now - hours[0] >= HOURS_TTL):
            return None
        if now - quote[0] >= QUOTE_TTL and symbol not in cache.refreshing:
            if here:
                runtime.get_loop().call_soon_threadsafe(self._revalidate_quote, cache, adapter,
                                                        symbol)
            else:
                self._revalidate_quote(cache, adapter, symbol)
        return (facts[1], quote[1], hours[1], (cache.positions, cache.balances),
                cache.account_types, StateView.of_view(view))

    def _targets(self) -> dict[str, RouteTarget]:
        out = {}
        for name in self.brokerage.connections:
            try:
                adapter = self.brokerage.adapter(name)
            except Exception:
                continue
            out[name] = RouteTarget.of(adapter.config, adapter.capabilities, adapter.accounts)
        return out

    def _trading_connections(self) -> list[str]:
        return [n for n, t in self._targets().items() if t.trading]

    def _default_account(self, connection: str, adapter: Adapter) -> str:
        accounts = adapter.accounts
        if not accounts:
            raise AdapterError(connection, "no account known; name one in the order")
        return accounts[0]

    def _cache(self, connection: str) -> _Cache:
        cache = self._caches.get(connection)
        if cache is None:
            cache = self._caches[connection] = _Cache()
        return cache

    def _limiter(self, connection: str, adapter: Adapter) -> RateLimiter:
        limiter = self._limiters.get(connection)
        if limiter is None:
            cfg = adapter.config
            rate = self.limits.for_order(connection, None, None).max_orders_per_second
            limiter = limiter_for(cfg.type, cfg.options, name=connection,
                                  max_orders_per_second=rate)
            self._limiters[connection] = limiter
        return limiter

    async def _state(self, cache: _Cache, adapter: Adapter
                     ) -> tuple[dict[tuple[str, str], Decimal] | None,
                                dict[str, list[tuple[str, float]]] | None]:
        """Positions and buying power of the connection, indexed for O(1) lookups; refreshed
        every STATE_TTL seconds (own fills adjust them in between)."""
        if time.monotonic() - cache.state_at < STATE_TTL:
            return cache.positions, cache.balances
        async with cache.lock:
            if time.monotonic() - cache.state_at >= STATE_TTL:
                try:
                    pos, bal = await asyncio.gather(adapter.positions_async(),
                                                    adapter.balances_async())
                except Exception as exc:  # unknown state: the checks will say so
                    log.warning("reading state of %s failed: %s", adapter.name, exc)
                    return None, None
                held: dict[tuple[str, str], Decimal] = {}
                for acct, inst, qty in zip(pos["account"], pos["instrument"], pos["quantity"],
                                           strict=True):
                    held[(acct, inst)] = held.get((acct, inst), Decimal(0)) + _d(qty)  # type: ignore[operator]
                power: dict[str, list[tuple[str, float]]] = {}
                for acct, ccy, bp in zip(bal["account"], bal["currency"], bal["buying_power"],
                                         strict=True):
                    if bp == bp:  # NaN: the broker did not say
                        power.setdefault(acct, []).append((ccy, float(bp)))
                with self._mutex:  # `place_order`'s fast path reads them from its thread
                    cache.positions, cache.balances = held, power
                    cache.deltas.clear()
                    cache.spent.clear()
                    cache.state_at = time.monotonic()
        return cache.positions, cache.balances

    async def _account_types(self, cache: _Cache, adapter: Adapter) -> dict[str, str]:
        if cache.account_types is None:
            try:
                cache.account_types = await adapter.account_types_async()
            except Exception:
                return {}
        return cache.account_types

    @staticmethod
    async def _fetch(store: dict[str, tuple[float, Any]], key: str,
                     fetch: Callable[[], Awaitable[Any]], what: str) -> Any:
        """Fetch a fact for the checks and cache it; a failure is logged and gives None
        (unknown), which the checks report rather than pass."""
        try:
            value = await fetch()
        except Exception as exc:
            log.warning("%s failed: %s", what, exc)
            return None
        store[key] = (time.monotonic(), value)
        return value

    async def _cached(self, store: dict[str, tuple[float, Any]], key: str, ttl: float,
                      fetch: Callable[[], Awaitable[Any]], what: str,
                      stale: float | None = None, refreshing: set[str] | None = None) -> Any:
        """`store[key]` while younger than `ttl`; else fetched. With `stale`, a value younger
        than that is still returned while a fresh one is fetched in the background."""
        hit = store.get(key)
        age = math.inf if hit is None else time.monotonic() - hit[0]
        if hit is not None and age < ttl:
            return hit[1]
        if hit is not None and stale is not None and refreshing is not None and age < stale:
            self._revalidate(store, key, fetch, what, refreshing)
            return hit[1]
        return await self._fetch(store, key, fetch, what)

    async def _facts(self, cache: _Cache, adapter: Adapter, symbol: str
                     ) -> dict[str, Any] | None:
        async def fetch() -> dict[str, Any] | None:
            df = await adapter.instruments_async([symbol])
            return df.iloc[0].to_dict() if len(df) else None

        return await self._cached(cache.facts, symbol, FACTS_TTL, fetch,
                                  f"instrument facts for {symbol} at {adapter.name}")

    async def _quote(self, cache: _Cache, adapter: Adapter, symbol: str
                     ) -> dict[str, Any] | None:
        """The latest quote: fetched when older than QUOTE_STALE; between QUOTE_TTL and
        QUOTE_STALE the cached one is used while a fresh one is fetched in the background."""
        return await self._cached(cache.quotes, symbol, QUOTE_TTL,
                                  self._quote_fetch(adapter, symbol),
                                  f"quote for {symbol} at {adapter.name}", QUOTE_STALE,
                                  cache.refreshing)

    @staticmethod
    def _quote_fetch(adapter: Adapter, symbol: str
                     ) -> Callable[[], Awaitable[dict[str, Any] | None]]:
        async def fetch() -> dict[str, Any] | None:
            df = await adapter.quotes_async([symbol])
            return df.iloc[0].to_dict() if len(df) else None

        return fetch

    def _revalidate_quote(self, cache: _Cache, adapter: Adapter, symbol: str) -> None:
        """Fetch a fresh quote in the background unless one is on its way (runtime loop)."""
        self._revalidate(cache.quotes, symbol, self._quote_fetch(adapter, symbol),
                         f"quote for {symbol} at {adapter.name}", cache.refreshing)

    def _revalidate(self, store: dict[str, tuple[float, Any]], key: str,
                    fetch: Callable[[], Awaitable[Any]], what: str,
                    refreshing: set[str]) -> None:
        if key not in refreshing:
            refreshing.add(key)
            task = asyncio.ensure_future(self._fetch(store, key, fetch, what))
            task.add_done_callback(lambda _t: refreshing.discard(key))

    async def _hours(self, cache: _Cache, adapter: Adapter, symbol: str) -> bool | None:
        return await self._cached(cache.hours, symbol, HOURS_TTL,
                                  lambda: adapter.market_open_async(symbol),
                                  f"market hours of {symbol} at {adapter.name}")

    @staticmethod
    def _position(cache: _Cache, positions: dict[tuple[str, str], Decimal] | None,
                  account: str, instrument: str) -> Decimal | None:
        if positions is None:
            return None
        key = (account, instrument)
        return positions.get(key, Decimal(0)) + cache.deltas.get(key, Decimal(0))

    def _buying_power(self, cache: _Cache, balances: dict[str, list[tuple[str, float]]] | None,
                      account: str, currency: str) -> Decimal | None:
        """The account's buying power in `currency` (rows in other currencies converted),
        less what this service's own fills spent since the last refresh."""
        if balances is None or account not in balances:
            return None
        try:
            total = sum(bp * self.brokerage.fx.rate(ccy, currency)
                        for ccy, bp in balances[account] if bp)  # 0 needs no rate
        except Exception:
            return None
        return Decimal(repr(total)) - cache.spent.get(account, Decimal(0))

    async def _gross_exposure(self) -> Decimal | None:
        """Sum of |market value| of every position at every connection, in the base
        currency; None when any connection could not be read (unknown is not zero)."""
        cache = self._cache("*")
        if time.monotonic() - cache.state_at >= STATE_TTL:
            df = await self.brokerage.positions_async()
            if df.attrs.get("errors"):
                return None
            cache.exposure = _d(df["market_value_base"].abs().sum())
            cache.state_at = time.monotonic()
        return cache.exposure


def _f(value: Decimal | float | None) -> float | None:
    return None if value is None else float(value)


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


def _utc(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _price(quote: Mapping[str, Any] | None) -> Decimal | None:
    if not quote:
        return None
    last = _d(quote.get("last"))
    if last is not None and last > 0:
        return last
    bid, ask = _d(quote.get("bid")), _d(quote.get("ask"))
    if bid and ask and bid > 0 and ask > 0:
        return (bid + ask) / 2
    return None


def _facts(row: Mapping[str, Any] | None) -> InstrumentFacts:
    if row is None:
        return InstrumentFacts()
    mult = _d(row.get("multiplier"))
    return InstrumentFacts(tradable=bool(row["tradable"]), fractionable=bool(row["fractionable"]),
                           shortable=bool(row["shortable"]),
                           min_quantity=_d(row.get("min_quantity")),
                           multiplier=mult if mult and mult > 0 else Decimal(1))


def _with_state(v: Violation, state: StateView) -> Violation:
    """Name who changed the trading state and why, on the violations it causes."""
    if v.code in ("TRADING_HALTED", "REDUCE_ONLY_WOULD_INCREASE_POSITION") \
            and state.state != "ACTIVE" and state.reason:
        return Violation(v.code, f"{v.message} [{state.state} by {state.actor}: {state.reason}]")
    return v


def _reason(violations: Any) -> str:
    return "; ".join(f"{v.code}: {v.message}" for v in violations)


def _result(ack: BrokerOrder, connection: str, account: str | None, symbol: str | None,
            side: str | None, quantity: float | None) -> OrderResult:
    status = ack.status
    if status is OrderStatus.PENDING:
        status = OrderStatus.ACCEPTED
    violations: tuple[Violation, ...] = ()
    if status is OrderStatus.REJECTED:  # the broker refused what passed every check
        violations = (Violation("BROKER_REJECTED", ack.reason or "rejected by the broker"),)
    reason = ack.reason or {OrderStatus.FILLED: "filled",
                            OrderStatus.PARTIALLY_FILLED: "partially filled",
                            OrderStatus.ACCEPTED: "accepted by the broker"}.get(status, "")
    return OrderResult(status, reason=reason, order_id=ack.order_id,
                       client_order_id=ack.client_order_id, connection=connection,
                       account=account, symbol=symbol, side=side, quantity=quantity,
                       filled_quantity=ack.filled_quantity, avg_fill_price=ack.avg_fill_price,
                       violations=violations, submitted_at=ack.submitted_at)


_service: ExecutionService | None = None
_lock = threading.Lock()
_live: weakref.WeakSet[ExecutionService] = weakref.WeakSet()


@runtime.before_exit
def _drain_at_exit() -> None:
    """Before the interpreter exits, while worker threads still take work: the fills due are
    pulled into the book (within FILL_DRAIN_TIMEOUT) and the acknowledgements still waiting
    are written, so a script that places an order and ends leaves its journal settled and its
    fills in the book. The book threads are drained after it, at exit."""
    for svc in list(_live):
        if svc._closed:  # drained when it closed
            continue
        try:
            runtime.run(svc.drain_fills_async(), timeout=FILL_DRAIN_TIMEOUT + 2)
        except Exception as exc:  # the next pull, from any process, brings them
            log.warning("pulling fills at exit failed: %s", exc)
        if svc._acks:
            try:
                runtime.run(svc.flush_async(), timeout=5)
            except Exception as exc:  # recovery looks the orders up on the next start
                log.warning("recording acknowledgements at exit failed: %s", exc)


def get_execution_service() -> ExecutionService:
    """The process-wide `ExecutionService` over `get_brokerage_service()` and the book.

    On creation it recovers journal rows a previous process left unresolved (by lookup, never
    by sending again)."""
    global _service
    with _lock:
        if _service is None:
            svc = ExecutionService()
            try:
                svc.recover()
            except Exception as exc:  # recovery problems must not stop trading setup
                log.warning("recovering unresolved orders failed: %s", exc)
            _service = svc
        return _service


def reset_execution_service() -> None:
    """Forget the process-wide service (tests, or after changing configuration)."""
    global _service
    with _lock:
        _service = None
