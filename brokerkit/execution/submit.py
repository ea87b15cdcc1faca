"""The submit of one journaled order, as a small state machine that never calls a live order
dead.

::

    JOURNALED --send--> SENT --answer--> ACKNOWLEDGED  (the broker's status: ACCEPTED, FILLED...)
                             --refusal-> REJECTED      (the broker said no)
                             --fault---> UNCERTAIN     (a timeout, a dropped connection, a 5xx:
                                                        `SubmitUncertain`, or any other error)
    UNCERTAIN --lookup finds it--> ACKNOWLEDGED
              --deadline passed and the broker says "no such order"--> not placed

A submit is never sent twice. An UNCERTAIN order is looked up by client order id with backoff
(`LOOKUP_BACKOFF`): the caller waits at most `ANSWER_WITHIN` seconds for the broker to show
it, then gets the order's own status, `UNCERTAIN`, with its client order id and what to do.
The journal row stays UNCERTAIN; the service's periodic recovery (`recovery`) keeps looking
it up, and only a broker answer that it has no such order, `NOT_PLACED_AFTER` seconds after it
was sent, makes it "not placed" (a broker may place an order it received late: a proxy, a
queue). Every transition is written to the journal row, never over an answer that is already
there (`Book.record_ack`): SENT and UNCERTAIN before the broker's status.

Each outcome also tells the connection's health (`BrokerageService.note_trading`): a submit
fault or the broker's rate-limit pushback marks it degraded with the error; an answer clears
it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..adapters import Adapter, BrokerOrder
from ..model import OrderIntent, OrderStatus

__all__ = [
    "ANSWER_WITHIN",
    "LOOKUP_BACKOFF",
    "NOT_PLACED_AFTER",
    "SUBMIT_TIMEOUT",
    "Submission",
    "SubmitState",
    "Submitter",
    "is_pushback",
    "lookup_with_backoff",
    "not_placed",
    "uncertain_reason",
]

log = logging.getLogger("brokerkit.execution")

#: Seconds a submit may take before the order is UNCERTAIN (adapters give up sooner: their
#: own request timeouts raise `SubmitUncertain`).
SUBMIT_TIMEOUT = 15.0
#: Waits between lookups of an UNCERTAIN order (the last one repeats).
LOOKUP_BACKOFF = (0.1, 0.2, 0.5, 1.0, 2.0)
#: Seconds one lookup may take.
LOOKUP_TIMEOUT = 10.0
#: Seconds of lookups a waiting caller gets after an uncertain submit before it is answered
#: UNCERTAIN (the order is resolved in the background after that).
ANSWER_WITHIN = 5.0
#: Seconds after an order was sent (or journaled, when the send time is unknown) after which
#: the broker's answer "no such order" proves it was never placed. Longer than any broker
#: takes to place an order it received: before that, a miss only means "not yet".
NOT_PLACED_AFTER = 20.0


class SubmitState(enum.StrEnum):
    """Where one order's submit stands (the journal row's status before the broker's)."""

    JOURNALED = "JOURNALED"
    SENT = "SENT"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    REJECTED = "REJECTED"
    UNCERTAIN = "UNCERTAIN"


@dataclass
class Submission:
    """One journaled order's submit: its state, and what the broker answered."""

    client_order_id: str
    connection: str
    state: SubmitState = SubmitState.JOURNALED
    sent_at: datetime | None = None
    ack: BrokerOrder | None = None
    error: str = ""  # the fault that made it UNCERTAIN
    #: records the broker's answer (journal, cached state, fill pull)
    acknowledged: Callable[[Submission, BrokerOrder], None] = field(
        default=lambda _s, _a: None, repr=False)

    @property
    def resolved(self) -> bool:
        return self.state in (SubmitState.ACKNOWLEDGED, SubmitState.REJECTED)


def is_pushback(text: str) -> bool:
    """Whether a broker's refusal is its rate limit pushing back (HTTP 429, a request limit
    used up), not a verdict on the order."""
    low = text.lower()
    return "http 429" in low or "request limit" in low or "rate limit" in low \
        or "too many requests" in low


def uncertain_reason(coid: str, connection: str, why: str) -> str:
    """The reason given with an UNCERTAIN answer: what happened and what to do."""
    return (f"the broker's answer to order {coid} was lost ({why}) and {connection} has not "
            f"shown the order yet: it may be live. Do not place it again; brokerkit keeps "
            f"looking it up by client order id {coid} and records the broker's status in the "
            f"journal (the blotter shows it), or look it up yourself with "
            f"recover() / the broker's order list")


