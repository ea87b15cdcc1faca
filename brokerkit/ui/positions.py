"""`PositionsView`: every position across institutions, filterable, with exposure charts.

The table is a Tabulator with remote pagination (only the page on screen goes to the browser,
so 10,000 positions stay fast); filters (connection, asset class, currency, symbol text) run
server-side in pandas. Two charts show the exposure, in the base currency, by asset class and
by currency, of the filtered rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
import panel as pn

from .balances import bar_chart
from .live import LiveView

if TYPE_CHECKING:
    from ..service import BrokerageService

__all__ = ["POSITION_COLUMNS", "PositionsView", "exposure", "filter_positions"]

POSITION_COLUMNS = ("connection", "account", "symbol", "asset_class", "quantity", "avg_cost",
                    "market_price", "market_value", "currency", "market_value_base",
                    "unrealized_pnl_base")


def filter_positions(df: pd.DataFrame, *, connections: list[str] | None = None,
                     asset_classes: list[str] | None = None,
                     currencies: list[str] | None = None, text: str = "") -> pd.DataFrame:
    """The rows of `df` matching every filter given (an empty filter keeps everything)."""
    mask = pd.Series(True, index=df.index)
    if connections:
        mask &= df["connection"].isin(connections)
    if asset_classes:
        mask &= df["asset_class"].isin(asset_classes)
    if currencies:
        mask &= df["currency"].isin(currencies)
    if text.strip():
        needle = text.strip().upper()
        mask &= (df["symbol"].astype(str).str.upper().str.contains(needle, regex=False)
                 | df["account"].astype(str).str.upper().str.contains(needle, regex=False))
    return df[mask]


def exposure(df: pd.DataFrame, by: str) -> pd.Series:
    """Market value in the base currency summed by `by` (gross: absolute values), largest
    first."""
    if df.empty:
        return pd.Series(dtype="float64")
    return (df["market_value_base"].abs().groupby(df[by]).sum()
            .sort_values(ascending=False))


class PositionsView(LiveView):
    """Positions across institutions: filters, a paginated table, exposure charts."""

    sources = ("service",)

    def __init__(self, service: BrokerageService | None = None, *, page_size: int = 50,
                 **params: Any) -> None:
        params.setdefault("refresh_ms", 15000)
        super().__init__(**params)
        self._service = service
        self._all = pd.DataFrame(columns=list(POSITION_COLUMNS))
        self._connections = pn.widgets.MultiChoice(label="Connections", options=[])
        self._classes = pn.widgets.MultiChoice(label="Asset classes", options=[])
        self._currencies = pn.widgets.MultiChoice(label="Currencies", options=[])
        self._text = pn.widgets.TextInput(label="Symbol or account", placeholder="e.g. AAPL")
        self._count = pn.pane.Markdown("", css_classes=["positions-count"])
        self._table = pn.widgets.Tabulator(
            self._all, show_index=False, disabled=True, pagination="remote",
            page_size=page_size, sizing_mode="stretch_width", css_classes=["positions-table"],
            formatters={c: {"type": "money", "thousand": ",", "precision": 2}
                        for c in ("avg_cost", "market_price", "market_value",
                                  "market_value_base", "unrealized_pnl_base")})
        #: what each chart shows (by column): a chart is rebuilt only when its bars change
        self._bars: dict[str, tuple[Any, ...]] = {}
        self._by_class = pn.pane.Bokeh(None, sizing_mode="stretch_width")
        self._by_ccy = pn.pane.Bokeh(None, sizing_mode="stretch_width")
        for w in (self._connections, self._classes, self._currencies, self._text):
            # a filter edited in the browser may arrive on a comm subshell thread
            w.param.watch(lambda *_: self.on_display_loop(self._apply), "value")
        self._layout = pn.Column(
            "### Positions", self._error_pane, self._refreshed_pane,
            pn.Row(self._connections, self._classes, self._currencies, self._text),
            self._count, pn.Row(self._by_class, self._by_ccy, sizing_mode="stretch_width"),
            self._table, sizing_mode="stretch_width")

    @property
    def service(self) -> BrokerageService:
        if self._service is None:
            from ..service import get_brokerage_service

            self._service = get_brokerage_service()
        return self._service

    @property
    def filtered(self) -> pd.DataFrame:
        """The positions the filters keep (what the table and charts show)."""
        return filter_positions(self._all, connections=self._connections.value,
                                asset_classes=self._classes.value,
                                currencies=self._currencies.value, text=self._text.value)

    async def fetch_async(self) -> pd.DataFrame:
        return await self.service.positions_async()

    def show(self, data: pd.DataFrame) -> None:
        cols = [c for c in POSITION_COLUMNS if c in data.columns]
        self._all = data[cols].reset_index(drop=True)
        self._connections.options = sorted(self._all["connection"].dropna().unique().tolist())
        self._classes.options = sorted(self._all["asset_class"].dropna().unique().tolist())
        self._currencies.options = sorted(self._all["currency"].dropna().unique().tolist())
        self._apply()

    def _apply(self) -> None:
        rows = self.filtered
        self._table.value = rows
        self._count.object = f"{len(rows):,} of {len(self._all):,} positions"
        for pane, by, title in ((self._by_class, "asset_class", "Exposure by asset class"),
                                (self._by_ccy, "currency", "Exposure by currency")):
            s = exposure(rows, by)
            labels, values = [str(k) for k in s.index], [float(v) for v in s.values]
            if self._bars.get(by) == (labels, values):
                continue  # the same bars: no new figure (new models) for the browser
            self._bars[by] = (labels, values)
            pane.object = bar_chart(labels, values, title, height=max(160, 40 + 26 * len(s)))

    def layout(self) -> pn.viewable.Viewable:
        return self._layout
