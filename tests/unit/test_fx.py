from __future__ import annotations

import pandas as pd
import pytest

from brokerkit.fx import FxRates, MissingRate


def test_direct_inverse_and_cross_rates():
    fx = FxRates({"EURUSD": 1.10, "USDJPY": 150.0})
    assert fx.rate("EUR", "USD") == pytest.approx(1.10)
    assert fx.rate("USD", "EUR") == pytest.approx(1 / 1.10)
    assert fx.rate("EUR", "JPY") == pytest.approx(165.0)
    assert fx.rate("GBP", "GBP") == 1.0


def test_missing_rate_names_both_currencies():
    with pytest.raises(MissingRate, match="no FX rate from CHF to USD"):
        FxRates({}).rate("CHF", "USD")


def test_source_fills_gaps_and_column_conversion_is_vectorised():
    fx = FxRates({}, source=lambda a, b: 1.25 if (a, b) == ("GBP", "USD") else None)
    out = fx.to_base(pd.Series([100.0, 10.0]), pd.Series(["GBP", "USD"]), "USD")
    assert out.tolist() == [125.0, 10.0]
