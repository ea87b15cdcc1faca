"""The TWS-protocol sandbox gateway driven by the real ib_async SDK over loopback sockets, at
server versions 157 and 178: startup sync, account values and ledger, positions across asset
classes, qualification, whatIf, fills, cancels, rejects, snapshots, faults."""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from ib_async import IB, Forex, Future, LimitOrder, MarketOrder, Option, Stock

from brokerkit.sandbox import Clock, Sandbox
from brokerkit.sandbox.tws import ACCOUNT, TwsGateway, start_tws

_client_ids = itertools.count(1)
_FROZEN = datetime(2025, 6, 2, 14, 30, tzinfo=UTC)
_ERROR = re.compile(r"^(?:Error|Warning) (-?\d+), reqId")


@pytest.fixture(params=[157, 178], ids=["v157", "v178"])
async def gateway(request: pytest.FixtureRequest) -> AsyncIterator[TwsGateway]:
    sandbox = Sandbox(seed=7, clock=Clock(_FROZEN))
    gw = await start_tws(sandbox, server_version=request.param)
    yield gw
    await gw.close()


@pytest.fixture
def caplog_ib(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="ib_async")
    return caplog


async def connect(gw: TwsGateway, client_id: int | None = None, **kw: object) -> IB:
    ib = IB()
    await ib.connectAsync(gw.host, gw.port, clientId=client_id or next(_client_ids),
                          timeout=3, **kw)  # type: ignore[arg-type]
    return ib


@pytest.fixture
async def ib(gateway: TwsGateway) -> AsyncIterator[IB]:
    client = await connect(gateway)
    yield client
    client.disconnect()


def ib_errors(caplog: pytest.LogCaptureFixture, allowed: set[int] = frozenset(),
              allowed_text: tuple[str, ...] = ()) -> list[str]:
    """ib_async ERROR records that are not expected error codes (decoder failures, parse
    errors, timeouts, orphan orderStatus ...)."""
    bad = []
    for r in caplog.records:
        if not r.name.startswith("ib_async"):
            continue
        msg = r.getMessage()
        if "Error handling fields" in msg or r.exc_info:
            bad.append(msg)
            continue
        if r.levelno < logging.ERROR:
            continue
        code = _ERROR.match(msg)
        if code and int(code.group(1)) in allowed:
            continue
        if any(t in msg for t in allowed_text):
            continue
        bad.append(msg)
    return bad


def assert_clean(caplog: pytest.LogCaptureFixture, allowed: set[int] = frozenset(),
                 allowed_text: tuple[str, ...] = ()) -> None:
    bad = ib_errors(caplog, allowed, allowed_text)
    assert not bad, bad


# -- connect and startup --------------------------------------------------------------------


async def test_connect_and_startup_sync(gateway: TwsGateway, caplog_ib) -> None:
    ib = await connect(gateway)
    try:
        assert ib.client.serverVersion() == gateway.server_version
        assert ib.managedAccounts() == [ACCOUNT]
        assert ib.accountValues(ACCOUNT)
        assert ib.portfolio(ACCOUNT)
        assert ib.positions(ACCOUNT)
        log = gateway.recorder.sessions[-1]
        for msg in ("62", "53", "102", "54", "74", "55"):
            assert msg in log.ids("out")
        assert "Synchronization complete" in caplog_ib.text
        assert await ib.reqCurrentTimeAsync() == _FROZEN
    finally:
        ib.disconnect()
    assert_clean(caplog_ib)


# -- account --------------------------------------------------------------------------------


