"""Reconciliation classes, each from a minimal case and not from its neighbour; explanations.
(The vectorized frame against the row-by-row reference: test_reconcile_equivalence.py.)"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from brokerkit import frames
from brokerkit.errors import SchemaError
from brokerkit.post_trade import COLUMNS, reconcile
from brokerkit.post_trade.reconcile import Tolerance

SNAPSHOT = datetime(2026, 11, 20, 14, 3, 0, tzinfo=UTC)


def book(*rows: tuple) -> pd.DataFrame:
    return pd.DataFrame([{"connection": c, "account": a, "instrument": i, "quantity": q,
                          "symbol": (i or ":").split(":")[1], "asset_class": ac,
                          "currency": "USD", "avg_cost": 9.0}
                         for c, a, i, q, ac in rows],
                        columns=["connection", "account", "instrument", "quantity", "symbol",
                                 "asset_class", "currency", "avg_cost"])


def broker(*rows: tuple, price: float = 10.0) -> pd.DataFrame:
    return frames.make(frames.POSITIONS, [
        {"connection": c, "account": a, "instrument": i, "symbol": i.split(":")[1],
         "asset_class": ac, "quantity": q, "market_price": price, "market_value": q * price,
         "currency": "USD", "as_of": SNAPSHOT} for c, a, i, q, ac in rows])


def row(df: pd.DataFrame, instrument: str = "STK:X") -> pd.Series:
    return df.set_index("instrument").loc[instrument]


def fill(fill_id: str, side: str, qty: float, when: datetime, price: float = 101.2,
         instrument: str = "STK:X") -> dict:
    return {"connection": "c", "account": "A", "fill_id": fill_id, "instrument": instrument,
            "side": side, "quantity": qty, "price": price, "executed_at": when}


def test_output_has_the_documented_columns_even_when_empty():
    assert list(reconcile(book(("c", "A", "STK:X", 1, "equity")), broker()).columns) == COLUMNS
    empty = reconcile(book(), broker())
    assert list(empty.columns) == COLUMNS and empty.empty


@pytest.mark.parametrize(("book_q", "broker_q", "expected"), [
    (10, 10, "MATCH"),
    (10, 11, "QUANTITY_BREAK"),
    (10, None, "MISSING_AT_BROKER"),
    (None, 10, "UNKNOWN_TO_BOOK"),
    (0, None, "MATCH"),  # a flat book row and no broker row agree
])
def test_each_class_from_a_minimal_case(book_q, broker_q, expected):
    b = book(("c", "A", "STK:X", book_q, "equity")) if book_q is not None else book()
    r = broker(("c", "A", "STK:X", broker_q, "equity")) if broker_q is not None else broker()
    assert row(reconcile(b, r))["status"] == expected


def test_quantities_of_repeated_keys_are_summed_and_a_missing_account_is_blank():
    b = book(("c", None, "STK:X", 4, "equity"), ("c", None, "STK:X", 6, "equity"))
    out = reconcile(b, broker(("c", "", "STK:X", 10, "equity")))
    assert len(out) == 1 and row(out)["status"] == "MATCH" and row(out)["account"] == ""


def test_fractional_share_dust_matches_but_a_real_fraction_breaks():
    b = book(("c", "A", "STK:X", 10, "equity"))
    assert row(reconcile(b, broker(("c", "A", "STK:X", 10.0000004, "equity"))))["status"] \
        == "MATCH"
    assert row(reconcile(b, broker(("c", "A", "STK:X", 10.5, "equity"))))["status"] \
        == "QUANTITY_BREAK"


def test_crypto_dust_is_tighter_than_equities_and_tolerances_are_overridable():
    b = book(("c", "A", "CRYPTO:BTC/USD", 1.0, "crypto"))
    r = broker(("c", "A", "CRYPTO:BTC/USD", 1.000001, "crypto"))
    assert row(reconcile(b, r), "CRYPTO:BTC/USD")["status"] == "QUANTITY_BREAK"
    assert row(reconcile(b, r, tolerances={"crypto": 1e-5}), "CRYPTO:BTC/USD")["status"] \
        == "MATCH"
    relative = reconcile(b, r, tolerances={"crypto": Tolerance(relative=1e-5)})
    assert row(relative, "CRYPTO:BTC/USD")["status"] == "MATCH"


def test_options_have_no_tolerance():
    b = book(("c", "A", "OPT:X", 1, "option"))
    assert row(reconcile(b, broker(("c", "A", "OPT:X", 1.000001, "option"))),
               "OPT:X")["status"] == "QUANTITY_BREAK"


def test_break_reports_quantity_and_value_differences_with_the_multiplier():
    out = row(reconcile(book(("c", "A", "STK:X", 10, "equity")),
                        broker(("c", "A", "STK:X", 12, "equity"))))
    assert (out["quantity_diff"], out["price"], out["value_diff"]) == (2, 10, 20)
    option = frames.make(frames.POSITIONS, [{
        "connection": "c", "account": "A", "instrument": "OPT:X", "asset_class": "option",
        "quantity": 3, "market_price": 2.0, "market_value": 600.0, "as_of": SNAPSHOT}])
    out = row(reconcile(book(("c", "A", "OPT:X", 1, "option")), option), "OPT:X")
    assert out["value_diff"] == 2 * 2.0 * 100


def test_given_prices_value_a_position_the_broker_does_not_hold():
    b = book(("c", "A", "STK:X", 10, "equity"))
    assert np.isnan(row(reconcile(b, broker()))["value_diff"])
    out = row(reconcile(b, broker(), prices={"STK:X": 7.5}))
    assert out["price"] == 7.5 and out["value_diff"] == -75


def test_a_fill_executed_after_the_snapshot_explains_the_difference():
    fills = frames.make(frames.FILLS, [fill("F123", "buy", 10, SNAPSHOT.replace(second=5))])
    out = row(reconcile(book(("c", "A", "STK:X", 13, "equity")),
                        broker(("c", "A", "STK:X", 3, "equity")), fills_after=fills))
    assert out["status"] == "EXPLAINED"
    assert out["explanation"] == \
        "fill F123 (buy 10 @ 101.2) at 14:03:05 after broker snapshot 14:03:00"


def test_a_fill_that_does_not_close_the_gap_leaves_a_break_that_names_it():
    fills = frames.make(frames.FILLS, [fill("F1", "buy", 3, SNAPSHOT.replace(second=5))])
    out = row(reconcile(book(("c", "A", "STK:X", 14, "equity")),
                        broker(("c", "A", "STK:X", 10, "equity")), fills_after=fills))
    assert out["status"] == "QUANTITY_BREAK" and out["explanation"].startswith("not closed by")


def test_a_fill_executed_before_the_snapshot_explains_nothing():
    fills = frames.make(frames.FILLS, [fill("F0", "buy", 3, SNAPSHOT.replace(minute=0))])
    out = row(reconcile(book(("c", "A", "STK:X", 13, "equity")),
                        broker(("c", "A", "STK:X", 10, "equity")), fills_after=fills))
    assert out["status"] == "QUANTITY_BREAK" and "F0" not in out["explanation"]


def test_a_fill_explains_a_position_bought_after_the_snapshot_of_the_account():
    fills = frames.make(frames.FILLS, [fill("F7", "buy", 5, SNAPSHOT.replace(second=9),
                                            instrument="STK:NEW")])
    out = reconcile(book(("c", "A", "STK:X", 1, "equity"), ("c", "A", "STK:NEW", 5, "equity")),
                    broker(("c", "A", "STK:X", 1, "equity")), fills_after=fills)
    assert row(out, "STK:NEW")["status"] == "EXPLAINED"


def test_an_open_order_explains_only_what_it_closes():
    def orders(filled: float, side: str = "sell") -> pd.DataFrame:
        return frames.make(frames.ORDERS, [{
            "connection": "c", "account": "A", "order_id": "O9", "instrument": "STK:X",
            "side": side, "quantity": 10, "filled_quantity": filled, "avg_fill_price": 10.5,
            "status": "PARTIALLY_FILLED"}])

    b, r = book(("c", "A", "STK:X", 10, "equity")), broker(("c", "A", "STK:X", 6, "equity"))
    out = row(reconcile(b, r, open_orders=orders(4)))
    assert out["status"] == "EXPLAINED"
    assert out["explanation"] == ("open order O9 (sell 10, 4 filled @ 10.5) executed at the "
                                  "broker, not yet in the book")
    assert row(reconcile(b, r, open_orders=orders(3)))["status"] == "QUANTITY_BREAK"
    assert row(reconcile(b, r, open_orders=orders(4, "buy")))["status"] == "QUANTITY_BREAK"
    assert row(reconcile(b, r, open_orders=orders(0)))["status"] == "QUANTITY_BREAK"


def test_a_connection_that_could_not_be_read_is_unknown_not_missing():
    out = reconcile(book(("down", "A", "STK:X", 10, "equity"),
                         ("up", "B", "STK:Y", 5, "equity")),
                    broker(("up", "B", "STK:Y", 5, "equity")), failed={"down": "timed out"})
    down = row(out, "STK:X")
    assert down["status"] == "UNKNOWN" and "timed out" in down["explanation"]
    assert down["book_quantity"] == 10 and np.isnan(down["broker_quantity"])
    assert np.isnan(down["quantity_diff"]) and np.isnan(down["value_diff"])
    assert row(out, "STK:Y")["status"] == "MATCH"


def test_bad_input_names_the_frame_and_the_column():
    with pytest.raises(SchemaError, match=r"book frame is missing columns \['quantity'\]"):
        reconcile(book().drop(columns="quantity"), broker())
    with pytest.raises(SchemaError, match="instrument"):
        reconcile(book(("c", "A", None, 1, "equity")), broker())
    with pytest.raises(TypeError, match="'equity'"):
        reconcile(book(), broker(), tolerances={"equity": "tight"})


# "Vectorized == row by row" on random frames, every column: test_reconcile_equivalence.py
