"""AlpacaAdapter against the Alpaca sandbox server: the adapter contract, Alpaca's rules checked
pre-trade, submits sent exactly once, and recovery of a dropped submit through the pipeline."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import QueryOrderStatus
from alpaca.trading.requests import GetOrdersRequest, MarketOrderRequest
from contract import AdapterContract

from brokerkit import frames, runtime
from brokerkit.adapters.alpaca import AlpacaAdapter
from brokerkit.book import Book
from brokerkit.config import ConnectionConfig, Settings
from brokerkit.errors import ConfigError, ConnectionDown, SubmitUncertain
from brokerkit.execution.service import ExecutionService
from brokerkit.model import OrderIntent, OrderStatus
from brokerkit.sandbox.alpaca import ACCOUNT, start_alpaca
from brokerkit.secrets import get_secret_store

KEY, SECRET = "PKADAPTERKEY", "adapter-secret"
SECRETS = {"api_key": "alpaca_key", "secret_key": "alpaca_secret"}


@pytest.fixture(autouse=True)
def _keys(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("BROKERKIT_SECRET_ALPACA_KEY", KEY)
    monkeypatch.setenv("BROKERKIT_SECRET_ALPACA_SECRET", SECRET)


@pytest.fixture
def server(fresh_sandbox):
    srv = runtime.run(start_alpaca(fresh_sandbox, key_id=KEY, secret_key=SECRET,
                                   rate_limit=None))
    yield srv
    runtime.run(srv.close())


@pytest.fixture
def connect(server, adapters):
    def _connect(*, connect: bool = True, **options) -> AlpacaAdapter:
        options.setdefault("url", server.url)
        options.setdefault("rate_limit", False)
        cfg = ConnectionConfig("alpaca", "alpaca", options=options, secrets=SECRETS)
        return adapters(AlpacaAdapter(cfg, get_secret_store().resolve(SECRETS)),
                        connect=connect)

    return _connect


@pytest.fixture
def direct(server) -> TradingClient:
    c = TradingClient(KEY, SECRET, paper=True, url_override=server.url)
    c._retry = 0
    return c


def coid() -> str:
    return f"t-{uuid.uuid4().hex[:20]}"


class TestAlpacaContract(AdapterContract):
    @pytest.fixture
    def adapter(self, connect):
        return connect()

    @pytest.fixture
    def impatient_adapter(self, connect):
        return connect(timeout=1)

    @pytest.fixture
    def broker_faults(self, fresh_sandbox):
        return fresh_sandbox.broker("alpaca").faults


# -- frames -----------------------------------------------------------------------------------

def test_connect_names_the_alpaca_account_and_its_type(connect):
    a = connect()
    assert a.accounts == [ACCOUNT]
    assert a.account_types() == {ACCOUNT: "margin"}
    assert a.market_open("AAPL") is True and a.market_open("BTC/USD") is True


def test_positions_frame_keeps_fractional_quantities(connect):
    df = frames.validate(frames.POSITIONS, connect().positions())
    nvda = df[df["symbol"] == "NVDA"].iloc[0]
    assert nvda["quantity"] == 0.75 and nvda["instrument"] == "STK:NVDA"
    assert nvda["market_value"] == pytest.approx(0.75 * nvda["market_price"])


def test_instruments_carry_alpacas_asset_facts(connect):
    df = frames.validate(frames.INSTRUMENTS, connect().instruments(["BRK.A", "GME", "BTC/USD"]))
    rows = {r["symbol"]: r for r in df.to_dict("records")}
    assert not rows["BRK.A"]["fractionable"] and rows["BRK.A"]["min_quantity"] == 1
    assert rows["GME"]["fractionable"] and not rows["GME"]["shortable"]
    assert rows["BTC/USD"]["instrument"] == "CRYPTO:BTC/USD"
    assert rows["BTC/USD"]["asset_class"] == "crypto"


def test_quotes_cover_stocks_and_crypto(connect):
    df = frames.validate(frames.QUOTES, connect().quotes(["AAPL", "BTC/USD"]))
    assert list(df["instrument"]) == ["STK:AAPL", "CRYPTO:BTC/USD"]
    assert (df["bid"] < df["ask"]).all() and (df["last"] > 0).all()


def test_fills_come_from_every_activity_page(connect, direct, server):
    placed = {direct.submit_order(MarketOrderRequest(
        symbol="AAPL", qty=0.01, side="buy", time_in_force="day", client_order_id=coid()
    )).client_order_id for _ in range(130)}
    server.reset_counters()
    fills = frames.validate(frames.FILLS, connect().fills())
    assert len(fills) == 130 and fills["fill_id"].is_unique
    assert set(fills["client_order_id"]) == placed
    assert server.requests["GET /v2/account/activities"] == 2
    assert fills["executed_at"].is_monotonic_increasing


# -- submits ----------------------------------------------------------------------------------

INTENTS = {
    "market": OrderIntent("AAPL", "buy", quantity="1.5"),
    "notional": OrderIntent("AAPL", "buy", notional="250"),
    "limit": OrderIntent("AAPL", "buy", quantity=2, order_type="limit", limit_price="100",
                         time_in_force="gtc"),
    "limit_extended": OrderIntent("AAPL", "buy", quantity=2, order_type="limit",
                                  limit_price="100", extended_hours=True),
    "stop": OrderIntent("AAPL", "sell", quantity=1, order_type="stop", stop_price="50"),
    "stop_limit": OrderIntent("AAPL", "sell", quantity=1, order_type="stop_limit",
                              stop_price="50", limit_price="49.5"),
    "trailing_stop": OrderIntent("AAPL", "sell", quantity=1, order_type="trailing_stop",
                                 trail_price="40"),
    "crypto": OrderIntent("BTC/USD", "buy", quantity="0.01", time_in_force="gtc"),
}


@pytest.mark.parametrize("name", INTENTS)
def test_each_order_type_is_submitted_with_its_client_order_id(connect, direct, name):
    a = connect()
    cid = coid()
    ack = a.submit(INTENTS[name], cid)
    expected = OrderStatus.FILLED if name in ("market", "notional", "crypto") \
        else OrderStatus.ACCEPTED
    assert ack.status is expected, ack.reason
    at_alpaca = direct.get_order_by_client_id(cid)
    assert str(at_alpaca.id) == ack.order_id
    intent = INTENTS[name]
    assert at_alpaca.order_type.value == intent.order_type.value
    assert at_alpaca.extended_hours is intent.extended_hours
    assert a.lookup(cid).order_id == ack.order_id
    orders = frames.validate(frames.ORDERS, a.orders())
    row = orders[orders["client_order_id"] == cid].iloc[0]
    assert row["order_type"] == intent.order_type.value and row["status"] == expected.value


def test_cancel_returns_the_canceled_order_and_a_final_one_unchanged(connect):
    a = connect()
    ack = a.submit(INTENTS["limit"], coid())
    assert a.cancel(ack.order_id).status is OrderStatus.CANCELED
    again = a.cancel(ack.order_id)
    assert again.status is OrderStatus.CANCELED and "already" in again.reason


def test_broker_refusal_comes_back_rejected_with_alpacas_message(connect):
    ack = connect().submit(OrderIntent("BRK.A", "buy", quantity=5), coid())
    assert ack.status is OrderStatus.REJECTED
    assert ack.reason == "insufficient buying power (HTTP 403)"


def test_429_on_submit_is_answered_once_and_not_resent(connect, server):
    a = connect()
    server.broker.faults.set("submit", error_next=5, error_status=429)
    t0 = time.perf_counter()
    ack = a.submit(INTENTS["market"], coid())
    assert ack.status is OrderStatus.REJECTED and "HTTP 429" in ack.reason
    assert server.requests["POST /v2/orders"] == 1
    assert time.perf_counter() - t0 < 2  # no 3 s sleeps between hidden retries


def test_submit_that_times_out_is_uncertain(connect, server):
    a = connect(timeout=0.3)
    server.broker.faults.set("submit", timeout=True, timeout_s=1.0)
    with pytest.raises(SubmitUncertain, match="timed out"):
        a.submit(INTENTS["market"], coid())


def test_dropped_connection_raises_submit_uncertain_and_lookup_finds_the_order(connect,
                                                                               server):
    a = connect()
    server.broker.faults.set("submit", drop_after_accept=1)
    cid = coid()
    with pytest.raises(SubmitUncertain):
        a.submit(INTENTS["market"], cid)
    assert a.lookup(cid).status is OrderStatus.FILLED


# -- Alpaca's rules, pre-trade ----------------------------------------------------------------

FACTS = {"AAPL": {"asset_class": "equity", "fractionable": True, "price_increment": 0.01},
         "BRK.A": {"asset_class": "equity", "fractionable": False, "price_increment": 0.01},
         "BTC/USD": {"asset_class": "crypto", "fractionable": True, "price_increment": 0.01}}


@pytest.mark.parametrize("intent, code, words", [
    (OrderIntent("AAPL", "buy", quantity="0.5", time_in_force="gtc"), "UNSUPPORTED_ORDER",
     "time in force day"),
    (OrderIntent("AAPL", "buy", notional=50, order_type="trailing_stop", trail_percent=2),
     "UNSUPPORTED_ORDER", "notional"),
    (OrderIntent("STK:SAP@XETRA", "buy", quantity=1), "UNSUPPORTED_ORDER",
     "not STK:SAP@XETRA (equity on XETRA)"),
    (OrderIntent("AAPL", "sell", quantity="0.5", order_type="trailing_stop",
                 trail_percent=2), "UNSUPPORTED_ORDER", "trailing_stop"),
    (OrderIntent("BRK.A", "buy", quantity="0.5"), "NOT_FRACTIONABLE", "not fractionable"),
    (OrderIntent("AAPL", "buy", quantity=1, extended_hours=True), "UNSUPPORTED_ORDER",
     "extended-hours"),
    (OrderIntent("AAPL", "buy", quantity=1, order_type="limit", limit_price=100,
                 time_in_force="gtc", extended_hours=True), "UNSUPPORTED_ORDER", "day limit"),
    (OrderIntent("BTC/USD", "buy", quantity="0.01"), "UNSUPPORTED_ORDER", "gtc, ioc"),
    (OrderIntent("BTC/USD", "buy", quantity="0.01", order_type="stop", stop_price=1000,
                 time_in_force="gtc"), "UNSUPPORTED_ORDER", "not stop"),
])
def test_check_intent_names_alpacas_rule(connect, intent, code, words):
    violations = connect(connect=False).check_intent(intent, FACTS.get(intent.symbol))
    assert code in [v.code for v in violations]
    assert any(words in v.message for v in violations), violations


@pytest.mark.parametrize("intent", [
    OrderIntent("AAPL", "buy", quantity="0.5"),
    OrderIntent("AAPL", "buy", notional="10"),
    OrderIntent("AAPL", "buy", quantity="0.5", order_type="limit", limit_price=100),
    OrderIntent("AAPL", "buy", quantity=1, order_type="limit", limit_price=100,
                extended_hours=True),
    OrderIntent("BTC/USD", "buy", quantity="0.01", time_in_force="ioc"),
    OrderIntent("AAPL", "buy", notional="10", order_type="limit", limit_price=100),
    OrderIntent("AAPL", "buy", notional="10", order_type="stop", stop_price=100),
    OrderIntent("AAPL", "buy", notional="10", order_type="stop_limit", stop_price=100,
                limit_price=101),
    OrderIntent("STK:AAPL", "buy", quantity=1),
    OrderIntent("CRYPTO:BTC/USD", "buy", quantity="0.01", time_in_force="gtc"),
])
def test_check_intent_passes_what_alpaca_accepts(connect, intent):
    assert connect(connect=False).check_intent(intent, FACTS.get(intent.symbol)) == []


def test_fractional_shares_cannot_be_sold_short_at_alpaca(connect, direct):
    """alpaca.markets/support/what-is-fractional-trading: "short selling fractional shares is
    not supported"; the sandbox holds 0.75 NVDA and no MSFT."""
    a = connect()
    short = a.submit(OrderIntent("MSFT", "sell", quantity="0.5"), coid())
    assert short.status is OrderStatus.REJECTED
    assert "short selling fractional shares is not supported" in short.reason
    assert "403" in short.reason
    long_sale = a.submit(OrderIntent("NVDA", "sell", quantity="0.5"), coid())
    assert long_sale.status is not OrderStatus.REJECTED, long_sale.reason


