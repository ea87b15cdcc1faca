"""PaperBroker splits: positions keep their cost basis, open orders are adjusted (or canceled)
as a broker must, and each action is recorded for the accounts it changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from brokerkit.errors import InvalidIntent
from brokerkit.model import OrderStatus
from brokerkit.sandbox.broker import PaperBroker
from brokerkit.sandbox.market import Clock, Market, UnknownSymbol

MONDAY = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


@pytest.fixture
def broker() -> PaperBroker:
    clock = Clock(MONDAY)
    clock.freeze()
    b = PaperBroker("t", Market(11, clock=clock))
    b.open_account("MARGIN", "margin", "USD", {"USD": 1_000_000})
    b.open_account("CASH", "cash", "USD", {"USD": 10_000})
    b.set_position("MARGIN", "AAPL", 120, "190.25")
    return b


def test_apples_4_for_1_split_multiplies_the_shares_and_keeps_the_cost_basis(broker):
    """Apple's 4-for-1 split of 2020 (Apple press release, 2020-07-30: "each Apple
    shareholder of record at the close of business on August 24, 2020 will receive a
    dividend of three additional shares for each share held"): 120 at 190.25 are 480 at
    47.5625, the same 22,830 of cost."""
    action = broker.apply_split("AAPL", 4, action_id="AAPL-2020")
    pos = broker.account("MARGIN").positions["STK:AAPL"]
    assert (pos.quantity, pos.avg_cost) == (Decimal(480), Decimal("47.5625"))
    assert pos.quantity * pos.avg_cost == Decimal(120) * Decimal("190.25")
    assert (action.kind, action.ratio, action.accounts) == ("split", Decimal(4), ("MARGIN",))
    assert action.effective_date == MONDAY.date()


def test_open_orders_keep_their_dollar_value_on_a_forward_split_as_finra_rule_5330_has_it(
        broker):
    """FINRA Rule 5330(a) (NASD Rule 3220(a)(2) before 2010): on the ex-date the price is
    reduced by the split's dollar value rounded up to the tick, the size multiplied by the
    ratio. Investopedia's Series 55 guide, "Adjustments for Stock Splits": in a 2:1 split
    "Buy 100 at 50" becomes "Buy 200 at 25" and "Sell 100 at 100" becomes "Sell 200 at 50";
    in a 3:2 "Buy 100 at 100" becomes 150 at 66.67, which the rule's rounding makes 66.66."""
    buy = broker.submit("MARGIN", "AAPL", "buy", quantity=100, order_type="limit",
                        limit_price=50, time_in_force="gtc")
    sell = broker.submit("MARGIN", "AAPL", "sell", quantity=100, order_type="limit",
                         limit_price=1000, time_in_force="gtc")
    stop = broker.submit("MARGIN", "AAPL", "sell", quantity=10, order_type="stop",
                         stop_price=20, time_in_force="gtc")
    msft = broker.submit("MARGIN", "MSFT", "buy", quantity=100, order_type="limit",
                         limit_price=100, time_in_force="gtc")
    assert {o.status for o in (buy, sell, stop, msft)} == {OrderStatus.ACCEPTED}
    broker.apply_split("AAPL", 2)
    assert (buy.quantity, buy.limit_price) == (200, Decimal(25))
    assert (sell.quantity, sell.limit_price) == (200, Decimal(500))
    assert (stop.quantity, stop.stop_price) == (20, Decimal(10))
    assert (msft.quantity, msft.limit_price) == (100, Decimal(100))  # another symbol
    broker.apply_split("MSFT", Decimal("1.5"))
    assert (msft.quantity, msft.limit_price) == (150, Decimal("66.66"))
    assert all(o.status is OrderStatus.ACCEPTED for o in (buy, sell, stop, msft))


def test_a_reverse_split_cancels_open_orders_instead_of_adjusting_them(broker):
    """Investopedia's Series 55 guide, "Adjustments for Stock Splits": "If a stock is subject
    to a reverse stock split all open orders will be canceled." Citigroup's 1-for-10 of 2011
    (Citigroup press release, 2011-03-21) as the ratio."""
    order = broker.submit("MARGIN", "AAPL", "buy", quantity=100, order_type="limit",
                          limit_price=50, time_in_force="gtc")
    action = broker.apply_split("AAPL", "0.1")
    assert action.kind == "reverse_split"
    assert order.status is OrderStatus.CANCELED and "reverse split" in order.reason
    assert (order.quantity, order.limit_price) == (100, Decimal(50))
    assert broker.account("MARGIN").positions["STK:AAPL"].quantity == 12


def test_a_partly_filled_order_keeps_what_filled_and_scales_what_is_left(broker):
    order = broker.submit("MARGIN", "GME", "buy", quantity=1500)  # 1000 at the top of book
    assert (order.status, order.filled_quantity) == (OrderStatus.PARTIALLY_FILLED, 1000)
    broker.apply_split("GME", 2)
    assert (order.filled_quantity, order.quantity, order.remaining) == (1000, 2000, 1000)
    assert broker.account("MARGIN").positions["STK:GME"].quantity == 2000


def test_actions_are_listed_for_the_accounts_whose_positions_they_changed(broker):
    first = broker.apply_split("AAPL", 4, action_id="A1")
    broker.market.clock.advance(3600)
    second = broker.apply_split("MSFT", 2, action_id="M1")  # nobody holds MSFT
    assert second.accounts == ()
    assert broker.corporate_actions() == [first]
    assert broker.corporate_actions(["CASH"]) == []
    assert broker.corporate_actions(["MARGIN"], since=MONDAY + timedelta(minutes=1)) == []
    assert broker.corporate_actions(["MARGIN"], since=MONDAY) == [first]


@pytest.mark.parametrize(("symbol", "ratio", "error", "words"), [
    ("AAPL", 1, ValueError, "other than 1"),
    ("AAPL", 0, ValueError, "> 0"),
    ("AAPL", -2, ValueError, "> 0"),
    ("AAPL", "four", InvalidIntent, "ratio"),
    ("AAPL", float("nan"), InvalidIntent, "ratio"),
    ("BTC/USD", 2, ValueError, "crypto"),
    ("NOPE", 2, UnknownSymbol, "NOPE"),
])
def test_a_bad_split_is_refused_naming_what_is_wrong_and_changes_nothing(broker, symbol,
                                                                        ratio, error, words):
    with pytest.raises(error, match=words):
        broker.apply_split(symbol, ratio)
    assert broker.account("MARGIN").positions["STK:AAPL"].quantity == 120
    assert broker.corporate_actions() == []


def test_an_action_id_is_used_once(broker):
    broker.apply_split("AAPL", 2, action_id="X")
    with pytest.raises(ValueError, match="'X' is already used"):
        broker.apply_split("AAPL", 2, action_id="X")
    assert broker.account("MARGIN").positions["STK:AAPL"].quantity == 240
