"""The submit state machine under the paper sandbox's faults, on SQLite and PostgreSQL: a
live order is never answered "not placed", nothing is sent twice, fills are never lost, every
journal row ends with the broker's status, a restarted process resolves what a killed one
left in flight, and the connection's health says when submits fail."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from brokerkit import runtime
from brokerkit.book import Book
from brokerkit.config import ConnectionConfig, Settings
from brokerkit.execution import recovery, submit
from brokerkit.execution.service import ExecutionService
from brokerkit.model import OrderStatus
from brokerkit.sandbox import PaperBroker
from brokerkit.service import BrokerageService

RISK = {"duplicate_window_seconds": 0, "max_orders_per_second": 10_000}


def make(book_url: str, paper_url: str, *, timeout: float = 10.0) -> ExecutionService:
    """An execution service over a fresh paper broker (its own name) whose client gives up
    on a request after `timeout` seconds."""
    options = {"url": paper_url, "broker": f"u-{uuid.uuid4().hex[:10]}", "timeout": timeout}
    conn = ConnectionConfig("paper-us", "paper", options=options, accounts=("DEMO-MARGIN-1",))
    s = Settings(connections={"paper-us": conn}, book_url=book_url, risk=RISK,
                 routing={"default": "paper-us"})
    brokerage = BrokerageService(s)
    brokerage.connect()
    return ExecutionService(brokerage, Book(book_url))


def broker_of(sandbox, svc: ExecutionService) -> PaperBroker:
    return sandbox.broker(svc.brokerage.adapter("paper-us").config.options["broker"])


@pytest.fixture
def quick_recovery(monkeypatch):
    """Recovery passes every 0.3 s over rows untouched for 0.3 s (a running service's pace,
    sped up)."""
    monkeypatch.setattr(recovery, "RECOVER_EVERY", 0.3)
    monkeypatch.setattr(recovery, "RECOVER_MIN_AGE", 0.3)


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def assert_journal_matches_broker(book: Book, broker: PaperBroker, coids: set[str]) -> None:
    """Every order of `coids` is at the broker once and its journal row holds the broker's
    status; the book holds every fill of them exactly once."""
    at_broker = [o for o in broker.orders() if o.client_order_id in coids]
    seen = [o.client_order_id for o in at_broker]
    assert len(seen) == len(set(seen)), "an order reached the broker twice"
    assert set(seen) == coids, "an order never reached the broker"
    for o in at_broker:
        row = book.get_order(o.client_order_id)
        assert row["status"] == o.status.value, (row, o)
        assert row["broker_order_id"] == o.order_id
    fills = book.fills_frame()
    fills = fills[fills["client_order_id"].isin(coids)]
    assert fills["fill_id"].is_unique
    want = {f.fill_id for f in broker.fills() if f.client_order_id in coids}
    assert set(fills["fill_id"]) == want, "a fill was lost"


def test_accept_late_at_20_percent_of_200_orders_calls_no_live_order_not_placed(
        book_url, paper_url, fresh_sandbox):
    """The broker places a fifth of the orders 1.6 s after they were sent, after the client
    gave up at 1 s: each is looked up until it shows, and answered with its status."""
    svc = make(book_url, paper_url, timeout=1.0)
    broker = broker_of(fresh_sandbox, svc)
    assert svc.place_order(symbol="AAPL", side="buy", quantity=1).ok  # a running service
    broker.faults.set("submit", accept_late_rate=0.2, accept_late_s=1.6)
    try:
        async def burst():
            gate = asyncio.Semaphore(25)

            async def one(i: int):
                async with gate:
                    return await svc.place_order_async(symbol="AAPL", side="buy",
                                                       quantity=1 + i % 3)

            return await asyncio.gather(*(one(i) for i in range(200)))

        results = runtime.run(burst())
        statuses = [r.status for r in results]
        assert OrderStatus.ERROR not in statuses, [r.reason for r in results if not r.ok]
        coids = {r.client_order_id for r in results}
        assert len(coids) == 200
        late = [r for r in results if "uncertain" in (svc.book.get_order(
            r.client_order_id)["reason"] or "").lower() or r.status is OrderStatus.UNCERTAIN]
        assert 20 <= len(late) <= 60, len(late)  # about a fifth met the fault
        wait_until(lambda: svc.recover(min_age=0) == [] and
                   svc.book.unresolved_orders() == [], 15, "rows left unresolved")
        svc.sync_fills()
        svc.flush()
        assert_journal_matches_broker(svc.book, broker, coids)
        for r in results:  # an order answered UNCERTAIN is live; none was called dead
            assert r.status in (OrderStatus.FILLED, OrderStatus.UNCERTAIN), r
    finally:
        svc.close()
        svc.brokerage.close()


def test_an_uncertain_answer_is_resolved_by_the_periodic_recovery(
        book_url, paper_url, fresh_sandbox, monkeypatch, quick_recovery):
    monkeypatch.setattr(submit, "ANSWER_WITHIN", 0.3)  # the caller stops looking early
    svc = make(book_url, paper_url, timeout=0.5)
    broker = broker_of(fresh_sandbox, svc)
    broker.faults.set("submit", accept_late_next=1, accept_late_s=1.5)
    try:
        r = svc.place_order(symbol="AAPL", side="buy", quantity=2)
        assert r.status is OrderStatus.UNCERTAIN, r
        assert r.client_order_id in r.reason and "Do not place it again" in r.reason
        assert not r.ok and not r.status.is_open and not r.status.is_final
        svc.flush()
        assert svc.book.get_order(r.client_order_id)["status"] == "UNCERTAIN"
        assert broker.find_client_order(r.client_order_id) is None  # not yet at the broker
        wait_until(lambda: svc.book.get_order(r.client_order_id)["status"] == "FILLED", 10,
                   "the periodic recovery never resolved the order")
        row = svc.book.get_order(r.client_order_id)
        assert row["broker_order_id"] == broker.find_client_order(r.client_order_id).order_id
        svc.sync_fills()
        assert_journal_matches_broker(svc.book, broker, {r.client_order_id})
    finally:
        svc.close()
        svc.brokerage.close()


def test_an_order_the_broker_never_got_is_not_placed_only_after_the_deadline(
        book_url, paper_url, fresh_sandbox, monkeypatch, quick_recovery):
    """The broker holds the POST and answers 504 without placing it: the caller hears
    UNCERTAIN; the row turns "not placed" once NOT_PLACED_AFTER has passed, not before."""
    monkeypatch.setattr(submit, "ANSWER_WITHIN", 0.3)
    monkeypatch.setattr(submit, "NOT_PLACED_AFTER", 2.0)
    svc = make(book_url, paper_url, timeout=0.5)
    broker = broker_of(fresh_sandbox, svc)
    broker.faults.set("submit", timeout=True, timeout_s=1.0)
    try:
        t0 = time.monotonic()
        r = svc.place_order(symbol="AAPL", side="buy", quantity=1)
        assert r.status is OrderStatus.UNCERTAIN, r
        broker.faults.clear()
        time.sleep(0.8)  # several recovery passes, each a miss before the deadline
        assert svc.book.get_order(r.client_order_id)["status"] == "UNCERTAIN"
        wait_until(lambda: svc.book.get_order(r.client_order_id)["status"] == "ERROR", 10,
                   "never settled as not placed")
        assert time.monotonic() - t0 >= 2.0
        assert "not placed" in svc.book.get_order(r.client_order_id)["reason"]
        assert broker.find_client_order(r.client_order_id) is None
    finally:
        svc.close()
        svc.brokerage.close()


def test_health_is_degraded_under_submit_faults_and_connected_after_a_good_submit(
        book_url, paper_url, fresh_sandbox, monkeypatch):
    monkeypatch.setattr(submit, "ANSWER_WITHIN", 0.2)
    svc = make(book_url, paper_url)
    broker = broker_of(fresh_sandbox, svc)
    try:
        assert svc.place_order(symbol="AAPL", side="buy", quantity=1).ok

        def status() -> dict:
            return svc.brokerage.get_status()["connections"][0]

        assert status()["status"] == "connected"
        broker.faults.set("submit", error_next=1)  # a 500 on the next submit
        r = svc.place_order(symbol="AAPL", side="buy", quantity=2)
        assert r.status is OrderStatus.UNCERTAIN, r
        s = status()  # the reads work, the submits do not: degraded all the same
        assert s["status"] == "degraded" and "submit failed" in s["last_error"], s
        assert "HTTP 500" in s["last_error"]
        assert svc.brokerage.get_status()["summary"]["degraded"] == 1
        assert svc.place_order(symbol="AAPL", side="buy", quantity=3).ok
        assert status()["status"] == "connected"
    finally:
        svc.close()
        svc.brokerage.close()


# -- SIGKILL at random points, then a fresh process -------------------------------------------

LAUNCHER = textwrap.dedent("""
    # Forks one placing child per line read; each child places orders until it is killed.
    import os, sys
    from brokerkit.book import Book
    from brokerkit.config import ConnectionConfig, Settings
    from brokerkit.execution.service import ExecutionService
    from brokerkit.service import BrokerageService

    url, broker, book_url = sys.argv[1:4]

    def place() -> None:
        conn = ConnectionConfig("paper-us", "paper", accounts=("DEMO-MARGIN-1",),
                                options={"url": url, "broker": broker, "timeout": 2})
        s = Settings(connections={"paper-us": conn}, book_url=book_url,
                     risk={"duplicate_window_seconds": 0, "max_orders_per_second": 10000},
                     routing={"default": "paper-us"})
        brokerage = BrokerageService(s)
        brokerage.connect()
        ex = ExecutionService(brokerage, Book(book_url))
        print("placing", os.getpid(), flush=True)
        i = 0
        while True:
            i += 1
            ex.place_order(symbol="AAPL", side="buy", quantity=1 + i % 2)

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
    import sys, time
    from brokerkit.book import Book
    from brokerkit.config import ConnectionConfig, Settings
    from brokerkit.execution import recovery, submit
    from brokerkit.execution.service import ExecutionService
    from brokerkit.service import BrokerageService

    url, broker, book_url = sys.argv[1:4]
    recovery.RECOVER_EVERY, recovery.RECOVER_MIN_AGE = 0.5, 0.5
    submit.NOT_PLACED_AFTER = 3.0  # this broker places what it gets at once
    conn = ConnectionConfig("paper-us", "paper", accounts=("DEMO-MARGIN-1",),
                            options={"url": url, "broker": broker})
    s = Settings(connections={"paper-us": conn}, book_url=book_url,
                 routing={"default": "paper-us"})
    brokerage = BrokerageService(s)
    ex = ExecutionService(brokerage, Book(book_url))
    print("running", flush=True)
    time.sleep(60)