def test_a_canonical_key_reaches_alpaca_as_its_symbol(connect, direct):
    """Alpaca's API takes `AAPL` and `BTC/USD` (http-apis.md §1.5), not brokerkit's keys."""
    a = connect()
    ack = a.submit(OrderIntent("STK:AAPL", "buy", quantity=1), coid())
    assert ack.status is not OrderStatus.REJECTED, ack.reason
    assert direct.get_order_by_id(ack.order_id).symbol == "AAPL"
    away = a.submit(OrderIntent("STK:SAP@XETRA", "buy", quantity=1), coid())
    assert away.status is OrderStatus.REJECTED and "XETRA" in away.reason


# -- options and secrets ----------------------------------------------------------------------

def test_wrong_keys_make_connect_fail_with_alpacas_reason(server, monkeypatch):
    monkeypatch.setenv("BROKERKIT_SECRET_ALPACA_SECRET", "wrong")
    cfg = ConnectionConfig("alpaca", "alpaca", options={"url": server.url}, secrets=SECRETS)
    a = AlpacaAdapter(cfg, get_secret_store().resolve(SECRETS))
    with pytest.raises(ConnectionDown, match=r"request is not authorized \(HTTP 401\)"):
        a.connect()


@pytest.mark.parametrize("options, key", [
    ({"url": "http://127.0.0.1:1/"}, "url"),
    ({"paper": "yes"}, "paper"),
    ({"timeout": 0}, "timeout"),
    ({"colour": "red"}, "colour"),
])
def test_bad_options_are_config_errors_naming_the_option(options, key):
    cfg = ConnectionConfig("alpaca", "alpaca", options=options, secrets=SECRETS)
    with pytest.raises(ConfigError, match=rf"options\.{key}"):
        AlpacaAdapter(cfg, get_secret_store().resolve(SECRETS))


