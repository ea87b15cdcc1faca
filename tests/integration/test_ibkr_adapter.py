"""IBKRAdapter (ib_async) against the sandbox TWS gateway over loopback: the adapter contract,
frames and analytics on a multi-currency account (stocks in three currencies, an option, a
future, an FX position), client ids, reconnects that lose no fill, and the pipeline."""

from __future__ import annotations

import math
import time
import uuid

import pytest
from contract import AdapterContract

from brokerkit import frames, runtime
from brokerkit.adapters.ibkr import IBKRAdapter, contract_for, instrument_of
from brokerkit.config import ConnectionConfig
from brokerkit.errors import AdapterError, ConfigError, ConnectionDown, SubmitUncertain
from brokerkit.model import AssetClass, OrderIntent, OrderStatus
from brokerkit.sandbox.tws import start_tws


@pytest.fixture
def gateway(fresh_sandbox):
    srv = runtime.run(start_tws(fresh_sandbox))
    yield srv
    runtime.run(srv.close())


@pytest.fixture
def connect(gateway, adapters):
    def _connect(name: str = "ibkr", *, connect: bool = True, **options) -> IBKRAdapter:
        options.setdefault("port", gateway.info["port"])
        options.setdefault("timeout", 2)
        return adapters(IBKRAdapter(ConnectionConfig(name, "ibkr", options=options)),
                        connect=connect)

    return _connect


