"""The sandbox control server over a real socket, from a loop other than the runtime loop."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import aiohttp
import pytest

from brokerkit.model import OrderStatus
from brokerkit.sandbox import Sandbox

MONDAY = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


@pytest.fixture
async def served():
    sandbox = Sandbox(seed=99)
    sandbox.market.clock.freeze(MONDAY)
    sandbox.broker("paper")
    servers = await sandbox.start_servers_async()
    async with aiohttp.ClientSession(servers["control"]["url"]) as http:
        yield sandbox, http
    await sandbox.stop_servers_async()


async def test_servers_report_a_loopback_address_and_answer_health(served):
    sandbox, http = served
    info = sandbox.servers["control"]
    assert info["url"] == f"http://127.0.0.1:{info['port']}" and info["port"] > 0
    async with http.get("/health") as resp:
        body = await resp.json()
    assert resp.status == 200 and body["status"] == "ok" and body["seed"] == 99
    assert body["time"] == MONDAY.isoformat()


async def test_quotes_are_the_market_quotes(served):
    sandbox, http = served
    async with http.get("/v1/quotes", params={"symbols": "AAPL,BTC/USD,VOD"}) as resp:
        rows = (await resp.json())["quotes"]
    expected = sandbox.market.quotes(["AAPL", "BTC/USD", "VOD"])
    assert [r["instrument"] for r in rows] == [q.key for q in expected]
    assert [Decimal(str(r["ask"])) for r in rows] == [q.ask for q in expected]


async def test_fx_rates_are_the_market_rates(served):
    sandbox, http = served
    async with http.get("/v1/fx", params={"pairs": "EURUSD,USD.JPY,GBP/HKD"}) as resp:
        rates = (await resp.json())["rates"]
    assert rates == {"EURUSD": sandbox.market.fx_rate("EUR", "USD"),
                     "USDJPY": sandbox.market.fx_rate("USD", "JPY"),
                     "GBPHKD": sandbox.market.fx_rate("GBP", "HKD")}


async def test_accounts_show_cash_and_positions(served):
    _, http = served
    async with http.get("/v1/accounts", params={"broker": "paper"}) as resp:
        accounts = {a["account"]: a for a in (await resp.json())["accounts"]}
    margin = accounts["DEMO-MARGIN-1"]
    assert margin["type"] == "margin" and margin["cash"]["USD"] == 250_000
    assert margin["buying_power"] > 0
    assert {p["symbol"] for p in margin["positions"]} >= {"AAPL", "NVDA", "TSLA"}
    assert accounts["DEMO-GLOBAL-1"]["base_currency"] == "EUR"


async def test_faults_set_over_http_apply_to_the_broker(served):
    sandbox, http = served
    payload = {"broker": "paper", "endpoint": "submit", "drop_after_accept": 2}
    async with http.post("/v1/faults", json=payload) as resp:
        body = await resp.json()
    assert resp.status == 200 and body["faults"] == {"submit": {"drop_after_accept": 2}}
    assert sandbox.broker("paper").faults.take_drop("submit")
    async with http.post("/v1/faults", json={"broker": "paper", "clear": True}) as resp:
        assert (await resp.json())["faults"] == {}


async def test_advancing_the_clock_matches_resting_orders(served):
    sandbox, http = served
    broker, market = sandbox.broker("paper"), sandbox.market
    now, later = market.quote("AAPL"), market.quote("AAPL", MONDAY + timedelta(seconds=90))
    if later.ask < now.ask:  # a limit the market reaches in 90 seconds, whichever way it goes
        side, limit = "buy", later.ask
    else:
        side, limit = "sell", later.bid
        assert later.bid > now.bid
    order = broker.submit("DEMO-MARGIN-1", "AAPL", side, quantity=1, order_type="limit",
                          limit_price=limit)
    assert order.status is OrderStatus.ACCEPTED
    async with http.post("/v1/clock/advance", json={"seconds": 90}) as resp:
        body = await resp.json()
    assert resp.status == 200 and body["time"] == "2026-03-02T15:01:30+00:00"
    assert body["fills"] == 1 and order.status is OrderStatus.FILLED


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "needle"), [
    ("get", "/v1/quotes", {}, 400, "'symbols' is required"),
    ("get", "/v1/quotes", {"params": {"symbols": "NOPE"}}, 404, "'NOPE'"),
    ("get", "/v1/fx", {"params": {"pairs": "EURO"}}, 400, "'EURO'"),
    ("get", "/v1/accounts", {"params": {"broker": "nobody"}}, 404, "'nobody'"),
    ("post", "/v1/faults", {"json": {"latency_ms": -1}}, 400, "latency_ms=-1"),
    ("post", "/v1/faults", {"json": {"colour": 1}}, 400, "'colour'"),
    ("post", "/v1/clock/advance", {"json": {"seconds": "soon"}}, 400, "'soon'"),
])
async def test_bad_requests_name_the_value_at_fault(served, method, path, kwargs, status,
                                                    needle):
    _, http = served
    async with getattr(http, method)(path, **kwargs) as resp:
        body = await resp.json()
    assert resp.status == status and needle in body["error"]


async def test_stopped_servers_release_their_port(served):
    sandbox, http = served
    port = sandbox.servers["control"]["port"]
    await sandbox.stop_servers_async()
    assert sandbox.servers == {}
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.get(f"http://127.0.0.1:{port}/health"):
            pass
