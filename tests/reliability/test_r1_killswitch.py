"""R1 (issue 16): the kill switch across processes. One process places resting orders in a loop
at every adapter with a sandbox (paper, Alpaca, IBKR); `brokerkit halt` runs in another. After
the halt commits, no order reaches a broker: the brokers' own records (each order's arrival
time at the sandbox broker) show none arriving after the commit. The send gate
(`execution.sendgate`) makes the halt wait for the send in progress, and refuses
(TRADING_STATE_CHANGED) an order journaled before the halt that had not been sent yet. 0 open
orders are left at any connection. On SQLite and PostgreSQL.

Every submit spends LATENCY_MS at the paper and Alpaca brokers, so a halt usually meets an
order in flight: it must wait for it, then cancel it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from datetime import UTC

import pytest

from brokerkit.book import Book

pytestmark = pytest.mark.reliability

TRADING = ("paper", "alpaca", "ibkr")
BEFORE_HALT = 4  # orders the loop places before the halt
LATENCY_MS = 2500  # each submit's time at the paper and Alpaca brokers (longer than the
#                    halting process takes to connect and send its cancels)

LOOP = textwrap.dedent("""
    # Places resting limit buys at every connection in turn, one at a time, printing each
    # answer, until three in a row are refused as HALTED (or 90 s pass).
    import json, sys, time
    from brokerkit.execution import get_execution_service
    from brokerkit.service import get_brokerage_service

    kinds = sys.argv[1].split(",")
    ex = get_execution_service()
    for kind in kinds:
        get_brokerage_service().adapter(kind).connect()
    print(json.dumps({"ready": True}), flush=True)
    halted, i, deadline = 0, 0, time.monotonic() + 90
    while halted < 3 and time.monotonic() < deadline:
        i += 1
        kind = kinds[i % len(kinds)]
        r = ex.place_order(symbol="AAPL", side="buy", quantity=1, order_type="limit",
                           limit_price="1", time_in_force="day", connection=kind)
        halted = halted + 1 if "TRADING_HALTED" in r.codes else 0
        print(json.dumps({"coid": r.client_order_id, "connection": kind,
                          "status": r.status.value, "codes": list(r.codes)}), flush=True)
""")


def test_a_halt_from_another_process_stops_a_placing_loop_and_leaves_nothing_open(
        trading, records_of, broker_of, book_url, tmp_path, process_env, figures):
    config = tmp_path / "brokerkit.toml"
    config.write_text(trading.toml(extra="[risk]\nduplicate_window_seconds = 0\n"
                                         "max_orders_per_second = 10000\n"))
    env = process_env(config, book_url)
    for kind in ("paper", "alpaca"):
        broker_of(kind).faults.set("submit", latency_ms=LATENCY_MS)
    broker_of("ibkr").faults.set("tws", latency_ms=50)
    loop = subprocess.Popen([sys.executable, "-c", LOOP, ",".join(TRADING)], text=True,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    book = Book(book_url, shared=False)
    try:
        assert loop.stdout is not None
        assert json.loads(loop.stdout.readline() or "{}").get("ready"), loop.stderr
        answers = [json.loads(loop.stdout.readline()) for _ in range(BEFORE_HALT)]

        halt = subprocess.run([sys.executable, "-m", "brokerkit.cli", "halt", "--reason",
                               "R1", "--json"], capture_output=True, text=True, env=env,
                              timeout=120)
        halted_by = time.time()  # the halt has committed by now
        answers += [json.loads(line) for line in loop.stdout]
        assert loop.wait(30) == 0, loop.stderr.read() if loop.stderr else ""
        report = json.loads(halt.stdout.strip().splitlines()[-1])

        history = book.trading_state_history()
        committed = history[history["state"] == "HALTED"]["changed_at"].iloc[-1]
        committed = committed.to_pydatetime()
        committed = committed if committed.tzinfo else committed.replace(tzinfo=UTC)
        placed = [a for a in answers if a["status"] != "REJECTED"]
        refused = [a for a in answers if "TRADING_HALTED" in a["codes"]]
        after, still_open = [], []
        for kind in TRADING:
            for coid, o in records_of(kind).orders():
                if o.submitted_at is not None and o.submitted_at > committed:
                    after.append((kind, coid, o.status.value))
                if o.status.is_open:
                    still_open.append((kind, coid, o.status.value))
        journaled_after = [a for a in answers[answers.index(refused[0]) if refused else 0:]
                           if a["status"] != "REJECTED"] if refused else []
        changed = [a for a in answers if "TRADING_STATE_CHANGED" in a["codes"]]
        figures("R1", tried=len(answers), placed=len(placed), refused_halted=len(refused),
                refused_state_changed=len(changed), reached_broker_after_halt=len(after),
                open_left=len(still_open), halt_complete=report.get("complete"),
                failed=len(journaled_after) + len(after) + len(still_open))

        assert halt.returncode == 0, (report, halt.stderr[-2000:])
        assert report["state"] == "HALTED" and report["complete"] is True, report
        assert refused, "the loop never met the halt"
        assert journaled_after == [], f"orders placed after the first HALTED refusal: " \
                                      f"{journaled_after}"
        assert after == [], f"orders reached a broker after the halt committed: {after}"
        assert still_open == [], f"open orders left after the halt: {still_open}"
        assert halted_by >= committed.timestamp()
    finally:
        book.close()
        if loop.poll() is None:
            loop.kill()
            loop.wait(10)
