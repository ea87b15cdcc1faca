"""The book fails closed and says so: a database that cannot be used gives one error,
`BookUnavailable`, naming the database (password hidden), what failed and what to do; the
command line prints it on one line. And refused orders land in the journal with their reasons.

SQLite cases use real files (garbage bytes, a read-only file, a directory that cannot be
made); PostgreSQL cases a closed port and backends terminated with `pg_terminate_backend`
from an admin connection (only this test's own backends, found by their application name).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from brokerkit.book import Book, DuplicateClientOrderId, close_books, open_book
from brokerkit.errors import BookUnavailable, BrokerkitError

FAKE_PASSWORD = "fake-pw-7c41d9"
CLI = [sys.executable, "-m", "brokerkit.cli"]
on_postgresql = pytest.mark.parametrize(
    "book_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unreachable_url() -> str:
    return f"postgresql+psycopg://brokerkit:{FAKE_PASSWORD}@127.0.0.1:{closed_port()}/book"


def corrupt_file(tmp_path: Path) -> Path:
    path = tmp_path / "book.db"
    path.write_bytes(b"not a database, just bytes " + os.urandom(4096))
    return path


@contextlib.contextmanager
def read_only(*paths: Path) -> Iterator[None]:
    """`paths` may not be written by this process: mode a-w, and for root (who ignores
    modes) the immutable attribute."""
    modes = {p: p.stat().st_mode for p in paths}
    for p in paths:
        p.chmod(modes[p] & ~0o222)
    immutable = os.geteuid() == 0
    if immutable:
        done = subprocess.run(["chattr", "+i", *map(str, paths)], capture_output=True)
        if done.returncode != 0:
            for p in paths:
                p.chmod(modes[p])
            pytest.skip(f"running as root and chattr +i failed: {done.stderr!r}")
    try:
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", *map(str, paths)], check=True)
        for p in paths:
            p.chmod(modes[p])


def cli(*args: str, url: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "BROKERKIT_DATABASE_URL": url})


def refused(coid: str, **extra):
    """`record_refused`'s arguments for an order refused while trading is HALTED."""
    args = {"intent": {"symbol": "AAPL", "side": "buy", "quantity": "10",
                       "order_type": "limit", "limit_price": "187.25", "time_in_force": "day"},
            "connection": "paper", "account": "PA1", "trading_state": "HALTED",
            "violations": [{"code": "TRADING_HALTED", "message": "trading is HALTED: drill"}]}
    return (coid, args.pop("intent")), args | extra


# -- SQLite files that cannot be used --------------------------------------------------------


def test_a_corrupt_book_file_is_unavailable_naming_the_file_and_what_to_do(tmp_path):
    path = corrupt_file(tmp_path)
    with pytest.raises(BookUnavailable) as info:
        Book(f"sqlite:///{path}")
    err = info.value
    assert err.problem == "corrupt"
    assert str(path) in str(err) and "backup" in str(err)
    assert isinstance(err, BrokerkitError)


def test_a_book_whose_directory_cannot_be_created_is_unavailable(tmp_path):
    (tmp_path / "plain-file").write_text("a file where a directory should be")
    url = f"sqlite:///{tmp_path / 'plain-file' / 'books' / 'book.db'}"
    with pytest.raises(BookUnavailable) as info:
        open_book(url)
    assert info.value.problem == "cannot_open"
    assert "plain-file/books" in str(info.value) and "cannot be created" in str(info.value)


def test_a_read_only_book_answers_reads_and_refuses_writes_as_unavailable(tmp_path):
    url = f"sqlite:///{tmp_path / 'book.db'}"
    with Book(url, shared=False) as book:
        book.set_trading_state("REDUCING", "before the file went read-only", actor="ops")
    close_books(url)  # migrated again when opened next
    with read_only(tmp_path / "book.db"):
        book = Book(url, shared=False)
        try:
            assert book.get_trading_state().state == "REDUCING"
            with pytest.raises(BookUnavailable) as info:
                book.set_trading_state("HALTED", "drill", actor="ops")
            assert info.value.problem == "read_only"
            assert "write access" in str(info.value)
            with pytest.raises(BookUnavailable):
                book.record_refused(*refused("ro-1")[0], **refused("ro-1")[1])
        finally:
            book.close()
    with Book(url, shared=False) as book:
        assert book.get_trading_state().state == "REDUCING"  # nothing was written


