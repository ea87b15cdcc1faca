"""The dashboard: `create_app(role=...)` arranges brokerkit's components into pages.

Pages: **Overview** (connection status and balances), **Positions**, **Reconciliation**,
**Settlement**, **Trade** (order ticket,
blotter, kill switch). What a page offers follows the role (`brokerkit.ui.auth`): a viewer
sees no ticket and no kill-switch controls. `create_app()` returns a `Viewer`: in a notebook it
shows the pages as tabs; `.servable()` under `panel serve` wraps them in a template. Pages are
built when first opened. Build one
app per session (each has its own widgets and its own live refresh): `brokerkit serve` does.

Served, an app is only ever built for a session that `brokerkit.serve` admits: signed in
through brokerkit's sign-in, or local mode. `create_app()` under `panel serve` or
`pn.serve(create_app)` asks `brokerkit.serve.served_access`; a refused session gets
`refused_app(reason)`, a page saying why, with no data and no controls. Every refused action
is written to the book's audit log with the user.
"""

from __future__ import annotations

import asyncio
import logging
from functools import cached_property
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
from .resources import NotebookReady, prepare_served_document
from .settlement import SettlementView
from .status import StatusView
from .ticket import TicketView

if TYPE_CHECKING:
    from ..execution.service import ExecutionService
    from ..service import BrokerageService

__all__ = ["BrokerkitApp", "RefusedApp", "create_app", "refused_app"]

log = logging.getLogger(__name__)

TITLE = "brokerkit"
ACCENT = "#1f4e79"


class BrokerkitApp(NotebookReady, pn.viewable.Viewer):
    """Every page of the dashboard, for one session and one user.

    Only the Overview is built with the session; every other page is built, and its views
    started, the first time it is opened (a session that only looks at the overview never
    pays for the ticket, the reconciliation or the settlement calendar). The overview shows
    the consolidated data the process fetched last, when it is recent (`LiveView.prefill`),
    so a new session renders figures at once, then refreshes them live."""

    role = param.Selector(default="admin", objects=list(ROLES), constant=True)
    user = param.String(default="", constant=True)

    #: The pages, in order.
    PAGES = ("Overview", "Positions", "Trade", "Reconciliation", "Settlement")

    def __init__(self, *, access: Access, brokerage: BrokerageService | None = None,
                 execution: ExecutionService | None = None, **params: Any) -> None:
        super().__init__(role=access.role, user=access.user, **params)
        if access.on_refused is None:
            access.on_refused = self._audit_refusal
        self.access = access
        self._doc = pn.state.curdoc if served() else None  # the session it was built for
        self._brokerage = brokerage
        self._execution = execution
        self.pages: dict[str, pn.Column] = {
            name: pn.Column(sizing_mode="stretch_width") for name in self.PAGES}
        self._page_views: dict[str, list[LiveView]] = {}
        self._build_page("Overview")
        self._tabs = pn.Tabs(*self.pages.items(), dynamic=True, sizing_mode="stretch_width")
        self._tabs.param.watch(self._on_page, "active")
        if served():
            pn.state.onload(self._start_first_page)

    def _audit_refusal(self, action: str, message: str) -> None:
        """A refused action, in the book's audit log with the user who tried."""
        if self._execution is not None:
            book = self._execution.book
        else:
            from ..execution.service import get_execution_service

            book = get_execution_service().book
        book.audit(f"refused_{action}", target="dashboard", details={"message": message},
                   result="refused", actor=self.access.user)

    # -- the views, each built on first use --------------------------------------------------
    @cached_property
    def status(self) -> StatusView:
        return StatusView(self._brokerage, autostart=False)

    @cached_property
    def balances(self) -> BalancesView:
        return BalancesView(self._brokerage, autostart=False)

    @cached_property
    def positions(self) -> PositionsView:
        return PositionsView(self._brokerage, autostart=False)

    @cached_property
    def blotter(self) -> BlotterView:
        return BlotterView(self._execution.book if self._execution is not None else None,
                           autostart=False)

    @cached_property
    def killswitch(self) -> KillSwitchView:
        ks = self._execution.killswitch if self._execution is not None else None
        return KillSwitchView(ks, access=self.access, autostart=False)

    @cached_property
    def reconciliation(self) -> ReconciliationView:
        reconciler = None
        book = self._execution.book if self._execution is not None else None
        if self._brokerage is not None or book is not None:
            from ..post_trade.runs import Reconciler

            reconciler = Reconciler(self._brokerage, book)
        return ReconciliationView(reconciler, access=self.access, autostart=False)

    @cached_property
    def settlement(self) -> SettlementView:
        return SettlementView(self._brokerage, autostart=False)

    @cached_property
    def ticket(self) -> TicketView | None:
        """The order ticket, or None for a user who may not trade."""
        if not self.access.can("trade"):
            return None
        from ..execution.ticket import OrderTicket

        view = TicketView(OrderTicket(self._execution), access=self.access)
        view.ticket.param.watch(self._on_result, "result")
        return view

    def _build_page(self, name: str) -> list[LiveView]:
        """Fill page `name` (once); returns its live views."""
        if name in self._page_views:
            return self._page_views[name]
        views: list[LiveView]
        if name == "Overview":
            views = [self.status, self.balances]
            for view in views:
                view.prefill()
            content: list[Any] = views
        elif name == "Positions":
            views = content = [self.positions]
        elif name == "Trade":
            views = [self.killswitch, self.blotter]
            content = [pn.Row(*([self.ticket] if self.ticket is not None else []),
                              pn.Column(self.killswitch, self.blotter,
                                        sizing_mode="stretch_width"),
                              sizing_mode="stretch_width")]
        elif name == "Reconciliation":
            views = content = [self.reconciliation]
        else:
            views = content = [self.settlement]
        self._page_views[name] = views
        self.pages[name].objects = list(content)
        return views

    async def _start_first_page(self) -> None:
        name = self.PAGES[self._tabs.active]
        await asyncio.gather(*(view.start() for view in self._build_page(name)))

    async def _on_page(self, event: Any) -> None:
        """Build and start the views of a page the first time it is opened."""
        name = self.PAGES[event.new]
        await asyncio.gather(*(view.start() for view in self._build_page(name)))

    def _on_result(self, event: Any) -> None:
        """An order came back: show it in the blotter now, not at the next tick."""
        if event.new is None:
            return
        if served():
            pn.state.execute(self.blotter.refresh_async)

    def template(self) -> pn.template.BaseTemplate:
        """The pages in a `BootstrapTemplate` (for a served app): the lightest of Panel's
        templates to load (no web-component framework, no web fonts)."""
        prepare_served_document()  # its stylesheets from this server, none from a CDN
        who = f"{self.user} ({self.role})" if self.user else self.role
        return pn.template.BootstrapTemplate(
            title=TITLE, main=[self._tabs], header=[pn.pane.Markdown(
                f"<span class='bk-user'>{who}</span>", css_classes=["app-user"])],
            header_background=ACCENT)

    def servable(self, title: str | None = None, location: bool = True, area: str = "main",
                 target: str | None = None) -> Any:
        """Under a server, the template is what is served; in a notebook, the tabs."""
        if served():
            return self.template().servable(title=title or TITLE)
        return super().servable(title=title, location=location, area=area, target=target)

    def __panel__(self) -> pn.viewable.Viewable:
        if served() and pn.state.curdoc is not self._doc:
            # one app object served to many sessions (`pn.serve(create_app())`): each
            # session must be admitted
            from ..errors import ConfigError
            from ..serve import served_access

            try:
                served_access()
            except ConfigError as exc:
                log.error("%s", exc)
                return refused_app(str(exc))._pane
        return self._tabs


