"""Settlement dates against calendar facts (checked in exchange_calendars), the cash ladder,
and good-faith violations."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime

import pandas as pd
import pytest

from brokerkit import frames
from brokerkit.post_trade.settlement import (
    cash_ladder,
    good_faith_violations,
    settlement_dates,
    settlement_status,
    with_settlement,
)


def fill(trade_date: str, instrument: str = "STK:AAPL", asset_class: str = "equity",
         currency: str = "USD", **kw) -> dict:
    return {"connection": "c", "account": "A", "fill_id": kw.pop("fill_id", trade_date),
            "instrument": instrument, "asset_class": asset_class, "currency": currency,
            "side": kw.pop("side", "buy"), "quantity": kw.pop("quantity", 1.0),
            "price": kw.pop("price", 100.0), "fee": kw.pop("fee", 0.0),
            "executed_at": datetime.fromisoformat(trade_date).replace(hour=15, tzinfo=UTC),
            "trade_date": trade_date, **kw}


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


def test_cash_ladder_projects_settled_cash_by_date():
    fills = frames.make(frames.FILLS, [
        fill("2026-11-20", side="sell", quantity=10, price=100, fill_id="s1"),   # +1000 11-23
        fill("2026-11-20", "STK:VOD@LSE", currency="GBP", quantity=100, price=1,
             fill_id="b1"),                                                     # -100 GBP 11-24
    ])
    balances = frames.make(frames.BALANCES, [
        {"connection": "c", "account": "A", "currency": "USD", "settled_cash": 5000},
        {"connection": "c", "account": "A", "currency": "GBP", "settled_cash": 300}])
    ladder = cash_ladder(fills, balances, as_of="2026-11-20")
    usd = ladder[ladder["currency"] == "USD"].reset_index(drop=True)
    assert usd["date"].dt.strftime("%Y-%m-%d").tolist() == ["2026-11-20", "2026-11-23"]
    assert usd["settled_cash"].tolist() == [5000, 6000]
    assert usd["unsettled"].tolist() == [1000, 0]
    gbp = ladder[ladder["currency"] == "GBP"].reset_index(drop=True)
    assert gbp["date"].dt.strftime("%Y-%m-%d").tolist() == ["2026-11-20", "2026-11-24"]
    assert gbp["settled_cash"].tolist() == [300, 200]


def test_cash_ladder_includes_currencies_without_a_balance_and_fees_in_their_currency():
    fills = frames.make(frames.FILLS, [
        fill("2026-11-22", "CRYPTO:BTC/EUR", "crypto", "EUR", side="sell", quantity=1,
             price=50_000, fee=0.001, fee_currency="BTC", fill_id="x1")])
    balances = frames.make(frames.BALANCES, [
        {"connection": "c", "account": "A", "currency": "USD", "settled_cash": 10}])
    ladder = cash_ladder(fills, balances, as_of="2026-11-21")
    last = ladder.groupby("currency").last()
    assert last.loc["EUR", "settled_cash"] == 50_000 and last.loc["EUR", "unsettled"] == 0
    assert last.loc["BTC", "settled_cash"] == -0.001
    assert last.loc["USD", "settled_cash"] == 10
    assert cash_ladder(fills, balances, as_of="2026-11-22").groupby("currency").size()\
        .to_dict() == {"USD": 1}  # settled by then: already in the balances


def _gfv_fills(sell_day: str) -> pd.DataFrame:
    return frames.make(frames.FILLS, [
        fill("2026-11-16", "STK:MSFT", side="sell", quantity=10, price=100, fill_id="s0"),
        fill("2026-11-16", "STK:NVDA", quantity=10, price=100, fill_id="b1"),  # unsettled $
        fill(sell_day, "STK:NVDA", side="sell", quantity=10, price=101, fill_id="s1"),
    ])


def test_good_faith_violation_when_sold_before_the_funds_settled():
    v = good_faith_violations(_gfv_fills("2026-11-16"), {("c", "A"): 0.0},
                              {("c", "A"): "cash"})
    assert len(v) == 1 and v.loc[0, "buy_fill"] == "b1" and v.loc[0, "sell_fill"] == "s1"
    assert "before they settled" in v.loc[0, "explanation"]


def test_no_violation_once_the_funds_settled_or_in_a_margin_account_or_with_cash():
    settled_sale = good_faith_violations(_gfv_fills("2026-11-17"), {("c", "A"): 0.0},
                                         {("c", "A"): "cash"})
    assert settled_sale.empty  # MSFT proceeds settled 11-17 (T+1)
    margin = good_faith_violations(_gfv_fills("2026-11-16"), {("c", "A"): 0.0},
                                   {("c", "A"): "margin"})
    assert margin.empty
    balances = frames.make(frames.BALANCES, [
        {"connection": "c", "account": "A", "currency": "USD", "settled_cash": 5000.0}])
    paid_in_cash = good_faith_violations(_gfv_fills("2026-11-16"), balances,
                                         {("c", "A"): "cash"})
    assert paid_in_cash.empty


def test_a_violation_names_the_sale_that_funded_the_buy():
    v = good_faith_violations(_gfv_fills("2026-11-16"), {("c", "A"): 0.0}, {"A": "cash"})
    assert v.loc[0, "funded_by"] == "s0"
    assert v.loc[0, "funds_settle"] == pd.Timestamp("2026-11-17")


def test_an_unknown_account_type_is_an_error_naming_it():
    with pytest.raises(ValueError, match="'ira'"):
        good_faith_violations(_gfv_fills("2026-11-16"), {}, {("c", "A"): "ira"})
