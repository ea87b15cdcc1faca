"""Pre-trade checks: pure functions over a `CheckContext`, all run and all reported.

`run_checks(ctx)` returns every `Violation` the order trips, never just the first, so a user
fixes an order once. Each check is a function `(ctx) -> Violation | None` with one stable code:

=====================================  ========================================================
code                                   when
=====================================  ========================================================
TRADING_HALTED                         the trading state is HALTED
REDUCE_ONLY_WOULD_INCREASE_POSITION    state REDUCING or `intent.reduce_only`, and the order
                                       opens, increases or flips the position
QUANTITY_EXCEEDS_MAX                   order quantity over `max_order_quantity`
NOTIONAL_EXCEEDS_MAX                   order value over `max_order_notional`
POSITION_EXCEEDS_MAX                   |position| after the order over `max_position_quantity`
                                       or its value over `max_position_notional`
GROSS_EXPOSURE_EXCEEDS_MAX             gross exposure after the order over `max_gross_exposure`
RESTRICTED_SYMBOL                      the symbol is restricted
PRICE_OUTSIDE_COLLAR                   a limit or stop price further than `price_collar_pct`
                                       from the last price
RATE_LIMIT_EXCEEDED                    the connection's rate limiter refused the order
INSUFFICIENT_BUYING_POWER              a buy, or a margin sale opening or adding to a short,
                                       costs more than the buying power
NOT_FRACTIONABLE                       a fractional (or notional) order on an instrument that
                                       is not fractionable, or under its minimum quantity
NOT_TRADABLE                           the instrument is not tradable at the connection
MARKET_CLOSED                          an order that must execute at once (IOC, FOK) while the
                                       market is closed or its hours unknown; day, GTC, OPG
                                       and CLS orders are queued by the broker and pass
SHORT_SALE_NOT_ALLOWED                 a sale opening or adding to a short in a cash account,
                                       on a non-shortable instrument, with allow_short false,
                                       or in fractional shares
DUPLICATE_INTENT                       an identical intent (time in force and extended hours
                                       included) was sent within the duplicate window
=====================================  ========================================================

Rules that are stricter than NautilusTrader's RiskEngine, on purpose:

- *Unknown is not fine.* A check that needs a fact nobody supplied (no price, no position, no
  buying power, unknown tradability...) reports its violation, saying what was unknown; it
  never passes silently. A check whose limit is not configured needs nothing and passes.
- *Reducing means reducing.* REDUCING and reduce-only orders may not open from flat, add to
  the position, or flip it through zero; an order closing exactly to flat passes.
- *Risk-reducing orders are never blocked by size limits.* POSITION_EXCEEDS_MAX only stops
  orders that open, add to or flip a position, GROSS_EXPOSURE_EXCEEDS_MAX only those that grow
  |position|, so a book already over a lowered limit can always be brought back under it.
- *Values are conservative.* An order's notional uses its limit price (else its stop price,
  else the reference price): what a limit order may cost at worst. Notional intents are sized
  as notional / price.

Cancels never pass through these checks and are never blocked, not even when HALTED: a cancel
can only reduce risk. Money compared with limits is in the base currency (`fx_to_base`);
buying power is in the order's currency. Arithmetic is Decimal throughout.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from ..model import AssetClass, Instrument, OrderIntent, Side, Violation
from ..venues import margin as margin_rules
from ..venues.hours import QUEUED_WHEN_CLOSED
from .limits import EffectiveLimits

__all__ = [
    "CHECKS",
    "CODES",
    "CheckContext",
    "DuplicateDetector",
    "InstrumentFacts",
    "check_buying_power",
    "check_duplicate",
    "check_fractional",
    "check_gross_exposure",
    "check_market_hours",
    "check_order_notional",
    "check_order_quantity",
    "check_position",
    "check_price_collar",
    "check_rate_limit",
    "check_reduce_only",
    "check_restricted",
    "check_short_sale",
    "check_tradable",
    "check_trading_state",
    "intent_fingerprint",
    "run_checks",
]

TRADING_STATES: Final = ("ACTIVE", "REDUCING", "HALTED")
ACCOUNT_TYPES: Final = ("cash", "margin")
_ZERO = Decimal(0)
_ONE = Decimal(1)
_HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class InstrumentFacts:
    """What the broker says about an instrument; None means it did not say."""

    tradable: bool | None = None
    fractionable: bool | None = None
    shortable: bool | None = None
    min_quantity: Decimal | None = None
    multiplier: Decimal = _ONE


@dataclass(frozen=True, slots=True)
class CheckContext:
    """Everything the checks read, gathered by the pipeline before they run.

    A fact left as None is unknown; the checks that need it report so. `price` is the reference
    price (last trade, else mid) in the order's currency; `position` is the signed quantity held
    in the instrument on `account`; `gross_exposure` is the sum of |market value| of all
    positions in the base currency, before this order; `fx_to_base` converts the order's
    currency to the base currency. The remaining fields are derived at construction.
    """

    intent: OrderIntent
    connection: str
    account: str
    asset_class: AssetClass
    limits: EffectiveLimits
    trading_state: str = "ACTIVE"
    position: Decimal | None = None
    price: Decimal | None = None
    currency: str = "USD"
    base_currency: str = "USD"
    fx_to_base: Decimal | None = _ONE
    gross_exposure: Decimal | None = None
    buying_power: Decimal | None = None
    instrument: InstrumentFacts = field(default_factory=InstrumentFacts)
    market_open: bool | None = None
    account_type: str | None = None
    within_rate_limit: bool | None = None
    rate_limit: str = ""
    duplicate: bool | None = None
    #: the initial margin the order adds, in the order's currency, from the connection's own
    #: preview (IBKR what-if `initMarginChange`); gathered for futures and option sales only.
    #: None: the buying-power check uses `brokerkit.venues.margin`'s rule instead.
    margin_required: Decimal | None = None
    # derived
    exec_price: Decimal | None = field(init=False, default=None)
    quantity: Decimal | None = field(init=False, default=None)
    notional: Decimal | None = field(init=False, default=None)
    notional_base: Decimal | None = field(init=False, default=None)
    new_position: Decimal | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        state = self.trading_state.upper() if isinstance(self.trading_state, str) else None
        if state not in TRADING_STATES:
            raise ValueError(f"trading_state {self.trading_state!r} is not one of "
                             f"{', '.join(TRADING_STATES)}")
        if self.account_type is not None and self.account_type not in ACCOUNT_TYPES:
            raise ValueError(f"account_type {self.account_type!r} is not 'cash' or 'margin'")
        for name in ("price", "fx_to_base"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive or None, got {value!r}")
        if self.gross_exposure is not None and self.gross_exposure < 0:
            raise ValueError(f"gross_exposure must be >= 0, got {self.gross_exposure!r}")
        facts = self.instrument
        if not facts.multiplier > 0:
            raise ValueError(f"instrument multiplier must be positive, got {facts.multiplier!r}")

        set_ = object.__setattr__
        set_(self, "trading_state", state)
        intent = self.intent
        exec_price = next((p for p in (intent.limit_price, intent.stop_price, self.price)
                           if p is not None), None)
        quantity, notional = intent.quantity, intent.notional
        if exec_price is not None:
            unit_value = exec_price * facts.multiplier
            if quantity is not None:
                notional = quantity * unit_value
            elif notional is not None:
                quantity = notional / unit_value
        set_(self, "exec_price", exec_price)
        set_(self, "quantity", quantity)
        set_(self, "notional", notional)
        if notional is not None and self.fx_to_base is not None:
            set_(self, "notional_base", notional * self.fx_to_base)
        if quantity is not None and self.position is not None:
            set_(self, "new_position",
                 self.position + (quantity if intent.side is Side.BUY else -quantity))

    @property
    def mark(self) -> Decimal | None:
        """The price positions are valued at: the reference price, else the order's price."""
        return self.price if self.price is not None else self.exec_price

    @property
    def increases_position(self) -> bool | None:
        """Whether the order opens, adds to or flips the position; None when the position or
        the quantity is unknown. Orders for which this is False only bring it towards flat."""
        new, pos = self.new_position, self.position
        if new is None or pos is None:
            return None
        return abs(new) > abs(pos) or (new != 0 and (new > 0) != (pos > 0))

    @property
    def short_increase(self) -> Decimal | None:
        """How much a sale opens or adds to a short (0 for buys); None when unknown."""
        if self.intent.side is Side.BUY:
            return _ZERO
        new, pos = self.new_position, self.position
        if new is None or pos is None:
            return None
        return max(_ZERO, min(pos, _ZERO) - new)


