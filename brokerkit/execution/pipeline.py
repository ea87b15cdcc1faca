"""The pipeline's steps before the submit: validate, route, check, and the journal row.

`Pipeline.prepare(intent)` routes a validated `OrderIntent` (explicit connection, else the
account's connection, else the asset-class default; read-only connections never route),
gathers the checks' inputs (`inputs.CheckInputs`) and runs every pre-trade check
(`risk.run_checks`, then the adapter's own `check_intent`), reporting every violation. Nothing
here writes to the book or sends anything: the service journals and submits what passes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..adapters import Adapter, BrokerOrder
from ..errors import AdapterError
from ..model import AssetClass, OrderIntent, OrderResult, OrderStatus, Violation, reason_of
from .inputs import CheckInputs, Inputs, decimal_of, needs_margin_preview, quote_price
from .killswitch import StateView
from .limits import RiskLimits
from .ratelimit import RateLimiter
from .risk import CheckContext, DuplicateDetector, InstrumentFacts, intent_fingerprint, run_checks
from .routing import Route, RouteTarget, RoutingTable, route

if TYPE_CHECKING:
    from ..book.feed import BrokerFeed
    from ..service import BrokerageService

__all__ = ["Pipeline", "PreparedOrder", "Preview", "new_client_order_id", "reason_of",
           "result_of"]


def new_client_order_id() -> str:
    """A fresh client order id: `bk-` and 24 hex digits (unique, safe at every broker)."""
    return f"bk-{uuid.uuid4().hex[:24]}"


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
class PreparedOrder:
    """One order that was routed and checked, on its way to the journal and the broker."""

    intent: OrderIntent
    route: Route
    adapter: Adapter
    ctx: CheckContext
    instrument: str
    currency: str
    violations: list[Violation]
    fingerprint: str = ""  # of the intent at its connection and account (duplicate check)

    @property
    def quantity(self) -> float | None:
        """The quantity to report: the intent's, else the one estimated from a notional."""
        q = self.intent.quantity
        return to_float(self.ctx.quantity) if q is None else float(q)

    def journal_row(self) -> tuple[str, OrderIntent, dict[str, Any]]:
        """The client order id, the intent as sent, and the order's journal row."""
        intent, ctx = self.intent, self.ctx
        coid = intent.client_order_id or new_client_order_id()
        sent = intent.routed(coid, ctx.connection, ctx.account, ctx.asset_class)
        row = {
            "client_order_id": coid, "connection": ctx.connection, "account": ctx.account,
            "instrument": self.instrument, "symbol": intent.symbol,
            "asset_class": ctx.asset_class.value, "side": intent.side.value,
            "order_type": intent.order_type.value, "quantity": intent.quantity,
            "notional": intent.notional, "limit_price": intent.limit_price,
            "stop_price": intent.stop_price, "time_in_force": intent.time_in_force.value,
            "intent": sent.to_dict(),
        }
        return coid, sent, row

    def guard(self) -> Callable[[Any], str | None]:
        """The check the journal runs on the trading state it reads in its own transaction."""
        increases = self.ctx.increases_position

        def guard(state: Any) -> str | None:
            view = StateView.of(state)
            if view.state == "HALTED":
                return f"trading is HALTED: {view.reason}"
            if view.state == "REDUCING" and increases is not False:
                return f"trading is REDUCING ({view.reason}): the order does not reduce " \
                       f"the position"
            return None

        return guard

    def answer(self, ack: BrokerOrder) -> OrderResult:
        """The caller's answer for the broker's acknowledgement of this order."""
        return result_of(ack, self.ctx.connection, self.ctx.account, self.intent.symbol,
                         self.intent.side.value, self.quantity)

    def refused(self, violations: tuple[Violation, ...], coid: str | None) -> OrderResult:
        """The caller's REJECTED answer for this order."""
        return OrderResult(OrderStatus.REJECTED, reason=reason_of(violations),
                           violations=violations, client_order_id=coid,
                           connection=self.ctx.connection, account=self.ctx.account,
                           symbol=self.intent.symbol, side=self.intent.side.value,
                           quantity=to_float(self.ctx.quantity))


