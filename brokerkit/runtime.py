"""The one background event loop that owns every broker connection, and the sync/async bridge.

Sockets, SDK clients and sandbox servers all live on one loop, run by a daemon thread started on
first use. Two ways in:

- `run(coro)` blocks the calling thread until `coro` has run on the runtime loop. It works in a
  plain script, inside a thread whose own loop is running (a Jupyter cell, a Panel callback:
  the caller's loop simply waits), and from worker threads. It refuses to be called on the
  runtime loop itself, where it would deadlock.
- `owned` wraps a coroutine function so that awaiting it from any loop runs it on the runtime
  loop (Jupyter's `await service.get_status_async()` works, sockets stay where they belong).

`Bridged` applies `owned` to every `*_async` method of a subclass, once, so adapters and
services write only their async methods plus one-line sync twins. No nest_asyncio.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures.thread  # noqa: F401  (its exit hook first: see `before_exit`)
import functools
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import Any, ParamSpec, TypeVar

__all__ = ["Bridged", "before_exit", "get_loop", "in_runtime", "owned", "run", "spawn"]

T = TypeVar("T")
P = ParamSpec("P")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def get_loop() -> asyncio.AbstractEventLoop:
    """The runtime loop, started on first use in a daemon thread named `brokerkit-runtime`."""
    global _loop, _thread
    if _loop is not None and _thread is not None and _thread.is_alive():
        return _loop
    with _lock:
        if _loop is None or _thread is None or not _thread.is_alive():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def _main() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            thread = threading.Thread(target=_main, name="brokerkit-runtime", daemon=True)
            thread.start()
            ready.wait()
            _loop, _thread = loop, thread
    return _loop


def in_runtime() -> bool:
    """True when called from the runtime loop's own thread."""
    return _thread is not None and threading.current_thread() is _thread


def spawn(coro: Coroutine[Any, Any, T]) -> Future[T]:
    """Schedule `coro` on the runtime loop and return a thread-safe future."""
    return asyncio.run_coroutine_threadsafe(coro, get_loop())


def run(coro: Awaitable[T], timeout: float | None = None) -> T:
    """Run `coro` on the runtime loop and block until it is done; the sync form of everything.

    Raises `TimeoutError` after `timeout` seconds (the coroutine is then cancelled).
    """
    if in_runtime():
        if inspect.iscoroutine(coro):
            coro.close()
        raise RuntimeError("a blocking brokerkit call was made on the runtime loop; "
                           "await the *_async form instead")
    if not inspect.iscoroutine(coro):
        coro = _await(coro)
    fut = spawn(coro)  # type: ignore[arg-type]
    try:
        return fut.result(timeout)
    except TimeoutError:
        fut.cancel()
        raise


async def _await(aw: Awaitable[T]) -> T:
    return await aw


def owned(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Make a coroutine function always execute on the runtime loop, whoever awaits it."""
    if getattr(fn, "__brokerkit_owned__", False):
        return fn

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        loop = get_loop()
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - only reachable via coroutine.send
            current = None
        if current is loop:
            return await fn(*args, **kwargs)
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(fn(*args, **kwargs),
                                                                          loop))

    wrapper.__brokerkit_owned__ = True  # type: ignore[attr-defined]
    return wrapper


class Bridged:
    """Base for classes whose `*_async` methods must run on the runtime loop."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, value in list(vars(cls).items()):
            if name.endswith("_async") and inspect.iscoroutinefunction(value):
                setattr(cls, name, owned(value))


_exit_hooks: list[Callable[[], None]] = []


def before_exit(fn: Callable[[], None]) -> Callable[[], None]:
    """Register `fn` to run when the interpreter exits, before worker threads stop taking work
    (`asyncio.to_thread`, which SDK calls use, refuses new work in `atexit` handlers): the
    last registered runs first, then `atexit` handlers. Use it as a decorator."""
    _exit_hooks.append(fn)
    return fn


def _run_exit_hooks() -> None:
    for fn in reversed(_exit_hooks):
        try:
            fn()
        except Exception:  # exiting anyway: one hook's failure must not skip the others
            logging.getLogger("brokerkit").exception("an exit hook failed")


# The interpreter calls threading's exit hooks (last registered first) before `atexit`'s;
# concurrent.futures' own, registered at its import above, shuts the worker pools down.
if hasattr(threading, "_register_atexit"):
    threading._register_atexit(_run_exit_hooks)
else:  # pragma: no cover - an interpreter without it: atexit, pools may be closed by then
    atexit.register(_run_exit_hooks)


def _shutdown() -> None:
    """At exit: cancel what still runs on the loop (servers, subscriptions), give it a moment
    to clean up, then stop the loop, so nothing is destroyed while pending."""
    loop = _loop
    if loop is None or not loop.is_running():
        return

    async def _cancel_all() -> None:
        for _ in range(3):  # cancelling may start tasks (e.g. a reconnect after a close)
            await asyncio.sleep(0)
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if not tasks:
                return
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=1.0)

    try:
        asyncio.run_coroutine_threadsafe(_cancel_all(), loop).result(2.0)
    except Exception:  # exiting anyway: a task that will not stop is not worth a traceback
        pass
    loop.call_soon_threadsafe(loop.stop)


atexit.register(_shutdown)
