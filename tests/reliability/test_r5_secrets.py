"""R5 (issue 16): a canary secret never shows: 0 occurrences in logs at DEBUG, reprs,
exceptions, CLI output, notebook outputs, dashboard pages and websocket frames.

Two canaries go through real code paths over the sandbox servers (real sockets):
- `good`: the Alpaca sandbox's secret key, stored as secret `rel_alpaca_secret` and revealed
  to alpaca-py for every request of connection `alpaca` (which therefore connects);
- `bad`: a random value stored as secret `rel_bad_secret` of connection `alpaca-bad`, which
  the sandbox refuses (401), so it travels through the failure paths: errors, `last_error`.
And a value typed where a secret's name belongs is refused without being echoed.
Each test prints its figures (places looked at, occurrences) and is bounded.
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import os
import subprocess
import sys
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from brokerkit.secrets import EnvStore

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[2]
BAD_SECRET = "rel_bad_secret"


def _ui_fixtures() -> Any:
    """tests/ui/conftest.py (Debian Chromium for Playwright), loaded once under its own name
    (as test_r6_dashboard.py does) so that this module reuses its launch arguments."""
    name = "_brokerkit_ui_conftest"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "ui" / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_ui = _ui_fixtures()
browser_type_launch_args = _ui.browser_type_launch_args
browser_context_args = _ui.browser_context_args


@dataclass
class Canaries:
    good: str
    bad: str
    config: Path
    env: dict[str, str]  # what another process needs: the config, the book, the secrets

    def count(self, text: str) -> int:
        return text.count(self.good) + text.count(self.bad)


@pytest.fixture
def canaries(trading: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Canaries:
    good = trading.servers["alpaca"]["credentials"]["secret_key"]
    bad = f"canary{uuid.uuid4().hex}"
    bad_opts = ", ".join(f'{k} = {json.dumps(v)}' for k, v in trading.options("alpaca").items())
    config = tmp_path / "brokerkit.toml"
    config.write_text(trading.toml(("paper", "alpaca"), extra=(
        f'[connections.alpaca-bad]\ntype = "alpaca"\noptions = {{ {bad_opts} }}\n'
        f'secrets = {{ api_key = "rel_alpaca_key", secret_key = "{BAD_SECRET}" }}\n')))
    env = {**trading.env(), EnvStore.variable(BAD_SECRET): bad,
           "BROKERKIT_CONFIG": str(config), "NO_PROXY": "127.0.0.1,localhost",
           "BROKERKIT_DATABASE_URL": f"sqlite:///{tmp_path / 'book.db'}"}
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    return Canaries(good, bad, config, env)


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """Every record of every logger at DEBUG, formatted with tracebacks, into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield buffer
    root.removeHandler(handler)
    root.setLevel(old_level)


def _texts_of(obj: Any, depth: int = 2) -> list[str]:
    """repr and str of `obj` and, `depth` levels down, of the attributes of brokerkit's own
    objects and the items of containers. An SDK's client is shown by its repr, never opened:
    it must hold the key it sends (alpaca-py keeps it in `_secret_key`)."""
    out = [repr(obj), str(obj)]
    if depth:
        children: list[Any] = []
        if isinstance(obj, dict):
            children = [*obj.keys(), *obj.values()]
        elif isinstance(obj, list | tuple | set | frozenset):
            children = list(obj)
        elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("brokerkit"):
            children = list(vars(obj).values())
        for child in children[:200]:
            out += _texts_of(child, depth - 1)
    return out


def test_canaries_reach_no_log_repr_or_exception(canaries, debug_log, figures):
    from brokerkit.config import load_settings
    from brokerkit.model import OrderIntent
    from brokerkit.service import BrokerageService

    settings = load_settings()
    svc = BrokerageService(settings)
    texts: list[str] = []
    try:
        status = svc.get_status()
        by_name = {c["name"]: c for c in status["connections"]}
        # the path was really taken: the good secret authenticated, the bad one was refused
        assert by_name["alpaca"]["status"] == "connected", by_name["alpaca"]
        assert by_name["alpaca-bad"]["status"] == "down", by_name["alpaca-bad"]
        texts += [json.dumps(status, default=str), repr(status)]
        for frame in (svc.balances(), svc.positions()):
            texts += [frame.to_string(), repr(frame.attrs)]
        alpaca = svc.connected_adapter("alpaca")
        ack = alpaca.submit(OrderIntent("AAPL", "buy", quantity=1), f"r5-{uuid.uuid4().hex[:8]}")
        texts += _texts_of(ack) + _texts_of(alpaca) + _texts_of(svc) + _texts_of(settings)
        errors = 0
        for call in (lambda: svc.connected_adapter("alpaca-bad"),
                     lambda: svc.adapter("alpaca-bad").balances()):
            try:
                call()
            except Exception as exc:
                errors += 1
                texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
                logging.getLogger("brokerkit.r5").exception("expected failure")
        assert errors, "alpaca-bad never failed: the canary took no failure path"
    finally:
        svc.close()
    logged = debug_log.getvalue()
    assert "DEBUG" in logged  # DEBUG records were really captured
    found = sum(map(canaries.count, texts)) + canaries.count(logged)
    figures("R5 logs/reprs/exceptions", texts=len(texts), log_chars=len(logged),
            occurrences=found)
    assert found == 0


