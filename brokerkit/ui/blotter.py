"""`BlotterView`: the orders and fills of the book's journal, newest first, refreshed live.

The journal is the book's (`Book.orders_frame()` and `fills_frame()`): every order any process
placed through brokerkit, with who placed it, and every order refused before it was sent
(REJECTED) with the codes of the checks it failed (`violations`: TRADING_HALTED, NO_ROUTE...)
and the reason they give. Book reads run in a worker thread, never on Panel's event loop.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import pandas as pd
import panel as pn

from .live import LiveView

if TYPE_CHECKING:
    from ..book import Book

__all__ = ["FILL_COLUMNS", "ORDER_COLUMNS", "BlotterView", "violation_codes"]

ORDER_COLUMNS = ("created_at", "status", "violations", "side", "quantity", "symbol",
                 "order_type", "limit_price", "filled_quantity", "avg_fill_price", "connection",
                 "account", "reason", "actor", "client_order_id")
FILL_COLUMNS = ("executed_at", "side", "quantity", "symbol", "price", "fee", "currency",
                "connection", "account", "settle_date", "client_order_id")

_STATUS_COLORS = {"FILLED": "#d8f5dd", "PARTIALLY_FILLED": "#e8f7d0", "REJECTED": "#ffd6d6",
                  "CANCELED": "#eeeeee", "UNCERTAIN": "#fff1c2"}


def _newest(df: pd.DataFrame, columns: tuple[str, ...], by: str, limit: int) -> pd.DataFrame:
    """The `limit` newest rows by `by`, with times as readable UTC text."""
    cols = [c for c in columns if c in df.columns]
    if df.empty:
        return pd.DataFrame(columns=cols)
    out = df.sort_values(by, ascending=False).head(limit)[cols].reset_index(drop=True)
    out[by] = pd.to_datetime(out[by], utc=True).dt.strftime("%Y-%m-%d %H:%M:%S")
    return out


def violation_codes(text: Any) -> str:
    """The codes of a journal row's `violations` (JSON text), e.g. 'TRADING_HALTED, NO_ROUTE';
    '' when it has none."""
    if not isinstance(text, str) or not text:
        return ""
    try:
        found = json.loads(text)
    except ValueError:
        return text
    if not isinstance(found, list):
        return str(found)
    return ", ".join(str(v.get("code", v)) if isinstance(v, dict) else str(v) for v in found)


def _color_status(row: pd.Series) -> list[str]:
    color = _STATUS_COLORS.get(str(row.get("status")), "")
    return [f"background-color: {color}" if color else ""] * len(row)


class BlotterView(LiveView):
    """Orders and fills from the book's journal; refreshes live (and on demand)."""

    sources = ("book",)

    def __init__(self, book: Book | None = None, *, limit: int = 500, **params: Any) -> None:
        params.setdefault("refresh_ms", 2000)
        super().__init__(**params)
        self._book = book
        self.limit = limit
        self._orders = pn.widgets.Tabulator(
            pd.DataFrame(columns=list(ORDER_COLUMNS)), show_index=False, disabled=True,
            pagination="local", page_size=20, sizing_mode="stretch_width",
            css_classes=["blotter-orders"])
        self._fills = pn.widgets.Tabulator(
            pd.DataFrame(columns=list(FILL_COLUMNS)), show_index=False, disabled=True,
            pagination="local", page_size=20, sizing_mode="stretch_width",
            css_classes=["blotter-fills"])
        self._layout = pn.Column("### Blotter", self._error_pane, self._refreshed_pane,
                                 pn.Tabs(("Orders", self._orders), ("Fills", self._fills)),
                                 sizing_mode="stretch_width")

    @property
    def book(self) -> Book:
        if self._book is None:
            from ..execution.service import get_execution_service

            self._book = get_execution_service().book
        return self._book

    @property
    def orders(self) -> pd.DataFrame:
        """The orders shown, newest first."""
        return self._orders.value

    @property
    def fills(self) -> pd.DataFrame:
        """The fills shown, newest first."""
        return self._fills.value

    async def fetch_async(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        book = self.book
        orders, fills = await asyncio.gather(asyncio.to_thread(book.orders_frame),
                                             asyncio.to_thread(book.fills_frame))
        orders = _newest(orders, ORDER_COLUMNS, "created_at", self.limit)
        if "violations" in orders.columns:
            orders["violations"] = orders["violations"].map(violation_codes)
        if len(fills):  # settle dates from the one source, as the settlement view shows them
            from ..post_trade.settlement import with_settlement

            fills = with_settlement(fills)
        return orders, _newest(fills, FILL_COLUMNS, "executed_at", self.limit)

    def show(self, data: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        orders, fills = data
        if not orders.equals(self._orders.value):
            self._orders.value = orders
            self._orders.style.apply(_color_status, axis=1)
        if not fills.equals(self._fills.value):
            self._fills.value = fills

    def layout(self) -> pn.viewable.Viewable:
        return self._layout
