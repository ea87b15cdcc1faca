"""The sync/async bridge: one loop owns everything; sync forms work from anywhere."""

from __future__ import annotations

import asyncio
import threading

import pytest

from brokerkit import runtime


async def where() -> str:
    return threading.current_thread().name


class Thing(runtime.Bridged):
    async def name_async(self) -> str:
        return threading.current_thread().name

    def name(self) -> str:
        return runtime.run(self.name_async())


def test_sync_call_from_a_plain_script_runs_on_the_runtime_loop():
    assert runtime.run(where()) == "brokerkit-runtime"


def test_sync_call_from_inside_a_running_loop_works():
    """As in a Jupyter cell: the caller's own loop is running in this thread."""

    async def cell() -> str:
        return Thing().name()

    assert asyncio.run(cell()) == "brokerkit-runtime"


def test_async_form_awaited_from_a_foreign_loop_runs_on_the_runtime_loop():
    async def cell() -> str:
        return await Thing().name_async()

    assert asyncio.run(cell()) == "brokerkit-runtime"


def test_sync_call_from_a_worker_thread_with_its_own_loop():
    """As in a Panel callback on a server thread with a running Tornado/asyncio loop."""
    out: list[str] = []

    def server_thread() -> None:
        async def callback() -> None:
            out.append(Thing().name())
        asyncio.run(callback())

    t = threading.Thread(target=server_thread)
    t.start()
    t.join(5)
    assert out == ["brokerkit-runtime"]


def test_blocking_call_on_the_runtime_loop_refuses_instead_of_deadlocking():
    async def inner() -> str:
        try:
            runtime.run(where())
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    assert "await the *_async form" in runtime.run(inner())


def test_timeout_cancels_the_coroutine():
    cancelled = threading.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError):
        runtime.run(slow(), timeout=0.05)
    assert cancelled.wait(2)


def test_exceptions_propagate_with_their_type():
    async def boom() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        runtime.run(boom())