def test_a_book_in_a_read_only_directory_that_is_not_there_yet_is_unavailable(tmp_path):
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    with read_only(shelf), pytest.raises(BookUnavailable) as info:
        Book(f"sqlite:///{shelf / 'book.db'}")
    assert info.value.problem == "cannot_open" and "may write there" in str(info.value)
    assert str(shelf / "book.db") in str(info.value)


def test_a_book_migrated_by_a_newer_brokerkit_is_unavailable_not_migrated(book_url):
    with Book(book_url, shared=False) as book, book.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    close_books(book_url)  # the next Book checks the schema again
    with pytest.raises(BookUnavailable) as info:
        Book(book_url)
    assert info.value.problem == "not_migrated" and "9999" in str(info.value)


# -- PostgreSQL out of reach -------------------------------------------------------------------


def test_an_unreachable_postgresql_is_unavailable_and_the_password_is_never_shown():
    url = unreachable_url()
    with pytest.raises(BookUnavailable) as info:
        Book(url)
    err = info.value
    assert err.problem == "unreachable"
    assert "127.0.0.1" in str(err) and "***" in err.database
    for text in (str(err), repr(err), err.database, err.detail or ""):
        assert FAKE_PASSWORD not in text


def _admin(book_url: str) -> sa.Engine:
    return sa.create_engine(book_url, poolclass=sa.pool.NullPool)


def _own_book(book_url: str) -> tuple[Book, str]:
    """A Book of its own at `book_url` whose connections carry a unique application name."""
    app = f"bk-outage-{uuid.uuid4().hex[:10]}"
    url = sa.make_url(book_url).update_query_dict({"application_name": app})
    return Book(url, shared=False), app


def _waiting_backend(conn: sa.Connection, app: str, timeout: float = 20) -> int:
    """The pid of `app`'s backend once it waits on a lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = conn.exec_driver_sql(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %(app)s "
            "AND wait_event_type = 'Lock'", {"app": app}).scalar()
        if pid is not None:
            return int(pid)
        time.sleep(0.02)
    raise AssertionError(f"no backend of {app} waited on a lock within {timeout} s")


def _cut_off_mid_call(book_url: str, book: Book, app: str, table: str, call) -> dict:
    """Run `call()` in a thread while `table` is locked, terminate its backend while it
    waits, then release the lock; returns {'value': ...} or {'error': ...}."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except Exception as exc:
            outcome["error"] = exc

    admin = _admin(book_url)
    try:
        with admin.connect() as conn:
            tx = conn.begin()
            conn.exec_driver_sql(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            worker = threading.Thread(target=run)
            worker.start()
            pid = _waiting_backend(conn, app)
            conn.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
            time.sleep(0.2)  # the client sees its connection gone before the lock goes
            tx.commit()
        worker.join(30)
        assert not worker.is_alive()
    finally:
        admin.dispose()
    return outcome


@on_postgresql
def test_a_read_cut_off_by_a_terminated_backend_is_done_again_on_a_new_connection(book_url):
    book, app = _own_book(book_url)
    try:
        book.audit("before", actor="ops")
        outcome = _cut_off_mid_call(book_url, book, app, "audit_log", book.audit_frame)
        assert "error" not in outcome, outcome.get("error")
        assert list(outcome["value"]["action"]) == ["before"]
    finally:
        book.close()


@on_postgresql
def test_a_write_cut_off_by_a_terminated_backend_is_unavailable_and_the_next_call_answers(
        book_url):
    book, app = _own_book(book_url)
    try:
        outcome = _cut_off_mid_call(
            book_url, book, app, "trading_state",
            lambda: book.set_trading_state("HALTED", "cut off", actor="ops"))
        err = outcome.get("error")
        assert isinstance(err, BookUnavailable), outcome
        assert err.problem == "lost" and "journal" in err.remedy
        state = book.get_trading_state()  # a new connection answers
        assert state.state == "ACTIVE" and state.version == 1  # the cut-off write never landed
        assert book.set_trading_state("HALTED", "again", actor="ops").halted
    finally:
        book.close()


@on_postgresql
def test_every_backend_terminated_between_calls_is_replaced_and_nothing_is_lost(book_url):
    book, app = _own_book(book_url)
    try:
        book.journal_order(order_row("before"))  # pins the journal's connection
        book.get_trading_state()  # and a pooled one
        admin = _admin(book_url)
        with admin.connect() as conn:
            gone = conn.exec_driver_sql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = %(app)s", {"app": app}).scalar()
        admin.dispose()
        assert gone >= 2
        assert book.get_trading_state().active
        book.journal_order(order_row("after"))
        book.record_refused(*refused("refused-after")[0], **refused("refused-after")[1])
        assert [r["client_order_id"] for r in book.unresolved_orders()] == ["before", "after"]
    finally:
        book.close()


# -- the command line --------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["halt", "--reason", "drill"], ["state"],
                                     ["state", "--json"], ["reconcile"]])