async def lookup_with_backoff(adapter: Adapter, coid: str, until: float) -> BrokerOrder | None:
    """Look `coid` up at `adapter` (never send it again) until the broker shows it or the
    monotonic time `until` passes; None when it has not shown it by then (a miss, or no
    answer)."""
    delays = iter(LOOKUP_BACKOFF)
    while True:
        try:
            found = await asyncio.wait_for(adapter.lookup_async(coid), LOOKUP_TIMEOUT)
        except Exception as exc:  # the lookup failed: try again, it never sends anything
            log.info("lookup of %s at %s failed: %s", coid, adapter.name, exc)
        else:
            if found is not None:
                return found
        delay = next(delays, LOOKUP_BACKOFF[-1])
        if time.monotonic() + delay > until:
            return None
        await asyncio.sleep(delay)


class Submitter:
    """Runs the submit state machine for a service; the service supplies where transitions
    go: `journal(coid, fields)` queues a journal update that never overwrites an answer, and
    `health(connection, error)` tells the connection's health (None: fine)."""

    def __init__(self, journal: Callable[[str, dict[str, Any]], None],
                 health: Callable[[str, str | None], None]) -> None:
        self._journal = journal
        self._health = health

    async def submit(self, adapter: Adapter, sent: OrderIntent, coid: str,
                     acknowledged: Callable[[Submission, BrokerOrder], None],
                     gate: contextlib.AbstractAsyncContextManager[Any] | None = None
                     ) -> Submission:
        """Send the journaled order once and follow it to ACKNOWLEDGED, REJECTED or
        UNCERTAIN (after up to ANSWER_WITHIN seconds of lookups); `acknowledged(submission,
        answer)` records the broker's answer. A caller that stops waiting (a cancelled task)
        leaves the row SENT: recovery looks it up. `gate` is held around the send itself (not
        the lookups): the send gate, whose refusal (`TradingStateChanged`) is raised before
        anything is sent or journaled as sent."""
        sub = Submission(coid, adapter.name, acknowledged=acknowledged)
        async with contextlib.AsyncExitStack() as held:
            if gate is not None:
                await held.enter_async_context(gate)
            sub.sent_at = datetime.now(UTC)
            sub.state = SubmitState.SENT
            self._journal(coid, {"status": "SENT", "sent_at": sub.sent_at})
            try:
                async with asyncio.timeout(SUBMIT_TIMEOUT):  # no extra task, unlike wait_for
                    ack = await adapter.submit_async(sent, coid)
            except TimeoutError:
                why = f"no answer within {SUBMIT_TIMEOUT:g} s"
            except Exception as exc:  # SubmitUncertain, a dropped connection, any other error
                why = str(exc) or type(exc).__name__
            else:
                self._answered(sub, ack)
                return sub
        return await self._uncertain(sub, adapter, why)

    def _answered(self, sub: Submission, ack: BrokerOrder) -> None:
        """SENT or UNCERTAIN -> ACKNOWLEDGED or REJECTED, with the broker's answer."""
        if sub.resolved:
            return
        sub.ack = ack
        sub.state = SubmitState.REJECTED if ack.status is OrderStatus.REJECTED \
            else SubmitState.ACKNOWLEDGED
        pushback = sub.state is SubmitState.REJECTED and is_pushback(ack.reason)
        self._health(sub.connection, f"rate limit: {ack.reason}" if pushback else None)
        sub.acknowledged(sub, ack)

    async def _uncertain(self, sub: Submission, adapter: Adapter, why: str) -> Submission:
        """SENT -> UNCERTAIN: the broker may or may not have the order. Look it up (never
        send it again) for up to `answer_within` seconds."""
        sub.state, sub.error = SubmitState.UNCERTAIN, why
        log.warning("submit of %s to %s uncertain (%s): looking it up", sub.client_order_id,
                    sub.connection, why)
        self._health(sub.connection, f"submit failed: {why}")
        self._journal(sub.client_order_id, {"status": "UNCERTAIN", "sent_at": sub.sent_at,
                                            "reason": f"submit uncertain: {why}"})
        found = await lookup_with_backoff(adapter, sub.client_order_id,
                                          time.monotonic() + ANSWER_WITHIN)
        if found is not None:
            self._answered(sub, found)
        return sub


def not_placed(sent_or_journaled: datetime | None, now: datetime,
               after: float = NOT_PLACED_AFTER) -> bool:
    """Whether a broker's "no such order" proves the order was never placed: only once
    `after` seconds have passed since it was sent (or journaled)."""
    if sent_or_journaled is None:
        return False
    when = sent_or_journaled if sent_or_journaled.tzinfo else \
        sent_or_journaled.replace(tzinfo=UTC)
    return (now - when).total_seconds() >= after

