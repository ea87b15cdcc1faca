"""Settlement cycles per market, with their history: how many business days after the trade
date cash and securities change hands, and on which exchange calendars those days are counted.

Read by `post_trade.settlement` (the one mechanism that turns these into settle dates). A
`Rule` carries its `cycles` oldest first; a trade takes the cycle in force on its trade date.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType

__all__ = [
    "CANADA",
    "CURRENCY_CALENDARS",
    "CURRENCY_RULES",
    "EXCHANGE_RULES",
    "FX_SPOT_LAG",
    "FX_T1",
    "HONG_KONG",
    "JAPAN",
    "SAME_DAY",
    "SAME_DAY_CLASSES",
    "SECURITIES",
    "UK",
    "US",
    "Rule",
]


@dataclass(frozen=True, slots=True)
class Rule:
    """Settle T+lag business days on `calendars` (all open; () = calendar days).

    `cycles` is the history as (first trade date, lag) pairs, oldest first; the first pair's
    date is None (since always)."""

    name: str
    cycles: tuple[tuple[date | None, int], ...]
    calendars: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.cycles or self.cycles[0][0] is not None:
            raise ValueError(f"{self.name}: cycles must start with (None, lag)")
        starts = [d for d, _ in self.cycles[1:]]
        if any(d is None for d in starts) or starts != sorted(starts):  # type: ignore[type-var]
            raise ValueError(f"{self.name}: cycle start dates must be given, in order")

    @property
    def lag(self) -> int:
        """The cycle in force today."""
        return self.cycles[-1][1]

    @property
    def since(self) -> date | None:
        """The first trade date of today's cycle (None: always)."""
        return self.cycles[-1][0]

    @property
    def lag_before(self) -> int | None:
        """The cycle just before today's (None: no change recorded)."""
        return self.cycles[-2][1] if len(self.cycles) > 1 else None

    def lag_on(self, trade_date: date) -> int:
        """The cycle for a trade dated `trade_date`."""
        lag = self.cycles[0][1]
        for start, n in self.cycles[1:]:
            if start is not None and trade_date >= start:
                lag = n
        return lag


def _t(name: str, lag: int, *calendars: str) -> Rule:
    return Rule(name, ((None, lag),), calendars)


# source: SEC Rule 15c6-1(a) (17 CFR 240.15c6-1): T+3 from 1995; amended to T+2, compliance
# date 2017-09-05 (Release 34-80295, 82 FR 15564); amended to T+1, compliance date 2024-05-28
# (Release 34-96930). Counted on NYSE sessions (XNYS).
US = Rule("US T+1", ((None, 3), (date(2017, 9, 5), 2), (date(2024, 5, 28), 1)), ("XNYS",))
# source: Canada moved with the US to T+2 on 2017-09-05 (the Canadian Capital Markets
# Association's coordinated T+2 transition) and to T+1 on 2024-05-27, one day before the US
# (CSA amendments to NI 24-101, in force 2024-05-27; osc.ca news "CSA announces adoption of
# amendments to National Instrument 24-101"). Counted on TSX sessions (XTSE).
CANADA = Rule("Canada T+1", ((None, 3), (date(2017, 9, 5), 2), (date(2024, 5, 27), 1)),
              ("XTSE",))
# source: EU CSDR (Regulation (EU) No 909/2014) Art. 5(2): at most T+2 for trades on trading
# venues, applied from 2014-10-06; the UK kept it (UK CSDR). Not modelled before then.
XETRA = _t("Xetra T+2", 2, "XETR")
FRANKFURT = _t("Frankfurt T+2", 2, "XFRA")
PARIS = _t("Paris T+2", 2, "XPAR")
AMSTERDAM = _t("Amsterdam T+2", 2, "XAMS")
UK = _t("UK T+2", 2, "XLON")
# source: Japan Exchange Group (JSCC clearing), exchange trades in stocks settle T+2
# (https://www.jpx.co.jp/english/)
JAPAN = _t("Japan T+2", 2, "XTKS")
# source: HKEX, CCASS settles exchange trades T+2 (HKSCC General Rules, Continuous Net
# Settlement; https://www.hkex.com.hk/)
HONG_KONG = _t("Hong Kong T+2", 2, "XHKG")
# source: crypto exchanges settle a trade into the account at once; futures are marked to
# market daily (variation margin), the traded notional is never exchanged
SAME_DAY = _t("T+0", 0)

#: Equity exchanges (as in instrument keys `STK:SAP@XETRA`, IB's and MIC names) and their rules.
EXCHANGE_RULES: Mapping[str, Rule] = MappingProxyType({
    "XETRA": XETRA, "XETR": XETRA, "FWB": FRANKFURT, "XFRA": FRANKFURT,
    "XPAR": PARIS, "SBF": PARIS, "XAMS": AMSTERDAM, "AEB": AMSTERDAM,
    "LSE": UK, "XLON": UK, "TSE": JAPAN, "XTKS": JAPAN, "SEHK": HONG_KONG, "XHKG": HONG_KONG,
    "TSX": CANADA, "XTSE": CANADA,
})
#: Equities without an exchange in their key, by currency.
CURRENCY_RULES: Mapping[str, Rule] = MappingProxyType({
    "USD": US, "CAD": CANADA, "GBP": UK, "JPY": JAPAN, "HKD": HONG_KONG, "EUR": XETRA,
})
#: Asset classes settled like their market's equities; crypto and futures are T+0.
SECURITIES = frozenset({"equity", "etf", "option", "bond", "fund"})
SAME_DAY_CLASSES = frozenset({"crypto", "future"})

#: FX spot: T+2 on both currencies' business days, except the pairs in FX_T1.
# source: spot FX market convention (BIS CPMI, "Reducing the risk in FX transactions" /
# ISDA FX definitions): spot value date T+2; USD/CAD, USD/TRY, USD/PHP, USD/RUB spot T+1
FX_SPOT_LAG = 2
FX_T1 = frozenset({"USDCAD", "CADUSD", "USDTRY", "TRYUSD", "USDPHP", "PHPUSD", "USDRUB",
                   "RUBUSD"})
#: The calendar standing for each currency's banking days in FX settlement (an approximation:
#: the main exchange of the currency's country).
CURRENCY_CALENDARS: Mapping[str, str] = MappingProxyType({
    "USD": "XNYS", "EUR": "XFRA", "GBP": "XLON", "JPY": "XTKS", "CAD": "XTSE", "HKD": "XHKG",
    "CHF": "XSWX", "AUD": "XASX",
})
