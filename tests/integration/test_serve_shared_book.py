"""Two `brokerkit serve` processes over one PostgreSQL book: a halt pressed in one server's
dashboard stops the other's next order, and an order placed through one shows in the other's
blotter (the kill switch and the journal live in the book, not in a process)."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ui"))

from playwright.sync_api import expect
from serveproc import ServeProcess

pytestmark = [pytest.mark.ui, pytest.mark.postgres]

CHROMIUM = os.environ.get("BROKERKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]
TIMEOUT_MS = 30_000


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Debian's Chromium (Playwright's own download does not work offline)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(autouse=True)
def _patient_expect() -> Iterator[None]:
    """Live views refresh every 2-3 s, on 2 shared cores: wait up to 20 s, in this module."""
    expect.set_options(timeout=20_000)
    yield
    expect.set_options(timeout=5_000)  # Playwright's default


@pytest.fixture
def pg_book_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL schema (the servers migrate it, under the book's lock);
    dropped afterwards."""
    import sqlalchemy as sa

    from brokerkit.book import close_books

    base = os.environ.get("BROKERKIT_TEST_DATABASE_URL")
    if not base:
        pytest.skip("BROKERKIT_TEST_DATABASE_URL is not set")
    schema = f"bk_serve_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    url_text = url.render_as_string(hide_password=False)
    try:
        yield url_text
    finally:
        close_books(url_text)
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


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


def test_two_servers_share_the_kill_switch_and_the_journal(browser, pg_book_url, tmp_path):
    from brokerkit.book import Book
    from brokerkit.serve import free_port

    env = {"BROKERKIT_DATABASE_URL": pg_book_url}
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
        expect(orders_a).to_have_count(1)  # the refused order never reached the journal

    book = Book(pg_book_url)
    try:
        assert book.orders_frame()["status"].tolist() == ["FILLED"]
        audit = book.audit_frame()
        refused = audit[(audit["action"] == "place_order") & (audit["result"] == "REJECTED")]
        assert len(refused) == 1 and "TRADING_HALTED" in str(refused["details"].iloc[0])
        history = book.trading_state_history()
        assert history["state"].iloc[-1] == "HALTED"
        assert history["reason"].iloc[-1] == "halt from server A"
    finally:
        book.close()
