"""Reconciliation runs against the sandbox, stored in the book (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid

import pytest

from brokerkit.book import Book
from brokerkit.config import ConnectionConfig, Settings
from brokerkit.post_trade.runs import Reconciler
from brokerkit.service import BrokerageService


def make(book_url: str, paper_url: str, broker: str | None = None, *,
         global_broker: str | None = None) -> Reconciler:
    """A reconciler over two paper connections at `paper_url`'s broker `broker` (a new one
    by default); `paper-global` at `global_broker` when given."""
    broker = broker or f"r-{uuid.uuid4().hex[:8]}"
    conns = {
        "paper-us": ConnectionConfig("paper-us", "paper",
                                     options={"url": paper_url, "broker": broker},
                                     accounts=("DEMO-MARGIN-1", "DEMO-CASH-1")),
        "paper-global": ConnectionConfig("paper-global", "paper",
                                         options={"url": paper_url,
                                                  "broker": global_broker or broker},
                                         accounts=("DEMO-GLOBAL-1", "DEMO-CRYPTO-1")),
    }
    svc = BrokerageService(Settings(connections=conns, book_url=book_url))
    return Reconciler(svc, Book(book_url))


@pytest.fixture
def broker() -> str:
    return f"r-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def rec(book_url, paper_url, broker):
    r = make(book_url, paper_url, broker)
    yield r
    r.brokerage.close()


def test_a_new_book_sees_every_broker_position_as_unknown_to_book(rec):
    run = rec.run()
    assert set(run.rows["status"]) == {"UNKNOWN_TO_BOOK"}
    assert run.unexplained == len(run.rows) > 0


def test_after_adoption_every_position_matches_and_the_run_is_stored(rec):
    for name in rec.brokerage.connections:
        rec.adopt(name, reason="open the book")
    run = rec.run()
    assert set(run.rows["status"]) == {"MATCH"} and run.unexplained == 0
    stored = rec.book.reconciliation_runs()
    assert stored.loc[0, "run_id"] == run.run_id and stored.loc[0, "unexplained"] == 0
    assert len(rec.book.reconciliation_rows(run.run_id)) == len(run.rows)


def test_a_break_made_at_the_broker_is_found_then_synced_and_the_next_run_matches(
        rec, fresh_sandbox):
    for name in rec.brokerage.connections:
        rec.adopt(name, reason="open the book")
    broker = fresh_sandbox.broker(rec.brokerage.adapter("paper-us").config.options["broker"])
    broker.set_position("DEMO-MARGIN-1", "AAPL", "125", "190.25")  # the book holds 120
    run = rec.run()
    brk = run.breaks
    assert list(brk["instrument"]) == ["STK:AAPL"]
    assert brk.iloc[0]["status"] == "QUANTITY_BREAK" and brk.iloc[0]["quantity_diff"] == 5
    assert rec.sync(run.run_id, reason="broker is right") == 1
    again = rec.run()
    assert again.unexplained == 0
    audit = rec.book.audit_frame()
    assert (audit["action"] == "correct_position").any()


def test_a_connection_that_cannot_be_read_gives_unknown_rows_never_flat(book_url, paper_url,
                                                                       fresh_sandbox):
    good = make(book_url, paper_url)
    for name in good.brokerage.connections:
        good.adopt(name, reason="open the book")
    good.brokerage.close()
    fresh_sandbox.broker("refusing").faults.set("connect", error_rate=1.0)
    rec = make(book_url, paper_url, global_broker="refusing")
    try:
        run = rec.run()
        glob = run.rows[run.rows["connection"] == "paper-global"]
        assert len(glob) and set(glob["status"]) == {"UNKNOWN"}
        assert "paper-global" in run.failed
        assert rec.sync(run.run_id, reason="must not touch unknown rows") == 0
        us = run.rows[run.rows["connection"] == "paper-us"]
        assert set(us["status"]) == {"MATCH"}
    finally:
        rec.brokerage.close()


def test_a_fresh_book_that_opens_from_brokers_matches_on_its_first_run(book_url, paper_url,
                                                                        broker):
    rec = make(book_url, paper_url, broker)
    rec.feed.opens = True  # `[book] open_from_brokers = true`
    try:
        run = rec.run()
        assert set(run.rows["status"]) == {"MATCH"} and run.unexplained == 0
        assert sorted(rec.book.adoptions_frame()["opening"]) == ["paper-global", "paper-us"]
        assert rec.run().unexplained == 0
        assert len(rec.book.adoptions_frame()) == 2  # opened once
    finally:
        rec.brokerage.close()


def test_a_fill_at_the_broker_is_pulled_into_the_book_before_comparing(rec, fresh_sandbox,
                                                                       broker):
    for name in rec.brokerage.connections:
        rec.adopt(name, reason="open the book")
    paper = fresh_sandbox.broker(broker)
    paper.submit("DEMO-MARGIN-1", "AAPL", "buy", quantity="3", client_order_id="bk-elsewhere")
    paper.process()
    run = rec.run()
    assert run.unexplained == 0, run.breaks
    fills = rec.book.fills_frame("paper-us", client_order_id="bk-elsewhere")
    assert fills["quantity"].sum() == 3
    aapl = rec.book.book_positions_frame("paper-us").set_index("instrument").loc["STK:AAPL"]
    assert aapl["quantity"] == 123  # the demo account's 120 and the 3 bought


def test_adopting_then_pulling_fills_never_counts_a_fill_twice(rec, fresh_sandbox, broker):
    paper = fresh_sandbox.broker(broker)
    paper.submit("DEMO-MARGIN-1", "AAPL", "buy", quantity="2", client_order_id="bk-before")
    paper.process()
    for name in rec.brokerage.connections:
        rec.adopt(name, reason="open the book")  # the fill is inside the adopted 122
    assert rec.run().unexplained == 0
    assert rec.book.fills_frame("paper-us", client_order_id="bk-before").empty
    aapl = rec.book.book_positions_frame("paper-us").set_index("instrument").loc["STK:AAPL"]
    assert aapl["quantity"] == 122


def test_cli_reconcile_exits_non_zero_on_breaks_and_zero_once_adopted(tmp_path, paper_url,
                                                                      broker):
    config = tmp_path / "brokerkit.toml"
    config.write_text(textwrap.dedent(f"""\
        [book]
        open_from_brokers = false

        [connections.paper-us]
        type = "paper"
        options = {{ url = "{paper_url}", broker = "{broker}" }}
        accounts = ["DEMO-MARGIN-1", "DEMO-CASH-1"]
        """))
    env = {**os.environ, "BROKERKIT_DATABASE_URL": f"sqlite:///{tmp_path / 'book.db'}",
           "BROKERKIT_CONFIG": str(config)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "brokerkit.cli", "reconcile", *args],
                              capture_output=True, text=True, env=env, timeout=120)

    first = cli("--json")
    assert first.returncode == 1, first.stderr
    assert json.loads(first.stdout)["counts"].get("UNKNOWN_TO_BOOK", 0) > 0
    assert cli("--adopt", "paper-us", "--reason", "open the book").returncode == 0
    second = cli()
    assert second.returncode == 0, second.stdout + second.stderr
    assert "MATCH" in second.stdout
