"""Settlement: when each trade turns into cash, on real exchange holiday calendars.

The rules are data in `brokerkit.venues.settlement` (each with its source), read by one
mechanism (`settlement_dates`):

=====================================  =========  ==========================================
market                                 lag        counted on
=====================================  =========  ==========================================
US equities, ETFs, options, bonds      T+1        XNYS (from 2024-05-28; T+2 from
                                                  2017-09-05, T+3 before)
Canada (TSX)                           T+1        XTSE (from 2024-05-27; T+2 from
                                                  2017-09-05, T+3 before)
EU (Xetra, Frankfurt, Paris, Amsterdam) T+2       the exchange's calendar
UK (LSE)                               T+2        XLON
Japan (TSE)                            T+2        XTKS
Hong Kong (SEHK)                       T+2        XHKG
FX spot                                T+2        both currencies' calendars (USD/CAD,
                                                  USD/TRY, USD/PHP, USD/RUB: T+1)
crypto, futures                        T+0        calendar days
=====================================  =========  ==========================================

A business day is a session of the calendar (half-days count); for FX, a day that is a
session in both currencies' calendars (each currency is represented by its main exchange's
calendar: USD→XNYS, EUR→XFRA, GBP→XLON, JPY→XTKS, CAD→XTSE, HKD→XHKG, CHF→XSWX, AUD→XASX; an
approximation of the banking calendars). A trade dated on a non-business day counts from the
next business day. A rule's history of cycles applies by trade date (US trades before
2017-09-05 are T+3). Everything is vectorized: each calendar's sessions are built once (cached)
and whole columns are moved with `numpy.searchsorted`; no per-row calendar calls.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from ..venues.settlement import (
    CANADA,
    CURRENCY_CALENDARS,
    CURRENCY_RULES,
    EXCHANGE_RULES,
    FX_SPOT_LAG,
    FX_T1,
    HONG_KONG,
    JAPAN,
    SAME_DAY,
    SAME_DAY_CLASSES,
    SECURITIES,
    UK,
    US,
    Rule,
)

__all__ = ["CANADA", "CURRENCY_CALENDARS", "CURRENCY_RULES", "EXCHANGE_RULES", "FX_T1",
           "HONG_KONG", "JAPAN", "RULES", "SAME_DAY", "SECURITIES", "UK", "US", "Rule",
           "market_day", "market_today", "rule_for", "settle_dates_of", "settlement_dates",
           "settlement_status", "with_settlement"]


#: The rules table, one place: `brokerkit.venues.settlement` (each fact with its source).
RULES: Mapping[str, Any] = {"exchange": EXCHANGE_RULES, "currency": CURRENCY_RULES,
                            "fx_calendars": CURRENCY_CALENDARS, "fx_t1": FX_T1}


def rule_for(asset_class: str, instrument: str, currency: str) -> Rule:
    """The settlement rule of one trade (the per-row form of what `settlement_dates` does
    per group)."""
    ac = (asset_class or "").lower()
    if ac in SAME_DAY_CLASSES:
        return SAME_DAY
    if ac == "fx":
        pair = instrument.split(":", 1)[-1].replace(".", "").replace("/", "").upper()
        cals = tuple(dict.fromkeys(CURRENCY_CALENDARS.get(c, "XNYS")
                                   for c in (pair[:3], pair[3:6])))
        return Rule(f"FX {pair}", ((None, 1 if pair in FX_T1 else FX_SPOT_LAG),), cals)
    if ac in SECURITIES:
        _, _, exchange = instrument.partition("@")
        if exchange:
            return EXCHANGE_RULES.get(exchange.upper(), US)
        return CURRENCY_RULES.get((currency or "USD").upper(), US)
    return SAME_DAY


#: calendar name -> (first day covered, last day covered, its sessions as datetime64[D])
_SESSIONS: dict[str, tuple[np.datetime64, np.datetime64, np.ndarray]] = {}


def _calendar_sessions(name: str, first: np.datetime64, last: np.datetime64) -> np.ndarray:
    """Sessions of one exchange_calendars calendar covering `first`..`last` (whole years,
    with a year to spare after `last`); built once per name and widened on demand."""
    cached = _SESSIONS.get(name)
    if cached is not None and cached[0] <= first and last + np.timedelta64(10, "D") <= cached[1]:
        return cached[2]
    import exchange_calendars as xcals

    lo, hi = (min(first, cached[0]), max(last, cached[1])) if cached else (first, last)
    start = np.datetime64(f"{pd.Timestamp(lo).year}-01-01", "D")
    end = np.datetime64(f"{pd.Timestamp(hi).year + 1}-12-31", "D")
    try:
        with warnings.catch_warnings():  # exchange_calendars 4.13 on pandas 3.1 warns inside
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            cal = xcals.get_calendar(name, start=str(start), end=str(end))
    except Exception as e:  # its errors name the bounds it supports
        raise ValueError(f"calendar {name!r} cannot cover trade dates {start} to {end}: "
                         f"{e}") from None
    sessions = cal.sessions.to_numpy().astype("datetime64[D]")
    _SESSIONS[name] = (start, end, sessions)
    return sessions


def _sessions(calendars: tuple[str, ...], first: np.datetime64 | None = None,
              last: np.datetime64 | None = None) -> np.ndarray:
    """Business days (datetime64[D]) open on every calendar in `calendars`, covering
    `first`..`last` (default: 2000 to two years ahead)."""
    first = np.datetime64("2000-01-03", "D") if first is None else first
    last = np.datetime64(pd.Timestamp.today().date(), "D") + np.timedelta64(730, "D") \
        if last is None else last
    days: np.ndarray | None = None
    for name in calendars:
        s = _calendar_sessions(name, first, last)
        days = s if days is None else np.intersect1d(days, s, assume_unique=True)
    assert days is not None
    return days


def _add_business_days(trade: np.ndarray, lag: np.ndarray, calendars: tuple[str, ...]
                       ) -> np.ndarray:
    """trade dates (datetime64[D]) moved `lag` business days on `calendars`, vectorized: a
    trade date that is not a business day counts from the next one."""
    if not calendars:
        return trade + lag.astype("timedelta64[D]")
    known = ~np.isnat(trade)
    out = np.full(len(trade), np.datetime64("NaT"), dtype="datetime64[D]")
    if not known.any():
        return out
    days = _sessions(calendars, trade[known].min(), trade[known].max())
    i = np.searchsorted(days, trade[known], side="left") + lag[known]
    out[known] = days[i]
    return out


def settlement_dates(fills: pd.DataFrame) -> pd.Series:
    """The contractual settlement date of every fill (a FILLS frame), as naive datetime64.

    The rule is found once per distinct (asset class, instrument, currency); rows sharing a
    calendar are then moved in one vectorized step."""
    n = len(fills)
    if n == 0:
        return pd.Series([], dtype="datetime64[ns]", index=fills.index, name="settle_date")
    combined = np.zeros(n, dtype=np.int64)
    for name in ("asset_class", "instrument", "currency"):
        c, uniq = pd.factorize(fills[name].to_numpy(dtype=object))  # missing: -1
        combined = combined * (len(uniq) + 1) + (c + 1)
    codes, uniq_combined = pd.factorize(combined)
    first = np.full(len(uniq_combined), -1, dtype=np.int64)
    first[codes[::-1]] = np.arange(n - 1, -1, -1)
    cols = [fills[c].to_numpy(dtype=object)[first] for c in ("asset_class", "instrument",
                                                             "currency")]
    rules = [rule_for(a if isinstance(a, str) else "", i if isinstance(i, str) else "",
                      c if isinstance(c, str) else "USD") for a, i, c in zip(*cols, strict=True)]
    # each rule's cycles as rows of (start, lag), padded to the longest history by repeating
    # the first cycle (a start of 1900 never changes the lag)
    depth = max(len(r.cycles) for r in rules)
    padded = [[(None, r.cycles[0][1])] * (depth - len(r.cycles)) + list(r.cycles)
              for r in rules]
    starts = np.array([[np.datetime64(d or "1900-01-01", "D") for d, _ in row]
                       for row in padded])
    lags = np.array([[n for _, n in row] for row in padded])
    trade = pd.to_datetime(fills["trade_date"]).to_numpy().astype("datetime64[D]")
    out = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
    calendars = list(dict.fromkeys(r.calendars for r in rules))  # the groups, in order
    group = np.array([calendars.index(r.calendars) for r in rules])[codes]
    for k, cals in enumerate(calendars):
        mask = group == k if len(calendars) > 1 else np.ones(n, dtype=bool)
        c, t = codes[mask], trade[mask]
        lag = lags[c, 0]
        for e in range(1, depth):
            lag = np.where(t >= starts[c, e], lags[c, e], lag)
        out[mask] = _add_business_days(t, lag, cals)
    return pd.Series(out.astype("datetime64[ns]"), index=fills.index, name="settle_date")


def with_settlement(fills: pd.DataFrame) -> pd.DataFrame:
    """`fills` with `settle_date` filled in."""
    out = fills.copy()
    out["settle_date"] = settlement_dates(fills)
    return out


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
    """The fills' settle dates: the given column where complete, else computed."""
    given = fills["settle_date"] if "settle_date" in fills.columns else None
    if given is not None and given.notna().all():
        return pd.to_datetime(given)
    return settlement_dates(fills)


def settlement_status(fills: pd.DataFrame, as_of: date | str | pd.Timestamp | None = None
                      ) -> pd.Series:
    """Per fill: 'pending' before its settle date, 'settled' on and after it ('unknown'
    without a trade date). `as_of` defaults to today."""
    day = market_day(as_of)
    settle = settle_dates_of(fills)
    status = np.where(settle.isna(), "unknown", np.where(settle > day, "pending", "settled"))
    return pd.Series(status, index=fills.index, name="settlement", dtype=object)
