"""Venue facts (`brokerkit.venues`), each pinned by name against the venue's documentation,
and the readers that must take them from there (rate-limit presets, settlement rules, the
adapters' order rules)."""

from __future__ import annotations

import warnings
from datetime import date, time
from decimal import Decimal

import pytest

from brokerkit.model import OrderType, TimeInForce
from brokerkit.venues import alpaca, crypto, hours, ibkr, settlement, tradestation
from brokerkit.venues.base import RateLimit

# -- Alpaca -----------------------------------------------------------------------------------

def test_alpaca_fractional_orders_are_market_limit_stop_or_stop_limit_day_only():
    assert {OrderType.MARKET, OrderType.LIMIT, OrderType.STOP,
            OrderType.STOP_LIMIT} == alpaca.FRACTIONAL_ORDER_TYPES
    assert {TimeInForce.DAY} == alpaca.FRACTIONAL_TIME_IN_FORCE


def test_alpaca_notional_orders_are_market_limit_stop_or_stop_limit_of_at_least_one_dollar():
    """Alpaca: notional limit orders ("Fractional Shares Trading Supports Limit Orders and
    Extended Hours"), notional stop and stop-limit orders (docs.alpaca.markets changelog,
    2024-08-20), "as little as $1" (docs.alpaca.markets/docs/fractional-trading)."""
    assert {OrderType.MARKET, OrderType.LIMIT, OrderType.STOP,
            OrderType.STOP_LIMIT} == alpaca.NOTIONAL_ORDER_TYPES
    assert OrderType.TRAILING_STOP not in alpaca.NOTIONAL_ORDER_TYPES
    assert Decimal("1") == alpaca.MIN_NOTIONAL


def test_alpaca_fractional_shares_cannot_be_sold_short():
    """alpaca.markets/support/what-is-fractional-trading: "short selling fractional shares is
    not supported"."""
    assert alpaca.FRACTIONAL_SHORT is False


def test_day_and_gtc_orders_wait_for_the_session_while_ioc_and_fok_cannot():
    """Alpaca queues orders outside regular hours for the next open
    (docs.alpaca.markets/docs/orders-at-alpaca); IBKR's orders without outsideRth wait for
    regular hours (tws-api Order.OutsideRth)."""
    assert {TimeInForce.DAY, TimeInForce.GTC, TimeInForce.OPG,
            TimeInForce.CLS} == hours.QUEUED_WHEN_CLOSED
    assert not {TimeInForce.IOC, TimeInForce.FOK} & hours.QUEUED_WHEN_CLOSED


def test_currencies_are_the_iso_4217_list_and_exchanges_trade_in_theirs():
    """ISO 4217 List One (SIX, the maintenance agency); Xetra trades in EUR, the LSE in GBP,
    the TSE in JPY (interactivebrokers.com/en/trading/products-exchanges.php)."""
    from brokerkit.venues import currencies

    assert {"USD", "EUR", "JPY", "GBP", "CHF", "CNY", "XAU"} <= currencies.ISO_4217
    assert not {"ZZZ", "XYZ", "XTS", "XXX", "CNH", "USDT"} & currencies.ISO_4217
    assert currencies.is_currency("CNH") and not currencies.is_currency("ZZZ")
    assert (currencies.EXCHANGE_CURRENCIES["XETRA"], currencies.EXCHANGE_CURRENCIES["LSE"],
            currencies.EXCHANGE_CURRENCIES["TSE"]) == ("EUR", "GBP", "JPY")
    assert set(currencies.EXCHANGE_CURRENCIES) >= set(hours.HOURS) - {"IDEALPRO", "CRYPTO"}


def test_alpaca_extended_hours_orders_are_day_limit_orders_from_4_to_20_new_york():
    assert {OrderType.LIMIT} == alpaca.EXTENDED_HOURS_ORDER_TYPES
    assert {TimeInForce.DAY} == alpaca.EXTENDED_HOURS_TIME_IN_FORCE
    assert (time(4, 0), time(20, 0)) == alpaca.EXTENDED_HOURS


def test_alpaca_crypto_orders_are_market_limit_or_stop_limit_gtc_or_ioc():
    assert alpaca.ORDER_TYPES["crypto"] == {OrderType.MARKET, OrderType.LIMIT,
                                            OrderType.STOP_LIMIT}
    assert alpaca.TIME_IN_FORCE["crypto"] == {TimeInForce.GTC, TimeInForce.IOC}