def test_book_commands_on_a_corrupt_book_print_one_line_and_no_traceback(tmp_path, command):
    path = corrupt_file(tmp_path)
    done = cli(*command, url=f"sqlite:///{path}")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("brokerkit: the book ")
    assert str(path) in lines[0] and "corrupt" in lines[0]


def test_state_on_an_unreachable_book_names_it_without_its_password():
    done = cli("state", url=unreachable_url())
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("brokerkit: the book postgresql+psycopg://brokerkit:***@")
    assert FAKE_PASSWORD not in done.stderr + done.stdout


def test_status_shows_the_connections_and_says_the_book_is_unavailable(tmp_path,
                                                                       embedded_sandbox):
    path = corrupt_file(tmp_path)
    done = cli("status", url=f"sqlite:///{path}")
    assert done.returncode == 1
    assert "Total buying power" in done.stdout  # the brokers still answer
    assert "Traceback" not in done.stderr
    said = [line for line in done.stderr.splitlines() if line.startswith("brokerkit: ")]
    assert len(said) == 1 and str(path) in said[0] and "corrupt" in said[0]


# -- the one mechanism -------------------------------------------------------------------------


def test_every_public_book_method_turns_database_failures_into_book_unavailable():
    plumbing = {"begin", "connect", "close", "checkpoint_due"}  # translate inside / no database
    public = {name for name in dir(Book) if not name.startswith("_")
              and callable(getattr(Book, name)) and name not in plumbing}
    unguarded = {name for name in public
                 if getattr(getattr(Book, name), "__book_guard__", None) not in ("reads",
                                                                                 "writes")}
    assert public and not unguarded


# -- refused orders in the journal ----------------------------------------------------------


def order_row(coid: str) -> dict:
    return {"client_order_id": coid, "connection": "paper", "account": "PA1",
            "instrument": "STK:AAPL", "symbol": "AAPL", "side": "buy", "order_type": "market",
            "quantity": Decimal("1")}


def test_a_refused_order_is_journaled_rejected_with_its_violations_and_never_sent(book):
    at = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    violations = [{"code": "TRADING_HALTED", "message": "trading is HALTED: drill"},
                  {"code": "MAX_ORDER_QUANTITY", "message": "10 > 5"}]
    (coid, intent), kwargs = refused("r-1", violations=violations)
    book.record_refused(coid, intent, **kwargs, actor="ana", at=at)
    row = book.get_order("r-1")
    assert row["status"] == "REJECTED"
    assert row["violations"] == violations
    assert row["reason"] == "TRADING_HALTED: trading is HALTED: drill; MAX_ORDER_QUANTITY: 10 > 5"
    assert row["trading_state"] == "HALTED" and row["actor"] == "ana"
    assert row["sent_at"] is None and row["broker_order_id"] is None
    assert row["created_at"] == at and row["filled_quantity"] == 0
    assert (row["symbol"], row["side"], row["order_type"]) == ("AAPL", "buy", "limit")
    assert row["quantity"] == Decimal("10") and row["limit_price"] == Decimal("187.25")
    assert row["intent"]["symbol"] == "AAPL"
    assert book.unresolved_orders() == []  # recovery never looks a refused order up


