"""Alpaca through brokerkit against the Alpaca sandbox server: overhead and rate-limit use.

1. With the sandbox's rate limit off: orders per second through brokerkit's `place_order`
   (the whole guarded pipeline: checks, journal in a SQLite book, submit, record) next to bare
   alpaca-py `submit_order`, and their ratio (for scale: the sandbox answers in about 2 ms);
   one order at a time, each
   called from the main thread, interleaved. A third line, brokerkit's adapter `submit` alone
   (no checks, no journal), splits the gap into what the pipeline costs and what the adapter
   costs. Every order goes through the runtime loop, and alpaca-py's call runs in a worker
   thread (the hand-overs are part of the pipeline's cost). Last, both again with the
   sandbox's order endpoint answering after 20 ms (the round trip to Alpaca from a nearby
   cloud region), set through the sandbox's control API: that ratio is the one judged
   (target >= 0.95), the cost next to a real broker's round trip.
2. With the sandbox's 200 requests/min on and `on_rate_limit = "wait"`: orders sent as fast as
   the pipeline admits them for at least 70 s (the order in flight then may wait for the next
   window); prints the orders per minute over the whole minutes from the burst's start, the
   server's 429 count (target 0) and the ratio to the limit (target >= 0.95). The pipeline's
   order budget is 192/min, leaving 8 of the server's 200 requests a minute to reads.

Run: `.venv/bin/python benchmarks/alpaca_bench.py [--orders 300] [--seconds 70]`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from brokerkit import runtime
from brokerkit.book import Book
from brokerkit.config import ConnectionConfig, Settings
from brokerkit.execution.service import ExecutionService
from brokerkit.sandbox import get_sandbox
from brokerkit.sandbox.alpaca import start_alpaca
from brokerkit.service import BrokerageService

KEY, SECRET = "PKBENCHKEY", "bench-secret"
ORDER = {"symbol": "AAPL", "side": "buy", "quantity": "0.01"}
RTT_MS, RTT_ORDERS = 20, 100  # a round trip to Alpaca's order API from a nearby region


def _service(url: str, rate_limit: int | None, book: Path, key: str = KEY,
             secret: str = SECRET, **risk: Any) -> ExecutionService:
    os.environ["BROKERKIT_SECRET_BENCH_ALPACA_KEY"] = key
    os.environ["BROKERKIT_SECRET_BENCH_ALPACA_SECRET"] = secret
    options: dict[str, Any] = {"url": url}
    if not rate_limit:
        options["rate_limit"] = False
    else:  # the pipeline's order budget leaves 8 of the server's requests a minute to reads
        options["rate_limit"] = {"requests": rate_limit - 8, "per_seconds": 60}
        options["request_limit"] = rate_limit
    cfg = ConnectionConfig("alpaca", "alpaca", options=options,
                           secrets={"api_key": "bench_alpaca_key",
                                    "secret_key": "bench_alpaca_secret"})
    settings = Settings(connections={"alpaca": cfg}, routing={"default": "alpaca"},
                        book_url=f"sqlite:///{book}",
                        risk={"duplicate_window_seconds": 0, **risk})
    return ExecutionService(BrokerageService(settings), Book(settings.book_url))


def overhead(workdir: Path, n: int) -> float:
    """Orders/s of bare alpaca-py and of `place_order` against the sandbox's Alpaca server
    running in its own process (`brokerkit sandbox`), as a broker would; returns the ratio."""
    import json
    import subprocess
    import sys

    from alpaca.trading.client import TradingClient
    from alpaca.trading.requests import MarketOrderRequest

    proc = subprocess.Popen([sys.executable, "-m", "brokerkit.cli", "sandbox", "--json",
                             "--alpaca-rate-limit", "0"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        servers = json.loads(proc.stdout.readline())["servers"]
        info = servers["alpaca"]
        key, secret = info["credentials"]["key_id"], info["credentials"]["secret_key"]
        client = TradingClient(key, secret, paper=True, url_override=info["url"])
        client._session.trust_env = False

        def bare() -> None:
            client.submit_order(MarketOrderRequest(symbol="AAPL", qty=0.01, side="buy",
                                                   time_in_force="day",
                                                   client_order_id=uuid.uuid4().hex))

        svc = _service(info["url"], None, workdir / "overhead.db", key, secret)

        def kit() -> None:
            result = svc.place_order(ORDER)
            if not result.ok:
                raise SystemExit(f"place_order failed: {result.reason}")

        from brokerkit.execution.service import new_client_order_id
        from brokerkit.model import OrderIntent

        svc.brokerage.connect()
        adapter = svc.brokerage.adapter("alpaca")
        intent = OrderIntent.of(ORDER)

        def unguarded() -> None:  # brokerkit's adapter alone: the sync bridge, no pipeline
            ack = adapter.submit(intent, new_client_order_id())
            if ack.status.value == "REJECTED":
                raise SystemExit(f"adapter submit refused: {ack.reason}")

        sides = (("bare", bare), ("adapter", unguarded), ("kit", kit))
        for _, fn in sides:  # warm up connections, caches and the book
            for _ in range(20):
                fn()
        spent = _interleaved(sides, n)
        bare_rate, kit_rate = n / spent["bare"], n / spent["kit"]
        adapter_rate = n / spent["adapter"]
        print(f"  bare alpaca-py submit_order            {bare_rate:8.1f} orders/s  ({n} orders)")
        print(f"  brokerkit adapter submit, unguarded    {adapter_rate:8.1f} orders/s  "
              f"(ratio {adapter_rate / bare_rate:.3f})")
        print(f"  brokerkit place_order                  {kit_rate:8.1f} orders/s  ({n} orders)")
        ratio = kit_rate / bare_rate
        print(f"  ratio brokerkit / bare                 {ratio:8.3f}  (a 2 ms broker, for scale)")
        print(f"  per order: pipeline {(spent['kit'] - spent['adapter']) / n * 1e6:6.0f} us, "
              f"adapter {(spent['adapter'] - spent['bare']) / n * 1e6:6.0f} us "
              f"over bare")
        # Alpaca's order API as seen from a nearby cloud region: the same, 20 ms per submit
        _set_submit_latency(servers["control"]["url"], RTT_MS)
        far = _interleaved((("bare", bare), ("kit", kit)), RTT_ORDERS)
        ratio = far["bare"] / far["kit"]
        print(f"  with a {RTT_MS} ms round trip per submit: bare {RTT_ORDERS / far['bare']:6.1f}"
              f" orders/s, place_order {RTT_ORDERS / far['kit']:6.1f} orders/s, ratio "
              f"{ratio:.3f}  (target >= 0.95)")
        svc.sync_fills()  # let the background fill pull finish before the server stops
        svc.close()
        svc.brokerage.close()
        return ratio
    finally:
        proc.terminate()
        proc.wait(10)


def _interleaved(sides: tuple[tuple[str, Callable[[], None]], ...], n: int
                 ) -> dict[str, float]:
    """Seconds spent in each side's calls, `n` each, one at a time and interleaved, so all
    see the same server state (its cost grows with its orders)."""
    spent = dict.fromkeys([name for name, _ in sides], 0.0)
    for _ in range(n):
        for name, fn in sides:
            t0 = time.perf_counter()
            fn()
            spent[name] += time.perf_counter() - t0
    return spent


def _set_submit_latency(control_url: str, ms: float) -> None:
    """Through the sandbox's control API: every order POST to its Alpaca server waits."""
    import requests

    with requests.Session() as session:
        session.trust_env = False
        session.post(f"{control_url}/v1/faults", json={
            "broker": "alpaca", "endpoint": "submit", "latency_ms": ms}).raise_for_status()


