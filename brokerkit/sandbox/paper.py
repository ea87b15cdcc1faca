"""The paper server: brokerkit's own paper-broker REST API over the sandbox's brokers.

Every route is under `/v1/brokers/{broker}`, a `Sandbox.broker(name)` (made and seeded with
the demo accounts on first use, so a test can take a fresh one on the same server)::

    GET    /v1/brokers/{broker}                      {"broker", "accounts": [id...], "time"}
    GET    .../accounts                              {"accounts": [{id, type, base_currency}]}
    GET    .../balances?accounts=A,B                 {"balances": [...], "as_of"}
    GET    .../positions?accounts=A,B                {"positions": [...], "as_of"}
    GET    .../orders?accounts=&status=&after=&limit= {"orders": [...], "next": id | null}
    GET    .../fills?accounts=&since=                {"fills": [...]}
    GET    .../corporate_actions?accounts=&since=    {"corporate_actions": [...]}: one row per
                                                     split and account whose position it changed
    GET    .../quotes?symbols=AAPL,BTC/USD           {"quotes": [...]}
    GET    .../instruments?symbols=AAPL              {"instruments": [...]}
    GET    .../clock?symbol=AAPL                     {"symbol", "is_open", "time"}
    POST   .../orders                                {"order": {...}}, 201
    DELETE .../orders/{order_id}?accounts=           {"order": {...}}
    GET    .../orders:by-client-id/{coid}?accounts=  {"order": {...}}; 404 when absent

`accounts` defaults to every account of the broker. Orders are listed oldest first, `limit`
(default 100, at most 1000) a page, `status` open | closed | all (default all); `next` is
the `after` of the following page (null on the last), so a client walks every order.
Money and quantities travel as strings (Decimal-safe), timestamps as ISO-8601 UTC, dates as
ISO dates. Errors answer `{"error": message}`: 400 bad input (also an unknown account),
404 an unknown order, client order id or symbol, 409 a client order id used before.

Faults (`broker.faults`) apply per route, by endpoint name: connect, accounts, balances,
positions, orders, fills, corporate_actions, quotes, instruments, clock, submit, cancel,
lookup. An injected
error answers its status; a timeout holds the answer `timeout_s`, then answers 504;
`drop_after_accept` on submit places the order and closes the socket without an answer; a late
accept on submit (`accept_late_next`, `accept_late_rate`) holds the order `accept_late_s`, then
places it even if the client has given up (answering 201 if it still waits). An order held
when the server stops is never placed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..errors import InvalidIntent
from .broker import (
    CorporateAction,
    DuplicateClientOrderId,
    PaperBroker,
    UnknownAccount,
    UnknownOrder,
)
from .faults import InjectedFault, LateOrders
from .http import LoopbackServer, iso_time, listen
from .market import Fill, Listing, Order, UnknownSymbol

if TYPE_CHECKING:
    from .demo import Sandbox

__all__ = ["make_app", "start_paper"]

BASE = "/v1/brokers/{broker}"
PAGE_DEFAULT, PAGE_MAX = 100, 1000
SANDBOX: web.AppKey[Sandbox] = web.AppKey("sandbox")
LATE = web.AppKey("late_orders", LateOrders)
_ORDER_FIELDS = frozenset({"account", "symbol", "side", "quantity", "notional", "order_type",
                           "time_in_force", "limit_price", "stop_price", "trail_price",
                           "trail_percent", "client_order_id"})

routes = web.RouteTableDef()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Refused(Exception):
    """An answer other than 200: `{"error": message}` with `status`."""

    def __init__(self, message: str, status: int = 400) -> None:
        self.status = status
        super().__init__(message)


class _Drop(Exception):
    """Close the connection without an answer."""


# -- values on the wire ----------------------------------------------------------------------
def _num(value: Decimal | float | None) -> str | None:
    return None if value is None else str(value)


def _time(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).isoformat()


def _day(d: date | None) -> str | None:
    return None if d is None else d.isoformat()


def _order(o: Order) -> dict[str, Any]:
    li = o.listing
    return {"order_id": o.order_id, "client_order_id": o.client_order_id,
            "account": o.account, "symbol": o.symbol, "instrument": li.key if li else None,
            "asset_class": li.asset_class.value if li else None, "side": o.side.value,
            "order_type": o.order_type.value, "time_in_force": o.time_in_force.value,
            "quantity": _num(o.quantity), "notional": _num(o.notional),
            "limit_price": _num(o.limit_price), "stop_price": _num(o.stop_price),
            "trail_price": _num(o.trail_price), "trail_percent": _num(o.trail_percent),
            "status": o.status.value, "reason": o.reason,
            "filled_quantity": _num(o.filled_quantity),
            "avg_fill_price": _num(o.avg_fill_price),
            "submitted_at": _time(o.submitted_at), "updated_at": _time(o.updated_at)}


def _fill(f: Fill, broker: PaperBroker) -> dict[str, Any]:
    return {"fill_id": f.fill_id, "order_id": f.order_id, "client_order_id": f.client_order_id,
            "account": f.account, "instrument": f.key, "symbol": f.symbol,
            "asset_class": broker.market.listing(f.key).asset_class.value,
            "side": f.side.value, "quantity": _num(f.quantity), "price": _num(f.price),
            "fee": _num(f.fee), "fee_currency": f.fee_currency, "currency": f.currency,
            "executed_at": _time(f.executed_at), "trade_date": _day(f.trade_date),
            "settle_date": _day(f.settle_date)}


def _actions(a: CorporateAction, accounts: list[str]) -> list[dict[str, Any]]:
    """One row per account of `accounts` whose position the action changed."""
    return [{"action_id": a.action_id, "account": acct, "instrument": a.instrument,
             "symbol": a.symbol, "kind": a.kind, "ratio": _num(a.ratio),
             "effective_at": _time(a.effective_at), "effective_date": _day(a.effective_date)}
            for acct in a.accounts if acct in accounts]


def _instrument(li: Listing) -> dict[str, Any]:
    return {"instrument": li.key, "symbol": li.symbol, "asset_class": li.asset_class.value,
            "currency": li.currency, "exchange": li.exchange, "tradable": li.tradable,
            "fractionable": li.fractionable, "shortable": li.shortable,
            "min_quantity": _num(li.min_quantity), "price_increment": _num(li.tick),
            "multiplier": _num(li.multiplier)}


# -- request helpers -------------------------------------------------------------------------
def _broker(request: web.Request) -> PaperBroker:
    sandbox: Sandbox = request.app[SANDBOX]
    return sandbox.broker(request.match_info["broker"])


def _csv(request: web.Request, name: str) -> list[str]:
    return [v.strip() for v in request.query.get(name, "").split(",") if v.strip()]


def _accounts(request: web.Request, broker: PaperBroker) -> list[str]:
    """The `accounts` query parameter (default: every account), each checked."""
    wanted = _csv(request, "accounts") or broker.accounts
    for account in wanted:
        broker.account(account)
    return wanted


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit") or str(PAGE_DEFAULT)
    if not raw.isdigit() or not 1 <= int(raw) <= PAGE_MAX:
        raise _Refused(f"query parameter limit={raw!r} is not a whole number from 1 to "
                       f"{PAGE_MAX}")
    return int(raw)


def _listings(request: web.Request, broker: PaperBroker, name: str) -> list[Listing]:
    return [broker.market.listing(s) for s in _csv(request, name)]


# -- middlewares -----------------------------------------------------------------------------
@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Known refusals as `{"error": message}` with their status."""
    try:
        return await handler(request)
    except _Refused as exc:
        status, message = exc.status, str(exc)
    except (InvalidIntent, UnknownAccount) as exc:
        status, message = 400, str(exc)
    except (UnknownOrder, UnknownSymbol) as exc:
        status, message = 404, str(exc)
    except DuplicateClientOrderId as exc:
        status, message = 409, str(exc)
    return web.json_response({"error": message}, status=status)


