"""Reconciliation runs against the sandbox, stored in the book (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from brokerkit.book import Book
from brokerkit.config import ConnectionConfig, Settings
from brokerkit.post_trade.runs import Reconciler
from brokerkit.service import BrokerageService


def make(book_url: str, *, broken: bool = False) -> Reconciler:
    broker = f"r-{uuid.uuid4().hex[:8]}"
    conns = {
        "paper-us": ConnectionConfig("paper-us", "paper", options={"broker": broker},
                                     accounts=("DEMO-MARGIN-1", "DEMO-CASH-1")),
        "paper-global": ConnectionConfig("paper-global", "paper",
                                         options={"broker": broker, "fail_connect": broken},
                                         accounts=("DEMO-GLOBAL-1", "DEMO-CRYPTO-1")),
    }
    svc = BrokerageService(Settings(connections=conns, book_url=book_url))
    return Reconciler(svc, Book(book_url))


@pytest.fixture
def rec(book_url):
    r = make(book_url)
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


def test_a_break_made_at_the_broker_is_found_then_synced_and_the_next_run_matches(rec):
    for name in rec.brokerage.connections:
        rec.adopt(name, reason="open the book")
    broker = rec.brokerage.adapter("paper-us").broker
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


def test_a_connection_that_cannot_be_read_gives_unknown_rows_never_flat(book_url):
    good = make(book_url)
    for name in good.brokerage.connections:
        good.adopt(name, reason="open the book")
    good.brokerage.close()
    rec = make(book_url, broken=True)
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


def test_cli_reconcile_exits_non_zero_on_breaks_and_zero_once_adopted(tmp_path):
    env = {**os.environ, "BROKERKIT_DATABASE_URL": f"sqlite:///{tmp_path / 'book.db'}"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "brokerkit.cli", "reconcile", *args],
                              capture_output=True, text=True, env=env, timeout=120)

    first = cli("--json")
    assert first.returncode == 1, first.stderr
    assert json.loads(first.stdout)["counts"].get("UNKNOWN_TO_BOOK", 0) > 0
    status = subprocess.run([sys.executable, "-m", "brokerkit.cli", "status", "--json"],
                            capture_output=True, text=True, env=env, timeout=120)
    for conn in json.loads(status.stdout)["connections"]:
        assert cli("--adopt", conn["name"], "--reason", "open the book").returncode == 0
    second = cli()
    assert second.returncode == 0, second.stdout + second.stderr
    assert "MATCH" in second.stdout