async def test_account_summary_and_ledger(gateway: TwsGateway, ib: IB, caplog_ib) -> None:
    rows = await ib.accountSummaryAsync(ACCOUNT)
    by = {(r.tag, r.currency): r.value for r in rows}
    nlv = float(by[("NetLiquidation", "USD")])
    assert nlv > 0
    assert by[("AccountType", "")] == "INDIVIDUAL"
    for tag in ("BuyingPower", "InitMarginReq", "MaintMarginReq", "ExcessLiquidity",
                "AvailableFunds", "LookAheadInitMarginReq"):
        assert float(by[(tag, "USD")]) > 0, tag
    assert 0 < float(by[("Cushion", "")]) < 1
    # $LEDGER:ALL: one row per tag and currency, plus BASE
    for ccy in ("USD", "EUR", "GBP", "JPY", "BASE"):
        assert ("CashBalance", ccy) in by
        assert ("ExchangeRate", ccy) in by
        assert ("NetLiquidationByCurrency", ccy) in by
    assert float(by[("ExchangeRate", "USD")]) == 1.0
    assert float(by[("ExchangeRate", "BASE")]) == 1.0
    assert float(by[("CashBalance", "EUR")]) == 65_000.0
    cash_base = sum(float(by[("CashBalance", c)]) * float(by[("ExchangeRate", c)])
                    for c in ("USD", "EUR", "GBP", "JPY"))
    assert cash_base == pytest.approx(float(by[("CashBalance", "BASE")]), abs=0.05)
    assert float(by[("NetLiquidationByCurrency", "BASE")]) == pytest.approx(nlv, abs=0.01)
    # the same numbers come through reqAccountUpdates
    values = {(v.tag, v.currency): v.value for v in ib.accountValues(ACCOUNT)}
    assert values[("NetLiquidation", "USD")] == by[("NetLiquidation", "USD")]
    assert values[("CashBalance", "GBP")] == by[("CashBalance", "GBP")]
    assert values[("InitMarginReq", "USD")] == by[("InitMarginReq", "USD")]
    assert_clean(caplog_ib)


async def test_positions_and_portfolio_across_asset_classes(ib: IB, caplog_ib) -> None:
    positions = {(p.contract.secType, p.contract.symbol, p.contract.currency): p
                 for p in ib.positions(ACCOUNT)}
    assert positions[("STK", "AAPL", "USD")].position == 200
    assert positions[("STK", "SAP", "EUR")].position == 60
    assert positions[("STK", "VOD", "GBP")].position == 8000
    assert positions[("STK", "7203", "JPY")].position == 300
    opt = positions[("OPT", "AAPL", "USD")]
    assert opt.position == 5 and opt.avgCost == pytest.approx(2140.0)
    assert opt.contract.right == "C" and opt.contract.strike == 230
    fut = positions[("FUT", "ES", "USD")]
    assert fut.contract.localSymbol == "ESZ6" and fut.contract.multiplier == "50"
    assert fut.avgCost == pytest.approx(5940.0 * 50)
    fx = positions[("CASH", "EUR", "USD")]
    assert fx.position == 50_000 and fx.contract.localSymbol == "EUR.USD"
    items = {(i.contract.secType, i.contract.symbol): i for i in ib.portfolio(ACCOUNT)}
    assert len(items) == 7
    for item in items.values():
        mult = float(item.contract.multiplier or 1)
        assert item.marketValue == pytest.approx(item.position * item.marketPrice * mult)
        assert item.unrealizedPNL == pytest.approx(
            item.marketValue - item.position * item.averageCost, abs=0.01)
    assert items[("STK", "SAP")].contract.primaryExchange == "IBIS"
    assert_clean(caplog_ib)


# -- contracts and market data ------------------------------------------------------------


async def test_qualify_each_contract_type(ib: IB, caplog_ib) -> None:
    contracts = [Stock("AAPL", "SMART", "USD"), Stock("SAP", "IBIS", "EUR"),
                 Stock("VOD", "LSE", "GBP"), Stock("7203", "TSEJ", "JPY"),
                 Stock("SHOP", "TSE", "CAD"), Stock("SAP", "SMART", "EUR"),
                 Option("AAPL", "20261218", 230, "C", "SMART"), Future("ES", "202612", "CME"),
                 Forex("EURUSD")]
    qualified = await ib.qualifyContractsAsync(*contracts)
    assert all(q is not None for q in qualified), qualified
    for c in contracts:
        assert c.conId > 0
    assert contracts[0].conId == 265598 and contracts[0].primaryExchange == "NASDAQ"
    assert contracts[6].localSymbol == "AAPL  261218C00230000"
    assert contracts[6].multiplier == "100"
    assert contracts[7].localSymbol == "ESZ6" and contracts[7].multiplier == "50"
    assert contracts[8].conId == 12087792 and contracts[8].localSymbol == "EUR.USD"
    # stable conIds: the same in another qualification
    again = Stock("SAP", "IBIS", "EUR")
    await ib.qualifyContractsAsync(again)
    assert again.conId == contracts[1].conId
    details = await ib.reqContractDetailsAsync(Future("ES", "202612", "CME"))
    assert len(details) == 1 and details[0].contractMonth == "202612"
    assert details[0].minTick == 0.25
    unknown = await ib.qualifyContractsAsync(Stock("NOPE", "SMART", "USD"))
    assert unknown == [None]
    assert_clean(caplog_ib, allowed={200})
    assert "Error 200" in caplog_ib.text


