"""Settlement dates against calendar facts (checked in exchange_calendars)."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest
from factories import fill

from brokerkit import frames
from brokerkit.post_trade.settlement import (
    settlement_dates,
    settlement_status,
    with_settlement,
)


def settle(*rows: dict) -> list[str]:
    df = frames.make(frames.FILLS, rows)
    return [d.strftime("%Y-%m-%d") for d in settlement_dates(df)]


@pytest.mark.parametrize(("trade", "instrument", "asset_class", "currency", "expected"), [
    ("2026-11-20", "STK:AAPL", "equity", "USD", "2026-11-23"),  # Friday T+1 -> Monday
    ("2024-05-24", "STK:AAPL", "equity", "USD", "2024-05-29"),  # T+2 before the switch,
                                                                # over Memorial Day 2024-05-27
    ("2024-05-28", "STK:AAPL", "equity", "USD", "2024-05-29"),  # first T+1 day
    ("2026-11-25", "STK:SPY", "etf", "USD", "2026-11-27"),      # Thanksgiving closed; the half
                                                                # day after is a session
    ("2026-12-24", "STK:MSFT", "equity", "USD", "2026-12-28"),  # Christmas on a Friday
    ("2026-08-28", "STK:VOD@LSE", "equity", "GBP", "2026-09-02"),  # UK bank holiday 08-31
    ("2026-04-29", "CASH:EUR.USD", "fx", "USD", "2026-05-04"),  # T+2, Frankfurt shut 05-01
    ("2026-11-25", "CASH:EUR.USD", "fx", "USD", "2026-11-30"),  # T+2, US shut 11-26
    ("2026-06-30", "CASH:USD.CAD", "fx", "CAD", "2026-07-02"),  # T+1, Canada Day 07-01
    ("2026-11-22", "CRYPTO:BTC/USD", "crypto", "USD", "2026-11-22"),  # T+0 on a Sunday
    ("2026-11-21", "STK:AAPL", "equity", "USD", "2026-11-24"),  # Saturday: from Monday
])
def test_settlement_dates_follow_the_market_rules(trade, instrument, asset_class, currency,
                                                  expected):
    assert settle(fill(trade, instrument, asset_class, currency)) == [expected]


@pytest.mark.parametrize(("calendar", "day", "is_session"), [
    ("XNYS", "2024-05-27", False),  # Memorial Day
    ("XNYS", "2026-11-26", False),  # Thanksgiving
    ("XNYS", "2026-11-27", True),   # the half day after it
    ("XNYS", "2026-12-25", False),
    ("XLON", "2026-08-31", False),  # summer bank holiday
    ("XFRA", "2026-05-01", False),  # Labour Day (also a TARGET holiday)
    ("XTSE", "2026-07-01", False),  # Canada Day
    ("XNYS", "2026-07-01", True),
])
def test_the_calendar_facts_these_tests_rely_on(calendar, day, is_session):
    xcals = pytest.importorskip("exchange_calendars")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert xcals.get_calendar(calendar).is_session(day) is is_session


def test_old_trade_dates_widen_the_calendar_instead_of_landing_on_its_first_day():
    # T+3 in 1999 (SEC Rule 15c6-1 before 2017-09-05): NYSE opened on 1999-12-31
    assert settle(fill("1999-12-30")) == ["2000-01-04"]


def test_mixed_frame_is_settled_in_one_call_in_row_order():
    got = settle(fill("2026-11-20"), fill("2026-11-22", "CRYPTO:BTC/USD", "crypto"),
                 fill("2024-05-24"), fill("2026-08-28", "STK:VOD@LSE", currency="GBP"))
    assert got == ["2026-11-23", "2026-11-22", "2024-05-29", "2026-09-02"]


def test_status_is_pending_until_the_settle_date():
    df = with_settlement(frames.make(frames.FILLS, [fill("2026-11-20")]))
    assert settlement_status(df, "2026-11-20").tolist() == ["pending"]
    assert settlement_status(df, "2026-11-23").tolist() == ["settled"]
    assert settlement_status(df, pd.Timestamp("2026-11-23T01:00", tz="UTC")).tolist() \
        == ["settled"]


def test_a_fill_without_trade_date_has_unknown_settlement():
    df = frames.make(frames.FILLS, [fill("2026-11-20"), {**fill("2026-11-20"),
                                                         "trade_date": None}])
    assert settlement_status(df, "2026-11-30").tolist() == ["settled", "unknown"]
