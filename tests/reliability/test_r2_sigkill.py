"""R2 (issue 16): processes placing orders at every adapter with a sandbox (paper, Alpaca, IBKR)
are SIGKILLed at seeded random points of their order flow, then a fresh process starts and
its periodic recovery resolves what the dead ones left: 0 duplicates at any broker (by client
order id), 0 orders at a broker the book does not know, every journal row resolved, each with
the broker's status (or "not placed" for an order no broker has), on SQLite and PostgreSQL.

The sandbox serves from this process; the placing and the restarted processes reach it over
its sockets through a `brokerkit.toml`, as any user's processes would.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

import pytest

from brokerkit.book import Book

pytestmark = pytest.mark.reliability

TRADING = ("paper", "alpaca", "ibkr")
KILLS = 12
SEED = 16
#: A journal row holds the broker's answer to the submit (or to recovery's lookup): an order
#: answered while working (IBKR acknowledges a market order before its fill when the fill
#: takes longer than `fill_wait`) may have moved on at the broker since; any other difference
#: is a contradiction.
_WORKING = {"ACCEPTED", "PARTIALLY_FILLED"}
_LATER = {"PARTIALLY_FILLED", "FILLED", "CANCELED", "EXPIRED"}

LAUNCHER = textwrap.dedent("""
    # Forks one placing child per line read; each child places orders at every connection in
    # turn until it is killed.
    import os, sys
    from brokerkit.execution import get_execution_service
    from brokerkit.service import get_brokerage_service

    kinds = sys.argv[1].split(",")

    def place() -> None:
        ex = get_execution_service()
        for kind in kinds:  # connected before the first order: kills land in the order flow
            get_brokerage_service().adapter(kind).connect()
        print("placing", os.getpid(), flush=True)
        i = 0
        while True:
            i += 1
            ex.place_order(symbol="AAPL", side="buy" if i % 2 else "sell", quantity=1,
                           connection=kinds[i % len(kinds)])

    for _line in sys.stdin:
        pid = os.fork()
        if pid == 0:
            place()
            os._exit(0)
        os.waitpid(pid, 0)  # killed by the test
        print("dead", pid, flush=True)
""")

RESTARTED = textwrap.dedent("""
    # A fresh long-running process: its service resolves unresolved rows periodically.
    import time
    from brokerkit.execution import get_execution_service, recovery, submit

    recovery.RECOVER_EVERY, recovery.RECOVER_MIN_AGE = 0.5, 0.5
    submit.NOT_PLACED_AFTER = 3.0  # these brokers place what they get at once
    ex = get_execution_service()
    print("running", flush=True)
    time.sleep(120)
""")


def test_sigkill_at_random_points_of_placing_then_a_restart_resolves_every_row_once(
        trading, records_of, broker_of, book_url, tmp_path, process_env, figures,
        wait_until):
    config = tmp_path / "brokerkit.toml"
    config.write_text(trading.toml(extra="[risk]\nduplicate_window_seconds = 0\n"
                                         "max_orders_per_second = 10000\n"))
    env = process_env(config, book_url)
    for kind in TRADING:  # an order spends time in flight at every broker
        broker_of(kind).faults.set("submit", latency_ms=20)
    rng = random.Random(SEED)
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, ",".join(TRADING)],
                                text=True, env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE)
    restarted = None
    book = Book(book_url, shared=False)
    try:
        assert launcher.stdin is not None and launcher.stdout is not None
        for _ in range(KILLS):
            launcher.stdin.write("go\n")
            launcher.stdin.flush()
            word, pid = launcher.stdout.readline().split()
            assert word == "placing"
            time.sleep(rng.uniform(0.05, 0.4))  # a random point of its order flow
            os.kill(int(pid), signal.SIGKILL)
            assert launcher.stdout.readline().split() == ["dead", pid]
        launcher.stdin.close()
        launcher.wait(30)

        left = book.unresolved_orders()
        restarted = subprocess.Popen([sys.executable, "-c", RESTARTED], text=True, env=env,
                                     stdout=subprocess.PIPE)
        assert restarted.stdout is not None
        assert restarted.stdout.readline().strip() == "running"
        wait_until(lambda: book.unresolved_orders() == [], 60,
                   "the restarted process left journal rows unresolved")

        rows = book.orders_frame()
        by_coid = {r.client_order_id: r for r in rows.itertuples()}
        duplicates, unknown, wrong, placed, behind = 0, [], [], 0, 0
        for kind in TRADING:
            at_broker = records_of(kind).orders()
            sent = Counter(c for c, _ in at_broker)
            placed += len(sent)
            duplicates += sum(n - 1 for n in sent.values())
            unknown += [c for c in sent if c not in by_coid]
            for c, o in at_broker:
                row = by_coid.get(c)
                if row is None or row.status == o.status.value:
                    continue
                if row.status in _WORKING and o.status.value in _LATER:
                    behind += 1  # the broker's answer, before the order moved on
                else:
                    wrong.append((kind, c, row.status, o.status.value))
        at_any = {c for kind in TRADING for c, _ in records_of(kind).orders()}
        never = [r for r in rows.itertuples() if r.client_order_id not in at_any]
        not_said = [r.client_order_id for r in never
                    if not (r.status == "ERROR" and "not placed" in (r.reason or ""))
                    and r.status != "REJECTED"]
        figures("R2", kills=KILLS, journaled=len(rows), placed=placed,
                left_in_flight=len(left), statuses_left=sorted({r["status"] for r in left}),
                not_placed=len(never), answered_before_fill=behind,
                failed=duplicates + len(unknown) + len(wrong) + len(not_said))

        assert len(rows) > KILLS, "the children placed almost nothing before their kill"
        assert left, "no kill landed while an order was in flight"
        assert duplicates == 0, f"{duplicates} order(s) reached a broker twice"
        assert unknown == [], f"orders at a broker without a journal row: {unknown}"
        assert wrong == [], f"journal rows disagree with the broker: {wrong}"
        assert not_said == [], f"rows of orders no broker has, not said so: {not_said}"
    finally:
        book.close()
        for proc in (launcher, restarted):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
