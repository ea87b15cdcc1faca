"""The book on SQLite and on PostgreSQL: schema, journal, fills, positions, trading state, audit.

Every test runs on both databases through the `book_url` / `book` fixtures (tests/conftest.py);
PostgreSQL runs are skipped only when BROKERKIT_TEST_DATABASE_URL is unset.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pandas as pd
import pytest
import sqlalchemy as sa

from brokerkit import frames
from brokerkit.book import (
    Book,
    BookBusy,
    DuplicateClientOrderId,
    OrderNotSendable,
    TradingBlocked,
    UnknownOrder,
    acting_as,
    open_book,
)
from brokerkit.book.tables import metadata, trading_state
from brokerkit.errors import ConfigError, SchemaError

T0 = datetime(2025, 3, 3, 14, 30, tzinfo=UTC)


def order(coid: str, **extra):
    row = {"client_order_id": coid, "connection": "paper", "account": "PA1",
           "instrument": "STK:AAPL", "symbol": "AAPL", "asset_class": "equity", "side": "buy",
           "order_type": "limit", "quantity": Decimal("10"), "limit_price": Decimal("187.25"),
           "time_in_force": "day", "intent": {"symbol": "AAPL", "quantity": Decimal("10")}}
    return row | extra


def fill(fill_id: str, side: str, quantity: float, price: float, minute: int, **extra):
    return {"connection": "paper", "account": "PA1", "fill_id": fill_id, "order_id": "o1",
            "client_order_id": "c1", "instrument": "STK:AAPL", "symbol": "AAPL",
            "asset_class": "equity", "side": side, "quantity": quantity, "price": price,
            "fee": 0.0, "fee_currency": "USD", "currency": "USD",
            "executed_at": T0 + timedelta(minutes=minute),
            "trade_date": pd.Timestamp("2025-03-03"), "settle_date": pd.Timestamp("2025-03-04"),
            } | extra


def position(book: Book, instrument: str = "STK:AAPL") -> tuple[float, float] | None:
    df = book.book_positions_frame("paper")
    rows = df[df.instrument == instrument]
    if rows.empty:
        return None
    return float(rows.quantity.iloc[0]), float(rows.avg_cost.iloc[0])


# -- schema --------------------------------------------------------------------------------


def test_migrated_database_matches_tables_module(book):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from brokerkit.book.store import MIGRATIONS_DIR

    with book.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
        head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
        assert context.get_current_revision() == head
        assert set(sa.inspect(conn).get_table_names()) == {*metadata.tables, "alembic_version"}


def test_sqlite_book_is_in_wal_mode_with_busy_timeout(tmp_path):
    book = Book(f"sqlite:///{tmp_path / 'nested' / 'dir' / 'book.db'}")
    try:
        with book.connect() as conn:
            pragma = {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                      for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")}
        assert pragma == {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 5000,
                          "foreign_keys": 1}
    finally:
        book.close()


def test_repr_names_the_database_but_hides_the_password(book_url):
    url = sa.make_url(book_url)
    if url.get_backend_name() == "postgresql":  # SQLite URLs cannot carry a password
        url = url.set(password="s3cret-pw")  # trust auth: accepted and ignored
    book = Book(url, shared=False)
    try:
        assert repr(book) == f"Book({url.render_as_string(hide_password=True)!r})"
        assert "s3cret-pw" not in repr(book) and "s3cret-pw" not in str(book)
        assert url.database in repr(book)
    finally:
        book.close()


def test_open_book_uses_the_configured_url(book_url, monkeypatch):
    from brokerkit.config import user_data_dir

    default = open_book()  # nothing configured: a SQLite file in the user data directory
    try:
        assert default.url == f"sqlite:///{user_data_dir() / 'book.db'}"
        assert (user_data_dir() / "book.db").is_file()
    finally:
        default.close()
    monkeypatch.setenv("BROKERKIT_DATABASE_URL", book_url)
    configured = Book()
    try:
        assert configured.url == sa.make_url(book_url).render_as_string(hide_password=True)
    finally:
        configured.close()


def test_unsupported_or_malformed_urls_are_config_errors():
    with pytest.raises(ConfigError, match="not 'mysql'"):
        Book("mysql+pymysql://u:pw@host/db")
    with pytest.raises(ConfigError, match=r"\[book\.url\]") as info:
        Book("::pw-123::")
    assert "pw-123" not in str(info.value)


def test_two_processes_opening_a_fresh_database_both_migrate(book_url, tmp_path):
    go = tmp_path / "go"
    script = textwrap.dedent("""
        import sys, time
        from pathlib import Path
        import alembic.command, alembic.config
        from brokerkit.book.store import Book
        print("ready", flush=True)
        while not Path(sys.argv[2]).exists():
            time.sleep(0.001)
        print(Book(sys.argv[1]).get_trading_state().state, flush=True)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, book_url, str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    go.touch()
    results = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
        assert out.strip() == "ACTIVE"
    book = Book(book_url)
    assert book.get_trading_state().version == 1  # migrated once: one initial row