class RefusedApp(BrokerkitApp):
    """What a refused session gets: the reason, and nothing of the app (no data, no
    controls, no callbacks)."""

    def __init__(self, reason: str) -> None:
        pn.viewable.Viewer.__init__(self, role="viewer", user="")
        self.reason = reason
        self._pane = pn.pane.Alert(f"**Not served.** {reason}", alert_type="danger",
                                   css_classes=["app-refused"])

    def template(self) -> pn.template.BaseTemplate:
        prepare_served_document()
        return pn.template.BootstrapTemplate(title=TITLE, main=[self._pane],
                                             header_background=ACCENT)

    def __panel__(self) -> pn.viewable.Viewable:
        return self._pane


def refused_app(reason: str) -> RefusedApp:
    """The page of a refused session, saying why."""
    return RefusedApp(reason)


def create_app(role: str = "admin", user: str | None = None, *,
               access: Access | None = None, brokerage: BrokerageService | None = None,
               execution: ExecutionService | None = None) -> BrokerkitApp:
    """The dashboard for one session, as `user` with `role` (viewer, trader or admin).

    `access` (from `brokerkit serve`, with a re-check of the role) replaces role and user;
    `brokerage` and `execution` default to the process-wide services. Served without
    `access` (`panel serve`, `pn.serve(create_app)`), the session must be local mode
    (`brokerkit.serve.served_access`), else it gets `refused_app`."""
    if access is None and served():
        from ..errors import ConfigError
        from ..serve import served_access

        try:
            served_access()
        except ConfigError as exc:
            log.error("%s", exc)
            return refused_app(str(exc))
    if access is None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        if user is None:
            from ..book.actor import current_actor

            user = current_actor()
        access = Access(user=user, role=role)
    return BrokerkitApp(access=access, brokerage=brokerage, execution=execution)
