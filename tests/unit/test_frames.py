"""The canonical schemas: constructors give typed frames, validation names every problem."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from brokerkit import frames
from brokerkit.errors import SchemaError


@pytest.mark.parametrize("name", sorted(frames.SCHEMAS))
def test_empty_frames_are_typed_and_valid(name):
    df = frames.empty(name)
    assert df.empty and list(df.columns) == frames.SCHEMAS[name].names
    frames.validate(name, df)


def test_make_coerces_dtypes_and_fills_constants():
    df = frames.make(frames.POSITIONS, [{"account": "A1", "instrument": "STK:AAPL",
                                         "quantity": "3", "as_of": "2026-01-02T15:00:00Z"}],
                     connection="paper")
    frames.validate(frames.POSITIONS, df)
    assert df.loc[0, "connection"] == "paper" and df.loc[0, "quantity"] == 3.0
    assert df["as_of"].dt.tz is not None and str(df["as_of"].dt.tz) == "UTC"
    assert pd.isna(df.loc[0, "market_price"])


def test_dates_are_naive_midnight():
    df = frames.make(frames.FILLS, [{"trade_date": datetime(2026, 3, 4, 15, 30, tzinfo=UTC)}])
    assert df.loc[0, "trade_date"] == pd.Timestamp("2026-03-04")


def test_validate_reports_missing_extra_and_wrong_dtypes():
    df = frames.empty(frames.BALANCES).drop(columns=["cash"])
    df["surprise"] = 1
    df["equity"] = df["equity"].astype(object)
    with pytest.raises(SchemaError) as exc:
        frames.validate(frames.BALANCES, df)
    msg = str(exc.value)
    assert "missing columns ['cash']" in msg and "surprise" in msg and "'equity'" in msg


def test_validate_rejects_naive_timestamps():
    df = frames.empty(frames.QUOTES)
    df["as_of"] = pd.Series([], dtype="datetime64[ns]")
    with pytest.raises(SchemaError, match="as_of"):
        frames.validate(frames.QUOTES, df)


def test_concat_of_nothing_is_a_typed_empty_frame():
    df = frames.concat(frames.ORDERS, [frames.empty(frames.ORDERS)])
    frames.validate(frames.ORDERS, df)
