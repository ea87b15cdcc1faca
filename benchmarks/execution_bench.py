"""The order pipeline's own cost, and guarded `place_order` next to the adapter's bare `submit`.

Printed in one run:
1. per-order cost of the pre-trade checks (median, p99; target under 100 us) and of the journal
   insert on SQLite (median, p99; target under 1 ms);
2. orders per second through `ExecutionService.place_order` next to `PaperAdapter.submit` on the
   same sandbox (its paper server, over loopback), one order at a time, with the paper broker
   answering at once (the pipeline's whole cost shows) and with 20 ms and 50 ms round trips
   (what a broker's order API costs, injected on the server), and the ratio (target at least
   0.85).

Both sides are measured the same way: from a coroutine on the runtime loop, one order at a
time, and interleaved (bare, guarded, bare, guarded...) on the same sandbox broker, so both see
the same broker state (the paper broker's cost per order grows with the orders it holds) and
the same background work (the guarded side's fill pulls and cache refreshes run in its own
time: they are part of the pipeline). Each side's rate is its order count over the time spent
in its own calls.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

from brokerkit import runtime
from brokerkit.book import Book
from brokerkit.config import ConnectionConfig, Settings
from brokerkit.execution.limits import parse_risk
from brokerkit.execution.risk import CheckContext, InstrumentFacts, run_checks
from brokerkit.execution.service import ExecutionService, new_client_order_id
from brokerkit.model import AssetClass, OrderIntent
from brokerkit.sandbox import Sandbox
from brokerkit.service import BrokerageService

N_CHECKS, N_JOURNAL, N_ORDERS = 20_000, 2_000, 300


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def bench_checks() -> tuple[float, float]:
    limits = parse_risk({"max_order_quantity": 10_000, "max_order_notional": 1_000_000,
                         "max_position_quantity": 50_000, "max_gross_exposure": 10_000_000,
                         "restricted_symbols": ["GME"], "price_collar_pct": 10,
                         "allow_short": True}).for_order("paper-us", AssetClass.EQUITY, "AAPL")
    intent = OrderIntent.of(symbol="AAPL", side="buy", quantity=10, order_type="limit",
                            limit_price="190.5")
    times = []
    for _ in range(N_CHECKS):
        t0 = time.perf_counter()
        ctx = CheckContext(intent=intent, connection="paper-us", account="A1",
                           asset_class=AssetClass.EQUITY, limits=limits, position=Decimal(5),
                           price=Decimal("190.1"), gross_exposure=Decimal(1_000_000),
                           buying_power=Decimal(500_000),
                           instrument=InstrumentFacts(True, True, True, Decimal("0.0001")),
                           market_open=True, account_type="margin", within_rate_limit=True,
                           duplicate=False)
        violations = run_checks(ctx)
        times.append(time.perf_counter() - t0)
        assert not violations, violations
    return statistics.median(times), pct(times, 0.99)


def bench_journal(book: Book) -> tuple[float, float]:
    times = []
    for _ in range(N_JOURNAL):
        row = {"client_order_id": new_client_order_id(), "connection": "paper-us",
               "account": "A1", "instrument": "STK:AAPL", "symbol": "AAPL", "side": "buy",
               "order_type": "market", "quantity": Decimal(1), "time_in_force": "day"}
        t0 = time.perf_counter()
        book.journal_order(row, lambda s: None)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), pct(times, 0.99)


def throughput(sandbox: Sandbox, latency_ms: float, book_url: str) -> tuple[float, float]:
    broker = f"bench-{uuid.uuid4().hex[:8]}"
    if latency_ms:
        sandbox.broker(broker).faults.set("*", latency_ms=latency_ms)
    conn = ConnectionConfig("paper-us", "paper", accounts=("DEMO-MARGIN-1",),
                            options={"url": sandbox.servers["paper"]["url"], "broker": broker,
                                     "rate_limit": False})  # measure the pipeline, not a cap
    settings = Settings(connections={"paper-us": conn}, book_url=book_url,
                        risk={"duplicate_window_seconds": 0})
    svc = BrokerageService(settings)
    svc.connect()
    ex = ExecutionService(svc, Book(book_url))
    adapter = svc.adapter("paper-us")
    intents = [OrderIntent.of(symbol="AAPL", side=s, quantity=1, account="DEMO-MARGIN-1")
               for s in ("buy", "sell")]

    async def both() -> tuple[float, float]:
        await ex.place_order_async(intents[0])  # warm the caches, as a running service has
        await adapter.submit_async(intents[1], new_client_order_id())
        spent_bare = spent_guarded = 0.0
        for i in range(N_ORDERS):
            intent = intents[i % 2]
            t0 = time.perf_counter()
            await adapter.submit_async(intent, new_client_order_id())
            t1 = time.perf_counter()
            r = await ex.place_order_async(intent)
            t2 = time.perf_counter()
            assert r.ok, r
            spent_bare += t1 - t0
            spent_guarded += t2 - t1
        return N_ORDERS / spent_bare, N_ORDERS / spent_guarded

    b, g = runtime.run(both())
    ex.close()
    svc.close()
    return b, g


def main() -> None:
    sandbox = Sandbox()
    sandbox.start_servers()
    with tempfile.TemporaryDirectory() as tmp:
        med, p99 = bench_checks()
        print(f"pre-trade checks (all 15, context included), {N_CHECKS} orders:")
        print(f"  median {med * 1e6:7.1f} us   p99 {p99 * 1e6:7.1f} us   "
              f"target < 100 us -> {'MET' if med < 100e-6 else 'MISSED'}")
        book = Book(f"sqlite:///{Path(tmp) / 'journal.db'}")
        med, p99 = bench_journal(book)
        print(f"journal insert on SQLite (trading state re-read in the same transaction), "
              f"{N_JOURNAL} orders:")
        print(f"  median {med * 1e3:7.3f} ms   p99 {p99 * 1e3:7.3f} ms   "
              f"target < 1 ms -> {'MET' if med < 1e-3 else 'MISSED'}")
        print(f"throughput, {N_ORDERS} orders each, one at a time, interleaved on the same "
              f"sandbox broker, SQLite book:")
        for latency in (0.0, 20.0, 50.0):
            b, g = throughput(sandbox, latency,
                              f"sqlite:///{Path(tmp) / f'book-{latency}.db'}")
            label = "broker answers at once" if not latency else \
                f"broker round trip {latency:.0f} ms"
            print(f"  {label:<28} bare submit {b:8.1f}/s   guarded place_order {g:8.1f}/s   "
                  f"ratio {g / b:.2f}")
        print("target: ratio >= 0.85 against a broker with a real round trip")
    sandbox.stop_servers()


if __name__ == "__main__":
    main()
