"""The buying-power check on margined orders: a future and an option sale opening a short
need their initial margin (the broker's what-if, else `brokerkit.venues.margin`), never a
future's notional."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from brokerkit.execution.limits import EffectiveLimits
from brokerkit.execution.risk import CheckContext, InstrumentFacts, check_buying_power
from brokerkit.model import AssetClass, OrderIntent

D = Decimal
WIDE = EffectiveLimits(allow_short=True)
ES = InstrumentFacts(tradable=True, fractionable=False, shortable=True, multiplier=D(50))
OPT = InstrumentFacts(tradable=True, fractionable=False, shortable=True, multiplier=D(100))


def ctx(order: dict[str, Any], asset_class: AssetClass, facts: InstrumentFacts,
        **kw: Any) -> CheckContext:
    base: dict[str, Any] = dict(connection="ibkr", account="DU1", asset_class=asset_class,
                                limits=WIDE, position=D(0), price=D("5994.75"),
                                buying_power=D(400_000), instrument=facts,
                                account_type="margin")
    base.update(kw)
    return CheckContext(OrderIntent.of({"side": "buy", **order}), **base)


def test_future_needs_its_initial_margin_from_the_what_if_not_its_notional():
    """Issue 14: ES x5 at 5,994.75 is 1,498,687.50 notional while IBKR's what-if says
    +89,921 initial margin; a future's notional is never paid (CME performance bonds FAQ,
    https://www.cmegroup.com/solutions/risk-management/performance-bonds-margins/faq-performance-bonds-margins.html)."""
    c = ctx({"symbol": "ESZ6", "quantity": 5}, AssetClass.FUTURE, ES,
            margin_required=D(89_921))
    assert c.notional == D("1498687.50")
    assert check_buying_power(c) is None
    short = check_buying_power(ctx({"symbol": "ESZ6", "quantity": 5}, AssetClass.FUTURE, ES,
                                   margin_required=D(89_921), buying_power=D(50_000)))
    assert short is not None and "89,921.00 USD" in short.message
    assert "what-if" in short.message and "1,498,687.50" not in short.message


def test_future_without_a_what_if_needs_the_cftc_sec_15_percent_rule():
    """17 CFR 41.45(b)(1): 15% of market value, the stand-in when the broker has no what-if."""
    v = check_buying_power(ctx({"symbol": "ESZ6", "quantity": 5}, AssetClass.FUTURE, ES,
                               buying_power=D(200_000)))
    assert v is not None and "224,803.12 USD" in v.message  # 15% of 1,498,687.50
    assert check_buying_power(ctx({"symbol": "ESZ6", "quantity": 5}, AssetClass.FUTURE, ES,
                                  buying_power=D(230_000))) is None


def test_future_sale_reducing_a_long_needs_no_buying_power():
    assert check_buying_power(ctx({"symbol": "ESZ6", "quantity": 2, "side": "sell"},
                                  AssetClass.FUTURE, ES, position=D(2),
                                  buying_power=D(0))) is None
    # the broker's preview says the order frees margin
    assert check_buying_power(ctx({"symbol": "ESZ6", "quantity": 2, "side": "sell"},
                                  AssetClass.FUTURE, ES, position=D(2), buying_power=D(0),
                                  margin_required=D(-35_000))) is None


def test_short_option_needs_finra_4210_margin_not_just_its_premium():
    """FINRA Rule 4210(f)(2)(D)(i): an uncovered short option needs its premium plus 20% of
    the underlying (less out of the money), not only the premium it brings in."""
    order = {"symbol": "AAPL  261218C00230000", "quantity": 2, "side": "sell"}
    v = check_buying_power(ctx(order, AssetClass.OPTION, OPT, price=D(21),
                               buying_power=D(10_000)))
    # worst case without the underlying: 2 x 100 x (21 + 20% x (230 + 21)) = 14,240
    assert v is not None and "14,240.00 USD" in v.message and "initial margin" in v.message
    assert check_buying_power(ctx(order, AssetClass.OPTION, OPT, price=D(21),
                                  buying_power=D(10_000), margin_required=D(9_000))) is None


def test_stock_buy_still_needs_its_value():
    v = check_buying_power(ctx({"symbol": "AAPL", "quantity": 10}, AssetClass.EQUITY,
                               InstrumentFacts(tradable=True), price=D(100),
                               buying_power=D(999)))
    assert v is not None and "1,000.00 USD" in v.message
