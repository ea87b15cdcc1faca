"""The Alpaca sandbox server driven by alpaca-py directly (not through brokerkit): every endpoint,
every order type, Alpaca's error answers, pagination, faults. The sandbox is a faithful Alpaca
for anyone's code."""

from __future__ import annotations

import time
import uuid

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.historical import CryptoHistoricalDataClient, StockHistoricalDataClient
from alpaca.data.requests import (
    CryptoLatestQuoteRequest,
    StockLatestQuoteRequest,
    StockLatestTradeRequest,
)
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import AssetClass, OrderSide, OrderStatus, QueryOrderStatus, TimeInForce
from alpaca.trading.requests import (
    GetAssetsRequest,
    GetCalendarRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    StopLimitOrderRequest,
    StopOrderRequest,
    TrailingStopOrderRequest,
)
from requests.adapters import HTTPAdapter

from brokerkit import runtime
from brokerkit.sandbox.alpaca import ACCOUNT, start_alpaca

KEY, SECRET = "PKTESTKEY", "test-secret"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def sandbox(fresh_sandbox):
    return fresh_sandbox


@pytest.fixture
def server(sandbox):
    srv = runtime.run(start_alpaca(sandbox, key_id=KEY, secret_key=SECRET, rate_limit=None))
    yield srv
    runtime.run(srv.close())


@pytest.fixture
def client(server) -> TradingClient:
    c = TradingClient(KEY, SECRET, paper=True, url_override=server.url)
    c._retry = 0  # alpaca-py would otherwise sleep 3 s before each of 3 retries of a 429
    return c


def coid() -> str:
    return f"t-{uuid.uuid4().hex[:20]}"


def market(symbol: str = "AAPL", qty: float | None = 1, **kw) -> MarketOrderRequest:
    kw.setdefault("client_order_id", coid())
    return MarketOrderRequest(symbol=symbol, qty=qty, side=kw.pop("side", OrderSide.BUY),
                              time_in_force=kw.pop("time_in_force", TimeInForce.DAY), **kw)


def api_error(fn, *args) -> APIError:
    with pytest.raises(APIError) as info:
        fn(*args)
    return info.value


# -- account and positions --------------------------------------------------------------------

def test_account_parses_as_a_margin_trade_account(client):
    a = client.get_account()
    assert a.account_number == ACCOUNT and a.status.value == "ACTIVE"
    assert a.multiplier == "2" and a.shorting_enabled
    assert float(a.equity) == pytest.approx(float(a.cash) + float(a.long_market_value)
                                            + float(a.short_market_value))
    assert float(a.buying_power) > float(a.cash)


def test_positions_include_a_fractional_holding(client):
    by_symbol = {p.symbol: p for p in client.get_all_positions()}
    assert {"AAPL", "SPY", "NVDA"} <= set(by_symbol)
    nvda = client.get_open_position("NVDA")
    assert nvda.qty == "0.75" and nvda.side.value == "long"
    assert float(nvda.market_value) == pytest.approx(0.75 * float(nvda.current_price), rel=1e-9)


def test_missing_position_is_404(client):
    err = api_error(client.get_open_position, "MSFT")
    assert err.status_code == 404 and err.code == 40410000


# -- orders -----------------------------------------------------------------------------------

ORDER_TYPES = {
    "market": lambda c: market(client_order_id=c),
    "limit": lambda c: LimitOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY,
                                         time_in_force=TimeInForce.GTC, limit_price=100,
                                         client_order_id=c),
    "stop": lambda c: StopOrderRequest(symbol="AAPL", qty=1, side=OrderSide.SELL,
                                       time_in_force=TimeInForce.DAY, stop_price=50,
                                       client_order_id=c),
    "stop_limit": lambda c: StopLimitOrderRequest(symbol="AAPL", qty=1, side=OrderSide.SELL,
                                                  time_in_force=TimeInForce.GTC, stop_price=50,
                                                  limit_price=49.5, client_order_id=c),
    "trailing_stop": lambda c: TrailingStopOrderRequest(symbol="AAPL", qty=1,
                                                        side=OrderSide.SELL,
                                                        time_in_force=TimeInForce.DAY,
                                                        trail_percent=25, client_order_id=c),
}


@pytest.mark.parametrize("kind", ORDER_TYPES)
def test_every_order_type_is_placed_and_found_by_id_and_client_id(client, kind):
    cid = coid()
    o = client.submit_order(ORDER_TYPES[kind](cid))
    assert o.client_order_id == cid and o.order_type.value == kind
    assert o.status is (OrderStatus.FILLED if kind == "market" else OrderStatus.NEW)
    assert client.get_order_by_id(o.id).id == o.id
    assert client.get_order_by_client_id(cid).id == o.id


