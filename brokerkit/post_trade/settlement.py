"""Settlement: the one source of trade and settle dates, on real exchange, settlement and
banking calendars.

The rules are data in `brokerkit.venues.settlement` (each with its source), read by one
mechanism here; the sandbox, the adapters (`with_settlement`), the cash ladder,
`settlement_status` and the dashboards all take their dates from it.

=======================================  =======  =============================================
market                                   lag      counted on
=======================================  =======  =============================================
US equities, ETFs                        T+1      days NYSE is scheduled to open and the Fed is
                                                  open (T+2 from 2017-09-05, T+3 before)
US options, mutual funds                 T+1      the same days (T+1 before 2024 too)
US Treasuries / corporate bonds          T+1      SIFMA's bond market days (corporates: T+2
                                                  from 2017-09-05, T+3 before)
Canada (TSX)                             T+1      XTSE (T+2 from 2017-09-05, T+3 before)
Xetra, Frankfurt, Paris, Amsterdam       T+2      TARGET2 days (24 and 31 December included)
LSE                                      T+2      England and Wales bank holidays
SIX, TSE, HKEX, ASX, SGX                 T+2      the exchange's days (ASX, SGX: T+3 before)
FX spot                                  T+2      each non-USD currency's banking days, the
                                                  value date also a USD day (USD/CAD... T+1)
crypto, futures                          T+0      calendar days
anything else                            UNKNOWN  no settle date, never another market's rule
=======================================  =======  =============================================

Trade dates roll at each market's boundary: equities at the exchange's midnight (after-hours
trades keep their day), FX at 17:00 New York, CME futures at 17:00 Chicago, crypto at
midnight UTC. A fill dated on a day its market does not trade counts from the next one.

Everything is vectorized: each calendar's business days are built once (cached) and whole
columns are moved with `numpy.searchsorted`; no per-row calendar calls. The scalar forms
(`trade_date_of`, `settle_date_of`) run the same code on one row.
"""

from __future__ import annotations

import functools
import re
import threading
import warnings
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from ..venues.settlement import (
    CURRENCY_CALENDARS,
    CURRENCY_RULES,
    EXCHANGE_RULES,
    FUND,
    FX_ROLL,
    FX_SPOT_LAG,
    FX_T1,
    OPTIONS,
    SAME_DAY_CLASSES,
    TREASURY,
    US_CORPORATE_BOND,
    USD_CALENDAR,
    Rule,
    is_treasury,
    unknown,
)

__all__ = ["RULES", "market_day", "market_today", "rule_for", "settle_date_of",
           "settle_dates_of", "settlement_dates", "settlement_status", "trade_date_of",
           "trade_dates", "with_settlement"]


#: The rules tables, one place: `brokerkit.venues.settlement` (each fact with its source).
RULES: Mapping[str, Any] = {"exchange": EXCHANGE_RULES, "currency": CURRENCY_RULES,
                            "fx_calendars": CURRENCY_CALENDARS, "fx_t1": FX_T1}

_PAIR = re.compile(r"([A-Z]{3})[./]?([A-Z]{3})")


def _fx_rule(instrument: str) -> Rule:
    m = _PAIR.fullmatch(instrument.split(":", 1)[-1].upper())
    if not m:
        return unknown(f"{instrument!r} is not a currency pair")
    pair = m.group(1) + m.group(2)
    missing = [c for c in m.groups() if c not in CURRENCY_CALENDARS]
    if missing:
        return unknown(f"no banking calendar for {', '.join(missing)}")
    legs = tuple(CURRENCY_CALENDARS[c] for c in m.groups() if c != "USD")
    value = tuple(dict.fromkeys(name for c in (*m.groups(), "USD")
                                for name in CURRENCY_CALENDARS[c]))
    lag = 1 if pair in FX_T1 else FX_SPOT_LAG
    return Rule(f"FX {pair} T+{lag}", ((None, lag),), legs or ((USD_CALENDAR,),),
                ("weekdays",), value, tz=FX_ROLL[0], roll_hour=FX_ROLL[1])


