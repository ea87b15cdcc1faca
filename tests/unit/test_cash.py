"""The cash ladder and good-faith violations (settle dates from post_trade.settlement)."""

from __future__ import annotations

import pandas as pd
import pytest
from factories import fill

from brokerkit import frames
from brokerkit.post_trade.cash import LADDER_COLUMNS, cash_ladder, good_faith_violations


def test_cash_ladder_projects_settled_cash_by_date():
    fills = frames.make(frames.FILLS, [
        fill("2026-11-20", side="sell", quantity=10, price=100, fill_id="s1"),   # +1000 11-23
        fill("2026-11-20", "STK:VOD@LSE", currency="GBP", quantity=100, price=1,
             fill_id="b1"),                                                     # pays 11-24
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
    assert gbp["paying"].tolist() == [0, 100]
    assert gbp["settled_cash"].tolist() == [300, 300]  # the buy left settled cash on 11-20


def test_cash_ladder_does_not_deduct_unsettled_buys_twice():
    """IBKR's SettledCash is "cash recognized at the time of settlement - purchases at the
    time of trade - commissions - taxes - fees" (TWS API account summary tags,
    https://interactivebrokers.github.io/tws-api/classIBApi_1_1AccountSummaryTags.html): an
    unsettled buy and every fee are already out of the opening figure."""
    fills = frames.make(frames.FILLS, [
        fill("2026-12-04", "STK:MSFT", quantity=10, price=400, fee=1.0, fill_id="b1"),
        fill("2026-12-04", "STK:AAPL", side="sell", quantity=5, price=200, fee=1.0,
             fill_id="s1")])
    # 10,000 before: the buy (4,000) and both fees (2) are out at trade date; the sale's
    # 1,000 comes in when it settles (T+1: Monday 12-07)
    balances = frames.make(frames.BALANCES, [
        {"connection": "c", "account": "A", "currency": "USD", "settled_cash": 5998.0}])
    ladder = cash_ladder(fills, balances, as_of="2026-12-04")
    assert ladder["date"].dt.strftime("%Y-%m-%d").tolist() == ["2026-12-04", "2026-12-07"]
    assert ladder["settled_cash"].tolist() == [5998.0, 6998.0]
    assert ladder["paying"].tolist() == [0.0, 4000.0]


def test_cash_ladder_on_empty_fills_returns_the_opening_rows():
    balances = frames.make(frames.BALANCES, [
        {"connection": "c", "account": "A", "currency": "USD", "settled_cash": 5000},
        {"connection": "c", "account": "A", "currency": "EUR", "settled_cash": 70}])
    ladder = cash_ladder(frames.make(frames.FILLS, []), balances, as_of="2026-11-20")
    assert list(ladder.columns) == LADDER_COLUMNS
    assert sorted(zip(ladder["currency"], ladder["settled_cash"], strict=True)) == [
        ("EUR", 70.0), ("USD", 5000.0)]
    assert ladder["unsettled"].tolist() == [0.0, 0.0]
    assert cash_ladder(frames.make(frames.FILLS, []), frames.make(frames.BALANCES, [])).empty


def test_cash_ladder_includes_currencies_without_a_balance_and_leaves_fees_out():
    fills = frames.make(frames.FILLS, [
        fill("2026-11-22", "CRYPTO:BTC/EUR", "crypto", "EUR", side="sell", quantity=1,
             price=50_000, fee=0.001, fee_currency="BTC", fill_id="x1")])
    balances = frames.make(frames.BALANCES, [
        {"connection": "c", "account": "A", "currency": "USD", "settled_cash": 10}])
    ladder = cash_ladder(fills, balances, as_of="2026-11-21")
    last = ladder.groupby("currency").last()
    assert last.loc["EUR", "settled_cash"] == 50_000 and last.loc["EUR", "unsettled"] == 0
    assert "BTC" not in last.index  # the fee left the BTC balance when it was charged
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
