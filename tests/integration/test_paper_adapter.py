"""PaperAdapter against the sandbox's paper server over a real socket: the adapter contract,
what a paper broker must do like a real one, and faults set on the server."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from contract import AdapterContract

from brokerkit import frames
from brokerkit.adapters.paper import PaperAdapter
from brokerkit.config import ConnectionConfig
from brokerkit.errors import AdapterError, ConfigError, ConnectionDown, SubmitUncertain
from brokerkit.model import OrderIntent, OrderStatus
from brokerkit.sandbox import Sandbox

MONDAY_10AM_NY = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


@pytest.fixture
def sandbox(fresh_sandbox):
    """A sandbox of its own with a frozen clock on a Monday morning in New York."""
    fresh_sandbox.market.clock.freeze(MONDAY_10AM_NY)
    return fresh_sandbox


@pytest.fixture
def connect(sandbox, paper_url, adapters):
    """A connected adapter to the sandbox's paper server; a demo connection's name gives it
    that connection's demo accounts unless `accounts` are given."""
    def _connect(name: str = "paper-us", *, accounts: tuple[str, ...] | None = None,
                 connect: bool = True, read_only: bool = False, **options) -> PaperAdapter:
        options.setdefault("url", paper_url)
        if accounts is None:
            accounts = Sandbox.demo_accounts(name)
        cfg = ConnectionConfig(name=name, type="paper", options=options, accounts=accounts,
                               read_only=read_only)
        return adapters(PaperAdapter(cfg), connect=connect)

    return _connect


def coid() -> str:
    return f"t-{uuid.uuid4().hex[:20]}"


def buy(symbol: str, qty: str | None = None, account: str = "DEMO-MARGIN-1", **kw) -> OrderIntent:
    return OrderIntent(symbol, "buy", quantity=qty, account=account, **kw)


def cash_of(adapter: PaperAdapter, account: str, currency: str) -> float:
    bal = adapter.balances()
    row = bal[(bal["account"] == account) & (bal["currency"] == currency)]
    return float(row["cash"].iloc[0])


def position_of(adapter: PaperAdapter, account: str, symbol: str) -> float:
    pos = adapter.positions()
    rows = pos[(pos["account"] == account) & (pos["symbol"] == symbol)]
    return float(rows["quantity"].sum())


class TestPaperContract(AdapterContract):
    @pytest.fixture
    def adapter(self, connect):
        return connect()

    @pytest.fixture
    def impatient_adapter(self, connect):
        return connect(timeout=1)

    @pytest.fixture
    def broker_faults(self, sandbox):
        return sandbox.broker("paper").faults


# -- trading like a broker ------------------------------------------------------------------


def test_market_order_fills_at_the_ask_and_moves_cash_and_position(connect, sandbox):
    a = connect()
    ask = sandbox.market.quote("NVDA").ask
    cash0 = cash_of(a, "DEMO-MARGIN-1", "USD")
    pos0 = position_of(a, "DEMO-MARGIN-1", "NVDA")
    ack = a.submit(buy("NVDA", "10"), coid())
    assert ack.status is OrderStatus.FILLED and ack.filled_quantity == 10
    assert ack.avg_fill_price == float(ask)
    assert cash_of(a, "DEMO-MARGIN-1", "USD") == pytest.approx(cash0 - 10 * float(ask))
    assert position_of(a, "DEMO-MARGIN-1", "NVDA") == pos0 + 10
    fills = a.fills()
    assert list(fills["order_id"]) == [ack.order_id] and fills["price"].iloc[0] == float(ask)
    assert fills["settle_date"].iloc[0] == fills["trade_date"].iloc[0] + timedelta(days=1)


def test_limit_order_rests_until_the_price_crosses_it(connect, sandbox):
    a = connect()
    market = sandbox.market
    # a start whose ask the market goes under within ten minutes (the simulated prices are
    # known ahead), and the lowest ask of those ten minutes as the limit
    for start in range(0, 86_400, 600):
        now = market.now() + timedelta(seconds=start)
        future = [(market.quote("AAPL", now + timedelta(seconds=s)).ask, s)
                  for s in range(1, 600)]
        limit, when = min(future)
        if limit < market.quote("AAPL", now).ask:
            break
    market.clock.freeze(now)
    ack = a.submit(buy("AAPL", "5", order_type="limit", limit_price=limit), coid())
    assert ack.status is OrderStatus.ACCEPTED and ack.filled_quantity == 0
    market.clock.advance(when - 1)
    assert a.lookup(ack.client_order_id).status is OrderStatus.ACCEPTED
    market.clock.advance(1)
    done = a.lookup(ack.client_order_id)
    assert done.status is OrderStatus.FILLED and done.avg_fill_price <= float(limit)


