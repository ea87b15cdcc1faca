"""How venues spell one US share class, and the one spelling brokerkit's keys use.

A class of shares is its root and a one-letter class suffix; each venue joins them its own way
(Berkshire Hathaway class B, CUSIP 084670207):

==========================  =========  ======================================================
convention                  spelling   source
==========================  =========  ======================================================
NASDAQ integrated platform  `BRK.B`    nasdaqtrader.com Ticker Symbol Convention (INET, ITCH)
(and brokerkit's keys)                 http://www.nasdaqtrader.com/Trader.aspx?id=CQSSymbolConvention
Alpaca                      `BRK.B`    UNVERIFIED: no Alpaca page stating it was found; the
                                       sandbox and the adapter tests use `BRK.A`
CQS (SIAC)                  `BRK/B`    nasdaqtrader.com Ticker Symbol Convention, "CQS Suffix"
                                       (Lime's CQS page writes `BRK.B`: sources disagree)
Bloomberg                   `BRK/B`    IBKR Knowledge Base, "symbol conventions for denoting
                                       Berkshire Hathaway Class B shares" (ibkr.info)
CMS (NYSE), IBKR            `BRK B`    nasdaqtrader.com: "The CMS convention has a space between
                                       the root and the suffix"; IBKR Knowledge Base: "BRK, then
                                       a space and then B (BRK B)"
Yahoo Finance               `BRK-B`    IBKR Knowledge Base: "Yahoo Finance which uses BRK-B"
==========================  =========  ======================================================

`share_class_symbol` maps every spelling above to the NASDAQ form, and `instrument_key` applies
it to the symbol of an equity key (`STK:BRK B` -> `STK:BRK.B`, `STK:BT A@LSE` -> `STK:BT.A@LSE`),
leaving every other key as it is (`CASH:EUR.USD`, `CRYPTO:BTC/USD`, OCC option keys).

Only a single-letter class suffix is read as a class: `BAC PRL` (a CMS preferred), `OXY WS`
(warrants) and CQS's lower-case preferred `BACpL` are left alone, since their venues disagree
on more than the separator. One ambiguity is accepted: NASDAQ writes a preferred as root-dash-
series (`BAC-L`), which this reads as Yahoo's class spelling (`BAC.L`); Yahoo itself writes
that preferred `BAC-PL`.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["CLASS_SEPARATORS", "instrument_key", "share_class_symbol"]

#: Separators between root and class letter, by convention (see the module's table).
CLASS_SEPARATORS = {".": "NASDAQ integrated platform, Alpaca", "/": "CQS, Bloomberg",
                    " ": "CMS (NYSE), IBKR", "-": "Yahoo Finance"}
_CLASS = re.compile(r"([A-Z][A-Z0-9]{0,5})(?:[./-]|\s+)([A-Z])")
#: Key prefixes whose symbol may carry a share class (model.AssetClass key prefixes).
_EQUITY_PREFIXES = ("STK:", "FUND:")


def share_class_symbol(symbol: str) -> str:
    """`symbol` in the NASDAQ spelling of a share class (`BRK B`, `BRK/B`, `BRK-B` ->
    `BRK.B`); any other symbol comes back as given, trimmed. Raises TypeError on a non-string."""
    if not isinstance(symbol, str):
        raise TypeError(f"a symbol must be a string, got {symbol!r}")
    text = symbol.strip()
    m = _CLASS.fullmatch(text)
    return f"{m.group(1)}.{m.group(2)}" if m else text


@lru_cache(maxsize=65536)
def instrument_key(key: str) -> str:
    """A canonical instrument key with its share class spelled one way: the symbol of an
    equity or fund key (before any `@exchange`) through `share_class_symbol`; other keys as
    given. Reconciliation joins book and brokers on this."""
    if not isinstance(key, str):
        raise TypeError(f"an instrument key must be a string, got {key!r}")
    for prefix in _EQUITY_PREFIXES:
        if key.startswith(prefix):
            symbol, at, exchange = key[len(prefix):].partition("@")
            return f"{prefix}{share_class_symbol(symbol)}{at}{exchange}"
    return key
