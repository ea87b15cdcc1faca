"""Reconciliation of 1,000,000 book rows against 1,000,000 broker rows.

Vectorized `reconcile` next to the row-by-row `reconcile_reference` in the same run, on the
same frames, which are shaped like the real pipeline's (`Reconciler.run`):

- book: what `Book.book_positions_frame()` returns: object columns, one new string object per
  cell (as the database driver hands them over), a row per key, ordered by that key;
- broker: `frames.concat(POSITIONS, ...)` of one frame per connection, as the adapters build
  them (`frames.make(POSITIONS, rows, connection=name)`): pandas string columns (`str`; object
  before pandas 3), the connection one shared object per adapter, account and instrument a new
  string per row, account by account; 1% of quantities differ, 0.1% of positions missing.

Times: `reconcile` 5 times (median, and the best), `reconcile_reference` once on all rows
(about 15 s), and, as a lower bound of it, the best of 3 on a 100,000-row sample scaled x10 (the
reference is slower per row at full size: bigger dicts, more garbage collection). Peak memory
(tracemalloc) of one more run of each (the reference's on the sample). `--quick` skips the
full-size reference run and judges the target on the lower bound.
Targets: under 1 s, at least 50x faster than row by row.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from brokerkit import frames
from brokerkit.post_trade import reconcile, reconcile_reference

N = 1_000_000
SAMPLE = 100_000
CONNECTIONS, ACCOUNTS = 20, 50  # 1,000 (connection, account) pairs, 1,000 instruments


def _strings(fmt: str, values: np.ndarray) -> np.ndarray:
    """A new string object per cell, as a database driver or a JSON parser returns them."""
    out = np.empty(len(values), dtype=object)
    out[:] = [fmt.format(v) for v in values.tolist()]
    return out


def data(n: int, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    idx = np.arange(n)
    conn, acct, inst = idx % CONNECTIONS, (idx // CONNECTIONS) % ACCOUNTS, idx // 1000
    quantity = rng.integers(1, 1000, n).astype("float64")
    # The book in its order, by primary key (connection, account, instrument) as text, its
    # strings made row after row as the database driver does.
    order = pd.DataFrame({"c": _strings("conn-{}", conn), "a": _strings("ACCT-{}", acct),
                          "i": _strings("STK:S{}", inst)}).sort_values(["c", "a", "i"]).index
    b = order.to_numpy()
    book = pd.DataFrame({  # columns and dtypes of Book.book_positions_frame()
        "connection": _strings("conn-{}", conn[b]), "account": _strings("ACCT-{}", acct[b]),
        "instrument": _strings("STK:S{}", inst[b]), "symbol": _strings("S{}", inst[b]),
        "asset_class": _strings("equity", b), "quantity": quantity[b],
        "avg_cost": 100.0, "currency": _strings("USD", b),
        "updated_at": pd.Timestamp("2026-11-20 14:00", tz="UTC"),
        "source": _strings("fills", b)})
    book = book.astype({c: object for c in book.columns if book[c].dtype != "float64"
                        and c != "updated_at"})
    held = rng.choice(n, n - n // 1000, replace=False)  # 0.1% missing at the broker
    broker_q = quantity.copy()
    broker_q[rng.choice(n, n // 100, replace=False)] += 1  # 1% breaks
    as_of = datetime(2026, 11, 20, 14, 3, tzinfo=UTC)
    per_connection = []
    for c in range(CONNECTIONS):  # one adapter's positions() each: account by account
        rows = held[conn[held] == c]
        rows = rows[np.lexsort((inst[rows], acct[rows]))]
        per_connection.append(frames.make(frames.POSITIONS, pd.DataFrame({
            "institution": "Sandbox", "account": _strings("ACCT-{}", acct[rows]),
            "instrument": _strings("STK:S{}", inst[rows]),
            "symbol": _strings("S{}", inst[rows]), "asset_class": "equity",
            "quantity": broker_q[rows], "avg_cost": 100.0, "market_price": 100.0,
            "market_value": broker_q[rows] * 100.0, "currency": "USD", "as_of": as_of}),
            connection=f"conn-{c}"))
    return book, frames.concat(frames.POSITIONS, per_connection)


def measure(fn: Callable[[], object], runs: int) -> tuple[list[float], float, object]:
    """Wall times of `runs` untraced runs, then the peak traced memory of one more run."""
    times, out = [], None
    for _ in range(runs):
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    del out
    gc.collect()
    tracemalloc.start()
    out = fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return times, peak / 2**20, out


def _dtypes(df: pd.DataFrame) -> str:
    return ", ".join(f"{c} {df[c].dtype}" for c in ("connection", "account", "instrument"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="skip the full-size reference run (about 15 s)")
    args = parser.parse_args()

    book, broker = data(N)
    reconcile(book.head(1000), broker.head(1000))  # warm imports
    times, m_fast, out = measure(lambda: reconcile(book, broker), 5)
    t_fast = statistics.median(times)
    counts = {k: v for k, v in out["status"].value_counts().items() if v}  # type: ignore[index]
    del out
    sb = book.head(SAMPLE)  # whole connections (the book is in key order), both sides
    sr = broker[broker["connection"].isin(sb["connection"].unique())]
    ref_sample, m_ref, _ = measure(lambda: reconcile_reference(sb, sr), 3)
    t_ref_scaled = min(ref_sample) * N / SAMPLE
    t_ref = None
    if not args.quick:
        gc.collect()
        t0 = time.perf_counter()
        reconcile_reference(book, broker)
        t_ref = time.perf_counter() - t0

    print(f"{N:,} book rows vs {len(broker):,} broker rows (1% breaks, 0.1% missing)")
    print(f"  input: book like Book.book_positions_frame() ({_dtypes(book)}); broker like "
          f"frames.concat(POSITIONS) of {CONNECTIONS} adapters ({_dtypes(broker)})")
    print(f"  vectorized reconcile   {t_fast:8.3f} s   (median of {len(times)}, best "
          f"{min(times):.3f} s)   peak {m_fast:6.1f} MiB   {counts}")
    if t_ref is not None:
        print(f"  row-by-row reference   {t_ref:8.3f} s   (one run on all rows)")
    print(f"  row-by-row, from sample{t_ref_scaled:8.3f} s   (best of 3 on {len(sb):,} + "
          f"{len(sr):,} rows x{N // SAMPLE}: a lower bound; peak {m_ref:.1f} MiB on the "
          f"sample)")
    ratio = (t_ref if t_ref is not None else t_ref_scaled) / t_fast
    print(f"  speed-up               {ratio:8.1f}x" + (
        f"   ({t_ref_scaled / t_fast:.1f}x against the sample's lower bound)"
        if t_ref is not None else "   (against the sample's lower bound: --quick)"))
    ok = t_fast < 1.0 and ratio >= 50
    print(f"target: under 1 s and at least 50x -> {'MET' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
