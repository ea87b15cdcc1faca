"""`reconcile` (vectorized) equals `reconcile_reference` (row by row, dicts and loops) on the
same inputs: every column of every row, explanations included, on random small frames
(hypothesis) with both ways of numbering keys (lookup table and sorted search), with key
columns as object, string or categorical, and on a larger frame shaped like the benchmark's."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brokerkit import frames
from brokerkit.post_trade import (
    COLUMNS,
    RECONCILIATION,
    STATUSES,
    reconcile,
    reconcile_reference,
)
from brokerkit.post_trade.reconcile import Tolerance

#: The module (the package's `reconcile` attribute is the function).
reconcile_module = importlib.import_module("brokerkit.post_trade.reconcile")

SNAPSHOT = datetime(2026, 11, 20, 14, 3, 0, tzinfo=UTC)
KEY = ["connection", "account", "instrument"]


FLOATS = [c.name for c in RECONCILIATION if c.kind == "float"]


def plain(df: pd.DataFrame) -> pd.DataFrame:
    """Values only: text columns as objects (missing: None), numbers as float64, rows by key."""
    out = df.astype(object)
    out = out.where(out.notna(), None).astype(dict.fromkeys(FLOATS, "float64"))
    return out.sort_values(KEY, kind="stable").reset_index(drop=True)


def assert_same(book: pd.DataFrame, broker: pd.DataFrame, **kw: Any) -> pd.DataFrame:
    fast = reconcile(book, broker, **kw)
    slow = reconcile_reference(book, broker, **kw)
    assert list(fast.columns) == COLUMNS == list(slow.columns)
    assert all(isinstance(fast[c].dtype, pd.CategoricalDtype) for c in
               ("connection", "account", "instrument", "symbol", "asset_class", "currency",
                "status", "explanation"))
    assert list(fast["status"].cat.categories) == list(STATUSES)
    pd.testing.assert_frame_equal(plain(fast), plain(slow), check_exact=True)
    return fast


@pytest.fixture(params=["table", "sorted"])
def numbering(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Keys numbered through a lookup table (the usual), or forced through sorted search."""
    if request.param == "sorted":
        monkeypatch.setattr(reconcile_module, "_DENSE", 0)
        monkeypatch.setattr(reconcile_module, "_DENSE_MIN", 0)
    return str(request.param)


# -- random small frames ---------------------------------------------------------------------

_CONN = st.sampled_from(["c1", "c2", "c3"])
_ACCT = st.sampled_from(["A", "B", None])
# Share-class spellings of one key (venues.symbols) are among them: they must join.
_INST = st.sampled_from(["STK:X", "STK:Y", "CRYPTO:BTC/USD", "OPT:Z", "FUT:ES", "STK:BRK.B",
                         "STK:BRK B", "STK:BRK/B", "STK:BRK-B"])
_KEY = st.tuples(_CONN, _ACCT, _INST)
_QTY = st.sampled_from([0.0, 1.0, 2.5, 1e-9, 3e-7, 10.0, -4.0, 100.0, float("nan")])
_CLASS = st.sampled_from(["equity", "crypto", "option", "future", "fx", "etf", "other", None])
_SYMBOL = st.sampled_from(["X", "Y", None])
_CCY = st.sampled_from(["USD", "EUR", None])
_PRICE = st.sampled_from([10.0, 2.0, float("nan")])
_MULT = st.sampled_from([1.0, 100.0, float("nan")])
_WHEN = st.sampled_from([SNAPSHOT, SNAPSHOT - timedelta(minutes=3), SNAPSHOT + timedelta(days=1),
                         None])
_FILL_AT = st.sampled_from([SNAPSHOT + timedelta(seconds=30), SNAPSHOT - timedelta(seconds=30),
                            SNAPSHOT + timedelta(days=1, seconds=5), None])

_STATED = st.sampled_from([None, 50.0, float("nan")])  # the broker's multiplier column
_BOOK_ROW = st.tuples(_KEY, _QTY, _CLASS, _SYMBOL, _CCY)
_BROKER_ROW = st.tuples(_KEY, _QTY, _CLASS, _SYMBOL, _CCY, _PRICE, _MULT, _WHEN, _STATED)
_FILL_ROW = st.tuples(_KEY, st.sampled_from(["buy", "sell", "BUY"]), _QTY, _FILL_AT,
                      st.sampled_from([101.25, float("nan")]), st.booleans())
_ORDER_ROW = st.tuples(_KEY, st.sampled_from(["buy", "sell"]), _QTY,
                       st.sampled_from([10.0, float("nan")]), st.sampled_from([10.5, None]))
