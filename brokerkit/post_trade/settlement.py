"""Settlement: when each trade turns into cash, on real exchange holiday calendars.

The rules are data (`RULES`, one place), read by one mechanism (`settlement_dates`):

=====================================  =========  ==========================================
market                                 lag        counted on
=====================================  =========  ==========================================
US equities, ETFs, options, bonds      T+1        XNYS (T+2 for trades before 2024-05-28)
Canada (TSX)                           T+1        XTSE (T+2 for trades before 2024-05-27)
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
next business day. Everything is vectorized: each calendar's sessions are built once (cached)
and whole columns are moved with `numpy.searchsorted`; no per-row calendar calls.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["CURRENCY_CALENDARS", "RULES", "Rule", "cash_ladder", "good_faith_violations",
           "rule_for", "settlement_dates", "settlement_status", "with_settlement"]


@dataclass(frozen=True)
class Rule:
    """Settle `lag` business days after the trade on `calendars` (all must be open);
    trades before `since` settle `lag_before` days after instead."""

    name: str
    lag: int
    calendars: tuple[str, ...] = ()  # () = calendar days
    since: date | None = None
    lag_before: int | None = None


US = Rule("US T+1", 1, ("XNYS",), date(2024, 5, 28), 2)
CANADA = Rule("Canada T+1", 1, ("XTSE",), date(2024, 5, 27), 2)
UK = Rule("UK T+2", 2, ("XLON",))
JAPAN = Rule("Japan T+2", 2, ("XTKS",))
HONG_KONG = Rule("Hong Kong T+2", 2, ("XHKG",))
SAME_DAY = Rule("T+0", 0)

#: Equity exchanges (as in instrument keys `STK:SAP@XETRA`) and their rules.
EXCHANGE_RULES: Mapping[str, Rule] = {
    "XETRA": Rule("Xetra T+2", 2, ("XETR",)), "XETR": Rule("Xetra T+2", 2, ("XETR",)),
    "FWB": Rule("Frankfurt T+2", 2, ("XFRA",)), "XFRA": Rule("Frankfurt T+2", 2, ("XFRA",)),
    "XPAR": Rule("Paris T+2", 2, ("XPAR",)), "SBF": Rule("Paris T+2", 2, ("XPAR",)),
    "XAMS": Rule("Amsterdam T+2", 2, ("XAMS",)), "AEB": Rule("Amsterdam T+2", 2, ("XAMS",)),
    "LSE": UK, "XLON": UK, "TSE": JAPAN, "XTKS": JAPAN, "SEHK": HONG_KONG, "XHKG": HONG_KONG,
    "TSX": CANADA, "XTSE": CANADA,
}
#: Equities without an exchange in their key, by currency.
CURRENCY_RULES: Mapping[str, Rule] = {"USD": US, "CAD": CANADA, "GBP": UK, "JPY": JAPAN,
                                       "HKD": HONG_KONG,
                                       "EUR": Rule("Xetra T+2", 2, ("XETR",))}
#: The calendar standing for each currency's banking days in FX settlement.
CURRENCY_CALENDARS: Mapping[str, str] = {
    "USD": "XNYS", "EUR": "XFRA", "GBP": "XLON", "JPY": "XTKS", "CAD": "XTSE", "HKD": "XHKG",
    "CHF": "XSWX", "AUD": "XASX",
}
#: FX pairs that settle T+1.
FX_T1 = frozenset({"USDCAD", "CADUSD", "USDTRY", "TRYUSD", "USDPHP", "PHPUSD", "USDRUB",
                   "RUBUSD"})
#: Asset classes settled like their market's equities; the rest are T+0.
SECURITIES = frozenset({"equity", "etf", "option", "bond", "fund"})

RULES: Mapping[str, Any] = {"exchange": EXCHANGE_RULES, "currency": CURRENCY_RULES,
                            "fx_calendars": CURRENCY_CALENDARS, "fx_t1": FX_T1}


def rule_for(asset_class: str, instrument: str, currency: str) -> Rule:
    """The settlement rule of one trade (the per-row form of what `settlement_dates` does
    per group)."""
    ac = (asset_class or "").lower()
    if ac in ("crypto", "future"):
        return SAME_DAY
    if ac == "fx":
        pair = instrument.split(":", 1)[-1].replace(".", "").replace("/", "").upper()
        cals = tuple(dict.fromkeys(CURRENCY_CALENDARS.get(c, "XNYS")
                                   for c in (pair[:3], pair[3:6])))
        return Rule(f"FX {pair}", 1 if pair in FX_T1 else 2, cals)
    if ac in SECURITIES:
        _, _, exchange = instrument.partition("@")
        if exchange:
            return EXCHANGE_RULES.get(exchange.upper(), US)
        return CURRENCY_RULES.get((currency or "USD").upper(), US)
    return SAME_DAY


@functools.lru_cache(maxsize=64)
def _sessions(calendars: tuple[str, ...]) -> np.ndarray:
    """Business days (datetime64[D]) open on every calendar in `calendars`, 2000 to two
    years ahead; built once per set."""
    import exchange_calendars as xcals

    end = pd.Timestamp.today().normalize() + pd.DateOffset(years=2)
    days: np.ndarray | None = None
    for name in calendars:
        with warnings.catch_warnings():  # exchange_calendars 4.13 on pandas 3.1 warns inside
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            cal = xcals.get_calendar(name, start="2000-01-03", end=end.strftime("%Y-%m-%d"))
        s = cal.sessions.to_numpy().astype("datetime64[D]")
        days = s if days is None else np.intersect1d(days, s, assume_unique=True)
    assert days is not None
    return days


def _add_business_days(trade: np.ndarray, lag: np.ndarray, calendars: tuple[str, ...]
                       ) -> np.ndarray:
    """trade dates (datetime64[D]) moved `lag` business days on `calendars`, vectorized."""
    if not calendars:
        return trade + lag.astype("timedelta64[D]")
    days = _sessions(calendars)
    i = np.searchsorted(days, trade, side="left") + lag
    out = np.full(len(trade), np.datetime64("NaT"), dtype="datetime64[D]")
    ok = (i < len(days)) & ~np.isnat(trade)
    out[ok] = days[i[ok]]
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
        c, uniq = pd.factorize(fills[name].to_numpy(dtype=object), use_na_sentinel=False)
        combined = combined * (len(uniq) + 1) + c
    codes, uniq_combined = pd.factorize(combined)
    first = np.full(len(uniq_combined), -1, dtype=np.int64)
    first[codes[::-1]] = np.arange(n - 1, -1, -1)
    cols = [fills[c].to_numpy(dtype=object)[first] for c in ("asset_class", "instrument",
                                                             "currency")]
    rules = [rule_for(str(a or ""), str(i or ""), str(c or "USD"))
             for a, i, c in zip(*cols, strict=True)]
    lag_now = np.array([r.lag for r in rules])
    lag_old = np.array([r.lag if r.lag_before is None else r.lag_before for r in rules])
    since = np.array([np.datetime64(r.since or "1900-01-01", "D") for r in rules])
    trade = pd.to_datetime(fills["trade_date"]).to_numpy().astype("datetime64[D]")
    out = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
    by_cal: dict[tuple[str, ...], list[int]] = {}
    for r_i, rule in enumerate(rules):
        by_cal.setdefault(rule.calendars, []).append(r_i)
    for cals, members in by_cal.items():
        mask = np.isin(codes, members) if len(by_cal) > 1 else np.ones(n, dtype=bool)
        c, t = codes[mask], trade[mask]
        out[mask] = _add_business_days(t, np.where(t >= since[c], lag_now[c], lag_old[c]), cals)
    return pd.Series(out.astype("datetime64[ns]"), index=fills.index, name="settle_date")


def with_settlement(fills: pd.DataFrame) -> pd.DataFrame:
    """`fills` with `settle_date` filled in."""
    out = fills.copy()
    out["settle_date"] = settlement_dates(fills)
    return out


def settlement_status(fills: pd.DataFrame, as_of: date | pd.Timestamp | None = None
                      ) -> pd.Series:
    """'pending' until a fill's settle date, 'settled' on and after it."""
    day = pd.Timestamp(as_of or pd.Timestamp.today()).normalize()
    settle = fills["settle_date"] if fills["settle_date"].notna().all() \
        else settlement_dates(fills)
    return pd.Series(np.where(settle > day, "pending", "settled"), index=fills.index,
                     name="settlement")


