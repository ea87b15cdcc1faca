"""The order pipeline: no order reaches a broker without passing it.

`ExecutionService.place_order(intent)` is the sync face of `place_order_async`, which runs on
the runtime loop like every other call (`brokerkit.runtime`):

1. **validate** the intent (a dict, keywords or an `OrderIntent`): bad input is REJECTED with
   `INVALID_INTENT` naming the field.
2. **route** it and run **every pre-trade check** against cached broker state
   (`pipeline`, `inputs`): no route is REJECTED `NO_ROUTE`, and every violation is reported.
3. **journal** it with a client order id, re-reading the trading state in the same
   transaction (a halt committed by any process a microsecond earlier rejects it) (`journal`).
4. **submit** it, once (`submit`): JOURNALED -> SENT -> ACKNOWLEDGED / REJECTED, or UNCERTAIN
   on a timeout, a dropped connection or a 5xx; an UNCERTAIN order is looked up by client
   order id, and the caller gets `UNCERTAIN` (never "not placed") while the broker has not
   shown it. The periodic recovery (`recovery`) resolves it later, in this process or the next.
5. **record** the answer (after it is given, off the critical path) and pull fills into the
   book in the background (`fills`).

Every refused order is journaled with its violations (`Book.record_refused`), so the blotter
shows why. The book fails closed: when it is unavailable (`BookUnavailable`) the answer is an
`ERROR` naming the database, and nothing is sent without a journal row. A KeyboardInterrupt in
a waiting caller leaves the order to the runtime loop, which finishes and records it.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .. import runtime
from ..adapters import Adapter, BrokerOrder
from ..book.feed import BrokerFeed
from ..errors import BookUnavailable, InvalidIntent
from ..model import OrderIntent, OrderResult, OrderStatus, Violation
from .fills import FILL_DRAIN_TIMEOUT, FillSync
from .inputs import CheckInputs
from .journal import Journal
from .killswitch import KillSwitch, StateView
from .limits import RiskLimits
from .pipeline import (
    Pipeline,
    PreparedOrder,
    Preview,
    new_client_order_id,
    reason_of,
    result_of,
    to_float,
)
from .ratelimit import RateLimiter, limiter_for
from .recovery import RECOVER_MIN_AGE, Recovery
from .risk import DuplicateDetector
from .routing import RoutingTable
from .sendgate import SendGate, TradingStateChanged
from .submit import Submission, Submitter, uncertain_reason

if TYPE_CHECKING:
    from ..book import Book
    from ..service import BrokerageService

__all__ = ["ExecutionService", "Preview", "get_execution_service", "new_client_order_id",
           "reset_execution_service"]

log = logging.getLogger("brokerkit.execution")


class ExecutionService(runtime.Bridged):
    """The guarded order pipeline over a `BrokerageService` and a `Book`.

    On creation it starts the periodic recovery of unresolved journal rows on the runtime
    loop (`recovery`); `close()` stops it."""

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
        self._closed = False
        self._journal = Journal(book)
        self._db = self._journal.db
        #: the fills of the service's connections reach the book through it, and a fresh
        #: book is opened from the brokers' positions before a connection's first order
        self._feed = BrokerFeed(book, brokerage, db=self._db)
        self._inputs = CheckInputs(brokerage, self.killswitch, self._db)
        self._pipeline = Pipeline(brokerage, self.routing, self.limits, self._inputs,
                                  self._feed, self._duplicates, self._limiter)
        self._fills = FillSync(self._feed, brokerage, self._pipeline.trading_connections)
        self._submitter = Submitter(self._journal.queue, brokerage.note_trading)
        self._gate = SendGate.for_book(book)
        self._recovery = Recovery(self._journal, brokerage, self._found)
        _live.add(self)
        loop = runtime.get_loop()
        if runtime.in_runtime():
            self._recovery.start(self, _running)
        else:
            loop.call_soon_threadsafe(self._recovery.start, self, _running)

    def __repr__(self) -> str:
        return f"<ExecutionService connections={self.brokerage.connections} book={self.book!r}>"

    # -- public API -------------------------------------------------------------------------
    async def place_order_async(self, intent: OrderIntent | Mapping[str, Any] | None = None,
                                /, **kwargs: Any) -> OrderResult:
        """Validate, route, check, journal, submit and record one order (see module doc)."""
        try:
            return await self._place(intent, kwargs)
        except BookUnavailable as exc:  # fails closed: nothing is sent without a journal row
            log.error("order not placed: %s", exc)
            raw = _raw(intent, kwargs)
            return OrderResult(OrderStatus.ERROR, reason=f"not sent: {exc}",
                               symbol=str(raw.get("symbol") or "") or None,
                               side=str(raw.get("side") or "") or None)

    def place_order(self, intent: OrderIntent | Mapping[str, Any] | None = None, /,
                    **kwargs: Any) -> OrderResult:
        """`place_order_async` for a caller that waits. A KeyboardInterrupt while it waits
        reaches the caller, and the runtime loop goes on with the order: it is sent (or not)
        and recorded as if nobody had left."""
        return runtime.run(self.place_order_async(intent, **kwargs))

    async def preview_async(self, intent: OrderIntent | Mapping[str, Any] | None = None, /,
                            **kwargs: Any) -> Preview:
        """Everything `place_order` does except journaling and sending."""
        try:
            parsed = OrderIntent.of(intent, **kwargs)
        except InvalidIntent as exc:
            v = Violation("INVALID_INTENT", str(exc))
            raw = _raw(intent, kwargs)
            return Preview(False, None, None, str(raw.get("symbol", "")),
                           str(raw.get("side", "")), None, (v,), reason=str(exc))
        prepared = await self._pipeline.prepare(parsed, preview=True)
        if isinstance(prepared, Violation):
            state = await self._db(self.killswitch.state)
            return Preview(False, None, None, parsed.symbol, parsed.side.value, None,
                           (prepared,), reason=reason_of([prepared]), trading_state=state.state)
        ctx = prepared.ctx
        from .risk import CHECKS, buying_power_need

        passed = () if prepared.violations else \
            tuple(c.__name__.removeprefix("check_") for c in CHECKS if c(ctx) is None)
        after = None
        need = buying_power_need(ctx)
        if ctx.buying_power is not None and not isinstance(need, Violation):
            after = ctx.buying_power - (need[0] if need is not None else 0)
        return Preview(
            ok=not prepared.violations, connection=prepared.route.connection,
            account=ctx.account, symbol=parsed.symbol, side=parsed.side.value,
            asset_class=ctx.asset_class.value, violations=tuple(prepared.violations),
            checks_passed=passed, price=to_float(ctx.price), quantity=to_float(ctx.quantity),
            notional=to_float(ctx.notional), currency=prepared.currency,
            buying_power=to_float(ctx.buying_power), buying_power_after=to_float(after),
            trading_state=ctx.trading_state, reason=reason_of(prepared.violations))

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
        return result_of(ack, row["connection"], row["account"], row["symbol"], row["side"],
                         to_float(row["quantity"]))

    def cancel(self, client_order_id: str) -> OrderResult:
        return runtime.run(self.cancel_async(client_order_id))

    async def flush_async(self) -> None:
        """Wait until every book write queued so far has landed (submit transitions and
        acknowledgements are recorded after `place_order` answers)."""
        await self._journal.flush()

    def flush(self) -> None:
        runtime.run(self.flush_async())

    async def close_async(self) -> None:
        """Stop the periodic recovery, pull the fills still due (within FILL_DRAIN_TIMEOUT),
        finish the book writes, and stop the book thread (the brokerage stays open)."""
        self._closed = True
        await self._recovery.stop()
        await self._fills.drain_async()
        self._journal.shutdown()

    def close(self) -> None:
        runtime.run(self.close_async())

    async def drain_fills_async(self, timeout: float = FILL_DRAIN_TIMEOUT) -> None:
        """Pull now the fills of every connection that acknowledged an order since its last
        pull, waiting at most `timeout` seconds (the rest is left to the next pull)."""
        await self._fills.drain_async(timeout)

    def drain_fills(self, timeout: float = FILL_DRAIN_TIMEOUT) -> None:
        runtime.run(self.drain_fills_async(timeout))

    def state(self) -> StateView:
        """The trading state in force (the kill switch)."""
        return self.killswitch.state()

    async def sync_fills_async(self, connection: str | None = None) -> int:
        """Pull fills from trading connections into the book; returns how many were new.
        Idempotent: fills already recorded (or inside an adopted position) are skipped, so
        nothing is ever counted twice (`brokerkit.book.feed.BrokerFeed.pull_async`)."""
        return await self._fills.sync_async(connection)

    def sync_fills(self, connection: str | None = None) -> int:
        return runtime.run(self.sync_fills_async(connection))

    async def recover_async(self, min_age: float = RECOVER_MIN_AGE) -> list[OrderResult]:
        """Resolve journal rows left JOURNALED, SENT or UNCERTAIN (a crash, a timeout) and
        untouched for `min_age` seconds, by looking each up at its broker by client order id;
        never by sending it again. A running service does this every few seconds by itself
        (`recovery`); the answers are UNCERTAIN for rows still unresolved."""
        return await self._recovery.recover_async(min_age)

    def recover(self, min_age: float = RECOVER_MIN_AGE) -> list[OrderResult]:
        return runtime.run(self.recover_async(min_age))

    # -- the pipeline -----------------------------------------------------------------------
    async def _place(self, intent: OrderIntent | Mapping[str, Any] | None,
                     kwargs: Mapping[str, Any]) -> OrderResult:
        try:
            parsed = OrderIntent.of(intent, **kwargs)
        except InvalidIntent as exc:
            return await self._refuse_invalid(intent, kwargs, exc)
        prepared = await self._pipeline.prepare(parsed)
        if isinstance(prepared, Violation):
            return await self._refuse_unrouted(parsed, prepared)
        if prepared.violations:
            return await self._refuse(prepared, tuple(prepared.violations))
        return await self._send(prepared)

    async def _send(self, order: PreparedOrder) -> OrderResult:
        """Journal the order, then the rate limit, then the submit (`submit.Submitter`)."""
        from ..book import DuplicateClientOrderId, TradingBlocked

        coid, sent, row = order.journal_row()
        generation = self._gate.generation()  # before the journal reads the trading state
        try:
            await self._journal.journal(row, order.guard())
        except (TradingBlocked, DuplicateClientOrderId) as exc:
            return await self._journal_refused(order, coid, exc)
        ctx = order.ctx
        limiter = self._limiter(ctx.connection, order.adapter)
        if ctx.limits.on_rate_limit == "wait":
            await limiter.acquire()
        elif not limiter.try_acquire():
            v = Violation("RATE_LIMIT_EXCEEDED", f"{limiter} reached")
            await self._db(self.book.update_order, coid, status="REJECTED",
                           reason=v.message, violations=[v.to_dict()])
            return order.refused((v,), coid)
        self._duplicates.remember(order.fingerprint)
        # The journal row is committed (JOURNALED): from here the broker may have the order,
        # and recovery finds it by client order id.
        try:
            sub = await self._submitter.submit(
                order.adapter, sent, coid, lambda s, ack: self._acknowledged(order, s, ack),
                gate=self._gate.sending(generation))
        except TradingStateChanged as exc:  # a halt (or any change) committed meanwhile
            v = Violation("TRADING_STATE_CHANGED", str(exc))
            await self._db(self.book.update_order, coid, status="REJECTED",
                           reason=v.message, violations=[v.to_dict()])
            return order.refused((v,), coid)
        if sub.ack is not None:
            return order.answer(sub.ack)
        return OrderResult(OrderStatus.UNCERTAIN,
                           reason=uncertain_reason(coid, ctx.connection, sub.error),
                           client_order_id=coid, connection=ctx.connection, account=ctx.account,
                           symbol=order.intent.symbol, side=order.intent.side.value,
                           quantity=order.quantity, submitted_at=sub.sent_at)

    def _acknowledged(self, order: PreparedOrder, sub: Submission, ack: BrokerOrder) -> None:
        """Record the broker's answer (queued for the book: `journal`), count its fill into
        the cached state, and pull its fills soon."""
        fields: dict[str, Any] = {"status": ack.status.value, "sent_at": sub.sent_at,
                                  "broker_order_id": ack.order_id,
                                  "filled_quantity": ack.filled_quantity,
                                  "avg_fill_price": ack.avg_fill_price}
        if ack.reason:
            fields["reason"] = ack.reason
        self._journal.queue(sub.client_order_id, fields)
        ctx = order.ctx
        if ack.filled_quantity:
            self._inputs.note_fill(ctx.connection, ctx.account, order.instrument,
                                   order.intent.side, ack.filled_quantity, ack.avg_fill_price)
        self._fills.acknowledged(ctx.connection, bool(ack.filled_quantity))

    def _found(self, connection: str, order: BrokerOrder) -> None:
        """Recovery found an order at its broker: its fills are pulled soon."""
        self._fills.acknowledged(connection, bool(order.filled_quantity))

    # -- refusals: each one journaled with its violations -------------------------------------
    async def _refuse_invalid(self, intent: Any, kwargs: Mapping[str, Any],
                              exc: InvalidIntent) -> OrderResult:
        v = Violation("INVALID_INTENT", str(exc))
        raw = _raw(intent, kwargs)
        coid = new_client_order_id()
        state = await self._inputs.trading_state()
        await self._db(self.book.record_refused, coid, {k: str(x) for k, x in raw.items()},
                       connection=None, account=None, trading_state=state.state,
                       violations=[v.to_dict()])
        return OrderResult(OrderStatus.REJECTED, reason=reason_of([v]), violations=(v,),
                           client_order_id=coid,
                           symbol=str(raw["symbol"]) if raw.get("symbol") else None)

    async def _refuse_unrouted(self, intent: OrderIntent, v: Violation) -> OrderResult:
        coid = new_client_order_id()
        state = await self._inputs.trading_state()
        await self._db(self.book.record_refused, coid, intent.to_dict(),
                       connection=intent.connection, account=intent.account,
                       trading_state=state.state, violations=[v.to_dict()])
        return OrderResult(OrderStatus.REJECTED, reason=reason_of([v]), violations=(v,),
                           client_order_id=coid, symbol=intent.symbol, side=intent.side.value,
                           quantity=to_float(intent.quantity))

    async def _refuse(self, order: PreparedOrder, violations: tuple[Violation, ...]
                      ) -> OrderResult:
        ctx = order.ctx
        coid = new_client_order_id()
        await self._db(self.book.record_refused, coid, order.intent.to_dict(),
                       connection=ctx.connection, account=ctx.account,
                       trading_state=ctx.trading_state,
                       violations=[v.to_dict() for v in violations])
        return order.refused(violations, coid)

    async def _journal_refused(self, order: PreparedOrder, coid: str, exc: Exception
                               ) -> OrderResult:
        """The journal refused the order: trading is halted or reducing (the journal wrote
        the row REJECTED; its violation is added), or its client order id was used before
        (journaled as a refusal of its own)."""
        from ..book import TradingBlocked

        if isinstance(exc, TradingBlocked):
            code = "TRADING_HALTED" if exc.state.halted or "HALTED" in exc.reason \
                else "REDUCE_ONLY_WOULD_INCREASE_POSITION"
            v = Violation(code, exc.reason)
            await self._db(self.book.update_order, coid, violations=[v.to_dict()])
            return order.refused((v,), coid)
        v = Violation("DUPLICATE_INTENT", f"client order id {coid} was already used")
        return await self._refuse(order, (v,))

    # -- limiters ---------------------------------------------------------------------------
    def _limiter(self, connection: str, adapter: Adapter) -> RateLimiter:
        limiter = self._limiters.get(connection)
        if limiter is None:
            cfg = adapter.config
            rate = self.limits.for_order(connection, None, None).max_orders_per_second
            limiter = limiter_for(cfg.type, cfg.options, name=connection,
                                  max_orders_per_second=rate)
            from .sharedlimit import share_orders  # one budget per credential, all processes

            limiter = share_orders(limiter, self.book, cfg.type, connection, cfg.options,
                                   adapter.secrets)
            self._limiters[connection] = limiter
        return limiter


def _raw(intent: Any, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """An intent as given (a mapping and keywords), for answers about one that failed."""
    if isinstance(intent, OrderIntent):
        return {**intent.to_dict(), **kwargs}
    return {**(intent if isinstance(intent, Mapping) else {}), **kwargs}


def _running(svc: object) -> bool:
    """Whether the periodic recovery of `svc` goes on: until it is closed."""
    return isinstance(svc, ExecutionService) and not svc._closed


_service: ExecutionService | None = None
_lock = threading.Lock()
_live: weakref.WeakSet[ExecutionService] = weakref.WeakSet()


@runtime.before_exit
def _drain_at_exit() -> None:
    """Before the interpreter exits, while worker threads still take work: the fills due are
    pulled into the book (within FILL_DRAIN_TIMEOUT) and the journal updates still waiting
    are written, so a script that places an order and ends leaves its journal settled and its
    fills in the book. The book threads are drained after it, at exit."""
    for svc in list(_live):
        if svc._closed:  # drained when it closed
            continue
        try:
            runtime.run(svc.drain_fills_async(), timeout=FILL_DRAIN_TIMEOUT + 2)
        except Exception as exc:  # the next pull, from any process, brings them
            log.warning("pulling fills at exit failed: %s", exc)
        if svc._journal.pending:
            try:
                runtime.run(svc.flush_async(), timeout=5)
            except Exception as exc:  # recovery looks the orders up on the next start
                log.warning("recording journal updates at exit failed: %s", exc)


def get_execution_service() -> ExecutionService:
    """The process-wide `ExecutionService` over `get_brokerage_service()` and the book. It
    resolves the journal rows a previous process left unresolved in the background, at once
    and then periodically (by lookup, never by sending again)."""
    global _service
    with _lock:
        if _service is None:
            if runtime.in_runtime():  # it works, but stalls every connection meanwhile
                log.warning("the execution service is being built on brokerkit's runtime "
                            "loop (opening the book blocks every connection meanwhile): "
                            "call get_execution_service() from your own thread first")
            _service = ExecutionService()
        return _service


def reset_execution_service() -> None:
    """Forget the process-wide service (tests, or after changing configuration)."""
    global _service
    with _lock:
        _service = None
