"""`StatusView`: every connection's health, latency and last error, and the total buying power.

The figures are `BrokerageService.get_status_async()`'s, unchanged: the total shown is the one
`get_status()` returns (in the base currency).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
import panel as pn
import param

from .live import LiveView

if TYPE_CHECKING:
    from ..service import BrokerageService

__all__ = ["STATUS_COLUMNS", "StatusView", "render_summary"]

#: The columns of the connections table, in order.
STATUS_COLUMNS = ("name", "institution", "status", "latency_ms", "accounts", "buying_power",
                  "currency", "trading", "last_error", "checked_at")

_STATUS_COLORS = {"connected": "#d8f5dd", "degraded": "#fff1c2", "down": "#ffd6d6"}


def render_summary(summary: dict[str, Any]) -> str:
    """Markdown for a status summary: the total buying power and the connection counts."""
    total = f"{summary['total_buying_power']:,.2f} {summary['base_currency']}"
    sandbox = " · *embedded sandbox*" if summary.get("embedded_sandbox") else ""
    return (f"## Total buying power: <span class='total-buying-power'>{total}</span>\n\n"
            f"{summary['connections']} connections: {summary['connected']} connected, "
            f"{summary['degraded']} degraded, {summary['down']} down{sandbox}")


def _color_status(row: pd.Series) -> list[str]:
    color = _STATUS_COLORS.get(str(row.get("status")), "")
    return [f"background-color: {color}" if color else ""] * len(row)


class StatusView(LiveView):
    """Connection health and the consolidated buying power; refreshes live."""

    sources = ("service",)

    summary = param.Dict(default=None, allow_None=True, doc="the latest status summary")

    def __init__(self, service: BrokerageService | None = None, **params: Any) -> None:
        super().__init__(**params)
        self._service = service
        self._summary = pn.pane.Markdown("## Total buying power: …",
                                         css_classes=["status-summary"])
        self._table = pn.widgets.Tabulator(
            pd.DataFrame(columns=list(STATUS_COLUMNS)), show_index=False, disabled=True,
            sizing_mode="stretch_width", css_classes=["status-table"],
            formatters={"buying_power": {"type": "money", "thousand": ","}})
        self._layout = pn.Column(self._summary, self._error_pane, self._refreshed_pane,
                                 self._table, sizing_mode="stretch_width")

    @property
    def service(self) -> BrokerageService:
        if self._service is None:
            from ..service import get_brokerage_service

            self._service = get_brokerage_service()
        return self._service

    def shared_source(self) -> Any:
        return self.service  # the same consolidated status for every session

    async def fetch_async(self) -> dict[str, Any]:
        return await self.service.get_status_async()

    def show(self, data: dict[str, Any]) -> None:
        self.summary = data["summary"]
        self._summary.object = render_summary(data["summary"])
        rows = pd.DataFrame(data["connections"], columns=list(STATUS_COLUMNS))
        rows["accounts"] = rows["accounts"].map(lambda a: ", ".join(a or ()))
        rows["last_error"] = rows["last_error"].fillna("")
        if rows.equals(self._table.value):
            return  # nothing changed: send nothing to the browser
        self._table.value = rows
        self._table.style.apply(_color_status, axis=1)

    def layout(self) -> pn.viewable.Viewable:
        return self._layout
