"""Two `brokerkit serve` processes over one PostgreSQL book: a halt pressed in one server's
dashboard stops the other's next order, and an order placed through one shows in the other's
blotter (the kill switch and the journal live in the book, not in a process)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect
from serveproc import ServeProcess

pytestmark = [pytest.mark.ui, pytest.mark.postgres]
TIMEOUT_MS = 30_000


@pytest.fixture(autouse=True)
def _patient_expect() -> Iterator[None]:
    """Live views refresh every 2-3 s, on 2 shared cores: wait up to 20 s, in this module."""
    expect.set_options(timeout=20_000)
    yield
    expect.set_options(timeout=5_000)  # Playwright's default


def _open_trade(browser: Any, url: str) -> Any:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.locator(".bk-tab", has_text="Trade").click()
    expect(page.locator(".trading-state")).to_have_text("ACTIVE")
    return page


def _preview_and_place(page: Any) -> None:
    page.locator(".btn-preview button").click()
    expect(page.locator(".ticket-preview")).to_contain_text("Ready to place")
    page.locator(".btn-place button").click()
    expect(page.locator(".ticket-confirm")).to_contain_text("Send BUY 1 AAPL")


@pytest.mark.parametrize("book_url", [pytest.param("postgresql", marks=pytest.mark.postgres)],
                         indirect=True)  # a book several processes share: PostgreSQL
def test_two_servers_share_the_kill_switch_and_the_journal(browser, book_url, tmp_path):
    from brokerkit.book import Book
    from brokerkit.serve import free_port

    env = {"BROKERKIT_DATABASE_URL": book_url}
    with ServeProcess(free_port(), env, tmp_path / "a.log") as a, \
            ServeProcess(free_port(), env, tmp_path / "b.log") as b:
        a.wait_alive()
        b.wait_alive()
        page_a, page_b = _open_trade(browser, a.url), _open_trade(browser, b.url)
        orders_a = page_a.locator(".blotter-orders .tabulator-row")
        orders_b = page_b.locator(".blotter-orders .tabulator-row")
        expect(orders_b).to_have_count(0)

        # an order placed through A shows in B's blotter
        _preview_and_place(page_a)
        page_a.locator(".btn-confirm button").click()
        expect(page_a.locator(".ticket-result")).to_contain_text("FILLED")
        expect(orders_b).to_have_count(1)
        expect(orders_b.first).to_contain_text("FILLED")
        expect(orders_b.first).to_contain_text("AAPL")

        # B previews while trading is ACTIVE; A halts; B's confirm is refused
        _preview_and_place(page_b)
        page_a.locator(".ks-reason input").fill("halt from server A")
        page_a.locator(".ks-halt button").click()
        expect(page_a.locator(".trading-state")).to_have_text("HALTED")
        expect(page_b.locator(".trading-state")).to_have_text("HALTED")  # B's live view
        expect(page_b.locator(".ks-history")).to_contain_text("halt from server A")
        page_b.locator(".btn-confirm button").click()
        result = page_b.locator(".ticket-result")
        expect(result).to_contain_text("REJECTED")
        expect(result).to_contain_text("TRADING_HALTED")
        # the refused order is journaled with its reasons (never sent) and shows in A's blotter
        expect(orders_a).to_have_count(2)
        expect(page_a.locator(".blotter-orders")).to_contain_text("TRADING_HALTED")

    book = Book(book_url)
    try:
        orders = book.orders_frame()
        assert sorted(orders["status"].tolist()) == ["FILLED", "REJECTED"]
        refused_row = orders[orders["status"] == "REJECTED"].iloc[0]
        assert "TRADING_HALTED" in str(refused_row["violations"])
        assert refused_row["sent_at"] is None or str(refused_row["sent_at"]) in ("NaT", "None")
        assert refused_row["actor"]  # who tried, as for every journaled order
        history = book.trading_state_history()
        assert history["state"].iloc[-1] == "HALTED"
        assert history["reason"].iloc[-1] == "halt from server A"
    finally:
        book.close()
