"""The served dashboard in a real browser: the overview's figures, the ticket, the kill switch,
and what a viewer may see."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.ui

TIMEOUT_MS = 30_000


def _open_trade(page: Any, url: str) -> None:
    page.goto(url)
    page.locator(".bk-tab", has_text="Trade").click()
    expect(page.locator(".trading-state")).to_have_text("ACTIVE", timeout=TIMEOUT_MS)


def _preview_and_place(page: Any) -> None:
    page.locator(".btn-preview button").click()
    expect(page.locator(".ticket-preview")).to_contain_text("Ready to place",
                                                             timeout=TIMEOUT_MS)
    place = page.locator(".btn-place button")
    expect(place).to_be_enabled()
    place.click()
    expect(page.locator(".ticket-confirm")).to_contain_text("Send BUY 1 AAPL")


def test_overview_total_buying_power_equals_get_status(ui_page, dashboard, screenshot):
    ui_page.goto(dashboard.url)
    total = ui_page.locator(".total-buying-power")
    expect(total).to_contain_text("USD", timeout=TIMEOUT_MS)
    summary = dashboard.status()["summary"]
    expect(total).to_have_text(f"{summary['total_buying_power']:,.2f} USD")
    assert summary["total_buying_power"] > 0
    expect(ui_page.locator(".status-table")).to_contain_text("paper-us")
    screenshot(ui_page, "overview")
    ui_page.locator(".bk-tab", has_text="Positions").click()
    expect(ui_page.locator(".positions-count")).to_contain_text("positions", timeout=TIMEOUT_MS)
    screenshot(ui_page, "positions")


def test_order_placed_through_ticket_appears_in_blotter(ui_page, dashboard, screenshot):
    _open_trade(ui_page, dashboard.url)
    orders = ui_page.locator(".blotter-orders .tabulator-row")
    expect(orders).to_have_count(0)
    _preview_and_place(ui_page)
    ui_page.locator(".btn-confirm button").click()
    expect(ui_page.locator(".ticket-result")).to_contain_text("FILLED", timeout=TIMEOUT_MS)
    expect(orders).to_have_count(1, timeout=TIMEOUT_MS)
    expect(orders.first).to_contain_text("FILLED")
    expect(orders.first).to_contain_text("AAPL")
    journal = dashboard.book().orders_frame()
    assert journal["status"].tolist() == ["FILLED"]
    expect(orders.first).to_contain_text(journal["client_order_id"].iloc[0])
    screenshot(ui_page, "trade")


def test_halt_from_dashboard_rejects_next_ticket_order(ui_page, dashboard):
    _open_trade(ui_page, dashboard.url)
    _preview_and_place(ui_page)  # previewed while ACTIVE; confirmed after the halt
    ui_page.locator(".ks-reason input").fill("ui test halt")
    ui_page.locator(".ks-halt button").click()
    expect(ui_page.locator(".trading-state")).to_have_text("HALTED", timeout=TIMEOUT_MS)
    ui_page.locator(".btn-confirm button").click()
    result = ui_page.locator(".ticket-result")
    expect(result).to_contain_text("REJECTED", timeout=TIMEOUT_MS)
    expect(result).to_contain_text("TRADING_HALTED")
    journal = dashboard.book().orders_frame()
    assert "FILLED" not in journal["status"].tolist()  # nothing reached a broker
    history = dashboard.book().trading_state_history()
    assert history["state"].iloc[-1] == "HALTED"
    assert history["reason"].iloc[-1] == "ui test halt"
    expect(ui_page.locator(".ks-history")).to_contain_text("ui test halt")


def test_viewer_sees_no_ticket_and_cannot_halt(ui_page, serve_dashboard):
    from brokerkit.ui.auth import AuthConfig, User, hash_password

    auth = AuthConfig({"vera": User("vera", "viewer", hash_password("vera-pass")),
                       "ada": User("ada", "admin", hash_password("ada-pass"))})
    dash = serve_dashboard(auth=auth)
    ui_page.goto(dash.url)
    ui_page.locator('input[name="username"]').fill("vera")
    ui_page.locator('input[name="password"]').fill("wrong")
    ui_page.locator("button").first.click()
    expect(ui_page.get_by_text(re.compile("Invalid username or password"))).to_be_visible()
    ui_page.locator('input[name="username"]').fill("vera")
    ui_page.locator('input[name="password"]').fill("vera-pass")
    ui_page.locator("button").first.click()
    expect(ui_page.locator(".app-user")).to_contain_text("vera (viewer)", timeout=TIMEOUT_MS)
    ui_page.locator(".bk-tab", has_text="Trade").click()
    expect(ui_page.locator(".trading-state")).to_have_text("ACTIVE", timeout=TIMEOUT_MS)
    expect(ui_page.locator(".blotter-orders")).to_be_visible()
    expect(ui_page.locator(".btn-preview")).to_have_count(0)
    expect(ui_page.locator(".ks-halt")).to_be_hidden()
    expect(ui_page.locator(".ks-resume")).to_have_count(0)


def test_reconciliation_break_made_in_the_sandbox_shows_highlighted(ui_page, dashboard,
                                                                    embedded_sandbox):
    from brokerkit.post_trade.runs import Reconciler
    from brokerkit.service import get_brokerage_service

    svc = get_brokerage_service()
    rec = Reconciler(svc)
    for name in svc.connections:
        rec.adopt(name, reason="open the book")
    embedded_sandbox.broker("paper").set_position("DEMO-MARGIN-1", "AAPL", "125", "190")
    rec.run()
    ui_page.goto(dashboard.url)
    ui_page.locator(".bk-tab", has_text="Reconciliation").click()
    expect(ui_page.locator(".recon-summary")).to_contain_text("1 unexplained",
                                                              timeout=TIMEOUT_MS)
    cell = ui_page.locator(".recon-table .tabulator-cell", has_text="QUANTITY_BREAK").first
    expect(cell).to_be_visible(timeout=TIMEOUT_MS)
    # the break's colour is styled onto the cell once the table's data has arrived
    expect(cell).to_have_css("background-color", "rgb(248, 215, 218)", timeout=TIMEOUT_MS)


def test_settlement_page_shows_pending_settlements(ui_page, dashboard):
    from brokerkit.execution.service import get_execution_service

    result = get_execution_service().place_order(symbol="AAPL", side="buy", quantity=1)
    assert result.ok, result.reason
    ui_page.goto(dashboard.url)
    ui_page.locator(".bk-tab", has_text="Settlement").click()
    expect(ui_page.locator(".settlement-count")).to_contain_text("pending settlement",
                                                                 timeout=TIMEOUT_MS)
    expect(ui_page.locator(".settlement-table")).to_contain_text("AAPL")