# -- the journal ---------------------------------------------------------------------------


def test_journal_order_writes_a_journaled_row_with_the_state_it_read(book):
    with acting_as("ana"):
        state = book.journal_order(order("c1"))
    assert state.state == "ACTIVE"
    row = book.get_order("c1")
    assert row["status"] == "JOURNALED"
    assert row["trading_state"] == "ACTIVE"
    assert row["actor"] == "ana"
    assert row["quantity"] == Decimal("10")
    assert row["limit_price"] == Decimal("187.25")
    assert row["filled_quantity"] == 0
    assert row["intent"] == {"symbol": "AAPL", "quantity": "10"}
    assert row["created_at"].tzinfo is not None and row["created_at"].utcoffset() == timedelta(0)
    assert book.get_order("nope") is None


def test_guard_reason_writes_the_order_as_rejected_and_raises(book):
    book.set_trading_state("HALTED", "market event", actor="ops")
    seen = []

    def guard(state):
        seen.append(state.state)
        return "trading is halted" if state.halted else None

    with pytest.raises(TradingBlocked) as info:
        book.journal_order(order("c1"), guard=guard)
    assert info.value.client_order_id == "c1"
    assert info.value.state.state == "HALTED"
    assert seen == ["HALTED"]
    row = book.get_order("c1")
    assert (row["status"], row["reason"], row["trading_state"]) == (
        "REJECTED", "trading is halted", "HALTED")
    assert book.unresolved_orders() == []


def test_halt_in_one_book_rejects_the_next_order_in_another(book):
    other = Book(book.engine.url, shared=False)  # its own engine and pool, like a 2nd process
    try:
        def guard(state):
            return None if state.active else f"state {state.state}"

        assert other.journal_order(order("c1"), guard=guard).state == "ACTIVE"
        book.set_trading_state("HALTED", "kill switch", actor="ops")
        with pytest.raises(TradingBlocked, match="HALTED"):
            other.journal_order(order("c2"), guard=guard)
        assert book.get_order("c2")["status"] == "REJECTED"
    finally:
        other.close()


def test_journal_waits_for_an_uncommitted_halt_and_then_sees_it(book):
    other = Book(book.engine.url, shared=False)
    outcome: list[object] = []

    def journal():
        try:
            other.journal_order(order("c1"), guard=lambda s: s.state if s.halted else None)
            outcome.append("journaled")
        except TradingBlocked as exc:
            outcome.append(exc.state.state)

    try:
        with book.begin() as conn:  # a halt in flight: written, not yet committed
            conn.execute(trading_state.update().values(state="HALTED",
                                                       version=trading_state.c.version + 1))
            racer = threading.Thread(target=journal)
            racer.start()
            racer.join(0.3)
            assert racer.is_alive() and outcome == []  # the journal waits for the halt
        racer.join(10)
        assert outcome == ["HALTED"]
        assert book.get_order("c1")["status"] == "REJECTED"
    finally:
        other.close()


