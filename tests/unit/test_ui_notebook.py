"""brokerkit's views in a real Jupyter kernel (ipykernel, driven over ZMQ by jupyter_client).

The front end is played by this test: it reads what the kernel publishes (the cell outputs),
and opens the comm a browser's Panel front end opens (pyviz_comms: a `comm_open` to the
`client_comm_id` the view's output names), after which the kernel sends the view's updates as
`comm_msg`s, as it does to JupyterLab. What a browser then fetches is the JupyterLab tests'
business; here: what the kernel sends names no CDN, the views refresh on their own, and the
services are built off brokerkit's runtime loop (issue 15).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

jupyter_client = pytest.importorskip("jupyter_client.manager")

#: What a cell may take on 2 shared cores (the first display starts the sandbox service).
CELL_TIMEOUT = 180.0
#: Hosts of the CDNs Panel and Bokeh would load from (panel.io.resources.CDN_ROOT, bokeh CDN).
CDN_MARKERS = ("cdn.holoviz.org", "cdn.bokeh.org", "cdn.jsdelivr.net", "unpkg.com")


class Kernel:
    """A kernel of this interpreter, in the test's isolated environment."""

    def __init__(self, cwd: str) -> None:
        self.manager, self.client = jupyter_client.start_new_kernel(
            kernel_name="python3", env={**os.environ}, cwd=cwd)
        self.messages: list[dict[str, Any]] = []  # every iopub message read so far

    def run(self, code: str) -> list[tuple[str, dict[str, Any]]]:
        """Execute a cell; its outputs as (message type, content). Raises on an error."""
        msg_id = self.client.execute(code)
        outs: list[tuple[str, dict[str, Any]]] = []
        deadline = time.monotonic() + CELL_TIMEOUT
        while True:
            msg = self.client.get_iopub_msg(timeout=max(1.0, deadline - time.monotonic()))
            self.messages.append(msg)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content["execution_state"] == "idle":
                break
            outs.append((kind, content))
        errors = [c for k, c in outs if k == "error"]
        assert not errors, "\n".join(errors[0]["traceback"])
        return outs

    def open_front_end_comms(self, outs: list[tuple[str, dict[str, Any]]]) -> None:
        """Open the comms a browser would (pyviz_comms' client comm per displayed view)."""
        text = json.dumps([c for _, c in outs])
        ids = set(re.findall(r'client_comm_id[^0-9a-f]{1,12}([0-9a-f]{32})', text))
        assert ids, "the output names no client comm"
        for target in ids:
            self.client.shell_channel.send(self.client.session.msg(
                "comm_open", {"comm_id": uuid.uuid4().hex, "target_name": target, "data": {}}))

    def wait_comm(self, found: Callable[[str], bool], timeout: float, *, after: int = 0
                  ) -> str | None:
        """The first `comm_msg` (as JSON text) for which `found` holds: among those read so
        far (from the `after`-th message on), or arriving within `timeout`."""
        for text in self.comm_texts(after):
            if found(text):
                return text
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = self.client.get_iopub_msg(timeout=min(left, 1.0))
            except Exception:  # queue.Empty: nothing yet
                continue
            self.messages.append(msg)
            if msg["msg_type"] == "comm_msg":
                text = json.dumps(msg["content"])
                if found(text):
                    return text
        return None

    def comm_texts(self, after: int = 0) -> list[str]:
        return [json.dumps(m["content"]) for m in self.messages[after:]
                if m["msg_type"] in ("comm_msg", "comm_open")]

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@pytest.fixture
def kernel(tmp_path: Any) -> Iterator[Kernel]:
    k = Kernel(str(tmp_path))
    yield k
    k.close()