# --------------------------------------------------------------------------------------------
# Formatting: messages name the numbers, readably.


def _n(value: Decimal) -> str:
    """A Decimal without exponent or float noise: 8 decimal places, or for a smaller number
    as many as its digits need up to 12 significant ones (never "0" for a tiny quantity)."""
    if value == value.to_integral_value():
        return f"{value:,.0f}"
    exact = -int(value.normalize().as_tuple().exponent)
    places = max(8, min(exact, 11 - value.adjusted()))
    text = f"{value:,.{places}f}".rstrip("0")
    return text.rstrip(".")


def _money(value: Decimal, currency: str) -> str:
    return f"{value:,.2f} {currency}"


def _what(ctx: CheckContext) -> str:
    i = ctx.intent
    if i.quantity is not None:
        return f"{i.side.value} {_n(i.quantity)} {i.symbol}"
    return f"{i.side.value} {_n(i.notional or _ZERO)} {ctx.currency} of {i.symbol}"


def _why_no_value(ctx: CheckContext) -> str:
    if ctx.exec_price is None:
        return f"no price for {ctx.intent.symbol} to value the order"
    return f"no {ctx.currency}->{ctx.base_currency} rate to value the order"


# --------------------------------------------------------------------------------------------
# The checks


def check_trading_state(ctx: CheckContext) -> Violation | None:
    """TRADING_HALTED when the trading state is HALTED."""
    if ctx.trading_state == "HALTED":
        return Violation("TRADING_HALTED", "trading is HALTED: no new orders until trading is "
                                           "resumed (cancels still pass)")
    return None