def test_duplicate_client_order_id_raises_and_keeps_the_first_order(book):
    book.journal_order(order("dup", quantity=Decimal("1")))
    with pytest.raises(DuplicateClientOrderId, match="'dup'"):
        book.journal_order(order("dup", quantity=Decimal("999")))
    assert book.get_order("dup")["quantity"] == Decimal("1")


def test_journal_row_errors_name_the_value_at_fault(book):
    with pytest.raises(SchemaError, match="qty"):
        book.journal_order(order("c1") | {"qty": 5})
    with pytest.raises(SchemaError, match="'connection' is required"):
        book.journal_order(order("c1", connection=None))
    with pytest.raises(SchemaError, match=r"'quantity'.*'ten'"):
        book.journal_order(order("c1", quantity="ten"))
    with pytest.raises(SchemaError, match="'SHIPPED'"):
        book.journal_order(order("c1", status="SHIPPED"))
    assert book.get_order("c1") is None


def test_unresolved_orders_are_journaled_sent_and_uncertain_ones(book):
    for coid in ("a", "b", "c", "d", "e"):
        book.journal_order(order(coid))
    book.mark_sent("b")
    book.mark_sent("c")
    book.update_order("c", status="UNCERTAIN", reason="timeout")
    book.mark_sent("d")
    book.update_order("d", status="FILLED", broker_order_id="B-4", filled_quantity=10,
                      avg_fill_price=Decimal("187.20"))
    book.update_order("e", status="REJECTED", reason="insufficient buying power")
    unresolved = book.unresolved_orders()
    assert [(o["client_order_id"], o["status"]) for o in unresolved] == [
        ("a", "JOURNALED"), ("b", "SENT"), ("c", "UNCERTAIN")]
    assert unresolved[1]["sent_at"] is not None
    d = book.get_order("d")
    assert (d["broker_order_id"], d["filled_quantity"], d["avg_fill_price"]) == (
        "B-4", Decimal("10"), Decimal("187.20"))
    frame = book.orders_frame()
    assert list(frame.client_order_id) == ["a", "b", "c", "d", "e"]
    assert frame.filled_quantity.dtype == "float64"
    assert str(frame.created_at.dtype) == "datetime64[ns, UTC]"
    assert book.orders_frame(since=datetime.now(UTC) + timedelta(hours=1)).empty


def test_mark_sent_refuses_orders_that_are_not_journaled(book):
    with pytest.raises(TradingBlocked):
        book.journal_order(order("r"), guard=lambda s: "no")
    with pytest.raises(OrderNotSendable, match="REJECTED"):
        book.mark_sent("r")
    with pytest.raises(UnknownOrder, match="ghost"):
        book.mark_sent("ghost")
    with pytest.raises(UnknownOrder, match="ghost"):
        book.update_order("ghost", status="FILLED")
    with pytest.raises(SchemaError, match="client_order_id"):
        book.update_order("r", client_order_id="other")


ACK = {"status": "FILLED", "broker_order_id": "B-1", "filled_quantity": Decimal("10"),
       "avg_fill_price": Decimal("187.20"), "sent_at": T0}


def test_record_ack_settles_an_unresolved_order_and_never_overwrites_a_newer_answer(book):
    book.journal_order(order("a"))
    assert book.record_ack("a", **ACK) is True
    row = book.get_order("a")
    assert (row["status"], row["broker_order_id"], row["filled_quantity"], row["sent_at"]) == (
        "FILLED", "B-1", Decimal("10"), T0)
    book.journal_order(order("b"))
    book.update_order("b", status="CANCELED", reason="recovered elsewhere")
    assert book.record_ack("b", **ACK) is False  # a late acknowledgement keeps out
    assert book.get_order("b")["status"] == "CANCELED"
    assert book.record_ack("ghost", **ACK) is False
    with pytest.raises(SchemaError, match="client_order_id"):
        book.record_ack("a", client_order_id="other")


def test_acknowledgements_ride_along_a_journal_write_in_one_transaction(book):
    book.journal_order(order("a"))
    book.journal_order(order("b"))
    book.update_order("b", status="REJECTED", reason="refused")
    book.journal_order(order("c"), acks=[("a", ACK), ("b", ACK)])
    assert book.get_order("a")["status"] == "FILLED"
    assert book.get_order("b")["status"] == "REJECTED"  # resolved already: left alone
    assert book.get_order("c")["status"] == "JOURNALED"


