"""IB's account value keys from an `AccountSnapshot`: the totals (reqAccountUpdates and
reqAccountSummary tags) and the per-currency ledger (`$LEDGER`, `$LEDGER:CCY`,
`$LEDGER:ALL`; CashBalance, ExchangeRate, NetLiquidationByCurrency, ... per currency and
BASE)."""

from __future__ import annotations

from .state import AccountSnapshot

__all__ = ["LEDGER_TAGS", "account_values", "ledger_rows", "summary_rows"]

Row = tuple[str, str, str]  # tag, value, currency

LEDGER_TAGS = ("CashBalance", "TotalCashBalance", "AccruedCash", "StockMarketValue",
               "OptionMarketValue", "FutureOptionValue", "FuturesPNL",
               "NetLiquidationByCurrency", "UnrealizedPnL", "RealizedPnL", "ExchangeRate",
               "NetDividend")
_NON_MONETARY = {"AccountType", "Cushion", "DayTradesRemaining", "DayTradesRemainingT+1",
                 "DayTradesRemainingT+2", "DayTradesRemainingT+3", "DayTradesRemainingT+4",
                 "Leverage", "Leverage-S", "HighestSeverity", "LookAheadNextChange"}


def _m(x: float) -> str:
    return f"{x:.2f}"


def _totals(s: AccountSnapshot, multiple: float) -> dict[str, str]:
    nlv = s.net_liquidation
    ewl = s.equity_with_loan
    init, maint = s.init_margin, s.maint_margin
    avail, excess = s.available_funds, s.excess_liquidity
    gpv = s.gross_position_value
    bp = max(0.0, avail) * multiple
    return {
        "AccountType": "INDIVIDUAL", "NetLiquidation": _m(nlv),
        "TotalCashValue": _m(s.total_cash), "SettledCash": _m(s.total_settled),
        "AccruedCash": "0.00", "BuyingPower": _m(bp), "EquityWithLoanValue": _m(ewl),
        "PreviousDayEquityWithLoanValue": _m(ewl), "GrossPositionValue": _m(gpv),
        "RegTEquity": _m(ewl), "RegTMargin": _m(init), "SMA": _m(max(0.0, avail)),
        "InitMarginReq": _m(init), "MaintMarginReq": _m(maint), "AvailableFunds": _m(avail),
        "ExcessLiquidity": _m(excess), "Cushion": f"{excess / nlv if nlv else 0.0:.6f}",
        "FullInitMarginReq": _m(init), "FullMaintMarginReq": _m(maint),
        "FullAvailableFunds": _m(avail), "FullExcessLiquidity": _m(excess),
        "LookAheadNextChange": "0", "LookAheadInitMarginReq": _m(init),
        "LookAheadMaintMarginReq": _m(maint), "LookAheadAvailableFunds": _m(avail),
        "LookAheadExcessLiquidity": _m(excess), "HighestSeverity": "0",
        "DayTradesRemaining": "-1", "DayTradesRemainingT+1": "-1",
        "DayTradesRemainingT+2": "-1", "DayTradesRemainingT+3": "-1",
        "DayTradesRemainingT+4": "-1", "Leverage": f"{gpv / nlv if nlv else 0.0:.4f}",
    }


def ledger_rows(s: AccountSnapshot, which: str = "ALL") -> list[Row]:
    """Ledger rows for `which`: "ALL" (every currency and BASE), "BASE", or a currency."""
    ccys = sorted(s.cash, key=lambda c: (c != s.base, c))
    if which == "BASE":
        wanted = ["BASE"]
    elif which == "ALL":
        wanted = [*ccys, "BASE"]
    else:
        wanted = [which] if which in s.cash else []
    rows: list[Row] = []
    for ccy in wanted:
        if ccy == "BASE":
            vals = {"CashBalance": s.total_cash, "TotalCashBalance": s.total_cash,
                    "StockMarketValue": s.in_base(s.stock_value),
                    "OptionMarketValue": s.in_base(s.option_value),
                    "FuturesPNL": s.in_base(s.futures_pnl),
                    "NetLiquidationByCurrency": s.net_liquidation,
                    "UnrealizedPnL": s.in_base(s.unrealized),
                    "RealizedPnL": s.in_base(s.realized)}
            rate = 1.0
        else:
            vals = {"CashBalance": s.cash[ccy], "TotalCashBalance": s.cash[ccy],
                    "StockMarketValue": s.stock_value.get(ccy, 0.0),
                    "OptionMarketValue": s.option_value.get(ccy, 0.0),
                    "FuturesPNL": s.futures_pnl.get(ccy, 0.0),
                    "NetLiquidationByCurrency": s.currency_nlv(ccy),
                    "UnrealizedPnL": s.unrealized.get(ccy, 0.0),
                    "RealizedPnL": s.realized.get(ccy, 0.0)}
            rate = s.rates[ccy]
        for tag in LEDGER_TAGS:
            if tag == "ExchangeRate":
                rows.append((tag, f"{rate:.10f}", ccy))
            else:
                rows.append((tag, _m(vals.get(tag, 0.0)), ccy))
    return rows


def summary_rows(s: AccountSnapshot, tags: list[str], buying_power_multiple: float = 4.0
                 ) -> list[Row]:
    """Account summary rows for the requested tags (unknown tags are skipped)."""
    totals = _totals(s, buying_power_multiple)
    rows: list[Row] = []
    for tag in tags:
        tag = tag.strip()
        if tag.startswith("$LEDGER"):
            _, _, which = tag.partition(":")
            rows += ledger_rows(s, which.upper() or "BASE")
        elif tag in totals:
            rows.append((tag, totals[tag], "" if tag in _NON_MONETARY else s.base))
    return rows


def account_values(s: AccountSnapshot, buying_power_multiple: float = 4.0) -> list[Row]:
    """Every updateAccountValue row, as real TWS sends them (totals, segments, ledger)."""
    totals = _totals(s, buying_power_multiple)
    rows: list[Row] = [("AccountCode", s.account, ""), ("AccountReady", "true", "")]
    for tag, value in totals.items():
        if tag == "Leverage":
            rows.append(("Leverage-S", value, ""))
            continue
        ccy = "" if tag in _NON_MONETARY else s.base
        rows.append((tag, value, ccy))
        if tag in ("InitMarginReq", "MaintMarginReq", "AvailableFunds", "ExcessLiquidity",
                   "EquityWithLoanValue", "NetLiquidation", "TotalCashValue"):
            rows.append((f"{tag}-S", value, ccy))
    for ccy in sorted(s.cash, key=lambda c: (c != s.base, c)):
        rows.append(("Currency", ccy, ccy))
    rows.append(("Currency", "BASE", "BASE"))
    rows += ledger_rows(s, "ALL")
    return rows