def test_a_refused_order_without_a_route_or_a_valid_intent_is_still_journaled(book):
    book.record_refused("r-noroute", {"symbol": "ZZZZ", "side": "buy", "quantity": "1"},
                        connection=None, account=None, trading_state="ACTIVE",
                        violations=[{"code": "NO_ROUTE", "message": "no connection trades"}])
    book.record_refused("r-bad", {"symbol": "AAPL", "side": "up", "quantity": "ten"},
                        connection=None, account=None, trading_state="ACTIVE",
                        violations=[{"code": "INVALID_INTENT", "message": "quantity: ten"}])
    noroute, bad = book.get_order("r-noroute"), book.get_order("r-bad")
    assert noroute["connection"] is None and noroute["instrument"] is None
    assert noroute["violations"] == [{"code": "NO_ROUTE", "message": "no connection trades"}]
    assert bad["quantity"] is None  # 'ten' fits no quantity column: the intent keeps it
    assert bad["intent"] == {"symbol": "AAPL", "side": "up", "quantity": "ten"}


def test_a_refused_order_with_a_journaled_client_order_id_raises_and_keeps_the_first(book):
    book.journal_order(order_row("dup"))
    with pytest.raises(DuplicateClientOrderId):
        book.record_refused(*refused("dup")[0], **refused("dup")[1])
    assert book.get_order("dup")["status"] == "JOURNALED"


def test_a_refused_order_needs_a_violation():
    with Book("sqlite://", shared=False) as book, pytest.raises(ValueError, match="violations"):
        book.record_refused("r-none", {}, connection=None, account=None,
                            trading_state="ACTIVE", violations=[])


def test_the_blotter_shows_refused_orders_with_their_violation_codes_and_reason(book):
    from brokerkit.ui.blotter import BlotterView

    book.journal_order(order_row("sent-1"))
    book.record_refused("r-halted", {"symbol": "MSFT", "side": "sell", "quantity": "3"},
                        connection="paper", account="PA1", trading_state="HALTED",
                        violations=[{"code": "TRADING_HALTED", "message": "halted: drill"},
                                    {"code": "SHORT_SALE_NOT_ALLOWED", "message": "no borrow"}])
    orders, _ = asyncio.run(BlotterView(book).fetch_async())
    shown = orders.set_index("client_order_id")
    assert shown.loc["r-halted", "status"] == "REJECTED"
    assert shown.loc["r-halted", "violations"] == "TRADING_HALTED, SHORT_SALE_NOT_ALLOWED"
    assert shown.loc["r-halted", "reason"] == ("TRADING_HALTED: halted: drill; "
                                               "SHORT_SALE_NOT_ALLOWED: no borrow")
    assert shown.loc["sent-1", "violations"] == ""


def test_a_book_at_revision_0003_keeps_its_orders_and_takes_refused_orders_after_upgrade(
        book_url):
    from alembic import command
    from alembic.config import Config

    from brokerkit.book.engine import MIGRATIONS_DIR, create_book_engine

    engine = create_book_engine(book_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
        conn.exec_driver_sql(
            "INSERT INTO orders (client_order_id, connection, instrument, side, order_type, "
            "status, filled_quantity, created_at, updated_at) VALUES ('old-1', 'paper', "
            "'STK:AAPL', 'buy', 'market', 'FILLED', 1, '2026-01-02 10:00:00', "
            "'2026-01-02 10:00:00')")
    engine.dispose()
    book = Book(book_url)
    assert book.get_order("old-1")["status"] == "FILLED"
    book.record_refused("r-after", {}, connection=None, account=None, trading_state="ACTIVE",
                        violations=[{"code": "NO_ROUTE", "message": "none"}])
    assert book.get_order("r-after")["connection"] is None