@web.middleware
async def faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The broker's injected faults for the route's endpoint (its route name), then the
    market brought up to now; `_Drop` closes the socket without an answer."""
    endpoint = request.match_info.route.name
    if endpoint is None:  # not one of ours (404, 405)
        return await handler(request)
    broker = _broker(request)
    try:
        await broker.faults.apply(endpoint)
    except InjectedFault as exc:
        raise _Refused(str(exc), exc.status) from None
    except TimeoutError as exc:  # the answer was held timeout_s
        raise _Refused(str(exc), 504) from None
    broker.process()
    try:
        return await handler(request)
    except _Drop:
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError() from None


# -- routes ----------------------------------------------------------------------------------
@routes.get(BASE, name="connect")
async def hello(request: web.Request) -> web.Response:
    broker = _broker(request)
    return web.json_response({"broker": broker.name, "accounts": broker.accounts,
                              "time": _time(broker.market.now())})


@routes.get(BASE + "/accounts", name="accounts")
async def accounts(request: web.Request) -> web.Response:
    broker = _broker(request)
    rows = [{"id": a, "type": broker.account(a).type,
             "base_currency": broker.account(a).base_currency} for a in broker.accounts]
    return web.json_response({"accounts": rows})


@routes.get(BASE + "/balances", name="balances")
async def balances(request: web.Request) -> web.Response:
    broker = _broker(request)
    rows = [{"account": r.account, "currency": r.currency, "cash": _num(r.cash),
             "settled_cash": _num(r.settled_cash), "buying_power": _num(r.buying_power),
             "equity": _num(r.equity), "margin_init": _num(r.margin_init),
             "margin_maint": _num(r.margin_maint)}
            for r in broker.balances(_accounts(request, broker))]
    return web.json_response({"balances": rows, "as_of": _time(broker.market.now())})


@routes.get(BASE + "/positions", name="positions")
async def positions(request: web.Request) -> web.Response:
    broker = _broker(request)
    rows = []
    for p in broker.positions(_accounts(request, broker)):
        li, inst = p.listing, p.listing.instrument
        rows.append({"account": p.account, "instrument": li.key, "symbol": li.symbol,
                     "asset_class": li.asset_class.value, "quantity": _num(p.quantity),
                     "avg_cost": _num(p.avg_cost), "market_price": _num(p.market_price),
                     "market_value": _num(p.market_value), "currency": li.currency,
                     "unrealized_pnl": _num(p.unrealized_pnl),
                     "exchange": li.exchange or inst.exchange or None,
                     "multiplier": _num(inst.multiplier), "expiry": _day(inst.expiry),
                     "strike": _num(inst.strike), "right": inst.right or None})
    return web.json_response({"positions": rows, "as_of": _time(broker.market.now())})


@routes.get(BASE + "/orders", name="orders")
async def orders(request: web.Request) -> web.Response:
    broker = _broker(request)
    status = request.query.get("status", "all")
    if status not in ("open", "closed", "all"):
        raise _Refused(f"query parameter status={status!r} is not open, closed or all")
    limit, after = _limit(request), request.query.get("after")
    listed = broker.orders(_accounts(request, broker))  # oldest first, never removed
    start = 0
    if after:
        ids = [o.order_id for o in listed]
        if after not in ids:
            raise _Refused(f"query parameter after={after!r} is not an order of the accounts")
        start = ids.index(after) + 1
    page: list[Order] = []
    more = False
    for o in listed[start:]:
        if status == "all" or o.status.is_open == (status == "open"):
            if len(page) == limit:
                more = True
                break
            page.append(o)
    return web.json_response({"orders": [_order(o) for o in page],
                              "next": page[-1].order_id if more else None})


@routes.get(BASE + "/fills", name="fills")
async def fills(request: web.Request) -> web.Response:
    broker = _broker(request)
    found = broker.fills(_accounts(request, broker), iso_time(request, "since", _Refused))
    return web.json_response({"fills": [_fill(f, broker) for f in found]})


@routes.get(BASE + "/corporate_actions", name="corporate_actions")
async def corporate_actions(request: web.Request) -> web.Response:
    broker = _broker(request)
    wanted = _accounts(request, broker)
    found = broker.corporate_actions(wanted, iso_time(request, "since", _Refused))
    return web.json_response({"corporate_actions": [row for a in found
                                                    for row in _actions(a, wanted)]})


@routes.get(BASE + "/quotes", name="quotes")
async def quotes(request: web.Request) -> web.Response:
    broker = _broker(request)
    rows = [{"instrument": q.key, "symbol": q.symbol, "bid": _num(q.bid), "ask": _num(q.ask),
             "last": _num(q.last), "bid_size": _num(q.bid_size), "ask_size": _num(q.ask_size),
             "currency": q.currency, "as_of": _time(q.as_of)}
            for q in broker.market.quotes(_listings(request, broker, "symbols"))]
    return web.json_response({"quotes": rows})


@routes.get(BASE + "/instruments", name="instruments")
async def instruments(request: web.Request) -> web.Response:
    broker = _broker(request)
    rows = [_instrument(li) for li in _listings(request, broker, "symbols")]
    return web.json_response({"instruments": rows})


@routes.get(BASE + "/clock", name="clock")
async def clock(request: web.Request) -> web.Response:
    broker = _broker(request)
    symbol = request.query.get("symbol", "").strip()
    if not symbol:
        raise _Refused("query parameter 'symbol' is required")
    return web.json_response({"symbol": symbol, "is_open": broker.market.is_open(symbol),
                              "time": _time(broker.market.now())})


@routes.post(BASE + "/orders", name="submit")
async def submit(request: web.Request) -> web.Response:
    """Place an order; a late accept places it after its delay, client or no client."""
    broker = _broker(request)
    try:
        data = await request.json()
    except ValueError:
        raise _Refused("request body is not JSON") from None
    late = broker.faults.take_late("submit")
    if late is None:
        order = _place(broker, data)
    else:
        order = await request.app[LATE].placed(late, lambda: _place(broker, data, late=True))
    if broker.faults.take_drop("submit"):
        raise _Drop()
    return web.json_response({"order": _order(order)}, status=201)


def _place(broker: PaperBroker, data: Any, *, late: bool = False) -> Order:
    """The order of request body `data`, placed (`late`: the market brought up to now
    first, as the middleware does for a request on time)."""
    if not isinstance(data, dict):
        raise _Refused("request body must be a JSON object")
    if late:
        broker.process()
    unknown = sorted(set(data) - _ORDER_FIELDS)
    if unknown:
        raise _Refused(f"unknown order field {unknown[0]!r}; expected one of "
                       f"{', '.join(sorted(_ORDER_FIELDS))}")
    for name in ("account", "symbol", "side", "client_order_id"):
        if not isinstance(data.get(name), str) or not data[name]:
            raise _Refused(f"order field {name!r} is required (a non-empty string)")
    kwargs = {k: v for k, v in data.items() if v is not None
              and k not in ("account", "symbol", "side")}
    return broker.submit(data["account"], data["symbol"], data["side"], **kwargs)


@routes.delete(BASE + "/orders/{order_id}", name="cancel")
async def cancel(request: web.Request) -> web.Response:
    broker = _broker(request)
    order = broker.order(request.match_info["order_id"])
    if order.account not in _accounts(request, broker):
        raise UnknownOrder(order.order_id)
    return web.json_response({"order": _order(broker.cancel(order.order_id))})


@routes.get(BASE + "/orders:by-client-id/{client_order_id}", name="lookup")
async def lookup(request: web.Request) -> web.Response:
    broker = _broker(request)
    coid = request.match_info["client_order_id"]
    order = broker.find_client_order(coid, _accounts(request, broker))
    if order is None:
        raise _Refused(f"no order with client order id {coid!r}", 404)
    return web.json_response({"order": _order(order)})


def make_app(sandbox: Sandbox) -> web.Application:
    """The aiohttp application serving `sandbox`'s paper brokers."""
    app = web.Application(middlewares=[errors, faults])
    app[SANDBOX] = sandbox
    app[LATE] = late = LateOrders()
    app.on_shutdown.append(late.close)  # held orders are never placed
    app.router.add_routes(routes)
    return app


async def start_paper(sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0
                      ) -> LoopbackServer:
    """Serve `sandbox`'s paper-broker API on `host` (a free port unless given)."""
    return await listen(make_app(sandbox), host, port, handler_cancellation=True)
