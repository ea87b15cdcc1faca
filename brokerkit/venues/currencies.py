"""Currency codes: the ISO 4217 list brokerkit accepts, and the currency each exchange trades
its shares in.

The one place a currency code is checked (`OrderIntent.currency`, `base_currency` in
settings, account profiles, routing's `EUR.USD` inference); read through `is_currency`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["CURRENCIES", "EXCHANGE_CURRENCIES", "ISO_4217", "MARKET_CODES", "is_currency"]

#: ISO 4217 alphabetic codes in use (List One), funds and precious metals included; the test
#: code XTS and XXX ("no currency") are left out: no order or account is in them.
# source: ISO 4217 List One, published by its maintenance agency SIX
# (https://www.six-group.com/en/products-services/financial-information/data-standards.html,
# "Current currency & funds code list")
ISO_4217 = frozenset({
    "AED", "AFN", "ALL", "AMD", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN",
    "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUP", "CVE", "CZK",
    "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS",
    "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD",
    "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD",
    "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT",
    "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK",
    "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD",
    "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP",
    "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS",
    "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES", "VND", "VUV", "WST",
    "XAF", "XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XCD", "XCG", "XDR", "XOF", "XPD", "XPF",
    "XPT", "XSU", "XUA", "YER", "ZAR", "ZMW", "ZWG",
})
#: Codes the FX market uses that ISO 4217 does not list: CNH, offshore renminbi.
# source: ISO 4217 lists only CNY; the offshore renminbi trades as CNH (e.g. IDEALPRO's
# USD.CNH, https://www.interactivebrokers.com/en/trading/products-exchanges.php)
MARKET_CODES = frozenset({"CNH"})
CURRENCIES = ISO_4217 | MARKET_CODES


def is_currency(code: object) -> bool:
    """True for an ISO 4217 code (upper case) or a market code such as CNH."""
    return isinstance(code, str) and code in CURRENCIES


#: The currency each exchange trades its shares (and futures) in, by brokerkit's exchange
#: names (those of `venues.hours`). LSE quotes many shares in pence (GBX), a GBP sub-unit.
# source: each exchange's listing currency as Interactive Brokers lists it per exchange
# (https://www.interactivebrokers.com/en/trading/products-exchanges.php, "Currency" column)
EXCHANGE_CURRENCIES: Mapping[str, str] = MappingProxyType({
    "NYSE": "USD", "NASDAQ": "USD", "ARCA": "USD", "CBOE": "USD", "CME": "USD",
    "XETRA": "EUR", "FWB": "EUR", "SBF": "EUR", "AEB": "EUR", "LSE": "GBP", "TSE": "JPY",
    "SEHK": "HKD", "TSX": "CAD", "EBS": "CHF", "ASX": "AUD",
})
