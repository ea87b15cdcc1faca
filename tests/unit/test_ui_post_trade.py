"""The reconciliation and settlement views, driven without a browser."""

from __future__ import annotations

import uuid

import pytest

from brokerkit.book import Book
from brokerkit.config import ConnectionConfig, Settings
from brokerkit.post_trade.runs import Reconciler
from brokerkit.service import BrokerageService


@pytest.fixture
def services(tmp_path, paper_url):
    broker = f"u-{uuid.uuid4().hex[:8]}"
    conns = {"paper-us": ConnectionConfig("paper-us", "paper",
                                          options={"url": paper_url, "broker": broker},
                                          accounts=("DEMO-MARGIN-1", "DEMO-CASH-1"))}
    url = f"sqlite:///{tmp_path / 'book.db'}"
    svc = BrokerageService(Settings(connections=conns, book_url=url))
    yield svc, Book(url)
    svc.close()


def test_reconciliation_view_shows_the_latest_run_with_breaks_highlighted(services,
                                                                          fresh_sandbox):
    from brokerkit.ui.reconcile import STATUS_COLORS, ReconciliationView, highlight

    svc, book = services
    rec = Reconciler(svc, book)
    rec.adopt("paper-us", reason="open the book")
    broker = fresh_sandbox.broker(svc.adapter("paper-us").config.options["broker"])
    broker.set_position("DEMO-MARGIN-1", "AAPL", "125", "190")
    run = rec.run()
    view = ReconciliationView(rec)
    assert view.refresh()
    assert view.run_id == run.run_id and "1 unexplained" in view._summary.object
    table = view._table.value
    brk = table[table["status"] == "QUANTITY_BREAK"]
    assert list(brk["instrument"]) == ["STK:AAPL"]
    styles = highlight(brk.iloc[0])
    assert all(STATUS_COLORS["QUANTITY_BREAK"] in s for s in styles)
    assert highlight(table[table["status"] == "MATCH"].iloc[0])[0] == ""


def test_settlement_view_lists_pending_settlements(services):
    from brokerkit.execution.service import ExecutionService
    from brokerkit.ui.settlement import SettlementView, pending_settlements

    svc, book = services
    ex = ExecutionService(svc, book)
    r = ex.place_order(symbol="AAPL", side="buy", quantity=2)
    assert r.ok
    fills = svc.fills()
    pending = pending_settlements(fills)
    assert len(pending) >= 1 and (pending["settle_date"] > fills["trade_date"].min()).all()
    assert (pending["amount"] < 0).all()  # buys pay
    view = SettlementView(svc)
    assert view.refresh()
    assert "pending settlement" in view._count.object and len(view._table.value) >= 1
    assert view._ladder.object is not None