def test_notional_market_order_buys_a_fractional_quantity(client):
    o = client.submit_order(market(qty=None, notional=100))
    assert o.status is OrderStatus.FILLED and o.notional == "100"
    assert float(o.filled_qty) * float(o.filled_avg_price) == pytest.approx(100, abs=0.01)
    assert float(o.filled_qty) % 1 != 0


def test_extended_hours_flag_is_kept_on_the_order(client):
    o = client.submit_order(LimitOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY,
                                              time_in_force=TimeInForce.DAY, limit_price=100,
                                              extended_hours=True))
    assert o.extended_hours is True
    assert client.get_order_by_id(o.id).extended_hours is True


def test_reused_client_order_id_is_422(client):
    cid = coid()
    client.submit_order(market(client_order_id=cid))
    err = api_error(client.submit_order, market(client_order_id=cid))
    assert err.status_code == 422 and "client_order_id must be unique" in err.message


@pytest.mark.parametrize("request_, message", [
    (lambda: market(qty=0.5, time_in_force=TimeInForce.GTC), "fractional orders must be DAY"),
    # notional market, limit, stop and stop-limit orders are Alpaca's (venues.alpaca); a
    # trailing stop is not among them
    (lambda: TrailingStopOrderRequest(symbol="AAPL", notional=50, side=OrderSide.BUY,
                                      time_in_force=TimeInForce.DAY, trail_percent=1),
     "notional orders only supported for"),
    (lambda: market("BRK.A", qty=0.5), "not fractionable"),
    (lambda: market(qty=1, extended_hours=True), "extended hours order must be DAY limit"),
    (lambda: market("NOPE"), "not found"),
    (lambda: LimitOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY,
                               time_in_force=TimeInForce.DAY, limit_price=100.001),
     "sub-penny"),
    (lambda: market("BTC/USD", qty=0.01), "invalid crypto time_in_force"),
])
def test_orders_breaking_alpacas_rules_are_422(client, request_, message):
    err = api_error(client.submit_order, request_())
    assert err.status_code == 422 and message in err.message
    assert client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL)) == []


def test_insufficient_buying_power_is_403_and_leaves_no_order(client):
    cid = coid()
    err = api_error(client.submit_order, market("BRK.A", qty=5, client_order_id=cid))
    assert err.status_code == 403 and err.code == 40310000
    assert err.message == "insufficient buying power"
    body = err.response.json()
    assert float(body["cost_basis"]) > float(body["buying_power"])
    assert api_error(client.get_order_by_client_id, cid).status_code == 404


def test_short_sale_of_a_non_shortable_asset_is_403(client):
    err = api_error(client.submit_order, market("GME", qty=1, side=OrderSide.SELL))
    assert err.status_code == 403 and "cannot be sold short" in err.message


def test_unknown_order_is_404(client):
    err = api_error(client.get_order_by_id, str(uuid.uuid4()))
    assert err.status_code == 404 and err.code == 40410000
    assert api_error(client.get_order_by_client_id, coid()).status_code == 404


def test_cancel_open_order_then_cancel_again_is_422(client):
    o = client.submit_order(ORDER_TYPES["limit"](coid()))
    assert client.cancel_order_by_id(o.id) is None
    assert client.get_order_by_id(o.id).status is OrderStatus.CANCELED
    err = api_error(client.cancel_order_by_id, o.id)
    assert err.status_code == 422 and '"canceled" state' in err.message


def test_cancel_all_answers_207_with_one_entry_per_open_order(client, server):
    opened = {str(client.submit_order(ORDER_TYPES["limit"](coid())).id) for _ in range(3)}
    client.submit_order(market())  # filled: not cancelable
    answers = client.cancel_orders()
    assert {str(a.id) for a in answers} == opened and {a.status for a in answers} == {200}
    r = requests.delete(f"{server.url}/v2/orders",
                        headers={"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET})
    assert r.status_code == 207 and r.json() == []


def test_order_list_filters_by_status_side_symbol_and_limit(client):
    limit_ids = [str(client.submit_order(ORDER_TYPES["limit"](coid())).id) for _ in range(3)]
    filled = client.submit_order(market("MSFT"))
    open_ = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN))
    assert [str(o.id) for o in open_] == limit_ids[::-1]  # newest first
    closed = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.CLOSED))
    assert [o.id for o in closed] == [filled.id]
    every = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, limit=2,
                                               direction="asc", nested=True))
    assert [str(o.id) for o in every] == limit_ids[:2]
    msft = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, symbols=["MSFT"],
                                              side=OrderSide.BUY))
    assert [o.id for o in msft] == [filled.id]


