"""Scratch profiles: a process moved onto a configuration, book and sandbox of its own.

Tutorials and drills start with `use_scratch_profile(name)`, so running them (by hand, or all
at once under nbval, however often) never touches the user's configuration, book, trading
state or sandbox.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
from pathlib import Path

from .config import user_data_dir
from .sandbox.demo import Sandbox

__all__ = ["use_scratch_profile"]

_scratch = contextlib.ExitStack()
_origin: Path | None = None  # the user data dir from before this process's first scratch
_SCRATCH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


def use_scratch_profile(name: str) -> Sandbox:
    """Run the rest of this process (and the processes it starts) on a scratch profile of
    its own: an empty configuration, a fresh book, and a fresh sandbox served by this
    process (it stops with it), all under `<user data dir>/scratch/<name>`, emptied on every
    call. The user's real configuration, book, trading state and sandbox are never touched.
    Tutorials and drills call it first. Returns the scratch sandbox, whose brokers a tutorial
    may change directly (a position corrected at the broker, say)."""
    if not isinstance(name, str) or not _SCRATCH_NAME.fullmatch(name):
        raise ValueError(f"a scratch profile's name is letters, digits, '_', '.', '-'; "
                         f"got {name!r}")
    from . import execution, service
    from .sandbox import service as sandbox_service

    global _origin
    if _origin is None:
        _origin = user_data_dir()
    root = _origin / "scratch" / name
    _scratch.close()  # a scratch profile this process already used
    sandbox_service.stop(root / "sandbox")
    shutil.rmtree(root, ignore_errors=True)
    (root / "config").mkdir(parents=True)
    (root / "brokerkit.toml").write_text("# a scratch profile: nothing configured\n")
    os.environ.update(BROKERKIT_DATA_DIR=str(root), BROKERKIT_CONFIG_DIR=str(root / "config"),
                      BROKERKIT_CONFIG=str(root / "brokerkit.toml"))
    for var in ("BROKERKIT_DATABASE_URL", "SYSTEM_HALTED"):
        os.environ.pop(var, None)
    execution.reset_execution_service()
    service.reset_brokerage_service()
    sandbox = Sandbox()
    _scratch.enter_context(sandbox_service.hosted(root / "sandbox", sandbox))
    return sandbox


atexit.register(_scratch.close)