def test_missing_key_secret_is_a_config_error():
    cfg = ConnectionConfig("alpaca", "alpaca", options={"url": "http://127.0.0.1:1"})
    with pytest.raises(ConfigError, match=r"secrets\.api_key"):
        AlpacaAdapter(cfg, {})


def test_keys_never_appear_in_the_adapters_repr(connect):
    a = connect()
    assert KEY not in repr(a) and SECRET not in repr(a) and SECRET not in repr(a.secrets)


def test_reads_under_rate_pressure_use_the_last_answer_instead_of_waiting(connect, server):
    server.rate_limit = 3
    a = connect(rate_limit={"requests": 3, "per_seconds": 60})  # connect: 1 request
    first = a.balances()  # 2
    a.positions()  # 3: the limit is reached
    t0 = time.perf_counter()
    again = a.balances()
    assert time.perf_counter() - t0 < 0.5 and again["cash"].iloc[0] == first["cash"].iloc[0]
    assert server.rate_limited == 0 and sum(server.requests.values()) == 3


# -- through the pipeline ---------------------------------------------------------------------

@pytest.fixture
def execution(server, book_url):
    cfg = ConnectionConfig("alpaca", "alpaca", options={"url": server.url}, secrets=SECRETS)
    settings = Settings(connections={"alpaca": cfg}, routing={"default": "alpaca"},
                        book_url=book_url)
    from brokerkit.service import BrokerageService

    brokerage = BrokerageService(settings)
    svc = ExecutionService(brokerage, Book(book_url))
    yield svc
    svc.sync_fills()  # the background fill pull finishes before the server stops
    brokerage.close()


