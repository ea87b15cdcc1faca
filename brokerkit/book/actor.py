"""Who is acting: the name written into the journal, the trading state history and the audit log.

`current_actor()` is the user a served dashboard logged in (set with `acting_as`), else the
operating-system user at this host, e.g. ``'ana@desk-7'``. The name lives in a context
variable, so concurrent dashboard sessions (threads or tasks) never see each other's user.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["acting_as", "current_actor"]

_ACTOR: ContextVar[str | None] = ContextVar("brokerkit_actor", default=None)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"


_HOST_USER: tuple[int, str] | None = None  # (pid, '<os user>@<hostname>'), read once


def _host_user() -> str:
    global _HOST_USER
    pid = os.getpid()
    if _HOST_USER is None or _HOST_USER[0] != pid:
        _HOST_USER = (pid, f"{_os_user()}@{socket.gethostname()}")
    return _HOST_USER[1]


def current_actor() -> str:
    """The acting user: the one set by `acting_as`, else ``'<os user>@<hostname>'`` (read
    once per process: it is asked for on every journal write)."""
    return _ACTOR.get() or _host_user()


@contextmanager
def acting_as(user: str) -> Iterator[str]:
    """Within the block, `current_actor()` is `user`; yields it. Nests and restores."""
    if not isinstance(user, str) or not user.strip():
        raise ValueError(f"acting_as needs a non-empty user name, got {user!r}")
    token = _ACTOR.set(user.strip())
    try:
        yield user.strip()
    finally:
        _ACTOR.reset(token)