@functools.lru_cache(maxsize=4096)
def rule_for(asset_class: str, instrument: str, currency: str) -> Rule:
    """The settlement rule of one trade (UNKNOWN, with the reason in its name, when brokerkit
    has none: an unmapped venue, currency or asset class)."""
    ac = (asset_class or "").lower()
    ccy = (currency or "USD").upper()
    if ac in SAME_DAY_CLASSES:
        return SAME_DAY_CLASSES[ac]
    if ac == "fx":
        return _fx_rule(instrument)
    if ac in ("option", "fund", "bond"):
        if ccy != "USD":
            return unknown(f"no settlement rule for {ac}s in {ccy}")
        if ac == "bond":
            return TREASURY if is_treasury(instrument) else US_CORPORATE_BOND
        return OPTIONS if ac == "option" else FUND
    if ac in ("equity", "etf"):
        _, _, exchange = instrument.partition("@")
        if exchange:
            return EXCHANGE_RULES.get(exchange.upper()) or unknown(
                f"no settlement rule for venue {exchange.upper()}")
        return CURRENCY_RULES.get(ccy) or unknown(f"no settlement rule for equities in {ccy} "
                                                  f"without a venue in the key")
    return unknown(f"no settlement rule for asset class {asset_class!r}")


# -- calendars --------------------------------------------------------------------------------

#: calendar name -> (first day covered, last day covered, its business days as datetime64[D])
_DAYS: dict[str, tuple[np.datetime64, np.datetime64, np.ndarray]] = {}
_LOCK = threading.Lock()


def _weekdays(start: np.datetime64, end: np.datetime64) -> np.ndarray:
    days = np.arange(start, end + np.timedelta64(1, "D"), dtype="datetime64[D]")
    return days[np.is_busday(days)]


def _holidays_lib(spec: str, years: range) -> np.ndarray:
    """The holidays of `spec` ("XFED", "GB-ENG", "JP+bank") from the `holidays` library."""
    import holidays

    code, *categories = spec.split("+")
    if code in holidays.list_supported_financial():
        found = holidays.financial_holidays(code, years=years)
    else:
        country, _, subdiv = code.partition("-")
        found = holidays.country_holidays(country, subdiv=subdiv or None, years=years,
                                          categories=("public", *categories))
    return np.array(sorted(found), dtype="datetime64[D]")


def _xcal(name: str, start: np.datetime64, end: np.datetime64) -> Any:
    import exchange_calendars as xcals

    try:
        with warnings.catch_warnings():  # exchange_calendars 4.13 on pandas 3.1 warns inside
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            return xcals.get_calendar(name, start=str(start), end=str(end))
    except Exception as e:  # its errors name the bounds it supports
        raise ValueError(f"calendar {name!r} cannot cover trade dates {start} to {end}: "
                         f"{e}") from None


def _build(name: str, start: np.datetime64, end: np.datetime64) -> np.ndarray:
    """Business days of calendar `name` (see `brokerkit.venues.settlement`) from `start` to
    `end`."""
    if name == "weekdays":
        return _weekdays(start, end)
    if name.startswith("holidays:"):
        first, last = pd.Timestamp(start).year, pd.Timestamp(end).year
        off = _holidays_lib(name.removeprefix("holidays:"), range(first, last + 1))
        days = _weekdays(start, end)
        return days[~np.isin(days, off)]
    exchange, _, kind = name.partition(":")
    cal = _xcal(exchange, start, end)
    if kind == "scheduled":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            regular = cal.regular_holidays.holidays(str(start), str(end)) \
                if cal.regular_holidays is not None else pd.DatetimeIndex([])
        days = _weekdays(start, end)
        return days[~np.isin(days, regular.to_numpy().astype("datetime64[D]"))]
    if kind:
        raise ValueError(f"unknown calendar {name!r}")
    return cal.sessions.to_numpy().astype("datetime64[D]")


