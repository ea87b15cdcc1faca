"""Cash from trades: the cash ladder (settled and unsettled cash by settle date) and
good-faith violations in cash accounts. Settle dates come from `post_trade.settlement`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from .settlement import market_day, settle_dates_of

__all__ = ["GOOD_FAITH_COLUMNS", "LADDER_COLUMNS", "cash_ladder", "good_faith_violations"]


def _settling(fills: pd.DataFrame) -> pd.DataFrame:
    """One row per fill: (connection, account, currency, settle_date, receiving, paying):
    a sale receives quantity x price on its settle date, a buy pays it then. Fees are not
    here: brokers take them from settled cash at trade time (see `cash_ladder`)."""
    sell = (fills["side"].astype(str).str.lower() == "sell").to_numpy()
    gross = fills["quantity"].astype("float64").to_numpy() * \
        fills["price"].astype("float64").to_numpy()
    return pd.DataFrame({
        "connection": fills["connection"].to_numpy(),
        "account": fills["account"].fillna("").to_numpy(),
        "currency": fills["currency"].to_numpy(),
        "settle_date": pd.to_datetime(settle_dates_of(fills)).to_numpy(),
        "receiving": np.where(sell, gross, 0.0), "paying": np.where(sell, 0.0, gross)})


LADDER_COLUMNS = ["connection", "account", "currency", "date", "settling", "paying",
                  "settled_cash", "unsettled"]


def cash_ladder(fills: pd.DataFrame, balances: pd.DataFrame,
                as_of: date | str | pd.Timestamp | None = None) -> pd.DataFrame:
    """Settled cash per connection, account and currency, projected forward by settle date.

    The opening figure is `balances.settled_cash` as of `as_of`, in the meaning IBKR gives
    its `SettledCash` ("cash recognized at the time of settlement - purchases at the time of
    trade - commissions - taxes - fees", TWS API account summary tags): buys, and every fee,
    are already out of it on their trade date, while sale proceeds come in only when they
    settle. brokerkit's adapters report that figure (the sandbox computes it the same way:
    trade-date cash less sale proceeds not yet settled). So the ladder adds each sale's
    proceeds on its settle date and never deducts a buy or a fee again.

    One row per (connection, account, currency) for `as_of`, then one per later settle
    date of its fills: `settling` (sale proceeds that settle that day and join settled cash),
    `paying` (the cost of buys that settle that day: paid then, already out of settled cash),
    `settled_cash` (at the end of that day), `unsettled` (sale proceeds traded, not yet
    settled, at the end of that day). Fills settling on or before `as_of` are in the balances
    already and are left out. With no fills, the opening rows. Columns: LADDER_COLUMNS."""
    day = market_day(as_of)
    keys = ["connection", "account", "currency"]
    flows = _settling(fills) if len(fills) else pd.DataFrame(
        {k: pd.Series(dtype=object) for k in keys} | {
            "settle_date": pd.Series(dtype="datetime64[ns]"),
            "receiving": pd.Series(dtype="float64"), "paying": pd.Series(dtype="float64")})
    flows = flows[flows["settle_date"] > day]
    start = balances.assign(account=balances["account"].fillna("")).groupby(
        keys, dropna=False)["settled_cash"].sum().astype("float64").fillna(0.0)
    pending = flows.groupby([*keys, "settle_date"], dropna=False)[["receiving", "paying"]].sum()
    opening = pd.DataFrame({"date": day, "settling": 0.0, "paying": 0.0,
                            "start": start}, index=start.index)
    # every account/currency that has a balance or pending settlements starts the ladder
    missing = pending.index.droplevel("settle_date").unique().difference(start.index)
    if len(missing):
        opening = pd.concat([opening, pd.DataFrame(
            {"date": day, "settling": 0.0, "paying": 0.0, "start": 0.0}, index=missing)])
    later = pending.rename(columns={"receiving": "settling"}).reset_index("settle_date") \
        .rename(columns={"settle_date": "date"})
    ladder = pd.concat([opening.rename_axis(keys).reset_index(),
                        later.rename_axis(keys).reset_index()], ignore_index=True)
    if ladder.empty:
        return pd.DataFrame(columns=LADDER_COLUMNS)
    ladder = ladder.sort_values([*keys, "date"], kind="stable").reset_index(drop=True)
    for col in ("settling", "paying", "start"):
        ladder[col] = ladder[col].astype("float64")
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
    f = fills.assign(account=fills["account"].fillna(""), settle_date=settle_dates_of(fills),
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
