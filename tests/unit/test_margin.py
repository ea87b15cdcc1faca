"""US margin rules (`brokerkit.venues.margin`) and the sandbox broker reading them."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from brokerkit.sandbox.broker import PaperBroker
from brokerkit.sandbox.market import Clock, Market
from brokerkit.venues import margin

D = Decimal


def test_reg_t_initial_margin_is_half_the_market_value_long_or_short():
    """Regulation T, 12 CFR 220.12(a) and (c)(1): 50% (a short also holds its proceeds)."""
    assert margin.stock_initial(D(100), D(50)) == D(2500)
    assert margin.stock_initial(D(-100), D(50)) == D(2500)


def test_finra_4210_long_stock_maintenance_is_25_percent():
    """FINRA Rule 4210(c)(1): 25% of the current market value of margin securities long."""
    assert margin.stock_maintenance(D(100), D(50)) == D(1250)


def test_finra_4210_short_stock_maintenance_is_30_percent_at_5_dollars_or_above():
    """FINRA Rule 4210(c)(3): $5.00 a share or 30% of the market value, whichever is greater."""
    assert margin.stock_maintenance(D(-1000), D(50)) == D(15_000)  # 30% > $5 x 1,000
    assert margin.stock_maintenance(D(-10_000), D(5)) == D(50_000)  # $5 a share > 30%


def test_finra_4210_short_stock_under_5_dollars_needs_100_percent_or_2_50_a_share():
    """FINRA Rule 4210(c)(2): $2.50 a share or 100% of the market value, whichever is
    greater, for a stock short selling under $5.00."""
    assert margin.stock_maintenance(D(-10_000), D("4.50")) == D(45_000)
    assert margin.stock_maintenance(D(-50_000), D(1)) == D(125_000)


def test_finra_4210_uncovered_short_option_is_premium_plus_20_percent_less_out_of_the_money():
    """FINRA Rule 4210(f)(2)(D)(i): 100% of the option's value + 20% of the underlying less
    the out-of-the-money amount, at least the option's value + 10% of the underlying (calls)
    or of the strike (puts)."""
    # 1 call 230 at 3.00, underlying 220: 3 + max(44 - 10, 22) = 37 a share
    assert margin.short_option_initial(D(-1), D(3), D(230), "C", D(100), D(220)) == D(3700)
    # 1 put 150 at 1.00, underlying 200 (far out of the money): 1 + max(40 - 50, 15) = 16
    assert margin.short_option_initial(D(-1), D(1), D(150), "P", D(100), D(200)) == D(1600)


def test_short_option_margin_without_the_underlying_is_the_largest_it_can_be():
    """Without the underlying's price, FINRA 4210(f)(2)(D)(i) at its worst: a call's premium is
    at least its intrinsic value (underlying <= strike + premium), a put's requirement peaks
    with the underlying at the strike."""
    call = margin.short_option_initial(D(-2), D(21), D(230), "C", D(100))
    for under in (D(180), D(230), D(251)):
        assert call >= margin.short_option_initial(D(-2), D(21), D(230), "C", D(100), under)
    put = margin.short_option_initial(D(-1), D(4), D(150), "P", D(100))
    for under in (D(100), D(150), D(200)):
        assert put >= margin.short_option_initial(D(-1), D(4), D(150), "P", D(100), under)
    with pytest.raises(ValueError, match="'X'"):
        margin.short_option_initial(D(-1), D(1), D(1), "X", D(100))


def test_future_fallback_initial_margin_is_the_cftc_sec_15_percent_never_the_notional():
    """17 CFR 41.45(b)(1) / 242.403(b)(1): security futures margin 15% of market value; the
    stand-in when a connection has no what-if (CME ES bonds are about 6% of notional)."""
    notional = D(5) * D("5994.75") * D(50)  # ES x5: 1,498,687.50
    assert margin.future_initial_fallback(notional) == D("224803.125")
    assert margin.future_initial_fallback(-notional) < notional


def test_sandbox_short_stock_maintenance_follows_finra_4210():
    """The sandbox broker's margin accounts read FINRA 4210(c): short stock at 30%."""
    b = PaperBroker("t", Market(11, clock=Clock(datetime(2026, 3, 2, 15, 0, tzinfo=UTC))))
    b.open_account("M", "margin", "USD", {"USD": 100_000})
    b.set_position("M", "MSFT", -100, 400)
    last = b.market.quote("MSFT").last
    row = next(r for r in b.balances(["M"]) if r.currency == "USD")
    assert row.margin_maint == pytest.approx(float(D(100) * last * D("0.30")))
    assert row.margin_init == pytest.approx(float(D(100) * last * D("0.50")))
    b.set_position("M", "MSFT", 100, 400)
    row = next(r for r in b.balances(["M"]) if r.currency == "USD")
    assert row.margin_maint == pytest.approx(float(D(100) * last * D("0.25")))