# -- activities ------------------------------------------------------------------------------

def test_fill_activities_page_with_page_token(client):
    placed = [client.submit_order(market(qty=0.1)).id for _ in range(7)]
    full = client.get("/account/activities", {"activity_types": "FILL"})
    assert len(full) == 7 and {a["order_id"] for a in full} == {str(i) for i in placed}
    pages, token = [], None
    while True:
        params = {"activity_types": "FILL", "page_size": 3}
        if token:
            params["page_token"] = token
        page = client.get("/account/activities", params)
        pages.append(page)
        if len(page) < 3:
            break
        token = page[-1]["id"]
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [a["id"] for p in pages for a in p] == [a["id"] for a in full]
    assert all(a["activity_type"] == "FILL" and a["type"] == "fill" for a in full)


def test_activities_reject_an_unknown_type_and_filter_non_trades(client):
    client.submit_order(market())
    err = api_error(client.get, "/account/activities", {"activity_types": "FFFFF"})
    assert err.status_code == 422 and "invalid activity type" in err.message
    assert client.get("/account/activities/DIV") == []
    assert len(client.get("/account/activities/FILL")) == 1


# -- assets, clock, calendar -----------------------------------------------------------------

def test_assets_say_what_is_tradable_fractionable_and_shortable(client):
    crypto = client.get_all_assets(GetAssetsRequest(asset_class=AssetClass.CRYPTO))
    assert crypto and all(a.asset_class is AssetClass.CRYPTO for a in crypto)
    assert "BTC/USD" in {a.symbol for a in crypto}
    brk, gme, zvzzt = (client.get_asset(s) for s in ("BRK.A", "GME", "ZVZZT"))
    assert not brk.fractionable and brk.tradable and brk.shortable
    assert gme.fractionable and not gme.shortable and not gme.easy_to_borrow
    assert not zvzzt.tradable
    assert client.get_asset("BTCUSD").symbol == "BTC/USD"
    err = api_error(client.get_asset, "XYZQ")
    assert err.status_code == 404 and err.message == "asset not found for XYZQ"


def test_clock_and_calendar(client, sandbox):
    clock = client.get_clock()
    assert clock.is_open is sandbox.market.is_open("AAPL")
    assert clock.next_open > clock.timestamp and clock.next_close > clock.timestamp
    from datetime import date

    days = client.get_calendar(GetCalendarRequest(start=date(2026, 3, 2), end=date(2026, 3, 8)))
    assert [d.date.isoformat() for d in days] == [f"2026-03-0{i}" for i in range(2, 7)]
    assert days[0].open.hour == 9 and days[0].open.minute == 30 and days[0].close.hour == 16


# -- market data ------------------------------------------------------------------------------