async def test_snapshot_quotes(gateway: TwsGateway, ib: IB, caplog_ib) -> None:
    aapl, eur = Stock("AAPL", "SMART", "USD"), Forex("EURUSD")
    await ib.qualifyContractsAsync(aapl, eur)
    tickers = await ib.reqTickersAsync(aapl, eur)
    quote = gateway.state.market.quote("AAPL")
    t = tickers[0]
    assert t.bid == float(quote.bid) and t.ask == float(quote.ask)
    assert t.last == float(quote.last) and t.bidSize > 0 and t.close > 0
    assert tickers[1].bid < tickers[1].ask
    assert_clean(caplog_ib)


# -- orders ---------------------------------------------------------------------------------


async def test_what_if_margin(gateway: TwsGateway, ib: IB, caplog_ib) -> None:
    aapl = Stock("AAPL", "SMART", "USD")
    await ib.qualifyContractsAsync(aapl)
    state = await ib.whatIfOrderAsync(aapl, MarketOrder("BUY", 100))
    n = state.numeric()
    values = {v.tag: v.value for v in ib.accountValues(ACCOUNT) if v.currency == "USD"}
    assert n.initMarginBefore == pytest.approx(float(values["InitMarginReq"]), abs=0.01)
    assert n.maintMarginBefore == pytest.approx(float(values["MaintMarginReq"]), abs=0.01)
    assert n.equityWithLoanBefore == pytest.approx(float(values["EquityWithLoanValue"]),
                                                   abs=0.01)
    last = float(gateway.state.market.quote("AAPL").last)
    # Reg T 50% initial, FINRA 4210(c) 25% maintenance of a long stock position
    assert n.initMarginChange == pytest.approx(100 * last * 0.50, abs=0.01)
    assert n.maintMarginChange == pytest.approx(100 * last * 0.25, abs=0.01)
    assert n.initMarginAfter == pytest.approx(n.initMarginBefore + n.initMarginChange,
                                              abs=0.02)
    assert n.maintMarginAfter == pytest.approx(n.maintMarginBefore + n.maintMarginChange,
                                               abs=0.02)
    assert n.commission == 1.0 and state.commissionCurrency == "USD"
    assert ib.openTrades() == []  # nothing was placed
    assert_clean(caplog_ib)


async def test_market_order_fills_with_commission(gateway: TwsGateway, ib: IB,
                                                  caplog_ib) -> None:
    aapl = Stock("AAPL", "SMART", "USD")
    await ib.qualifyContractsAsync(aapl)
    before = {p.contract.conId: p.position for p in ib.positions(ACCOUNT)}[aapl.conId]
    order = MarketOrder("BUY", 10)
    order.orderRef = "bk-ref-1"
    trade = ib.placeOrder(aapl, order)
    reports = []
    trade.commissionReportEvent += lambda t, f, r: reports.append(r)
    await asyncio.wait_for(trade.filledEvent, 2)
    assert trade.orderStatus.status == "Filled"
    assert trade.order.permId >= 1_000_000
    assert trade.orderStatus.filled == 10
    ask = float(gateway.state.market.quote("AAPL").ask)
    assert trade.orderStatus.avgFillPrice == ask
    [fill] = trade.fills
    assert fill.execution.side == "BOT" and fill.execution.orderRef == "bk-ref-1"
    assert fill.commissionReport.commission == 1.0
    assert fill.commissionReport.currency == "USD"
    assert reports and reports[0].execId == fill.execution.execId
    await asyncio.sleep(0.05)
    after = {p.contract.conId: p.position for p in ib.positions(ACCOUNT)}[aapl.conId]
    assert after == before + 10
    [item] = [i for i in ib.portfolio(ACCOUNT) if i.contract.conId == aapl.conId]
    assert item.position == before + 10
    fills = await ib.reqExecutionsAsync()
    assert [f.execution.execId for f in fills].count(fill.execution.execId) == 1
    assert_clean(caplog_ib)


