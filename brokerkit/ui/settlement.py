"""`SettlementView`: trades not yet settled, and the cash ladder per currency.

Fills from every connection get their settlement dates (`post_trade.settlement`, on real
exchange calendars); the pending ones are listed by settle date, and the projected settled cash
of each account and currency is charted date by date.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
import panel as pn

from .balances import bar_chart
from .live import LiveView

if TYPE_CHECKING:
    from ..service import BrokerageService

__all__ = ["PENDING_COLUMNS", "SettlementView", "pending_settlements"]

PENDING_COLUMNS = ["settle_date", "trade_date", "connection", "account", "symbol", "side",
                   "quantity", "price", "amount", "currency"]


def pending_settlements(fills: pd.DataFrame, as_of: datetime | None = None) -> pd.DataFrame:
    """Fills that settle after `as_of` (default: the market's today), soonest first, with their
    cash amount
    (sales positive, buys negative, fees paid)."""
    from ..post_trade.settlement import market_today, with_settlement

    if fills.empty:
        return pd.DataFrame(columns=PENDING_COLUMNS)
    f = with_settlement(fills)
    day = market_today() if as_of is None else (
        pd.Timestamp(as_of).tz_convert(None) if pd.Timestamp(as_of).tzinfo
        else pd.Timestamp(as_of)).normalize()
    f = f[f["settle_date"] > day]
    sign = f["side"].astype(str).str.lower().map({"sell": 1.0}).fillna(-1.0)
    amount = sign * f["quantity"] * f["price"] - f["fee"].fillna(0.0)
    out = f.assign(amount=amount)[PENDING_COLUMNS]
    return out.sort_values(["settle_date", "connection", "account"], ignore_index=True)


class SettlementView(LiveView):
    """Pending settlements and the cash ladder; refreshes live."""

    sources = ("service",)

    def __init__(self, service: BrokerageService | None = None, **params: Any) -> None:
        params.setdefault("refresh_ms", 30000)
        super().__init__(**params)
        self._service = service
        self._count = pn.pane.Markdown("", css_classes=["settlement-count"])
        self._table = pn.widgets.Tabulator(
            pd.DataFrame(columns=PENDING_COLUMNS), show_index=False, disabled=True,
            pagination="remote", page_size=25, sizing_mode="stretch_width",
            css_classes=["settlement-table"])
        self._ladder = pn.pane.Bokeh(None, sizing_mode="stretch_width")
        self._layout = pn.Column("### Settlement", self._count, self._error_pane,
                                 self._refreshed_pane, self._table,
                                 "#### Cash ladder (projected settled cash)", self._ladder,
                                 sizing_mode="stretch_width")

    @property
    def service(self) -> BrokerageService:
        if self._service is None:
            from ..service import get_brokerage_service

            self._service = get_brokerage_service()
        return self._service

    async def fetch_async(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        fills, balances = await self.service.fills_async(), await self.service.balances_async()
        return fills, balances

    def show(self, data: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        from ..post_trade.cash import cash_ladder

        fills, balances = data
        pending = pending_settlements(fills)
        self._table.value = pending
        self._count.object = (f"**{len(pending)} pending settlement(s)**"
                              if len(pending) else "Everything has settled.")
        if fills.empty or balances.empty:
            self._ladder.object = None
            return
        ladder = cash_ladder(fills, balances)
        ladder = ladder[ladder["settling"] != 0] if len(ladder) > 1 else ladder
        labels = [f"{r.account} {r.currency} {pd.Timestamp(r.date):%Y-%m-%d}"
                  for r in ladder.itertuples()]
        self._ladder.object = bar_chart(labels, [float(v) for v in ladder["settled_cash"]],
                                        "Settled cash by date",
                                        height=max(160, 40 + 24 * len(labels)))

    def layout(self) -> pn.viewable.Viewable:
        return self._layout