def test_place_order_through_the_pipeline_fills_at_alpaca(execution, direct):
    result = execution.place_order(symbol="AAPL", side="buy", quantity="0.5")
    assert result["status"] == "FILLED", result.reason
    assert result.connection == "alpaca" and result.account == ACCOUNT
    assert str(direct.get_order_by_client_id(result.client_order_id).id) == result.order_id


def test_pipeline_rejects_alpaca_rule_breaks_before_sending(execution, server):
    result = execution.place_order(symbol="BRK.A", side="buy", quantity="0.5")
    assert result.status is OrderStatus.REJECTED and "NOT_FRACTIONABLE" in result.codes
    result = execution.place_order(symbol="AAPL", side="buy", quantity="0.5",
                                   time_in_force="gtc")
    assert result.status is OrderStatus.REJECTED and "UNSUPPORTED_ORDER" in result.codes
    assert server.requests["POST /v2/orders"] == 0


def test_dropped_connection_is_recovered_by_lookup_without_a_duplicate(execution, server,
                                                                        direct):
    server.broker.faults.set("submit", drop_after_accept=1)
    result = execution.place_order(symbol="AAPL", side="buy", quantity=2)
    assert result.status in (OrderStatus.FILLED, OrderStatus.ACCEPTED), result.reason
    assert result.order_id
    every = direct.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL))
    assert [o.client_order_id for o in every] == [result.client_order_id]
    assert server.requests["POST /v2/orders"] == 1
    execution.flush()  # the acknowledgement is recorded after the answer
    row = execution.book.get_order(result.client_order_id)
    assert row["status"] == result.status.value and row["broker_order_id"] == result.order_id