def test_large_order_fills_partially_then_on_later_ticks(connect, sandbox):
    a = connect()
    top = sandbox.market.listing("NVDA").top_size
    ack = a.submit(buy("NVDA", str(top * 2 + 500)), coid())
    assert ack.status is OrderStatus.PARTIALLY_FILLED and ack.filled_quantity == float(top)
    sandbox.market.clock.advance(1)
    assert a.lookup(ack.client_order_id).filled_quantity == float(top * 2)
    sandbox.market.clock.advance(1)
    done = a.lookup(ack.client_order_id)
    assert done.status is OrderStatus.FILLED and done.filled_quantity == float(top * 2 + 500)
    assert len(a.fills()) == 3


def test_fees_follow_the_listing_schedule_with_a_minimum(connect, sandbox):
    a = connect("paper-global")
    btc = a.submit(OrderIntent("BTC/USD", "buy", quantity="0.1", account="DEMO-CRYPTO-1"),
                   coid())
    sap = a.submit(OrderIntent("SAP", "buy", quantity="2", account="DEMO-GLOBAL-1"), coid())
    fills = a.fills().set_index("order_id")
    btc_value = 0.1 * btc.avg_fill_price
    assert fills.loc[btc.order_id, "fee"] == pytest.approx(round(btc_value * 0.0025, 2))
    assert fills.loc[btc.order_id, "fee_currency"] == "USD"
    assert 2 * sap.avg_fill_price * 0.0005 < 1.25  # so the minimum applies
    assert fills.loc[sap.order_id, "fee"] == 1.25
    assert fills.loc[sap.order_id, "fee_currency"] == "EUR"


def test_fractional_quantities_only_where_the_listing_allows(connect):
    a = connect()
    assert a.submit(buy("AAPL", "0.5"), coid()).status is OrderStatus.FILLED
    whole_only = a.submit(buy("BRK.A", "0.5"), coid())
    assert whole_only.status is OrderStatus.REJECTED and "not fractionable" in whole_only.reason
    notional = a.submit(OrderIntent("BRK.A", "buy", notional="1000", account="DEMO-MARGIN-1"),
                        coid())
    assert notional.status is OrderStatus.REJECTED and "notional" in notional.reason
    ok = a.submit(OrderIntent("SPY", "buy", notional="1000", account="DEMO-MARGIN-1"), coid())
    assert ok.status is OrderStatus.FILLED
    assert ok.filled_quantity * ok.avg_fill_price == pytest.approx(1000, abs=0.01)


def test_cash_account_cannot_sell_short(connect):
    a = connect()
    held = position_of(a, "DEMO-CASH-1", "QQQ")
    ack = a.submit(OrderIntent("QQQ", "sell", quantity=str(held + 1), account="DEMO-CASH-1"),
                   coid())
    assert ack.status is OrderStatus.REJECTED and "short sale" in ack.reason
    assert position_of(a, "DEMO-CASH-1", "QQQ") == held


def test_margin_account_can_short_but_not_a_hard_to_borrow_listing(connect):
    a = connect()
    short = a.submit(OrderIntent("MSFT", "sell", quantity="100", account="DEMO-MARGIN-1"), coid())
    assert short.status is OrderStatus.FILLED
    assert position_of(a, "DEMO-MARGIN-1", "MSFT") == 40 - 100
    gme = a.submit(OrderIntent("GME", "sell", quantity="1", account="DEMO-MARGIN-1"), coid())
    assert gme.status is OrderStatus.REJECTED and "not shortable" in gme.reason


def test_order_beyond_buying_power_is_rejected_and_recorded(connect):
    a = connect()
    bp = a.balances().set_index("account").loc["DEMO-CASH-1", "buying_power"]
    ask = a.quotes(["NVDA"])["ask"].iloc[0]
    ack = a.submit(buy("NVDA", "1000", account="DEMO-CASH-1"), coid())
    assert bp < 1000 * ask
    assert ack.status is OrderStatus.REJECTED and "insufficient buying power" in ack.reason
    assert a.lookup(ack.client_order_id).status is OrderStatus.REJECTED
    assert a.fills().empty


