"""IBKR balances and currency exposure against the sandbox TWS gateway: settled cash per
currency, futures at their open P&L, and the futures buying-power need from IB's what-if."""

from __future__ import annotations

import pytest

from brokerkit import frames, runtime
from brokerkit.adapters.ibkr import IBKRAdapter
from brokerkit.config import ConnectionConfig
from brokerkit.sandbox.tws import start_tws


@pytest.fixture
def ibkr(fresh_sandbox, adapters) -> IBKRAdapter:
    srv = runtime.run(start_tws(fresh_sandbox))
    try:
        yield adapters(IBKRAdapter(ConnectionConfig(
            "ibkr", "ibkr", options={"port": srv.info["port"], "timeout": 2})), connect=True)
    finally:
        runtime.run(srv.close())


def _summary(a: IBKRAdapter) -> dict[tuple[str, str], float]:
    async def read() -> dict[tuple[str, str], float]:
        ib = await a._connected()
        got = await a._summary(ib)
        return {k: float(v) for k, v in next(iter(got.values())).items()
                if v not in ("", None) and k[0] not in ("AccountType",) and
                _number(v)}

    return runtime.run(read())


def _number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def test_ibkr_settled_cash_is_each_rows_own_currency(ibkr):
    """TWS's SettledCash is one account-wide figure in the base currency (TWS API account
    summary tags: "cash recognized at the time of settlement - purchases at the time of trade
    - commissions - taxes - fees"); each balances row is in its own currency and the rows add
    up, in base, to IB's figure."""
    bal = frames.validate(frames.BALANCES, ibkr.balances()).set_index("currency")
    values = _summary(ibkr)
    assert {"USD", "EUR", "GBP", "JPY"} <= set(bal.index)
    for ccy in ("EUR", "GBP", "JPY"):
        assert bal.loc[ccy, "settled_cash"] == pytest.approx(values[("CashBalance", ccy)])
    in_base = sum(bal.loc[c, "settled_cash"] * (1.0 if c == "USD" else
                                                values[("ExchangeRate", c)])
                  for c in bal.index)
    assert in_base == pytest.approx(values[("SettledCash", "USD")], abs=0.05)
    # nothing unsettled in the demo account: USD's settled cash is its own cash balance
    assert bal.loc["USD", "settled_cash"] == pytest.approx(values[("CashBalance", "USD")],
                                                           abs=0.05)


def test_ibkr_currency_exposure_sums_to_net_liquidation_with_futures_pnl(ibkr):
    """TWS's NetLiquidationByCurrency adds FuturesPNL to cash and security values (IB
    $LEDGER tags); a future is worth its open P&L, so the exposures, in base, sum to
    NetLiquidation (the demo account holds 2 ES futures)."""
    ex = frames.validate(frames.CURRENCY_EXPOSURE, ibkr.currency_exposure())
    values = _summary(ibkr)
    assert ex["net_exposure_base"].sum() == pytest.approx(values[("NetLiquidation", "USD")],
                                                          abs=0.1)
    usd = ex.set_index("currency").loc["USD"]
    assert usd["net_exposure"] == pytest.approx(values[("NetLiquidationByCurrency", "USD")],
                                                abs=0.05)
    pos = ibkr.positions()
    fut = pos[pos["asset_class"] == "future"]
    assert len(fut) and fut["unrealized_pnl"].abs().sum() > 0  # the case the fix is about


def test_futures_order_needs_the_what_if_initial_margin_not_the_notional(ibkr):
    """Issue 14 (ES x5 "needs 1,498,687.50" while IBKR's what-if says its initial margin):
    the check inputs take the margin from the connection's own what-if (initMarginChange)."""
    from types import SimpleNamespace

    from brokerkit.execution.inputs import CheckInputs, needs_margin_preview
    from brokerkit.model import AssetClass, OrderIntent

    brokerage = SimpleNamespace(fx=SimpleNamespace(rate=lambda a, b: 1.0))
    inputs = CheckInputs(brokerage, None, None)  # type: ignore[arg-type]
    order = OrderIntent.of({"symbol": "ESZ6", "side": "buy", "quantity": 5})
    assert needs_margin_preview(AssetClass.FUTURE, order)
    assert not needs_margin_preview(AssetClass.EQUITY, OrderIntent.of(
        {"symbol": "AAPL", "side": "sell", "quantity": 5}))
    got = runtime.run(inputs.margin_required(ibkr, order, ibkr.accounts[0], "USD"))
    what_if = ibkr.what_if(symbol="ESZ6", side="buy", quantity=5).iloc[0]
    assert got is not None
    assert float(got) == pytest.approx(float(what_if["initial_margin_change"]))
    notional = 5 * 50 * ibkr.quotes(["ESZ6"]).iloc[0]["ask"]
    assert 0 < float(got) < notional / 5