def check_reduce_only(ctx: CheckContext) -> Violation | None:
    """REDUCE_ONLY_WOULD_INCREASE_POSITION when a reducing order opens, adds to or flips."""
    if ctx.trading_state == "REDUCING":
        why = "trading state is REDUCING"
    elif ctx.intent.reduce_only:
        why = "the order is reduce_only"
    else:
        return None
    code, pos, new = "REDUCE_ONLY_WOULD_INCREASE_POSITION", ctx.position, ctx.new_position
    if pos is None:
        return Violation(code, f"{why}, but the position in {ctx.intent.symbol} on {ctx.account} "
                               f"is unknown, so {_what(ctx)} cannot be shown to reduce it")
    if pos == 0:
        return Violation(code, f"{why}: {_what(ctx)} would open a position from flat")
    if (pos > 0) == (ctx.intent.side is Side.BUY):
        return Violation(code, f"{why}: {_what(ctx)} would increase the position of {_n(pos)}")
    if new is None:
        return Violation(code, f"{why}: {_what(ctx)} cannot be sized ({_why_no_value(ctx)}), so "
                               f"it may flip the position of {_n(pos)}")
    if ctx.increases_position:  # against the position, so only a flip increases it
        return Violation(code, f"{why}: {_what(ctx)} would flip the position from {_n(pos)} "
                               f"to {_n(new)}")
    return None


