"""The sandbox's paper-broker REST API over a real socket, from a loop other than the runtime
loop: what any client (not only `PaperAdapter`) can rely on."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from decimal import Decimal

import aiohttp
import pytest

from brokerkit.sandbox import Sandbox

MONDAY = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
B = "/v1/brokers/paper"


@pytest.fixture
async def served():
    sandbox = Sandbox(seed=98)
    sandbox.market.clock.freeze(MONDAY)
    servers = await sandbox.start_servers_async()
    async with aiohttp.ClientSession(servers["paper"]["url"]) as http:
        yield sandbox, http
    await sandbox.stop_servers_async()


async def call(http: aiohttp.ClientSession, method: str, path: str, **kw):
    async with http.request(method, path, **kw) as resp:
        return resp.status, await resp.json()


def order(coid: str, **fields) -> dict:
    return {"account": "DEMO-MARGIN-1", "symbol": "AAPL", "side": "buy", "quantity": "1",
            "client_order_id": coid, **fields}


async def test_amounts_travel_as_decimal_strings_and_times_as_iso_utc(served):
    sandbox, http = served
    status, body = await call(http, "POST", f"{B}/orders", json=order("c-1", quantity="0.5"))
    assert status == 201
    placed = body["order"]
    assert placed["quantity"] == "0.5" and placed["filled_quantity"] == "0.5"
    assert Decimal(placed["avg_fill_price"]) == sandbox.market.quote("AAPL").ask
    assert placed["submitted_at"] == MONDAY.isoformat()
    _, fills = await call(http, "GET", f"{B}/fills", params={"accounts": "DEMO-MARGIN-1"})
    (fill,) = fills["fills"]
    assert fill["trade_date"] == "2026-03-02" and fill["executed_at"] == MONDAY.isoformat()


async def test_orders_are_paged_oldest_first_until_next_is_null(served):
    sandbox, http = served
    placed = [sandbox.broker("paper").submit("DEMO-CASH-1", "AAPL", "buy", quantity=1,
                                             order_type="limit", limit_price="1.00",
                                             time_in_force="gtc").order_id for _ in range(5)]
    seen, params = [], {"accounts": "DEMO-CASH-1", "status": "open", "limit": "2"}
    pages = 0
    while True:
        status, body = await call(http, "GET", f"{B}/orders", params=params)
        assert status == 200 and len(body["orders"]) <= 2
        seen += [o["order_id"] for o in body["orders"]]
        pages += 1
        if body["next"] is None:
            break
        params["after"] = body["next"]
    assert seen == placed and pages == 3


async def test_a_client_order_id_used_twice_is_a_conflict(served):
    _, http = served
    assert (await call(http, "POST", f"{B}/orders", json=order("dup")))[0] == 201
    status, body = await call(http, "POST", f"{B}/orders", json=order("dup"))
    assert status == 409 and "already used" in body["error"]


async def test_lookup_by_client_order_id_is_404_when_absent(served):
    _, http = served
    status, body = await call(http, "GET", f"{B}/orders:by-client-id/nothing-here")
    assert status == 404 and "'nothing-here'" in body["error"]
    await call(http, "POST", f"{B}/orders", json=order("here"))
    status, body = await call(http, "GET", f"{B}/orders:by-client-id/here",
                              params={"accounts": "DEMO-MARGIN-1"})
    assert status == 200 and body["order"]["client_order_id"] == "here"


async def test_a_cancel_outside_the_given_accounts_finds_no_order(served):
    sandbox, http = served
    o = sandbox.broker("paper").submit("DEMO-CASH-1", "AAPL", "buy", quantity=1,
                                       order_type="limit", limit_price="1.00")
    status, _ = await call(http, "DELETE", f"{B}/orders/{o.order_id}",
                           params={"accounts": "DEMO-MARGIN-1"})
    assert status == 404 and o.status.is_open
    status, body = await call(http, "DELETE", f"{B}/orders/{o.order_id}")
    assert status == 200 and body["order"]["status"] == "CANCELED"


async def test_each_broker_name_is_its_own_broker_on_one_server(served):
    sandbox, http = served
    await call(http, "POST", "/v1/brokers/t-1/orders", json=order("x"))
    assert len(sandbox.broker("t-1").orders()) == 1 and sandbox.broker("paper").orders() == []


async def test_drop_after_accept_places_the_order_and_closes_the_socket(served):
    sandbox, http = served
    sandbox.broker("paper").faults.set("submit", drop_after_accept=1)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await call(http, "POST", f"{B}/orders", json=order("dropped"))
    assert sandbox.broker("paper").find_client_order("dropped") is not None


async def test_accept_late_places_the_order_after_the_client_gave_up(served):
    sandbox, http = served
    sandbox.broker("paper").faults.set("submit", accept_late_next=1, accept_late_s=0.4)
    with pytest.raises(TimeoutError):
        await call(http, "POST", f"{B}/orders", json=order("late"),
                   timeout=aiohttp.ClientTimeout(total=0.1))
    status, _ = await call(http, "GET", f"{B}/orders:by-client-id/late")
    assert status == 404  # not at the broker yet: a lookup now proves nothing
    await asyncio.sleep(0.45)
    status, body = await call(http, "GET", f"{B}/orders:by-client-id/late")
    assert status == 200 and body["order"]["status"] == "FILLED"
    assert len(sandbox.broker("paper").orders()) == 1


async def test_accept_late_answers_a_client_that_still_waits_after_the_delay(served):
    sandbox, http = served
    sandbox.broker("paper").faults.set("submit", accept_late_next=1, accept_late_s=0.2)
    t0 = time.perf_counter()
    status, body = await call(http, "POST", f"{B}/orders", json=order("patient"))
    assert status == 201 and body["order"]["client_order_id"] == "patient"
    assert time.perf_counter() - t0 >= 0.2
    status, _ = await call(http, "POST", f"{B}/orders", json=order("on-time"))
    assert status == 201  # the count is used up


async def test_a_late_order_refused_by_the_broker_answers_its_refusal(served):
    sandbox, http = served
    sandbox.broker("paper").faults.set("submit", accept_late_next=1, accept_late_s=0.05)
    status, body = await call(http, "POST", f"{B}/orders",
                              json=order("bad", account="NOPE-1"))
    assert status == 400 and "'NOPE-1'" in body["error"]


async def test_an_order_held_when_the_sandbox_stops_is_never_placed():
    sandbox = Sandbox(seed=97)
    sandbox.market.clock.freeze(MONDAY)
    servers = await sandbox.start_servers_async()
    sandbox.broker("paper").faults.set("submit", accept_late_next=1, accept_late_s=0.3)
    async with aiohttp.ClientSession(servers["paper"]["url"]) as http:
        with pytest.raises(TimeoutError):
            await call(http, "POST", f"{B}/orders", json=order("held"),
                       timeout=aiohttp.ClientTimeout(total=0.05))
    t0 = time.perf_counter()
    await sandbox.stop_servers_async()
    assert time.perf_counter() - t0 < 0.3  # stopping does not wait for the held order
    await asyncio.sleep(0.35)
    assert sandbox.broker("paper").find_client_order("held") is None


async def test_the_control_api_sets_late_accepts_for_every_broker(served):
    sandbox, _ = served
    control = (await sandbox.start_servers_async())["control"]["url"]  # already running
    late = {"endpoint": "submit", "accept_late_rate": 0.2, "accept_late_next": 1,
            "accept_late_s": 0.5}
    async with aiohttp.ClientSession(control) as http:
        for broker in ("paper", "alpaca", "ibkr"):
            status, body = await call(http, "POST", "/v1/faults", json={"broker": broker, **late})
            assert status == 200
            assert body["faults"]["submit"] == {k: v for k, v in late.items() if k != "endpoint"}
            assert sandbox.broker(broker).faults.take_late() == 0.5
        status, body = await call(http, "POST", "/v1/faults",
                                  json={"broker": "paper", **late, "accept_late_rate": 1.5})
    assert status == 400 and "accept_late_rate=1.5" in body["error"]


async def test_an_injected_error_answers_its_status(served):
    sandbox, http = served
    sandbox.broker("paper").faults.set("quotes", error_next=1, error_status=503)
    status, body = await call(http, "GET", f"{B}/quotes", params={"symbols": "AAPL"})
    assert status == 503 and "injected fault" in body["error"]
    assert (await call(http, "GET", f"{B}/quotes", params={"symbols": "AAPL"}))[0] == 200


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "needle"), [
    ("get", "/balances", {"params": {"accounts": "NOPE-1"}}, 400, "'NOPE-1'"),
    ("get", "/orders", {"params": {"status": "pending"}}, 400, "'pending'"),
    ("get", "/orders", {"params": {"limit": "0"}}, 400, "limit='0'"),
    ("get", "/orders", {"params": {"after": "no-such-order"}}, 400, "'no-such-order'"),
    ("get", "/fills", {"params": {"since": "yesterday"}}, 400, "'yesterday'"),
    ("get", "/quotes", {"params": {"symbols": "NOPE"}}, 404, "'NOPE'"),
    ("get", "/clock", {}, 400, "'symbol' is required"),
    ("post", "/orders", {"json": order("a", colour="red")}, 400, "'colour'"),
    ("post", "/orders", {"json": order("b", quantity="lots")}, 400, "quantity"),
    ("post", "/orders", {"json": order("c", account="NOPE-1")}, 400, "'NOPE-1'"),
    ("post", "/orders", {"data": "not json"}, 400, "not JSON"),
    ("delete", "/orders/nope", {}, 404, "'nope'"),
])
async def test_bad_requests_name_the_value_at_fault(served, method, path, kwargs, status,
                                                    needle):
    _, http = served
    async with getattr(http, method)(B + path, **kwargs) as resp:
        body = await resp.json()
    assert resp.status == status and needle in body["error"]
