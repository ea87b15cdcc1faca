"""A bounded per-session journal of the messages in and out (for debugging and tests)."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

__all__ = ["Recorder", "SessionLog"]


@dataclass
class SessionLog:
    """One connection's messages: (monotonic time, "in" | "out", fields)."""

    session_id: int
    peer: str
    client_id: int | None = None
    messages: deque[tuple[float, str, list[str]]] = field(default_factory=deque)

    def record(self, direction: str, fields: list[str]) -> None:
        self.messages.append((time.monotonic(), direction, fields))

    def ids(self, direction: str) -> list[str]:
        """The message ids seen in one direction, in order."""
        return [f[0] if f else "" for _, d, f in self.messages if d == direction]


class Recorder:
    """Keeps the logs of the last `max_sessions` sessions, `max_messages` messages each."""

    def __init__(self, max_sessions: int = 32, max_messages: int = 2000) -> None:
        self.max_messages = max_messages
        self._logs: deque[SessionLog] = deque(maxlen=max_sessions)
        self._next = 1

    def open(self, peer: str) -> SessionLog:
        log = SessionLog(self._next, peer, messages=deque(maxlen=self.max_messages))
        self._next += 1
        self._logs.append(log)
        return log

    @property
    def sessions(self) -> list[SessionLog]:
        return list(self._logs)

    def for_client(self, client_id: int) -> list[SessionLog]:
        return [s for s in self._logs if s.client_id == client_id]

    def clear(self) -> None:
        self._logs.clear()
