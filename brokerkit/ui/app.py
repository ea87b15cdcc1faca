"""The dashboard: `create_app(role=...)` arranges brokerkit's components into pages.

Pages: **Overview** (connection status and balances), **Positions**, **Reconciliation**,
**Settlement**, **Trade** (order ticket,
blotter, kill switch). What a page offers follows the role (`brokerkit.ui.auth`): a viewer
sees no ticket and no kill-switch controls. `create_app()` returns a `Viewer`: in a notebook it
shows the pages as tabs; `.servable()` under `panel serve` wraps them in a template. Build one
app per session (each has its own widgets and its own live refresh): `brokerkit serve` does.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import panel as pn
import param

from .auth import ROLES, Access
from .balances import BalancesView
from .blotter import BlotterView
from .killswitch import KillSwitchView
from .live import LiveView, served
from .positions import PositionsView
from .reconcile import ReconciliationView
from .settlement import SettlementView
from .status import StatusView
from .ticket import TicketView

if TYPE_CHECKING:
    from ..execution.service import ExecutionService
    from ..service import BrokerageService

__all__ = ["BrokerkitApp", "create_app"]

TITLE = "brokerkit"


class BrokerkitApp(pn.viewable.Viewer):
    """Every page of the dashboard, for one session and one user."""

    role = param.Selector(default="admin", objects=list(ROLES), constant=True)
    user = param.String(default="", constant=True)

    def __init__(self, *, access: Access, brokerage: BrokerageService | None = None,
                 execution: ExecutionService | None = None, **params: Any) -> None:
        super().__init__(role=access.role, user=access.user, **params)
        self.access = access
        book = execution.book if execution is not None else None
        ks = execution.killswitch if execution is not None else None
        # every view starts when its page is first shown: the overview's together, at once
        self.status = StatusView(brokerage, autostart=False)
        self.balances = BalancesView(brokerage, autostart=False)
        self.positions = PositionsView(brokerage, autostart=False)
        self.blotter = BlotterView(book, autostart=False)
        self.killswitch = KillSwitchView(ks, access=access, autostart=False)
        reconciler = None
        if brokerage is not None or book is not None:
            from ..post_trade.runs import Reconciler

            reconciler = Reconciler(brokerage, book)
        self.reconciliation = ReconciliationView(reconciler, access=access, autostart=False)
        self.settlement = SettlementView(brokerage, autostart=False)
        self.ticket: TicketView | None = None
        if access.can("trade"):
            from ..execution.ticket import OrderTicket

            self.ticket = TicketView(OrderTicket(execution), access=access)
            self.ticket.ticket.param.watch(self._on_result, "result")
        trade = pn.Row(
            *([self.ticket] if self.ticket is not None else []),
            pn.Column(self.killswitch, self.blotter, sizing_mode="stretch_width"),
            sizing_mode="stretch_width")
        self.pages: dict[str, pn.viewable.Viewable] = {
            "Overview": pn.Column(self.status, self.balances, sizing_mode="stretch_width"),
            "Positions": pn.Column(self.positions, sizing_mode="stretch_width"),
            "Trade": trade,
            "Reconciliation": pn.Column(self.reconciliation, sizing_mode="stretch_width"),
            "Settlement": pn.Column(self.settlement, sizing_mode="stretch_width"),
        }
        self._tabs = pn.Tabs(*self.pages.items(), dynamic=True, sizing_mode="stretch_width")
        self._page_views: list[list[LiveView]] = [
            [self.status, self.balances], [self.positions], [self.killswitch, self.blotter],
            [self.reconciliation], [self.settlement]]
        self._tabs.param.watch(self._on_page, "active")
        if served():
            pn.state.onload(self._start_first_page)

    async def _start_first_page(self) -> None:
        await asyncio.gather(*(view.start() for view in self._page_views[self._tabs.active]))

    async def _on_page(self, event: Any) -> None:
        """Start the views of a page the first time it is opened."""
        await asyncio.gather(*(view.start() for view in self._page_views[event.new]))

    def _on_result(self, event: Any) -> None:
        """An order came back: show it in the blotter now, not at the next tick."""
        if event.new is None:
            return
        if served():
            pn.state.execute(self.blotter.refresh_async)

    def template(self) -> pn.template.BaseTemplate:
        """The pages in a `FastListTemplate` (for a served app)."""
        who = f"{self.user} ({self.role})" if self.user else self.role
        return pn.template.FastListTemplate(
            title=TITLE, main=[self._tabs], header=[pn.pane.Markdown(
                f"<span class='bk-user'>{who}</span>", css_classes=["app-user"])],
            accent="#1f4e79", main_layout=None)

    def servable(self, title: str | None = None, location: bool = True, area: str = "main",
                 target: str | None = None) -> Any:
        """Under a server, the template is what is served; in a notebook, the tabs."""
        if served():
            return self.template().servable(title=title or TITLE)
        return super().servable(title=title, location=location, area=area, target=target)

    def __panel__(self) -> pn.viewable.Viewable:
        return self._tabs


def create_app(role: str = "admin", user: str | None = None, *,
               access: Access | None = None, brokerage: BrokerageService | None = None,
               execution: ExecutionService | None = None) -> BrokerkitApp:
    """The dashboard for one session, as `user` with `role` (viewer, trader or admin).

    `access` (from `brokerkit serve`, with a re-check of the role) replaces role and user;
    `brokerage` and `execution` default to the process-wide services."""
    if access is None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        if user is None:
            from ..book.actor import current_actor

            user = current_actor()
        access = Access(user=user, role=role)
    return BrokerkitApp(access=access, brokerage=brokerage, execution=execution)
