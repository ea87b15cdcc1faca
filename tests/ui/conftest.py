"""Browser-test fixtures: Playwright on Debian's Chromium, and the dashboard served in-process.

`dashboard` serves `brokerkit.serve.serve()` (the code behind `brokerkit serve`) on a free
port, in a thread, over a fresh SQLite book and a fresh sandbox whose clock is frozen (so the
buying power a page shows and the one `get_status()` returns are the same numbers). Each test
gets its own server, book and process-wide services, reset afterwards.
"""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("BROKERKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]
#: Set to a directory (e.g. docs/screenshots) to save screenshots of the pages for the README.
SCREENSHOTS = os.environ.get("BROKERKIT_SCREENSHOTS", "")
SCREENSHOTS = str(Path(SCREENSHOTS).resolve()) if SCREENSHOTS else ""  # before tests chdir
TIMEOUT_MS = 30_000


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Launch Debian's Chromium (Playwright's own download does not work offline)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_context_args, "viewport": {"width": 1400, "height": 1000}}


@pytest.fixture
def ui_page(page: Any) -> Any:
    """The Playwright page, with generous timeouts (2 shared cores, Chromium, a server)."""
    page.set_default_timeout(TIMEOUT_MS)
    return page


@pytest.fixture
def screenshot() -> Callable[[Any, str], None]:
    """`screenshot(page, name)` saves name.png into $BROKERKIT_SCREENSHOTS (if it is set)."""

    def take(page: Any, name: str) -> None:
        if SCREENSHOTS:
            Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
            page.wait_for_timeout(500)  # let charts finish drawing (a picture, not a check)
            page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"))

    return take


@dataclass
class Dashboard:
    url: str
    book_url: str

    def status(self) -> dict[str, Any]:
        from brokerkit.service import get_brokerage_service

        return get_brokerage_service().get_status()

    def book(self) -> Any:
        from brokerkit.execution.service import get_execution_service

        return get_execution_service().book


def _wait_alive(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}liveness", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def _reset_services() -> None:
    from brokerkit.execution.service import reset_execution_service
    from brokerkit.service import reset_brokerage_service

    reset_execution_service()
    reset_brokerage_service()


@pytest.fixture
def serve_dashboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedded_sandbox: Any
                    ) -> Iterator[Callable[..., Dashboard]]:
    """A function serving the dashboard (`auth=` optional) and returning its `Dashboard`."""
    import panel as pn

    from brokerkit.book import close_books
    from brokerkit.serve import free_port, serve

    book_url = f"sqlite:///{tmp_path / 'book.db'}"
    monkeypatch.setenv("BROKERKIT_DATABASE_URL", book_url)
    _reset_services()
    embedded_sandbox.market.clock.freeze()
    servers: list[Any] = []

    def start(auth: Any = None) -> Dashboard:
        port = free_port()
        servers.append(serve("127.0.0.1", port, auth=auth, use_config=False, threaded=True))
        url = f"http://localhost:{port}/"
        _wait_alive(url)
        return Dashboard(url, book_url)

    yield start
    pn.state.reset()  # stops every server this test started
    pn.config.authorize_callback = None
    _reset_services()
    close_books(book_url)


@pytest.fixture
def dashboard(serve_dashboard: Callable[..., Dashboard]) -> Dashboard:
    """The dashboard served without authentication (the local user is admin)."""
    return serve_dashboard()