def test_submit_that_would_wait_long_for_a_request_slot_is_refused_unsent(connect, server):
    a = connect(request_limit=2)  # connect used 1 of 2 requests this minute
    first = a.submit(INTENTS["market"], coid())
    assert first.status is OrderStatus.FILLED
    t0 = time.perf_counter()
    ack = a.submit(INTENTS["market"], coid())
    assert ack.status is OrderStatus.REJECTED and "not sent" in ack.reason
    assert time.perf_counter() - t0 < 1 and server.requests["POST /v2/orders"] == 1


def test_fills_since_a_time_leave_out_older_ones(connect, direct):
    from datetime import UTC, datetime, timedelta

    a = connect()
    a.submit(INTENTS["market"], coid())
    assert len(a.fills(since=datetime.now(UTC) - timedelta(hours=1))) == 1
    assert len(a.fills(since=datetime.now(UTC) + timedelta(hours=1))) == 0


# -- one path: a waiting caller's order goes through the runtime loop -----------------------------

@pytest.fixture
def warm(execution, server):
    """The pipeline after one order (its caches filled), and the threads that sent each order
    POST since: recorded by a response hook on the order client's requests session."""
    first = execution.place_order(symbol="AAPL", side="buy", quantity=1)
    assert first.status is OrderStatus.FILLED, first.reason
    senders: list[int] = []

    def hook(response, *args, **kwargs):
        if response.request.method == "POST":
            senders.append(threading.get_ident())

    adapter = execution.brokerage.adapter("alpaca")
    adapter._orders._session.hooks["response"].append(hook)  # observe; nothing changed
    return execution, senders


def test_a_waiting_callers_order_is_sent_once_off_its_thread_and_recorded(warm, direct):
    execution, senders = warm
    result = execution.place_order(symbol="AAPL", side="buy", quantity="0.25")
    assert result.status is OrderStatus.FILLED, result.reason
    assert len(senders) == 1 and senders[0] != threading.get_ident()  # a worker thread
    assert str(direct.get_order_by_client_id(result.client_order_id).id) == result.order_id
    execution.flush()
    row = execution.book.get_order(result.client_order_id)
    assert row["status"] == "FILLED" and row["broker_order_id"] == result.order_id
    assert row["sent_at"] is not None and float(row["filled_quantity"]) == 0.25


def test_drop_after_accept_is_looked_up_not_resent(warm, server, direct):
    execution, _ = warm
    posts = server.requests["POST /v2/orders"]
    server.broker.faults.set("submit", drop_after_accept=1)
    result = execution.place_order(symbol="AAPL", side="buy", quantity=2)
    assert result.status is OrderStatus.FILLED, result.reason
    assert server.requests["POST /v2/orders"] == posts + 1  # sent once, found by lookup
    assert direct.get_order_by_client_id(result.client_order_id).client_order_id \
        == result.client_order_id
    execution.flush()
    assert execution.book.get_order(result.client_order_id)["status"] == "FILLED"


def test_a_halt_from_another_book_rejects_before_sending(warm, server, book_url):
    execution, senders = warm
    posts = server.requests["POST /v2/orders"]
    other = Book(book_url, shared=False)
    try:
        other.set_trading_state("HALTED", "desk halt", "tester")
        result = execution.place_order(symbol="AAPL", side="buy", quantity=3)
    finally:
        other.set_trading_state("ACTIVE", "resumed", "tester")
        other.close()
    assert result.codes == ["TRADING_HALTED"] and "desk halt" in result.reason
    assert server.requests["POST /v2/orders"] == posts and senders == []
    assert execution.book.get_order(result.client_order_id)["status"] == "REJECTED"