_TOLERANCES = st.sampled_from([None, {"crypto": 1e-5}, {"equity": Tolerance(relative=0.1)},
                               {"option": 0.5, "other": 1.0},
                               {"equity": Tolerance(value=15.0), "option": Tolerance(value=250.0),
                                "crypto": Tolerance(1e-9, value=20.0)}])
_ACTION_ROW = st.tuples(_KEY, st.sampled_from([2.0, 4.0, 0.5, 0.1]),
                        st.sampled_from(["split", None]), st.booleans())


def book_frame(rows: list[tuple]) -> pd.DataFrame:
    """Like `Book.book_positions_frame()`: object columns, a row per key."""
    return pd.DataFrame(
        [{"connection": c, "account": a, "instrument": i, "symbol": sym, "asset_class": ac,
          "quantity": q, "currency": ccy} for (c, a, i), q, ac, sym, ccy in rows],
        columns=["connection", "account", "instrument", "symbol", "asset_class", "quantity",
                 "currency"]).astype(object).astype({"quantity": "float64"})


def broker_frame(rows: list[tuple]) -> pd.DataFrame:
    """Like an adapter's: a POSITIONS frame (a row may leave out the stated multiplier)."""
    return frames.make(frames.POSITIONS, [
        {"connection": c, "account": a, "instrument": i, "symbol": sym, "asset_class": ac,
         "quantity": q, "market_price": px, "market_value": q * px * mult, "currency": ccy,
         "as_of": when, "multiplier": stated}
        for (c, a, i), q, ac, sym, ccy, px, mult, when, *more in rows
        for stated in [more[0] if more else None]])


@settings(max_examples=200, deadline=None)
@given(book_rows=st.lists(_BOOK_ROW, max_size=12), broker_rows=st.lists(_BROKER_ROW, max_size=12),
       fill_rows=st.lists(_FILL_ROW, max_size=5), order_rows=st.lists(_ORDER_ROW, max_size=4),
       at_broker_rows=st.lists(_FILL_ROW, max_size=4),
       action_rows=st.lists(_ACTION_ROW, max_size=3),
       down=st.sets(_CONN, max_size=2), down_rows_kept=st.booleans(), tolerances=_TOLERANCES)
def test_vectorized_equals_row_by_row(numbering: str, book_rows: list[tuple],
                                      broker_rows: list[tuple], fill_rows: list[tuple],
                                      order_rows: list[tuple], at_broker_rows: list[tuple],
                                      action_rows: list[tuple], down: set[str],
                                      down_rows_kept: bool, tolerances: Any) -> None:
    b = book_frame(book_rows)
    r = broker_frame([x for x in broker_rows if down_rows_kept or x[0][0] not in down])
    fills = frames.make(frames.FILLS, [
        {"connection": c, "account": a, "instrument": i, "side": side, "quantity": q,
         "fill_id": f"F{n}" if named else None, "price": px, "executed_at": at}
        for n, ((c, a, i), side, q, at, px, named) in enumerate(fill_rows)])
    orders = frames.make(frames.ORDERS, [
        {"connection": c, "account": a, "instrument": i, "order_id": f"O{n}", "side": side,
         "quantity": qty, "filled_quantity": filled, "avg_fill_price": avg}
        for n, ((c, a, i), side, filled, qty, avg) in enumerate(order_rows)])
    at_broker = frames.make(frames.FILLS, [
        {"connection": c, "account": a, "instrument": i, "side": side, "quantity": q,
         "fill_id": f"B{n}" if named else None, "order_id": f"O{n}" if named else None,
         "price": px, "executed_at": at}
        for n, ((c, a, i), side, q, at, px, named) in enumerate(at_broker_rows)])
    actions = pd.DataFrame(
        [{"connection": c, "account": a, "instrument": i, "ratio": ratio, "kind": kind,
          "action_id": f"CA{n}" if named else None}
         for n, ((c, a, i), ratio, kind, named) in enumerate(action_rows)],
        columns=["connection", "account", "instrument", "ratio", "kind", "action_id"])
    assert_same(b, r, fills_after=fills, open_orders=orders, broker_fills=at_broker,
                corporate_actions=actions, failed={c: f"{c} timed out" for c in down},
                tolerances=tolerances)


@settings(max_examples=60, deadline=None)
@given(book_rows=st.lists(_BOOK_ROW, min_size=1, max_size=12),
       broker_rows=st.lists(_BROKER_ROW, max_size=12),
       kinds=st.tuples(*[st.sampled_from(["object", "str", "category"])] * 2))