""")


def test_sigkill_at_random_points_then_a_restart_resolves_every_row_without_a_duplicate(
        book_url, paper_url, fresh_sandbox):
    name = f"k-{uuid.uuid4().hex[:10]}"
    broker = fresh_sandbox.broker(name)
    broker.faults.set("submit", latency_ms=20)  # an order spends time in flight
    args = [paper_url, name, book_url]
    rng = random.Random(7)
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, *args], text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    restarted = None
    try:
        for _ in range(20):
            launcher.stdin.write("go\n")
            launcher.stdin.flush()
            word, pid = launcher.stdout.readline().split()
            assert word == "placing"
            time.sleep(rng.uniform(0.02, 0.3))  # a random point of its order flow
            os.kill(int(pid), signal.SIGKILL)
            assert launcher.stdout.readline().split() == ["dead", pid]
        launcher.stdin.close()
        launcher.wait(10)
        book = Book(book_url, shared=False)
        try:
            left = book.unresolved_orders()
            print("left in flight by the killed processes:", len(left),
                  sorted({r["status"] for r in left}))
            assert left, "no kill landed while an order was in flight"
            restarted = subprocess.Popen([sys.executable, "-c", RESTARTED, *args], text=True,
                                         stdout=subprocess.PIPE)
            assert restarted.stdout.readline().strip() == "running"
            t0 = time.monotonic()
            wait_until(lambda: book.unresolved_orders() == [], 30,
                       "the restarted process left rows unresolved for 30 s")
            assert time.monotonic() - t0 < 30
            rows = book.orders_frame()
            assert len(rows) > 20
            at_broker = {o.client_order_id: o for o in broker.orders()}
            coids = [o.client_order_id for o in broker.orders()]
            assert len(coids) == len(set(coids)), "an order was sent twice"
            assert set(coids) <= set(rows["client_order_id"]), "sent without a journal row"
            for row in rows.itertuples():
                o = at_broker.get(row.client_order_id)
                if o is None:  # never reached the broker: said so, nothing else
                    assert row.status == "ERROR" and "not placed" in row.reason, row
                else:
                    assert row.status == o.status.value, (row, o)
        finally:
            book.close()
    finally:
        for proc in (launcher, restarted):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)

