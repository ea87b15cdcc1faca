"""IBKR through brokerkit against the sandbox TWS gateway, next to bare ib_async in the same run.

The gateway runs in its own process (`brokerkit sandbox`), as TWS would. Printed side by side:

1. Connect: time from nothing to a synchronised session (handshake, start-up requests with
   positions, orders, account updates and executions) for bare `IB.connectAsync` and for
   `IBKRAdapter.connect()` (which adds client-id management and event wiring); median, p90,
   and the adapter's extra cost.
2. What-if: the margin impact of an order, bare `IB.whatIfOrderAsync` on a qualified contract
   next to `IBKRAdapter.what_if` (which validates the intent, finds the contract in its cache
   and returns a `frames.WHAT_IF` frame); median, p99, and the ratio. Requests are paced
   at 40/s, under ib_async's own throttle (45 requests/s), so each time is one round trip.

Run: `.venv/bin/python benchmarks/ibkr_bench.py [--connects 20] [--what-ifs 200]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from brokerkit import runtime
from brokerkit.adapters.ibkr import IBKRAdapter
from brokerkit.config import ConnectionConfig

#: Seconds between what-ifs: ib_async throttles itself to 45 requests/s (TWS allows 50
#: messages/s), so back-to-back requests would time its queue, not the round trip.
PACE = 0.025


def _ms(samples: list[float]) -> tuple[float, float, float]:
    s = sorted(samples)
    return (statistics.median(s) * 1e3, s[int(len(s) * 0.9)] * 1e3,
            s[min(len(s) - 1, int(len(s) * 0.99))] * 1e3)


async def _time(fn: Callable[[], Awaitable[Any]], n: int, every: float = 0.0) -> list[float]:
    """`n` timed calls, started at least `every` seconds apart."""
    import asyncio

    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t0)
        if every:
            await asyncio.sleep(max(0.0, every - (time.perf_counter() - t0)))
    return out


async def connects(host: str, port: int, n: int) -> tuple[list[float], list[float]]:
    from ib_async import IB

    async def bare() -> None:
        ib = IB()
        await ib.connectAsync(host, port, clientId=900, timeout=4)
        ib.disconnect()

    adapter = IBKRAdapter(ConnectionConfig("bench", "ibkr", options={
        "host": host, "port": port, "client_id": 901}))

    async def ours() -> None:
        await adapter.connect_async()
        await adapter.close_async()

    await bare()  # warm both paths (imports, first contract)
    await ours()
    bare_t, ours_t = [], []
    for _ in range(n):  # interleaved, so drift on a shared machine hits both alike
        bare_t += await _time(bare, 1)
        ours_t += await _time(ours, 1)
    return bare_t, ours_t


async def what_ifs(host: str, port: int, n: int) -> tuple[list[float], list[float]]:
    from ib_async import IB, MarketOrder, Stock

    ib = IB()
    await ib.connectAsync(host, port, clientId=902, timeout=4)
    [contract] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
    account = ib.managedAccounts()[0]

    async def bare() -> None:
        state = await ib.whatIfOrderAsync(contract, MarketOrder("BUY", 100, account=account))
        assert float(state.initMarginChange) > 0

    adapter = IBKRAdapter(ConnectionConfig("bench", "ibkr", options={
        "host": host, "port": port, "client_id": 903}))
    await adapter.connect_async()
    intent = {"symbol": "AAPL", "side": "buy", "quantity": 100}

    async def ours() -> None:
        df = await adapter.what_if_async(intent)
        assert df["initial_margin_change"].iloc[0] > 0

    await bare()
    await ours()
    bare_t, ours_t = [], []
    for _ in range(n // 10):  # paced under ib_async's own 45 requests/s throttle
        bare_t += await _time(bare, 10, PACE)
        ours_t += await _time(ours, 10, PACE)
    ib.disconnect()
    await adapter.close_async()
    return bare_t, ours_t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connects", type=int, default=20)
    ap.add_argument("--what-ifs", type=int, default=200)
    args = ap.parse_args()
    proc = subprocess.Popen([sys.executable, "-m", "brokerkit.cli", "sandbox", "--json"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())["servers"]["tws"]
        host, port = str(info["host"]), int(info["port"])
        print(f"sandbox TWS gateway {host}:{port} (own process), server version "
              f"{info.get('server_version', '?')}")
        bare_c, ours_c = runtime.run(connects(host, port, args.connects), timeout=600)
        bare_w, ours_w = runtime.run(what_ifs(host, port, args.what_ifs), timeout=600)
    finally:
        proc.terminate()
        proc.wait(10)
    print()
    print(f"{'':34}{'median ms':>11}{'p90 ms':>9}{'p99 ms':>9}")
    for label, samples in (("connect, bare ib_async", bare_c),
                           ("connect, IBKRAdapter", ours_c),
                           ("what-if, bare ib_async", bare_w),
                           ("what-if, IBKRAdapter (frame)", ours_w)):
        med, p90, p99 = _ms(samples)
        print(f"{label:34}{med:11.2f}{p90:9.2f}{p99:9.2f}")
    print()
    c_ratio = statistics.median(ours_c) / statistics.median(bare_c)
    w_ratio = statistics.median(ours_w) / statistics.median(bare_w)
    print(f"connect: adapter / bare = {c_ratio:.2f}x "
          f"(+{(statistics.median(ours_c) - statistics.median(bare_c)) * 1e3:.2f} ms)")
    print(f"what-if: adapter / bare = {w_ratio:.2f}x "
          f"(+{(statistics.median(ours_w) - statistics.median(bare_w)) * 1e3:.2f} ms)")
    print("target: none numeric; the adapter's figures side by side with bare ib_async's")


if __name__ == "__main__":
    main()
