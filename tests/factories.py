"""Rows for the canonical frames, shared by the unit tests."""

from __future__ import annotations

from datetime import UTC, datetime


def fill(trade_date: str, instrument: str = "STK:AAPL", asset_class: str = "equity",
         currency: str = "USD", **kw) -> dict:
    return {"connection": "c", "account": "A", "fill_id": kw.pop("fill_id", trade_date),
            "instrument": instrument, "asset_class": asset_class, "currency": currency,
            "side": kw.pop("side", "buy"), "quantity": kw.pop("quantity", 1.0),
            "price": kw.pop("price", 100.0), "fee": kw.pop("fee", 0.0),
            "executed_at": datetime.fromisoformat(trade_date).replace(hour=15, tzinfo=UTC),
            "trade_date": trade_date, **kw}
