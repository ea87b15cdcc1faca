"""`ReconciliationView`: the latest reconciliation run, breaks highlighted by class.

Shows the newest stored run (refreshed live from the book), lets a permitted user run a new one,
and "sync selected": after an explicit confirmation with a reason, the broker's quantity is
adopted into the book for the selected rows (UNKNOWN and CURRENCY_BREAK rows are never synced),
audited under the acting user.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pandas as pd
import panel as pn

from ..book.actor import acting_as
from .auth import Access, NotAuthorized
from .live import LiveView

if TYPE_CHECKING:
    from ..post_trade.runs import Reconciler

__all__ = ["STATUS_COLORS", "ReconciliationView", "highlight"]

#: Background colour of each class (MATCH rows stay plain).
STATUS_COLORS = {
    "QUANTITY_BREAK": "#f8d7da", "MISSING_AT_BROKER": "#ffe5cc", "UNKNOWN_TO_BOOK": "#fff3cd",
    "EXPLAINED": "#d1ecf1", "UNKNOWN": "#e2e3e5", "CURRENCY_BREAK": "#e8d5f5", "MATCH": "",
}
ROW_COLUMNS = ["connection", "account", "instrument", "book_quantity", "broker_quantity",
               "quantity_diff", "value_diff", "status", "explanation"]


def highlight(row: pd.Series) -> list[str]:
    """Styler row function: the row's background by its status."""
    color = STATUS_COLORS.get(str(row.get("status")), "")
    return [f"background-color: {color}" if color else ""] * len(row)


class ReconciliationView(LiveView):
    """The book against every broker, for one session."""

    sources = ("reconciler",)

    def __init__(self, reconciler: Reconciler | None = None, *, access: Access | None = None,
                 **params: Any) -> None:
        params.setdefault("refresh_ms", 30000)
        super().__init__(**params)
        self._reconciler = reconciler
        self.access = access
        self.run_id: str | None = None
        self._summary = pn.pane.Markdown("*No reconciliation run yet.*",
                                         css_classes=["recon-summary"])
        self._table = pn.widgets.Tabulator(
            pd.DataFrame(columns=ROW_COLUMNS), show_index=False, disabled=True,
            selectable="checkbox", pagination="remote", page_size=50,
            sizing_mode="stretch_width", css_classes=["recon-table"])
        self._table.style.apply(highlight, axis=1)  # breaks coloured by class, on every page
        allowed = access is None or access.can("reconcile")
        self._run_btn = pn.widgets.Button(label="Run reconciliation", color="primary",
                                          css_classes=["btn-recon-run"], visible=allowed)
        self._sync_btn = pn.widgets.Button(label="Sync selected", color="warning",
                                           css_classes=["btn-recon-sync"], visible=allowed)
        self._reason = pn.widgets.TextInput(placeholder="why the book changes (required)",
                                            css_classes=["recon-reason"])
        self._confirm_btn = pn.widgets.Button(label="Confirm sync", color="danger",
                                              css_classes=["btn-recon-confirm"])
        self._cancel_btn = pn.widgets.Button(label="Cancel", css_classes=["btn-recon-cancel"])
        self._prompt = pn.pane.Markdown("")
        self._confirm_row = pn.Column(self._prompt, self._reason,
                                      pn.Row(self._confirm_btn, self._cancel_btn),
                                      visible=False)
        self._message = pn.pane.Markdown("", css_classes=["recon-message"])
        self._run_btn.on_click(self._on_run)
        self._sync_btn.on_click(self._on_sync)
        self._confirm_btn.on_click(self._on_confirm)
        self._cancel_btn.on_click(lambda _e: setattr(self._confirm_row, "visible", False))
        self._layout = pn.Column(
            "### Reconciliation", pn.Row(self._run_btn, self._sync_btn), self._confirm_row,
            self._summary, self._message, self._error_pane, self._refreshed_pane, self._table,
            sizing_mode="stretch_width")

    @property
    def reconciler(self) -> Reconciler:
        if self._reconciler is None:
            from ..post_trade.runs import Reconciler

            self._reconciler = Reconciler()
        return self._reconciler

    async def fetch_async(self) -> tuple[pd.Series | None, pd.DataFrame]:
        book = self.reconciler.book
        runs = await asyncio.to_thread(book.reconciliation_runs, 1)
        if runs.empty:
            return None, pd.DataFrame(columns=ROW_COLUMNS)
        run = runs.iloc[0]
        rows = await asyncio.to_thread(book.reconciliation_rows, run["run_id"])
        return run, rows

    def show(self, data: tuple[pd.Series | None, pd.DataFrame]) -> None:
        run, rows = data
        if run is None:
            return
        self.run_id = str(run["run_id"])
        counts = rows["status"].value_counts().to_dict()
        text = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no positions"
        when = f"{run['started_at']:%Y-%m-%d %H:%M:%S}"
        self._summary.object = (f"**Run {self.run_id[:8]}** at {when} UTC: {text}; "
                                f"**{int(run['unexplained'])} unexplained**")
        view = rows[ROW_COLUMNS].reset_index(drop=True)
        self._table.value = view

    # A click may arrive on another thread than the one that displayed the view (JupyterLab's
    # subshells): each handler changes the widgets on the display loop (`NotebookReady`).
    async def _on_run(self, _: Any) -> None:
        await self.run_on_display_loop(self._run)

    async def _on_sync(self, _: Any) -> None:
        await self.run_on_display_loop(self._ask_sync)

    async def _on_confirm(self, _: Any) -> None:
        await self.run_on_display_loop(self._confirm)

    async def _run(self) -> None:
        try:
            user = self.access.require("reconcile") if self.access is not None else None
        except NotAuthorized as exc:
            self._message.object = f"⛔ {exc}"
            return
        self._layout.loading = True
        try:
            if user is None:
                await self.reconciler.run_async()
            else:
                with acting_as(user):
                    await self.reconciler.run_async()
            await self.refresh_async()
        finally:
            self._layout.loading = False

    async def _ask_sync(self) -> None:
        picked = self._table.selection
        if not picked or self.run_id is None:
            self._message.object = "Select the rows to sync first."
            return
        self._prompt.object = (f"**Adopt the broker's quantity for {len(picked)} row(s) into "
                               f"the book?** UNKNOWN and CURRENCY_BREAK rows are skipped.")
        self._confirm_row.visible = True

    async def _confirm(self) -> None:
        reason = (self._reason.value or "").strip()
        if not reason:
            self._message.object = "A reason is required to change the book."
            return
        try:
            user = self.access.require("reconcile") if self.access is not None else None
        except NotAuthorized as exc:
            self._message.object = f"⛔ {exc}"
            return
        self._confirm_row.visible = False
        rows, run_id = list(self._table.selection), self.run_id
        assert run_id is not None

        def sync() -> int:
            if user is None:
                return self.reconciler.sync(run_id, rows, reason=reason)
            with acting_as(user):
                return self.reconciler.sync(run_id, rows, reason=reason)

        n = await asyncio.to_thread(sync)
        self._message.object = f"Corrected {n} book position(s). Run again to confirm."

    def layout(self) -> pn.viewable.Viewable:
        return self._layout