def _calendar_days(name: str, first: np.datetime64, last: np.datetime64) -> np.ndarray:
    """Business days of one calendar covering `first`..`last` (whole years, with a year to
    spare after `last`); built once per name and widened on demand."""
    cached = _DAYS.get(name)
    if cached is not None and cached[0] <= first and last + np.timedelta64(10, "D") <= cached[1]:
        return cached[2]
    with _LOCK:
        cached = _DAYS.get(name)
        lo, hi = (min(first, cached[0]), max(last, cached[1])) if cached else (first, last)
        start = np.datetime64(f"{pd.Timestamp(lo).year}-01-01", "D")
        end = np.datetime64(f"{pd.Timestamp(hi).year + 1}-12-31", "D")
        days = _build(name, start, end)
        _DAYS[name] = (start, end, days)
        return days


def business_days(calendars: tuple[str, ...], first: np.datetime64 | None = None,
                  last: np.datetime64 | None = None) -> np.ndarray:
    """Days (datetime64[D]) open on every calendar in `calendars`, covering `first`..`last`
    (default: 2000 to two years ahead)."""
    return _Days.of(calendars, first, last).days


class _Days:
    """The days open on every calendar of a set, with a rank table: `rank[d - start]` is the
    number of open days before day d, so finding a date's place is a lookup, not a search."""

    __slots__ = ("days", "end", "rank", "start")
    _cache: dict[tuple[str, ...], _Days] = {}

    def __init__(self, calendars: tuple[str, ...], first: np.datetime64, last: np.datetime64
                 ) -> None:
        days: np.ndarray | None = None
        for name in calendars:
            d = _calendar_days(name, first, last)
            days = d if days is None else np.intersect1d(days, d, assume_unique=True)
        if days is None:
            raise ValueError("business days need at least one calendar")
        self.days = days
        self.start = max(_DAYS[c][0] for c in calendars)
        self.end = min(_DAYS[c][1] for c in calendars)
        span = (self.end - self.start).astype(int) + 2
        self.rank = np.searchsorted(days, self.start + np.arange(span), side="left")

    @classmethod
    def of(cls, calendars: tuple[str, ...], first: np.datetime64 | None = None,
           last: np.datetime64 | None = None) -> _Days:
        first = np.datetime64("2000-01-03", "D") if first is None else first
        last = np.datetime64(pd.Timestamp.today().date(), "D") + np.timedelta64(730, "D") \
            if last is None else last
        found = cls._cache.get(calendars)
        if found is None or first < found.start or last + np.timedelta64(10, "D") > found.end:
            found = cls._cache[calendars] = cls(calendars, first, last)
        return found

    def left(self, day: np.ndarray) -> np.ndarray:
        """`searchsorted(days, day, "left")`: the index of the first open day >= `day`."""
        return self.rank[(day - self.start).astype(np.int64)]

    def right(self, day: np.ndarray) -> np.ndarray:
        """`searchsorted(days, day, "right")`: the index of the first open day > `day`."""
        return self.rank[(day - self.start).astype(np.int64) + 1]


# -- the mechanism ----------------------------------------------------------------------------

def _settle(rule: Rule, trade: np.ndarray, lag: np.ndarray) -> np.ndarray:
    """Settle dates (datetime64[D]) of trades dated `trade` under `rule` with per-row `lag`."""
    out = np.full(len(trade), np.datetime64("NaT"), dtype="datetime64[D]")
    known = ~np.isnat(trade)
    if not rule.known or not known.any():
        return out
    everything = bool(known.all())
    t, n = (trade, lag) if everything else (trade[known], lag[known])
    lo, hi = t.min(), t.max() + np.timedelta64(int(n.max()) * 7 + 30, "D")
    if rule.trading:
        cal = _Days.of(rule.trading, lo, hi)
        t = cal.days[cal.left(t)]
    if not rule.legs:
        settle = t + n.astype("timedelta64[D]")
    else:
        settle = None
        for leg in rule.legs:
            cal = _Days.of(leg, lo, hi)
            i = np.where(n == 0, cal.left(t), cal.right(t) + n - 1) if (n == 0).any() \
                else cal.right(t) + (n - 1)
            settle = cal.days[i] if settle is None else np.maximum(settle, cal.days[i])
        assert settle is not None
        if rule.value:
            cal = _Days.of(rule.value, lo, hi)
            settle = cal.days[cal.left(settle)]
    if everything:
        return settle
    out[known] = settle
    return out


