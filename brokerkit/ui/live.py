"""`LiveView`: the base of every data-showing component: load on first show, refresh live.

A subclass implements `fetch_async()` (await the services, return the data) and `show(data)`
(put it in the widgets). The base does the rest, the same way everywhere:

- in a served session, the first load runs when the page has loaded (`pn.state.onload`), or
  when the app first opens the page it is on (`autostart=False`, then `start()`), with a
  loading overlay; then a periodic callback created *for this session* refreshes every
  `refresh_ms` (0 turns live refresh off);
- in a notebook, displaying the component loads it once (`refresh()` reloads it);
- a refresh never overlaps the previous one, and a failure shows as a message on the
  component instead of breaking the page.

All broker calls are awaited `*_async` methods (they run on brokerkit's runtime loop), and book
reads go through `asyncio.to_thread`, so Panel's event loop is never blocked.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import panel as pn
import param

from .. import runtime

__all__ = ["LiveView", "served"]

log = logging.getLogger("brokerkit.ui")


def served() -> bool:
    """True inside a Panel server session (not a notebook, not a plain script)."""
    doc = pn.state.curdoc
    return doc is not None and doc.session_context is not None


class LiveView(pn.viewable.Viewer):
    """A component that loads its data asynchronously and keeps it fresh."""

    refresh_ms = param.Integer(default=5000, bounds=(0, None),
                               doc="live refresh period in milliseconds (0: no live refresh)")
    updated_at = param.Date(default=None, allow_None=True, doc="when the data was last shown")
    error = param.String(default="", doc="why the last refresh failed ('' when it did not)")

    def __init__(self, *, autostart: bool = True, **params: Any) -> None:
        super().__init__(**params)
        self._running = False
        self._loaded = False
        self._started = False
        self._periodic: Any = None
        self._error_pane = pn.pane.Alert("", alert_type="danger", visible=False,
                                         css_classes=["bk-refresh-error"])
        if autostart and served():
            pn.state.onload(self.start)

    # -- to implement -----------------------------------------------------------------------
    async def fetch_async(self) -> Any:
        """Fetch the data to show (await services here; never block)."""
        raise NotImplementedError

    def show(self, data: Any) -> None:
        """Put `data` in the widgets."""
        raise NotImplementedError

    def layout(self) -> pn.viewable.Viewable:
        """The component's layout (built once, in `__init__` of the subclass)."""
        raise NotImplementedError

    # -- the machinery ------------------------------------------------------------------------
    async def refresh_async(self) -> bool:
        """Fetch and show the data once; returns False if it failed or one was running."""
        if self._running:
            return False
        self._running = True
        try:
            data = await self.fetch_async()
            self.show(data)
        except Exception as exc:  # shown on the component; the next refresh tries again
            log.warning("%s refresh failed: %s", type(self).__name__, exc)
            self.error = f"{type(self).__name__}: {exc}"
            self._error_pane.object = f"Could not refresh: {exc}"
            self._error_pane.visible = True
            return False
        finally:
            self._running = False
        self._loaded = True
        self.error = ""
        self._error_pane.visible = False
        self.updated_at = datetime.now(UTC)
        return True

    def refresh(self) -> bool:
        """Blocking `refresh_async` for notebooks and scripts."""
        return runtime.run(self.refresh_async())

    async def start(self) -> None:
        """First load (with a loading overlay), then live refresh; once per component.
        Served apps call it when the page has loaded, or when a page is first opened
        (`autostart=False`)."""
        if self._started:
            return
        self._started = True
        view = self.layout()
        view.loading = True
        try:
            await self.refresh_async()
        finally:
            view.loading = False
        if self.refresh_ms and self._periodic is None:
            self._periodic = pn.state.add_periodic_callback(self.refresh_async,
                                                            period=self.refresh_ms)

    def stop(self) -> None:
        """Stop live refresh (a served session stops it by itself when it closes)."""
        if self._periodic is not None:
            self._periodic.stop()
            self._periodic = None

    def __panel__(self) -> pn.viewable.Viewable:
        if not self._loaded and not served():
            self.refresh()  # a notebook: show data at once
        return self.layout()