def _cli(*args: str, env: dict[str, str], debug: bool = False) -> subprocess.CompletedProcess[str]:
    if debug:  # the command with every logger at DEBUG on stderr
        code = ("import logging, sys; logging.basicConfig(level=logging.DEBUG); "
                "from brokerkit.cli import main; sys.exit(main(sys.argv[1:]))")
        cmd = [sys.executable, "-c", code, *args]
    else:
        cmd = [sys.executable, "-m", "brokerkit.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env},
                          timeout=180)


def test_canaries_reach_no_cli_output(canaries, figures):
    commands = [("status",), ("status", "--json"), ("balances", "--json"), ("positions",),
                ("secrets", "list"), ("secrets", "list", "--json"), ("state", "--json")]
    outputs = [_cli(*c, env=canaries.env) for c in commands]
    outputs.append(_cli("status", "--json", env=canaries.env, debug=True))
    status = json.loads(outputs[1].stdout.splitlines()[0])
    assert {c["name"]: c["status"] for c in status["connections"]} == {
        "paper": "connected", "alpaca": "connected", "alpaca-bad": "down"}
    assert "DEBUG" in outputs[-1].stderr
    found = sum(canaries.count(o.stdout + o.stderr) for o in outputs)
    figures("R5 CLI", commands=len(outputs),
            chars=sum(len(o.stdout + o.stderr) for o in outputs), occurrences=found)
    assert found == 0


NOTEBOOK_CELLS = [
    "import logging\nlogging.basicConfig(level=logging.DEBUG)\nimport brokerkit as bk",
    "svc = bk.get_brokerage_service()\nsvc",
    "svc.get_status()",
    "svc.balances()",
    "svc.settings",
    "svc.connected_adapter('alpaca').secrets",
    "vars(svc.connected_adapter('alpaca'))",
    "svc.connected_adapter('alpaca-bad')",  # raises: the error and its traceback are output
]


def test_canaries_reach_no_notebook_output(canaries, tmp_path, figures):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in NOTEBOOK_CELLS]
    NotebookClient(nb, timeout=180, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells for o in cell.get("outputs", [])]
    assert any(o.get("output_type") == "error" for o in outputs)  # the failure path ran
    status = next(json.dumps(o, default=str) for o in outputs
                  if "connected" in json.dumps(o, default=str))
    assert "alpaca-bad" in status
    secrets_shown = json.dumps(nb.cells[5].get("outputs", []))
    assert "Secret('rel_alpaca_secret', '****')" in secrets_shown, secrets_shown[:500]
    text = json.dumps(outputs)
    found = canaries.count(text)
    figures("R5 notebook", cells=len(nb.cells), outputs=len(outputs), chars=len(text),
            occurrences=found)
    assert found == 0


@pytest.mark.ui
def test_canaries_reach_no_dashboard_page_or_websocket_frame(canaries, browser, tmp_path,
                                                             figures):
    import urllib.request

    from playwright.sync_api import expect
    from ui.serveproc import ServeProcess

    from brokerkit.serve import free_port

    frames: list[str] = []

    def watch(ws: Any) -> None:
        for event in ("framereceived", "framesent"):
            ws.on(event, lambda payload: frames.append(
                payload if isinstance(payload, str) else payload.decode("utf-8", "replace")))

    with ServeProcess(free_port(), canaries.env, tmp_path / "serve.log") as server:
        server.wait_alive()
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.on("websocket", watch)
        page.goto(server.url)
        expect(page.get_by_text("alpaca-bad").first).to_be_visible(timeout=60_000)
        pages = [page.content()]
        for tab in page.locator(".bk-tab").all():
            tab.click()
            page.wait_for_load_state("networkidle")
            pages.append(page.content())
        with urllib.request.urlopen(server.url, timeout=30) as resp:
            pages.append(resp.read().decode("utf-8", "replace"))
        page.close()
        log = server.output()
    assert frames, "no websocket frame was seen"
    found = sum(map(canaries.count, pages + frames)) + canaries.count(log)
    figures("R5 dashboard", pages=len(pages), frames=len(frames),
            frame_chars=sum(map(len, frames)), occurrences=found)
    assert found == 0


# -- a value where a name belongs: refused, never echoed ---------------------------------------


def test_a_value_where_a_secret_name_belongs_is_refused_and_never_echoed(tmp_path, figures):
    value = f"PK{uuid.uuid4().hex[:18].upper()}"
    config = tmp_path / "brokerkit.toml"
    config.write_text(f'[connections.alpaca]\ntype = "alpaca"\n'
                      f'secrets = {{ api_key = "{value}", secret_key = "alpaca_secret" }}\n')
    env = {"BROKERKIT_CONFIG": str(config)}
    outputs = [_cli(*c, env=env) for c in (("status",), ("status", "--json"),
                                            ("halt", "--reason", "x"))]
    outputs.append(_cli("status", "--json", env=env, debug=True))
    for out in outputs:
        assert out.returncode == 2, out.stderr
        assert "connections.alpaca.secrets.api_key" in out.stderr
        assert "a secret name like" in out.stderr
    found = sum((o.stdout + o.stderr).count(value) for o in outputs)
    figures("R5 value as name", commands=len(outputs), occurrences=found)
    assert found == 0
