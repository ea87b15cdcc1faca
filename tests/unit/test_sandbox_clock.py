"""The sandbox clock: always-open and exchange modes, real sessions and trade dates.

Dates are checked against exchange_calendars 4.13 and the exchanges' published calendars:
NYSE 2026 closes on Thanksgiving (Thu 26 Nov) and Christmas (Fri 25 Dec) and closes at 13:00
ET the day after Thanksgiving (Fri 27 Nov) and on Christmas Eve; Tokyo breaks 11:30-12:30 JST;
CME Globex halts 16:00-17:00 CT and closes at 12:00 CT on the day after Thanksgiving.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from brokerkit.model import OrderStatus, OrderType, Side, TimeInForce
from brokerkit.post_trade.settlement import settle_date_of
from brokerkit.sandbox import Sandbox
from brokerkit.sandbox.broker import PaperBroker
from brokerkit.sandbox.clock import sessions
from brokerkit.sandbox.market import Clock, Market, MatchingEngine, Order

NY, CHICAGO, TOKYO = ZoneInfo("America/New_York"), ZoneInfo("America/Chicago"), \
    ZoneInfo("Asia/Tokyo")
SATURDAY = datetime(2026, 3, 7, 11, 0, tzinfo=NY)
FRIDAY_AFTER_CLOSE = datetime(2026, 3, 6, 16, 30, tzinfo=NY)
MONDAY = date(2026, 3, 9)
CHRISTMAS = datetime(2026, 12, 25, 10, 0, tzinfo=NY)


def market(at: datetime, mode: str = "always-open") -> Market:
    return Market(0, clock=Clock(at), clock_mode=mode)  # type: ignore[arg-type]


def paper(at: datetime, mode: str = "always-open") -> PaperBroker:
    b = PaperBroker("t", market(at, mode))
    b.open_account("A", "margin", "USD", {"USD": 1_000_000})
    return b


def order(m: Market, symbol: str, **kw) -> Order:
    listing = m.listing(symbol)
    return Order(order_id="o1", client_order_id="c1", owner="t", account="A",
                 symbol=listing.symbol, listing=listing, side=Side.BUY,
                 quantity=Decimal(1), **kw)


# -- always-open: trades at any hour, dated to the real session ----------------------------


def test_always_open_fill_on_saturday_carries_monday_trade_date():
    b = paper(SATURDAY)
    placed = b.submit("A", "AAPL", "buy", quantity=1)
    assert placed.status is OrderStatus.FILLED
    (fill,) = b.fills()
    assert fill.trade_date == MONDAY and fill.settle_date == date(2026, 3, 10)
    assert placed.session == MONDAY


def test_an_after_hours_fill_on_friday_keeps_fridays_trade_date_and_settles_monday():
    """Extended-hours trades are dated the day they execute (FINRA trade reporting: the
    post-market session to 8:00 p.m. ET reports that day's trades) and settle T+1 from it."""
    b = paper(FRIDAY_AFTER_CLOSE)
    b.submit("A", "AAPL", "buy", quantity=1)
    fill = b.fills()[0]
    assert fill.trade_date == date(2026, 3, 6) and fill.settle_date == MONDAY


def test_fill_during_the_session_carries_that_day():
    assert market(datetime(2026, 3, 6, 15, 59, tzinfo=NY)).trade_date("AAPL") == date(2026, 3, 6)


def test_always_open_fill_on_thanksgiving_carries_the_half_day_after():
    b = paper(datetime(2026, 11, 26, 12, 0, tzinfo=NY))
    b.submit("A", "AAPL", "buy", quantity=1)
    assert b.fills()[0].trade_date == date(2026, 11, 27)


def test_sandbox_fills_take_their_dates_from_the_settlement_module():
    """One source of settle dates: the sandbox's fill of an after-hours trade keeps its day
    (2026-12-03, settling 12-04), as every adapter and the cash ladder say."""
    b = paper(datetime(2026, 12, 3, 20, 30, tzinfo=NY))
    b.submit("A", "AAPL", "buy", quantity=1)
    fill = b.fills()[0]
    assert (fill.trade_date, fill.settle_date) == (date(2026, 12, 3), date(2026, 12, 4))
    assert settle_date_of("equity", "STK:AAPL", "USD", fill.trade_date) == fill.settle_date


def test_always_open_day_order_placed_on_saturday_lives_until_monday_close():
    m = market(SATURDAY)
    engine = MatchingEngine(m)
    resting = order(m, "AAPL", order_type=OrderType.LIMIT, limit_price=Decimal(1),
                    time_in_force=TimeInForce.DAY)
    engine.submit(resting)
    assert resting.session == MONDAY
    m.clock.set_time(datetime(2026, 3, 9, 15, 59, tzinfo=NY))
    engine.process()
    assert resting.status is OrderStatus.ACCEPTED
    m.clock.set_time(datetime(2026, 3, 9, 16, 0, tzinfo=NY))
    engine.process()
    assert resting.status is OrderStatus.EXPIRED


def test_other_exchanges_date_fills_in_their_own_sessions():
    m = market(datetime(2026, 3, 2, 16, 0, tzinfo=TOKYO))  # Monday, after Tokyo's close
    assert m.trade_date("7203") == date(2026, 3, 3)
    assert m.trade_date("SAP") == date(2026, 3, 2)  # 08:00 in Frankfurt: before the open
    assert m.trade_date("SHOP") == date(2026, 3, 2)  # 02:00 in Toronto: before the open


# -- futures, FX and crypto -------------------------------------------------------------------


@pytest.mark.parametrize(("at", "trade_date"), [
    (datetime(2026, 3, 5, 16, 59, tzinfo=NY), date(2026, 3, 5)),
    (datetime(2026, 3, 5, 17, 0, tzinfo=NY), date(2026, 3, 6)),  # rolls at 17:00 New York
    (datetime(2026, 3, 6, 17, 0, tzinfo=NY), MONDAY),  # Friday evening
    (SATURDAY, MONDAY),
    (datetime(2026, 3, 8, 18, 0, tzinfo=NY), MONDAY),  # Sunday evening: Monday's session
])
def test_fx_trade_date_rolls_at_17_00_new_york_and_skips_the_weekend(at, trade_date):
    assert market(at).trade_date("EUR.USD") == trade_date


@pytest.mark.parametrize(("at", "trade_date"), [
    (datetime(2026, 3, 5, 15, 59, tzinfo=CHICAGO), date(2026, 3, 5)),
    (datetime(2026, 3, 5, 16, 30, tzinfo=CHICAGO), date(2026, 3, 6)),  # the daily halt
    (datetime(2026, 3, 6, 16, 0, tzinfo=CHICAGO), MONDAY),
    (datetime(2026, 12, 24, 13, 0, tzinfo=CHICAGO), date(2026, 12, 28)),  # after the early close
])
def test_cme_futures_trade_date_is_the_globex_session(at, trade_date):
    assert market(at).trade_date("FUT:ESZ6") == trade_date


def test_crypto_trade_date_is_the_utc_calendar_day_even_on_saturday():
    m = market(datetime(2026, 3, 7, 23, 30, tzinfo=UTC))
    assert m.trade_date("BTC/USD") == date(2026, 3, 7)
    assert settle_date_of("crypto", "CRYPTO:BTC/USD", "USD", date(2026, 3, 7)) \
        == date(2026, 3, 7)


# -- exchange: real sessions, holidays and half days --------------------------------------------


def test_exchange_clock_nyse_closed_on_christmas_2026():
    m = market(CHRISTMAS, "exchange")
    assert not m.is_open("AAPL") and not m.is_open("JPM") and not m.is_open("SPY")
    assert m.trade_date("AAPL") == date(2026, 12, 28)
    assert market(CHRISTMAS).is_open("AAPL")  # always-open still trades, dated the 28th


def test_exchange_clock_nyse_half_day_closes_at_13_00_on_2026_11_27():
    m = market(datetime(2026, 11, 27, 12, 59, tzinfo=NY), "exchange")
    assert m.is_open("AAPL") and m.trade_date("AAPL") == date(2026, 11, 27)
    m.clock.set_time(datetime(2026, 11, 27, 13, 0, tzinfo=NY))
    assert not m.is_open("AAPL") and m.trade_date("AAPL") == date(2026, 11, 30)


def test_exchange_clock_nyse_closed_on_thanksgiving_open_the_day_before():
    m = market(datetime(2026, 11, 26, 10, 0, tzinfo=NY), "exchange")
    assert not m.is_open("AAPL")
    assert m.is_open("AAPL", datetime(2026, 11, 25, 15, 0, tzinfo=NY))


def test_exchange_clock_tokyo_closed_over_lunch_with_that_days_trade_date():
    m = market(datetime(2026, 3, 2, 12, 0, tzinfo=TOKYO), "exchange")
    assert not m.is_open("7203") and m.trade_date("7203") == date(2026, 3, 2)
    assert m.is_open("7203", datetime(2026, 3, 2, 12, 30, tzinfo=TOKYO))
    assert m.is_open("7203", datetime(2026, 3, 2, 11, 29, tzinfo=TOKYO))


def test_exchange_clock_cme_halts_daily_and_closes_at_noon_after_thanksgiving():
    m = market(datetime(2026, 3, 4, 16, 30, tzinfo=CHICAGO), "exchange")
    assert not m.is_open("FUT:ESZ6")
    assert m.is_open("FUT:ESZ6", datetime(2026, 3, 4, 17, 0, tzinfo=CHICAGO))
    assert m.is_open("FUT:ESZ6", datetime(2026, 3, 8, 17, 0, tzinfo=CHICAGO))  # Sunday open
    assert m.is_open("FUT:ESZ6", datetime(2026, 11, 27, 11, 59, tzinfo=CHICAGO))
    assert not m.is_open("FUT:ESZ6", datetime(2026, 11, 27, 12, 0, tzinfo=CHICAGO))


def test_exchange_clock_keeps_fx_24_5_and_crypto_24_7():
    m = market(SATURDAY, "exchange")
    assert m.is_open("BTC/USD") and not m.is_open("EUR.USD")
    assert m.is_open("EUR.USD", CHRISTMAS)  # FX has no exchange holidays


def test_exchange_clock_queues_a_christmas_order_until_the_next_open():
    b = paper(CHRISTMAS, "exchange")
    placed = b.submit("A", "AAPL", "buy", quantity=1)
    assert placed.status is OrderStatus.ACCEPTED and b.fills() == []
    b.market.clock.set_time(datetime(2026, 12, 28, 9, 30, tzinfo=NY))
    b.process()
    assert placed.status is OrderStatus.FILLED
    assert [f.trade_date for f in b.fills()] == [date(2026, 12, 28)]


# -- construction and cost ------------------------------------------------------------------


def test_unknown_clock_mode_is_refused_naming_the_field():
    with pytest.raises(ValueError, match=r"clock_mode must be one of 'always-open', "
                                         r"'exchange', got 'weekdays'"):
        Market(clock_mode="weekdays")  # type: ignore[arg-type]


def test_sandbox_passes_its_clock_mode_to_the_market():
    assert Sandbox(clock_mode="exchange").market.clock_mode == "exchange"
    assert Sandbox().market.always_open


def test_sessions_widen_for_a_time_years_away_from_the_first_asked():
    m = market(datetime(2026, 3, 2, 10, tzinfo=NY))
    m.trade_date("JPM")
    far = datetime(2031, 12, 25, 10, tzinfo=NY)  # Christmas 2031 is a Thursday
    assert m.trade_date("JPM", far) == date(2031, 12, 26)
    built = sessions("NYSE", far)
    assert built.first <= date(2026, 3, 2) and built.last >= date(2031, 12, 26)


def test_starting_a_sandbox_builds_no_calendar():
    code = ("import sys; from brokerkit.sandbox import Sandbox; s = Sandbox(); "
            "s.broker(); s.market.is_open('AAPL'); "
            "assert 'exchange_calendars' not in sys.modules, 'calendar built at start'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_first_trade_date_builds_only_that_exchanges_calendar_for_a_bounded_range():
    code = ("import sys; from datetime import UTC, datetime; "
            "from brokerkit.sandbox.market import Market; from brokerkit.sandbox import clock; "
            "Market().trade_date('AAPL', datetime(2026, 3, 2, tzinfo=UTC)); "
            "(built,) = clock._CACHE.values(); "
            "print(built.source, (built.last - built.first).days)")
    out = subprocess.run([sys.executable, "-c", code], check=True, timeout=60,
                         capture_output=True, text=True).stdout.split()
    assert out[0] == "XNAS" and int(out[1]) <= timedelta(days=5 * 366).days  # AAPL: NASDAQ
