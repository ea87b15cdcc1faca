"""Which open orders `reduce-only` cancels: those a REDUCING state would refuse now (open from
flat, add, flip, or cannot be shown to reduce), judged oldest first against the position as
the older reducing orders would leave it; and how a `HaltReport` sums up its connections."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pandas as pd

from brokerkit import frames
from brokerkit.execution.killswitch import ConnectionCancels, HaltReport, StateView, _increasing

T0 = datetime(2025, 1, 6, 15, tzinfo=UTC)


def _orders(*rows: tuple[str, str, float]) -> pd.DataFrame:
    """(order id, side, quantity) rows on account A, AAPL, one second apart."""
    return frames.make(frames.ORDERS, [
        {"account": "A", "order_id": oid, "instrument": "STK:AAPL", "symbol": "AAPL",
         "side": side, "quantity": qty, "filled_quantity": 0.0, "status": "ACCEPTED",
         "submitted_at": T0 + timedelta(seconds=i)} for i, (oid, side, qty) in enumerate(rows)],
        connection="c")


def _long(qty: float) -> pd.DataFrame:
    return frames.make(frames.POSITIONS, [{"account": "A", "instrument": "STK:AAPL",
                                           "symbol": "AAPL", "quantity": qty}], connection="c")


def test_orders_that_add_to_a_long_position_are_cancelled_and_sells_within_it_kept():
    assert _increasing(_orders(("b", "buy", 1), ("s", "sell", 5)), _long(10)) == {"b"}


def test_any_order_from_flat_is_cancelled():
    assert _increasing(_orders(("b", "buy", 1), ("s", "sell", 1)), _long(0)) == {"b", "s"}


def test_a_sell_larger_than_the_long_position_would_flip_it_and_is_cancelled():
    assert _increasing(_orders(("s", "sell", 11)), _long(10)) == {"s"}


def test_reducing_orders_that_together_would_flip_the_position_keep_only_the_older():
    got = _increasing(_orders(("s1", "sell", 6), ("s2", "sell", 6), ("s3", "sell", 4)),
                      _long(10))
    assert got == {"s2"}  # s1 leaves 4; s2 would flip; s3 closes to flat


def test_unknown_positions_or_sizes_never_pass():
    assert _increasing(_orders(("s", "sell", 1)), None) == {"s"}
    assert _increasing(_orders(("n", "sell", math.nan)), _long(10)) == {"n"}


def test_halt_report_is_complete_only_when_every_connection_is():
    state = StateView("HALTED", "x", "me", T0, 1)
    ok = ConnectionCancels("a", canceled=[{"order_id": "1", "client_order_id": None,
                                           "status": "CANCELED"}])
    report = HaltReport(state, {"a": ok, "r": ConnectionCancels("r", skipped="read-only")})
    assert report.complete and report.errors == {}
    assert report.canceled == [{"connection": "a", "order_id": "1", "client_order_id": None,
                                "status": "CANCELED"}]
    report.connections["b"] = ConnectionCancels("b", error="connect failed: refused")
    report.connections["c"] = ConnectionCancels("c", failed={"9": "cancel refused"})
    assert not report.complete
    assert report.errors == {"b": "connect failed: refused",
                             "c": "1 open order(s) not cancelled: 9: cancel refused"}
    assert report.to_dict()["complete"] is False
