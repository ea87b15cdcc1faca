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
           "GOOD_FAITH_COLUMNS", "HONG_KONG", "JAPAN", "LADDER_COLUMNS", "RULES", "SAME_DAY",
           "SECURITIES", "UK", "US", "Rule", "cash_ladder", "good_faith_violations",
           "market_today", "rule_for", "settlement_dates", "settlement_status",
           "with_settlement"]


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


def _day(as_of: date | str | pd.Timestamp | None) -> pd.Timestamp:
    """`as_of` as a naive midnight (a tz-aware time is taken at its own date); the market's
    today when None."""
    if as_of is None:
        return market_today()
    day = pd.Timestamp(as_of)
    return day.tz_localize(None).normalize() if day.tzinfo else day.normalize()


def _settle(fills: pd.DataFrame) -> pd.Series:
    """The fills' settle dates: the given column where complete, else computed."""
    given = fills["settle_date"] if "settle_date" in fills.columns else None
    if given is not None and given.notna().all():
        return pd.to_datetime(given)
    return settlement_dates(fills)


def settlement_status(fills: pd.DataFrame, as_of: date | str | pd.Timestamp | None = None
                      ) -> pd.Series:
    """Per fill: 'pending' before its settle date, 'settled' on and after it ('unknown'
    without a trade date). `as_of` defaults to today."""
    day = _day(as_of)
    settle = _settle(fills)
    status = np.where(settle.isna(), "unknown", np.where(settle > day, "pending", "settled"))
    return pd.Series(status, index=fills.index, name="settlement", dtype=object)


def _cash_flows(fills: pd.DataFrame) -> pd.DataFrame:
    """One row per cash movement: (connection, account, currency, settle_date, amount). Sales
    bring in quantity x price, buys pay it, fees are paid in `fee_currency` (else the
    trade's currency)."""
    sign = np.where(fills["side"].astype(str).str.lower() == "sell", 1.0, -1.0)
    gross = fills["quantity"].astype("float64").to_numpy() * \
        fills["price"].astype("float64").to_numpy()
    fee = fills["fee"].astype("float64").fillna(0.0).to_numpy() if "fee" in fills.columns \
        else np.zeros(len(fills))
    fee_ccy = fills["fee_currency"].fillna(fills["currency"]) if "fee_currency" in \
        fills.columns else fills["currency"]
    keys = {"connection": fills["connection"], "account": fills["account"].fillna(""),
            "settle_date": _settle(fills)}
    trade = pd.DataFrame({**keys, "currency": fills["currency"], "amount": sign * gross})
    fees = pd.DataFrame({**keys, "currency": fee_ccy, "amount": -fee})
    return pd.concat([trade, fees[fee != 0]], ignore_index=True)


LADDER_COLUMNS = ["connection", "account", "currency", "date", "settling", "settled_cash",
                  "unsettled"]


def cash_ladder(fills: pd.DataFrame, balances: pd.DataFrame,
                as_of: date | str | pd.Timestamp | None = None) -> pd.DataFrame:
    """Settled and unsettled cash per connection, account and currency, projected forward by
    settle date.

    `balances.settled_cash` is taken as of `as_of` (fills settling on or before it are in
    it). One row per (connection, account, currency) for `as_of`, then one per later settle
    date: `settling` (cash that settles that day), `settled_cash` (at the end of that day),
    `unsettled` (traded, not yet settled, at the end of that day). Columns: LADDER_COLUMNS."""
    day = _day(as_of)
    keys = ["connection", "account", "currency"]
    flows = _cash_flows(fills) if len(fills) else pd.DataFrame(
        columns=[*keys, "settle_date", "amount"])
    flows = flows[pd.to_datetime(flows["settle_date"]) > day]
    start = balances.assign(account=balances["account"].fillna("")).groupby(
        keys, dropna=False)["settled_cash"].sum().fillna(0.0)
    pending = flows.groupby([*keys, "settle_date"], dropna=False)["amount"].sum()
    opening = pd.DataFrame({"date": day, "settling": 0.0, "start": start})
    # every account/currency that has a balance or pending flows starts the ladder
    missing = pending.index.droplevel("settle_date").unique().difference(start.index)
    opening = pd.concat([opening, pd.DataFrame({"date": day, "settling": 0.0, "start": 0.0},
                                               index=missing)])
    later = pending.rename("settling").reset_index("settle_date").rename(
        columns={"settle_date": "date"})
    ladder = pd.concat([opening.rename_axis(keys).reset_index(),
                        later.rename_axis(keys).reset_index()], ignore_index=True)
    if ladder.empty:
        return pd.DataFrame(columns=LADDER_COLUMNS)
    ladder = ladder.sort_values([*keys, "date"], kind="stable").reset_index(drop=True)
    by_key = ladder.groupby(keys, dropna=False, sort=False)
    ladder["start"] = by_key["start"].transform("first")
    settled_so_far = by_key["settling"].cumsum()
    ladder["settled_cash"] = ladder["start"] + settled_so_far
    ladder["unsettled"] = by_key["settling"].transform("sum") - settled_so_far
    return ladder[LADDER_COLUMNS]


GOOD_FAITH_COLUMNS = ["connection", "account", "currency", "instrument", "buy_fill",
                      "sell_fill", "funded_by", "trade_date", "funds_settle", "explanation"]


