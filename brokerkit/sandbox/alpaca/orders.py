"""Orders: submit (`POST /v2/orders`), list, get by id or client order id, cancel one, cancel
all."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from ...model import OrderStatus
from ..broker import DuplicateClientOrderId
from .errors import Drop, not_found, unprocessable
from .middleware import LATE, apply_fault, endpoint
from .params import int_param, time_param
from .rules import check_order, refusal
from .shapes import OPEN_STATUSES, STATUS, order_json
from .state import ACCOUNT, STATE

if TYPE_CHECKING:
    from ..market import Order
    from .state import AppState

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.post("/v2/orders")
async def submit(request: web.Request) -> web.StreamResponse:
    """Place an order (Alpaca's rules in `rules.check_order`); `drop_after_accept` places it
    and closes the socket without an answer; a late accept (`accept_late_next`,
    `accept_late_rate`) holds it `accept_late_s`, then places it whether or not the client
    still waits for the answer."""
    state = request.app[STATE]
    try:
        data = await request.json()
    except ValueError:
        raise unprocessable("request body format is invalid") from None
    if not isinstance(data, dict):
        raise unprocessable("request body format is invalid")
    await apply_fault(state, "submit")
    late = state.faults.take_late("submit")
    if late is None:
        o, extended = _place(state, data)
    else:
        o, extended = await request.app[LATE].placed(late, lambda: _place(state, data))
    if state.faults.take_drop("submit"):
        raise Drop()
    return web.json_response(order_json(o, extended))


def _place(state: AppState, data: dict[str, Any]) -> tuple[Order, bool]:
    """The order of request body `data` placed, and its extended-hours flag; raises the
    `Reply` Alpaca answers a refused order with."""
    broker, venue = state.broker, state.venue
    broker.process()
    kwargs = check_order(state, data)
    extended = kwargs.pop("extended_hours")
    symbol = kwargs.pop("symbol")
    try:
        o = broker.submit(ACCOUNT, symbol, **kwargs)
    except DuplicateClientOrderId:
        raise unprocessable("client_order_id must be unique") from None
    if o.status is OrderStatus.REJECTED:
        venue.refused.add(o.order_id)
        raise refusal(state, o, kwargs)
    venue.extended_hours[o.order_id] = extended
    return o, extended


@routes.get("/v2/orders")
@endpoint("orders")
async def list_orders(request: web.Request) -> list[dict[str, Any]]:
    state = request.app[STATE]
    q = request.query
    status = q.get("status", "open")
    if status not in ("open", "closed", "all"):
        raise unprocessable(f"invalid status: {status!r}")
    limit = int_param(request, "limit", 50, 500)
    after, until = time_param(request, "after"), time_param(request, "until")
    direction = q.get("direction", "desc")
    if direction not in ("asc", "desc"):
        raise unprocessable(f"invalid direction: {direction!r}")
    side = q.get("side")
    symbols = {s.strip().upper() for s in q.get("symbols", "").split(",") if s.strip()}
    out = []
    for o in state.broker.orders([ACCOUNT]):
        if not state.visible(o) or (side and o.side.value != side):
            continue
        is_open = o.status in OPEN_STATUSES
        if (status == "open" and not is_open) or (status == "closed" and is_open):
            continue
        if symbols and o.symbol not in symbols:
            continue
        at = o.submitted_at
        if at is not None and ((after and at <= after) or (until and at >= until)):
            continue
        out.append(o)
    if direction == "desc":
        out.reverse()
    ext = state.venue.extended_hours
    return [order_json(o, ext.get(o.order_id, False)) for o in out[:limit]]


@routes.get("/v2/orders:by_client_order_id")
@endpoint("lookup")
async def by_client_id(request: web.Request) -> dict[str, Any]:
    state = request.app[STATE]
    coid = request.query.get("client_order_id", "")
    o = state.broker.find_client_order(coid, [ACCOUNT]) if coid else None
    if o is None or not state.visible(o):
        raise not_found("order not found")
    return order_json(o, state.venue.extended_hours.get(o.order_id, False))


@routes.get("/v2/orders/{order_id}")
@endpoint("lookup")
async def get_order(request: web.Request) -> dict[str, Any]:
    state = request.app[STATE]
    o = state.order_of(request.match_info["order_id"])
    return order_json(o, state.venue.extended_hours.get(o.order_id, False))


@routes.delete("/v2/orders")
@endpoint("cancel")
async def cancel_all(request: web.Request) -> web.StreamResponse:
    """207 multi-status, one entry per open order."""
    state = request.app[STATE]
    out = []
    for o in state.broker.orders([ACCOUNT]):
        if state.visible(o) and o.status in OPEN_STATUSES:
            state.broker.cancel(o.order_id)
            body = order_json(o, state.venue.extended_hours.get(o.order_id, False))
            out.append({"id": o.order_id, "status": 200, "body": body})
    return web.json_response(out, status=207)


@routes.delete("/v2/orders/{order_id}")
@endpoint("cancel")
async def cancel(request: web.Request) -> web.StreamResponse:
    """204; 422 when the order is already final."""
    state = request.app[STATE]
    o = state.order_of(request.match_info["order_id"])
    if o.status not in OPEN_STATUSES:
        raise unprocessable(f'order is already in "{STATUS[o.status]}" state', 42210000)
    state.broker.cancel(o.order_id)
    return web.Response(status=204)
