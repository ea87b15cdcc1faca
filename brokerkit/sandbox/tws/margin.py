"""The gateway's margin model: initial and maintenance requirements per position, in the
position's currency, IB-like and simple.

- STK: Reg T initial (50% of |market value|) and FINRA 4210(c) maintenance (25% long; short
  the greater of 30% and $5.00 a share, below $5.00 the greater of 100% and $2.50 a share),
  both from `brokerkit.venues.margin`.
- OPT long: the premium (no loan value) for both; OPT short: premium plus
  `option_short_pct` (20%) of the underlying's notional.
- FUT: `future_init` (6%) and `future_maint` (5%) of |notional|.
- CASH (forex positions): none; the currency balances carry the value.

`BuyingPower` is `buying_power_multiple` (4, IB's intraday margin) x available funds.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ...venues.margin import stock_initial, stock_maintenance

__all__ = ["MarginModel"]


@dataclass(frozen=True)
class MarginModel:
    """Rates of the margin model (fractions of market value or notional)."""

    option_short_pct: float = 0.2
    future_init: float = 0.06
    future_maint: float = 0.05
    buying_power_multiple: float = 4.0

    def requirement(self, sec_type: str, qty: float, price: float, multiplier: float,
                    underlying_price: float = 0.0) -> tuple[float, float]:
        """(initial, maintenance) for `qty` at `price`, in the contract's currency."""
        value = abs(qty * price * multiplier)
        if sec_type == "STK":
            q, p = Decimal(str(qty)), Decimal(str(price))
            return float(stock_initial(q, p)), float(stock_maintenance(q, p))
        if sec_type == "OPT":
            if qty >= 0:
                return value, value
            extra = abs(qty) * underlying_price * multiplier * self.option_short_pct
            return value + extra, value + extra
        if sec_type == "FUT":
            return value * self.future_init, value * self.future_maint
        return 0.0, 0.0