def _opening_cash(source: pd.DataFrame | Mapping[tuple, float]) -> dict[tuple, float]:
    """{(connection, account, currency) or (connection, account): settled cash}."""
    if isinstance(source, pd.DataFrame):
        df = source.assign(account=source["account"].fillna(""))
        sums = df.groupby(["connection", "account", "currency"])["settled_cash"].sum()
        return {tuple(k): float(v) for k, v in sums.items()}
    return {tuple(k): float(v) for k, v in source.items()}


def _account_type(types: Mapping[Any, str], conn: str, acct: str) -> str:
    kind = types.get((conn, acct), types.get(acct, "margin"))
    kind = str(kind).lower()
    if kind not in ("cash", "margin"):
        raise ValueError(f"account type of {conn}/{acct} must be 'cash' or 'margin', "
                         f"got {kind!r}")
    return kind


def good_faith_violations(fills: pd.DataFrame,
                          balances_or_accounts: pd.DataFrame | Mapping[tuple, float],
                          account_types: Mapping[Any, str]) -> pd.DataFrame:
    """Good-faith violations in cash accounts: a position bought with unsettled sale proceeds
    and sold before those proceeds settled. Returns one row per (buy, sale) at fault, with
    the sales that funded the buy (GOOD_FAITH_COLUMNS).

    `balances_or_accounts` gives the settled cash before the first fill: a BALANCES frame
    (settled_cash per connection, account, currency) or {(connection, account[, currency]):
    amount}. `account_types` maps (connection, account) or account to 'cash' or 'margin'
    (accounts not listed are margin, which cannot commit one). Buys spend settled cash
    first, then unsettled proceeds in settle-date order; sales close lots first in, first
    out. The walk is sequential by nature, so it loops over cash-account fills only."""
    if fills.empty:
        return pd.DataFrame(columns=GOOD_FAITH_COLUMNS)
    opening = _opening_cash(balances_or_accounts)
    f = fills.assign(account=fills["account"].fillna(""), settle_date=_settle(fills),
                     trade_date=pd.to_datetime(fills["trade_date"]))
    f = f.sort_values(["executed_at", "trade_date"], kind="stable")
    rows: list[dict[str, Any]] = []
    for (conn, acct, ccy), group in f.groupby(["connection", "account", "currency"],
                                              sort=False):
        if _account_type(account_types, conn, acct) != "cash":
            continue
        cash = opening.get((conn, acct, ccy), opening.get((conn, acct), 0.0))
        rows += _walk(group, conn, acct, ccy, cash)
    return pd.DataFrame(rows, columns=GOOD_FAITH_COLUMNS)


def _walk(fills: pd.DataFrame, conn: str, acct: str, ccy: str, settled: float
          ) -> list[dict[str, Any]]:
    """The violations of one cash account in one currency (see `good_faith_violations`)."""
    proceeds: list[list[Any]] = []  # [settle date, amount left, sale fill id], by date
    lots: dict[str, list[list[Any]]] = {}  # instrument -> [qty left, buy id, date, funds]
    out: list[dict[str, Any]] = []
    for x in fills.itertuples(index=False):
        today = pd.Timestamp(x.trade_date)
        for p in [p for p in proceeds if p[0] <= today]:  # matured proceeds are settled
            settled += p[1]
            proceeds.remove(p)
        fee = float(x.fee) if pd.notna(getattr(x, "fee", None)) else 0.0
        amount = float(x.quantity) * float(x.price)
        if str(x.side).lower() == "buy":
            need = amount + fee
            from_settled = min(max(settled, 0.0), need)
            settled -= from_settled
            need -= from_settled
            funds: list[tuple[pd.Timestamp, str]] = []
            for p in sorted(proceeds, key=lambda p: p[0]):
                if need <= 1e-9:
                    break
                used = min(p[1], need)
                if used > 0:
                    p[1] -= used
                    need -= used
                    funds.append((p[0], p[2]))
            settled -= need  # beyond every source: a debit, not a good-faith question
            lots.setdefault(x.instrument, []).append([float(x.quantity), x.fill_id, today,
                                                      funds])
            continue
        proceeds.append([pd.Timestamp(x.settle_date), amount - fee, x.fill_id])
        left = float(x.quantity)
        queue = lots.get(x.instrument, [])
        while left > 1e-12 and queue:
            lot = queue[0]
            taken = min(lot[0], left)
            lot[0] -= taken
            left -= taken
            if lot[0] <= 1e-12:
                queue.pop(0)
            unsettled = [(when, sale) for when, sale in lot[3] if today < when]
            if unsettled:
                funds_settle = max(when for when, _ in unsettled)
                sales = ", ".join(sale for _, sale in unsettled)
                out.append({
                    "connection": conn, "account": acct, "currency": ccy,
                    "instrument": x.instrument, "buy_fill": lot[1], "sell_fill": x.fill_id,
                    "funded_by": sales, "trade_date": today, "funds_settle": funds_settle,
                    "explanation": f"{x.instrument} bought {lot[2]:%Y-%m-%d} ({lot[1]}) with "
                                   f"unsettled proceeds of {sales} (settling "
                                   f"{funds_settle:%Y-%m-%d}) and sold {today:%Y-%m-%d} "
                                   f"({x.fill_id}) before they settled"})
    return out