def _displayed(outs: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    results = [c["data"] for k, c in outs if k == "execute_result"]
    assert len(results) == 1, [k for k, _ in outs]
    return results[0]


def _printed(outs: list[tuple[str, dict[str, Any]]]) -> str:
    return "".join(c["text"] for k, c in outs if k == "stream" and c["name"] == "stdout")


def _no_cdn(text: str) -> list[str]:
    return [m for m in CDN_MARKERS if m in text]


def test_a_view_displayed_first_in_a_kernel_loads_panel_inline_with_no_cdn_url(kernel):
    """Panel's `inline` config inlines Bokeh's and Panel's resources "for use without
    internet" (https://panel.holoviz.org/api/config.html); the view loads it by itself."""
    outs = kernel.run("import brokerkit.ui as ui\nui.TicketView()")
    loaders = [c["data"]["application/javascript"] for k, c in outs if k == "display_data"
               and "application/vnd.holoviews_load.v0+json" in c["data"]]
    assert loaders, "Panel's front end was not loaded by the view"
    for js in loaders:  # nothing for the browser to fetch: every script is in the output
        for name in ("js_urls", "css_urls", "js_modules"):
            for listed in re.findall(rf"{name}\s*=\s*(\[[^\]]*\])", js):
                assert json.loads(listed) == [], (name, listed)
    view = _displayed(outs)
    assert _no_cdn(view["text/html"]) == []
    assert "tabulator" in _printed(kernel.run("import panel as pn\n"
                                              "print(pn.extension._loaded_extensions)"))
    # a front end that cannot run Panel's JavaScript shows why, in words
    assert "brokerkit-fallback" in view["text/html"]
    assert "pip install 'brokerkit[notebooks]'" in view["text/html"]
    assert "TicketView" in view["text/plain"]


def test_ticket_preview_in_a_kernel_sends_no_cdn_stylesheet(kernel):
    """A Preview re-renders the ticket's panes; Panel names their stylesheets by CDN URL
    after the first render (holoviz/panel#7073): none may reach the front end."""
    outs = kernel.run("import brokerkit.ui as ui\nt = ui.TicketView()\nt")
    kernel.open_front_end_comms(outs)
    kernel.run("await t._on_preview(None)\nprint(t.ticket.preview_result.ok)")
    assert kernel.wait_comm(lambda text: "Ready to place" in text, 30.0) is not None
    texts = kernel.comm_texts()
    assert texts and [(m, t[:200]) for t in texts for m in _no_cdn(t)] == []


def test_kill_switch_in_a_kernel_shows_a_halt_made_by_another_process_within_5_s(kernel):
    """Issue 15: the notebook's kill switch showed HALTED 15 s after a resume; it must show
    a change made by another process within 5 s, with when it last refreshed."""
    outs = kernel.run("import brokerkit.ui as ui\nks = ui.KillSwitchView()\nks")
    assert "ACTIVE" in _displayed(outs)["text/html"]
    kernel.open_front_end_comms(outs)
    before = len(kernel.messages)
    halt = subprocess.run([sys.executable, "-m", "brokerkit.cli", "halt", "--reason",
                           "halted elsewhere"], capture_output=True, text=True, timeout=120)
    assert halt.returncode == 0, halt.stderr[-2000:]
    seen = kernel.wait_comm(lambda text: "HALTED" in text, 5.0, after=before)
    assert seen is not None, "the kernel's kill switch did not show the halt within 5 s"
    stamp = _printed(kernel.run("print(ks._refreshed_pane.object)"))
    assert re.fullmatch(r"last refreshed \d\d:\d\d:\d\d UTC\n", stamp), stamp


def test_blotter_first_in_a_kernel_builds_the_service_off_the_runtime_loop_and_recovery_runs(
        kernel):
    """Issue 15: `BlotterView()` first in a kernel built the execution service on the runtime
    loop, and its recovery of unresolved orders failed. The row left SENT here (by a process
    that died) must be resolved by the kernel's service, built off that loop."""
    from brokerkit.book import close_books, open_book
    from brokerkit.config import load_settings

    url = load_settings().book_url
    book = open_book(url)
    sent = datetime.now(UTC) - timedelta(minutes=10)
    book.journal_order({"client_order_id": "died-before-ack", "connection": "paper-us",
                        "account": "DEMO-CASH-1", "instrument": "STK:AAPL", "symbol": "AAPL",
                        "asset_class": "equity", "side": "buy", "order_type": "limit",
                        "quantity": Decimal("1"), "limit_price": Decimal("1"),
                        "time_in_force": "day", "status": "SENT", "created_at": sent,
                        "updated_at": sent, "sent_at": sent})
    try:
        kernel.run(  # records which thread builds the service (the class is brokerkit's own)
            "import threading\nimport brokerkit.execution.service as s\nbuilt = []\n"
            "_init = s.ExecutionService.__init__\n"
            "def _record(self, *a, **k):\n"
            "    built.append(threading.current_thread().name)\n"
            "    _init(self, *a, **k)\n"
            "s.ExecutionService.__init__ = _record")
        outs = kernel.run("import brokerkit.ui as ui\nb = ui.BlotterView()\nb")
        assert "died-before-ack" in _displayed(outs)["text/html"]
        built = _printed(kernel.run("print(built)"))
        assert built.strip() == "['MainThread']", built
        deadline = time.monotonic() + 60
        while book.get_order("died-before-ack")["status"] == "SENT":
            assert time.monotonic() < deadline, "recovery never resolved the row"
            time.sleep(0.2)
        row = book.get_order("died-before-ack")
        assert row["status"] == "ERROR" and "not placed" in row["reason"], row
        log = "".join(m["content"].get("text", "") for m in kernel.messages
                      if m["msg_type"] == "stream")
        assert "blocking brokerkit call" not in log and "recovering unresolved" not in log
    finally:
        close_books(url)
