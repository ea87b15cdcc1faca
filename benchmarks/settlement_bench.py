"""Settlement dates for 1,000,000 fills: vectorized next to per-row calendar calls.

The per-row way asks exchange_calendars for each fill (`rule_for` then `calendar.session_offset`
on the next session), on a 2,000-row sample scaled linearly (it is linear); the output says so.
Targets: under 0.5 s, at least 100x faster.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from brokerkit.post_trade.settlement import _sessions, rule_for, settlement_dates

N, SAMPLE = 1_000_000, 2_000
MIX = [("STK:AAPL", "equity", "USD"), ("STK:SPY", "etf", "USD"),
       ("STK:VOD@LSE", "equity", "GBP"), ("STK:SAP@XETRA", "equity", "EUR"),
       ("STK:7203@TSE", "equity", "JPY"), ("CASH:EUR.USD", "fx", "USD"),
       ("CASH:USD.CAD", "fx", "CAD"), ("CRYPTO:BTC/USD", "crypto", "USD")]


def fills(n: int, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(MIX), n)
    days = pd.Timestamp("2023-01-02") + pd.to_timedelta(rng.integers(0, 1400, n), unit="D")
    return pd.DataFrame({"instrument": [MIX[i][0] for i in pick],
                         "asset_class": [MIX[i][1] for i in pick],
                         "currency": [MIX[i][2] for i in pick], "trade_date": days})


def per_row(df: pd.DataFrame) -> list[pd.Timestamp]:
    import exchange_calendars as xcals

    out = []
    for row in df.itertuples(index=False):
        rule = rule_for(row.asset_class, row.instrument, row.currency)
        day = pd.Timestamp(row.trade_date)
        lag = rule.lag if rule.since is None or day.date() >= rule.since else rule.lag_before
        if not rule.calendars:
            out.append(day + pd.Timedelta(days=lag))
            continue
        cals = [xcals.get_calendar(c) for c in rule.calendars]  # cached by exchange_calendars
        while not all(c.is_session(day) for c in cals):
            day += pd.Timedelta(days=1)
        for _ in range(lag):
            day += pd.Timedelta(days=1)
            while not all(c.is_session(day) for c in cals):
                day += pd.Timedelta(days=1)
        out.append(day)
    return out


def main() -> None:
    df = fills(N)
    for cals in {rule_for(a, i, c).calendars for i, a, c in MIX}:
        if cals:
            _sessions(cals)  # calendars are built once per process, as in a running service
    settlement_dates(df.head(100))
    t0 = time.perf_counter()
    fast = settlement_dates(df)
    t_fast = time.perf_counter() - t0
    sample = df.head(SAMPLE)
    t0 = time.perf_counter()
    slow = per_row(sample)
    t_slow = (time.perf_counter() - t0) * N / SAMPLE
    agree = (pd.Series(slow) == fast.head(SAMPLE).reset_index(drop=True)).mean()
    print(f"settlement dates for {N:,} fills ({len(MIX)} markets, 2023-2026)")
    print(f"  vectorized            {t_fast:8.3f} s")
    print(f"  per-row calendar calls {t_slow:7.1f} s   (measured on {SAMPLE:,} rows, scaled "
          f"x{N // SAMPLE})   agreement on the sample: {agree:.1%}")
    ratio = t_slow / t_fast
    print(f"  speed-up              {ratio:8.0f}x")
    ok = t_fast < 0.5 and ratio >= 100
    print(f"target: under 0.5 s and at least 100x -> {'MET' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
