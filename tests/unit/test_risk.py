"""Pre-trade checks and the risk limits they read: every code fires on its minimal case and
stays quiet on its nearest neighbour; all violations come back together."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokerkit.errors import ConfigError
from brokerkit.execution.limits import EffectiveLimits, RiskLimits, parse_risk
from brokerkit.execution.risk import (
    CHECKS,
    CODES,
    CheckContext,
    DuplicateDetector,
    InstrumentFacts,
    intent_fingerprint,
    run_checks,
)
from brokerkit.model import AssetClass, OrderIntent, Violation

D = Decimal

# Limits wide enough that the clean order below passes every one of them.
WIDE = EffectiveLimits(
    max_order_quantity=D(1000), max_order_notional=D(1_000_000),
    max_position_quantity=D(10_000), max_position_notional=D(10_000_000),
    max_gross_exposure=D(100_000_000), price_collar_pct=D(10), allow_short=True,
)
ALL_KNOWN = InstrumentFacts(tradable=True, fractionable=True, shortable=True)


def intent(**kw: Any) -> OrderIntent:
    return OrderIntent.of({"symbol": "AAPL", "side": "buy", "quantity": 10, **kw})


def ctx(order: OrderIntent | None = None, **kw: Any) -> CheckContext:
    """A context in which `order` (default: buy 10 AAPL at market) passes every check."""
    base: dict[str, Any] = dict(
        connection="alpaca", account="A1", asset_class=AssetClass.EQUITY, limits=WIDE,
        trading_state="ACTIVE", position=D(0), price=D(100), gross_exposure=D(0),
        buying_power=D(1_000_000), instrument=ALL_KNOWN, market_open=True,
        account_type="margin", within_rate_limit=True, duplicate=False,
    )
    base.update(kw)
    return CheckContext(order or intent(), **base)


def limits(**kw: Any) -> EffectiveLimits:
    return replace(WIDE, **kw)


def codes(c: CheckContext) -> list[str]:
    return [v.code for v in run_checks(c)]


def test_clean_order_passes_every_check():
    assert run_checks(ctx()) == []


def test_every_check_has_a_distinct_known_code():
    assert len(CHECKS) == len(CODES)


# --------------------------------------------------------------------------------------------
# Trading state and reduce-only


def test_halted_rejects_and_active_or_reducing_do_not():
    assert codes(ctx(trading_state="HALTED")) == ["TRADING_HALTED"]
    assert "TRADING_HALTED" not in codes(ctx(trading_state="REDUCING", position=D(-10)))
    assert codes(ctx(trading_state="active")) == []


def test_unknown_trading_state_is_refused_at_construction():
    with pytest.raises(ValueError, match="trading_state 'PAUSED'"):
        ctx(trading_state="PAUSED")


REDUCE = "REDUCE_ONLY_WOULD_INCREASE_POSITION"


@pytest.mark.parametrize(("position", "side", "qty", "fires"), [
    (100, "sell", 100, False),   # closes exactly to flat
    (100, "sell", 50, False),    # reduces
    (100, "sell", 101, True),    # flips long to short
    (100, "buy", 1, True),       # adds to a long
    (-100, "buy", 100, False),   # covers exactly
    (-100, "buy", 101, True),    # flips short to long
    (-100, "sell", 1, True),     # adds to a short
    (0, "buy", 1, True),         # opens from flat
    (0, "sell", 1, True),
])
def test_reducing_state_allows_only_orders_that_shrink_the_position(position, side, qty, fires):
    c = ctx(intent(side=side, quantity=qty), trading_state="REDUCING", position=D(position))
    assert (REDUCE in codes(c)) is fires


def test_reduce_only_intent_is_checked_even_when_trading_is_active():
    assert REDUCE in codes(ctx(intent(reduce_only=True), position=D(0)))
    assert REDUCE not in codes(ctx(intent(reduce_only=True, side="sell"), position=D(10)))
    assert REDUCE not in codes(ctx(intent(), position=D(0)))  # not reduce-only: no check


def test_reduce_only_with_unknown_position_is_reported_not_assumed_flat():
    (v,) = [v for v in run_checks(ctx(intent(reduce_only=True, side="sell"), position=None))
            if v.code == REDUCE]
    assert "unknown" in v.message


def test_reduce_only_flip_message_names_both_positions():
    c = ctx(intent(side="sell", quantity=150), trading_state="REDUCING", position=D(100))
    (v,) = [v for v in run_checks(c) if v.code == REDUCE]
    assert "100" in v.message and "-50" in v.message


# --------------------------------------------------------------------------------------------
# Size limits


def test_quantity_exactly_at_max_passes_and_one_more_fails():
    lim = limits(max_order_quantity=D(100))
    assert "QUANTITY_EXCEEDS_MAX" not in codes(ctx(intent(quantity=100), limits=lim))
    (v,) = [v for v in run_checks(ctx(intent(quantity=101), limits=lim))
            if v.code == "QUANTITY_EXCEEDS_MAX"]
    assert "101" in v.message and "100" in v.message


def test_notional_intent_is_sized_from_price_for_the_quantity_limit():
    lim = limits(max_order_quantity=D(100))
    at = ctx(intent(quantity=None, notional=10_000), limits=lim, price=D(100))
    over = ctx(intent(quantity=None, notional="10000.01"), limits=lim, price=D(100))
    assert at.quantity == D(100) and "QUANTITY_EXCEEDS_MAX" not in codes(at)
    assert "QUANTITY_EXCEEDS_MAX" in codes(over)


def test_notional_intent_without_price_reports_what_it_cannot_size():
    c = ctx(intent(quantity=None, notional=1000), price=None)
    msgs = {v.code: v.message for v in run_checks(c)}
    assert "no price for AAPL" in msgs["QUANTITY_EXCEEDS_MAX"]


def test_notional_exactly_at_max_passes_and_one_share_more_fails():
    lim = limits(max_order_notional=D(250_000))
    assert "NOTIONAL_EXCEEDS_MAX" not in codes(ctx(intent(quantity=2500), limits=lim))
    assert "NOTIONAL_EXCEEDS_MAX" in codes(ctx(intent(quantity=2501), limits=lim))


def test_notional_of_a_limit_order_uses_its_limit_price():
    lim = limits(max_order_notional=D(1000))
    assert "NOTIONAL_EXCEEDS_MAX" not in codes(
        ctx(intent(order_type="limit", limit_price=100), limits=lim, price=D(95)))
    assert "NOTIONAL_EXCEEDS_MAX" in codes(
        ctx(intent(order_type="limit", limit_price="100.01"), limits=lim, price=D(95)))


def test_notional_is_converted_to_base_currency_and_unknown_rate_is_reported():
    lim = limits(max_order_notional=D(1000))
    assert "NOTIONAL_EXCEEDS_MAX" not in codes(ctx(limits=lim, fx_to_base=D(1)))
    assert "NOTIONAL_EXCEEDS_MAX" in codes(ctx(limits=lim, fx_to_base=D("1.01")))
    (v,) = [v for v in run_checks(ctx(limits=lim, fx_to_base=None, currency="EUR"))
            if v.code == "NOTIONAL_EXCEEDS_MAX"]
    assert "EUR->USD" in v.message


def test_option_notional_counts_the_multiplier():
    lim = limits(max_order_notional=D(1000))
    opt = replace(ALL_KNOWN, multiplier=D(100))
    assert "NOTIONAL_EXCEEDS_MAX" not in codes(ctx(intent(quantity=1), price=D(10),
                                                   instrument=opt, limits=lim))
    assert "NOTIONAL_EXCEEDS_MAX" in codes(ctx(intent(quantity=2), price=D(10),
                                               instrument=opt, limits=lim))


def test_position_exactly_at_max_passes_and_one_more_fails():
    lim = limits(max_position_quantity=D(50_000))
    assert "POSITION_EXCEEDS_MAX" not in codes(ctx(limits=lim, position=D(49_990)))
    assert "POSITION_EXCEEDS_MAX" in codes(ctx(intent(quantity=11), limits=lim,
                                               position=D(49_990)))


def test_position_limit_applies_to_the_short_side_after_a_flip():
    lim = limits(max_position_quantity=D(50))
    sell = intent(side="sell", quantity=150)
    assert "POSITION_EXCEEDS_MAX" not in codes(ctx(sell, limits=lim, position=D(100)))
    assert "POSITION_EXCEEDS_MAX" in codes(ctx(replace(sell, quantity=D(151)), limits=lim,
                                               position=D(100)))


def test_position_over_a_lowered_limit_can_still_be_reduced():
    lim = limits(max_position_quantity=D(100))
    assert "POSITION_EXCEEDS_MAX" not in codes(ctx(intent(side="sell"), limits=lim,
                                                   position=D(500)))
    assert "POSITION_EXCEEDS_MAX" in codes(ctx(intent(side="buy"), limits=lim,
                                               position=D(500)))


def test_position_value_limit_uses_the_mark():
    lim = limits(max_position_notional=D(10_000))
    assert "POSITION_EXCEEDS_MAX" not in codes(ctx(limits=lim, position=D(90)))
    assert "POSITION_EXCEEDS_MAX" in codes(ctx(limits=lim, position=D(91)))


def test_position_limit_with_unknown_position_is_reported():
    assert "POSITION_EXCEEDS_MAX" in codes(ctx(position=None))
    assert "POSITION_EXCEEDS_MAX" not in codes(
        ctx(position=None, limits=limits(max_position_quantity=None,
                                         max_position_notional=None)))


def test_gross_exposure_exactly_at_max_passes_and_one_share_more_fails():
    lim = limits(max_gross_exposure=D(5_000_000))
    assert "GROSS_EXPOSURE_EXCEEDS_MAX" not in codes(ctx(limits=lim,
                                                         gross_exposure=D(4_999_000)))
    assert "GROSS_EXPOSURE_EXCEEDS_MAX" in codes(ctx(intent(quantity=11), limits=lim,
                                                     gross_exposure=D(4_999_000)))


def test_gross_exposure_over_max_still_lets_positions_shrink():
    lim = limits(max_gross_exposure=D(1000))
    shrink = ctx(intent(side="sell"), limits=lim, gross_exposure=D(5000), position=D(50))
    assert "GROSS_EXPOSURE_EXCEEDS_MAX" not in codes(shrink)


def test_gross_exposure_over_max_lets_a_flip_to_a_smaller_position_through():
    lim = limits(max_gross_exposure=D(1000))
    flip = ctx(intent(side="sell", quantity=150), limits=lim, gross_exposure=D(10_000),
               position=D(100))
    grow = ctx(intent(side="sell", quantity=201), limits=lim, gross_exposure=D(10_000),
               position=D(100))
    assert "GROSS_EXPOSURE_EXCEEDS_MAX" not in codes(flip)
    assert "GROSS_EXPOSURE_EXCEEDS_MAX" in codes(grow)


def test_gross_exposure_counts_the_whole_order_when_position_is_unknown():
    lim = limits(max_gross_exposure=D(1000), max_position_quantity=None,
                 max_position_notional=None)
    assert "GROSS_EXPOSURE_EXCEEDS_MAX" not in codes(ctx(intent(side="sell"), limits=lim,
                                                         position=None))
    assert "GROSS_EXPOSURE_EXCEEDS_MAX" in codes(ctx(intent(side="sell", quantity=11),
                                                     limits=lim, position=None))
    assert "GROSS_EXPOSURE_EXCEEDS_MAX" in codes(ctx(limits=lim, gross_exposure=None))


# --------------------------------------------------------------------------------------------
# Restricted symbols and price collar


def test_restricted_symbol_is_rejected_and_others_are_not():
    lim = parse_risk({"restricted_symbols": ["GME"]})
    assert "RESTRICTED_SYMBOL" in codes(ctx(intent(symbol="GME"),
                                            limits=lim.for_order("alpaca", "equity", "GME")))
    assert "RESTRICTED_SYMBOL" not in codes(ctx(limits=lim.for_order("alpaca", "equity",
                                                                     "AAPL")))


@pytest.mark.parametrize(("kw", "fires"), [
    ({"order_type": "limit", "limit_price": "110"}, False),
    ({"order_type": "limit", "limit_price": "110.01"}, True),
    ({"order_type": "limit", "limit_price": "90"}, False),
    ({"order_type": "limit", "limit_price": "89.99"}, True),
    ({"order_type": "stop", "stop_price": "110"}, False),
    ({"order_type": "stop", "stop_price": "111"}, True),
    ({"order_type": "stop_limit", "stop_price": "100", "limit_price": "120"}, True),
    ({"order_type": "market"}, False),
])
def test_price_collar_edges_at_ten_percent_of_last(kw, fires):
    assert ("PRICE_OUTSIDE_COLLAR" in codes(ctx(intent(**kw), price=D(100)))) is fires


def test_collar_without_a_last_price_is_reported_for_priced_orders_only():
    (v,) = [v for v in run_checks(ctx(intent(order_type="limit", limit_price=100), price=None))
            if v.code == "PRICE_OUTSIDE_COLLAR"]
    assert "no last price" in v.message
    assert "PRICE_OUTSIDE_COLLAR" not in codes(ctx(intent(order_type="limit", limit_price=100),
                                                   price=None, limits=limits(
                                                       price_collar_pct=None)))


def test_collar_message_names_price_distance_and_band():
    (v,) = [v for v in run_checks(ctx(intent(order_type="limit", limit_price=120)))
            if v.code == "PRICE_OUTSIDE_COLLAR"]
    assert "120" in v.message and "20%" in v.message and "[90, 110]" in v.message


# --------------------------------------------------------------------------------------------
# Rate, buying power, instrument facts, market hours, short sales, duplicates


def test_rate_limit_refusal_and_missing_verdict_are_reported():
    assert codes(ctx(within_rate_limit=False, rate_limit="200 per 60 s")) == [
        "RATE_LIMIT_EXCEEDED"]
    assert codes(ctx(within_rate_limit=None)) == ["RATE_LIMIT_EXCEEDED"]
    assert codes(ctx(within_rate_limit=True)) == []


def test_buy_exactly_at_buying_power_passes_and_a_share_more_fails():
    assert "INSUFFICIENT_BUYING_POWER" not in codes(ctx(buying_power=D(1000)))
    (v,) = [v for v in run_checks(ctx(intent(quantity=11), buying_power=D(1000)))
            if v.code == "INSUFFICIENT_BUYING_POWER"]
    assert "1,100.00 USD" in v.message and "1,000.00 USD" in v.message


def test_margin_short_sale_needs_buying_power_for_the_shorted_part_only():
    sell = intent(side="sell", quantity=15)
    assert "INSUFFICIENT_BUYING_POWER" not in codes(ctx(sell, position=D(10),
                                                        buying_power=D(500)))
    assert "INSUFFICIENT_BUYING_POWER" in codes(ctx(sell, position=D(10),
                                                    buying_power=D("499.99")))
    assert "INSUFFICIENT_BUYING_POWER" not in codes(ctx(replace(sell, quantity=D(10)),
                                                        position=D(10), buying_power=D(0)))


def test_cash_account_sale_never_needs_buying_power():
    c = ctx(intent(side="sell"), position=D(10), buying_power=D(0), account_type="cash")
    assert codes(c) == []


def test_unknown_buying_power_is_reported_for_buys():
    assert "INSUFFICIENT_BUYING_POWER" in codes(ctx(buying_power=None))


@pytest.mark.parametrize(("qty", "fractionable", "minimum", "fires"), [
    ("2", False, None, False),
    ("1.5", False, None, True),
    ("1.5", None, None, True),
    ("1.5", True, None, False),
    ("0.001", True, "0.001", False),
    ("0.0009", True, "0.001", True),
])
def test_fractional_quantities_need_a_fractionable_instrument(qty, fractionable, minimum, fires):
    facts = replace(ALL_KNOWN, fractionable=fractionable,
                    min_quantity=None if minimum is None else D(minimum))
    assert ("NOT_FRACTIONABLE" in codes(ctx(intent(quantity=qty), instrument=facts))) is fires


def test_notional_order_on_a_non_fractionable_instrument_is_rejected():
    facts = replace(ALL_KNOWN, fractionable=False)
    assert "NOT_FRACTIONABLE" in codes(ctx(intent(quantity=None, notional=1000),
                                           instrument=facts))
    assert "NOT_FRACTIONABLE" not in codes(ctx(intent(quantity=None, notional=1000)))


@pytest.mark.parametrize(("tradable", "fires"), [(True, False), (False, True), (None, True)])
def test_not_tradable_or_unknown_tradability_is_rejected(tradable, fires):
    facts = replace(ALL_KNOWN, tradable=tradable)
    assert ("NOT_TRADABLE" in codes(ctx(instrument=facts))) is fires


@pytest.mark.parametrize(("open_", "tif"), [
    (False, "day"), (False, "gtc"), (None, "day"), (None, "gtc"), (False, "opg"),
    (False, "cls"), (True, "ioc"),
])
def test_orders_outside_regular_hours_are_queued_by_the_broker_not_refused(open_, tif):
    """Alpaca queues orders submitted outside regular hours for the next open
    (https://docs.alpaca.markets/docs/orders-at-alpaca, "Orders Submitted Outside of Eligible
    Trading Hours"); IBKR holds an order without outsideRth until regular hours
    (tws-api Order.OutsideRth). So a day or GTC order is not MARKET_CLOSED."""
    c = ctx(intent(time_in_force=tif), market_open=open_)
    assert "MARKET_CLOSED" not in codes(c)


@pytest.mark.parametrize(("open_", "tif"), [(False, "ioc"), (False, "fok"), (None, "ioc")])
def test_immediate_orders_are_market_closed_while_the_market_is_closed(open_, tif):
    """An IOC or FOK order must execute at once: outside the session it can only be canceled
    (Alpaca "Time in Force", https://docs.alpaca.markets/docs/orders-at-alpaca)."""
    c = ctx(intent(time_in_force=tif), market_open=open_)
    msg = next(v.message for v in run_checks(c) if v.code == "MARKET_CLOSED")
    assert tif in msg and ("closed" in msg if open_ is False else "unknown" in msg)


def test_extended_hours_limit_day_order_passes_while_the_regular_session_is_closed():
    """Alpaca takes extended-hours limit day orders from 4:00 to 20:00 ET
    (https://docs.alpaca.markets/docs/orders-at-alpaca, Extended Hours Trading)."""
    order = intent(order_type="limit", limit_price=100, extended_hours=True)
    assert "MARKET_CLOSED" not in codes(ctx(order, market_open=False))
    ioc = intent(order_type="limit", limit_price=100, extended_hours=True,
                 time_in_force="ioc")
    msg = next(v.message for v in run_checks(ctx(ioc, market_open=False))
               if v.code == "MARKET_CLOSED")
    assert "extended session" in msg


@pytest.mark.parametrize(("position", "account_type", "shortable", "allow", "fires"), [
    (10, "cash", True, True, False),      # closing a long: no short at all
    (10, "cash", True, True, False),
    (9, "cash", True, True, True),        # one share short in a cash account
    (0, "margin", False, True, True),     # not shortable
    (0, "margin", None, True, True),      # shortability unknown
    (0, "margin", True, False, True),     # allow_short = false
    (0, None, True, True, True),          # account type unknown
    (0, "margin", True, True, False),
    (None, "margin", True, True, False),  # position unknown but shorting allowed anyway
    (None, "cash", True, True, True),     # position unknown: the sale may short
])
def test_short_sales_need_margin_shortable_and_allow_short(position, account_type, shortable,
                                                           allow, fires):
    c = ctx(intent(side="sell"), position=None if position is None else D(position),
            account_type=account_type, instrument=replace(ALL_KNOWN, shortable=shortable),
            limits=limits(allow_short=allow))
    assert ("SHORT_SALE_NOT_ALLOWED" in codes(c)) is fires


@pytest.mark.parametrize(("position", "quantity", "fires"), [
    ("0", "0.5", True),     # opens a fractional short
    ("2", "2.5", True),     # sells the long and shorts half a share
    ("0.5", "0.5", False),  # sells a fractional long to flat: no short
    (None, "0.5", True),    # position unknown: the fractional sale may short
    ("0", "1", False),      # a whole-share short is allowed
])
def test_fractional_shares_cannot_be_sold_short(position, quantity, fires):
    """Alpaca: "We only support long fractional trading positions; short selling fractional
    shares is not supported" (https://alpaca.markets/support/what-is-fractional-trading)."""
    c = ctx(intent(side="sell", quantity=quantity),
            position=None if position is None else D(position))
    found = [v.message for v in run_checks(c) if v.code == "SHORT_SALE_NOT_ALLOWED"]
    assert bool(found) is fires
    if fires:
        assert "fractional shares cannot be sold short" in found[0]


def test_fractional_short_rule_applies_to_shares_only():
    c = ctx(intent(symbol="BTC/USD", side="sell", quantity="0.5"),
            asset_class=AssetClass.CRYPTO, position=D(0))
    assert not any("fractional" in v.message for v in run_checks(c))


def test_duplicate_intent_is_rejected_unless_the_window_is_off():
    assert codes(ctx(duplicate=True)) == ["DUPLICATE_INTENT"]
    assert codes(ctx(duplicate=None)) == ["DUPLICATE_INTENT"]
    assert codes(ctx(duplicate=True, limits=limits(duplicate_window_seconds=0.0))) == []


def test_all_violations_are_reported_together():
    order = intent(symbol="GME", side="sell", quantity="1.5", order_type="limit",
                   limit_price=50, time_in_force="ioc")
    c = ctx(order, trading_state="HALTED", position=D(0), price=D(100),
            limits=limits(max_order_quantity=D(1), restricted=True, allow_short=False),
            instrument=InstrumentFacts(tradable=False, fractionable=False, shortable=False),
            market_open=False, account_type="cash", within_rate_limit=False, duplicate=True)
    assert set(codes(c)) == {
        "TRADING_HALTED", "RESTRICTED_SYMBOL", "NOT_TRADABLE", "MARKET_CLOSED",
        "SHORT_SALE_NOT_ALLOWED", "QUANTITY_EXCEEDS_MAX", "PRICE_OUTSIDE_COLLAR",
        "NOT_FRACTIONABLE", "RATE_LIMIT_EXCEEDED", "DUPLICATE_INTENT"}


# --------------------------------------------------------------------------------------------
# Fingerprints and the duplicate detector


def test_fingerprint_ignores_client_order_id_and_trailing_zeros():
    a = intent(quantity="10", client_order_id="a1")
    b = intent(quantity="10.00", client_order_id="b2")
    assert intent_fingerprint(a, "alpaca", "A1") == intent_fingerprint(b, "alpaca", "A1")


@pytest.mark.parametrize("change", [
    {"side": "sell"}, {"quantity": 11}, {"symbol": "MSFT"},
    {"order_type": "limit", "limit_price": 1},
])
def test_fingerprint_differs_when_the_order_differs(change):
    assert intent_fingerprint(intent(), "alpaca", "A1") != \
        intent_fingerprint(intent(**change), "alpaca", "A1")


@pytest.mark.parametrize("change", [
    {"time_in_force": "gtc"}, {"order_type": "limit", "limit_price": 1, "extended_hours": True},
])
def test_fingerprint_includes_time_in_force_and_extended_hours(change):
    """A day and a GTC order, or a regular-hours and an extended-hours order, are different
    orders (Alpaca's `time_in_force` and `extended_hours` order fields,
    https://docs.alpaca.markets/reference/postorder): neither is a duplicate of the other."""
    base = {k: v for k, v in change.items() if k in ("order_type", "limit_price")}
    assert intent_fingerprint(intent(**base), "alpaca", "A1") != \
        intent_fingerprint(intent(**change), "alpaca", "A1")
    seen = DuplicateDetector(60.0, clock=lambda: 0.0)
    seen.remember(intent_fingerprint(intent(**base), "alpaca", "A1"))
    assert not seen.seen(intent_fingerprint(intent(**change), "alpaca", "A1"))


def test_fingerprint_differs_by_account():
    assert intent_fingerprint(intent(), "alpaca", "A1") != \
        intent_fingerprint(intent(), "alpaca", "A2")


def test_duplicate_detector_remembers_for_the_window_only():
    now = [100.0]
    d = DuplicateDetector(5, clock=lambda: now[0])
    fp = intent_fingerprint(intent(), "alpaca", "A1")
    assert not d.seen(fp)
    d.remember(fp)
    now[0] = 104.9
    assert d.seen(fp)
    now[0] = 105.0
    assert not d.seen(fp)


# --------------------------------------------------------------------------------------------
# Limits from config


RISK = {
    "max_order_quantity": 10_000, "max_order_notional": 250_000, "allow_short": True,
    "max_orders_per_second": 20, "on_rate_limit": "wait", "duplicate_window_seconds": 5,
    "restricted_symbols": ["GME"],
    "connections": {"alpaca": {"max_order_notional": 50_000, "max_order_quantity": 5000}},
    "asset_classes": {"crypto": {"max_order_notional": 10_000, "max_order_quantity": 3}},
    "symbols": {"TSLA": {"max_order_quantity": 100}, "gme": {"restricted": False}},
}


def test_limits_most_specific_level_wins():
    lim = parse_risk(RISK, "brokerkit.toml")
    assert lim.for_order("ibkr", "equity", "AAPL").max_order_quantity == 10_000  # global
    assert lim.for_order("alpaca", "equity", "AAPL").max_order_quantity == 5000  # connection
    assert lim.for_order("alpaca", "crypto", "BTC/USD").max_order_quantity == 3  # asset class
    assert lim.for_order("alpaca", "crypto", "TSLA").max_order_quantity == 100   # symbol
    crypto = lim.for_order("alpaca", "crypto", "ETH/USD")
    assert crypto.max_order_notional == 10_000 and crypto.on_rate_limit == "wait"


def test_symbol_table_can_lift_a_global_restriction():
    lim = parse_risk(RISK)
    assert not lim.for_order("alpaca", "equity", "GME").restricted
    assert parse_risk({"restricted_symbols": ["gme"]}).for_order(None, None, "GME").restricted


def test_resolved_limits_are_cached():
    lim = parse_risk(RISK)
    assert lim.for_order("alpaca", AssetClass.EQUITY, "AAPL") is \
        lim.for_order("alpaca", AssetClass.EQUITY, "AAPL")


def test_defaults_are_no_limits_no_shorting_and_reject_on_rate_limit():
    eff = RiskLimits().for_order("x", "equity", "AAPL")
    assert eff.max_order_quantity is None and eff.allow_short is False
    assert eff.on_rate_limit == "reject" and eff.duplicate_window_seconds == 5.0


@pytest.mark.parametrize(("raw", "key", "expected"), [
    ({"max_order_quantity": -1}, "risk.max_order_quantity", "positive"),
    ({"max_order_quantity": 0}, "risk.max_order_quantity", "positive"),
    ({"max_order_quantity": "lots"}, "risk.max_order_quantity", "positive"),
    ({"max_order_quantity": True}, "risk.max_order_quantity", "positive"),
    ({"allow_short": "yes"}, "risk.allow_short", "true or false"),
    ({"on_rate_limit": "queue"}, "risk.on_rate_limit", "'reject' or 'wait'"),
    ({"max_order_qty": 5}, "risk.max_order_qty", "one of"),
    ({"restricted_symbols": "GME"}, "risk.restricted_symbols", "list"),
    ({"symbols": {"TSLA": {"max_order_quantity": 0}}},
     "risk.symbols.TSLA.max_order_quantity", "positive"),
    ({"symbols": {"TSLA": {"max_gross_exposure": 5}}},
     "risk.symbols.TSLA.max_gross_exposure", "one of"),
    ({"asset_classes": {"beanie_babies": {}}}, "risk.asset_classes.beanie_babies",
     "asset class"),
    ({"connections": {"alpaca": 5}}, "risk.connections.alpaca", "table"),
    ({"connections": {"alpaca": {"duplicate_window_seconds": 1}}},
     "risk.connections.alpaca.duplicate_window_seconds", "one of"),
])
def test_bad_risk_config_names_file_key_and_expectation(raw, key, expected):
    with pytest.raises(ConfigError) as err:
        parse_risk(raw, "brokerkit.toml")
    assert err.value.key == key and err.value.file == "brokerkit.toml"
    assert expected in str(err.value)


def test_risk_connection_table_must_name_a_configured_connection():
    with pytest.raises(ConfigError, match=r"risk\.connections\.alpcaa.*alpaca"):
        parse_risk({"connections": {"alpcaa": {}}}, known_connections=["alpaca", "ibkr"])


# --------------------------------------------------------------------------------------------
# Property: any context gives a list of known violations, never an exception

money = st.decimals(min_value="0.01", max_value="1e9", places=2, allow_nan=False,
                    allow_infinity=False)
maybe = st.one_of(st.none(), money)


@st.composite
def contexts(draw: st.DrawFn) -> CheckContext:
    order_type = draw(st.sampled_from(["market", "limit", "stop", "stop_limit"]))
    kw: dict[str, Any] = {"side": draw(st.sampled_from(["buy", "sell"])),
                          "order_type": order_type,
                          "reduce_only": draw(st.booleans())}
    if draw(st.booleans()):
        kw["quantity"] = draw(st.decimals(min_value="0.0001", max_value="1e6", places=4))
    else:
        kw["quantity"], kw["notional"] = None, draw(money)
    if order_type in ("limit", "stop_limit"):
        kw["limit_price"] = draw(money)
    if order_type in ("stop", "stop_limit"):
        kw["stop_price"] = draw(money)
    lim = EffectiveLimits(**{name: draw(maybe) for name in (
        "max_order_quantity", "max_order_notional", "max_position_quantity",
        "max_position_notional", "max_gross_exposure", "price_collar_pct")},
        restricted=draw(st.booleans()), allow_short=draw(st.booleans()),
        duplicate_window_seconds=draw(st.sampled_from([0.0, 5.0])))
    tri = st.one_of(st.none(), st.booleans())
    return ctx(
        intent(**kw), limits=lim,
        trading_state=draw(st.sampled_from(["ACTIVE", "REDUCING", "HALTED"])),
        position=draw(st.one_of(st.none(), st.decimals(min_value=-1e6, max_value=1e6,
                                                       places=3))),
        price=draw(maybe), fx_to_base=draw(st.one_of(st.none(), st.just(D("1.08")))),
        gross_exposure=draw(maybe),
        buying_power=draw(st.one_of(st.none(), money, money.map(lambda d: -d))),
        instrument=InstrumentFacts(draw(tri), draw(tri), draw(tri),
                                   draw(st.one_of(st.none(), st.just(D("0.01")))),
                                   draw(st.sampled_from([D(1), D(100)]))),
        market_open=draw(tri), account_type=draw(st.sampled_from([None, "cash", "margin"])),
        within_rate_limit=draw(tri), duplicate=draw(tri),
    )


@given(contexts())
def test_any_context_yields_known_violations_and_never_raises(c):
    out = run_checks(c)
    assert isinstance(out, list)
    assert all(isinstance(v, Violation) and v.code in CODES and v.message for v in out)
    assert len({v.code for v in out}) == len(out)


def test_the_documented_risk_table_loads_from_a_settings_file(tmp_path):
    from brokerkit.config import load_settings

    path = tmp_path / "brokerkit.toml"
    path.write_text("""
[connections.alpaca]
type = "alpaca"
[risk]
max_order_quantity = 10000
max_order_notional = 250000
max_position_quantity = 50000
max_position_notional = 1000000
max_gross_exposure = 5000000
restricted_symbols = ["GME"]
price_collar_pct = 10
max_orders_per_second = 20
allow_short = true
on_rate_limit = "reject"
duplicate_window_seconds = 5
[risk.connections.alpaca]
max_order_notional = 50000
[risk.asset_classes.crypto]
max_order_notional = 10000
[risk.symbols.TSLA]
max_order_quantity = 100
""")
    lim = RiskLimits.from_settings(load_settings(path))
    tsla = lim.for_order("alpaca", "equity", "TSLA")
    assert tsla.max_order_quantity == 100 and tsla.max_order_notional == 50_000
    assert tsla.max_gross_exposure == 5_000_000 and tsla.allow_short
    assert lim.for_order("alpaca", "crypto", "BTC/USD").max_order_notional == 10_000
    path.write_text('[risk.connections.kraken]\nmax_order_notional = 1\n')
    with pytest.raises(ConfigError, match=r"brokerkit\.toml: \[risk\.connections\.kraken\]"):
        RiskLimits.from_settings(load_settings(path))
