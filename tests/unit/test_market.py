"""The sandbox market: deterministic prices, quotes on the tick, FX, hours, and matching."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokerkit.model import OrderStatus, OrderType, Side, TimeInForce
from brokerkit.sandbox.market import (
    BRIDGE_DEPTH,
    EPOCH,
    UNIVERSE,
    Clock,
    Market,
    MatchingEngine,
    Order,
    UnknownSymbol,
)

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # Monday, 10:00 in New York
KEYS = [li.key for li in UNIVERSE]


def market(seed: int = 0, at: datetime = T0, **kw) -> Market:
    return Market(seed, clock=Clock(at), **kw)


# -- prices ---------------------------------------------------------------------------------


def test_same_seed_gives_the_same_prices_in_another_market():
    a, b = market(7), market(7)
    for _ in range(5):
        assert a.quotes(KEYS) == b.quotes(KEYS)
        a.clock.advance(13)
        b.clock.advance(13)


def test_a_price_does_not_depend_on_which_symbols_were_asked_before():
    a, b = market(3), market(3)
    for key in KEYS:
        a.price(key)
    assert b.price("STK:NVDA") == a.price("STK:NVDA")
    assert [q.last for q in b.quotes(reversed(KEYS))] == [q.last for q in a.quotes(KEYS)][::-1]


def test_a_different_seed_gives_different_prices():
    a, b = market(1), market(2)
    assert sum(a.price(k) != b.price(k) for k in KEYS) == len(KEYS)


def test_prices_move_between_steps_and_not_within_one():
    m = market()
    p0 = m.price("AAPL")
    m.clock.advance(0.4)
    assert m.price("AAPL") == p0
    m.clock.advance(1)
    assert m.price("AAPL") != p0


def test_prices_return_to_their_base_at_every_bridge_pin():
    m = market()
    pin = EPOCH + timedelta(seconds=3 * 2**BRIDGE_DEPTH)
    assert m.price("AAPL", pin) == pytest.approx(m.listing("AAPL").price)
    month = [m.price("BTC/USD", T0 + timedelta(hours=h)) for h in range(0, 24 * 30, 6)]
    assert max(month) / min(month) < 2  # a walk that wanders, but near its base


@given(symbol=st.sampled_from(KEYS), seconds=st.integers(0, 10**8))
def test_quotes_sit_on_the_tick_with_bid_below_ask(symbol, seconds):
    m = market()
    q = m.quote(symbol, EPOCH + timedelta(seconds=seconds))
    tick = m.listing(symbol).tick
    assert 0 < q.bid < q.ask and q.bid <= q.last <= q.ask
    assert q.bid % tick == 0 and q.ask % tick == 0
    assert q.ask_size == m.listing(symbol).top_size


# -- lookup and FX ---------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "key"), [
    ("AAPL", "STK:AAPL"), ("aapl", "STK:AAPL"), ("STK:AAPL", "STK:AAPL"),
    ("VOD", "STK:VOD@LSE"), ("7203", "STK:7203@TSE"), ("BTC/USD", "CRYPTO:BTC/USD"),
    ("EUR.USD", "CASH:EUR.USD"), ("CASH:USD.JPY", "CASH:USD.JPY"), ("ESZ6", "FUT:ESZ6"),
    ("OPT:AAPL  261218C00230000", "OPT:AAPL  261218C00230000"),
])
def test_symbols_and_keys_resolve_to_one_listing(text, key):
    assert market().listing(text).key == key


def test_an_unknown_symbol_is_named():
    with pytest.raises(UnknownSymbol, match="'NOPE'"):
        market().quote("NOPE")


def test_fx_rate_is_direct_inverse_or_across_usd():
    m = market()
    eurusd = m.fx_rate("EUR", "USD")
    assert eurusd == pytest.approx(m.price("EUR.USD"))
    assert m.fx_rate("USD", "EUR") == pytest.approx(1 / eurusd)
    assert m.fx_rate("EUR", "JPY") == pytest.approx(eurusd * m.price("USD.JPY"))
    assert m.fx_rate("JPY", "EUR") == pytest.approx(1 / m.fx_rate("EUR", "JPY"))
    assert m.fx_rate("GBP", "HKD") == pytest.approx(
        m.fx_rate("GBP", "USD") * m.fx_rate("USD", "HKD"))
    assert m.fx_rate("btc", "usd") == pytest.approx(m.price("BTC/USD"))
    assert m.fx_rate("CAD", "CAD") == 1.0
    with pytest.raises(UnknownSymbol, match="XXXUSD"):
        m.fx_rate("XXX", "USD")


# -- hours -----------------------------------------------------------------------------------


SATURDAY = datetime(2026, 3, 7, 15, 0, tzinfo=UTC)


def test_sandbox_market_is_always_open_by_default():
    assert market().is_open("AAPL", SATURDAY)


@pytest.mark.parametrize(("symbol", "at", "is_open"), [
    ("AAPL", T0, True),
    ("AAPL", T0.replace(hour=13), False),  # 08:00 in New York
    ("AAPL", T0.replace(hour=21), False),  # 16:00: closed
    ("AAPL", SATURDAY, False),
    ("SAP", T0.replace(hour=9), True),  # 10:00 in Frankfurt
    ("SAP", T0.replace(hour=17), False),
    ("7203", T0.replace(hour=1), True),  # 10:00 in Tokyo
    ("BTC/USD", SATURDAY, True),
    ("EUR.USD", SATURDAY, False),
    ("EUR.USD", datetime(2026, 3, 8, 23, 0, tzinfo=UTC), True),  # Sunday evening in NY
])
def test_exchange_clock_trades_only_in_sessions(symbol, at, is_open):
    assert market(clock_mode="exchange").is_open(symbol, at) is is_open


# -- matching --------------------------------------------------------------------------------


class Harness:
    def __init__(self, **kw) -> None:
        self.market = market(**kw)
        self.engine = MatchingEngine(self.market)
        self.heard: list = []
        self.engine.subscribe(lambda order, fill: self.heard.append(fill))
        self.n = 0

    def order(self, symbol: str, side: str, qty: str | None, **kw) -> Order:
        self.n += 1
        listing = self.market.listing(symbol)
        return Order(order_id=f"o{self.n}", client_order_id=f"c{self.n}", owner="t",
                     account="A", symbol=listing.symbol, listing=listing, side=Side(side),
                     quantity=None if qty is None else Decimal(qty), **kw)

    def ahead(self, symbol: str, seconds: int = 900) -> list:
        now = self.market.now()
        return [(self.market.quote(symbol, now + timedelta(seconds=s)), s)
                for s in range(1, seconds)]


def test_market_order_fills_at_the_touch_and_listeners_hear_it():
    h = Harness()
    q = h.market.quote("AAPL")
    buy, sell = h.order("AAPL", "buy", "3"), h.order("AAPL", "sell", "2")
    (b,), (s,) = h.engine.submit(buy), h.engine.submit(sell)
    assert (b.price, s.price) == (q.ask, q.bid)
    assert buy.status is OrderStatus.FILLED and buy.avg_fill_price == q.ask
    assert h.heard == [b, s]


def test_limit_order_rests_until_the_ask_reaches_it():
    h = Harness()
    best, when = min(((q.ask, s) for q, s in h.ahead("MSFT")))
    order = h.order("MSFT", "buy", "1", order_type=OrderType.LIMIT, limit_price=best)
    assert h.engine.submit(order) == []
    h.market.clock.advance(when - 1)
    assert h.engine.process() == [] and order.status is OrderStatus.ACCEPTED
    h.market.clock.advance(1)
    (fill,) = h.engine.process()
    assert fill.price <= best and order.status is OrderStatus.FILLED


def test_sell_stop_triggers_when_the_last_price_falls_to_it():
    h = Harness()
    path = h.ahead("TSLA")
    stop, when = min((q.last, s) for q, s in path)
    assert stop < h.market.quote("TSLA").last
    order = h.order("TSLA", "sell", "1", order_type=OrderType.STOP, stop_price=stop)
    assert h.engine.submit(order) == []
    h.market.clock.advance(when - 1)
    assert h.engine.process() == [] and not order.triggered
    h.market.clock.advance(1)
    assert len(h.engine.process()) == 1 and order.status is OrderStatus.FILLED


def test_stop_limit_becomes_a_limit_order_once_triggered():
    h = Harness()
    last = h.market.quote("NVDA").last
    order = h.order("NVDA", "buy", "1", order_type=OrderType.STOP_LIMIT,
                    stop_price=last - Decimal("0.05"), limit_price=last / 2)
    assert h.engine.submit(order) == []  # triggered at once, but the limit is far below
    assert order.triggered and order.status is OrderStatus.ACCEPTED


def test_trailing_stop_follows_the_high_and_fires_on_the_pullback():
    h = Harness()
    order = h.order("BTC/USD", "sell", "0.01", order_type=OrderType.TRAILING_STOP,
                    trail_percent=Decimal("0.05"), time_in_force=TimeInForce.GTC)
    h.engine.submit(order)
    for _ in range(3600):
        if order.status is OrderStatus.FILLED:
            break
        h.market.clock.advance(1)
        h.engine.process()
    assert order.status is OrderStatus.FILLED
    assert h.heard[0].price <= order.water_mark * Decimal("0.9995") + 1


def test_large_order_fills_top_of_book_now_and_the_rest_on_later_steps():
    h = Harness()
    top = h.market.listing("AAPL").top_size
    order = h.order("AAPL", "buy", str(top * 2 + 1))
    assert [f.quantity for f in h.engine.submit(order)] == [top]
    assert h.engine.process() == []  # same step: the top of book is used up
    h.market.clock.advance(1)
    h.engine.process()
    h.market.clock.advance(1)
    h.engine.process()
    assert order.status is OrderStatus.FILLED and [f.quantity for f in h.heard] == [top, top, 1]


def test_ioc_fills_what_it_can_and_cancels_the_rest():
    h = Harness()
    top = h.market.listing("QQQ").top_size
    order = h.order("QQQ", "buy", str(top + 10), time_in_force=TimeInForce.IOC)
    h.engine.submit(order)
    assert order.filled_quantity == top and order.status is OrderStatus.CANCELED


def test_fok_larger_than_the_book_is_canceled_without_a_fill():
    h = Harness()
    top = h.market.listing("QQQ").top_size
    order = h.order("QQQ", "buy", str(top + 10), time_in_force=TimeInForce.FOK)
    assert h.engine.submit(order) == [] and order.status is OrderStatus.CANCELED
    assert "fill-or-kill" in order.reason


def test_day_order_expires_with_its_session_and_gtc_stays():
    h = Harness()
    low = h.market.quote("AAPL").bid / 2
    day = h.order("AAPL", "buy", "1", order_type=OrderType.LIMIT, limit_price=low)
    gtc = h.order("AAPL", "buy", "1", order_type=OrderType.LIMIT, limit_price=low,
                  time_in_force=TimeInForce.GTC)
    h.engine.submit(day)
    h.engine.submit(gtc)
    h.market.clock.advance(24 * 3600)
    h.engine.process()
    assert day.status is OrderStatus.EXPIRED and gtc.status is OrderStatus.ACCEPTED


def test_orders_wait_while_the_exchange_is_closed():
    h = Harness(at=SATURDAY, clock_mode="exchange")
    order = h.order("AAPL", "buy", "1")
    assert h.engine.submit(order) == [] and order.status is OrderStatus.ACCEPTED
    h.market.clock.set_time(datetime(2026, 3, 9, 14, 30, tzinfo=UTC))  # Monday 10:30 NY
    assert len(h.engine.process()) == 1


def test_cancel_removes_an_open_order():
    h = Harness()
    order = h.order("AAPL", "buy", "1", order_type=OrderType.LIMIT, limit_price=Decimal(1))
    h.engine.submit(order)
    assert h.engine.cancel(order.order_id) is order and order.status is OrderStatus.CANCELED
    assert h.engine.cancel(order.order_id) is None and h.engine.open_orders == []


def test_clock_rejects_naive_times_and_backward_moves():
    clock = Clock(T0)
    with pytest.raises(ValueError, match="timezone-aware"):
        clock.set_time(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="-5"):
        clock.advance(-5)
    assert clock.advance(60) == T0 + timedelta(seconds=60)
