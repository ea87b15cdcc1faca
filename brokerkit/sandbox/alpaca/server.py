"""The Alpaca application (its route tables behind the shared middlewares) and the server
that serves it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from ..http import listen
from . import account, corporate_actions, market_data, orders
from .middleware import faults, gate, serve_late_orders
from .state import ACCOUNT, DEMO_KEY_ID, DEMO_SECRET_KEY, STATE, AlpacaServer, AppState

if TYPE_CHECKING:
    from ..demo import Sandbox

__all__ = ["make_app", "start_alpaca"]


def make_app(server: AlpacaServer, *, key_id: str, secret_key: str) -> web.Application:
    """The aiohttp application of `server` (its broker, venue, limits and counters)."""
    app = web.Application(middlewares=[gate, faults])
    app[STATE] = AppState(server, key_id, secret_key)
    serve_late_orders(app)
    for table in (account.routes, orders.routes, market_data.routes, corporate_actions.routes):
        app.router.add_routes(table)
    return app


async def start_alpaca(sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0, *,
                       key_id: str = DEMO_KEY_ID, secret_key: str = DEMO_SECRET_KEY,
                       rate_limit: int | None = 200, broker: str = "alpaca") -> AlpacaServer:
    """Serve an Alpaca-compatible API for `sandbox`'s broker `broker` on `host` (a free port
    unless given); returns the running server. `rate_limit` is requests per minute (None or
    0: no limit)."""
    if rate_limit is not None and (isinstance(rate_limit, bool) or not isinstance(rate_limit, int)
                                   or rate_limit < 0):
        raise ValueError(f"rate_limit must be a number of requests per minute >= 0 or None, "
                         f"got {rate_limit!r}")
    for name, value in (("key_id", key_id), ("secret_key", secret_key)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string")
    paper = sandbox.broker(broker)
    server = AlpacaServer(runner=None, info={}, broker=paper,  # type: ignore[arg-type]
                          rate_limit=rate_limit or None)
    served = await listen(make_app(server, key_id=key_id, secret_key=secret_key), host, port,
                          handler_cancellation=True)
    server.runner = served.runner
    server.info = {**served.info, "data_url": served.info["url"], "account": ACCOUNT,
                   "credentials": {"key_id": key_id, "secret_key": secret_key}}
    return server
