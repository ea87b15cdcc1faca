"""What the sandbox's HTTP servers share: listening on loopback, and reading query values.

Each server (control, paper, Alpaca) is an aiohttp application of its own; `listen` serves one
and says where, `LoopbackServer` is a running one, and `iso_time` reads an ISO-8601 query
parameter the way every server answers it (the caller says what a bad value raises).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["LoopbackServer", "iso_time", "listen"]


@dataclass
class LoopbackServer:
    """A running server: `info` is what `Sandbox.start_servers_async` reports for it."""

    runner: web.AppRunner
    info: dict[str, Any]

    async def close(self) -> None:
        await self.runner.cleanup()


async def listen(app: web.Application, host: str, port: int = 0, *,
                 handler_cancellation: bool = False) -> LoopbackServer:
    """Serve `app` on `host` (a free port unless given); its `info` has `url`, `host`,
    `port` and (empty) demo `credentials`. With `handler_cancellation`, a client that gives
    up stops the handler answering it (a held response, say)."""
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None, handler_cancellation=handler_cancellation)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]
    shown = f"[{host}]" if ":" in host else host
    return LoopbackServer(runner, {"url": f"http://{shown}:{bound}", "host": host,
                                   "port": bound, "credentials": {}})


def iso_time(request: web.Request, name: str, bad: Callable[[str], Exception]
             ) -> datetime | None:
    """Query parameter `name` as an aware datetime (UTC when it has no offset), None when
    absent; raises `bad(message)` when it is not ISO-8601."""
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        at = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise bad(f"query parameter {name}={raw!r} is not an ISO-8601 time") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)