def _coid() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def _wait(predicate, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if runtime.run(_check(predicate)):
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


async def _check(predicate) -> bool:
    return bool(predicate())


class TestIBKRContract(AdapterContract):
    @pytest.fixture
    def adapter(self, connect):
        return connect()

    @pytest.fixture
    def impatient_adapter(self, connect):
        return connect(timeout=1)

    @pytest.fixture
    def broker_faults(self, gateway):
        return gateway.state.paper.faults


# -- contracts -----------------------------------------------------------------------------


@pytest.mark.parametrize(("symbol", "sec", "expect"), [
    ("AAPL", "STK", ("AAPL", "SMART", "USD")),
    ("STK:VOD@LSE", "STK", ("VOD", "LSE", "GBP")),
    ("STK:SAP@XETRA", "STK", ("SAP", "IBIS", "EUR")),
    ("STK:7203@TSE", "STK", ("7203", "TSEJ", "JPY")),
    ("EUR.USD", "CASH", ("EUR", "IDEALPRO", "USD")),
    ("AAPL261218C00230000", "OPT", ("AAPL", "SMART", "USD")),
])
def test_symbols_and_keys_map_to_ib_contracts(symbol, sec, expect):
    c = contract_for(symbol)
    assert (c.secType, (c.symbol, c.exchange, c.currency)) == (sec, expect)


def test_future_symbols_map_to_a_local_symbol():
    c = contract_for("FUT:ESZ6")
    assert (c.secType, c.localSymbol) == ("FUT", "ESZ6")


def test_qualified_contracts_round_trip_to_canonical_keys(connect):
    a = connect()
    keys = ["STK:AAPL", "STK:VOD@LSE", "STK:SAP@XETRA", "STK:7203@TSE", "STK:0700@SEHK",
            "CASH:EUR.USD", "OPT:AAPL  261218C00230000", "FUT:ESZ6"]
    df = a.instruments(keys)
    assert list(df["instrument"]) == keys
    by = df.set_index("instrument")
    assert by.loc["OPT:AAPL  261218C00230000", "multiplier"] == 100
    assert by.loc["FUT:ESZ6", "multiplier"] == 50
    assert (by["price_increment"] > 0).all()
    assert by.loc["STK:VOD@LSE", "currency"] == "GBP"


def test_an_unknown_symbol_is_an_error_naming_it(connect):
    with pytest.raises(AdapterError, match="NOSUCH"):
        connect().instruments(["NOSUCH"])


# -- frames on the multi-currency account ------------------------------------------------------


def test_positions_cover_every_asset_class_with_contract_columns(connect):
    pos = frames.validate(frames.POSITIONS, connect().positions())
    classes = set(pos["asset_class"])
    assert {"equity", "option", "future", "fx"} <= classes
    stocks = pos[pos["asset_class"] == "equity"]
    assert len(set(stocks["currency"])) >= 3
    opt = pos[pos["asset_class"] == "option"].iloc[0]
    assert (opt["multiplier"], opt["right"], opt["strike"]) == (100.0, "C", 230.0)
    assert str(opt["expiry"].date()) == "2026-12-18"
    fut = pos[pos["asset_class"] == "future"].iloc[0]
    assert fut["multiplier"] == 50.0 and fut["exchange"] == "CME"
    # per-unit cost (IB reports cost per contract, multiplier included)
    priced = pos.dropna(subset=["market_price", "market_value"])
    mult = priced["multiplier"].where(priced["asset_class"].isin(["option", "future"]), 1.0)
    assert ((priced["quantity"] * priced["market_price"] * mult - priced["market_value"]).abs()
            <= priced["market_value"].abs() * 1e-6 + 0.01).all()
    assert (opt["avg_cost"] < opt["market_price"] * 10)


def test_balances_give_the_base_currency_totals_and_every_currency_held(connect):
    a = connect()
    bal = frames.validate(frames.BALANCES, a.balances())
    margin = a.margin_requirements().iloc[0]
    base = bal[bal["currency"] == margin["currency"]].iloc[0]
    assert base["buying_power"] == pytest.approx(margin["buying_power"])
    assert base["margin_init"] == pytest.approx(margin["initial_margin"])
    assert len(bal) >= 3
    others = bal[bal["currency"] != margin["currency"]]
    assert (others["buying_power"] == 0).all()


def test_margin_requirements_are_consistent(connect):
    m = frames.validate(frames.MARGIN, connect().margin_requirements())
    assert len(m) == 1
    r = m.iloc[0]
    assert r["initial_margin"] >= r["maintenance_margin"] > 0
    assert r["available_funds"] == pytest.approx(r["equity_with_loan"] - r["initial_margin"],
                                                 rel=1e-6, abs=0.05)
    assert r["excess_liquidity"] == pytest.approx(
        r["equity_with_loan"] - r["maintenance_margin"], rel=1e-6, abs=0.05)
    assert 0 < r["cushion"] < 1
    for col in ("look_ahead_initial_margin", "look_ahead_maintenance_margin",
                "look_ahead_available_funds", "look_ahead_excess_liquidity"):
        assert not math.isnan(r[col])


def test_what_if_shows_the_margin_impact_and_places_nothing(connect):
    a = connect()
    before = len(a.orders())
    w = frames.validate(frames.WHAT_IF, a.what_if(symbol="AAPL", side="buy", quantity=100))
    r = w.iloc[0]
    assert r["initial_margin_change"] > 0
    assert r["initial_margin_after"] == pytest.approx(
        r["initial_margin_before"] + r["initial_margin_change"], rel=1e-6, abs=0.05)
    assert r["maintenance_margin_after"] == pytest.approx(
        r["maintenance_margin_before"] + r["maintenance_margin_change"], rel=1e-6, abs=0.05)
    assert len(a.orders()) == before
    # a future's margin is far above a share's
    fut = a.what_if(symbol="ESZ6", side="buy", quantity=1).iloc[0]
    assert fut["initial_margin_change"] > r["initial_margin_change"] / 100


def test_currency_exposure_per_currency_in_base(connect):
    a = connect()
    ex = frames.validate(frames.CURRENCY_EXPOSURE, a.currency_exposure())
    assert len(set(ex["currency"])) >= 3
    bal = a.balances().set_index("currency")
    for _, row in ex.iterrows():
        if row["currency"] in bal.index:
            assert row["cash"] == pytest.approx(bal.loc[row["currency"], "cash"])
        assert row["net_exposure"] == pytest.approx(row["cash"] + row["market_value"])
        assert row["net_exposure_base"] == pytest.approx(row["net_exposure"] * row["fx_rate"])
    base = ex[ex["currency"] == ex["base_currency"]]
    assert (base["fx_rate"] == 1).all()


def test_position_summary_groups_by_class_currency_and_exchange(connect):
    a = connect()
    s = frames.validate(frames.POSITION_SUMMARY, a.position_summary())
    pos = a.positions()
    assert s["positions"].sum() == len(pos)
    assert {"equity", "option", "future", "fx"} <= set(s["asset_class"])
    assert (s["gross_value"] >= s["net_value"].abs() - 1e-9).all()


# -- trading -----------------------------------------------------------------------------------


def test_market_order_fills_with_commission_and_order_ref(connect):
    a = connect()
    coid = _coid()
    got = a.submit(OrderIntent.of(symbol="AAPL", side="buy", quantity=5), coid)
    assert got.status is OrderStatus.FILLED and got.filled_quantity == 5
    assert got.client_order_id == coid
    fills = a.fills()
    mine = fills[fills["client_order_id"] == coid]
    assert len(mine) >= 1 and mine["quantity"].sum() == 5
    assert (mine["fee"] > 0).all() and set(mine["fee_currency"]) == {"USD"}
    assert a.lookup(coid).order_id == got.order_id


def test_resting_limit_order_cancelled(connect):
    a = connect()
    price = float(a.quotes(["AAPL"]).iloc[0]["bid"]) * 0.8
    got = a.submit(OrderIntent.of(symbol="AAPL", side="buy", quantity=1, order_type="limit",
                                  limit_price=round(price, 2)), _coid())
    assert got.status is OrderStatus.ACCEPTED
    orders = a.orders()
    assert got.order_id in set(orders["order_id"])
    out = a.cancel(got.order_id)
    assert out.status is OrderStatus.CANCELED


def test_broker_refusal_comes_back_rejected_with_ibs_reason(connect):
    a = connect()
    got = a.submit(OrderIntent.of(symbol="AAPL", side="buy", quantity=10_000_000), _coid())
    assert got.status is OrderStatus.REJECTED
    assert "201" in got.reason


def test_ib_rules_are_checked_before_sending(connect):
    a = connect()
    codes = {v.code for v in a.check_intent(
        OrderIntent.of(symbol="AAPL", side="buy", quantity="1.5"), None)}
    assert "NOT_FRACTIONABLE" in codes
    codes = {v.code for v in a.check_intent(
        OrderIntent.of(symbol="AAPL", side="buy", notional=100), None)}
    assert "UNSUPPORTED_ORDER" in codes


def test_lookup_of_an_unknown_client_order_id_is_none(connect):
    assert connect().lookup(_coid()) is None


# -- client ids ---------------------------------------------------------------------------------


def test_connecting_again_takes_over_the_same_client_id(connect):
    first = connect("ibkr-x", client_id=7)
    second = connect("ibkr-x", client_id=7)  # a re-run notebook cell
    assert second.client_id == 7
    assert second.balances() is not None
    with pytest.raises(Exception):  # noqa: B017 - the first was closed
        first.balances()


def test_another_connection_with_the_same_client_id_gets_the_next_one(connect):
    a = connect("ibkr-a", client_id=11)
    b = connect("ibkr-b", client_id=11)
    assert (a.client_id, b.client_id) == (11, 12)


def test_a_client_id_held_elsewhere_is_skipped_fast(connect, gateway):
    from ib_async import IB

    other = IB()
    runtime.run(other.connectAsync("127.0.0.1", gateway.info["port"], clientId=21, timeout=2))
    try:
        t0 = time.perf_counter()
        a = connect("ibkr-c", client_id=21)
        assert a.client_id == 22
        assert time.perf_counter() - t0 < 1.5  # 326 is detected, not waited out
    finally:
        runtime.run(_disconnect(other))


async def _disconnect(ib) -> None:
    ib.disconnect()


def test_bad_options_name_the_key():
    with pytest.raises(ConfigError, match="client_id"):
        IBKRAdapter(ConnectionConfig("ib", "ibkr", options={"client_id": "one"}))
    with pytest.raises(ConfigError, match="port"):
        IBKRAdapter(ConnectionConfig("ib", "ibkr", options={"port": 0}))


# -- reconnects -------------------------------------------------------------------------------


def test_instrument_of_round_trip():
    for key in ("STK:AAPL", "STK:VOD@LSE", "CASH:EUR.USD", "OPT:AAPL  261218C00230000"):
        assert instrument_of(contract_for(key)).key in (key, "STK:AAPL")
    assert instrument_of(contract_for("STK:VOD@LSE")).asset_class is AssetClass.EQUITY


def test_a_start_up_sync_that_times_out_fails_the_connect_naming_it(connect, gateway):
    """ib_async only logs a start-up request that timed out and connects without its data:
    the adapter refuses such a connection rather than show a portfolio with holes."""
    gateway.faults.latency_ms = 200  # each request waits: the queued sync outlasts 0.5 s
    t0 = time.monotonic()
    with pytest.raises(ConnectionDown, match=r"start-up sync.*timed out"):
        connect(timeout=0.5)
    assert time.monotonic() - t0 < 10
    gateway.faults.latency_ms = 0
    pos = connect(timeout=2).positions()  # the gateway answers again: everything is there
    assert {"equity", "option", "future", "fx"} <= set(pos["asset_class"])
    assert pos["market_value"].notna().all()  # valued from the portfolio stream


def test_a_dropped_connection_reconnects_and_keeps_every_fill(connect, gateway):
    a = connect()
    coid = _coid()
    a.submit(OrderIntent.of(symbol="AAPL", side="buy", quantity=2), coid)
    fills_before = set(a.fills()["fill_id"])
    gateway.drop_connections()
    _wait(lambda: a.reconnects >= 1)
    after = a.fills()
    assert fills_before <= set(after["fill_id"])
    assert after["fill_id"].is_unique


def test_a_drop_mid_order_is_uncertain_then_found_once_after_reconnect(connect, gateway):
    a = connect()
    coid = _coid()
    gateway.faults.drop_after_order()
    with pytest.raises(SubmitUncertain):
        a.submit(OrderIntent.of(symbol="MSFT", side="buy", quantity=3), coid)
    _wait(lambda: a.reconnects >= 1)
    found = a.lookup(coid)
    assert found is not None and found.status is OrderStatus.FILLED
    fills = a.fills()
    mine = fills[fills["client_order_id"] == coid]
    assert mine["quantity"].sum() == 3  # the fill is there, once
    orders = a.orders()
    assert (orders["client_order_id"] == coid).sum() == 1


def test_order_ids_never_go_backwards_across_reconnects(connect, gateway):
    a = connect()
    first = a.submit(OrderIntent.of(symbol="AAPL", side="buy", quantity=1), _coid())
    first_id = first.raw["trade"].order.orderId
    gateway.drop_connections()
    _wait(lambda: a.reconnects >= 1)
    second = a.submit(OrderIntent.of(symbol="AAPL", side="buy", quantity=1), _coid())
    assert second.raw["trade"].order.orderId > first_id


# -- through the pipeline -------------------------------------------------------------------


@pytest.fixture
def execution(gateway, book_url):
    from brokerkit.book import Book
    from brokerkit.config import Settings
    from brokerkit.execution.service import ExecutionService
    from brokerkit.service import BrokerageService

    cfg = ConnectionConfig("ibkr", "ibkr", options={"port": gateway.info["port"],
                                                    "timeout": 2})
    settings = Settings(connections={"ibkr": cfg}, routing={"default": "ibkr"},
                        book_url=book_url)
    brokerage = BrokerageService(settings)
    svc = ExecutionService(brokerage, Book(book_url))
    yield svc
    svc.sync_fills()
    brokerage.close()


def _gateway_orders(gateway, coid: str) -> list:
    return [o for o in gateway.state.orders.values() if o.order_ref == coid] \
        if isinstance(getattr(gateway.state, "orders", None), dict) else []


def test_place_order_through_the_pipeline_fills_at_ibkr(execution):
    result = execution.place_order(symbol="AAPL261218C00230000", side="buy", quantity=1)
    assert result.status is OrderStatus.FILLED, result.reason
    assert result.connection == "ibkr" and result.account == "DU1234567"
    execution.flush()  # the acknowledgement is recorded after the answer
    row = execution.book.get_order(result.client_order_id)
    assert row["broker_order_id"] == result.order_id


def test_pipeline_rejects_ib_rule_breaks_before_sending(execution):
    adapter = execution.brokerage.adapter("ibkr") if execution.brokerage.connections else None
    result = execution.place_order(symbol="AAPL", side="buy", quantity="1.5")
    assert result.status is OrderStatus.REJECTED and "NOT_FRACTIONABLE" in result.codes
    result = execution.place_order(symbol="AAPL", side="buy", notional=500)
    assert result.status is OrderStatus.REJECTED and "UNSUPPORTED_ORDER" in result.codes
    assert adapter is None or not adapter.orders()["client_order_id"].isin(
        [result.client_order_id]).any()


def test_a_drop_mid_order_through_the_pipeline_is_recovered_without_a_duplicate(
        execution, gateway):
    gateway.faults.drop_after_order()
    result = execution.place_order(symbol="MSFT", side="buy", quantity=4)
    assert result.status is OrderStatus.FILLED, result.reason
    adapter = execution.brokerage.adapter("ibkr")
    orders = adapter.orders()
    assert (orders["client_order_id"] == result.client_order_id).sum() == 1
    fills = adapter.fills()
    assert fills.loc[fills["client_order_id"] == result.client_order_id, "quantity"].sum() == 4
    execution.flush()
    row = execution.book.get_order(result.client_order_id)
    assert row["status"] == "FILLED" and row["broker_order_id"] == result.order_id


def test_the_tickets_preview_carries_ibkrs_margin_impact(execution):
    from brokerkit.execution.ticket import OrderTicket

    ticket = OrderTicket(execution, symbol="AAPL", quantity=20)
    preview = ticket.preview()
    assert preview.ok, preview.reason
    impact = frames.validate(frames.WHAT_IF, ticket.margin_impact)
    assert impact.iloc[0]["initial_margin_change"] > 0
    ticket.quantity = 21  # an edit makes the preview and its margin impact stale
    assert ticket.margin_impact is None


def test_the_ticket_view_shows_the_margin_impact(execution):
    from brokerkit.execution.ticket import OrderTicket
    from brokerkit.ui.ticket import TicketView

    view = TicketView(OrderTicket(execution, symbol="AAPL", quantity=20))
    view.ticket.preview()
    text = view._preview_pane.object
    assert "Margin (broker what-if): initial" in text
    change = view.ticket.margin_impact.iloc[0]["initial_margin_change"]
    assert f"({change:+,.2f})" in text


def test_a_future_fills_margined_at_ibkr(connect):
    a = connect()
    cash_before = a.balances().set_index("currency").loc["USD", "cash"]
    margin_before = a.margin_requirements().iloc[0]["initial_margin"]
    got = a.submit(OrderIntent.of(symbol="ESZ6", side="buy", quantity=1), _coid())
    assert got.status is OrderStatus.FILLED, got.reason
    fee = a.fills().set_index("client_order_id").loc[got.client_order_id, "fee"]
    # the notional (~300k) is never paid: cash moves by the commission only
    assert a.balances().set_index("currency").loc["USD", "cash"] == pytest.approx(
        cash_before - fee)
    assert a.margin_requirements().iloc[0]["initial_margin"] > margin_before


def test_the_adapter_works_at_the_oldest_server_version_too(fresh_sandbox, adapters):
    gw = runtime.run(start_tws(fresh_sandbox, server_version=157))
    try:
        a = adapters(IBKRAdapter(ConnectionConfig("ibkr-157", "ibkr",
                                                  options={"port": gw.info["port"]})))
        assert a.ib.client.serverVersion() == 157
        assert {"equity", "option", "future", "fx"} <= set(a.positions()["asset_class"])
        assert a.what_if(symbol="AAPL", side="buy", quantity=10).iloc[0][
            "initial_margin_change"] > 0
        got = a.submit(OrderIntent.of(symbol="AAPL", side="buy", quantity=1), _coid())
        assert got.status is OrderStatus.FILLED
        assert got.client_order_id in set(a.fills()["client_order_id"])
        a.close()
    finally:
        runtime.run(gw.close())
