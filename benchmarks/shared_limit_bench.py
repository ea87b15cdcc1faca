"""Two processes on one Alpaca key: together within its 200 requests/min, using >= 95% of it.

The sandbox runs in its own process (`brokerkit sandbox --json --home <tmp>`, its Alpaca
server at 200 requests/min, like Alpaca's "200 requests per minute, per account":
alpaca.markets/support/usage-limit-api-calls). Two worker processes, each with its own
`BrokerageService` and `ExecutionService` on one book (SQLite by default, `--book-url` for
PostgreSQL) and the same API key, place orders one after another with
`on_rate_limit = "wait"` for `--seconds` (default 70), starting together. As in
`alpaca_bench.py`, the pipeline's order budget is 192/min (`rate_limit`) and the adapter's
request budget 200/min (`request_limit`), so reads get 8 a minute and are otherwise served
from their last answer. Their limiters
share one budget per key through the book (`brokerkit.execution.sharedlimit`). Each worker
counts the 429 answers its SDK sessions receive (a response hook on each session).

Prints the combined orders per minute over the whole minutes from the start, as % of 200
(target >= 95%), the 429 count (target 0), and the book transactions the leases cost.

Run: `.venv/bin/python benchmarks/shared_limit_bench.py [--seconds 70] [--book-url URL]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from bisect import bisect_left
from pathlib import Path
from typing import Any

LIMIT = 200  # the sandbox's Alpaca requests per minute (`brokerkit sandbox` default)
READS = 8  # of them, left to reads each minute (positions, balances, fills...)
ORDER = {"symbol": "AAPL", "side": "buy", "quantity": "0.01"}


def worker(url: str, key: str, secret: str, book_url: str, start: float, seconds: float
           ) -> dict[str, Any]:
    """One process: place orders from `start` for `seconds`; its admissions and 429s."""
    from brokerkit.book import Book
    from brokerkit.config import ConnectionConfig, Settings
    from brokerkit.execution.service import ExecutionService
    from brokerkit.service import BrokerageService

    os.environ["BROKERKIT_SECRET_BENCH_SHARED_KEY"] = key
    os.environ["BROKERKIT_SECRET_BENCH_SHARED_SECRET"] = secret
    # as in alpaca_bench: the pipeline's order budget leaves 8 of the 200 requests a minute
    # to reads; all three budgets (orders, requests, reads) are shared per key
    options = {"url": url, "rate_limit": {"requests": LIMIT - READS, "per_seconds": 60},
               "request_limit": LIMIT}
    cfg = ConnectionConfig("alpaca", "alpaca", options=options,
                           secrets={"api_key": "bench_shared_key",
                                    "secret_key": "bench_shared_secret"})
    settings = Settings(connections={"alpaca": cfg}, routing={"default": "alpaca"},
                        book_url=book_url,
                        risk={"duplicate_window_seconds": 0, "on_rate_limit": "wait"})
    svc = ExecutionService(BrokerageService(settings), Book(book_url))
    svc.brokerage.connect()
    adapter = svc.brokerage.adapter("alpaca")
    seen = {"429": 0, "requests": 0}
    routes: dict[str, int] = {}
    sent: list[float] = []  # when each trading-API answer came (data API: its own bucket)

    def count(response: Any, *args: Any, **kwargs: Any) -> None:
        seen["requests"] += 1
        if "/v2/stocks/" not in response.request.path_url:
            sent.append(time.time())
        if response.status_code == 429:
            seen["429"] += 1
        route = f"{response.request.method} {response.request.path_url.split('?')[0]}"
        routes[route] = routes.get(route, 0) + 1

    for client in (adapter._trading, adapter._orders, adapter._stocks, adapter._crypto):
        client._session.hooks["response"].append(count)
    stamps: list[float] = []
    failed: dict[str, int] = {}
    time.sleep(max(0.0, start - time.time()))
    while time.time() < start + seconds:
        result = svc.place_order(ORDER)
        if result.ok:
            stamps.append(time.time())
        else:
            failed[result.reason[:80]] = failed.get(result.reason[:80], 0) + 1
    svc.sync_fills()
    svc.close()
    svc.brokerage.close()
    return {"stamps": stamps, "too_many": seen["429"], "requests": seen["requests"],
            "failed": failed, "routes": routes, "sent": sent}


def _count_leases(book: Any) -> int:
    """Lease rows ever inserted (ids only grow): the book transactions that granted units."""
    import sqlalchemy as sa

    from brokerkit.book.tables import rate_leases

    with book.connect() as conn:
        return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(rate_leases.c.id), 0)))
                   .scalar_one())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=70.0, help="length of the burst")
    parser.add_argument("--book-url", help="the shared book (default: a SQLite file)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # JSON arguments of one worker
    args = parser.parse_args()
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    if args.worker:
        print(json.dumps(worker(**json.loads(args.worker))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        book_url = args.book_url or f"sqlite:///{Path(tmp) / 'book.db'}"
        sandbox = subprocess.Popen([sys.executable, "-m", "brokerkit.cli", "sandbox", "--json",
                                    "--home", str(Path(tmp) / "sandbox"),
                                    "--alpaca-rate-limit", str(LIMIT)],
                                   stdout=subprocess.PIPE, text=True)
        try:
            assert sandbox.stdout is not None
            info = json.loads(sandbox.stdout.readline())["servers"]["alpaca"]
            from brokerkit.book import Book

            Book(book_url).close()  # migrated once, before the workers start
            start = time.time() + 10.0  # both import and connect first
            spec = {"url": info["url"], "key": info["credentials"]["key_id"],
                    "secret": info["credentials"]["secret_key"], "book_url": book_url,
                    "start": start, "seconds": args.seconds}
            workers = [subprocess.Popen([sys.executable, __file__, "--worker",
                                         json.dumps(spec)], stdout=subprocess.PIPE, text=True)
                       for _ in range(2)]
            outs = [w.communicate(timeout=args.seconds + 120)[0] for w in workers]
            if any(w.returncode for w in workers):
                raise SystemExit("a worker failed")
            leases = _count_leases(Book(book_url))
        finally:
            sandbox.terminate()
            sandbox.wait(10)
    results = [json.loads(out.strip().splitlines()[-1]) for out in outs]
    stamps = sorted(s for r in results for s in r["stamps"])
    minutes = int(args.seconds // 60) or args.seconds / 60  # whole minutes, if any
    in_minutes = sum(1 for s in stamps if s < start + 60.0 * minutes)
    per_minute = in_minutes / minutes
    too_many = sum(r["too_many"] for r in results)
    sent = sorted(s for r in results for s in r["sent"])
    busiest = max((bisect_left(sent, t + 60.0) - i for i, t in enumerate(sent)), default=0)
    print(f"two processes, one Alpaca key, the sandbox at {LIMIT} requests/min, "
          f"{args.seconds:g} s, book {'PostgreSQL' if 'postgresql' in book_url else 'SQLite'}")
    for i, r in enumerate(results, 1):
        print(f"  process {i}: {len(r['stamps']):5d} orders, {r['requests']:5d} requests, "
              f"{r['too_many']} answered 429, refused {r['failed'] or 'none'}")
        print(f"    requests by route: {r['routes']}")
    print(f"  orders per minute over {minutes:g} minute(s)        {per_minute:8.1f}  "
          f"({per_minute / LIMIT:.1%} of {LIMIT}/min, target >= 95%)")
    print(f"  trading-API requests in the busiest 60 s {busiest:6d}  (the server's limit "
          f"{LIMIT}; reads are the rest of the orders' share)")
    print(f"  429 responses                          {too_many:8d}  (target 0)")
    requests = sum(r["requests"] for r in results)
    print(f"  leases granted                         {leases:8d}  for {requests} requests and "
          f"{len(stamps)} orders ({leases / max(1, requests + len(stamps)):.2f} per "
          f"limiter admission)")
    ok = per_minute >= 0.95 * LIMIT and too_many == 0
    print("PASS" if ok else "FAIL")


if __name__ == "__main__":
    main()
