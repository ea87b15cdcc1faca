"""Recovery: journal rows left JOURNALED, SENT or UNCERTAIN are resolved by looking each order
up at its broker by client order id, never by sending it again.

Such a row is an order whose broker answer this process lost (a timeout, a dropped
connection), or that a process left behind when it died. Every long-running process resolves
them: the execution service runs a pass every `RECOVER_EVERY` seconds on the runtime loop
(the first at once), over rows untouched for `RECOVER_MIN_AGE` seconds (younger ones belong
to the submit under way), until the service closes. So a process started after another one
died resolves the dead one's rows within `NOT_PLACED_AFTER` + `RECOVER_EVERY` seconds.

A row the broker shows takes the broker's status (and its fills are pulled); a row the broker
says it has no order for stays UNCERTAIN until `NOT_PLACED_AFTER` seconds after it was sent (or
journaled), and only then is recorded as not placed (ERROR). Updates never overwrite an
answer recorded meanwhile (`Book.record_ack`).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..adapters import BrokerOrder
from ..model import OrderResult, OrderStatus
from . import submit
from .pipeline import result_of, to_float
from .submit import uncertain_reason

if TYPE_CHECKING:
    from ..service import BrokerageService
    from .journal import Journal

__all__ = ["RECOVER_EVERY", "RECOVER_MIN_AGE", "Recovery"]

log = logging.getLogger("brokerkit.execution")

#: Seconds between two recovery passes of a running service.
RECOVER_EVERY = 5.0
#: Journal rows untouched for less than this are left to the submit that is under way.
RECOVER_MIN_AGE = 3.0


class Recovery:
    """Resolves unresolved journal rows for one execution service (see the module doc);
    `found(connection, order)` is told of every order a lookup found (to pull its fills)."""

    def __init__(self, journal: Journal, brokerage: BrokerageService,
                 found: Callable[[str, BrokerOrder], None]) -> None:
        self._journal = journal
        self._brokerage = brokerage
        self._found = found
        self._task: asyncio.Task[None] | None = None

    async def recover_async(self, min_age: float = RECOVER_MIN_AGE) -> list[OrderResult]:
        """One pass over the rows untouched for `min_age` seconds; their answers (UNCERTAIN
        for a row still unresolved)."""
        book = self._journal.book
        rows = await self._journal.db(book.unresolved_orders)
        now = datetime.now(UTC)
        out: list[OrderResult] = []
        for row in rows:
            updated = row["updated_at"]
            if updated is not None and (now - _utc(updated)).total_seconds() < min_age:
                continue
            out.append(await self._one(row, now))
        return out

    async def _one(self, row: Mapping[str, Any], now: datetime) -> OrderResult:
        coid, name = row["client_order_id"], row["connection"]
        quantity = to_float(row["quantity"])
        base = {"client_order_id": coid, "connection": name, "account": row["account"],
                "symbol": row["symbol"], "side": row["side"], "quantity": quantity}
        try:
            adapter = await self._brokerage.connected_adapter_async(name)
            found = await asyncio.wait_for(adapter.lookup_async(coid), submit.LOOKUP_TIMEOUT)
        except Exception as exc:  # unknown still: the next pass asks again
            why = str(exc) or type(exc).__name__
            return OrderResult(OrderStatus.UNCERTAIN, reason=f"still unresolved: {why}", **base)
        book = self._journal.book
        if found is None:
            since = row["sent_at"] or row["created_at"]
            if not submit.not_placed(since, now, submit.NOT_PLACED_AFTER):
                return OrderResult(OrderStatus.UNCERTAIN, **base, reason=uncertain_reason(
                    coid, name, "not shown by the broker yet"))
            reason = f"{name} has no order {coid} {submit.NOT_PLACED_AFTER:g} s after it was " \
                     f"sent: it was not placed (the process stopped before or while sending " \
                     f"it, or the broker never received it)"
            await self._journal.db(book.record_ack, coid, status="ERROR", reason=reason)
            await self._journal.db(book.audit, "recover_order", coid, {"found": False},
                                   "ERROR")
            return OrderResult(OrderStatus.ERROR, reason=reason, **base)
        fields: dict[str, Any] = {"status": found.status.value,
                                  "broker_order_id": found.order_id,
                                  "filled_quantity": found.filled_quantity,
                                  "avg_fill_price": found.avg_fill_price}
        if found.reason:
            fields["reason"] = found.reason
        await self._journal.db(book.record_ack, coid, **fields)
        await self._journal.db(book.audit, "recover_order", coid,
                               {"found": True, "order_id": found.order_id},
                               found.status.value)
        self._found(name, found)
        return result_of(found, name, row["account"], row["symbol"], row["side"], quantity)

    # -- the periodic pass ----------------------------------------------------------------
    def start(self, owner: object, alive: Callable[[object], bool]) -> None:
        """Run a pass now and every RECOVER_EVERY seconds on the runtime loop (call it
        there) while `alive(owner)` holds and `owner` is not garbage-collected, skipping
        passes while the brokerage is closed; `stop()` ends it."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                _periodic(weakref.ref(self), weakref.ref(owner), alive),
                name="brokerkit-recovery")

    @property
    def ready(self) -> bool:
        """Whether a periodic pass may run now: not while the brokerage is closed (a pass
        would connect it again)."""
        return not self._brokerage.closed

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def _periodic(recovery: weakref.ref[Recovery], owner: weakref.ref[object],
                    alive: Callable[[object], bool]) -> None:
    """The recovery loop; it holds neither the recovery nor its owner between passes, so a
    service dropped without `close()` does not live on through it."""
    while True:
        rec, who = recovery(), owner()
        if rec is None or who is None or not alive(who):
            return
        if rec.ready:
            try:
                done = await rec.recover_async(RECOVER_MIN_AGE)
            except Exception as exc:  # the book or a broker is down: the next pass tries
                log.warning("recovering unresolved orders failed: %s", exc)
            else:
                settled = [r for r in done if r.status is not OrderStatus.UNCERTAIN]
                if settled:
                    log.info("recovery settled %d order(s)", len(settled))
        del rec, who
        await asyncio.sleep(RECOVER_EVERY)


def _utc(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