async def test_fx_and_foreign_stock_fill(ib: IB, caplog_ib) -> None:
    eur, sap = Forex("EURUSD"), Stock("SAP", "SMART", "EUR")
    await ib.qualifyContractsAsync(eur, sap)
    t1 = ib.placeOrder(eur, MarketOrder("BUY", 20_000))
    t2 = ib.placeOrder(sap, MarketOrder("SELL", 10))
    await asyncio.wait_for(asyncio.gather(t1.filledEvent, t2.filledEvent), 2)
    await asyncio.sleep(0.05)
    pos = {(p.contract.secType, p.contract.symbol): p.position for p in ib.positions(ACCOUNT)}
    assert pos[("CASH", "EUR")] == 70_000
    assert pos[("STK", "SAP")] == 50
    assert t2.fills[0].commissionReport.currency == "EUR"
    assert_clean(caplog_ib)


async def test_resting_limit_then_cancel(ib: IB, caplog_ib) -> None:
    aapl = Stock("AAPL", "SMART", "USD")
    await ib.qualifyContractsAsync(aapl)
    trade = ib.placeOrder(aapl, LimitOrder("BUY", 5, 100.0))
    await asyncio.sleep(0.1)
    assert trade.orderStatus.status == "Submitted"
    assert trade.orderStatus.remaining == 5
    assert trade in ib.openTrades()
    open_orders = await ib.reqAllOpenOrdersAsync()
    assert [t.order.permId for t in open_orders] == [trade.order.permId]
    ib.cancelOrder(trade.order)
    await asyncio.wait_for(trade.cancelledEvent, 2)
    assert trade.orderStatus.status == "Cancelled"
    assert ib.openTrades() == []
    assert_clean(caplog_ib, allowed={202})


async def test_reject_201(ib: IB, caplog_ib) -> None:
    aapl = Stock("AAPL", "SMART", "USD")
    await ib.qualifyContractsAsync(aapl)
    errors: list[int] = []
    ib.errorEvent += lambda req_id, code, text, contract: errors.append(code)
    big = MarketOrder("BUY", 1_000_000)  # insufficient funds
    big.orderRef = "too-big"
    huge = ib.placeOrder(aapl, big)
    await asyncio.wait_for(huge.cancelledEvent, 2)
    assert huge.orderStatus.status == "Cancelled"
    assert "EQUITY WITH LOAN" in huge.log[-1].message
    bad_tick = ib.placeOrder(aapl, LimitOrder("BUY", 1, 100.003))
    await asyncio.wait_for(bad_tick.cancelledEvent, 2)
    assert "tick" in bad_tick.log[-1].message
    assert errors == [201, 201]
    # rejected orders do not rest and show as completed, once
    assert ib.openTrades() == []
    completed = await ib.reqCompletedOrdersAsync(False)
    refs = [t.order.orderRef for t in completed]
    assert refs.count("too-big") == 1
    assert_clean(caplog_ib, allowed={201})


async def test_global_cancel(ib: IB, caplog_ib) -> None:
    aapl = Stock("AAPL", "SMART", "USD")
    await ib.qualifyContractsAsync(aapl)
    trades = [ib.placeOrder(aapl, LimitOrder("BUY", 1, 100.0 + i)) for i in range(3)]
    await asyncio.sleep(0.1)
    ib.reqGlobalCancel()
    await asyncio.wait_for(asyncio.gather(*(t.cancelledEvent for t in trades)), 2)
    assert all(t.orderStatus.status == "Cancelled" for t in trades)
    assert_clean(caplog_ib, allowed={202})


# -- errors and faults ----------------------------------------------------------------------


async def test_connectivity_lost_and_restored(gateway: TwsGateway, ib: IB, caplog_ib) -> None:
    await ib.accountSummaryAsync(ACCOUNT)
    codes: list[int] = []
    ib.errorEvent += lambda req_id, code, text, contract: codes.append(code)
    summaries_before = gateway.recorder.sessions[-1].ids("in").count("62")
    gateway.faults.connectivity_lost()
    await asyncio.sleep(0.05)
    assert codes == [1100]
    assert ib.isConnected()
    gateway.faults.connectivity_restored()
    await asyncio.sleep(0.1)
    assert codes == [1100, 1102]
    # ib_async asks for the account summary again after 1102
    assert gateway.recorder.sessions[-1].ids("in").count("62") == summaries_before + 1
    assert_clean(caplog_ib, allowed={1100, 1102})