def test_unknown_and_untradable_symbols_are_rejected_with_the_reason(connect):
    a = connect()
    unknown = a.submit(buy("NOPE", "1"), coid())
    assert unknown.status is OrderStatus.REJECTED and "'NOPE'" in unknown.reason
    halted = a.submit(buy("ZVZZT", "1"), coid())
    assert halted.status is OrderStatus.REJECTED and "not tradable" in halted.reason


def test_resting_order_can_be_canceled(connect, sandbox):
    a = connect()
    low = (sandbox.market.quote("AAPL").bid / 2).quantize(Decimal("0.01"))
    ack = a.submit(buy("AAPL", "1", order_type="limit", limit_price=low, time_in_force="gtc"),
                   coid())
    assert ack.status is OrderStatus.ACCEPTED
    assert a.cancel(ack.order_id).status is OrderStatus.CANCELED
    sandbox.market.clock.advance(3600)
    assert a.lookup(ack.client_order_id).status is OrderStatus.CANCELED


def test_drop_after_accept_raises_submit_uncertain_and_lookup_finds_the_order(connect,
                                                                               sandbox):
    a = connect()
    sandbox.broker("paper").faults.set("submit", drop_after_accept=1)
    cid = coid()
    with pytest.raises(SubmitUncertain) as info:
        a.submit(buy("AAPL", "3"), cid)
    assert info.value.client_order_id == cid
    found = a.lookup(cid)
    assert found is not None and found.status is OrderStatus.FILLED
    with pytest.raises(AdapterError, match="already used"):
        a.submit(buy("AAPL", "3"), cid)  # a blind retry is refused, never doubled
    assert (a.orders()["client_order_id"] == cid).sum() == 1
    assert a.submit(buy("AAPL", "1"), coid()).status is OrderStatus.FILLED  # one drop only


def test_submit_timeout_on_the_server_is_uncertain_and_nothing_was_placed(connect, sandbox):
    a = connect()
    sandbox.broker("paper").faults.set("submit", timeout=True, timeout_s=0.01)
    cid = coid()
    with pytest.raises(SubmitUncertain, match="504"):
        a.submit(buy("AAPL", "1"), cid)
    assert a.lookup(cid) is None


def test_submit_without_an_answer_in_time_is_uncertain_and_nothing_was_placed(connect,
                                                                               sandbox):
    a = connect(timeout=0.3)
    sandbox.broker("paper").faults.set("submit", timeout=True, timeout_s=5)
    cid = coid()
    t0 = time.perf_counter()
    with pytest.raises(SubmitUncertain, match=r"no answer within 0\.3 s"):
        a.submit(buy("AAPL", "1"), cid)
    assert time.perf_counter() - t0 < 2
    sandbox.broker("paper").faults.clear("submit")
    assert a.lookup(cid) is None


def test_a_5xx_on_submit_is_uncertain(connect, sandbox):
    a = connect()
    sandbox.broker("paper").faults.set("submit", error_next=1, error_status=502)
    cid = coid()
    with pytest.raises(SubmitUncertain, match="status 502"):
        a.submit(buy("AAPL", "1"), cid)
    assert a.lookup(cid) is None


def test_submit_to_an_account_of_another_connection_is_refused(connect):
    a = connect("paper-us")
    with pytest.raises(AdapterError, match="'DEMO-GLOBAL-1' is not on connection paper-us"):
        a.submit(buy("AAPL", "1", account="DEMO-GLOBAL-1"), coid())


def test_connect_to_a_server_that_is_not_there_raises_connection_down(connect, sandbox):
    port = sandbox.servers["paper"]["port"]
    sandbox.stop_servers()  # nothing listens on the port any more
    a = connect("broken", url=f"http://127.0.0.1:{port}", connect=False)
    with pytest.raises(ConnectionDown, match="connect failed"):
        a.connect()
    with pytest.raises(ConnectionDown, match="not connected"):
        a.balances()


def test_an_injected_connect_error_raises_connection_down(connect, sandbox):
    sandbox.broker("paper").faults.set("connect", error_next=1, error_status=503)
    a = connect(connect=False)
    with pytest.raises(ConnectionDown, match=r"connect failed.*status 503"):
        a.connect()
    a.connect()  # one error only
    assert len(a.balances())


def test_a_configured_account_the_broker_lacks_fails_the_connect(connect):
    with pytest.raises(ConnectionDown, match="no account 'NOPE-1'"):
        connect(accounts=("DEMO-MARGIN-1", "NOPE-1"))


def test_injected_latency_delays_every_call(connect, sandbox):
    a = connect()
    sandbox.broker("paper").faults.set("*", latency_ms=150)
    t0 = time.perf_counter()
    a.balances()
    assert time.perf_counter() - t0 >= 0.15