class Pipeline:
    """Route and check orders for one `ExecutionService` (see the module doc)."""

    def __init__(self, brokerage: BrokerageService, routing: RoutingTable, limits: RiskLimits,
                 inputs: CheckInputs, feed: BrokerFeed, duplicates: DuplicateDetector,
                 limiter: Callable[[str, Adapter], RateLimiter]) -> None:
        self.brokerage = brokerage
        self.routing = routing
        self.limits = limits
        self.inputs = inputs
        self.duplicates = duplicates
        self._feed = feed
        self._limiter = limiter

    def targets(self) -> dict[str, RouteTarget]:
        """Every connection that has an adapter, as routing sees it."""
        out = {}
        for name in self.brokerage.connections:
            try:
                adapter = self.brokerage.adapter(name)
            except Exception:
                continue
            out[name] = RouteTarget.of(adapter.config, adapter.capabilities, adapter.accounts)
        return out

    def trading_connections(self) -> list[str]:
        return [n for n, t in self.targets().items() if t.trading]

    async def prepare(self, intent: OrderIntent, preview: bool = False
                      ) -> PreparedOrder | Violation:
        """Route the intent, gather everything the checks need and run them; the routing
        refusal (`NO_ROUTE`) when it has nowhere to go."""
        chosen = route(intent, self.routing, self.targets())
        if isinstance(chosen, Violation):
            return chosen
        try:
            adapter = await self.brokerage.connected_adapter_async(chosen.connection)
        except AdapterError as exc:
            return Violation("NO_ROUTE", f"{chosen.connection} is unavailable: {exc}")
        if self._feed.pending(chosen.connection):  # a fresh book opens before its first order
            await self._feed.open_async([chosen.connection])
        account = chosen.account or _default_account(chosen.connection, adapter)
        inputs = None if preview else self.inputs.now(chosen.connection, adapter,
                                                      intent.symbol)
        if inputs is None:  # something to fetch: all of it at once
            inputs = await self.inputs.gather(chosen.connection, adapter, intent.symbol,
                                              fresh_state=preview)
        ac, limits = self._order_limits(intent, chosen, inputs[0])
        exposure = await self.inputs.gross_exposure() if limits.max_gross_exposure else None
        margin = await self.inputs.margin_required(
            adapter, intent, account, (inputs[0] or {}).get("currency") or intent.currency
            or "USD") if needs_margin_preview(ac, intent) else None
        return self._checked(intent, chosen, adapter, account, inputs, ac, limits, exposure,
                             margin)

    def _order_limits(self, intent: OrderIntent, chosen: Route,
                      facts_row: Mapping[str, Any] | None) -> tuple[AssetClass, Any]:
        """The order's asset class (the broker's facts win over the route's guess) and the
        risk limits that apply to it."""
        ac = chosen.asset_class
        if facts_row is not None:
            ac = intent.asset_class or AssetClass.parse(facts_row["asset_class"])
        return ac, self.limits.for_order(chosen.connection, ac, intent.symbol)

    def _checked(self, intent: OrderIntent, chosen: Route, adapter: Adapter, account: str,
                 inputs: Inputs, ac: AssetClass, limits: Any, exposure: Decimal | None,
                 margin: Decimal | None = None) -> PreparedOrder:
        """Run every pre-trade check on the gathered inputs (no await, no I/O); `margin` is
        the initial margin the order adds, from the connection's preview, where asked."""
        facts_row, quote, hours, (positions, balances), types, state = inputs
        name = chosen.connection
        instrument = facts_row["instrument"] if facts_row else f"?:{intent.symbol}"
        currency = (facts_row or {}).get("currency") or intent.currency or "USD"
        limiter = self._limiter(name, adapter)
        base = self.brokerage.base_currency
        try:
            fx = Decimal(repr(self.brokerage.fx.rate(currency, base)))
        except Exception:
            fx = None
        # only when duplicates are looked for (`duplicate_window_seconds` > 0)
        fingerprint = intent_fingerprint(intent, name, account) \
            if self.duplicates.window else ""
        ctx = CheckContext(
            intent=intent, connection=name, account=account, asset_class=ac,
            limits=limits, trading_state=state.state,
            position=self.inputs.position(name, positions, account, instrument),
            price=quote_price(quote), currency=currency, base_currency=base, fx_to_base=fx,
            gross_exposure=exposure,
            buying_power=self.inputs.buying_power(name, balances, account, currency),
            instrument=_facts(facts_row), market_open=hours, account_type=types.get(account),
            within_rate_limit=limiter.wait_time() == 0.0 or limits.on_rate_limit == "wait",
            rate_limit=str(limiter),
            duplicate=bool(fingerprint) and self.duplicates.seen(fingerprint),
            margin_required=margin,
        )
        violations = [_with_state(v, state) for v in run_checks(ctx)]
        violations += adapter.check_intent(intent, facts_row)
        return PreparedOrder(intent, chosen, adapter, ctx, instrument, currency, violations,
                             fingerprint)


def _default_account(connection: str, adapter: Adapter) -> str:
    accounts = adapter.accounts
    if not accounts:
        raise AdapterError(connection, "no account known; name one in the order")
    return accounts[0]


def to_float(value: Decimal | float | None) -> float | None:
    return None if value is None else float(value)


def _facts(row: Mapping[str, Any] | None) -> InstrumentFacts:
    if row is None:
        return InstrumentFacts()
    mult = decimal_of(row.get("multiplier"))
    return InstrumentFacts(tradable=bool(row["tradable"]), fractionable=bool(row["fractionable"]),
                           shortable=bool(row["shortable"]),
                           min_quantity=decimal_of(row.get("min_quantity")),
                           multiplier=mult if mult and mult > 0 else Decimal(1))


def _with_state(v: Violation, state: StateView) -> Violation:
    """Name who changed the trading state and why, on the violations it causes."""
    if v.code in ("TRADING_HALTED", "REDUCE_ONLY_WOULD_INCREASE_POSITION") \
            and state.state != "ACTIVE" and state.reason:
        return Violation(v.code, f"{v.message} [{state.state} by {state.actor}: {state.reason}]")
    return v


def result_of(ack: BrokerOrder, connection: str, account: str | None, symbol: str | None,
              side: str | None, quantity: float | None) -> OrderResult:
    """The caller's answer for a broker's view of an order."""
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
