"""Dashboard benchmark: what a user waits for, measured in a real browser (Debian's Chromium).

1. Time to a rendered Overview (status table + total buying power + balances) with 20
   connections, and to the rendered Positions page with 10,000 positions (target: < 3 s each).
   The brokerage is a stand-in that answers at once with frames of that size, so the figure is
   the dashboard's own cost (serialising, sending, drawing), not a broker's latency.
2. Ticket confirm to the order's row in the blotter, on the embedded sandbox (target: < 0.5 s).

Each figure is the median of several fresh page loads after one warm-up load, each in a new
browser context (a cold browser cache: every script and stylesheet is fetched and parsed);
the overview is also timed for a returning user (one context, so the browser cache is warm).
The app is served by `brokerkit.serve.serve()`, the code behind `brokerkit serve`.

    export BROKERKIT_DATABASE_URL=sqlite:////tmp/bench.db
    .venv/bin/python benchmarks/dashboard_bench.py [RUNS]    # RUNS: 7 by default
"""

from __future__ import annotations

import statistics
import sys
import time
import urllib.request
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]
N_CONNECTIONS, N_POSITIONS, RUNS = 20, 10_000, 7


class SyntheticBrokerage:
    """Answers like `BrokerageService` (status, balances, positions) with generated frames."""

    def __init__(self, n_connections: int, n_positions: int, seed: int = 7) -> None:
        from brokerkit.config import load_settings

        self.settings = load_settings()  # the book URL, for the reconciliation page
        rng = np.random.default_rng(seed)
        now = datetime.now(UTC)
        self.names = [f"broker-{i:02d}" for i in range(n_connections)]
        accounts = [(n, f"{n.upper()}-{k}") for n in self.names for k in (1, 2)]
        self._balances = pd.DataFrame({
            "connection": [a[0] for a in accounts], "institution": [a[0] for a in accounts],
            "account": [a[1] for a in accounts], "currency": "USD",
            "cash": rng.uniform(1e4, 1e6, len(accounts)).round(2),
            "buying_power": rng.uniform(1e4, 2e6, len(accounts)).round(2),
            "equity": rng.uniform(1e4, 2e6, len(accounts)).round(2), "as_of": now,
            "base_currency": "USD"})
        self._balances["buying_power_base"] = self._balances["buying_power"]
        pick = rng.integers(0, len(accounts), n_positions)
        qty = rng.integers(-500, 5000, n_positions).astype(float)
        price = rng.uniform(1, 900, n_positions).round(2)
        ccy = rng.choice(["USD", "EUR", "GBP", "JPY", "HKD"], n_positions)
        self._positions = pd.DataFrame({
            "connection": [accounts[i][0] for i in pick], "account": [accounts[i][1] for i in pick],
            "symbol": [f"SYM{i:05d}" for i in range(n_positions)],
            "asset_class": rng.choice(["equity", "etf", "crypto", "option", "future"],
                                      n_positions),
            "quantity": qty, "avg_cost": price, "market_price": price,
            "market_value": qty * price, "currency": ccy, "market_value_base": qty * price,
            "unrealized_pnl_base": 0.0})

    async def get_status_async(self) -> dict[str, Any]:
        per = self._balances.groupby("connection")["buying_power_base"].sum()
        rows = [{"name": n, "institution": n, "type": "synthetic", "status": "connected",
                 "latency_ms": 1.0, "accounts": [f"{n.upper()}-1", f"{n.upper()}-2"],
                 "buying_power": round(float(per[n]), 2), "currency": "USD", "trading": True,
                 "last_error": None, "checked_at": None} for n in self.names]
        return {"summary": {"base_currency": "USD",
                            "total_buying_power": round(float(per.sum()), 2),
                            "connections": len(rows), "connected": len(rows), "degraded": 0,
                            "down": 0, "embedded_sandbox": False},
                "connections": rows}

    async def balances_async(self) -> pd.DataFrame:
        return self._balances

    async def positions_async(self) -> pd.DataFrame:
        return self._positions


def _wait_alive(url: str) -> None:
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"{url}liveness", timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def _overview(page: Any, url: str) -> float:
    """Load `url` in `page`; seconds until the overview shows its figures and both tables."""
    t0 = time.perf_counter()
    page.goto(url)
    page.locator(".total-buying-power").wait_for()
    page.locator(".status-table .tabulator-row").nth(N_CONNECTIONS - 1).wait_for()
    page.locator(".balances-table .tabulator-row").first.wait_for()
    return time.perf_counter() - t0


def main() -> None:
    import panel as pn
    from playwright.sync_api import sync_playwright

    from brokerkit.serve import free_port, serve

    runs = int(sys.argv[1]) if len(sys.argv) > 1 else RUNS
    synthetic = SyntheticBrokerage(N_CONNECTIONS, N_POSITIONS)
    port = free_port()
    serve("127.0.0.1", port, use_config=False, threaded=True,
          brokerage=synthetic)  # type: ignore[arg-type]
    url = f"http://localhost:{port}/"
    _wait_alive(url)
    overview: list[float] = []
    warm: list[float] = []
    positions: list[float] = []
    confirm: list[float] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for run in range(runs + 1):  # run 0 warms up (first session: imports, connections)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            t0 = time.perf_counter()
            t1 = t0 + _overview(page, url)
            page.locator(".bk-tab", has_text="Positions").click()
            page.locator(".positions-table .tabulator-row").first.wait_for()
            page.get_by_text(f"of {N_POSITIONS:,} positions").wait_for()
            t2 = time.perf_counter()
            page.locator(".bk-tab", has_text="Trade").click()
            rows = page.locator(".blotter-orders .tabulator-row")
            page.locator(".trading-state").wait_for()
            page.wait_for_function("() => true")
            before = rows.count()
            page.locator(".ticket-preview").wait_for()
            page.locator(".btn-preview button").click()
            page.get_by_text("Ready to place").wait_for()
            page.locator(".btn-place button").click()
            page.locator(".btn-confirm button").wait_for(state="visible")
            t3 = time.perf_counter()
            page.locator(".btn-confirm button").click()
            page.locator(".blotter-orders .tabulator-row").nth(before).wait_for()
            t4 = time.perf_counter()
            page.close()
            if run:
                overview.append(t1 - t0)
                positions.append(t2 - t1)
                confirm.append(t4 - t3)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        for run in range(runs + 1):  # a returning user: the browser cache is warm
            page = context.new_page()
            page.set_default_timeout(60_000)
            took = _overview(page, url)
            page.close()
            if run:
                warm.append(took)
        browser.close()
    pn.state.kill_all_servers()

    def line(what: str, xs: list[float], target: float) -> str:
        med = statistics.median(xs)
        verdict = "OK" if med < target else "OVER TARGET"
        return (f"{what:<52} median {med:6.3f} s  (min {min(xs):.3f}, max {max(xs):.3f}; "
                f"target < {target:g} s: {verdict})")

    print(f"dashboard benchmark: {N_CONNECTIONS} connections, {N_POSITIONS:,} positions, "
          f"{runs} runs after a warm-up, Chromium {CHROMIUM}")
    print(line("page load -> overview rendered (cold browser cache)", overview, 3.0))
    print(line("page load -> overview rendered (warm browser cache)", warm, 3.0))
    print(line("positions tab -> 10,000-row table rendered", positions, 3.0))
    print(line("ticket Confirm -> order row in the blotter", confirm, 0.5))


if __name__ == "__main__":
    main()