def test_acknowledgements_still_land_when_the_order_they_rode_with_is_refused(book):
    book.journal_order(order("a"))
    book.journal_order(order("d"))
    with pytest.raises(DuplicateClientOrderId):
        book.journal_order(order("d"), acks=[("a", ACK)])
    assert book.get_order("a")["status"] == "FILLED"
    book.journal_order(order("e"))
    book.set_trading_state("HALTED", "stop", actor="ops")
    with pytest.raises(TradingBlocked):
        book.journal_order(order("f"), guard=lambda s: "halted" if s.halted else None,
                           acks=[("e", ACK)])
    assert book.get_order("e")["status"] == "FILLED"  # same transaction as the REJECTED row
    assert book.get_order("f")["status"] == "REJECTED"


def test_a_write_that_must_not_wait_gives_up_at_once_when_the_lock_is_held(book):
    if not book.writes_nowait:  # PostgreSQL: always done where waiting is fine
        with pytest.raises(BookBusy):
            book.journal_order(order("n1"), nowait=True)
        assert book.get_order("n1") is None
        return
    book.journal_order(order("a"))
    other = Book(book.engine.url, shared=False)
    try:
        with other.begin() as conn:  # another writer holds the write lock
            conn.execute(trading_state.update().values(reason="busy"))
            start = time.perf_counter()
            with pytest.raises(BookBusy):
                book.journal_order(order("n1"), acks=[("a", ACK)], nowait=True)
            assert time.perf_counter() - start < 0.5  # no busy wait
        assert book.get_order("n1") is None and book.get_order("a")["status"] == "JOURNALED"
        assert book.journal_order(order("n1"), acks=[("a", ACK)], nowait=True).active
        assert book.get_order("n1")["status"] == "JOURNALED"
        assert book.get_order("a")["status"] == "FILLED"
        assert not book.checkpoint_due()
        for i in range(300):  # no-wait writes never checkpoint: they say when one is due
            book.journal_order(order(f"w{i}"), nowait=True)
        assert book.checkpoint_due() and not book.checkpoint_due()
        book.checkpoint()
        assert len(book.unresolved_orders()) == 301  # n1 and the 300
    finally:
        other.close()


@pytest.mark.parametrize("book_url", ["sqlite"], indirect=True)  # no-wait writes are SQLite's
def test_no_wait_writes_see_a_halt_committed_a_moment_before(book):
    assert book.writes_nowait
    book.journal_order(order("a"), nowait=True)
    other = Book(book.engine.url, shared=False)
    try:
        other.set_trading_state("HALTED", "kill switch", actor="ops")
        with pytest.raises(TradingBlocked, match="HALTED"):
            book.journal_order(order("b"), guard=lambda s: s.state if s.halted else None,
                               nowait=True)
        assert book.get_order("b")["trading_state"] == "HALTED"
    finally:
        other.close()


def test_an_in_memory_book_journals_on_its_pools_own_connection():
    book = Book("sqlite://", shared=False)  # one database per connection: nothing pinned
    try:
        assert not book.writes_nowait
        book.journal_order(order("m1"))
        assert book.record_ack("m1", **ACK)
        assert book.get_order("m1")["status"] == "FILLED"
    finally:
        book.close()


@pytest.mark.parametrize("book_url", [pytest.param("postgresql", marks=pytest.mark.postgres)],
                         indirect=True)  # the server closing an idle connection is PostgreSQL's
def test_a_journal_connection_closed_by_the_server_is_replaced_without_a_lost_order(book):
    assert book.dialect == "postgresql"
    book.journal_order(order("a"))  # pins a connection
    pid = book._hot._conn.driver_connection.info.backend_pid  # that one, no other
    with book.engine.connect() as conn:
        conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
    assert book.journal_order(order("b")).active  # the lost connection is replaced once
    assert [r["client_order_id"] for r in book.unresolved_orders()] == ["a", "b"]


