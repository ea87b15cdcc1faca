"""get_status() over 12 sandbox connections, each with 200 ms of injected latency (set on the
sandbox's paper server, which the connections reach over loopback).

Concurrent (the registry's way) next to one-at-a-time, in the same run.
Target: concurrent under 1.5x a single connection's latency.
"""

from __future__ import annotations

import statistics
import time

from brokerkit import runtime
from brokerkit.config import ConnectionConfig, Settings
from brokerkit.sandbox import Sandbox
from brokerkit.service import BrokerageService

N, LATENCY_MS, RUNS = 12, 200, 5


def settings(url: str) -> Settings:
    conns = {f"paper-{i:02d}": ConnectionConfig(name=f"paper-{i:02d}", type="paper",
                                                 options={"url": url, "broker": "slow"},
                                                 accounts=("DEMO-MARGIN-1", "DEMO-CASH-1"))
             for i in range(N)}
    return Settings(connections=conns, book_url="sqlite://")


async def one_at_a_time(svc: BrokerageService) -> None:
    for name in svc.connections:
        await svc.adapter(name).balances_async()


def main() -> None:
    sandbox = Sandbox()
    url = sandbox.start_servers()["paper"]["url"]
    sandbox.broker("slow").faults.set("*", latency_ms=LATENCY_MS)
    svc = BrokerageService(settings(url))
    svc.connect()
    status = svc.get_status()
    assert status["summary"]["connected"] == N, status["summary"]
    concurrent, serial = [], []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        svc.get_status()
        concurrent.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        runtime.run(one_at_a_time(svc))
        serial.append(time.perf_counter() - t0)
    c, s = statistics.median(concurrent), statistics.median(serial)
    single = LATENCY_MS / 1000
    print(f"{N} connections x {LATENCY_MS} ms injected latency, median of {RUNS} runs")
    print(f"  get_status() concurrent : {c * 1000:8.1f} ms  ({c / single:.2f}x one connection)")
    print(f"  one at a time           : {s * 1000:8.1f} ms  ({s / single:.2f}x one connection)")
    print(f"  speed-up                : {s / c:.1f}x")
    ok = c < 1.5 * single
    print(f"target: concurrent under 1.5x one connection ({1.5 * single * 1000:.0f} ms) -> "
          f"{'MET' if ok else 'MISSED'}")
    svc.close()
    sandbox.stop_servers()


if __name__ == "__main__":
    main()
