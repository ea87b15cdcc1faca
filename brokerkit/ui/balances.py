"""`BalancesView`: consolidated balances: buying power by institution and account, and a chart.

Rows are `BrokerageService.balances_async()`'s (one per account and currency, with
base-currency columns added). The table shows each broker's own buying power (`buying_power`,
native: IBKR's 4x intraday next to Alpaca's 2x overnight) beside the account's one
consolidated figure (`buying_power_consolidated_base`: settled cash for cash and crypto
accounts, 2 x excess equity for Reg T margin, excess equity for portfolio margin; see
`brokerkit.service`); the chart shows the consolidated figure per account, coloured by
institution, since only those add up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
import panel as pn
from bokeh.models import ColumnDataSource, NumeralTickFormatter
from bokeh.palettes import Category10_10
from bokeh.plotting import figure

from .live import LiveView

if TYPE_CHECKING:
    from ..service import BrokerageService

__all__ = ["BALANCE_COLUMNS", "BalancesView", "bar_chart", "buying_power_by_account"]

_MONEY = {"type": "money", "thousand": ",", "precision": 2}

BALANCE_COLUMNS = ("institution", "connection", "account", "account_type", "currency", "cash",
                   "settled_cash", "buying_power", "equity", "buying_power_base",
                   "buying_power_consolidated_base")
_CONSOLIDATED = "buying_power_consolidated_base"


def buying_power_by_account(balances: pd.DataFrame) -> pd.DataFrame:
    """Consolidated buying power in the base currency per (institution, account), largest
    first (the native `buying_power_base` when the frame has no consolidated column)."""
    col = _CONSOLIDATED if _CONSOLIDATED in balances.columns else "buying_power_base"
    if balances.empty:
        return pd.DataFrame(columns=["institution", "account", col])
    return (balances.groupby(["institution", "account"], as_index=False)[col]
            .sum().sort_values(col, ascending=False, ignore_index=True))


def bar_chart(labels: list[str], values: list[float], title: str, *,
              colors: list[str] | None = None, height: int = 260) -> Any:
    """A horizontal bokeh bar chart of `values` by `labels`."""
    colors = colors or [Category10_10[0]] * len(labels)
    src = ColumnDataSource({"label": labels, "value": values, "color": colors})
    fig = figure(y_range=list(reversed(labels)), height=height, title=title,
                 sizing_mode="stretch_width", toolbar_location=None,
                 tooltips=[("", "@label"), ("value", "@value{0,0.00}")])
    fig.hbar(y="label", right="value", height=0.7, color="color", source=src)
    fig.xaxis.formatter = NumeralTickFormatter(format="0,0")
    fig.x_range.start = min(0.0, *values) if values else 0.0
    return fig


class BalancesView(LiveView):
    """Balances by institution and account, with a buying power chart; refreshes live."""

    sources = ("service",)

    def __init__(self, service: BrokerageService | None = None, **params: Any) -> None:
        params.setdefault("refresh_ms", 15000)
        super().__init__(**params)
        self._service = service
        self._table = pn.widgets.Tabulator(
            pd.DataFrame(columns=list(BALANCE_COLUMNS)), show_index=False, disabled=True,
            groupby=["institution"], sizing_mode="stretch_width", css_classes=["balances-table"],
            pagination="local", page_size=25,
            formatters={c: _MONEY for c in ("cash", "settled_cash", "buying_power", "equity",
                                            "buying_power_base", _CONSOLIDATED)})
        self._chart = pn.pane.Bokeh(None, sizing_mode="stretch_width")
        self._layout = pn.Column("### Balances", self._error_pane, self._refreshed_pane,
                                 self._chart, self._table, sizing_mode="stretch_width")

    @property
    def service(self) -> BrokerageService:
        if self._service is None:
            from ..service import get_brokerage_service

            self._service = get_brokerage_service()
        return self._service

    def shared_source(self) -> Any:
        return self.service  # the same consolidated balances for every session

    async def fetch_async(self) -> pd.DataFrame:
        return await self.service.balances_async()

    def show(self, data: pd.DataFrame) -> None:
        cols = [c for c in BALANCE_COLUMNS if c in data.columns]
        rows = data[cols].reset_index(drop=True)
        if rows.equals(self._table.value):
            return  # nothing changed: send nothing to the browser
        self._table.value = rows
        per = buying_power_by_account(data)
        institutions = list(dict.fromkeys(per["institution"]))
        palette = {inst: Category10_10[i % 10] for i, inst in enumerate(institutions)}
        base = data["base_currency"].iloc[0] if "base_currency" in data and len(data) else ""
        self._chart.object = bar_chart(
            [f"{i} · {a}" for i, a in zip(per["institution"], per["account"], strict=True)],
            [float(v) for v in per.iloc[:, -1]],
            f"Consolidated buying power by account ({base})",
            colors=[palette[i] for i in per["institution"]],
            height=max(160, 40 + 28 * len(per)))

    def layout(self) -> pn.viewable.Viewable:
        return self._layout
