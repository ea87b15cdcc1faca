"""The middlewares every Alpaca route passes: request counts, auth, the rate limit and error
answers (`gate`), then the endpoint's injected faults (`faults`); `app[LATE]` holds the
orders the broker accepts late (`serve_late_orders` gives an application its own).

A handler names its fault endpoint with `@endpoint("positions")`, which also turns a returned
dict or list into a JSON answer. Auth: `APCA-API-KEY-ID` / `APCA-API-SECRET-KEY`; wrong keys
answer 401 on the trading API and 403 on the data API (the crypto data API also takes
anonymous requests). Rate limit: `server.rate_limit` requests per minute per bucket (trading,
data) in a sliding window, `X-Ratelimit-*` headers on every answer; refused requests do not
count.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..faults import InjectedFault, LateOrders
from .errors import Drop, Reply
from .state import STATE, AppState, Bucket

__all__ = ["LATE", "apply_fault", "endpoint", "faults", "gate", "serve_late_orders"]

Handler = Callable[[web.Request], Awaitable[Any]]
LATE = web.AppKey("alpaca_late_orders", LateOrders)


def serve_late_orders(app: web.Application) -> None:
    """Give `app` the holder of its late-accepted orders (`app[LATE]`); stopping the server
    cancels them: an order held when it stops is never placed."""
    app[LATE] = late = LateOrders()
    app.on_shutdown.append(late.close)


def _bucket_of(path: str) -> str:
    return "data" if path.startswith(("/v2/stocks", "/v1beta3/", "/v1/corporate-actions")) \
        else "trading"


def _authorized(request: web.Request, keys: tuple[str, str]) -> bool:
    given = (request.headers.get("APCA-API-KEY-ID"), request.headers.get("APCA-API-SECRET-KEY"))
    if given == (None, None) and request.path.startswith("/v1beta3/crypto"):
        return True  # the crypto data API takes anonymous requests
    return given == keys


@web.middleware
async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count the request, check its keys and the rate limit, and answer `Reply` errors."""
    state = request.app[STATE]
    server = state.server
    route = request.match_info.route.resource
    name = route.canonical if route is not None else request.path
    server.requests[f"{request.method} {name}"] += 1
    bucket = _bucket_of(request.path)
    headers: dict[str, str] = {}
    try:
        if not _authorized(request, state.keys):
            if bucket == "data":
                raise Reply(403, 40110000, "access key verification failed")
            raise Reply(401, 40110000, "request is not authorized")
        limit = server.rate_limit
        if limit:
            ok, remaining, reset = server._buckets.setdefault(bucket, Bucket()).admit(
                limit, time.monotonic())
            reset += int(time.time() - time.monotonic())
            headers = {"X-Ratelimit-Limit": str(limit),
                       "X-Ratelimit-Remaining": str(remaining),
                       "X-Ratelimit-Reset": str(reset)}
            if not ok:
                server.rate_limited += 1
                raise Reply(429, 42910000, "rate limit exceeded")
        response = await handler(request)
    except Reply as exc:
        response = web.json_response(exc.body, status=exc.status)
    except Drop:
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError() from None
    response.headers.update(headers)
    return response


async def apply_fault(state: AppState, name: str) -> None:
    """The broker's injected fault for endpoint `name`, as Alpaca would answer it."""
    try:
        await state.faults.apply(name)
    except InjectedFault as exc:
        if exc.status == 429:
            raise Reply(429, 42910000, "rate limit exceeded") from None
        raise Reply(exc.status, exc.status * 100_000, str(exc)) from None
    except TimeoutError:
        raise Reply(504, 50400000, "gateway timeout") from None


@web.middleware
async def faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Before a handler marked with `endpoint(name)`: its injected fault, then the market's
    pending matching (`broker.process()`)."""
    name = getattr(request.match_info.handler, "endpoint", None)
    if name is not None:
        state = request.app[STATE]
        await apply_fault(state, name)
        state.broker.process()
    return await handler(request)


def endpoint(name: str) -> Callable[[Handler], Handler]:
    """Mark a handler as fault endpoint `name`; a dict or list it returns is sent as JSON."""
    def mark(fn: Handler) -> Handler:
        @functools.wraps(fn)
        async def handle(request: web.Request) -> web.StreamResponse:
            out = await fn(request)
            return out if isinstance(out, web.StreamResponse) else web.json_response(out)

        handle.endpoint = name  # type: ignore[attr-defined]
        return handle

    return mark