async def test_duplicate_client_id(gateway: TwsGateway, caplog_ib) -> None:
    first = await connect(gateway, client_id=77)
    try:
        second = IB()
        with pytest.raises((TimeoutError, ConnectionError)):
            await second.connectAsync(gateway.host, gateway.port, clientId=77, timeout=1)
        assert not second.isConnected()
        assert "Error 326" in caplog_ib.text
        assert first.isConnected()
        assert await first.reqCurrentTimeAsync() == _FROZEN
    finally:
        first.disconnect()
    assert_clean(caplog_ib, allowed={326}, allowed_text=("Peer closed connection",
                                                         "API connection failed"))


async def test_pacing_violation(gateway: TwsGateway, ib: IB, caplog_ib) -> None:
    gateway.faults.pacing_limit = 5
    codes: list[int] = []
    ib.errorEvent += lambda req_id, code, text, contract: codes.append(code)
    for _ in range(10):
        ib.client.reqCurrentTime()
    await asyncio.sleep(0.1)
    assert codes == [100]
    assert_clean(caplog_ib, allowed={100})


async def test_drop_mid_order_then_reconnect(gateway: TwsGateway, caplog_ib) -> None:
    ib = await connect(gateway, client_id=42)
    aapl = Stock("AAPL", "SMART", "USD")
    await ib.qualifyContractsAsync(aapl)
    gateway.faults.drop_next_order()
    order = MarketOrder("BUY", 7)
    order.orderRef = "drop-1"
    ib.placeOrder(aapl, order)
    for _ in range(50):
        if not ib.isConnected():
            break
        await asyncio.sleep(0.02)
    assert not ib.isConnected()
    # the gateway booked and filled it anyway
    [booked] = [o for o in gateway.state.orders.values() if o.order_ref == "drop-1"]
    assert booked.status == "Filled"

    ib2 = await connect(gateway, client_id=42)
    try:
        trades = [t for t in ib2.trades() if t.order.orderRef == "drop-1"]
        assert len(trades) == 1
        [trade] = trades
        assert trade.order.permId == booked.perm_id
        assert trade.orderStatus.status == "Filled"
        fills = [f for f in ib2.fills() if f.execution.orderRef == "drop-1"]
        assert len(fills) == 1 and fills[0].execution.shares == 7
        assert fills[0].commissionReport.commission > 0
        assert ib2.openTrades() == []
        completed = await ib2.reqCompletedOrdersAsync(False)
        assert [t.order.orderRef for t in completed].count("drop-1") == 1
        executions = await ib2.reqExecutionsAsync()
        assert [f.execution.orderRef for f in executions].count("drop-1") == 1
        # a new order id does not collide with the dropped one
        trade2 = ib2.placeOrder(aapl, MarketOrder("SELL", 7))
        await asyncio.wait_for(trade2.filledEvent, 2)
        assert trade2.order.orderId > booked.order_id
    finally:
        ib2.disconnect()
    assert_clean(caplog_ib, allowed_text=("Peer closed connection",))


async def test_accept_late_places_the_order_after_the_client_gave_up(gateway: TwsGateway,
                                                                    caplog_ib) -> None:
    gateway.faults.accept_next_order_late(delay_s=0.3)
    ib = await connect(gateway, client_id=43)
    aapl = Stock("AAPL", "SMART", "USD")
    await ib.qualifyContractsAsync(aapl)
    order = LimitOrder("BUY", 2, 100.0)
    order.orderRef = "late-1"
    trade = ib.placeOrder(aapl, order)
    await asyncio.sleep(0.05)
    assert trade.orderStatus.status == "PendingSubmit"  # no answer yet
    ib.disconnect()  # the client gives up

    again = await connect(gateway, client_id=43)  # at once: the broker has no such order
    try:
        assert [t for t in again.trades() if t.order.orderRef == "late-1"] == []
        assert not [o for o in gateway.state.orders.values() if o.order_ref == "late-1"]
        assert again.client.getReqId() > order.orderId  # its order id is taken
    finally:
        again.disconnect()
    await asyncio.sleep(0.3)

    later = await connect(gateway, client_id=43)
    try:
        [found] = [t for t in later.openTrades() if t.order.orderRef == "late-1"]
        assert found.order.orderId == order.orderId and found.orderStatus.remaining == 2
        assert found.orderStatus.status == "Submitted"
    finally:
        later.disconnect()
    assert_clean(caplog_ib, allowed_text=("Peer closed connection",))