def test_latest_stock_quotes_and_trades_come_from_the_shared_market(server, sandbox):
    data = StockHistoricalDataClient(KEY, SECRET, url_override=server.url)
    quotes = data.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols=["AAPL",
                                                                                    "MSFT"]))
    assert set(quotes) == {"AAPL", "MSFT"}
    q = quotes["AAPL"]
    assert 0 < q.bid_price < q.ask_price
    assert q.bid_price == pytest.approx(sandbox.market.price("AAPL"), rel=0.01)
    trade = data.get_stock_latest_trade(StockLatestTradeRequest(symbol_or_symbols="AAPL"))
    assert trade["AAPL"].price == pytest.approx(q.bid_price, rel=0.01)
    single = requests.get(f"{server.url}/v2/stocks/AAPL/quotes/latest",
                          headers={"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET})
    assert single.json()["symbol"] == "AAPL" and single.json()["quote"]["ap"] > 0


def test_crypto_quotes_need_no_keys(server):
    data = CryptoHistoricalDataClient(url_override=server.url)
    q = data.get_crypto_latest_quote(CryptoLatestQuoteRequest(symbol_or_symbols="BTC/USD"))
    assert 0 < q["BTC/USD"].bid_price < q["BTC/USD"].ask_price


# -- auth, rate limits, faults ----------------------------------------------------------------

def test_wrong_keys_are_401_on_trading_and_403_on_data(server):
    trading = TradingClient(KEY, "wrong", paper=True, url_override=server.url)
    err = api_error(trading.get_account)
    assert err.status_code == 401 and err.code == 40110000
    assert err.message == "request is not authorized"
    data = StockHistoricalDataClient("nope", SECRET, url_override=server.url)
    err = api_error(data.get_stock_latest_quote, StockLatestQuoteRequest(symbol_or_symbols="AAPL"))
    assert err.status_code == 403 and err.message == "access key verification failed"


def test_rate_limit_answers_429_with_headers_on_every_response(server, client):
    server.rate_limit = 3
    headers = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}
    seen = [requests.get(f"{server.url}/v2/clock", headers=headers) for _ in range(3)]
    assert [r.headers["X-Ratelimit-Remaining"] for r in seen] == ["2", "1", "0"]
    assert {r.headers["X-Ratelimit-Limit"] for r in seen} == {"3"}
    assert all(int(r.headers["X-Ratelimit-Reset"]) > 0 for r in seen)
    err = api_error(client.get_account)
    assert err.status_code == 429 and err.code == 42910000
    assert server.rate_limited == 1
    server.rate_limit = None
    assert "X-Ratelimit-Limit" not in requests.get(f"{server.url}/v2/clock",
                                                   headers=headers).headers


def test_alpaca_py_by_default_resends_an_order_post_refused_with_429(server):
    default = TradingClient(KEY, SECRET, paper=True, url_override=server.url)
    default._retry_wait = 0  # the retries themselves are the default behaviour
    server.broker.faults.set("submit", error_next=9, error_status=429)
    err = api_error(default.submit_order, market())
    assert err.status_code == 429
    assert server.requests["POST /v2/orders"] == 4  # what brokerkit's adapter turns off


def test_injected_server_error_is_answered_with_its_status(server, client):
    server.broker.faults.set("balances", error_next=1, error_status=503)
    assert api_error(client.get_account).status_code == 503
    assert client.get_account().account_number == ACCOUNT


def test_dropped_connection_after_accept_places_the_order_once(server, client):
    server.broker.faults.set("submit", drop_after_accept=1)
    cid = coid()
    with pytest.raises(requests.ConnectionError):
        client.submit_order(market(client_order_id=cid))
    found = client.get_order_by_client_id(cid)
    assert found.status is OrderStatus.FILLED
    every = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL))
    assert [o.client_order_id for o in every].count(cid) == 1
    assert server.requests["POST /v2/orders"] == 1


class _Timeout(HTTPAdapter):
    """requests' way to give a session a default timeout (alpaca-py sets none)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def send(self, request, **kwargs):
        kwargs["timeout"] = self.seconds
        return super().send(request, **kwargs)


def test_accept_late_places_the_order_after_the_client_gave_up(server, client):
    server.broker.faults.set("submit", accept_late_next=1, accept_late_s=0.5)
    impatient = TradingClient(KEY, SECRET, paper=True, url_override=server.url)
    impatient._session.mount("http://", _Timeout(0.15))
    cid = coid()
    with pytest.raises(requests.Timeout):
        impatient.submit_order(market(client_order_id=cid))
    assert api_error(client.get_order_by_client_id, cid).status_code == 404
    time.sleep(0.5)
    found = client.get_order_by_client_id(cid)
    assert found.status is OrderStatus.FILLED and float(found.filled_qty) == 1
    every = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL))
    assert [o.client_order_id for o in every].count(cid) == 1
    assert server.requests["POST /v2/orders"] == 1


def test_accept_late_answers_alpacas_refusal_to_a_client_that_waits(server, client):
    server.broker.faults.set("submit", accept_late_next=2, accept_late_s=0.1)
    cid = coid()
    started = time.perf_counter()
    assert client.submit_order(market(client_order_id=cid)).client_order_id == cid
    assert time.perf_counter() - started >= 0.1
    err = api_error(client.submit_order, market(client_order_id=cid))
    assert err.status_code == 422 and "client_order_id must be unique" in str(err)


def test_an_order_held_when_the_server_stops_is_never_placed(sandbox, server):
    server.broker.faults.set("submit", accept_late_next=1, accept_late_s=0.4)
    impatient = TradingClient(KEY, SECRET, paper=True, url_override=server.url)
    impatient._session.mount("http://", _Timeout(0.05))
    cid = coid()
    with pytest.raises(requests.Timeout):
        impatient.submit_order(market(client_order_id=cid))
    runtime.run(server.close())
    time.sleep(0.45)
    assert server.broker.find_client_order(cid) is None


def test_account_state_survives_a_server_restart(sandbox, server, client):
    placed = client.submit_order(market())
    runtime.run(server.close())
    again = runtime.run(start_alpaca(sandbox, key_id=KEY, secret_key=SECRET))
    try:
        fresh = TradingClient(KEY, SECRET, paper=True, url_override=again.url)
        assert fresh.get_order_by_id(placed.id).status is OrderStatus.FILLED
        assert float(fresh.get_open_position("AAPL").qty) == 11
    finally:
        runtime.run(again.close())