def check_order_quantity(ctx: CheckContext) -> Violation | None:
    """QUANTITY_EXCEEDS_MAX when the (estimated) order quantity is over the limit."""
    limit = ctx.limits.max_order_quantity
    if limit is None:
        return None
    code = "QUANTITY_EXCEEDS_MAX"
    if ctx.quantity is None:
        return Violation(code, f"cannot size {_what(ctx)} ({_why_no_value(ctx)}) against the "
                               f"maximum order quantity {_n(limit)}")
    if ctx.quantity > limit:
        est = "" if ctx.intent.quantity is not None else "estimated "
        return Violation(code, f"{est}quantity {_n(ctx.quantity)} {ctx.intent.symbol} exceeds "
                               f"the maximum order quantity {_n(limit)}")
    return None


def check_order_notional(ctx: CheckContext) -> Violation | None:
    """NOTIONAL_EXCEEDS_MAX when the order's value in the base currency is over the limit."""
    limit = ctx.limits.max_order_notional
    if limit is None:
        return None
    code = "NOTIONAL_EXCEEDS_MAX"
    if ctx.notional_base is None:
        return Violation(code, f"{_why_no_value(ctx)} against the maximum order notional "
                               f"{_money(limit, ctx.base_currency)}")
    if ctx.notional_base > limit:
        worth = _money(ctx.notional_base, ctx.base_currency)
        return Violation(code, f"{_what(ctx)} is worth {worth}, over the maximum order "
                               f"notional {_money(limit, ctx.base_currency)}")
    return None


def check_position(ctx: CheckContext) -> Violation | None:
    """POSITION_EXCEEDS_MAX when an order that opens, adds to or flips the position takes it
    over a limit; an order that only brings the position towards flat always passes."""
    max_qty, max_value = ctx.limits.max_position_quantity, ctx.limits.max_position_notional
    if max_qty is None and max_value is None:
        return None
    code = "POSITION_EXCEEDS_MAX"
    if ctx.increases_position is None:
        unknown = (f"the position in {ctx.intent.symbol} on {ctx.account} is unknown"
                   if ctx.position is None else _why_no_value(ctx))
        return Violation(code, f"{unknown}, so {_what(ctx)} cannot be checked against the "
                               f"position limits")
    if not ctx.increases_position or ctx.new_position is None:
        return None
    new = abs(ctx.new_position)
    problems = []
    if max_qty is not None and new > max_qty:
        problems.append(f"|position| would be {_n(new)}, over the maximum {_n(max_qty)}")
    if max_value is not None:
        if ctx.mark is None or ctx.fx_to_base is None:
            problems.append(f"{_why_no_value(ctx)} against the maximum position value "
                            f"{_money(max_value, ctx.base_currency)}")
        else:
            value = new * ctx.mark * ctx.instrument.multiplier * ctx.fx_to_base
            if value > max_value:
                problems.append(f"position value would be {_money(value, ctx.base_currency)}, "
                                f"over the maximum {_money(max_value, ctx.base_currency)}")
    if problems:
        return Violation(code, f"{_what(ctx)}: " + "; ".join(problems))
    return None


def check_gross_exposure(ctx: CheckContext) -> Violation | None:
    """GROSS_EXPOSURE_EXCEEDS_MAX when the order takes gross exposure over the limit.

    The order adds what it grows |position| by (all of its value when the position is unknown);
    an order that does not grow |position| (one that reduces, or flips to a smaller size)
    never trips this check.
    """
    limit = ctx.limits.max_gross_exposure
    if limit is None:
        return None
    code = "GROSS_EXPOSURE_EXCEEDS_MAX"
    if ctx.gross_exposure is None:
        return Violation(code, f"gross exposure is unknown, so {_what(ctx)} cannot be checked "
                               f"against the maximum {_money(limit, ctx.base_currency)}")
    grows = ctx.increases_position
    if grows is False:
        return None
    new, pos, mark, fx = ctx.new_position, ctx.position, ctx.mark, ctx.fx_to_base
    if grows and new is not None and pos is not None and mark is not None and fx is not None:
        added = (abs(new) - abs(pos)) * mark * ctx.instrument.multiplier * fx
    elif ctx.notional_base is not None:
        added = ctx.notional_base
    else:
        return Violation(code, f"{_why_no_value(ctx)} against the maximum gross exposure "
                               f"{_money(limit, ctx.base_currency)}")
    after = ctx.gross_exposure + added
    if added > 0 and after > limit:
        return Violation(code, f"{_what(ctx)} would take gross exposure from "
                               f"{_money(ctx.gross_exposure, ctx.base_currency)} to "
                               f"{_money(after, ctx.base_currency)}, over the maximum "
                               f"{_money(limit, ctx.base_currency)}")
    return None