def _rules_of(fills: pd.DataFrame) -> tuple[np.ndarray, list[Rule]]:
    """(per row, the index of its rule; the distinct rules), finding each rule once per
    distinct (asset class, instrument, currency)."""
    n = len(fills)
    combined = np.zeros(n, dtype=np.int64)
    for name in ("asset_class", "instrument", "currency"):
        c, uniq = pd.factorize(fills[name])  # missing: -1
        combined = combined * (len(uniq) + 1) + (c + 1)
    codes, uniq_combined = pd.factorize(combined)
    first = np.full(len(uniq_combined), -1, dtype=np.int64)
    first[codes[::-1]] = np.arange(n - 1, -1, -1)
    cols = [fills[c].to_numpy(dtype=object)[first] for c in ("asset_class", "instrument",
                                                             "currency")]
    rules = [rule_for(a if isinstance(a, str) else "", i if isinstance(i, str) else "",
                      c if isinstance(c, str) else "USD") for a, i, c in zip(*cols, strict=True)]
    return codes, rules


def _lags(rules: list[Rule], codes: np.ndarray, trade: np.ndarray) -> np.ndarray:
    """Each row's lag: its rule's cycle in force on its trade date."""
    depth = max(len(r.cycles) for r in rules)
    # each rule's cycles as rows of (start, lag), padded to the longest history by repeating
    # the first cycle (a start of 1900 never changes the lag)
    padded = [[(None, r.cycles[0][1])] * (depth - len(r.cycles)) + list(r.cycles)
              for r in rules]
    starts = np.array([[np.datetime64(d or "1900-01-01", "D") for d, _ in row]
                       for row in padded])
    lags = np.array([[n for _, n in row] for row in padded])
    lag = lags[codes, 0]
    for e in range(1, depth):
        lag = np.where(trade >= starts[codes, e], lags[codes, e], lag)
    return lag


def settlement_dates(fills: pd.DataFrame) -> pd.Series:
    """The contractual settlement date of every fill (a FILLS frame), as naive datetime64
    (NaT when the trade date or the rule is unknown).

    The rule is found once per distinct (asset class, instrument, currency); rows sharing a
    rule are then moved in one vectorized step."""
    n = len(fills)
    if n == 0:
        return pd.Series([], dtype="datetime64[ns]", index=fills.index, name="settle_date")
    codes, rules = _rules_of(fills)
    trade = pd.to_datetime(fills["trade_date"]).to_numpy().astype("datetime64[D]")
    lag = _lags(rules, codes, trade)
    out = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
    distinct = list(dict.fromkeys(rules))
    if len(distinct) == 1:
        out = _settle(distinct[0], trade, lag)
    else:  # rows in rule order, each rule's rows one contiguous slice
        small = np.uint16 if len(distinct) < 2**16 else np.int64  # radix sort when small
        group = np.array([distinct.index(r) for r in rules], dtype=small)[codes]
        order = np.argsort(group, kind="stable")
        bounds = np.searchsorted(group[order], np.arange(len(distinct) + 1))
        for k, rule in enumerate(distinct):
            rows = order[bounds[k]:bounds[k + 1]]
            out[rows] = _settle(rule, trade[rows], lag[rows])
    return pd.Series(out.astype("datetime64[ns]"), index=fills.index, name="settle_date")


def _trade_days(rule: Rule, executed: pd.DatetimeIndex) -> np.ndarray:
    """Trade dates (datetime64[D]) of fills executed at `executed` (tz-aware) under `rule`."""
    local = executed.tz_convert(rule.tz).tz_localize(None)
    if rule.roll_hour:
        local = local + pd.Timedelta(hours=24 - rule.roll_hour)
    days = local.to_numpy().astype("datetime64[D]")
    if rule.trading and rule.known and len(days):
        known = ~np.isnat(days)
        if known.any():
            cal = _Days.of(rule.trading, days[known].min(),
                           days[known].max() + np.timedelta64(30, "D"))
            days[known] = cal.days[cal.left(days[known])]
    return days