def _cash_flow(fills: pd.DataFrame) -> pd.Series:
    """Cash each fill moves, in its currency: sales bring it in, buys pay it; fees paid."""
    sign = np.where(fills["side"].astype(str).str.lower() == "sell", 1.0, -1.0)
    gross = fills["quantity"].astype("float64") * fills["price"].astype("float64")
    fee = fills["fee"].astype("float64").fillna(0.0)
    return pd.Series(sign * gross - fee, index=fills.index)


def cash_ladder(fills: pd.DataFrame, balances: pd.DataFrame,
                as_of: date | pd.Timestamp | None = None) -> pd.DataFrame:
    """Settled and unsettled cash by account, currency and date, projected forward.

    One row per account and currency for `as_of`, and one per later settlement date:
    `settling` (cash that settles that day), `settled_cash` (settled cash at the end of that
    day), `unsettled` (cash traded but not yet settled then)."""
    day = pd.Timestamp(as_of or pd.Timestamp.today()).normalize()
    f = with_settlement(fills) if fills["settle_date"].isna().any() else fills
    f = f.assign(flow=_cash_flow(f))
    pending = f[f["settle_date"] > day]
    keys = ["connection", "account", "currency"]
    start = balances.groupby(keys, dropna=False)["settled_cash"].sum()
    flows = pending.groupby([*keys, "settle_date"], dropna=False)["flow"].sum()
    frames = []
    for key, settled in start.items():
        sub = flows[flows.index.droplevel("settle_date") == key] if len(flows) else flows
        dates = [day, *(d for d in sub.index.get_level_values("settle_date"))]
        settling = [0.0, *sub.to_numpy()]
        cum = np.cumsum(settling)
        total_pending = float(sub.sum()) if len(sub) else 0.0
        frames.append(pd.DataFrame({
            "connection": key[0], "account": key[1], "currency": key[2], "date": dates,
            "settling": settling, "settled_cash": settled + cum,
            "unsettled": total_pending - cum}))
    if not frames:
        return pd.DataFrame(columns=[*keys, "date", "settling", "settled_cash", "unsettled"])
    return pd.concat(frames, ignore_index=True)


