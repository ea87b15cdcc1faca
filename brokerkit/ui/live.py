"""`LiveView`: the base of every data-showing component: load on first show, refresh live.

A subclass implements `fetch_async()` (await the services, return the data) and `show(data)`
(put it in the widgets). The base does the rest, the same way everywhere:

- in a served session, the first load runs when the page has loaded (`pn.state.onload`), or
  when the app first opens the page it is on (`autostart=False`, then `start()`), with a
  loading overlay; then a periodic callback created *for this session* refreshes every
  `refresh_ms` (0 turns live refresh off);
- in a notebook, displaying the component loads Panel's front end, inlined (`resources`: no
  CDN), and the data at once, then refreshes it every `refresh_ms` on the kernel's event loop
  (a Panel periodic callback; changes reach the cell over Panel's comm), like a served page;
- every data-showing component says when it last refreshed ("last refreshed HH:MM:SS UTC");
- the services a view reads (`sources`) are created off every event loop: in the caller's
  thread for `refresh()`, in a worker thread for `refresh_async()`; never on brokerkit's
  runtime loop, where building a service (opening the book, starting the sandbox) would block
  every connection and its recovery;
- a refresh never overlaps the previous one, and a failure shows as a message on the
  component instead of breaking the page;
- in a notebook, what a refresh fetched is shown on the kernel loop that displayed the view
  (`NotebookReady.on_display_loop`), whichever thread fetched it (`refresh()` in a cell
  shows it in the cell's thread; a button click handled on a JupyterLab comm subshell hops
  to that loop): all of a view's changes reach the browser from one thread, in order;
- a view whose data is the same for every session (`shared_source()` is not None: the
  consolidated status and balances) keeps its last fetch per process, and a new session's view
  can show it at once (`prefill()`), before its first own refresh: the page renders with
  figures in one go instead of rendering empty, then loading.

All broker calls are awaited `*_async` methods (they run on brokerkit's runtime loop), and book
reads go through `asyncio.to_thread`, so Panel's event loop is never blocked.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from datetime import UTC, datetime
from typing import Any, ClassVar

import panel as pn
import param

from .. import runtime
from .resources import NotebookReady, ensure_extension, in_notebook

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


class LiveView(NotebookReady, pn.viewable.Viewer):
    """A component that loads its data asynchronously and keeps it fresh."""

    #: The properties that create the services this view reads when it was given none
    #: (`resolve()` reads them off the event loops).
    sources: ClassVar[tuple[str, ...]] = ()

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
        self._resolved = False
        self._error_pane = pn.pane.Alert("", alert_type="danger", visible=False,
                                         css_classes=["bk-refresh-error"])
        #: "last refreshed HH:MM:SS UTC": subclasses put it in their layout
        self._refreshed_pane = pn.pane.HTML("", css_classes=["bk-last-refreshed"],
                                            styles={"color": "#666", "font-size": "0.85em"})
        self.param.watch(self._show_refreshed, "updated_at")
        if autostart and served():
            pn.state.onload(self.start)
        ensure_extension()  # in a notebook: Panel's front end, inlined, before any display

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

    def resolve(self) -> None:
        """Create the services this view reads (`sources`) if it was given none. Blocking:
        never call it on an event loop (`refresh_async` runs it in a worker thread)."""
        if self._resolved:
            return
        for name in self.sources:
            getattr(self, name)
        self._resolved = True

    def _show_refreshed(self, event: Any) -> None:
        when = event.new
        self._refreshed_pane.object = "" if when is None else \
            f"last refreshed {when.astimezone(UTC):%H:%M:%S} UTC"

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
    async def _fetch_stamped(self) -> tuple[tuple[float, datetime], Any]:
        """The services (built off this loop and the runtime's), then the data, and when."""
        if not self._resolved:
            await asyncio.to_thread(self.resolve)
        data = await self.fetch_async()
        return (time.monotonic(), datetime.now(UTC)), data

    async def refresh_async(self) -> bool:
        """Fetch and show the data once; returns False if it failed or one was running."""
        if self._running:
            return False
        self._running = True
        try:
            fetched, data = await self._fetch_stamped()
        except Exception as exc:  # shown on the component; the next refresh tries again
            self.on_display_loop(self._failed, exc)
            return False
        finally:
            self._running = False
        return self.on_display_loop(self._show_fetched, fetched, data) is not False

    def refresh(self) -> bool:
        """Blocking `refresh_async` for notebooks and scripts: services are created here, in
        the caller's thread, the fetch runs on the runtime loop, and the data is shown here
        again (so a cell that refreshes a view reads it refreshed)."""
        if self._running:
            return False
        self._running = True
        try:
            self.resolve()
            fetched, data = runtime.run(self._fetch_stamped())
        except Exception as exc:  # shown on the component, as a failed fetch is
            self.on_display_loop(self._failed, exc)
            return False
        finally:
            self._running = False
        return self.on_display_loop(self._show_fetched, fetched, data) is not False

    def _show_fetched(self, fetched: tuple[float, datetime], data: Any) -> bool:
        """Show fetched data (on the display loop): the widgets, then when it was fetched."""
        try:
            source = self.shared_source()
            if source is not None:
                _shared_put(source, type(self).__name__, fetched, data)
            self.show(data)
        except Exception as exc:  # shown on the component; the next refresh tries again
            self._failed(exc)
            return False
        self._loaded = True
        self._shown_at = fetched[0]
        self.error = ""
        self._error_pane.visible = False
        self.updated_at = fetched[1]  # when the data was fetched
        return True

    def _failed(self, exc: Exception) -> None:
        log.warning("%s refresh failed: %s", type(self).__name__, exc)
        self.error = f"{type(self).__name__}: {exc}"
        self._error_pane.object = f"Could not refresh: {exc}"
        self._error_pane.visible = True

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

    def start_notebook_refresh(self) -> bool:
        """In a notebook kernel: refresh every `refresh_ms` on the kernel's event loop (once
        per component); True if live refresh runs. Displaying the component calls it."""
        if self._periodic is not None:
            return True
        if not self.refresh_ms or served():
            return False
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop in this thread (a plain script): nothing would run it
            return False
        self._periodic = pn.state.add_periodic_callback(self._notebook_tick,
                                                        period=self.refresh_ms)
        return True

    async def _notebook_tick(self) -> None:
        """One notebook refresh, while a front end shows the view: a kernel with no front end
        (nbval, papermill) would only queue updates nobody receives. Live refresh stops once
        the view is shown nowhere (its outputs were cleared: Panel dropped its models)."""
        models = list(self.layout()._models)
        if not models:
            self.stop()
            return
        if not any(_front_end_open(ref) for ref in models):
            return  # no front end has opened its comm (yet, or ever: a headless run)
        await self.refresh_async()

    def __panel__(self) -> pn.viewable.Viewable:
        self.bind_display_loop()  # in a notebook: changes go out from this loop only
        if not served():
            if not self._loaded:
                self.refresh()  # a notebook: show data at once
            if in_notebook():
                self.start_notebook_refresh()  # then keep it fresh, as a served page
        return self.layout()


def _front_end_open(ref: str) -> bool:
    """Whether the front end showing Panel's render `ref` has opened its comm (Panel sends
    a notebook's updates over that comm; pyviz_comms opens it from the browser's side)."""
    entry = pn.state._views.get(ref)
    if entry is None:
        return False
    comm = entry[3]
    return comm is None or getattr(comm, "_comm", None) is not None