def trade_dates(fills: pd.DataFrame) -> pd.Series:
    """The trade date of every fill from its `executed_at` (tz-aware; naive is UTC), at its
    market's roll (see the module docstring), as naive datetime64."""
    n = len(fills)
    if n == 0:
        return pd.Series([], dtype="datetime64[ns]", index=fills.index, name="trade_date")
    executed = pd.DatetimeIndex(pd.to_datetime(fills["executed_at"], utc=True))
    codes, rules = _rules_of(fills)
    out = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
    distinct = list(dict.fromkeys((r.tz, r.roll_hour, r.trading if r.known else ())
                                  for r in rules))
    keys = [distinct.index((r.tz, r.roll_hour, r.trading if r.known else ())) for r in rules]
    group = np.array(keys)[codes]
    for k, (tz, hour, trading) in enumerate(distinct):
        mask = group == k
        rule = Rule("trade date", ((None, 0),), trading=trading, tz=tz, roll_hour=hour)
        out[mask] = _trade_days(rule, executed[mask])
    return pd.Series(out.astype("datetime64[ns]"), index=fills.index, name="trade_date")


def with_settlement(fills: pd.DataFrame) -> pd.DataFrame:
    """`fills` with `trade_date` filled in where missing (from `executed_at`) and
    `settle_date` from the rules."""
    out = fills.copy()
    if len(out) and "executed_at" in out.columns:
        given = pd.to_datetime(out["trade_date"]) if "trade_date" in out.columns else None
        if given is None or given.isna().any():
            computed = trade_dates(out)
            out["trade_date"] = computed if given is None else given.where(given.notna(),
                                                                           computed)
    out["settle_date"] = settlement_dates(out)
    return out


def trade_date_of(executed_at: datetime, asset_class: str, instrument: str,
                  currency: str = "USD") -> date:
    """The trade date of one fill executed at `executed_at` (tz-aware)."""
    rule = rule_for(asset_class, instrument, currency)
    day = _trade_days(rule, pd.DatetimeIndex([pd.Timestamp(executed_at)]))[0]
    return date.fromisoformat(str(day))


def settle_date_of(asset_class: str, instrument: str, currency: str, trade_date: date
                   ) -> date | None:
    """The settle date of one trade (None when its rule is UNKNOWN)."""
    rule = rule_for(asset_class, instrument, currency)
    day = np.array([np.datetime64(trade_date, "D")])
    settle = _settle(rule, day, np.array([rule.lag_on(trade_date)]))[0]
    return None if np.isnat(settle) else date.fromisoformat(str(settle))


#: Where "today" is taken when no `as_of` is given: trade and settle dates are market dates,
#: and after midnight UTC it is still the previous day in New York for hours.
MARKET_TIMEZONE = "America/New_York"


def market_today() -> pd.Timestamp:
    """Today's date in the market's time zone (MARKET_TIMEZONE), as a naive midnight."""
    return pd.Timestamp.now(tz=MARKET_TIMEZONE).tz_localize(None).normalize()


def market_day(as_of: date | str | pd.Timestamp | None) -> pd.Timestamp:
    """`as_of` as a naive midnight (a tz-aware time is taken at its own date); the market's
    today when None."""
    if as_of is None:
        return market_today()
    day = pd.Timestamp(as_of)
    return day.tz_localize(None).normalize() if day.tzinfo else day.normalize()


def settle_dates_of(fills: pd.DataFrame) -> pd.Series:
    """The fills' settle dates, always from the rules (a stored or broker-given `settle_date`
    column is not trusted over them: one source of settle dates)."""
    return settlement_dates(fills)


def settlement_status(fills: pd.DataFrame, as_of: date | str | pd.Timestamp | None = None
                      ) -> pd.Series:
    """Per fill: 'pending' before its settle date, 'settled' on and after it ('unknown'
    without a trade date). `as_of` defaults to today."""
    day = market_day(as_of)
    settle = settle_dates_of(fills)
    status = np.where(settle.isna(), "unknown", np.where(settle > day, "pending", "settled"))
    return pd.Series(status, index=fills.index, name="settlement", dtype=object)
