"""`open_orders()` and `cancel_all()` of the adapters against the sandbox servers: every open
order, whoever placed it (all of Alpaca's pages; every TWS API client), and a cancel-all that
reaches them. Orders are placed with the brokers' own SDKs, as another tool would."""

from __future__ import annotations

import pytest
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import QueryOrderStatus
from alpaca.trading.requests import GetOrdersRequest, LimitOrderRequest
from ib_async import IB, LimitOrder, Stock

from brokerkit import runtime
from brokerkit.adapters.alpaca import ORDERS_PAGE, AlpacaAdapter
from brokerkit.adapters.ibkr import IBKRAdapter
from brokerkit.config import ConnectionConfig
from brokerkit.errors import AdapterError
from brokerkit.model import OrderStatus
from brokerkit.sandbox.alpaca import start_alpaca
from brokerkit.sandbox.tws import start_tws
from brokerkit.secrets import get_secret_store

KEY, SECRET = "PKOPENORDERSKEY", "open-orders-secret"
SECRETS = {"api_key": "oo_key", "secret_key": "oo_secret"}


@pytest.fixture(autouse=True)
def _keys(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("BROKERKIT_SECRET_OO_KEY", KEY)
    monkeypatch.setenv("BROKERKIT_SECRET_OO_SECRET", SECRET)


# -- Alpaca ---------------------------------------------------------------------------------------


@pytest.fixture
def alpaca(fresh_sandbox, adapters):
    srv = runtime.run(start_alpaca(fresh_sandbox, key_id=KEY, secret_key=SECRET,
                                   rate_limit=None))
    cfg = ConnectionConfig("alpaca", "alpaca", options={"url": srv.url, "rate_limit": False},
                           secrets=SECRETS)
    adapter = adapters(AlpacaAdapter(cfg, get_secret_store().resolve(SECRETS)))
    client = TradingClient(KEY, SECRET, paper=True, url_override=srv.url)
    yield adapter, client
    runtime.run(srv.close())


def _rest(client: TradingClient, n: int) -> list[str]:
    req = LimitOrderRequest(symbol="AAPL", qty=1, side="buy", time_in_force="day",
                            limit_price=1.0)
    return [str(client.submit_order(req).id) for _ in range(n)]


def test_alpaca_open_orders_reads_every_page_beyond_alpacas_500(alpaca):
    adapter, client = alpaca
    oldest = _rest(client, 2)
    newer = _rest(client, ORDERS_PAGE + 1)
    one_page = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=500))
    assert not set(oldest) & {str(o.id) for o in one_page}

    got = adapter.open_orders()

    assert list(got["order_id"]) == oldest + newer  # each once, oldest first
    assert set(got["status"]) == {OrderStatus.ACCEPTED.value}


def test_alpaca_open_orders_leaves_out_final_orders(alpaca):
    adapter, client = alpaca
    keep, gone = _rest(client, 2)
    client.cancel_order_by_id(gone)
    assert list(adapter.open_orders()["order_id"]) == [keep]


def test_alpaca_cancel_all_cancels_every_open_order_in_one_request(alpaca):
    adapter, client = alpaca
    placed = _rest(client, 3)
    acks = adapter.cancel_all()
    assert {a.order_id for a in acks} == set(placed)
    assert {a.status for a in acks} == {OrderStatus.CANCELED}
    assert client.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN)) == []


# -- IBKR -----------------------------------------------------------------------------------------


@pytest.fixture
def tws(fresh_sandbox, adapters):
    srv = runtime.run(start_tws(fresh_sandbox))
    port = srv.info["port"]
    adapter = adapters(IBKRAdapter(ConnectionConfig("ibkr", "ibkr",
                                                    options={"port": port, "timeout": 2})))
    yield adapter, port
    runtime.run(srv.close())


async def _rest_as_client(port: int, client_id: int, n: int) -> list[str]:
    """Resting orders placed by another API client, which then disconnects."""
    import asyncio

    ib = IB()
    await ib.connectAsync("127.0.0.1", port, clientId=client_id, timeout=5)
    trades = [ib.placeOrder(Stock("AAPL", "SMART", "USD"), LimitOrder("BUY", 1, 1.0))
              for _ in range(n)]
    for _ in range(100):
        if all(t.order.permId and t.orderStatus.status == "Submitted" for t in trades):
            break
        await asyncio.sleep(0.05)
    ib.disconnect()
    return [str(t.order.permId) for t in trades]


def test_ibkr_open_orders_include_other_clients_orders(tws):
    adapter, port = tws
    placed = runtime.run(_rest_as_client(port, 91, 2))
    assert set(adapter.open_orders()["order_id"]) == set(placed)


def test_ibkr_cancel_of_another_clients_order_is_refused_naming_the_client(tws):
    adapter, port = tws
    (placed,) = runtime.run(_rest_as_client(port, 92, 1))
    with pytest.raises(AdapterError, match="placed by API client 92"):
        adapter.cancel(placed)
    assert list(adapter.open_orders()["order_id"]) == [placed]


def test_ibkr_cancel_all_reaches_other_clients_orders_with_a_global_cancel(tws):
    adapter, port = tws
    placed = runtime.run(_rest_as_client(port, 93, 2))
    acks = adapter.cancel_all()
    assert {a.order_id for a in acks} == set(placed)
    assert {a.status for a in acks} == {OrderStatus.CANCELED}
    assert adapter.open_orders().empty
