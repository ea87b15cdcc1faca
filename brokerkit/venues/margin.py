"""US margin rules as data: Regulation T initial margin, FINRA Rule 4210 maintenance margin,
the uncovered short option requirement, and the stand-in rule for a future's initial margin
when the connection has no margin preview (what-if) of its own.

Every figure is a regulatory minimum (brokers may ask more, never less), in the position's
currency, as a positive amount; quantities are signed (negative = short). Readers: the
sandbox broker (its margin accounts) and the buying-power check (`execution.risk`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

__all__ = [
    "FUTURE_FALLBACK_INITIAL",
    "LONG_MAINTENANCE",
    "REG_T_INITIAL",
    "SHORT_MAINTENANCE",
    "SHORT_MAINTENANCE_LOW_PRICE",
    "SHORT_MIN_PER_SHARE",
    "SHORT_MIN_PER_SHARE_LOW_PRICE",
    "SHORT_OPTION_MIN_PCT",
    "SHORT_OPTION_UNDERLYING_PCT",
    "SHORT_PRICE_THRESHOLD",
    "future_initial_fallback",
    "short_option_initial",
    "stock_initial",
    "stock_maintenance",
]

# Regulation T, 12 CFR 220.12(a): a margin equity security long needs 50% of its current
# market value; 220.12(c)(1): a short sale 150% of its market value, i.e. the proceeds
# plus 50%. source: https://www.ecfr.gov/current/title-12/chapter-II/subchapter-A/part-220/section-220.12
REG_T_INITIAL: Final = Decimal("0.50")

# FINRA Rule 4210(c) maintenance margin. source:
# https://www.finra.org/rules-guidance/rulebooks/finra-rules/4210
# (c)(1): 25% of the current market value of margin securities held long.
LONG_MAINTENANCE: Final = Decimal("0.25")
# (c)(3): each stock short selling at $5.00 or above: $5.00 per share or 30% of its current
# market value, whichever is greater.
SHORT_PRICE_THRESHOLD: Final = Decimal("5.00")
SHORT_MAINTENANCE: Final = Decimal("0.30")
SHORT_MIN_PER_SHARE: Final = Decimal("5.00")
# (c)(2): each stock short selling under $5.00: $2.50 per share or 100% of its current
# market value, whichever is greater.
SHORT_MAINTENANCE_LOW_PRICE: Final = Decimal("1.00")
SHORT_MIN_PER_SHARE_LOW_PRICE: Final = Decimal("2.50")

# FINRA Rule 4210(f)(2)(D)(i): a listed equity option carried short (uncovered) needs 100% of
# its current market value plus 20% of the underlying's market value less any out-of-the-money
# amount, with a minimum of the option's value plus 10% of the underlying's value (calls) or
# of the exercise price (puts). source: https://www.finra.org/rules-guidance/rulebooks/finra-rules/4210
SHORT_OPTION_UNDERLYING_PCT: Final = Decimal("0.20")
SHORT_OPTION_MIN_PCT: Final = Decimal("0.10")

# A future's initial margin when the connection cannot say (no what-if): 15% of notional,
# the joint CFTC/SEC minimum for security futures, 17 CFR 41.45(b)(1) and 17 CFR 242.403(b)(1)
# ("fifteen (15) percent of the current market value"). source:
# https://www.ecfr.gov/current/title-17/chapter-I/part-41/subpart-E/section-41.45
# Exchanges set each future's own performance bond (CME: "vary by product and market
# volatility", https://www.cmegroup.com/solutions/risk-management/performance-bonds-margins/faq-performance-bonds-margins.html);
# 15% is well above CME's equity index bonds (ES: about 6% of notional) and never the full
# notional, which a future never pays.
FUTURE_FALLBACK_INITIAL: Final = Decimal("0.15")

_ZERO = Decimal(0)


def stock_initial(quantity: Decimal, price: Decimal) -> Decimal:
    """Reg T initial margin of a stock position, long or short: 50% of |market value|
    (12 CFR 220.12(a), (c)(1): the short's proceeds are held besides)."""
    return abs(quantity * price) * REG_T_INITIAL


def stock_maintenance(quantity: Decimal, price: Decimal) -> Decimal:
    """FINRA 4210(c) maintenance margin of a stock position: 25% of the value held long;
    short, the greater of 30% of the value and $5.00 a share at $5.00 or above, the greater
    of 100% of the value and $2.50 a share below."""
    value = abs(quantity * price)
    if quantity >= 0:
        return value * LONG_MAINTENANCE
    shares = abs(quantity)
    if price >= SHORT_PRICE_THRESHOLD:
        return max(value * SHORT_MAINTENANCE, shares * SHORT_MIN_PER_SHARE)
    return max(value * SHORT_MAINTENANCE_LOW_PRICE, shares * SHORT_MIN_PER_SHARE_LOW_PRICE)


def short_option_initial(contracts: Decimal, premium: Decimal, strike: Decimal, right: str,
                         multiplier: Decimal, underlying: Decimal | None = None) -> Decimal:
    """FINRA 4210(f)(2)(D)(i) margin of `contracts` uncovered short equity options at
    `premium` (per share) with `strike` and `right` ('C' or 'P').

    Without the underlying's price, the largest requirement any underlying price consistent
    with the premium gives: a put's is greatest with the underlying at the strike (20% of
    the strike); a call's premium is at least its intrinsic value, so the underlying is at
    most strike + premium."""
    kind = right.upper()[:1]
    if kind not in ("C", "P"):
        raise ValueError(f"option right must be 'C' or 'P', got {right!r}")
    shares = abs(contracts) * multiplier
    if underlying is None:
        bound = strike + premium if kind == "C" else strike
        return shares * (premium + bound * SHORT_OPTION_UNDERLYING_PCT)
    otm = max(_ZERO, strike - underlying) if kind == "C" else max(_ZERO, underlying - strike)
    minimum = (underlying if kind == "C" else strike) * SHORT_OPTION_MIN_PCT
    return shares * (premium + max(underlying * SHORT_OPTION_UNDERLYING_PCT - otm, minimum))


def future_initial_fallback(notional: Decimal) -> Decimal:
    """The stand-in initial margin of a future (15% of |notional|) when the connection has
    no what-if of its own: see FUTURE_FALLBACK_INITIAL."""
    return abs(notional) * FUTURE_FALLBACK_INITIAL
