"""What the shared sandbox service costs: the embedded default (nothing configured) against the
user's sandbox in its own process, next to the in-process sandbox of the last commit before it
(BASELINE_REV, checked out in a temporary git worktree and run with the same interpreter).

Each side runs the same script in fresh processes, on a fresh data directory:
- `get_status()` on a warm service (median of RUNS), and the first `get_status()` of a process
  (connect included);
- `place_order` of a market order (median of ORDERS, after a warm-up order), and the same
  orders through the paper adapter alone: the transport, which is what the service changes;
- the sandbox's cold start (the shared side only): `brokerkit sandbox start` until it answers.
Targets: get_status and place_order within 1.5x of the baseline; the start under 2 s.

    .venv/bin/python benchmarks/shared_sandbox_bench.py [--baseline REV]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The last commit whose embedded default ran the sandbox inside each process.
BASELINE_REV = "1dbcbc6"
RUNS, ORDERS, STARTS = 30, 100, 5

PROBE = f"""
import json, statistics, time
t0 = time.perf_counter()
from brokerkit import get_brokerage_service, get_execution_service
svc = get_brokerage_service()
svc.get_status()
first = time.perf_counter() - t0
status = []
for _ in range({RUNS}):
    t = time.perf_counter(); svc.get_status(); status.append(time.perf_counter() - t)
ex = get_execution_service()
ex.place_order({{"symbol": "AAPL", "side": "buy", "quantity": 100}})
SYMBOLS = ["AAPL", "MSFT", "NVDA", "SPY", "QQQ", "AMZN", "GOOGL", "TSLA"]
orders = []
for i in range({ORDERS}):
    t = time.perf_counter()
    # a new (symbol, quantity) each time: the duplicate check refuses repeats within 5 s
    r = ex.place_order({{"symbol": SYMBOLS[i % len(SYMBOLS)], "side": "buy",
                        "quantity": 1 + i // len(SYMBOLS)}})
    orders.append(time.perf_counter() - t)
    assert r.ok, r.reason
# the same orders through the paper adapter alone (no checks, no journal): the transport
from brokerkit.model import OrderIntent
adapter = svc.adapter("paper-us")
submits = []
for i in range({ORDERS}):
    intent = OrderIntent.of({{"symbol": SYMBOLS[i % len(SYMBOLS)], "side": "buy",
                             "quantity": 1 + i // len(SYMBOLS), "account": "DEMO-MARGIN-1"}})
    t = time.perf_counter()
    adapter.submit(intent, f"bench-{{i}}-{{time.time_ns()}}")
    submits.append(time.perf_counter() - t)
import brokerkit
print(json.dumps({{"module": brokerkit.__file__, "first_status": first,
                  "status": statistics.median(status), "order": statistics.median(orders),
                  "submit": statistics.median(submits)}}))
"""


def probe(pythonpath: Path, data: Path) -> dict[str, float]:
    data.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "BROKERKIT_DATA_DIR": str(data),
           "BROKERKIT_CONFIG_DIR": str(data / "config"), "NO_PROXY": "127.0.0.1,localhost"}
    for var in ("BROKERKIT_CONFIG", "BROKERKIT_DATABASE_URL", "SYSTEM_HALTED"):
        env.pop(var, None)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=data, capture_output=True,
                         text=True, timeout=600)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    found = json.loads(out.stdout.strip().splitlines()[-1])
    if not found.pop("module").startswith(str(pythonpath)):
        raise SystemExit(f"the probe did not import brokerkit from {pythonpath}")
    return found


_ECHO_SERVER = """
import asyncio
from aiohttp import web
async def main():
    async def echo(request):
        return web.json_response({"order": await request.json()})
    app = web.Application()
    app.router.add_post("/", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def http_floor() -> float:
    """The median round trip of a bare aiohttp JSON POST to an echo server in another
    process: the least any loopback HTTP broker costs on this machine."""
    import asyncio

    from aiohttp import ClientSession

    proc = subprocess.Popen([sys.executable, "-c", _ECHO_SERVER], stdout=subprocess.PIPE,
                            text=True)
    try:
        port = int(proc.stdout.readline()) if proc.stdout else 0

        async def measure() -> float:
            times = []
            async with ClientSession() as client:
                for i in range(ORDERS * 3):
                    t = time.perf_counter()
                    async with client.post(f"http://127.0.0.1:{port}/", json={"i": i}) as r:
                        await r.json()
                    times.append(time.perf_counter() - t)
            return statistics.median(times[ORDERS:])

        return asyncio.run(measure())
    finally:
        proc.terminate()
        proc.wait(10)


def cold_starts(data: Path) -> list[float]:
    from brokerkit.sandbox import service

    home = data / "sandbox"
    times = []
    for _ in range(STARTS):
        service.stop(home)
        t = time.perf_counter()
        service.ensure_running(home)
        times.append(time.perf_counter() - t)
    service.stop(home)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=BASELINE_REV, help="git revision to compare with")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bk-bench-"))
    tree = tmp / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree),
                    args.baseline], check=True)
    try:
        base = probe(tree, tmp / "base-data")
        shared = probe(ROOT, tmp / "shared-data")
        from brokerkit.sandbox import service

        service.stop(tmp / "shared-data" / "sandbox")
        starts = cold_starts(tmp / "start-data")
        floor = http_floor()
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                       check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'':28}{'in-process (' + args.baseline + ')':>24}{'shared sandbox':>18}{'ratio':>8}")
    for key, label in (("status", "get_status() warm, median"),
                       ("first_status", "first get_status() of a process"),
                       ("order", "place_order market, median"),
                       ("submit", "paper adapter submit alone")):
        b, s = base[key] * 1000, shared[key] * 1000
        print(f"{label:<32}{b:>17.2f} ms{s:>15.2f} ms{s / b:>8.2f}")
    pipeline = ((shared["order"] - shared["submit"]) / (base["order"] - base["submit"]))
    print(f"the pipeline's own part (place_order - submit alone): ratio {pipeline:.2f}; the rest "
          f"is one loopback HTTP round trip ({shared['submit'] * 1000:.2f} ms) where the "
          f"baseline called the broker in-process; a bare aiohttp POST to another process "
          f"costs {floor * 1000:.2f} ms here")
    print(f"sandbox cold start (spawn until it answers): median "
          f"{statistics.median(starts):.2f} s, max {max(starts):.2f} s of {STARTS} "
          f"(target < 2 s)")


if __name__ == "__main__":
    main()
