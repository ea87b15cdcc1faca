"""PaperBroker: accounts, checks a real broker runs, settlement, margin, fees, positions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from brokerkit.model import AssetClass, OrderStatus
from brokerkit.sandbox.broker import DuplicateClientOrderId, PaperBroker, UnknownAccount
from brokerkit.sandbox.market import IBKR_FIXED, Clock, Market

MONDAY = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


@pytest.fixture
def broker() -> PaperBroker:
    b = PaperBroker("t", Market(11, clock=Clock(MONDAY)))
    b.open_account("CASH", "cash", "USD", {"USD": 10_000})
    b.open_account("MARGIN", "margin", "USD", {"USD": 100_000})
    return b


def ask(b: PaperBroker, symbol: str) -> Decimal:
    return b.market.quote(symbol).ask


def test_duplicate_client_order_id_in_one_account_is_refused(broker):
    broker.submit("CASH", "AAPL", "buy", quantity=1, client_order_id="x1")
    with pytest.raises(DuplicateClientOrderId, match="'x1' is already used in account CASH"):
        broker.submit("CASH", "AAPL", "buy", quantity=1, client_order_id="x1")
    other = broker.submit("MARGIN", "AAPL", "buy", quantity=1, client_order_id="x1")
    assert other.status is OrderStatus.FILLED  # ids are per account
    assert broker.find_client_order("x1", ["MARGIN"]) is other


def test_unknown_account_is_named(broker):
    with pytest.raises(UnknownAccount, match=r"'NOPE'.*CASH, MARGIN"):
        broker.submit("NOPE", "AAPL", "buy", quantity=1)


def test_sale_proceeds_settle_next_business_day_in_a_cash_account(broker):
    broker.set_position("CASH", "AAPL", 10, 100)
    sale = broker.submit("CASH", "AAPL", "sell", quantity=10)
    proceeds = sale.filled_value
    assert broker.settled_cash("CASH", "USD") == Decimal(10_000)
    assert broker.account("CASH").cash["USD"] == 10_000 + proceeds
    qty = ((10_000 + proceeds / 2) / ask(broker, "AAPL")).quantize(Decimal("0.001"))
    too_much = broker.submit("CASH", "AAPL", "buy", quantity=qty)
    assert too_much.status is OrderStatus.REJECTED and "settled cash" in too_much.reason
    broker.market.clock.advance(24 * 3600)
    broker.process()
    assert broker.settled_cash("CASH", "USD") == 10_000 + proceeds


def test_crypto_sale_settles_the_same_day(broker):
    broker.set_position("CASH", "BTC/USD", "0.5", 60_000)
    sale = broker.submit("CASH", "BTC/USD", "sell", quantity="0.5")
    assert broker.settled_cash("CASH", "USD") == 10_000 + sale.filled_value - sale.fees_paid


def test_margin_buying_power_is_twice_the_excess_equity(broker):
    assert broker.buying_power("MARGIN") == 200_000
    fill = broker.submit("MARGIN", "MSFT", "buy", quantity=100)
    (row,) = [r for r in broker.balances(["MARGIN"]) if r.currency == "USD"]
    assert row.margin_init == pytest.approx(row.margin_maint * 2)
    assert row.margin_init == pytest.approx(0.5 * 100 * float(broker.market.quote("MSFT").last))
    assert row.buying_power == pytest.approx(2 * (row.equity - row.margin_init))
    assert fill.status is OrderStatus.FILLED


def test_order_beyond_margin_buying_power_is_rejected(broker):
    qty = (Decimal(201_000) / ask(broker, "SPY")).quantize(Decimal(1))
    order = broker.submit("MARGIN", "SPY", "buy", quantity=qty)
    assert order.status is OrderStatus.REJECTED
    assert "insufficient buying power" in order.reason and "200,000.00 USD" in order.reason


def test_open_buy_orders_reserve_buying_power(broker):
    limit = (ask(broker, "AAPL") * Decimal("0.5")).quantize(Decimal("0.01"))
    qty = (Decimal(6_000) / limit).quantize(Decimal(1))
    first = broker.submit("CASH", "AAPL", "buy", quantity=qty, order_type="limit",
                          limit_price=limit)
    second = broker.submit("CASH", "AAPL", "buy", quantity=qty, order_type="limit",
                           limit_price=limit)
    assert first.status is OrderStatus.ACCEPTED and second.status is OrderStatus.REJECTED
    broker.cancel(first.order_id)
    assert broker.buying_power("CASH") == 10_000


def test_short_sales_follow_account_type_and_listing(broker):
    cash_short = broker.submit("CASH", "AAPL", "sell", quantity=1)
    assert cash_short.status is OrderStatus.REJECTED and "cash account" in cash_short.reason
    assert broker.submit("MARGIN", "AAPL", "sell", quantity=5).status is OrderStatus.FILLED
    assert broker.account("MARGIN").positions["STK:AAPL"].quantity == -5
    gme = broker.submit("MARGIN", "GME", "sell", quantity=1)
    assert gme.status is OrderStatus.REJECTED and "not shortable" in gme.reason
    coin = broker.submit("MARGIN", "ETH/USD", "sell", quantity=1)
    assert coin.status is OrderStatus.REJECTED and "not shortable" in coin.reason


def test_selling_what_is_held_plus_open_sells_counts_as_short(broker):
    broker.set_position("CASH", "AAPL", 10, 100)
    high = (ask(broker, "AAPL") * 2).quantize(Decimal("0.01"))
    broker.submit("CASH", "AAPL", "sell", quantity=8, order_type="limit", limit_price=high)
    second = broker.submit("CASH", "AAPL", "sell", quantity=5)
    assert second.status is OrderStatus.REJECTED and "holds 2 to sell" in second.reason


@pytest.mark.parametrize(("symbol", "qty", "kw", "reason"), [
    ("NOPE", 1, {}, "unknown symbol 'NOPE'"),
    ("ZVZZT", 1, {}, "not tradable"),
    ("ESZ6", 1, {"order_type": "limit", "limit_price": "6000.10"}, "not a multiple of the tick"),
    ("BRK.A", "0.5", {}, "not fractionable"),
    ("7203", 150, {}, "not a multiple of the lot size 100"),
    ("7203", 50, {}, "below the minimum 100"),
    ("BTC/USD", "0.00001", {}, "below the minimum 0.0001"),
    ("AAPL", 1, {"order_type": "limit", "limit_price": "100.005"}, "not a multiple of the tick"),
])
def test_broker_rules_reject_with_a_reason(broker, symbol, qty, kw, reason):
    order = broker.submit("MARGIN", symbol, "buy", quantity=qty, **kw)
    assert order.status is OrderStatus.REJECTED and reason in order.reason
    assert broker.order(order.order_id) is order


def test_fee_schedule_override_charges_a_per_order_minimum():
    market = Market(11, clock=Clock(MONDAY))
    ib = PaperBroker("ib", market, fees={AssetClass.EQUITY: IBKR_FIXED})
    ib.open_account("U1", "margin", "USD", {"USD": 50_000})
    small = ib.submit("U1", "AAPL", "buy", quantity=10)
    big = ib.submit("U1", "AAPL", "buy", quantity=400)
    assert small.fees_paid == Decimal("1.00")  # 10 x 0.005 is below the minimum
    assert big.fees_paid == Decimal("2.00")  # 400 x 0.005
    spent = small.filled_value + big.filled_value + 3
    assert ib.account("U1").cash["USD"] == 50_000 - spent


def test_average_cost_and_realized_pnl_follow_fills(broker):
    broker.set_position("MARGIN", "AAPL", 10, 100)
    buy = broker.submit("MARGIN", "AAPL", "buy", quantity=10)
    pos = broker.account("MARGIN").positions["STK:AAPL"]
    assert pos.avg_cost == (1000 + buy.filled_value) / 20
    sell = broker.submit("MARGIN", "AAPL", "sell", quantity=5)
    assert pos.quantity == 15 and pos.avg_cost == (1000 + buy.filled_value) / 20
    assert pos.realized_pnl == 5 * (sell.avg_fill_price - pos.avg_cost)
    broker.submit("MARGIN", "AAPL", "sell", quantity=15)
    assert "STK:AAPL" not in broker.account("MARGIN").positions


def test_fx_trade_moves_cash_between_currencies_without_a_position(broker):
    order = broker.submit("MARGIN", "EUR.USD", "buy", quantity=1000)
    cash = broker.account("MARGIN").cash
    assert cash["EUR"] == 1000
    assert cash["USD"] == 100_000 - order.filled_value - order.fees_paid
    assert broker.account("MARGIN").positions == {}
    short_eur = broker.submit("CASH", "EUR.USD", "sell", quantity=10)
    assert short_eur.status is OrderStatus.REJECTED and "insufficient settled EUR" in \
        short_eur.reason


def test_balance_rows_add_up_across_currencies(broker):
    broker.deposit("MARGIN", "EUR", 1000)
    broker.set_position("MARGIN", "SAP", 10, 200)
    rows = {r.currency: r for r in broker.balances(["MARGIN"])}
    assert set(rows) == {"USD", "EUR"}
    assert rows["EUR"].buying_power == 0 and rows["USD"].buying_power > 0
    sap = float(broker.market.quote("SAP").last)
    assert rows["EUR"].equity == pytest.approx(1000 + 10 * sap)
    assert rows["EUR"].margin_init == pytest.approx(0.5 * 10 * sap)


def test_positions_are_valued_at_the_last_price(broker):
    broker.set_position("CASH", "VOD", 1000, "0.70")
    (p,) = broker.positions(["CASH"])
    last = float(broker.market.quote("VOD").last)
    assert (p.market_price, p.market_value) == (last, pytest.approx(1000 * last))
    assert p.unrealized_pnl == pytest.approx(1000 * (last - 0.70))


def test_day_orders_expire_overnight(broker):
    limit = (ask(broker, "AAPL") / 2).quantize(Decimal("0.01"))
    order = broker.submit("CASH", "AAPL", "buy", quantity=1, order_type="limit",
                          limit_price=limit)
    broker.market.clock.set_time(MONDAY + timedelta(days=1))
    broker.process()
    assert order.status is OrderStatus.EXPIRED


def test_a_future_is_margined_and_only_its_pnl_moves_cash(broker):
    usd = broker.account("MARGIN").cash["USD"]
    order = broker.submit("MARGIN", "ESZ6", "buy", quantity=2)
    assert order.status is OrderStatus.FILLED, order.reason
    acct = broker.account("MARGIN")
    assert acct.cash["USD"] == usd - order.fees_paid  # the notional is never paid
    pos = acct.positions["FUT:ESZ6"]
    assert pos.quantity == 2 and pos.avg_cost == order.avg_fill_price
    row = next(r for r in broker.balances(["MARGIN"]) if r.currency == "USD")
    mark = broker.positions(["MARGIN"])[0]
    notional = 2 * mark.market_price * 50
    assert row.margin_init == pytest.approx(notional * 0.06)
    assert row.equity == pytest.approx(float(acct.cash["USD"]) + mark.unrealized_pnl)
    close = broker.submit("MARGIN", "ESZ6", "sell", quantity=2)
    realized = (close.avg_fill_price - order.avg_fill_price) * 2 * 50
    assert broker.account("MARGIN").cash["USD"] == \
        usd - order.fees_paid - close.fees_paid + realized
    assert "FUT:ESZ6" not in broker.account("MARGIN").positions


def test_futures_need_a_margin_account(broker):
    order = broker.submit("CASH", "ESZ6", "buy", quantity=1)
    assert order.status is OrderStatus.REJECTED and "margin account" in order.reason
