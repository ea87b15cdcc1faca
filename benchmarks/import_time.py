"""Import time of brokerkit next to pandas and the broker SDKs, each in a fresh interpreter.

Target: `import brokerkit` within 0.1 s of `import pandas` alone (broker SDKs, Panel and the
database layer load only when first needed).
"""

from __future__ import annotations

import statistics
import subprocess
import sys

RUNS = 7
CASES = {
    "import brokerkit": "import brokerkit",
    "import pandas": "import pandas",
    "import alpaca.trading.client": "import alpaca.trading.client",
    "import ccxt": "import ccxt",
    "brokerkit + first service (loads pandas)":
        "import brokerkit; brokerkit.get_brokerage_service",
}
PROBE = ("import time; t = time.perf_counter(); {stmt}; "
         "print(time.perf_counter() - t)")


def measure(stmt: str) -> float:
    times = []
    for _ in range(RUNS):
        out = subprocess.run([sys.executable, "-c", PROBE.format(stmt=stmt)],
                             capture_output=True, text=True, check=True)
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def main() -> None:
    results = {name: measure(stmt) for name, stmt in CASES.items()}
    print(f"median of {RUNS} fresh interpreters each")
    for name, t in results.items():
        print(f"  {name:<45} {t * 1000:8.1f} ms")
    bk, pd = results["import brokerkit"], results["import pandas"]
    print(f"brokerkit - pandas: {(bk - pd) * 1000:+.1f} ms; "
          f"brokerkit / pandas: {bk / pd:.2f}x; "
          f"alpaca / brokerkit: {results['import alpaca.trading.client'] / bk:.0f}x; "
          f"ccxt / brokerkit: {results['import ccxt'] / bk:.0f}x")
    ok = bk <= pd + 0.1
    print(f"target: import brokerkit within 0.1 s of import pandas -> {'MET' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
