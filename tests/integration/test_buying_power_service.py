"""Consolidated buying power: one figure per account type, each connection's native figure
beside it (issue 14: IBKR's 4x AvailableFunds must not be added to Alpaca's 2x overnight)."""

from __future__ import annotations

import pytest

from brokerkit.config import Settings
from brokerkit.service import BrokerageService


@pytest.fixture
def embedded():
    svc = BrokerageService(Settings())
    yield svc
    svc.close()


def test_consolidated_buying_power_is_reg_t_overnight_for_margin_and_settled_cash_for_cash(
        embedded):
    """Reg T (12 CFR 220.12(a)) initial margin 50%: overnight buying power is 2 x excess
    equity (equity - initial margin), whatever intraday multiple a broker shows (IBKR's
    BuyingPower is 4 x AvailableFunds); a cash account can spend its settled cash."""
    bal = embedded.balances()
    assert {"account_type", "buying_power_consolidated_base"} <= set(bal.columns)
    for (_conn, _acct), g in bal.groupby(["connection", "account"]):
        kind = g["account_type"].iloc[0]
        figure = g["buying_power_consolidated_base"].sum()
        if kind == "margin":
            init = (g["margin_init"].fillna(0) * g["equity_base"] / g["equity"]).fillna(0).sum()
            assert figure == pytest.approx(max(0.0, 2 * (g["equity_base"].sum() - init)),
                                           rel=1e-6, abs=0.05)
        elif kind in ("cash", "crypto"):
            settled = (g["settled_cash"] * g["cash_base"] / g["cash"]).fillna(0).sum()
            assert figure == pytest.approx(max(0.0, settled), rel=1e-6, abs=0.05)
    ibkr = bal[bal["connection"].str.startswith("ibkr")]
    assert len(ibkr)  # the demo's IBKR connection: its 4x intraday figure is not the 2x one
    if len(ibkr):
        native = ibkr["buying_power_base"].sum()
        assert ibkr["buying_power_consolidated_base"].sum() == pytest.approx(native / 2,
                                                                             rel=1e-3)


def test_status_total_is_the_sum_of_consolidated_figures_with_native_beside(embedded):
    status = embedded.get_status()
    conns = status["connections"]
    assert status["summary"]["total_buying_power"] == pytest.approx(
        sum(c["buying_power"] or 0 for c in conns), abs=0.05)
    bal = embedded.balances()
    for c in conns:
        assert {"name", "status", "buying_power_native", "account_types"} <= set(c)
        mine = bal[bal["connection"] == c["name"]]
        assert c["buying_power"] == pytest.approx(
            mine["buying_power_consolidated_base"].sum(), rel=1e-3, abs=1)
        assert c["buying_power_native"] == pytest.approx(mine["buying_power_base"].sum(),
                                                         rel=1e-3, abs=1)


def test_a_futures_order_through_the_pipeline_takes_ibkrs_what_if_margin_not_its_notional(
        embedded, book_url):
    """Issue 14: ES x5 "needs 1,498,687.50" (its notional) while IBKR's what-if says its
    initial margin; the ticket's preview and check now take the what-if."""
    from brokerkit.book import Book
    from brokerkit.execution.service import ExecutionService
    from brokerkit.model import OrderStatus

    ex = ExecutionService(embedded, Book(book_url))
    preview = ex.preview(symbol="ESZ6", side="buy", quantity=5, asset_class="future")
    assert preview.connection == "ibkr-paper", preview.reason
    what_if = embedded.connected_adapter("ibkr-paper").what_if(
        symbol="ESZ6", side="buy", quantity=5).iloc[0]
    margin = float(what_if["initial_margin_change"])
    assert 0 < margin < preview.notional / 5
    assert preview.buying_power_after == pytest.approx(preview.buying_power - margin, rel=1e-3)
    placed = ex.place_order(symbol="ESZ6", side="buy", quantity=5, asset_class="future")
    assert placed.status in (OrderStatus.FILLED, OrderStatus.ACCEPTED), placed.reason
