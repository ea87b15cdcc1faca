"""The served dashboard works without internet: no request leaves 127.0.0.1, on any page.

Panel components name their stylesheets by CDN URL (`loading.css`, `markdown.css`, ...) and
Panel rewrites them to the server's own copies only for what it renders with the page; what a
page renders later (a tab opened, a loading overlay, a Preview) asked the CDN (issue 15:
17-18 failed requests per visit offline). Every request of every page is recorded here
(`page.on("request")`) and must go to the loopback server; no console error may appear.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.ui

TIMEOUT_MS = 30_000
#: Where a request may go: this machine only (RFC 1122 3.2.1.3: 127/8 is loopback).
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


class Recorder:
    """Every request and console error of a page."""

    def __init__(self, page: Any) -> None:
        self.urls: list[str] = []
        self.errors: list[str] = []
        self.failed: list[str] = []
        page.on("request", lambda r: self.urls.append(r.url))
        page.on("requestfailed", lambda r: self.failed.append(f"{r.url} ({r.failure})"))
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def off_machine(self) -> list[str]:
        """The requests that did not go to this machine (data: and blob: URLs stay local)."""
        out = []
        for url in self.urls:
            parts = urlsplit(url)
            if parts.scheme in ("data", "blob", "about"):
                continue
            if parts.hostname not in LOOPBACK_HOSTS:
                out.append(url)
        return out


def test_no_request_leaves_127_0_0_1_on_any_dashboard_page(ui_page, dashboard):
    rec = Recorder(ui_page)
    ui_page.goto(dashboard.url)
    expect(ui_page.locator(".total-buying-power")).to_contain_text("USD", timeout=TIMEOUT_MS)
    ui_page.locator(".bk-tab", has_text="Positions").click()
    expect(ui_page.locator(".positions-count")).to_contain_text("positions",
                                                                timeout=TIMEOUT_MS)
    ui_page.locator(".bk-tab", has_text="Trade").click()
    expect(ui_page.locator(".trading-state")).to_have_text("ACTIVE", timeout=TIMEOUT_MS)
    # Preview and Confirm rendered new panes that fetched stylesheets from the CDN
    ui_page.locator(".btn-preview button").click()
    expect(ui_page.locator(".ticket-preview")).to_contain_text("Ready to place",
                                                               timeout=TIMEOUT_MS)
    ui_page.locator(".btn-place button").click()
    ui_page.locator(".btn-confirm button").click()
    expect(ui_page.locator(".ticket-result")).to_contain_text("FILLED", timeout=TIMEOUT_MS)
    expect(ui_page.locator(".blotter-orders .tabulator-row")).to_have_count(
        1, timeout=TIMEOUT_MS)
    ui_page.locator(".bk-tab", has_text="Reconciliation").click()
    expect(ui_page.locator(".recon-summary")).to_be_visible(timeout=TIMEOUT_MS)
    ui_page.locator(".bk-tab", has_text="Settlement").click()
    expect(ui_page.locator(".settlement-count")).to_contain_text("pending settlement",
                                                                 timeout=TIMEOUT_MS)
    ui_page.wait_for_load_state("networkidle")
    assert rec.urls, "no request was recorded"
    assert rec.off_machine() == [], rec.off_machine()
    assert rec.failed == []
    assert rec.errors == []