def test_faults_set_on_the_broker_reach_the_adapter(connect, sandbox):
    a = connect()
    sandbox.broker("paper").faults.set("positions", error_next=1, error_status=503)
    with pytest.raises(AdapterError, match="status 503"):
        a.positions()
    frames.validate(frames.POSITIONS, a.positions())


def test_faults_of_one_broker_leave_another_broker_on_the_same_server_alone(connect, sandbox):
    sandbox.broker("paper").faults.set("*", error_rate=1.0)
    other = connect(broker="t-other")
    frames.validate(frames.BALANCES, other.balances())


@pytest.mark.parametrize(("options", "key"), [
    ({"broker": 5}, "options.broker"),
    ({"url": "127.0.0.1:8000"}, "options.url"),
    ({"url": None}, "options.url"),
    ({"timeout": 0}, "options.timeout"),
    ({"seed": 0}, "options.seed"),  # faults and seeds live on the server now
    ({"faults": {"submit": {"timeout": True}}}, "options.faults"),
    ({"colour": "red"}, "options.colour"),
])
def test_bad_options_are_named(connect, options, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        connect("x", connect=False, **options)


def test_a_connection_without_url_is_a_config_error():
    cfg = ConnectionConfig(name="x", type="paper", options={"broker": "paper"})
    with pytest.raises(ConfigError, match=r"connections\.x\.options\.url"):
        PaperAdapter(cfg)


def test_a_connection_without_accounts_shows_every_account_of_the_broker(connect, sandbox):
    everything = connect("mine", accounts=()).accounts
    assert everything == sandbox.broker("paper").accounts
    assert {"DEMO-MARGIN-1", "DEMO-GLOBAL-1"} <= set(everything)
    assert set(connect("paper-us").accounts) == {"DEMO-MARGIN-1", "DEMO-CASH-1"}


def test_open_orders_lists_every_page(connect, sandbox):
    a = connect()
    a.page_size = 2  # the server's pages are what is walked, however small
    low = (sandbox.market.quote("AAPL").bid / 2).quantize(Decimal("0.01"))
    resting = []
    for _ in range(5):
        resting.append(a.submit(buy("AAPL", "1", order_type="limit", limit_price=low,
                                    time_in_force="gtc"), coid()).order_id)
        a.submit(buy("MSFT", "1"), coid())  # filled: closed orders between the open ones
    assert list(a.open_orders()["order_id"]) == resting
    everything = a.orders()
    assert len(everything) == 10 and everything["order_id"].is_unique
    frames.validate(frames.ORDERS, a.open_orders())


def test_open_orders_include_those_placed_by_another_connection(connect):
    mine, other = connect("one"), connect("two")
    ack = other.submit(buy("AAPL", "1", order_type="limit", limit_price="1.00",
                           time_in_force="gtc"), coid())
    assert list(mine.open_orders()["order_id"]) == [ack.order_id]
    canceled = mine.cancel_all()
    assert [(c.order_id, c.status) for c in canceled] == [(ack.order_id, OrderStatus.CANCELED)]
    assert mine.open_orders().empty


def test_account_types_and_market_hours_come_from_the_server(connect):
    a = connect()
    assert a.account_types() == {"DEMO-MARGIN-1": "margin", "DEMO-CASH-1": "cash"}
    assert a.market_open("AAPL") is True  # the sandbox is always open by default
    with pytest.raises(AdapterError, match="'NOPE'"):
        a.market_open("NOPE")


def test_the_adapter_never_imports_the_sandbox():
    code = ("import sys, brokerkit.adapters.paper\n"
            "print([m for m in sys.modules if m.startswith('brokerkit.sandbox')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_state_is_shared_by_connections_to_one_broker(connect):
    first, second = connect("one"), connect("two")
    ack = first.submit(buy("AMZN", "2"), coid())
    assert second.lookup(ack.client_order_id).order_id == ack.order_id


def test_balances_span_several_currencies_with_positive_buying_power(connect):
    bal = connect("paper-global").balances()
    assert {"EUR", "GBP", "JPY", "USD"} <= set(bal["currency"])
    assert bal["buying_power"].sum() > 0
    eur = bal[(bal["account"] == "DEMO-GLOBAL-1") & (bal["currency"] == "EUR")]
    assert eur["margin_init"].iloc[0] == pytest.approx(2 * eur["margin_maint"].iloc[0])
