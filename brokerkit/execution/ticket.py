"""`OrderTicket`: an order being written, previewed and confirmed, as param state (no Panel).

The ticket holds the fields of an order as typed parameters. `preview()` runs the whole
pipeline except the submit and keeps the answer; `confirm()` places the order only if a preview
of exactly these fields passed and nothing changed since: any edit invalidates the preview. The
Panel view (`brokerkit.ui.ticket.TicketView`) is a thin layer over this object, so the same
rules hold in a notebook, in a served dashboard and in tests.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import param

from .. import runtime
from ..model import OrderResult, OrderStatus, OrderType, TimeInForce, Violation

if TYPE_CHECKING:
    from .service import ExecutionService, Preview

__all__ = ["OrderTicket"]

_FIELDS = ("symbol", "side", "quantity", "notional", "order_type", "limit_price", "stop_price",
           "time_in_force", "connection", "account")


class OrderTicket(param.Parameterized):
    """An order ticket: fields, the latest preview, and the result of a confirmed order."""

    symbol = param.String(default="AAPL", doc="symbol, e.g. AAPL, BTC/USD, EUR.USD")
    side = param.Selector(default="buy", objects=["buy", "sell"])
    quantity = param.Number(default=1.0, allow_None=True, bounds=(0, None),
                            doc="units; leave empty to trade a notional amount")
    notional = param.Number(default=None, allow_None=True, bounds=(0, None),
                            doc="amount in the instrument's currency, instead of a quantity")
    order_type = param.Selector(default="market", objects=[t.value for t in OrderType])
    limit_price = param.Number(default=None, allow_None=True, bounds=(0, None))
    stop_price = param.Number(default=None, allow_None=True, bounds=(0, None))
    time_in_force = param.Selector(default="day", objects=[t.value for t in TimeInForce])
    connection = param.String(default=None, allow_None=True,
                              doc="route to this connection (default: the routing rules)")
    account = param.String(default=None, allow_None=True)

    preview_result = param.Parameter(default=None, doc="the latest Preview, or None")
    margin_impact = param.Parameter(default=None, doc="the routed broker's what-if frame "
                                    "(`frames.WHAT_IF`: margin before, change and after) for "
                                    "the previewed order, when the broker computes one (IBKR)")
    result = param.Parameter(default=None, doc="the latest OrderResult, or None")
    busy = param.Boolean(default=False, doc="a preview or an order is on its way")

    def __init__(self, execution: ExecutionService | None = None, **params: Any) -> None:
        super().__init__(**params)
        self._execution = execution
        self._previewed: dict[str, Any] | None = None

    @property
    def execution(self) -> ExecutionService:
        if self._execution is None:
            from .service import get_execution_service

            self._execution = get_execution_service()
        return self._execution

    def intent(self) -> dict[str, Any]:
        """The ticket's fields as an intent dict (empty fields left out)."""
        out: dict[str, Any] = {}
        for name in _FIELDS:
            value = getattr(self, name)
            if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
                continue
            out[name] = value
        return out

    @param.depends(*_FIELDS, watch=True)
    def _invalidate(self) -> None:
        """Any edit makes the preview stale: it must be previewed again before confirming."""
        self._previewed = None
        self.preview_result = None
        self.margin_impact = None

    @property
    def can_confirm(self) -> bool:
        """True when a preview of exactly the current fields passed every check."""
        p = self.preview_result
        return p is not None and p.ok and self._previewed == self.intent()

    def summary(self) -> str:
        """One line describing the order, for a confirmation prompt."""
        i = self.intent()
        size = f"{i['quantity']:g}" if "quantity" in i else f"{i.get('notional', 0):g} worth of"
        price = {"limit": f" limit {i.get('limit_price')}", "stop": f" stop {i.get('stop_price')}",
                 "stop_limit": f" stop {i.get('stop_price')} limit {i.get('limit_price')}"
                 }.get(i.get("order_type", "market"), " at market")
        p = self.preview_result
        where = f" on {p.connection} / {p.account}" if p is not None and p.connection else ""
        return f"{i.get('side', '?').upper()} {size} {i.get('symbol', '?')}{price}" \
               f" ({i.get('time_in_force', 'day').upper()}){where}"

    async def preview_async(self) -> Preview:
        """Run every check for the current fields and keep the answer."""
        intent = self.intent()
        self.busy = True
        try:
            preview = await self.execution.preview_async(intent)
        finally:
            self.busy = False
        impact = await self._margin_impact(intent, preview) if preview.ok else None
        if self.intent() == intent:  # not edited while we waited
            self._previewed = intent  # before the result: watchers read can_confirm
            self.margin_impact = impact
            self.preview_result = preview
        return preview

    async def _margin_impact(self, intent: dict[str, Any], preview: Preview) -> Any:
        """The routed broker's what-if for the order (IBKR's margin preview), or None when
        the broker has none or cannot answer now (the preview stands on its own)."""
        if not preview.connection:
            return None
        from ..errors import BrokerkitError

        try:
            adapter = await self.execution.brokerage.connected_adapter_async(
                preview.connection)
            what_if = getattr(adapter, "what_if_async", None)
            if what_if is None:
                return None
            return await what_if({**intent, "account": preview.account})
        except BrokerkitError:
            return None

    async def confirm_async(self) -> OrderResult:
        """Place the previewed order. Refused (REJECTED, nothing sent) unless `can_confirm`."""
        if not self.can_confirm:
            why = ("preview the order first" if self.preview_result is None else
                   "the preview did not pass" if not self.preview_result.ok else
                   "the ticket changed since the preview: preview again")
            result = OrderResult(OrderStatus.REJECTED, reason=f"NOT_CONFIRMED: {why}",
                                 violations=(Violation("NOT_CONFIRMED", why),),
                                 symbol=self.symbol)
            self.result = result
            return result
        intent = self.intent()
        self.busy = True
        try:
            result = await self.execution.place_order_async(intent)
            # the journal holds the broker's answer before the ticket shows it (a blotter
            # refreshed on the result reads the book): the service records it after answering
            await self.execution.flush_async()
        finally:
            self.busy = False
        self._previewed = None  # one confirmation, one order
        self.preview_result = None
        self.margin_impact = None
        self.result = result
        return result

    def preview(self) -> Preview:
        return runtime.run(self.preview_async())

    def confirm(self) -> OrderResult:
        return runtime.run(self.confirm_async())