def check_restricted(ctx: CheckContext) -> Violation | None:
    """RESTRICTED_SYMBOL when the symbol is restricted by the risk configuration."""
    if ctx.limits.restricted:
        return Violation("RESTRICTED_SYMBOL", f"{ctx.intent.symbol} is restricted: no orders "
                                              f"may be placed in it")
    return None


def check_price_collar(ctx: CheckContext) -> Violation | None:
    """PRICE_OUTSIDE_COLLAR when a limit or stop price is further from last than the collar.

    A price exactly at the edge passes. With no reference price a priced order is reported:
    the collar cannot be evaluated.
    """
    pct = ctx.limits.price_collar_pct
    if pct is None:
        return None
    priced = [(name, p) for name, p in (("limit price", ctx.intent.limit_price),
                                        ("stop price", ctx.intent.stop_price)) if p is not None]
    if not priced:
        return None
    code, ref = "PRICE_OUTSIDE_COLLAR", ctx.price
    if ref is None:
        return Violation(code, f"no last price for {ctx.intent.symbol}, so the "
                               f"{priced[0][0]} {_n(priced[0][1])} cannot be checked against "
                               f"the ±{_n(pct)}% collar")
    bad = []
    for name, p in priced:
        off = abs(p - ref) / ref * _HUNDRED
        if off > pct:
            bad.append(f"{name} {_n(p)} is {_n(off.quantize(Decimal('0.01')))}% from last "
                       f"{_n(ref)}")
    if bad:
        return Violation(code, "; ".join(bad) + f", outside the ±{_n(pct)}% collar "
                               f"[{_n(ref * (_HUNDRED - pct) / _HUNDRED)}, "
                               f"{_n(ref * (_HUNDRED + pct) / _HUNDRED)}]")
    return None


def check_rate_limit(ctx: CheckContext) -> Violation | None:
    """RATE_LIMIT_EXCEEDED when the connection's limiter refused, or was not asked."""
    if ctx.within_rate_limit:
        return None
    limit = f" ({ctx.rate_limit})" if ctx.rate_limit else ""
    if ctx.within_rate_limit is None:
        return Violation("RATE_LIMIT_EXCEEDED", f"the rate limit of {ctx.connection}{limit} "
                                                f"was not checked for this order")
    return Violation("RATE_LIMIT_EXCEEDED", f"order rate on {ctx.connection} is at its "
                                            f"limit{limit}; try again shortly")


def check_buying_power(ctx: CheckContext) -> Violation | None:
    """INSUFFICIENT_BUYING_POWER when a buy, or a margin sale opening a short, costs too much.

    Sales in a cash account never need buying power: shorting there is a short-sale violation.
    What an order needs: a future, and an option sale opening a short, their initial margin
    (`ctx.margin_required`, the connection's own what-if, else the cited rule in
    `brokerkit.venues.margin`: 15% of a future's notional, FINRA 4210(f)(2)(D)(i) for an
    uncovered option), never a future's notional; a future reducing its position needs
    nothing. Other buys need their value, a stock short its value.
    """
    found = buying_power_need(ctx)
    if found is None or isinstance(found, Violation):
        return found
    needed, what = found
    code = "INSUFFICIENT_BUYING_POWER"
    if ctx.buying_power is None:
        return Violation(code, f"buying power on {ctx.account} is unknown; {what} needs "
                               f"{_money(needed, ctx.currency)}")
    if needed > ctx.buying_power:
        return Violation(code, f"{what} needs {_money(needed, ctx.currency)}; buying power on "
                               f"{ctx.account} is {_money(ctx.buying_power, ctx.currency)}")
    return None