def test_callers_on_many_threads_lose_no_order_and_no_acknowledgement(warm, server):
    from concurrent.futures import ThreadPoolExecutor

    execution, senders = warm
    posts = server.requests["POST /v2/orders"]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(
            lambda i: execution.place_order(symbol="AAPL", side="buy", quantity=f"0.{10 + i}"),
            range(40)))  # each a different order: the duplicate check stays out of it
    assert all(r.status is OrderStatus.FILLED for r in results), {r.reason for r in results}
    coids = {r.client_order_id for r in results}
    assert len(coids) == 40 and server.requests["POST /v2/orders"] == posts + 40
    assert len(senders) == 40
    execution.flush()
    rows = [execution.book.get_order(c) for c in coids]
    assert {r["status"] for r in rows} == {"FILLED"}
    assert all(r["broker_order_id"] and r["sent_at"] for r in rows)


def test_the_acknowledgement_lands_in_the_book_on_its_own(warm):
    execution, _ = warm
    result = execution.place_order(symbol="AAPL", side="buy", quantity="0.3")
    assert result.status is OrderStatus.FILLED, result.reason
    deadline = time.monotonic() + 5  # no later order carries it: its timer writes it
    while execution.book.get_order(result.client_order_id)["status"] != "FILLED":
        assert time.monotonic() < deadline, "the acknowledgement never reached the book"
        time.sleep(0.02)
    assert execution.book.get_order(result.client_order_id)["broker_order_id"] \
        == result.order_id


def test_an_old_quote_is_used_while_a_fresh_one_is_fetched(warm):
    """A quote between QUOTE_TTL and QUOTE_STALE old, and a trading state read too long ago:
    the order goes at once on the old quote, and a fresh one is fetched in the background."""
    from brokerkit.execution import inputs

    execution, _ = warm
    cache = execution._inputs.cache("alpaca")
    quote = cache.quotes["AAPL"][1]
    aged = time.monotonic() - (inputs.QUOTE_TTL + inputs.QUOTE_STALE) / 2
    cache.quotes["AAPL"] = (aged, quote)
    execution._inputs.forget_state()  # the last trading state read is too old
    result = execution.place_order(symbol="AAPL", side="buy", quantity="0.2")
    assert result.status is OrderStatus.FILLED, result.reason
    deadline = time.monotonic() + 5
    while cache.quotes["AAPL"][0] <= aged:  # refreshed in the background
        assert time.monotonic() < deadline, "the old quote was never fetched again"
        time.sleep(0.02)


def test_a_reused_client_order_id_is_refused_and_never_sent(warm, server):
    execution, senders = warm
    first = execution.place_order(symbol="AAPL", side="buy", quantity="0.4",
                                  client_order_id="bk-reused-once")
    assert first.status is OrderStatus.FILLED, first.reason
    again = execution.place_order(symbol="AAPL", side="buy", quantity="0.6",
                                  client_order_id="bk-reused-once")
    assert again.codes == ["DUPLICATE_INTENT"] and len(senders) == 1


def test_ctrl_c_while_waiting_leaves_the_order_to_the_loop_which_records_it(warm, server):
    """Ctrl-C in the caller while Alpaca holds the order POST: the caller gets its interrupt,
    and the runtime loop finishes the order and records Alpaca's answer."""
    import signal

    execution, senders = warm
    server.broker.faults.set("submit", latency_ms=600)
    interrupt = threading.Timer(0.2, signal.pthread_kill,  # Ctrl-C: SIGINT to the caller
                                (threading.main_thread().ident, signal.SIGINT))
    interrupt.start()
    with pytest.raises(KeyboardInterrupt):
        execution.place_order(symbol="AAPL", side="buy", quantity="0.7")
    assert senders == []  # the interrupt came while the order was in flight
    server.broker.faults.clear()
    deadline = time.monotonic() + 10
    while True:
        orders = execution.book.orders_frame()
        row = orders[orders["quantity"] == 0.7].iloc[0]
        if row["status"] == "FILLED":
            break
        assert time.monotonic() < deadline, dict(row)
        time.sleep(0.05)
    assert row["broker_order_id"] and float(row["filled_quantity"]) == 0.7
    assert len(senders) == 1