def rate_limited(sandbox: Any, workdir: Path, seconds: float) -> tuple[float, int]:
    """A burst of orders for `seconds` under the 200/min limit; returns (ratio, 429 count)."""
    server = runtime.run(start_alpaca(sandbox, key_id=KEY, secret_key=SECRET, rate_limit=200,
                                      broker="alpaca-bench"))
    try:
        svc = _service(server.url, server.rate_limit, workdir / "burst.db",
                       on_rate_limit="wait")
        stamps: list[float] = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            result = svc.place_order(ORDER)
            if not result.ok:
                raise SystemExit(f"place_order failed: {result.reason}")
            stamps.append(time.monotonic())
        elapsed = stamps[-1] - t0
        minutes = max(1, int(elapsed // 60))  # whole minutes from the start of the burst
        in_minutes = sum(1 for s in stamps if s < t0 + 60.0 * minutes)
        per_minute = in_minutes / minutes
        limit = server.rate_limit or 0
        ratio = per_minute / limit
        print(f"  orders placed                          {len(stamps):8d}  in {elapsed:.1f} s")
        print(f"  requests the server saw                {sum(server.requests.values()):8d}  "
              f"({server.requests['POST /v2/orders']} order POSTs)")
        print(f"  orders per minute over {minutes} full minute(s) {per_minute:8.1f}  "
              f"(limit {limit}/min)")
        print(f"  ratio to the limit                     {ratio:8.3f}  (target >= 0.95)")
        print(f"  429 responses                          {server.rate_limited:8d}  (target 0)")
        print(f"  requests by route                      {dict(server.requests)}")
        svc.sync_fills()  # let the background fill pull finish before the server stops
        svc.sync_fills()
        svc.brokerage.close()
        return ratio, server.rate_limited
    finally:
        runtime.run(server.close())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=300, help="orders per overhead run")
    parser.add_argument("--seconds", type=float, default=70.0,
                        help="length of the burst (0: measure the overhead only)")
    args = parser.parse_args()
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    sandbox = get_sandbox(4242)
    with tempfile.TemporaryDirectory() as tmp:
        print("1. overhead, the sandbox in its own process with its rate limit off")
        ratio = overhead(Path(tmp), args.orders)
        if args.seconds <= 0:  # overhead only
            print("PASS" if ratio >= 0.95 else "FAIL", "(overhead only: --seconds 0)")
            return
        print(f"2. burst under the 200/min rate limit, on_rate_limit = 'wait', "
              f"{args.seconds:g} s")
        limit_ratio, too_many = rate_limited(sandbox, Path(tmp), args.seconds)
    ok = ratio >= 0.95 and limit_ratio >= 0.95 and too_many == 0
    print("PASS" if ok else "FAIL")


if __name__ == "__main__":
    main()
