"""`TicketView`: the order ticket as a Panel component, with preview and explicit confirm.

Fields edit an `OrderTicket`; **Preview** runs every pre-trade check and shows what passed and
what failed, the estimated notional, the buying power after and, for brokers that compute it
(IBKR), the margin impact; **Place order** asks for
confirmation, and only **Confirm** sends it. Any edit invalidates the preview.

Given an `Access` (the session's user and role), **Confirm** checks again that the user may
trade, and places the order as that user (`acting_as`), so the journal says who sent it.

In a notebook the widgets change on the kernel loop that displayed the ticket only
(`NotebookReady.on_display_loop`): `ticket.preview()` in a cell changes the ticket on
brokerkit's runtime thread, and JupyterLab delivers button clicks on a comm subshell thread;
both hand their widget changes to that loop, so the browser gets them in order.
"""

from __future__ import annotations

import asyncio
from typing import Any

import panel as pn
import param

from ..book.actor import acting_as
from ..execution.ticket import OrderTicket
from .auth import Access, NotAuthorized
from .resources import NotebookReady, ensure_extension

__all__ = ["TicketView", "render_margin", "render_preview", "render_result"]


def _money(value: float | None, ccy: str | None = "") -> str:
    return "-" if value is None else f"{value:,.2f} {ccy or ''}".strip()


def render_margin(impact: Any) -> str:
    """Markdown for a what-if frame (`frames.WHAT_IF`): margin before → after, and the
    commission; empty when the broker gave none."""
    if impact is None or not len(impact):
        return ""
    r = impact.iloc[0]
    ccy = r["currency"]
    text = (f"Margin (broker what-if): initial {_money(r['initial_margin_before'], ccy)} → "
            f"{_money(r['initial_margin_after'], ccy)} "
            f"({r['initial_margin_change']:+,.2f}) · maintenance "
            f"{_money(r['maintenance_margin_before'], ccy)} → "
            f"{_money(r['maintenance_margin_after'], ccy)}")
    if r["commission"] == r["commission"]:
        text += f" · commission ≈ {_money(r['commission'], r['commission_currency'])}"
    if r["warning"]:
        text += f"\n\n⚠️ {r['warning']}"
    return text


def render_preview(preview: Any, margin_impact: Any = None) -> str:
    """Markdown for a `Preview`: the route, each violation, the estimates, and the broker's
    margin impact when it computes one."""
    if preview is None:
        return "*Preview the order to run the pre-trade checks.*"
    lines = [f"**{'Ready to place' if preview.ok else 'Would be REJECTED'}** "
             f"&nbsp; trading state: `{preview.trading_state}`"]
    if preview.connection:
        lines.append(f"Route: `{preview.connection}` / `{preview.account}`")
    lines.append(f"Price {_money(preview.price, preview.currency)} · quantity "
                 f"{'-' if preview.quantity is None else f'{preview.quantity:,.6g}'} · "
                 f"notional {_money(preview.notional, preview.currency)}")
    lines.append(f"Buying power {_money(preview.buying_power, preview.currency)} → after "
                 f"{_money(preview.buying_power_after, preview.currency)}")
    margin = render_margin(margin_impact)
    if margin:
        lines.append(margin)
    for v in preview.violations:
        lines.append(f"- ❌ `{v.code}`: {v.message}")
    if preview.ok:
        lines.append("- ✅ " + ", ".join(preview.checks_passed))
    return "\n\n".join(lines)


def render_result(result: Any) -> str:
    if result is None:
        return ""
    head = {"FILLED": "✅", "PARTIALLY_FILLED": "✅", "ACCEPTED": "🟢", "UNCERTAIN": "⚠️"}.get(
        result.status.value, "⛔")
    text = f"{head} **{result.status.value}**"
    if result.order_id:
        text += f" · order `{result.order_id}`"
    if result.filled_quantity:
        text += f" · filled {result.filled_quantity:g} @ {result.avg_fill_price:,.4f}"
    if result.reason:
        text += f"\n\n{result.reason}"
    return text


