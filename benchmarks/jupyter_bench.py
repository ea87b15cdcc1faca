"""The order ticket in a real JupyterLab: time from Run All to a rendered ticket, and from
Preview to "Ready to place", in Debian's Chromium, one run.

JupyterLab runs on 127.0.0.1 over copies of notebooks/ with outputs cleared, a HOME and a
brokerkit data directory of its own (tests/jupyter/labproc.py, the browser tests' harness).
`order_ticket_and_kill_switch.ipynb` is opened; once its kernel is ready (the status bar says
Idle), Run > Run All Cells is clicked and the clock runs until the ticket's Preview button is
drawn (the first cell imports brokerkit and starts the notebook's scratch sandbox, so this is
what a user waits for). After every cell has run, the ticket widget's Preview is clicked and
timed until the preview says "Ready to place" (for an order of quantity 5, typed into the
widget first: the notebook's own last order, previewed again, would be a duplicate).

    .venv/bin/python benchmarks/jupyter_bench.py

Targets (issue 15): Run All -> ticket under 2 s after the kernel is ready; Preview -> ready
under 0.5 s.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "jupyter"))

from driver import NotebookPage  # noqa: E402
from labproc import JupyterServer  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--no-first-run"]
NOTEBOOK = "order_ticket_and_kill_switch.ipynb"
TARGET_RUN_ALL_S = 2.0
TARGET_PREVIEW_S = 0.5


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="jupyter-bench-") as tmp:
        root, home = Path(tmp) / "root", Path(tmp) / "home"
        root.mkdir()
        home.mkdir()
        with JupyterServer(root, home) as lab, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.set_default_timeout(120_000)
            nb = NotebookPage(context, lab, NOTEBOOK)
            nb.wait_kernel_idle()
            t0 = time.perf_counter()
            nb.run_all()
            preview = nb.page.locator(".btn-preview button")
            preview.wait_for(state="visible")
            run_all_s = time.perf_counter() - t0
            nb.wait_all_ran()
            nb.page.locator(".trading-state", has_text="ACTIVE").wait_for()
            ready = nb.page.locator(".ticket-preview", has_text="Ready to place")
            # an order of its own (the notebook's last one, sent again, is a duplicate)
            quantity = nb.page.get_by_label("Quantity", exact=True)
            quantity.fill("5")
            quantity.press("Enter")
            nb.page.locator(".ticket-preview", has_text="Preview the order").wait_for()
            t1 = time.perf_counter()
            preview.click()
            try:
                ready.wait_for(timeout=30_000)
            except Exception as exc:
                shown = nb.page.locator(".ticket-preview").evaluate(
                    "e => (e.shadowRoot || e).textContent")
                raise SystemExit(f"the preview never said 'Ready to place': {shown!r}") from exc
            preview_s = time.perf_counter() - t1
            offsite = nb.off_loopback()
            errors = nb.console_errors
            browser.close()

    def line(what: str, took: float, target: float) -> str:
        verdict = "OK" if took < target else "OVER TARGET"
        return f"{what:<48} {took:6.3f} s   target < {target:g} s: {verdict}"

    print(f"JupyterLab benchmark: {NOTEBOOK}, one run, Chromium {CHROMIUM}")
    print(line("Run All (kernel ready) -> ticket rendered", run_all_s, TARGET_RUN_ALL_S))
    print(line("ticket Preview -> 'Ready to place'", preview_s, TARGET_PREVIEW_S))
    print(f"requests off 127.0.0.1: {len(offsite)}; console errors: {len(errors)}")


if __name__ == "__main__":
    main()