def good_faith_violations(fills: pd.DataFrame, opening_settled_cash: Mapping[tuple[str, str],
                                                                             float],
                          account_types: Mapping[tuple[str, str], str]) -> pd.DataFrame:
    """Good-faith violations in cash accounts: a position bought with unsettled sale
    proceeds and sold before those proceeds settled.

    `opening_settled_cash[(connection, account)]` is the settled cash before the first fill
    given; `account_types[(connection, account)]` is 'cash' or 'margin' (margin accounts
    cannot commit one). Returns one row per violating sale, explained."""
    cols = ["connection", "account", "instrument", "buy_fill", "sell_fill", "trade_date",
            "funds_settle", "explanation"]
    f = with_settlement(fills) if fills["settle_date"].isna().any() else fills
    rows: list[dict[str, Any]] = []
    for (conn, acct), group in f.sort_values("executed_at").groupby(["connection",
                                                                     "account"]):
        if account_types.get((conn, acct)) != "cash":
            continue
        settled = float(opening_settled_cash.get((conn, acct), 0.0))
        proceeds: list[tuple[pd.Timestamp, float]] = []  # unsettled sale proceeds
        lots: dict[str, list[tuple[Any, pd.Timestamp | None]]] = {}
        for fill in group.itertuples(index=False):
            today = pd.Timestamp(fill.trade_date)
            for when, amount in [p for p in proceeds if p[0] <= today]:
                settled += amount
                proceeds.remove((when, amount))
            gross = float(fill.quantity) * float(fill.price)
            fee = float(fill.fee) if fill.fee == fill.fee and fill.fee is not None else 0.0
            cost = gross + fee
            if str(fill.side).lower() == "buy":
                funds_settle = None
                if cost > settled + 1e-9:  # paid partly with unsettled proceeds
                    short = cost - max(settled, 0.0)
                    for when, amount in sorted(proceeds):
                        funds_settle = when
                        short -= amount
                        if short <= 0:
                            break
                settled -= cost
                lots.setdefault(fill.instrument, []).append((fill.fill_id, funds_settle))
            else:
                proceeds.append((pd.Timestamp(fill.settle_date), gross - fee))
                # a sale of any part of a position closes out its lots' good-faith question
                for buy_id, funds_settle in lots.pop(fill.instrument, []):
                    if funds_settle is not None and today < funds_settle:
                        rows.append({
                            "connection": conn, "account": acct,
                            "instrument": fill.instrument, "buy_fill": buy_id,
                            "sell_fill": fill.fill_id, "trade_date": today,
                            "funds_settle": funds_settle,
                            "explanation": f"{fill.instrument} bought ({buy_id}) with sale "
                                           f"proceeds settling {funds_settle:%Y-%m-%d} and "
                                           f"sold ({fill.fill_id}) on {today:%Y-%m-%d}, "
                                           f"before they settled"})
    return pd.DataFrame(rows, columns=cols)