def buying_power_need(ctx: CheckContext) -> tuple[Decimal, str] | Violation | None:
    """(what the order takes from buying power, its wording) as `check_buying_power` reads
    it; None when it takes nothing; the violation when it cannot be worked out."""
    code, side = "INSUFFICIENT_BUYING_POWER", ctx.intent.side
    if ctx.asset_class is AssetClass.FUTURE:
        return _future_margin(ctx)
    if side is Side.SELL:
        if ctx.account_type == "cash":
            return None
        shorted = ctx.short_increase
        if shorted is None:
            return Violation(code, f"the position in {ctx.intent.symbol} on {ctx.account} is "
                                   f"unknown, so {_what(ctx)} may open a short that needs "
                                   f"buying power")
        if shorted == 0:
            return None
        if ctx.exec_price is None:
            return Violation(code, f"{_why_no_value(ctx)} against buying power")
        what = f"shorting {_n(shorted)} {ctx.intent.symbol}"
        if ctx.asset_class is AssetClass.OPTION:
            found = _short_option_margin(ctx, shorted)
            if isinstance(found, Violation):
                return found
            needed, what = found, f"{what} (initial margin)"
        else:
            needed = shorted * ctx.exec_price * ctx.instrument.multiplier
        return needed, what
    if ctx.notional is None:
        return Violation(code, f"{_why_no_value(ctx)} against buying power")
    return ctx.notional, _what(ctx)


def _future_margin(ctx: CheckContext) -> tuple[Decimal, str] | Violation | None:
    """(initial margin, wording) a futures order needs; None when it needs none."""
    if ctx.margin_required is not None:
        if ctx.margin_required <= 0:
            return None  # the broker's own preview: the order frees margin or needs none
        return ctx.margin_required, f"{_what(ctx)} (initial margin, the broker's what-if)"
    if ctx.increases_position is False:
        return None
    if ctx.notional is None:
        return Violation("INSUFFICIENT_BUYING_POWER",
                         f"{_why_no_value(ctx)} against buying power")
    return (margin_rules.future_initial_fallback(ctx.notional),
            f"{_what(ctx)} (initial margin, 15% of notional without the broker's what-if)")


def _short_option_margin(ctx: CheckContext, shorted: Decimal) -> Decimal | Violation:
    """The initial margin of `shorted` uncovered options: the what-if, else FINRA's rule."""
    if ctx.margin_required is not None:
        return max(ctx.margin_required, _ZERO)
    symbol = ctx.intent.symbol
    try:
        terms = Instrument.parse_key(symbol if symbol.startswith("OPT:") else f"OPT:{symbol}")
    except ValueError:
        return Violation("INSUFFICIENT_BUYING_POWER",
                         f"the strike and right of {symbol} are unknown (not an OCC symbol), "
                         f"so the margin of {_what(ctx)} cannot be worked out")
    assert ctx.exec_price is not None and terms.strike is not None
    return margin_rules.short_option_initial(shorted, ctx.exec_price, terms.strike,
                                             terms.right, ctx.instrument.multiplier)


def check_fractional(ctx: CheckContext) -> Violation | None:
    """NOT_FRACTIONABLE for a fractional or notional order on an instrument that is not
    fractionable (or not known to be), or a quantity under the instrument's minimum."""
    facts, q = ctx.instrument, ctx.quantity
    problems = []
    fractional = ctx.intent.notional is not None or (q is not None and q % 1 != 0)
    if fractional and facts.fractionable is not True:
        kind = f"quantity {_n(q)}" if ctx.intent.notional is None and q is not None \
            else "a notional order"
        state = "is not fractionable" if facts.fractionable is False \
            else "is not known to be fractionable"
        problems.append(f"{kind} needs fractional shares, and {ctx.intent.symbol} {state}")
    minimum = facts.min_quantity
    if minimum is not None:
        if q is None:
            problems.append(f"cannot size {_what(ctx)} ({_why_no_value(ctx)}) against the "
                            f"minimum quantity {_n(minimum)}")
        elif q < minimum:
            problems.append(f"quantity {_n(q)} is under the minimum {_n(minimum)}")
    if problems:
        return Violation("NOT_FRACTIONABLE", "; ".join(problems))
    return None


