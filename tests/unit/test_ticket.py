"""The order ticket places only what was previewed, and only on explicit confirmation."""

from __future__ import annotations

import uuid

import pytest

from brokerkit.book import Book
from brokerkit.config import ConnectionConfig, Settings
from brokerkit.execution.service import ExecutionService
from brokerkit.execution.ticket import OrderTicket
from brokerkit.model import OrderStatus
from brokerkit.service import BrokerageService


@pytest.fixture
def broker(fresh_sandbox):
    """A fresh broker of the sandbox, counted on the broker's side."""
    return fresh_sandbox.broker(f"t-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def ticket(tmp_path, paper_url, broker):
    conns = {"paper-us": ConnectionConfig("paper-us", "paper",
                                          options={"url": paper_url, "broker": broker.name},
                                          accounts=("DEMO-MARGIN-1",))}
    url = f"sqlite:///{tmp_path / 'book.db'}"
    svc = BrokerageService(Settings(connections=conns, book_url=url))
    ex = ExecutionService(svc, Book(url))
    yield OrderTicket(ex, symbol="AAPL", quantity=2)
    svc.close()


def test_confirm_without_preview_is_refused_and_sends_nothing(ticket, broker):
    r = ticket.confirm()
    assert r.status is OrderStatus.REJECTED and r.codes == ["NOT_CONFIRMED"]
    assert broker.orders() == []


def test_preview_then_confirm_places_exactly_one_order(ticket, broker):
    p = ticket.preview()
    assert p.ok and ticket.can_confirm
    assert "BUY 2 AAPL at market" in ticket.summary() and "paper-us" in ticket.summary()
    r = ticket.confirm()
    assert r.status is OrderStatus.FILLED and len(broker.orders()) == 1
    assert ticket.result is r and not ticket.can_confirm
    again = ticket.confirm()  # one confirmation, one order
    assert again.codes == ["NOT_CONFIRMED"] and len(broker.orders()) == 1


def test_any_edit_after_preview_requires_a_new_preview(ticket):
    ticket.preview()
    ticket.quantity = 200
    assert ticket.preview_result is None and not ticket.can_confirm
    assert ticket.confirm().codes == ["NOT_CONFIRMED"]


def test_failed_preview_cannot_be_confirmed(ticket):
    ticket.order_type = "limit"  # no limit price
    p = ticket.preview()
    assert not p.ok and p["violations"][0]["code"] == "INVALID_INTENT"
    assert ticket.confirm().status is OrderStatus.REJECTED


def test_ticket_view_renders_the_preview(ticket):
    from brokerkit.ui.ticket import TicketView, render_preview

    view = TicketView(ticket)
    ticket.preview()
    md = render_preview(ticket.preview_result)
    assert "Ready to place" in md and "paper-us" in md
    assert view._place_btn.disabled is False
    ticket.quantity = 3
    assert view._place_btn.disabled is True
