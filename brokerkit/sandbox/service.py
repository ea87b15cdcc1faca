"""The sandbox as one local service per user, like a real broker.

Every process of a user (notebook kernels, the served dashboard, the CLI, scripts) talks to the
same sandbox over loopback. A sandbox *home* (by default `<user data dir>/sandbox`) holds:

==============  ==============================================================================
serve.lock      held (flock) by the serving process for as long as it runs: the one proof that
                a sandbox is alive (a stale run file or a reused pid prove nothing)
run.json        written once the servers listen: pid, seed, clock, every server's address and
                demo credentials, the demo connections and their routing (mode 0600)
state.pickle    the brokers' accounts, orders and fills, saved while they change (within 0.1 s,
                or nine times a save's length when saves grow slow) and at stop
start.lock      taken by a process that starts the service, so concurrent first starts from
                several processes end with one sandbox
sandbox.log     what the service printed to stderr (why a start failed)
==============  ==============================================================================

`ensure_running(home)` joins the running sandbox or starts one in its own process (it outlives
the process that started it) and returns the run file's contents; `serve(home, ...)` is the
service itself, in the foreground (`brokerkit sandbox`); `stop`, `status` and `reset` are the
CLI's `brokerkit sandbox stop|status|reset`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..errors import BrokerkitError
from .clock import CLOCK_MODES, check_clock_mode
from .persist import dump, load_into, write_atomic

if TYPE_CHECKING:
    from .demo import Sandbox

log = logging.getLogger(__name__)

__all__ = [
    "CLOCK_MODES",
    "SandboxAlreadyRunning",
    "SandboxUnavailable",
    "ensure_running",
    "hosted",
    "reset",
    "running",
    "serve",
    "status",
    "stop",
]

RUN_FILE, STATE_FILE, LOG_FILE = "run.json", "state.pickle", "sandbox.log"
_SERVE_LOCK, _START_LOCK = "serve.lock", "start.lock"
#: How long a start may take before the starter gives up and shows the service's log.
START_TIMEOUT = 20.0
#: How often the serving process looks for changed state to save (at least).
SAVE_INTERVAL = 0.1
#: The pause after a save is at least this many times as long as the save took.
SAVE_SHARE = 9.0


class SandboxUnavailable(BrokerkitError):
    """The sandbox service could not be started or reached."""


class SandboxAlreadyRunning(SandboxUnavailable):
    """Another process already serves the sandbox of this home."""

    def __init__(self, home: Path, info: dict[str, Any] | None) -> None:
        self.info = info
        pid = f" (pid {info['pid']})" if info else ""
        super().__init__(f"a sandbox already runs for {home}{pid}; `brokerkit sandbox stop` "
                         f"stops it")


# -- locks and the run file -------------------------------------------------------------------
def _try_lock(path: Path) -> IO[str] | None:
    """The open, exclusively locked `path`, or None when another process holds the lock."""
    fh = open(path, "a+")  # noqa: SIM115 - held for as long as the caller needs the lock
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return fh


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read_run(home: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((home / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def running(home: Path) -> dict[str, Any] | None:
    """The run file of the sandbox serving `home`, or None when none is serving (a run file
    left by a process that died is removed). A sandbox still starting counts as not running."""
    if not (home / _SERVE_LOCK).exists():  # never served here
        return None
    lock = _try_lock(home / _SERVE_LOCK)
    if lock is not None:  # nobody serves: whatever run file is there is stale
        with lock:
            (home / RUN_FILE).unlink(missing_ok=True)
        return None
    info = _read_run(home)
    if info is None or not _alive(int(info.get("pid", 0))):
        return None
    return info


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- the client side --------------------------------------------------------------------------
def ensure_running(home: Path, *, port: int | None = None, seed: int = 0,
                   clock: str = "always-open", timeout: float = START_TIMEOUT
                   ) -> dict[str, Any]:
    """The running sandbox of `home`, started in a process of its own when none runs.

    Concurrent callers (threads or processes) end with one sandbox: starters take turns, and
    each looks again before starting. Raises `SandboxUnavailable` naming the log on failure."""
    info = running(home)
    if info is not None:
        return info
    home.mkdir(parents=True, exist_ok=True)
    with _locked(home / _START_LOCK):
        info = running(home)
        if info is not None:
            return info
        return _spawn(home, port=port, seed=seed, clock=clock, timeout=timeout)


def _spawn(home: Path, *, port: int | None, seed: int, clock: str, timeout: float
           ) -> dict[str, Any]:
    args = [sys.executable, "-m", "brokerkit.cli", "sandbox", "--home", str(home),
            "--seed", str(seed), "--clock", clock]
    if port:
        args += ["--port", str(port)]
    log = home / LOG_FILE
    with open(log, "ab") as err:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, start_new_session=True, close_fds=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = _read_run(home)
        if info is not None and info.get("pid") == proc.pid:
            return info
        if proc.poll() is not None:
            info = running(home)  # lost a race to another starter: join it
            if info is not None:
                return info
            break
        time.sleep(0.02)
    else:
        proc.terminate()
    tail = log.read_text(encoding="utf-8", errors="replace")[-1500:].strip()
    raise SandboxUnavailable(f"the sandbox did not start (see {log}): {tail or 'no output'}")


def stop(home: Path, timeout: float = 10.0) -> dict[str, Any] | None:
    """Stop the sandbox serving `home` (its state is saved first); returns the run file it
    had, or None when none was running."""
    info = running(home)
    if info is None:
        return None
    pid = int(info["pid"])
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lock = _try_lock(home / _SERVE_LOCK)
        if lock is not None:
            lock.close()
            return info
        time.sleep(0.02)
    raise SandboxUnavailable(f"the sandbox (pid {pid}) did not stop within {timeout:g} s")


def status(home: Path) -> dict[str, Any]:
    """Whether a sandbox serves `home`, with its run file, and whether state is saved."""
    info = running(home)
    state = home / STATE_FILE
    return {"running": info is not None, "home": str(home), **(info or {}),
            "state_file": str(state) if state.exists() else None}


def reset(home: Path) -> bool:
    """Forget the sandbox's state: stopped if it runs (True then), state file removed. The
    next use starts from the demo accounts again."""
    if not home.exists():
        return False
    with _locked(home / _START_LOCK):
        was = stop(home) is not None
        (home / STATE_FILE).unlink(missing_ok=True)
    return was


# -- the service ------------------------------------------------------------------------------
@contextlib.contextmanager
def hosted(home: Path, sandbox: Sandbox, *, host: str = "127.0.0.1",
           port: int | None = None, alpaca_rate_limit: int | None = 200
           ) -> Iterator[dict[str, Any]]:
    """`sandbox`, served by this process as the sandbox of `home` while the block runs.

    Starts every server (on `port`, `port + 1`, ... in `SERVER_NAMES` order when a port is
    given, else on free ports) and publishes the run file, so every process of the user (this
    one included) joins it; yields the run file's contents. Raises `SandboxAlreadyRunning`
    when another process serves this home, `SandboxUnavailable` when a port is taken."""
    from .. import runtime
    from .demo import SERVER_NAMES

    home.mkdir(parents=True, exist_ok=True)
    lock = _try_lock(home / _SERVE_LOCK)
    if lock is None:
        raise SandboxAlreadyRunning(home, _read_run(home))
    try:
        ports = {name: port + i for i, name in enumerate(SERVER_NAMES)} if port else None
        try:
            servers = runtime.run(sandbox.start_servers_async(
                host, alpaca_rate_limit=alpaca_rate_limit, ports=ports))
        except OSError as exc:  # a port in use, an address not on this machine
            raise SandboxUnavailable(f"the sandbox cannot listen on {host}: {exc}") from None
        info = {"pid": os.getpid(), "home": str(home), "seed": sandbox.seed,
                "clock": sandbox.market.clock_mode,
                "started_at": datetime.now(UTC).isoformat(), "servers": servers,
                **sandbox.describe()}
        write_atomic(home / RUN_FILE, json.dumps(info, indent=1).encode())
        yield info
    finally:
        runtime.run(sandbox.stop_servers_async())
        if (_read_run(home) or {}).get("pid") == os.getpid():
            (home / RUN_FILE).unlink(missing_ok=True)
        lock.close()


def serve(home: Path, *, host: str = "127.0.0.1", port: int | None = None, seed: int = 0,
          clock: str = "always-open", alpaca_rate_limit: int | None = 200,
          ready: Callable[[dict[str, Any]], None] | None = None,
          stop_event: threading.Event | None = None) -> int:
    """Serve the sandbox of `home` in this process until SIGTERM/SIGINT (or `stop_event`).

    Loads the saved state, serves it (`hosted`), calls `ready(run_info)`, and saves the state
    whenever it changes and once more when it stops (after its servers stopped, before
    another process may start)."""
    from .. import runtime
    from .demo import Sandbox

    sandbox = Sandbox(seed, clock_mode=check_clock_mode(clock))
    state_path = home / STATE_FILE
    if state_path.exists():
        load_into(sandbox, state_path.read_bytes())
    with hosted(home, sandbox, host=host, port=port,
                alpaca_rate_limit=alpaca_rate_limit) as info:
        stop_event = stop_event or threading.Event()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop_event.set())
        if ready is not None:
            ready(info)
        saved = sandbox.state_mark()

        async def changed() -> bytes | None:  # on the loop: no server changes it meanwhile
            nonlocal saved
            mark = sandbox.state_mark()
            if mark == saved:
                return None
            saved = mark
            return dump(sandbox)

        async def final() -> bytes:
            await sandbox.stop_servers_async()
            return dump(sandbox)

        pause = SAVE_INTERVAL
        while not stop_event.wait(pause):
            began = time.monotonic()
            try:
                data = runtime.run(changed())
                if data is not None:
                    write_atomic(state_path, data)
            except Exception:  # a failed save must not stop the broker; said, tried again
                log.exception("saving the sandbox state to %s failed", state_path)
                saved = ()
            # a long history makes a save slow, and it holds the servers' loop: saves then
            # come further apart, so they never take more than a tenth of the loop's time
            pause = max(SAVE_INTERVAL, SAVE_SHARE * (time.monotonic() - began))
        write_atomic(state_path, runtime.run(final()))
    return 0
