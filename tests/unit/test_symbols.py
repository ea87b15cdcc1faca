"""One spelling of a share class (brokerkit.venues.symbols)."""

from __future__ import annotations

import pytest

from brokerkit.venues.symbols import instrument_key, share_class_symbol


@pytest.mark.parametrize(("spelling", "convention"), [
    ("BRK.B", "NASDAQ integrated platform"), ("BRK/B", "CQS and Bloomberg"),
    ("BRK B", "CMS (NYSE) and IBKR"), ("BRK-B", "Yahoo Finance")])
def test_every_venue_spelling_of_berkshire_class_b_is_brk_dot_b(spelling, convention):
    """Sources: nasdaqtrader.com "Ticker Symbol Convention"
    (http://www.nasdaqtrader.com/Trader.aspx?id=CQSSymbolConvention); IBKR Knowledge Base:
    "BRK, then a space and then B (BRK B) ... Bloomberg ... BRK/B and Yahoo Finance ...
    BRK-B"."""
    assert share_class_symbol(spelling) == "BRK.B", convention


@pytest.mark.parametrize("symbol", ["AAPL", "BAC PRL", "OXY WS", "BACpL", "VOD"])
def test_symbols_that_are_not_a_single_letter_class_are_left_alone(symbol):
    assert share_class_symbol(symbol) == symbol


@pytest.mark.parametrize(("key", "expected"), [
    ("STK:BRK B", "STK:BRK.B"), ("STK:BT/A@LSE", "STK:BT.A@LSE"), ("STK:AAPL", "STK:AAPL"),
    ("CASH:EUR.USD", "CASH:EUR.USD"), ("CRYPTO:BTC/USD", "CRYPTO:BTC/USD"),
    ("OPT:AAPL  261218C00150000", "OPT:AAPL  261218C00150000"), ("FUT:ESZ6", "FUT:ESZ6")])
def test_only_equity_keys_have_their_share_class_respelled(key, expected):
    assert instrument_key(key) == expected


def test_a_symbol_that_is_not_text_is_an_error_naming_it():
    with pytest.raises(TypeError, match="None"):
        share_class_symbol(None)  # type: ignore[arg-type]
