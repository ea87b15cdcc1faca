"""A notebook opened in JupyterLab (or Notebook 7) in Playwright's Chromium, driven as a user
drives it: wait for the kernel, Run > Run All Cells, wait until every code cell has run. It
records every request the page makes and every console error, for the tests to judge."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

__all__ = ["NotebookPage"]

#: URL schemes that are not network requests (the page's own memory).
_LOCAL_SCHEMES = ("data", "blob", "about")

_KERNEL_IDLE = """() => [...document.querySelectorAll('.jp-StatusBar-TextItem')]
  .some(e => /[|] Idle$/.test(e.textContent.trim()))"""

_ALL_RAN = """() => {
  const cells = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')];
  return cells.length > 0 && cells.every(c => {
    const p = c.querySelector('.jp-InputArea-prompt');
    return p !== null && /^\\[\\d+\\]:$/.test(p.textContent.trim());
  });
}"""


class NotebookPage:
    """`path` (relative to the server's root) opened in a new page of `context`."""

    def __init__(self, context: Any, server: Any, path: str, *, app: str = "lab") -> None:
        self.server, self.path, self.app = server, path, app
        self.page = context.new_page()
        self.requests: list[str] = []
        self.console_errors: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("websocket", lambda ws: self.requests.append(ws.url))
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda e: self.console_errors.append(f"pageerror: {e}"))
        # `reset`: a fresh workspace, so the notebooks opened before are not opened again
        where = "lab/tree" if app == "lab" else "notebooks"
        self.page.goto(server.url(f"{where}/{path}?reset" if app == "lab" else f"{where}/{path}"))

    def _on_console(self, msg: Any) -> None:
        if msg.type == "error":
            self.console_errors.append(f"{msg.text} ({msg.location.get('url', '')})")

    def wait_kernel_idle(self, timeout_ms: float = 60_000) -> None:
        """Until the notebook's kernel has started and the page is connected to it: JupyterLab's
        status bar reads "<kernel> | Idle" (Notebook 7: the kernel reports idle)."""
        self.page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=timeout_ms)
        if self.app == "lab":
            self.page.wait_for_function(_KERNEL_IDLE, timeout=timeout_ms, polling=100)
            return
        deadline = time.monotonic() + timeout_ms / 1000
        while not any(s["kernel"]["execution_state"] == "idle" and s["path"] == self.path
                      for s in self.server.api("sessions")):
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.path}: the kernel did not start")
            self.page.wait_for_timeout(200)

    def run_all(self) -> None:
        """Run > Run All Cells, from the menu bar as a user does."""
        self.page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        self.page.locator(".lm-Menu-itemLabel").get_by_text("Run All Cells",
                                                            exact=True).click()

    def wait_all_ran(self, timeout_ms: float = 90_000) -> None:
        """Until every code cell shows an execution count (Run All stops at a failing cell,
        which leaves the cells after it unnumbered: a failure times out here)."""
        try:
            self.page.wait_for_function(_ALL_RAN, timeout=timeout_ms, polling=200)
        except Exception as exc:
            prompts = self.page.locator(".jp-CodeCell .jp-InputArea-prompt").all_inner_texts()
            raise AssertionError(f"{self.path}: not every cell ran (prompts {prompts}):\n"
                                 f"{self.errors_shown()}") from exc

    def errors_shown(self) -> str:
        """The text of every stderr/traceback output in the notebook."""
        return "\n".join(self.page.locator(
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
        ).all_inner_texts())

    def off_loopback(self) -> list[str]:
        """Every URL the page asked for that is not on 127.0.0.1."""
        out = []
        for url in self.requests:
            parts = urlsplit(url)
            if parts.scheme not in _LOCAL_SCHEMES and parts.hostname != "127.0.0.1":
                out.append(url)
        return out

    def close(self) -> None:
        self.page.close()
