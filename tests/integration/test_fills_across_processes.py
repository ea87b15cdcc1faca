"""Fills reach the book, and a fresh book opens from the brokers' positions: several real
processes (subprocesses) sharing one book (SQLite and PostgreSQL) and one sandbox broker
(alpaca-py against the sandbox's Alpaca server, started by `brokerkit sandbox --json` in a
process of its own)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from brokerkit.book import Book
from brokerkit.secrets import EnvStore

CONNECTION = "alpaca-sbx"
TIMEOUT = 120


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The Alpaca server of a sandbox serving in its own process: its URL and demo keys."""
    home = tmp_path_factory.mktemp("sandbox-home")
    env = {**os.environ, "BROKERKIT_DATA_DIR": str(home / "data"),
           "BROKERKIT_CONFIG_DIR": str(home / "config")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "brokerkit.cli", "sandbox", "--json", "--alpaca-rate-limit", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=home)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line:
            pytest.fail(f"the sandbox process printed nothing (exit {proc.poll()})")
        yield json.loads(line)["servers"]["alpaca"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def env(sandbox: dict, book_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment of the test's processes: a config file with one alpaca connection to
    the sandbox (keys from the env secret store), `open_from_brokers` on, the book at
    `book_url`."""
    config = tmp_path / "brokerkit.toml"
    config.write_text(textwrap.dedent(f"""\
        [book]
        open_from_brokers = true

        [connections.{CONNECTION}]
        type = "alpaca"
        options = {{ url = "{sandbox['url']}", paper = true }}
        secrets = {{ api_key = "sbx_alpaca_key", secret_key = "sbx_alpaca_secret" }}
        """))
    creds = sandbox["credentials"]
    return {**os.environ, "BROKERKIT_CONFIG": str(config), "BROKERKIT_DATABASE_URL": book_url,
            EnvStore.variable("sbx_alpaca_key"): creds["key_id"],
            EnvStore.variable("sbx_alpaca_secret"): creds["secret_key"]}


def python(env: dict[str, str], code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter; it must succeed."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def reconcile(env: dict[str, str]) -> tuple[int, dict]:
    done = subprocess.run([sys.executable, "-m", "brokerkit.cli", "reconcile", "--json"],
                          capture_output=True, text=True, env=env, timeout=TIMEOUT)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


PLACE_AND_EXIT = """\
    from brokerkit.execution import get_execution_service

    result = get_execution_service().place_order(
        symbol="AAPL", side="{side}", quantity=1, order_type="market", connection="{conn}")
    assert result.status.value == "FILLED", result
    print(result.client_order_id)
    # no sync_fills, no flush, no close: the process simply ends
"""


def place_and_exit(env: dict[str, str], side: str = "buy") -> str:
    """A script process places a market order and exits at once; its client order id."""
    return python(env, PLACE_AND_EXIT.format(side=side, conn=CONNECTION)).stdout.strip()


def openings(book: Book) -> list[str]:
    """The connections a fresh-book opening adopted."""
    adoptions = book.adoptions_frame()
    return list(adoptions["opening"].dropna())


def test_a_fresh_book_reconciles_clean_on_first_use_and_the_opening_is_audited(env, book_url):
    code, run = reconcile(env)
    assert code == 0, run
    assert run["unexplained"] == 0, run["rows"]
    assert {k for k, n in run["counts"].items() if n} == {"MATCH"}, run["counts"]
    book = Book(book_url)
    assert openings(book) == [CONNECTION]
    audit = book.audit_frame()
    opening = audit[audit["action"] == "adopt_positions"]
    assert len(opening) == 1
    details = json.loads(opening.iloc[0]["details"])
    assert details["reason"] == "opening positions of a fresh book" and details["opening"]
    assert {p["instrument"] for p in details["after"]} == set(
        book.book_positions_frame(CONNECTION)["instrument"])
    assert opening.iloc[0]["actor"]


def test_a_script_that_exits_right_after_its_order_leaves_its_fill_in_the_book(env, book_url):
    coid = place_and_exit(env)
    book = Book(book_url)
    fills = book.fills_frame(CONNECTION, client_order_id=coid)
    assert len(fills) == 1 and fills.iloc[0]["quantity"] == 1  # pulled before it exited
    code, run = reconcile(env)  # another process
    assert code == 0, run
    assert run["unexplained"] == 0, run["rows"]
    assert len(book.fills_frame(CONNECTION, client_order_id=coid)) == 1  # exactly once
    assert openings(book) == [CONNECTION]


def test_fills_executed_before_the_opening_are_never_applied_again(env, book_url, tmp_path):
    # fills at the broker before this book exists: a script trading against another book
    other = {**env, "BROKERKIT_DATABASE_URL": f"sqlite:///{tmp_path / 'other.db'}"}
    earlier = place_and_exit(other)
    book = Book(book_url)
    code, run = reconcile(env)  # opens this fresh book: the earlier fill is in its positions
    assert code == 0, run
    aapl = book.book_positions_frame(CONNECTION).set_index("instrument").loc["STK:AAPL"]
    # a later process records every fill the broker holds, from the beginning: those
    # executed before the opening are inside the adopted quantity, never applied again
    pulled = python(env, f"""\
        from brokerkit import runtime
        from brokerkit.book import open_book
        from brokerkit.service import get_brokerage_service

        adapter = runtime.run(get_brokerage_service().connected_adapter_async("{CONNECTION}"))
        fills = adapter.fills()
        assert "{earlier}" in set(fills["client_order_id"]), fills
        print(open_book().record_fills(fills))
    """)
    assert pulled.stdout.strip() == "0"
    again = book.book_positions_frame(CONNECTION).set_index("instrument").loc["STK:AAPL"]
    assert again["quantity"] == aapl["quantity"]
    assert book.fills_frame(CONNECTION, client_order_id=earlier).empty
    later = place_and_exit(env, side="sell")  # and a fill after the opening counts once
    after = book.book_positions_frame(CONNECTION).set_index("instrument").loc["STK:AAPL"]
    assert after["quantity"] == aapl["quantity"] - 1
    assert len(book.fills_frame(CONNECTION, client_order_id=later)) == 1
    code, run = reconcile(env)
    assert code == 0, run["rows"]


def test_two_processes_opening_the_same_fresh_book_at_once_adopt_once(env, book_url):
    script = textwrap.dedent(f"""\
        import sys, time
        from brokerkit import runtime
        from brokerkit.post_trade.runs import Reconciler

        rec = Reconciler()
        runtime.run(rec.brokerage.connected_adapter_async("{CONNECTION}"))
        while time.time() < float(sys.argv[1]):  # both ready: go at the same moment
            time.sleep(0.002)
        print(sorted(runtime.run(rec.feed.open_async(rec.brokerage.connections))))
    """)
    import time

    start = str(time.time() + 4.0)  # both processes are up and connected before then
    procs = [subprocess.Popen([sys.executable, "-c", script, start], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=TIMEOUT) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sorted(out.strip() for out, _ in outs) == ["['alpaca-sbx']", "[]"], outs
    book = Book(book_url)
    assert openings(book) == [CONNECTION]
    assert len(book.adoptions_frame()) == 1
    audit = book.audit_frame()
    assert (audit["action"] == "adopt_positions").sum() == 1
    code, run = reconcile(env)
    assert code == 0, run
