"""`KillSwitchView`: the trading state in force, its history, and the controls to change it.

Halt (with a reason, optionally cancelling every open order), reduce-only and resume act on the
book's trading state through `KillSwitch`, so every process sees the change on its next order.
Who may press what follows the session's role (`brokerkit.ui.auth`): viewers see the state but
no controls, traders may halt and set reduce-only, only admins see and may use Resume. Every
handler checks the role again before acting and records the acting user.
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
    from ..execution.killswitch import KillSwitch, StateView

__all__ = ["HISTORY_COLUMNS", "KillSwitchView", "render_state"]

HISTORY_COLUMNS = ("changed_at", "state", "previous_state", "reason", "actor", "host")

_BADGE = {"ACTIVE": "🟢", "REDUCING": "🟠", "HALTED": "🛑"}


def render_state(view: StateView) -> str:
    """Markdown for the trading state in force: state, reason, who and when."""
    when = f" at {view.changed_at:%Y-%m-%d %H:%M:%S} UTC" if view.changed_at else ""
    forced = " (forced by SYSTEM_HALTED in this server's environment)" \
        if view.forced_by_env else ""
    return (f"## {_BADGE.get(view.state, '')} Trading: "
            f"<span class='trading-state'>{view.state}</span>{forced}\n\n"
            f"{view.reason or '-'} — by {view.actor or '-'}{when}")


class KillSwitchView(LiveView):
    """The kill switch: state, history, and halt / reduce-only / resume by role."""

    sources = ("killswitch",)

    def __init__(self, killswitch: KillSwitch | None = None, *, access: Access | None = None,
                 **params: Any) -> None:
        params.setdefault("refresh_ms", 3000)
        super().__init__(**params)
        self._ks = killswitch
        self.access = access or Access(user=_default_user(), role="admin")
        self._state = pn.pane.Markdown("## Trading: …", css_classes=["ks-state"])
        self._reason = pn.widgets.TextInput(label="Reason", placeholder="why (recorded)",
                                            css_classes=["ks-reason"])
        self._cancel_open = pn.widgets.Checkbox(label="Cancel open orders", value=True,
                                                css_classes=["ks-cancel-open"])
        self._halt = pn.widgets.Button(label="Halt trading", color="danger",
                                       css_classes=["ks-halt"])
        self._reduce = pn.widgets.Button(label="Reduce only", color="warning",
                                         css_classes=["ks-reduce"])
        self._resume = pn.widgets.Button(label="Resume", color="success",
                                         css_classes=["ks-resume"])
        self._message = pn.pane.Markdown("", css_classes=["ks-message"])
        self._history = pn.widgets.Tabulator(
            pd.DataFrame(columns=list(HISTORY_COLUMNS)), show_index=False, disabled=True,
            pagination="local", page_size=10, sizing_mode="stretch_width",
            css_classes=["ks-history"])
        self._halt.on_click(self._on_halt)
        self._reduce.on_click(self._on_reduce)
        self._resume.on_click(self._on_resume)
        acts = self.access.can("halt")
        controls = pn.Column(
            self._reason, self._cancel_open,
            pn.Row(self._halt, self._reduce, *([self._resume] if self.access.can("resume")
                                               else [])),
            self._message, visible=acts)
        self._layout = pn.Column("### Kill switch", self._error_pane, self._refreshed_pane,
                                 self._state, controls, "#### History", self._history,
                                 sizing_mode="stretch_width")

    @property
    def killswitch(self) -> KillSwitch:
        if self._ks is None:
            from ..execution.service import get_execution_service

            self._ks = get_execution_service().killswitch
        return self._ks

    async def fetch_async(self) -> tuple[StateView, pd.DataFrame]:
        ks = self.killswitch
        state, history = await asyncio.gather(asyncio.to_thread(ks.state),
                                              asyncio.to_thread(ks.book.trading_state_history))
        return state, history

    def show(self, data: tuple[StateView, pd.DataFrame]) -> None:
        state, history = data
        self._state.object = render_state(state)
        cols = [c for c in HISTORY_COLUMNS if c in history.columns]
        rows = history.sort_values("changed_at", ascending=False)[cols].reset_index(drop=True) \
            if len(history) else pd.DataFrame(columns=cols)
        if len(rows):
            rows["changed_at"] = pd.to_datetime(rows["changed_at"], utc=True).dt.strftime(
                "%Y-%m-%d %H:%M:%S")
        if not rows.equals(self._history.value):
            self._history.value = rows

    # -- actions ------------------------------------------------------------------------------
    async def _act(self, action: str) -> None:
        reason = self._reason.value.strip()
        if not reason:
            self._message.object = "⚠️ A reason is required."
            return
        try:
            user = self.access.require(action)
        except NotAuthorized as exc:
            self._message.object = f"⛔ {exc}"
            return
        await asyncio.to_thread(self.resolve)  # the service is built off this event loop
        ks = self.killswitch
        self._layout.loading = True
        try:
            with acting_as(user):
                if action == "halt":
                    report = await ks.halt_async(reason, cancel_open=self._cancel_open.value,
                                                 actor=user)
                elif action == "reduce_only":
                    report = await ks.reduce_only_async(reason, actor=user)
                else:
                    report = await ks.resume_async(reason, actor=user)
        except Exception as exc:  # shown, never raised into Panel
            self._message.object = f"⛔ {exc}"
            return
        finally:
            self._layout.loading = False
        note = f" · canceled {len(report.canceled)} open order(s)" if action == "halt" else ""
        errors = "".join(f"\n\n⚠️ {n}: {e}" for n, e in report.errors.items())
        self._message.object = f"Done: **{report.state.state}**{note}{errors}"
        self._reason.value = ""
        await self.refresh_async()

    # on the display loop, wherever the click was received (`NotebookReady.on_display_loop`)
    async def _on_halt(self, _: Any) -> None:
        await self.run_on_display_loop(self._act, "halt")

    async def _on_reduce(self, _: Any) -> None:
        await self.run_on_display_loop(self._act, "reduce_only")

    async def _on_resume(self, _: Any) -> None:
        await self.run_on_display_loop(self._act, "resume")

    def layout(self) -> pn.viewable.Viewable:
        return self._layout


def _default_user() -> str:
    from ..book.actor import current_actor

    return current_actor()