def test_key_columns_may_be_object_string_or_categorical(book_rows: list[tuple],
                                                         broker_rows: list[tuple],
                                                         kinds: tuple[str, str]) -> None:
    b, r = book_frame(book_rows), broker_frame(broker_rows)
    expected = plain(reconcile(b, r))
    for frame, kind in zip((b, r), kinds, strict=True):
        for col in KEY:
            frame[col] = frame[col].astype(kind if kind != "str" else "string")
    assert_same(b, r)
    pd.testing.assert_frame_equal(plain(reconcile(b, r)), expected, check_exact=True)


# -- fixed cases -----------------------------------------------------------------------------

def test_symbol_and_class_come_from_the_first_book_row_of_connection_and_instrument():
    """A key only the broker holds takes its descriptive columns from the book's row for the
    same (connection, instrument) in another account: the book's word first."""
    b = book_frame([(("c", "A", "STK:X"), 1.0, "equity", "X", "USD")])
    r = broker_frame([(("c", "B", "STK:X"), 1.0, "etf", "X.US", "EUR", 10.0, 1.0, SNAPSHOT),
                      (("c", "A", "STK:X"), 1.0, "etf", "X.US", "EUR", 10.0, 1.0, SNAPSHOT)])
    out = assert_same(b, r).set_index("account")
    assert out.loc["B", "asset_class"] == "equity" and out.loc["B", "symbol"] == "X"
    assert out.loc["B", "status"] == "UNKNOWN_TO_BOOK"


def test_rows_come_ordered_by_connection_account_instrument_in_order_of_appearance():
    b = book_frame([(("z", "A", "STK:Y"), 1.0, "equity", "Y", "USD"),
                    (("a", "B", "STK:X"), 1.0, "equity", "X", "USD"),
                    (("z", "A", "STK:X"), 1.0, "equity", "X", "USD")])
    r = broker_frame([(("a", "A", "STK:Y"), 1.0, "equity", "Y", "USD", 1.0, 1.0, SNAPSHOT)])
    out = assert_same(b, r)
    # each column in its own order of first appearance: z before a, A before B, Y before X
    assert out[KEY].astype(str).values.tolist() == [
        ["z", "A", "STK:Y"], ["z", "A", "STK:X"], ["a", "A", "STK:Y"], ["a", "B", "STK:X"]]


def test_the_explanations_are_the_same_text():
    b = book_frame([(("c", "A", "STK:X"), 13.0, "equity", "X", "USD"),
                    (("d", "A", "STK:X"), 1.0, "equity", "X", "USD")])
    r = broker_frame([(("c", "A", "STK:X"), 3.0, "equity", "X", "USD", 10.0, 1.0, SNAPSHOT)])
    fills = frames.make(frames.FILLS, [
        {"connection": "c", "account": "A", "instrument": "STK:X", "fill_id": "F1",
         "side": "buy", "quantity": 10, "price": 101.25,
         "executed_at": SNAPSHOT + timedelta(days=1, seconds=5)}])
    out = assert_same(b, r, fills_after=fills, failed={"d": "timed out"}).set_index(
        "connection")
    assert out.loc["c", "explanation"] == ("fill F1 (buy 10 @ 101.25) at 2026-11-21 14:03:05 "
                                           "after broker snapshot 14:03:00")
    assert out.loc["d", "explanation"] == ("d could not be read (timed out): its positions are "
                                           "unknown, not flat")


def test_a_larger_frame_shaped_like_the_benchmark(numbering: str):
    rng = np.random.default_rng(3)
    n = 20_000
    idx = np.arange(n)
    conns = np.array([f"conn-{i}" for i in range(7)], dtype=object)
    accts = np.array([f"ACCT-{i}" for i in range(11)], dtype=object)
    b = pd.DataFrame({
        "connection": conns[idx % 7], "account": accts[(idx // 7) % 11],
        "instrument": np.array([f"STK:S{i // 77}" for i in idx], dtype=object),
        "symbol": None, "asset_class": np.where(idx % 5 == 0, "crypto", "equity").astype(object),
        "currency": "USD", "quantity": rng.integers(1, 1000, n).astype("float64")})
    r = b.copy()
    r.loc[rng.choice(n, n // 50, replace=False), "quantity"] += 1
    r["market_price"] = 100.0
    r["market_value"] = r["quantity"] * 100.0
    r["as_of"] = SNAPSHOT
    r = frames.make(frames.POSITIONS, r.drop(index=rng.choice(n, n // 100, replace=False)))
    b = b.drop(index=rng.choice(n, n // 100, replace=False))  # some UNKNOWN_TO_BOOK too
    out = assert_same(b, r)
    assert set(out["status"]) == {"MATCH", "QUANTITY_BREAK", "MISSING_AT_BROKER",
                                  "UNKNOWN_TO_BOOK"}
