"""Smoke test of the classic interface, Notebook 7 (the `notebook` package, in the notebooks
extra): a notebook's Run All renders a brokerkit view there too, with no request off 127.0.0.1
and no console error but those Notebook 7 itself logs on an empty notebook (7.6.5 throws "Cannot
read properties of undefined (reading 'schema')" on every page). Notebook 7 is built on
JupyterLab's components, and Panel's extension (pyviz_comms) is a JupyterLab federated extension
it loads as JupyterLab does:
https://panel.holoviz.org/how_to/notebook/notebook.html
"""

from __future__ import annotations

import json

import pytest
from driver import NotebookPage
from playwright.sync_api import expect

pytestmark = [pytest.mark.ui, pytest.mark.timeout(240)]

TIMEOUT_MS = 30_000


def _baseline_errors(server, context) -> list[str]:
    """The console errors of an empty notebook in this Notebook 7, once its kernel is up."""
    kernel = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    (server.root / "blank.ipynb").write_text(json.dumps(
        {"cells": [], "nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": kernel}}),
        encoding="utf-8")
    blank = NotebookPage(context, server, "blank.ipynb", app="notebook")
    try:
        blank.wait_kernel_idle()
        blank.page.wait_for_timeout(1000)  # errors of the page's start-up, not a check
        return [e.split(" (")[0] for e in blank.console_errors]
    finally:
        blank.close()
        server.shutdown_kernels()


def test_a_brokerkit_view_renders_after_run_all_in_notebook_7(notebook7, lab_context):
    baseline = _baseline_errors(notebook7, lab_context)
    nb = NotebookPage(lab_context, notebook7, "settlement.ipynb", app="notebook")
    try:
        nb.wait_kernel_idle()
        nb.run_all()
        nb.wait_all_ran()
        expect(nb.page.locator(".settlement-count")).to_contain_text("pending settlement",
                                                                     timeout=TIMEOUT_MS)
        expect(nb.page.locator(".settlement-table").first).to_contain_text("AAPL",
                                                                           timeout=TIMEOUT_MS)
        assert nb.off_loopback() == [], "requests left 127.0.0.1"
        own = [e for e in nb.console_errors if e.split(" (")[0] not in baseline]
        assert own == [], f"console errors (Notebook 7's own, left aside: {baseline})"
    finally:
        nb.close()
        notebook7.shutdown_kernels()
