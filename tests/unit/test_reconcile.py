"""Reconciliation classes, each from a minimal case and not from its neighbour."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokerkit import frames
from brokerkit.post_trade import COLUMNS, reconcile, reconcile_reference

T0 = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


def book(*rows: tuple) -> pd.DataFrame:
    return pd.DataFrame([{"connection": c, "account": a, "instrument": i, "quantity": q,
                          "symbol": i.split(":")[1], "asset_class": ac, "currency": "USD"}
                         for c, a, i, q, ac in rows],
                        columns=["connection", "account", "instrument", "quantity", "symbol",
                                 "asset_class", "currency"])


def broker(*rows: tuple) -> pd.DataFrame:
    return frames.make(frames.POSITIONS, [
        {"connection": c, "account": a, "instrument": i, "symbol": i.split(":")[1],
         "asset_class": ac, "quantity": q, "market_price": 10.0, "market_value": q * 10.0,
         "currency": "USD", "as_of": T0} for c, a, i, q, ac in rows])


def status_of(df: pd.DataFrame, instrument: str) -> str:
    return df.set_index("instrument").loc[instrument, "status"]


def test_output_has_the_documented_columns():
    out = reconcile(book(("c", "A", "STK:X", 1, "equity")), broker())
    assert list(out.columns) == COLUMNS


@pytest.mark.parametrize(("book_q", "broker_q", "expected"), [
    (10, 10, "MATCH"),
    (10, 10.0000001, "MATCH"),          # fractional-share float noise
    (10, 11, "QUANTITY_BREAK"),
    (10, None, "MISSING_AT_BROKER"),
    (None, 10, "UNKNOWN_TO_BOOK"),
    (None, 0.0000001, "MATCH"),          # dust the book need not hold
])
def test_each_class_from_a_minimal_case(book_q, broker_q, expected):
    b = book(("c", "A", "STK:X", book_q, "equity")) if book_q is not None else book()
    r = broker(("c", "A", "STK:X", broker_q, "equity")) if broker_q is not None else broker()
    out = reconcile(b, r)
    assert status_of(out, "STK:X") == expected


def test_crypto_dust_tolerance_is_tighter_than_equities():
    out = reconcile(book(("c", "A", "CRYPTO:BTC/USD", 1.0, "crypto")),
                    broker(("c", "A", "CRYPTO:BTC/USD", 1.000001, "crypto")))
    assert status_of(out, "CRYPTO:BTC/USD") == "QUANTITY_BREAK"
    loose = reconcile(book(("c", "A", "CRYPTO:BTC/USD", 1.0, "crypto")),
                      broker(("c", "A", "CRYPTO:BTC/USD", 1.000001, "crypto")),
                      tolerances={"crypto": 1e-5})
    assert status_of(loose, "CRYPTO:BTC/USD") == "MATCH"


def test_break_reports_quantity_and_value_differences():
    out = reconcile(book(("c", "A", "STK:X", 10, "equity")),
                    broker(("c", "A", "STK:X", 12, "equity"))).iloc[0]
    assert out["quantity_diff"] == 2 and out["value_diff"] == 20 and out["price"] == 10


def test_a_fill_booked_after_the_broker_snapshot_explains_the_difference():
    fills = frames.make(frames.FILLS, [{"connection": "c", "account": "A", "fill_id": "F1",
                                        "instrument": "STK:X", "side": "buy", "quantity": 3,
                                        "price": 10, "executed_at": T0}])
    out = reconcile(book(("c", "A", "STK:X", 13, "equity")),
                    broker(("c", "A", "STK:X", 10, "equity")), fills_after=fills).iloc[0]
    assert out["status"] == "EXPLAINED" and "F1" in out["explanation"]
    wrong = reconcile(book(("c", "A", "STK:X", 14, "equity")),
                      broker(("c", "A", "STK:X", 10, "equity")), fills_after=fills).iloc[0]
    assert wrong["status"] == "QUANTITY_BREAK"


def test_an_open_order_filled_at_the_broker_explains_the_difference():
    orders = frames.make(frames.ORDERS, [{"connection": "c", "account": "A", "order_id": "O9",
                                          "instrument": "STK:X", "side": "sell",
                                          "quantity": 10, "filled_quantity": 4,
                                          "status": "PARTIALLY_FILLED"}])
    out = reconcile(book(("c", "A", "STK:X", 10, "equity")),
                    broker(("c", "A", "STK:X", 6, "equity")), open_orders=orders).iloc[0]
    assert out["status"] == "EXPLAINED" and "O9" in out["explanation"]


def test_a_connection_that_could_not_be_read_is_unknown_not_missing():
    out = reconcile(book(("down", "A", "STK:X", 10, "equity"),
                         ("up", "B", "STK:Y", 5, "equity")),
                    broker(("up", "B", "STK:Y", 5, "equity")), failed={"down": "timed out"})
    row = out.set_index("connection").loc["down"]
    assert row["status"] == "UNKNOWN" and "timed out" in row["explanation"]
    assert pd.isna(row["broker_quantity"]) and pd.isna(row["quantity_diff"])
    assert status_of(out, "STK:Y") == "MATCH"


_rows = st.lists(st.tuples(st.sampled_from(["c1", "c2"]), st.sampled_from(["A", "B"]),
                           st.sampled_from(["STK:X", "STK:Y", "CRYPTO:BTC/USD"]),
                           st.sampled_from([0.0, 1.0, 2.5, 1e-9, 10.0])), max_size=12)


@given(_rows, _rows, st.sets(st.sampled_from(["c1", "c2"]), max_size=1))
def test_vectorized_and_row_by_row_agree(book_rows, broker_rows, down):
    def ac(i: str) -> str:
        return "crypto" if i.startswith("CRYPTO") else "equity"

    b = book(*[(c, a, i, q, ac(i)) for c, a, i, q in book_rows])
    r = broker(*[(c, a, i, q, ac(i)) for c, a, i, q in broker_rows if c not in down])
    failed = {c: "down" for c in down}
    fast = reconcile(b, r, failed=failed)
    slow = reconcile_reference(b, r, failed=failed)
    got = {(x.connection, x.account, x.instrument): x.status for x in fast.itertuples()}
    assert got == slow
