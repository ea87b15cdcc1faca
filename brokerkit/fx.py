"""Currency conversion for consolidated views.

`FxRates` answers `rate(from_ccy, to_ccy)` from quoted pairs (`EURUSD = 1.08` means one EUR is
1.08 USD): directly, inverted, or across a pivot currency (USD). Rates come from configuration
(`[fx.rates]`) first, then from a live source such as the sandbox market or a broker's FX quotes.
A currency with no rate is an error naming it, never a silent 1.0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import pandas as pd

from .errors import BrokerkitError

__all__ = ["FxRates", "MissingRate"]

RateSource = Callable[[str, str], float | None]


class MissingRate(BrokerkitError, LookupError):
    """No rate is known between two currencies."""

    def __init__(self, from_ccy: str, to_ccy: str) -> None:
        self.from_ccy, self.to_ccy = from_ccy, to_ccy
        super().__init__(f"no FX rate from {from_ccy} to {to_ccy}; add {from_ccy}{to_ccy} "
                         f"under [fx.rates] in brokerkit.toml")


class FxRates:
    """Conversion rates between currencies, with a pivot for crosses."""

    def __init__(self, pairs: Mapping[str, float] | None = None,
                 source: RateSource | None = None, pivot: str = "USD") -> None:
        self._pairs: dict[tuple[str, str], float] = {}
        for pair, rate in (pairs or {}).items():  # "EURUSD", or "USDT/USD" for longer codes
            a, b = pair.split("/", 1) if "/" in pair else (pair[:3], pair[3:])
            self._pairs[(a.upper(), b.upper())] = float(rate)
        self._source = source
        self._pivot = pivot

    def _direct(self, a: str, b: str) -> float | None:
        if a == b:
            return 1.0
        if (a, b) in self._pairs:
            return self._pairs[(a, b)]
        if (b, a) in self._pairs:
            return 1.0 / self._pairs[(b, a)]
        if self._source is not None:
            rate = self._source(a, b)
            if rate is not None and rate > 0:
                self._pairs[(a, b)] = float(rate)
                return float(rate)
        return None

    def rate(self, from_ccy: str, to_ccy: str) -> float:
        """Units of `to_ccy` for one unit of `from_ccy`."""
        a, b = from_ccy.upper(), to_ccy.upper()
        direct = self._direct(a, b)
        if direct is not None:
            return direct
        p = self._pivot
        if p not in (a, b):
            leg1, leg2 = self._direct(a, p), self._direct(p, b)
            if leg1 is not None and leg2 is not None:
                return leg1 * leg2
        raise MissingRate(a, b)

    def convert(self, amount: float, from_ccy: str, to_ccy: str) -> float:
        return amount * self.rate(from_ccy, to_ccy)

    def rates_to(self, currencies: Iterable[str], to_ccy: str) -> dict[str, float]:
        """One rate per distinct currency, for converting whole columns at once."""
        return {c: self.rate(c, to_ccy) for c in set(currencies) if isinstance(c, str)}

    def to_base(self, amounts: pd.Series, currencies: pd.Series, base: str) -> pd.Series:
        """Convert a column of amounts in mixed currencies into `base`, vectorized."""
        rates = self.rates_to(currencies.dropna().unique(), base)
        return amounts * currencies.map(rates).astype("float64")
