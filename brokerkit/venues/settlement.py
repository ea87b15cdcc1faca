"""Settlement as published by each market: how many business days after the trade date cash
and securities change hands, on which days those are counted, and when a trade date rolls.

Read by `post_trade.settlement` (the one mechanism that turns these into trade and settle
dates). A `Rule` carries its `cycles` oldest first (a trade takes the cycle in force on its
trade date) and the calendars involved:

- `trading`: the trade date is a business day of these (a fill dated otherwise counts from the
  next one);
- `legs`: the days the lag is counted on. Each leg is a set of calendars that must all be open;
  with several legs (FX: one per currency) the lag is counted on each and the latest date wins;
- `value`: the settle date must also be open on these (rolled forward otherwise; the FX USD
  rule).

A calendar is named by a string:

==========================  ====================================================================
``XNYS``                    an exchange's sessions (exchange_calendars), every closure included
``XNYS:scheduled``          weekdays less the exchange's scheduled holidays (exchange_calendars
                            `regular_holidays`): an unscheduled closure, such as a national day
                            of mourning, is a settlement day
``holidays:XFED``           weekdays less a `holidays` financial calendar (XFED: the Federal
                            Reserve, XSIF: SIFMA's US bond market, XECB: TARGET2)
``holidays:GB-ENG``         weekdays less a country's (subdivision's) holidays in `holidays`;
``holidays:JP+bank``        ``+bank`` / ``+optional`` add those categories
``weekdays``                Monday to Friday
==========================  ====================================================================

A rule that is not `known` gives no settle date: an unmapped venue or an unknown asset class is
UNKNOWN, never silently another market's rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType

__all__ = [
    "CANADA",
    "CRYPTO",
    "CURRENCY_CALENDARS",
    "CURRENCY_RULES",
    "EXCHANGE_RULES",
    "FUND",
    "FUTURES",
    "FX_ROLL",
    "FX_SPOT_LAG",
    "FX_T1",
    "HONG_KONG",
    "JAPAN",
    "OPTIONS",
    "SAME_DAY",
    "SAME_DAY_CLASSES",
    "SECURITIES",
    "TREASURY",
    "UK",
    "US",
    "USD_CALENDAR",
    "US_BOND",
    "US_CORPORATE_BOND",
    "XETRA",
    "Rule",
    "is_treasury",
    "unknown",
]

Calendars = tuple[str, ...]
_NY = "America/New_York"


@dataclass(frozen=True, slots=True)
class Rule:
    """Settle T+lag business days (see the module docstring for `trading`, `legs` and
    `value`; no legs: calendar days). `cycles` is the history as (first trade date, lag)
    pairs, oldest first; the first pair's date is None (since always). A fill's trade date is
    its date in `tz`, the next day from `roll_hour` on. `known` is False for the UNKNOWN rule,
    whose `name` says why."""

    name: str
    cycles: tuple[tuple[date | None, int], ...]
    legs: tuple[Calendars, ...] = ()
    trading: Calendars = ()
    value: Calendars = ()
    tz: str = "UTC"
    roll_hour: int = 0
    known: bool = True

    def __post_init__(self) -> None:
        if not self.cycles or self.cycles[0][0] is not None:
            raise ValueError(f"{self.name}: cycles must start with (None, lag)")
        starts = [d for d, _ in self.cycles[1:]]
        if any(d is None for d in starts) or starts != sorted(starts):  # type: ignore[type-var]
            raise ValueError(f"{self.name}: cycle start dates must be given, in order")

    @property
    def calendars(self) -> Calendars:
        """Every calendar the rule reads, once each, in order."""
        names = [*self.trading, *(c for leg in self.legs for c in leg), *self.value]
        return tuple(dict.fromkeys(names))

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


def unknown(why: str) -> Rule:
    """The rule of a trade whose settlement brokerkit does not know: no settle date."""
    return Rule(f"UNKNOWN: {why}", ((None, 0),), known=False)


def _market(name: str, cycles: tuple[tuple[date | None, int], ...], tz: str, trading: str,
            *settles_on: str) -> Rule:
    """A securities market in time zone `tz`: trades on `trading`'s sessions, settles on days
    open on every calendar of `settles_on` (default: the trading calendar)."""
    return Rule(name, cycles, (settles_on or (trading,),), (trading,), tz=tz)


def _t(lag: int) -> tuple[tuple[date | None, int], ...]:
    return ((None, lag),)


# -- US ---------------------------------------------------------------------------------------
# source: SEC Rule 15c6-1(a) (17 CFR 240.15c6-1): T+3 from 1995; amended to T+2, compliance
# date 2017-09-05 (Release 34-80295, 82 FR 15564); amended to T+1, compliance date 2024-05-28
# (Release 34-96930, 88 FR 13872).
_US_CYCLES = ((None, 3), (date(2017, 9, 5), 2), (date(2024, 5, 28), 1))
# source: US equities clear at NSCC and settle at DTC against Fedwire funds: a settlement day
# is a day the exchange is scheduled to open and the Federal Reserve is open (DTC is closed on
# the Federal Reserve's holidays, so Columbus Day and Veterans Day, NYSE trading days, are not
# settlement days: federalreserve.gov/aboutthefed/k8.htm; dtcc.com "DTC holiday schedule").
# An unscheduled NYSE closure is not a settlement holiday: on the national day of mourning of
# 2025-01-09 NYSE closed and DTC settled (nyse.com notice of 2024-12-30; SIFMA recommended an
# early close, not a full one).
USD_CALENDAR = "holidays:XFED"
US = _market("US T+1", _US_CYCLES, _NY, "XNYS", "XNYS:scheduled", USD_CALENDAR)
# source: listed options clear at the OCC and settled T+1 long before equities did (the T+2
# adopting release, 34-80295, keeps them out of its change: "options ... already settle on
# T+1"); premiums are paid on the business day after the trade.
OPTIONS = _market("US options T+1", _t(1), _NY, "XNYS", "XNYS:scheduled", USD_CALENDAR)
# source: regular-way settlement of US Treasury securities is the next business day (T+1);
# government securities are exempt from Rule 15c6-1 (17 CFR 240.15c6-1(a)). Their trading and
# settlement days are SIFMA's: the Federal Reserve's holidays plus SIFMA's recommended full
# closes, e.g. Good Friday, except years it recommends an early close (2026-04-03, the day of
# the March employment report) (sifma.org/resources/general/holiday-schedule).
TREASURY = Rule("US Treasuries T+1", _t(1), (("holidays:XSIF",),), ("holidays:XSIF",), tz=_NY)
# source: corporate and municipal bonds follow Rule 15c6-1 (and MSRB Rule G-12/G-15): T+3, T+2
# from 2017-09-05, T+1 from 2024-05-28, on SIFMA's bond market calendar.
US_CORPORATE_BOND = Rule("US corporate bonds T+1", _US_CYCLES, (("holidays:XSIF",),),
                         ("holidays:XSIF",), tz=_NY)
US_BOND = US_CORPORATE_BOND
# source: open-end mutual fund shares "generally settle one day after the trade date (i.e.,
# T+1)" (SEC proposing release 34-78962, 2016, and ICI); fund transfer agents work NYSE days.
FUND = _market("US mutual funds T+1", _t(1), _NY, "XNYS", "XNYS:scheduled", USD_CALENDAR)


def is_treasury(instrument: str) -> bool:
    """`BOND:<CUSIP>` of a US Treasury: Treasury CUSIPs begin 912 (912796 bills, 912810
    bonds, 912828 notes; source: treasurydirect.gov, "CUSIP" in its glossary)."""
    _, _, rest = instrument.partition(":")
    return rest.upper().startswith("912")


# -- Canada -----------------------------------------------------------------------------------
# source: Canada moved with the US to T+2 on 2017-09-05 (the Canadian Capital Markets
# Association's coordinated T+2 transition) and to T+1 on 2024-05-27, one day before the US
# (CSA amendments to NI 24-101, in force 2024-05-27; osc.ca news "CSA announces adoption of
# amendments to National Instrument 24-101"). CDS settles on TSX business days.
CANADA = _market("Canada T+1", ((None, 3), (date(2017, 9, 5), 2), (date(2024, 5, 27), 1)),
                 "America/Toronto", "XTSE")

# -- Europe -----------------------------------------------------------------------------------
# source: EU CSDR (Regulation (EU) No 909/2014) Art. 5(2): at most T+2 for trades on trading
# venues, applied from 2014-10-06. Not modelled before then.
# source: Xetra and Frankfurt trades settle at Clearstream Banking Frankfurt on TARGET2 days:
# Deutsche Börse's settlement calendar has 24 and 31 December as settlement days although the
# exchange is closed ("Trading calendar and trading hours", deutsche-boerse.com; TARGET2 is
# closed only on 1 January, Good Friday, Easter Monday, 1 May, 25 and 26 December: ecb.europa.eu
# "TARGET2 holidays").
TARGET2 = "holidays:XECB"
XETRA = _market("Xetra T+2", _t(2), "Europe/Berlin", "XETR", TARGET2)
FRANKFURT = _market("Frankfurt T+2", _t(2), "Europe/Berlin", "XFRA", TARGET2)
# source: Euronext Paris and Amsterdam trades settle T+2 (CSDR) at Euroclear France/Nederland,
# on TARGET2 days (euronext.com "Trading calendar").
PARIS = _market("Paris T+2", _t(2), "Europe/Paris", "XPAR", TARGET2)
AMSTERDAM = _market("Amsterdam T+2", _t(2), "Europe/Amsterdam", "XAMS", TARGET2)
# source: London Stock Exchange trades settle T+2 in CREST (UK CSDR), on England and Wales
# bank holidays' business days (Euroclear UK & International, "CREST operating days";
# gov.uk/bank-holidays).
UK = _market("UK T+2", _t(2), "Europe/London", "XLON", "holidays:GB-ENG")
# source: SIX Swiss Exchange trades settle T+2 at SIX SIS on SIX business days (six-group.com,
# "Trading and settlement calendar").
SWITZERLAND = _market("SIX T+2", _t(2), "Europe/Zurich", "XSWX")

# -- Asia-Pacific -----------------------------------------------------------------------------
# source: Japan Exchange Group: exchange trades in stocks settle T+2 at JASDEC (JSCC clearing)
# (jpx.co.jp/english/equities/trading/domestic); TSE business days (closed 31 December to
# 3 January, the bank holidays).
JAPAN = _market("Japan T+2", _t(2), "Asia/Tokyo", "XTKS")
# source: HKEX: CCASS settles exchange trades T+2 (HKSCC General Rules, Continuous Net
# Settlement; hkex.com.hk); on Hong Kong business days.
HONG_KONG = _market("Hong Kong T+2", _t(2), "Asia/Hong_Kong", "XHKG")
# source: ASX: CHESS settles T+2 (ASX Settlement Operating Rules 3.3, T+2 since 2016-03-07;
# T+3 before) on ASX business days (asx.com.au "Trading calendar").
AUSTRALIA = _market("ASX T+2", ((None, 3), (date(2016, 3, 7), 2)), "Australia/Sydney", "XASX")
# source: Singapore Exchange securities settle T+2 since 2018-12-10 (T+3 before; sgx.com,
# "SGX to shorten securities settlement cycle to T+2").
SINGAPORE = _market("SGX T+2", ((None, 3), (date(2018, 12, 10), 2)), "Asia/Singapore",
                    "XSES")

# source: crypto exchanges settle a trade into the account at once, and trade around the clock:
# trade dates are UTC days.
CRYPTO = Rule("crypto T+0", _t(0))
# source: futures are marked to market daily (variation margin), the traded notional is never
# exchanged. CME Globex trade dates begin at 17:00 Central Time the evening before
# (cmegroup.com, "Trading hours": the session opening Sunday 5:00 p.m. CT is Monday's).
FUTURES = Rule("futures T+0", _t(0), trading=("weekdays",), tz="America/Chicago", roll_hour=17)
SAME_DAY = CRYPTO

#: Equity venues by the names brokerkit keys carry (`STK:SAP@XETRA`), IB's exchange codes and
#: MICs. Every venue the IBKR adapter can put in a key is here (tests pin it).
EXCHANGE_RULES: Mapping[str, Rule] = MappingProxyType({
    "XETRA": XETRA, "IBIS": XETRA, "XETR": XETRA, "FWB": FRANKFURT, "XFRA": FRANKFURT,
    "SBF": PARIS, "XPAR": PARIS, "AEB": AMSTERDAM, "XAMS": AMSTERDAM,
    "LSE": UK, "LSEETF": UK, "XLON": UK, "EBS": SWITZERLAND, "SIX": SWITZERLAND,
    "XSWX": SWITZERLAND, "TSE": JAPAN, "TSEJ": JAPAN, "XTKS": JAPAN, "SEHK": HONG_KONG,
    "XHKG": HONG_KONG, "ASX": AUSTRALIA, "XASX": AUSTRALIA, "SGX": SINGAPORE,
    "XSES": SINGAPORE, "TSX": CANADA, "XTSE": CANADA, "VENTURE": CANADA,
    # US venues, when a key names one
    "NYSE": US, "NASDAQ": US, "ARCA": US, "AMEX": US, "BATS": US, "IEX": US, "ISLAND": US,
    "XNYS": US, "XNAS": US, "ARCX": US,
})
#: Equities without an exchange in their key, by currency (a non-USD listing carries its
#: exchange in its key; these are the home markets).
CURRENCY_RULES: Mapping[str, Rule] = MappingProxyType({
    "USD": US, "CAD": CANADA, "GBP": UK, "JPY": JAPAN, "HKD": HONG_KONG, "EUR": XETRA,
    "CHF": SWITZERLAND, "AUD": AUSTRALIA, "SGD": SINGAPORE,
})
#: Asset classes settled like securities; crypto and futures are T+0.
SECURITIES = frozenset({"equity", "etf", "option", "bond", "fund"})
SAME_DAY_CLASSES: Mapping[str, Rule] = MappingProxyType({"crypto": CRYPTO, "future": FUTURES})

# -- FX spot ----------------------------------------------------------------------------------
#: FX spot: T+2, except the pairs in FX_T1.
# source: spot FX market convention (BIS CPMI, "Reducing the risk in FX transactions";
# londonfx.co.uk/valdates.html): spot value date T+2; USD/CAD, USD/TRY, USD/PHP, USD/RUB T+1.
# The lag is counted on each non-USD currency's banking days ("clear days" per currency, the
# later date wins); USD does not count for the days before spot (a USD holiday on T+1 does not
# delay spot), but the value date must be a business day in both currencies and in USD, else
# it rolls forward (londonfx.co.uk/valdates.html; ObjectLab Kit CurrencyDateCalculator,
# objectlabkit.sourceforge.net/currency.html).
FX_SPOT_LAG = 2
#: FX trade (and value) dates roll at 17:00 New York (londonfx.co.uk/valdates.html, "Value date
#: roll-over": "global market convention is that value dates roll forward at 5pm New York
#: time"); the NZD/USD 07:00 Auckland exception is not modelled.
FX_ROLL = (_NY, 17)
FX_T1 = frozenset({"USDCAD", "CADUSD", "USDTRY", "TRYUSD", "USDPHP", "PHPUSD", "USDRUB",
                   "RUBUSD"})
#: Each currency's banking days (its payment system's), as calendar names.
# source: USD: Federal Reserve holidays (Fedwire; federalreserve.gov/aboutthefed/k8.htm).
# EUR: TARGET2 (ecb.europa.eu). GBP: England and Wales bank holidays (CHAPS; gov.uk). JPY:
# Japanese bank holidays (public holidays and 31 Dec to 3 Jan; Banking Act Enforcement Order
# art. 5). CAD: Canadian bank holidays (Bills of Exchange Act s. 42, with Ontario's: Toronto
# clearing). AUD: New South Wales bank holidays (Sydney). NZD: Auckland and Wellington
# anniversary days with New Zealand's public holidays. CHF: Zurich. HKD: Hong Kong general
# holidays. Each calendar as the `holidays` library keeps it.
CURRENCY_CALENDARS: Mapping[str, Calendars] = MappingProxyType({
    "USD": (USD_CALENDAR,), "EUR": (TARGET2,), "GBP": ("holidays:GB-ENG",),
    "JPY": ("holidays:JP+bank",), "CAD": ("holidays:CA-ON+optional",),
    "AUD": ("holidays:AU-NSW+bank",), "NZD": ("holidays:NZ-AUK", "holidays:NZ-WGN"),
    "CHF": ("holidays:CH-ZH",), "HKD": ("holidays:HK",), "SGD": ("holidays:SG",),
    "SEK": ("holidays:SE",), "NOK": ("holidays:NO",), "DKK": ("holidays:DK",),
    "MXN": ("holidays:MX",), "ZAR": ("holidays:ZA",), "PLN": ("holidays:PL",),
})