def check_tradable(ctx: CheckContext) -> Violation | None:
    """NOT_TRADABLE when the instrument is not (or not known to be) tradable."""
    tradable = ctx.instrument.tradable
    if tradable:
        return None
    state = "is not tradable" if tradable is False else "is not known to be tradable"
    return Violation("NOT_TRADABLE", f"{ctx.intent.symbol} {state} on {ctx.connection}")


def check_market_hours(ctx: CheckContext) -> Violation | None:
    """MARKET_CLOSED when an order that must execute at once (IOC, FOK) meets a closed market,
    or one whose hours are unknown.

    `market_open` is the regular session. An order outside it is not refused when its broker
    keeps it: day and GTC orders are queued for the next session, or execute in the extended
    session when `extended_hours` is set; OPG and CLS orders are made for the auctions. The
    broker's own rules for extended-hours orders (e.g. Alpaca: limit, day) are the adapter's
    `check_intent`.
    """
    intent = ctx.intent
    if ctx.market_open or intent.time_in_force in QUEUED_WHEN_CLOSED:
        return None
    state = "is closed" if ctx.market_open is False else "has unknown hours"
    session = " (its extended session may be open; only day and gtc orders wait for it)" \
        if intent.extended_hours else ""
    return Violation("MARKET_CLOSED", f"the market for {intent.symbol} ({ctx.asset_class.value}) "
                                      f"{state}{session}, and a {intent.time_in_force.value} "
                                      f"order must execute at once")


def check_short_sale(ctx: CheckContext) -> Violation | None:
    """SHORT_SALE_NOT_ALLOWED when a sale opens or adds to a short it may not.

    A short needs a margin account, a shortable instrument and `allow_short`; a sale that may
    open a short (position unknown) is reported unless all three are known to hold.
    """
    if ctx.intent.side is Side.BUY:
        return None
    shorted = ctx.short_increase
    if shorted == 0:
        return None
    reasons = []
    if ctx.account_type != "margin":
        reasons.append(f"{ctx.account} is a cash account" if ctx.account_type == "cash"
                       else f"the type of account {ctx.account} is unknown")
    if ctx.instrument.shortable is not True:
        reasons.append(f"{ctx.intent.symbol} is not shortable" if ctx.instrument.shortable
                       is False else f"{ctx.intent.symbol} is not known to be shortable")
    if not ctx.limits.allow_short:
        reasons.append("allow_short is false")
    fractional = ctx.intent.notional is not None or (
        ctx.quantity is not None and ctx.quantity % 1 != 0)
    if fractional and ctx.asset_class in (AssetClass.EQUITY, AssetClass.ETF):
        # source: Alpaca, https://alpaca.markets/support/what-is-fractional-trading ("We only
        # support long fractional trading positions; short selling fractional shares is not
        # supported"); brokers lend whole shares only
        reasons.append("fractional shares cannot be sold short")
    if not reasons:
        return None
    if shorted is None:
        head = (f"the position in {ctx.intent.symbol} on {ctx.account} is unknown, so "
                f"{_what(ctx)} may open a short")
    else:
        head = f"{_what(ctx)} would short {_n(shorted)}"
    return Violation("SHORT_SALE_NOT_ALLOWED", f"{head}, but " + " and ".join(reasons))