def test_alpaca_equities_take_every_order_type_and_time_in_force():
    assert alpaca.ORDER_TYPES["us_equity"] == set(OrderType)
    assert alpaca.TIME_IN_FORCE["us_equity"] == set(TimeInForce)


def test_alpaca_client_order_ids_are_at_most_48_characters():
    assert alpaca.CLIENT_ORDER_ID_MAX == 48


def test_alpaca_trading_api_allows_200_requests_per_minute():
    assert (alpaca.TRADING_API_RATE.requests, alpaca.TRADING_API_RATE.per_seconds) == (200, 60)
    assert alpaca.TRADING_API_RATE.per_minute == 200


def test_alpaca_adapter_reads_its_order_rules_from_the_venue():
    from brokerkit.adapters import alpaca as adapter

    assert adapter.FRACTIONAL_ORDER_TYPES is alpaca.FRACTIONAL_ORDER_TYPES
    assert adapter.CRYPTO_TIME_IN_FORCE is alpaca.CRYPTO_TIME_IN_FORCE
    assert adapter.AlpacaAdapter.capabilities.notional_order_types is alpaca.NOTIONAL_ORDER_TYPES


def test_the_alpaca_sandbox_never_imports_an_adapter():
    import ast
    from pathlib import Path

    import brokerkit.sandbox.alpaca as pkg

    for path in Path(pkg.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert "adapters" not in (node.module or ""), f"{path.name} imports {node.module}"


# -- IBKR -------------------------------------------------------------------------------------

def test_ibkr_tws_api_allows_50_messages_per_second():
    assert (ibkr.MESSAGE_RATE.requests, ibkr.MESSAGE_RATE.per_seconds) == (50, 1)


def test_ibkr_order_codes_are_ibs_and_close_auction_is_not_a_time_in_force():
    assert dict(ibkr.ORDER_TYPE_CODES) == {
        OrderType.MARKET: "MKT", OrderType.LIMIT: "LMT", OrderType.STOP: "STP",
        OrderType.STOP_LIMIT: "STP LMT", OrderType.TRAILING_STOP: "TRAIL"}
    assert set(ibkr.TIME_IN_FORCE_CODES) == set(TimeInForce) - {TimeInForce.CLS}


def test_ibkr_takes_whole_quantities_and_no_notional_amounts():
    from brokerkit.adapters.ibkr import IBKRAdapter

    assert ibkr.FRACTIONAL is False and ibkr.NOTIONAL is False
    caps = IBKRAdapter.capabilities
    assert (caps.fractional, caps.notional) == (False, False)
    assert caps.order_types == set(ibkr.ORDER_TYPE_CODES)


# -- rate limits ------------------------------------------------------------------------------

def test_rate_limit_presets_are_read_from_the_venues():
    from brokerkit.execution.ratelimit import CCXT_PRESETS, PRESETS

    assert PRESETS["alpaca"].windows[0].limit == alpaca.TRADING_API_RATE.requests
    assert PRESETS["ibkr"].windows[0].period == ibkr.MESSAGE_RATE.per_seconds
    assert PRESETS["tradestation"].source == tradestation.REQUEST_RATE.source
    assert set(CCXT_PRESETS) == set(crypto.CCXT)


def test_tradestation_allows_250_requests_per_5_minutes():
    assert (tradestation.REQUEST_RATE.requests, tradestation.REQUEST_RATE.per_seconds) \
        == (250, 300)


@pytest.mark.parametrize(("exchange", "ms"), [("kraken", 1000), ("coinbase", 34),
                                              ("binanceus", 50)])
def test_ccxt_rate_limits_match_ccxt_describe(exchange, ms):
    ccxt = pytest.importorskip("ccxt")
    assert crypto.CCXT[exchange].rate_limit_ms == ms
    assert getattr(ccxt, exchange)().describe()["rateLimit"] == ms


def test_kraken_charges_nothing_for_orders_and_binanceus_ten_for_account_reads():
    assert crypto.CCXT["kraken"].costs["submit"] == 0
    assert crypto.CCXT["kraken"].costs["fills"] == 6
    assert crypto.CCXT["binanceus"].costs["balances"] == 10


def test_a_rate_limit_names_the_field_it_refuses():
    with pytest.raises(ValueError, match="requests"):
        RateLimit(0, 60.0, "x")
    with pytest.raises(ValueError, match="per_seconds"):
        RateLimit(1, 0.0, "x")


# -- settlement -------------------------------------------------------------------------------

def test_us_equities_settle_t_plus_1_from_2024_05_28():
    assert settlement.US.lag_on(date(2024, 5, 28)) == 1
    assert settlement.US.lag_on(date(2024, 5, 24)) == 2
    assert settlement.US.trading == ("XNYS",)
    assert settlement.US.legs == (("XNYS:scheduled", "holidays:XFED"),)


def test_us_equities_settled_t_plus_2_from_2017_09_05_and_t_plus_3_before():
    assert settlement.US.lag_on(date(2017, 9, 5)) == 2
    assert settlement.US.lag_on(date(2017, 9, 1)) == 3


def test_canada_settles_t_plus_1_from_2024_05_27_one_day_before_the_us():
    assert settlement.CANADA.lag_on(date(2024, 5, 27)) == 1
    assert settlement.US.lag_on(date(2024, 5, 27)) == 2
    assert settlement.CANADA.lag_on(date(2017, 9, 1)) == 3


@pytest.mark.parametrize("exchange", ["XETRA", "FWB", "SBF", "AEB", "LSE", "TSE", "SEHK"])
def test_eu_uk_japan_and_hong_kong_equities_settle_t_plus_2(exchange):
    assert settlement.EXCHANGE_RULES[exchange].lag == 2


def test_fx_spot_settles_t_plus_2_except_usd_cad_t_plus_1():
    assert settlement.FX_SPOT_LAG == 2
    assert {"USDCAD", "CADUSD"} <= settlement.FX_T1


def test_crypto_and_futures_settle_the_same_day():
    assert settlement.CRYPTO.lag == 0 and settlement.CRYPTO.legs == ()
    assert settlement.FUTURES.lag == 0 and settlement.FUTURES.legs == ()
    assert dict(settlement.SAME_DAY_CLASSES) == {"crypto": settlement.CRYPTO,
                                                 "future": settlement.FUTURES}


def test_a_settlement_history_must_be_in_date_order():
    with pytest.raises(ValueError, match="in order"):
        settlement.Rule("bad", ((None, 3), (date(2024, 1, 2), 1), (date(2017, 1, 2), 2)))
    with pytest.raises(ValueError, match="start with"):
        settlement.Rule("bad", ((date(2017, 1, 2), 2),))


def test_post_trade_settlement_reads_the_venue_rules():
    from brokerkit.post_trade.settlement import rule_for

    assert rule_for("equity", "STK:AAPL", "USD") is settlement.US
    assert rule_for("equity", "STK:SHOP@TSX", "CAD") is settlement.CANADA
    assert rule_for("crypto", "CRYPTO:BTC/USD", "USD") is settlement.SAME_DAY


# -- hours ------------------------------------------------------------------------------------

def test_nyse_trades_0930_to_1600_new_york_on_the_xnys_calendar():
    nyse = hours.HOURS["NYSE"]
    assert (nyse.calendar, nyse.tz, nyse.open, nyse.close) == (
        "XNYS", "America/New_York", time(9, 30), time(16, 0))


def test_tokyo_and_hong_kong_pause_for_lunch():
    assert hours.HOURS["TSE"].lunch == (time(11, 30), time(12, 30))
    assert hours.HOURS["SEHK"].lunch == (time(12, 0), time(13, 0))


@pytest.mark.parametrize("exchange", [k for k, v in hours.HOURS.items()
                                      if v.kind == "regular"])
def test_regular_hours_agree_with_exchange_calendars(exchange):
    xcals = pytest.importorskip("exchange_calendars")
    h = hours.HOURS[exchange]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cal = xcals.get_calendar(h.calendar, start="2025-01-01", end="2025-12-31")
    assert str(cal.tz) == h.tz
    assert type(cal).open_times[-1][1] == h.open
    assert type(cal).close_times[-1][1] == h.close
    breaks = (cal.break_start_times, cal.break_end_times)
    assert (None if breaks[0] is None else (breaks[0][-1][1], breaks[1][-1][1])) == h.lunch