class TicketView(NotebookReady, pn.viewable.Viewer):
    """The order ticket, renderable in a notebook or a served app (in a notebook it loads
    Panel's front end itself, inlined: `brokerkit.ui.resources`)."""

    ticket = param.ClassSelector(class_=OrderTicket)
    confirming = param.Boolean(default=False, doc="the confirmation prompt is showing")

    def __init__(self, ticket: OrderTicket | None = None, *, access: Access | None = None,
                 **params: Any) -> None:
        super().__init__(ticket=ticket or OrderTicket(), **params)
        ensure_extension()  # in a notebook: Panel's front end, inlined, before any display
        self.access = access
        t = self.ticket
        self._form = pn.Param(
            t, parameters=["symbol", "side", "quantity", "notional", "order_type",
                           "limit_price", "stop_price", "time_in_force", "connection",
                           "account"],
            show_name=False, widgets={"side": pn.widgets.RadioButtonGroup,
                                      "order_type": pn.widgets.Select})
        self._preview_btn = pn.widgets.Button(label="Preview", color="primary",
                                              css_classes=["btn-preview"])
        self._place_btn = pn.widgets.Button(label="Place order", color="success",
                                            css_classes=["btn-place"], disabled=True)
        self._confirm_btn = pn.widgets.Button(label="Confirm", color="danger",
                                              css_classes=["btn-confirm"])
        self._cancel_btn = pn.widgets.Button(label="Cancel", css_classes=["btn-cancel"])
        self._prompt = pn.pane.Markdown("")
        self._confirm_row = pn.Column(self._prompt, pn.Row(self._confirm_btn, self._cancel_btn),
                                      visible=False, css_classes=["ticket-confirm"])
        self._preview_pane = pn.pane.Markdown(render_preview(None),
                                              css_classes=["ticket-preview"])
        self._result_pane = pn.pane.Markdown("", css_classes=["ticket-result"])
        self._preview_btn.on_click(self._on_preview)
        self._place_btn.on_click(self._on_place)
        self._confirm_btn.on_click(self._on_confirm)
        self._cancel_btn.on_click(self._on_cancel)
        t.param.watch(self._on_ticket_change, ["preview_result", "result", "busy"])
        self._layout = pn.Column(
            "### Order ticket", self._form, pn.Row(self._preview_btn, self._place_btn),
            self._confirm_row, self._preview_pane, self._result_pane, width=420)

    def _on_ticket_change(self, *_: Any) -> None:
        """The ticket changed (on whichever thread ran it): show it from the display loop."""
        self.on_display_loop(self._sync)

    def _sync(self) -> None:
        """The widgets from the ticket's state as it is now (so queued calls agree)."""
        t = self.ticket
        self._preview_pane.object = render_preview(t.preview_result, t.margin_impact)
        self._result_pane.object = render_result(t.result)
        self._place_btn.disabled = t.busy or not t.can_confirm
        self._preview_btn.disabled = t.busy
        self._layout.loading = t.busy
        if not t.can_confirm:
            self._confirm_row.visible = False

    async def _execution(self) -> None:
        """Create the ticket's execution service (if it has none yet) in a worker thread: its
        creation opens the book and may start the sandbox, which must not hold up Panel's
        event loop or the kernel's."""
        await asyncio.to_thread(lambda: self.ticket.execution)

    # The buttons' handlers: each runs on the display loop (`run_on_display_loop`), wherever
    # the front end's click was received.
    async def _on_preview(self, _: Any) -> None:
        await self.run_on_display_loop(self._preview)

    async def _on_place(self, _: Any) -> None:
        await self.run_on_display_loop(self._place)

    async def _on_confirm(self, _: Any) -> None:
        await self.run_on_display_loop(self._confirm)

    async def _on_cancel(self, _: Any) -> None:
        await self.run_on_display_loop(self._cancel)

    async def _preview(self) -> None:
        await self._execution()
        await self.ticket.preview_async()

    async def _place(self) -> None:
        if self.ticket.can_confirm:
            self._prompt.object = f"**Send {self.ticket.summary()}?**"
            self._confirm_row.visible = True

    async def _confirm(self) -> None:
        self._confirm_row.visible = False
        await self._execution()
        if self.access is None:
            await self.ticket.confirm_async()
            return
        try:
            user = self.access.require("trade")
        except NotAuthorized as exc:
            self._result_pane.object = f"⛔ **NOT AUTHORIZED**\n\n{exc}"
            return
        with acting_as(user):
            await self.ticket.confirm_async()

    async def _cancel(self) -> None:
        self._confirm_row.visible = False

    def __panel__(self) -> pn.viewable.Viewable:
        self.bind_display_loop()  # in a notebook: changes go out from this loop only
        return self._layout