async def test_accept_late_answers_a_session_that_is_still_connected(gateway: TwsGateway,
                                                                    ib: IB, caplog_ib) -> None:
    gateway.faults.accept_next_order_late(delay_s=0.2)
    aapl = Stock("AAPL", "SMART", "USD")
    await ib.qualifyContractsAsync(aapl)
    loop = asyncio.get_running_loop()
    start = loop.time()
    trade = ib.placeOrder(aapl, MarketOrder("BUY", 3))
    assert await ib.reqCurrentTimeAsync() == _FROZEN  # the session reads on meanwhile
    assert trade.orderStatus.status == "PendingSubmit"
    await asyncio.wait_for(trade.filledEvent, 2)
    assert loop.time() - start >= 0.2 and trade.orderStatus.filled == 3
    assert_clean(caplog_ib)


async def test_an_order_held_when_the_gateway_closes_is_never_placed(caplog_ib) -> None:
    sandbox = Sandbox(seed=12, clock=Clock(_FROZEN))
    gw = await start_tws(sandbox)
    ib = await connect(gw)
    aapl = Stock("AAPL", "SMART", "USD")
    await ib.qualifyContractsAsync(aapl)
    gw.faults.accept_next_order_late(delay_s=0.2)
    ib.placeOrder(aapl, MarketOrder("BUY", 1))
    await asyncio.sleep(0.05)
    ib.disconnect()
    await gw.close()
    await asyncio.sleep(0.25)
    assert gw.state.orders == {} and gw.state.executions == []


async def test_latency_fault(gateway: TwsGateway, ib: IB, caplog_ib) -> None:
    gateway.faults.latency_ms = 80
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await ib.reqCurrentTimeAsync() == _FROZEN
    assert loop.time() - start >= 0.075
    gateway.faults.clear()
    assert gateway.faults.latency_ms == 0
    assert_clean(caplog_ib)


async def test_registered_in_sandbox_servers_with_control_faults(caplog_ib) -> None:
    import aiohttp

    sandbox = Sandbox(seed=11, clock=Clock(_FROZEN))
    servers = await sandbox.start_servers_async()
    try:
        info = servers["tws"]
        assert info["accounts"] == [ACCOUNT] and info["port"] > 0
        ib = IB()
        await ib.connectAsync(info["host"], info["port"], clientId=5, timeout=3)
        assert ib.managedAccounts() == [ACCOUNT]
        aapl = Stock("AAPL", "SMART", "USD")
        await ib.qualifyContractsAsync(aapl)
        fault = {"broker": "ibkr", "endpoint": "submit", "drop_after_accept": 1}
        async with aiohttp.ClientSession(servers["control"]["url"]) as http, \
                http.post("/v1/faults", json=fault) as resp:
            assert resp.status == 200
        ib.placeOrder(aapl, MarketOrder("BUY", 1))
        for _ in range(50):
            if not ib.isConnected():
                break
            await asyncio.sleep(0.02)
        assert not ib.isConnected()
        assert [o.status for o in sandbox._servers["tws"].state.orders.values()] == ["Filled"]
    finally:
        await sandbox.stop_servers_async()
    assert_clean(caplog_ib, allowed_text=("Peer closed connection",))


async def test_modify_then_fill_when_marketable(gateway: TwsGateway, ib: IB, caplog_ib) -> None:
    aapl = Stock("AAPL", "SMART", "USD")
    await ib.qualifyContractsAsync(aapl)
    order = LimitOrder("BUY", 3, 100.0)
    trade = ib.placeOrder(aapl, order)
    await asyncio.sleep(0.05)
    assert trade.orderStatus.status == "Submitted"
    order.lmtPrice = float(gateway.state.market.quote("AAPL").ask) + 1  # now marketable
    ib.placeOrder(aapl, order)
    await asyncio.wait_for(trade.filledEvent, 2)
    assert trade.orderStatus.filled == 3
    assert len({f.execution.permId for f in trade.fills}) == 1
    assert_clean(caplog_ib)
