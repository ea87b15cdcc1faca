"""`LiveView`: the base of every data-showing component: load on first show, refresh live.

A subclass implements `fetch_async()` (await the services, return the data) and `show(data)`
(put it in the widgets). The base does the rest, the same way everywhere:

- in a served session, the first load runs when the page has loaded (`pn.state.onload`), or
  when the app first opens the page it is on (`autostart=False`, then `start()`), with a
  loading overlay; then a periodic callback created *for this session* refreshes every
  `refresh_ms` (0 turns live refresh off);
- in a notebook, displaying the component loads it once (`refresh()` reloads it);
- a refresh never overlaps the previous one, and a failure shows as a message on the
  component instead of breaking the page;
- a view whose data is the same for every session (`shared_source()` is not None: the
  consolidated status and balances) keeps its last fetch per process, and a new session's view
  can show it at once (`prefill()`), before its first own refresh: the page renders with
  figures in one go instead of rendering empty, then loading.

All broker calls are awaited `*_async` methods (they run on brokerkit's runtime loop), and book
reads go through `asyncio.to_thread`, so Panel's event loop is never blocked.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from datetime import UTC, datetime
from typing import Any

import panel as pn
import param

from .. import runtime

__all__ = ["LiveView", "served"]

log = logging.getLogger("brokerkit.ui")

#: The last data each kind of shared view fetched, per source object (a service): when, and
#: what. Weak keys: a service that is gone takes its data with it.
_SHARED: weakref.WeakKeyDictionary[Any, dict[str, tuple[float, datetime, Any]]] = \
    weakref.WeakKeyDictionary()
_SHARED_LOCK = threading.Lock()


def _shared_get(source: Any, kind: str) -> tuple[float, datetime, Any] | None:
    with _SHARED_LOCK:
        return _SHARED.get(source, {}).get(kind)


def _shared_put(source: Any, kind: str, fetched: tuple[float, datetime], data: Any) -> None:
    with _SHARED_LOCK:
        _SHARED.setdefault(source, {})[kind] = (*fetched, data)


def served() -> bool:
    """True inside a Panel server session (not a notebook, not a plain script)."""
    doc = pn.state.curdoc
    return doc is not None and doc.session_context is not None


class LiveView(pn.viewable.Viewer):
    """A component that loads its data asynchronously and keeps it fresh."""

    refresh_ms = param.Integer(default=5000, bounds=(0, None),
                               doc="live refresh period in milliseconds (0: no live refresh)")
    updated_at = param.Date(default=None, allow_None=True, doc="when the data shown was fetched")
    error = param.String(default="", doc="why the last refresh failed ('' when it did not)")
    prefill_max_age_s = param.Number(default=120.0, bounds=(0, None), doc="""
        how old (seconds) the process's last shared fetch may be for `prefill` to show it""")

    def __init__(self, *, autostart: bool = True, **params: Any) -> None:
        super().__init__(**params)
        self._running = False
        self._loaded = False
        self._started = False
        self._periodic: Any = None
        self._shown_at: float | None = None  # time.monotonic() of the data shown
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

    def shared_source(self) -> Any:
        """The object whose data this view shows to every session alike (e.g. the brokerage
        service), or None (the default: data per session, never shared)."""
        return None

    # -- shared data ----------------------------------------------------------------------------
    def prefill(self) -> bool:
        """Show the process's last fetch of this view's shared data at once, if there is one
        younger than `prefill_max_age_s`; True if it did. `start()` then refreshes it without
        a loading overlay (at once if it is older than `refresh_ms`)."""
        source = self.shared_source()
        entry = _shared_get(source, type(self).__name__) if source is not None else None
        if entry is None or time.monotonic() - entry[0] > self.prefill_max_age_s:
            return False
        try:
            self.show(entry[2])
        except Exception as exc:  # never worse than no prefill
            log.warning("%s prefill failed: %s", type(self).__name__, exc)
            return False
        self._loaded = True
        self._shown_at = entry[0]
        self.updated_at = entry[1]
        return True

    # -- the machinery ------------------------------------------------------------------------
    async def refresh_async(self) -> bool:
        """Fetch and show the data once; returns False if it failed or one was running."""
        if self._running:
            return False
        self._running = True
        try:
            data = await self.fetch_async()
            fetched = (time.monotonic(), datetime.now(UTC))
            source = self.shared_source()
            if source is not None:
                _shared_put(source, type(self).__name__, fetched, data)
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
        self._shown_at = fetched[0]
        self.error = ""
        self._error_pane.visible = False
        self.updated_at = fetched[1]  # when the data was fetched
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
        if self._loaded:  # prefilled: already showing data; refresh it if it is old
            age_ms = (time.monotonic() - (self._shown_at or 0.0)) * 1000
            if not self.refresh_ms or age_ms >= self.refresh_ms:
                await self.refresh_async()
        else:
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