def test_journal_insert_on_sqlite_takes_about_a_millisecond(tmp_path):
    book = Book(f"sqlite:///{tmp_path / 'book.db'}")
    try:
        timings = []
        for i in range(200):
            start = time.perf_counter()
            book.journal_order(order(f"perf-{i}"))
            timings.append(time.perf_counter() - start)
    finally:
        book.close()
    # the target is < 1 ms; the bound is generous so a loaded CI machine does not flake
    assert sorted(timings)[len(timings) // 2] < 0.005


# -- fills and positions -------------------------------------------------------------------


def test_record_fills_is_idempotent_and_builds_positions(book):
    assert book.record_fills([fill("f1", "buy", 100, 10.0, 1),
                              fill("f2", "buy", 100, 12.0, 2)]) == 2
    assert position(book) == (200, 11.0)  # weighted average on increases

    assert book.record_fills(pd.DataFrame([fill("f2", "buy", 100, 12.0, 2),
                                           fill("f3", "sell", 50, 20.0, 3)])) == 1
    assert position(book) == (150, 11.0)  # a partial reduction keeps the average cost

    assert book.record_fills([fill("f1", "buy", 100, 10.0, 1),
                              fill("f2", "buy", 100, 12.0, 2),
                              fill("f3", "sell", 50, 20.0, 3)]) == 0
    assert position(book) == (150, 11.0)  # re-recording changes nothing
    assert len(book.fills_frame()) == 3

    assert book.record_fills([fill("f4", "sell", 200, 15.0, 4)]) == 1
    assert position(book) == (-50, 15.0)  # flipped through zero: the new side's cost

    assert book.record_fills([fill("f5", "buy", 50, 14.0, 5)]) == 1
    assert position(book) is None  # flat positions leave the book


def test_same_fill_id_on_another_connection_is_another_fill(book):
    assert book.record_fills([fill("x", "buy", 1, 10.0, 1),
                              fill("x", "buy", 2, 10.0, 1, connection="alpaca")]) == 2
    df = book.book_positions_frame()
    assert sorted(zip(df.connection, df.quantity, strict=True)) == [("alpaca", 2.0),
                                                                    ("paper", 1.0)]


def test_fills_frame_is_the_canonical_fills_schema(book):
    book.record_fills([fill("f2", "sell", 1.5, 11.0, 2), fill("f1", "buy", 3, 10.0, 1)])
    df = frames.validate(frames.FILLS, book.fills_frame())
    assert list(df.fill_id) == ["f1", "f2"]  # execution order
    assert df.executed_at.iloc[0] == pd.Timestamp(T0 + timedelta(minutes=1))
    assert df.settle_date.iloc[0] == pd.Timestamp("2025-03-04")
    assert frames.validate(frames.FILLS, book.fills_frame(connection="none")).empty


def test_bad_fill_rows_name_the_row_and_column(book):
    with pytest.raises(SchemaError, match=r"fill row 1 \('f2'\).*'price'"):
        book.record_fills([fill("f1", "buy", 1, 10.0, 1), fill("f2", "buy", 1, None, 1)])
    with pytest.raises(SchemaError, match="side 'hold'"):
        book.record_fills([fill("f1", "hold", 1, 10.0, 1)])
    assert book.fills_frame().empty


def test_adopt_positions_replaces_book_positions_and_writes_audit_rows(book):
    book.record_fills([fill("f1", "buy", 100, 10.0, 1),
                       fill("g1", "buy", 5, 50.0, 1, account="PA2", instrument="STK:MSFT")])
    broker = frames.make(frames.POSITIONS, [
        {"connection": "paper", "account": "PA1", "instrument": "STK:AAPL", "symbol": "AAPL",
         "asset_class": "equity", "quantity": 90.0, "avg_cost": 10.5, "currency": "USD"},
        {"connection": "paper", "account": "PA1", "instrument": "STK:TSLA", "symbol": "TSLA",
         "asset_class": "equity", "quantity": -3.0, "avg_cost": 200.0, "currency": "USD"},
    ])
    written = book.adopt_positions(broker, "ops", "broker is the truth after outage",
                                   accounts=[("paper", "PA3")])
    assert written == 2
    df = book.book_positions_frame("paper")
    got = {(a, i): (q, c, s) for a, i, q, c, s in
           zip(df.account, df.instrument, df.quantity, df.avg_cost, df.source, strict=True)}
    assert got == {("PA1", "STK:AAPL"): (90.0, 10.5, "adoption"),
                   ("PA1", "STK:TSLA"): (-3.0, 200.0, "adoption"),
                   ("PA2", "STK:MSFT"): (5.0, 50.0, "fills")}  # other accounts untouched
    audit = book.audit_frame()
    adoptions = audit[audit.action == "adopt_positions"]
    assert sorted(adoptions.target) == ["paper/PA1", "paper/PA3"]
    assert set(adoptions.actor) == {"ops"}
    pa1 = adoptions[adoptions.target == "paper/PA1"].iloc[0]
    assert "broker is the truth after outage" in pa1.details
    assert '"STK:AAPL"' in pa1.details and pa1.result == "adopted 2 positions"
    with pytest.raises(ValueError, match="reason"):
        book.adopt_positions(broker, "ops", "")


def aapl(quantity: float, connection: str = "paper") -> dict:
    return {"connection": connection, "account": "PA1", "instrument": "STK:AAPL",
            "symbol": "AAPL", "asset_class": "equity", "quantity": quantity, "avg_cost": 10.0,
            "currency": "USD"}


def test_a_fill_inside_an_adopted_position_is_never_applied_again(book):
    book.adopt_positions([aapl(100)], "ops", "open the book", fill_ids={"paper": ["f1"]},
                         read_at=T0 + timedelta(minutes=5))
    # a pull from the beginning brings f1 (before the adoption) and f2 (after it)
    assert book.record_fills([fill("f1", "buy", 100, 10.0, 1),
                              fill("f2", "buy", 5, 10.0, 6)]) == 1
    assert position(book) == (105.0, 10.0)
    assert list(book.fills_frame()["fill_id"]) == ["f2"]
    assert book.record_fills([fill("f1", "buy", 100, 10.0, 1)]) == 0
    assert book.adopted_through("paper") == T0 + timedelta(minutes=5)
    assert book.adopted_through("alpaca") is None


def test_a_fill_already_recorded_stays_out_of_a_later_adoptions_watermark(book):
    book.record_fills([fill("f1", "buy", 100, 10.0, 1)])
    book.adopt_positions([aapl(100)], "ops", "reset", fill_ids={"paper": ["f1", "f0"]})
    adoption = book.adoptions_frame().iloc[0]
    assert adoption["fill_count"] == 2 and pd.isna(adoption["opening"])
    assert book.record_fills([fill("f0", "sell", 7, 10.0, 0)]) == 0  # inside the adoption
    assert position(book) == (100.0, 10.0)


def test_a_fresh_connection_opens_from_its_broker_once(book):
    assert book.opening_needed("paper")
    assert book.open_from_broker("paper", [aapl(120)], accounts=["PA1", "PA2"],
                                 fill_ids=["f1"], read_at=T0, actor="ops") == 1
    assert not book.opening_needed("paper")
    assert book.open_from_broker("paper", [aapl(999)], read_at=T0) is None  # decided once
    assert position(book) == (120.0, 10.0)
    opening = book.adoptions_frame()
    assert list(opening["opening"]) == ["paper"] and list(opening["actor"]) == ["ops"]
    audit = book.audit_frame()
    rows = audit[audit.action == "adopt_positions"]
    assert sorted(rows.target) == ["paper/PA1", "paper/PA2"]
    assert all('"reason": "opening positions of a fresh book"' in d for d in rows.details)
    assert book.record_fills([fill("f1", "buy", 120, 10.0, 0)]) == 0


def test_a_connection_with_history_in_the_book_is_never_opened_from_its_broker(book):
    book.record_fills([fill("f1", "buy", 3, 10.0, 1)])
    assert not book.opening_needed("paper")
    assert book.open_from_broker("paper", [aapl(120)], read_at=T0) is None
    assert position(book) == (3.0, 10.0)
    book.journal_order({"client_order_id": "bk-1", "connection": "alpaca",
                        "instrument": "STK:AAPL", "side": "buy", "order_type": "market"})
    assert book.open_from_broker("alpaca", [aapl(1, "alpaca")], read_at=T0) is None
    assert book.adoptions_frame().empty
    with pytest.raises(SchemaError, match="other connections"):
        book.open_from_broker("ibkr", [aapl(1)], read_at=T0)


def test_latest_snapshot_returns_the_newest_snapshot_of_a_connection(book):
    rows = [{"connection": "paper", "account": "PA1", "instrument": "STK:AAPL",
             "symbol": "AAPL", "asset_class": "equity", "quantity": q, "avg_cost": 10.0,
             "market_price": 11.0, "currency": "USD", "as_of": T0} for q in (1.0, 2.0)]
    first = book.snapshot_broker_positions(rows[:1], taken_at=T0)
    second = book.snapshot_broker_positions(pd.DataFrame(rows[1:]),
                                            taken_at=T0 + timedelta(minutes=1))
    assert first != second
    latest = book.latest_snapshot("paper")
    assert list(latest.snapshot_id) == [second]
    assert list(latest.quantity) == [2.0]
    assert latest.taken_at.iloc[0] == pd.Timestamp(T0 + timedelta(minutes=1))
    assert book.latest_snapshot("alpaca").empty


# -- trading state and audit ---------------------------------------------------------------


def test_trading_state_change_is_seen_by_a_second_book_at_once_and_recorded(book):
    other = Book(book.engine.url, shared=False)
    try:
        assert other.get_trading_state().state == "ACTIVE"
        halted = book.set_trading_state("halted", "risk limit breached", actor="risk-desk")
        seen = other.get_trading_state()
        assert (seen.state, seen.reason, seen.actor, seen.version) == (
            "HALTED", "risk limit breached", "risk-desk", halted.version)
        other.set_trading_state("REDUCING", "reopening carefully", actor="ops")
        assert book.get_trading_state().version == halted.version + 1
    finally:
        other.close()
    history = book.trading_state_history()
    assert list(zip(history.previous_state, history.state, history.actor, strict=True)) == [
        ("ACTIVE", "HALTED", "risk-desk"), ("HALTED", "REDUCING", "ops")]
    assert history.pid.notna().all() and history.host.notna().all()
    audit = book.audit_frame()
    changes = audit[audit.action == "set_trading_state"]
    assert list(changes.target) == ["REDUCING", "HALTED"]  # newest first
    with pytest.raises(ValueError, match="'PAUSED'"):
        book.set_trading_state("PAUSED", "no such state")


def test_audit_rows_carry_the_acting_user(book):
    with acting_as("dashboard:ana"):
        book.audit("cancel_order", target="c9", details={"why": Decimal("1.5")}, result="ok")
    book.audit("export", actor="bob")
    audit = book.audit_frame(limit=2)
    assert list(audit.actor) == ["bob", "dashboard:ana"]
    assert audit.details.iloc[1] == '{"why": "1.5"}'
    assert str(audit["at"].dtype) == "datetime64[ns, UTC]"


# --- reconciliation runs and position corrections (migration 0002) -------------------------


def test_reconciliation_run_is_stored_with_its_rows(book):
    import pandas as pd

    rows = pd.DataFrame([
        {"connection": "c", "account": "A", "instrument": "STK:AAPL", "symbol": "AAPL",
         "asset_class": "equity", "currency": "USD", "book_quantity": 10.0,
         "broker_quantity": 12.0, "quantity_diff": 2.0, "price": 100.0, "value_diff": 200.0,
         "status": "QUANTITY_BREAK", "explanation": "broker holds 2 more"},
        {"connection": "c", "account": "A", "instrument": "STK:MSFT", "symbol": "MSFT",
         "asset_class": "equity", "currency": "USD", "book_quantity": 1.0,
         "broker_quantity": 1.0, "quantity_diff": 0.0, "price": None, "value_diff": None,
         "status": "MATCH", "explanation": ""},
    ])
    run_id = book.save_reconciliation(rows, connections=["c"], failed={"x": "timed out"},
                                      unexplained=1, actor="tester")
    runs = book.reconciliation_runs()
    assert runs.loc[0, "run_id"] == run_id and runs.loc[0, "unexplained"] == 1
    assert '"x"' in runs.loc[0, "failed"] and runs.loc[0, "actor"] == "tester"
    stored = book.reconciliation_rows(run_id)
    assert list(stored["status"]) == ["QUANTITY_BREAK", "MATCH"]
    assert stored.loc[0, "quantity_diff"] == 2.0 and pd.isna(stored.loc[1, "price"])
    assert (book.audit_frame()["action"] == "reconcile").any()


def test_correct_positions_touches_only_the_given_instruments_and_audits(book):
    from decimal import Decimal

    book.adopt_positions([{"connection": "c", "account": "A", "instrument": "STK:AAPL",
                           "quantity": Decimal(5)},
                          {"connection": "c", "account": "A", "instrument": "STK:MSFT",
                           "quantity": Decimal(7)}], "tester", "open the book")
    n = book.correct_positions([{"connection": "c", "account": "A", "instrument": "STK:AAPL",
                                 "quantity": Decimal(8), "avg_cost": Decimal("101.5")},
                                {"connection": "c", "account": "A", "instrument": "STK:TSLA",
                                 "quantity": Decimal(0)}], "tester", "sync from recon")
    assert n == 2
    pos = book.book_positions_frame().set_index("instrument")["quantity"].to_dict()
    assert pos == {"STK:AAPL": 8.0, "STK:MSFT": 7.0}
    audits = book.audit_frame()
    assert (audits["action"] == "correct_position").sum() == 2
    with pytest.raises(ValueError, match="reason"):
        book.correct_positions([], "tester", " ")


def test_an_order_answered_before_its_fills_is_filled_by_them_and_a_canceled_one_keeps_its_status(
        book):
    """A broker may answer ACCEPTED before it fills (an IBKR market order): the journal row
    follows its recorded fills to PARTIALLY_FILLED and FILLED; a CANCELED order counts what
    filled before it ended but stays CANCELED."""
    book.journal_order(order("c1"))
    book.record_ack("c1", status="ACCEPTED", broker_order_id="o1")
    book.record_fills([fill("f1", "buy", 4, 100.0, 1)])
    row = book.get_order("c1")
    assert (row["status"], float(row["filled_quantity"])) == ("PARTIALLY_FILLED", 4.0)
    book.record_fills([fill("f2", "buy", 6, 110.0, 2)])
    row = book.get_order("c1")
    assert (row["status"], float(row["filled_quantity"])) == ("FILLED", 10.0)
    assert float(row["avg_fill_price"]) == pytest.approx(106.0)
    book.journal_order(order("c2"))
    book.record_ack("c2", status="CANCELED", broker_order_id="o2")
    book.record_fills([fill("f3", "buy", 3, 100.0, 3, client_order_id="c2", order_id="o2")])
    row = book.get_order("c2")
    assert (row["status"], float(row["filled_quantity"])) == ("CANCELED", 3.0)


def test_fills_of_an_order_still_waiting_for_its_answer_leave_the_row_to_that_answer(book):
    """An UNCERTAIN order (the broker accepted it late) may fill before recovery finds it: the
    row waits for the broker's answer, which brings its status and order id."""
    book.journal_order(order("c3"))
    book.record_ack("c3", status="UNCERTAIN", reason="submit uncertain: timeout")
    book.record_fills([fill("f9", "buy", 10, 100.0, 1, client_order_id="c3", order_id="o3")])
    assert book.get_order("c3")["status"] == "UNCERTAIN"
    book.record_ack("c3", status="FILLED", broker_order_id="o3", filled_quantity=10)
    row = book.get_order("c3")
    assert (row["status"], row["broker_order_id"]) == ("FILLED", "o3")
