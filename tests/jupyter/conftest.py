"""Fixtures of the JupyterLab browser tests: one JupyterLab per module (labproc.py) over copies
of `notebooks/`, and a browser context of Debian's Chromium launched as tests/ui launches it
(its `browser_type_launch_args` and `browser_context_args` fixtures, reused here)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from labproc import JupyterServer

_spec = importlib.util.spec_from_file_location(
    "_brokerkit_ui_conftest", Path(__file__).resolve().parents[1] / "ui" / "conftest.py")
assert _spec is not None and _spec.loader is not None
_ui = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _ui  # dataclasses look their module up there
_spec.loader.exec_module(_ui)

browser_type_launch_args = _ui.browser_type_launch_args
browser_context_args = _ui.browser_context_args
TIMEOUT_MS = _ui.TIMEOUT_MS


def _serve(tmp_path_factory: pytest.TempPathFactory, app: str) -> Iterator[JupyterServer]:
    base = tmp_path_factory.mktemp(app)
    root, home = base / "root", base / "home"
    root.mkdir()
    home.mkdir()
    server = JupyterServer(root, home, app=app)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """JupyterLab on 127.0.0.1 with a token, serving copies of `notebooks/`, with a HOME and a
    BROKERKIT_DATA_DIR of its own (the embedded sandbox)."""
    yield from _serve(tmp_path_factory, "jupyterlab")


@pytest.fixture(scope="module")
def notebook7(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """Notebook 7 (`python -m notebook`), set up as `lab` is."""
    yield from _serve(tmp_path_factory, "notebook")


@pytest.fixture(scope="module")
def lab_context(browser: Any, browser_context_args: dict[str, Any]) -> Iterator[Any]:
    """A browser context for a module's notebooks (one page per notebook)."""
    context = browser.new_context(**browser_context_args)
    context.set_default_timeout(TIMEOUT_MS)
    yield context
    context.close()