def check_duplicate(ctx: CheckContext) -> Violation | None:
    """DUPLICATE_INTENT when an identical intent (as `intent_fingerprint` sees it: time in
    force and extended hours included) was sent within the duplicate window."""
    window = ctx.limits.duplicate_window_seconds
    if not window or ctx.duplicate is False:
        return None
    if ctx.duplicate is None:
        return Violation("DUPLICATE_INTENT", "the duplicate check was not run for this order")
    return Violation("DUPLICATE_INTENT", f"an identical order ({_what(ctx)} on {ctx.account}) "
                                         f"was sent within the last {window:g} s")


CheckFn = Callable[[CheckContext], Violation | None]

#: Every check, in the order their violations are reported.
CHECKS: Final[tuple[CheckFn, ...]] = (
    check_trading_state, check_reduce_only, check_restricted, check_tradable,
    check_market_hours, check_short_sale, check_order_quantity, check_order_notional,
    check_position, check_gross_exposure, check_price_collar, check_buying_power,
    check_fractional, check_rate_limit, check_duplicate,
)

#: The stable violation codes the checks emit.
CODES: Final = frozenset({
    "TRADING_HALTED", "REDUCE_ONLY_WOULD_INCREASE_POSITION", "QUANTITY_EXCEEDS_MAX",
    "NOTIONAL_EXCEEDS_MAX", "POSITION_EXCEEDS_MAX", "GROSS_EXPOSURE_EXCEEDS_MAX",
    "RESTRICTED_SYMBOL", "PRICE_OUTSIDE_COLLAR", "RATE_LIMIT_EXCEEDED",
    "INSUFFICIENT_BUYING_POWER", "NOT_FRACTIONABLE", "NOT_TRADABLE", "MARKET_CLOSED",
    "SHORT_SALE_NOT_ALLOWED", "DUPLICATE_INTENT",
})


def run_checks(ctx: CheckContext) -> list[Violation]:
    """Every violation the order trips, in `CHECKS` order; empty when it may be sent."""
    return [v for check in CHECKS if (v := check(ctx)) is not None]


# --------------------------------------------------------------------------------------------
# Duplicate intents


def _key_part(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


def intent_fingerprint(intent: OrderIntent, connection: str | None, account: str | None) -> str:
    """A hex digest equal for intents that would place the same order on the same account.

    It covers connection, account, symbol, side, quantity or notional, order type, prices,
    time in force and extended hours (a day order and a GTC order, or a regular-hours and an
    extended-hours order, are different orders); not the client order id (a resend with a
    fresh id is exactly what it must catch), and `10` equals `10.0`.
    """
    parts = (connection, account, intent.symbol, intent.side.value, intent.quantity,
             intent.notional, intent.order_type.value, intent.limit_price, intent.stop_price,
             intent.trail_price, intent.trail_percent, intent.time_in_force.value,
             "ext" if intent.extended_hours else "")
    text = "\x1f".join(_key_part(p) for p in parts)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class DuplicateDetector:
    """Remembers fingerprints of sent intents for `window_seconds` (thread-safe).

    The pipeline asks `seen(fp)` before the checks and calls `remember(fp)` once the order is
    journaled, so a rejected order can be corrected and sent again at once.
    """

    def __init__(self, window_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if window_seconds < 0:
            raise ValueError(f"window_seconds must be >= 0, got {window_seconds!r}")
        self.window = float(window_seconds)
        self._clock = clock
        self._sent: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def seen(self, fingerprint: str) -> bool:
        """True when `fingerprint` was remembered less than `window_seconds` ago."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            return fingerprint in self._sent

    def remember(self, fingerprint: str) -> None:
        """Record that the intent behind `fingerprint` was sent now."""
        if not self.window:
            return
        with self._lock:
            now = self._clock()
            self._sent[fingerprint] = now
            self._sent.move_to_end(fingerprint)
            self._expire(now)

    def _expire(self, now: float) -> None:
        sent = self._sent
        while sent:
            fp, at = next(iter(sent.items()))
            if now - at < self.window:
                break
            del sent[fp]
