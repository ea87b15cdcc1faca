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
from brokerkit.post_trade.reconcile import UNEXPLAINED, Tolerance

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


# -- issue 14: share classes, currencies, value tolerance, multipliers, broker-side events ----

@pytest.mark.parametrize("spelling", ["BRK B", "BRK/B", "BRK-B", "BRK.B"])
def test_share_class_spellings_of_one_instrument_are_one_key(spelling):
    """Berkshire Hathaway class B is `BRK.B` (NASDAQ integrated platform), `BRK/B` (CQS,
    Bloomberg), `BRK B` (CMS, IBKR) and `BRK-B` (Yahoo). Sources: nasdaqtrader.com "Ticker
    Symbol Convention" (Trader.aspx?id=CQSSymbolConvention); IBKR Knowledge Base on the
    symbol conventions for Berkshire Hathaway Class B shares (ibkr.info)."""
    b = book(("c", "A", "STK:BRK.B", 10, "equity"))
    out = reconcile(b, broker(("c", "A", f"STK:{spelling}", 10, "equity")))
    assert len(out) == 1 and row(out, "STK:BRK.B")["status"] == "MATCH"


def test_a_currency_mismatch_on_the_same_key_is_a_currency_break_even_when_quantities_agree():
    """Ten shares priced in EUR are not ten shares priced in USD: the book and the broker
    disagree about what the instrument is (issue 14, "Reconciliation")."""
    b = book(("c", "A", "STK:X", 10, "equity"))
    b["currency"] = "EUR"
    out = row(reconcile(b, broker(("c", "A", "STK:X", 10, "equity"))))
    assert out["status"] == "CURRENCY_BREAK" and np.isnan(out["value_diff"])
    assert out["explanation"] == "currency differs: book EUR, broker USD"
    assert "CURRENCY_BREAK" in UNEXPLAINED


def test_a_difference_worth_less_than_the_value_tolerance_matches():
    b = book(("c", "A", "CRYPTO:BTC/USD", 1.0, "crypto"))
    r = broker(("c", "A", "CRYPTO:BTC/USD", 1.001, "crypto"), price=5.0)  # worth 0.005
    assert row(reconcile(b, r), "CRYPTO:BTC/USD")["status"] == "QUANTITY_BREAK"
    loose = {"crypto": Tolerance(value=0.01)}
    assert row(reconcile(b, r, tolerances=loose), "CRYPTO:BTC/USD")["status"] == "MATCH"
    tight = {"crypto": Tolerance(value=0.001)}
    assert row(reconcile(b, r, tolerances=tight), "CRYPTO:BTC/USD")["status"] \
        == "QUANTITY_BREAK"
    with pytest.raises(ValueError, match="value"):
        Tolerance(value=-1)


def test_an_option_the_broker_does_not_hold_is_valued_at_100_shares_a_contract():
    """A standard US equity option covers 100 shares (OCC, "Characteristics and Risks of
    Standardized Options"; Cboe contract specifications)."""
    out = row(reconcile(book(("c", "A", "OPT:X", 2, "option")), broker(),
                        prices={"OPT:X": 1.5}), "OPT:X")
    assert out["status"] == "MISSING_AT_BROKER" and out["value_diff"] == -2 * 1.5 * 100


def test_a_future_is_valued_with_the_multiplier_the_broker_states():
    """E-mini S&P 500 futures are $50 x the index (CME Group, E-mini S&P 500 contract
    specifications); a future with no stated multiplier has no value_diff, never x1."""
    es = frames.make(frames.POSITIONS, [{
        "connection": "c", "account": "A", "instrument": "FUT:ESZ6", "asset_class": "future",
        "quantity": 3, "market_price": 6000.0, "multiplier": 50.0, "as_of": SNAPSHOT}])
    out = row(reconcile(book(("c", "A", "FUT:ESZ6", 2, "future")), es), "FUT:ESZ6")
    assert out["value_diff"] == 1 * 6000.0 * 50
    out = row(reconcile(book(("c", "A", "FUT:ESZ6", 2, "future")), broker(),
                        prices={"FUT:ESZ6": 6000.0}), "FUT:ESZ6")
    assert np.isnan(out["value_diff"])


def test_a_broker_fill_of_a_completed_order_not_yet_in_the_book_is_explained_with_the_fill():
    done = frames.make(frames.FILLS, [{**fill("E42", "buy", 5, SNAPSHOT.replace(minute=1),
                                              price=99.5), "order_id": "O7"}])
    out = row(reconcile(book(("c", "A", "STK:X", 10, "equity")),
                        broker(("c", "A", "STK:X", 15, "equity")), broker_fills=done))
    assert out["status"] == "EXPLAINED"
    assert out["explanation"] == ("broker fill E42 (buy 5 @ 99.5) of order O7 at 14:01:00, "
                                  "not yet in the book")
    later = frames.make(frames.FILLS, [fill("E43", "buy", 5, SNAPSHOT.replace(minute=9))])
    assert row(reconcile(book(("c", "A", "STK:X", 10, "equity")),
                         broker(("c", "A", "STK:X", 15, "equity")),
                         broker_fills=later))["status"] == "QUANTITY_BREAK"


def test_a_split_reported_by_the_broker_explains_the_difference_and_keeps_the_cost_basis():
    """Apple's 4-for-1 split (shareholders of record 2020-08-24, trading split-adjusted
    from 2020-08-31; Apple press release, 2020-07-30): 10 shares become 40."""
    split = pd.DataFrame([{"connection": "c", "account": "A", "instrument": "STK:X",
                           "ratio": 4.0, "kind": "split", "action_id": "CA1"}])
    b = book(("c", "A", "STK:X", 10, "equity"))
    out = row(reconcile(b, broker(("c", "A", "STK:X", 40, "equity")), corporate_actions=split))
    assert out["status"] == "EXPLAINED"
    assert out["explanation"] == ("corporate action CA1 (split x4) reported by the broker, not "
                                  "yet in the book; cost basis kept")
    assert row(reconcile(b, broker(("c", "A", "STK:X", 41, "equity")),
                         corporate_actions=split))["status"] == "QUANTITY_BREAK"
    with pytest.raises(SchemaError, match="ratio"):
        reconcile(b, broker(), corporate_actions=split.assign(ratio=0.0))
