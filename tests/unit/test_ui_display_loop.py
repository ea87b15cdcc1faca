"""A view displayed in a notebook changes its widgets on the kernel loop that displayed it,
whichever thread changed its data (issue 15: Panel sends a notebook view's changes from the
thread that made them; from several threads they reached BokehJS out of order:
"reference <id> isn't known", a Preview button left disabled)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

pn = pytest.importorskip("panel")

from brokerkit import runtime  # noqa: E402
from brokerkit.ui.live import LiveView  # noqa: E402


@pytest.fixture
def kernel_loop() -> Iterator[tuple[asyncio.AbstractEventLoop, threading.Thread]]:
    """A running loop in a thread of its own: the kernel's, as a notebook has."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="kernel-loop", daemon=True)
    thread.start()
    yield loop, thread
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def _bind(view: Any, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    view._display_loop, view._display_thread = loop, thread.ident


def _drain(loop: asyncio.AbstractEventLoop) -> None:
    """Until every callback queued on `loop` so far has run."""
    asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(30)


class _View(LiveView):
    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.shown_in: list[str] = []

    async def fetch_async(self) -> int:
        return 1

    def show(self, data: Any) -> None:
        self.shown_in.append(threading.current_thread().name)

    def layout(self) -> Any:
        return pn.Column(self._refreshed_pane)


def test_a_refresh_run_on_the_runtime_loop_shows_its_data_on_the_display_loop(kernel_loop):
    loop, thread = kernel_loop
    view = _View(refresh_ms=0)
    _bind(view, loop, thread)
    assert runtime.run(view.refresh_async())
    _drain(loop)
    assert view.shown_in == ["kernel-loop"]
    assert view.updated_at is not None


def test_without_a_display_loop_a_refresh_shows_in_the_callers_thread():
    view = _View(refresh_ms=0)
    assert view.refresh()
    assert view.shown_in == [threading.current_thread().name]
