"""Routing to an account that can hold the order, end to end: the pipeline over the sandbox's
paper broker, with the accounts' profiles from configuration (issue 14, "Orders and
routing"). SAP trades on Xetra in EUR; the demo's DEMO-GLOBAL-1 holds EUR, DEMO-CRYPTO-1 is
its crypto account, DEMO-MARGIN-1 a US margin account in USD."""

from __future__ import annotations

import uuid

import pytest

from brokerkit.book import Book
from brokerkit.config import ConnectionConfig, Settings
from brokerkit.execution.service import ExecutionService
from brokerkit.model import AccountProfile, AssetClass, OrderStatus
from brokerkit.service import BrokerageService

US = AccountProfile("DEMO-MARGIN-1", "margin", frozenset({"USD"}),
                    asset_classes=frozenset({AssetClass.EQUITY, AssetClass.OPTION}))
GLOBAL = AccountProfile("DEMO-GLOBAL-1", "margin",
                        frozenset({"EUR", "GBP", "JPY", "HKD", "USD"}),
                        frozenset({"XETRA", "LSE", "TSE", "SEHK", "TSX"}))
CRYPTO = AccountProfile("DEMO-CRYPTO-1", "crypto", frozenset({"USD"}))


def service(book_url: str, paper_url: str, routing: dict) -> ExecutionService:
    options = {"url": paper_url, "broker": f"t-{uuid.uuid4().hex[:10]}"}
    conns = {
        "paper-us": ConnectionConfig("paper-us", "paper", options=options,
                                     accounts=("DEMO-MARGIN-1",),
                                     account_profiles={US.account: US}),
        "paper-global": ConnectionConfig(
            "paper-global", "paper", options=options, accounts=("DEMO-GLOBAL-1",
                                                                "DEMO-CRYPTO-1"),
            account_profiles={GLOBAL.account: GLOBAL, CRYPTO.account: CRYPTO}),
    }
    # DEMO-CRYPTO-1 also holds USDT: its buying power needs a USDT rate
    brokerage = BrokerageService(Settings(connections=conns, book_url=book_url,
                                          routing=routing, fx_rates={"USDT/USD": 1.0}))
    brokerage.connect()
    return ExecutionService(brokerage, Book(book_url))


@pytest.fixture
def ex(book_url, paper_url):
    svc = service(book_url, paper_url, {"equity": "paper-us", "crypto": "paper-global",
                                        "markets": {"XETRA": "paper-global"}})
    yield svc
    svc.brokerage.close()


def test_sap_in_eur_on_xetra_is_placed_in_the_eur_account_not_the_us_margin_account(ex):
    r = ex.place_order(symbol="STK:SAP@XETRA", side="buy", quantity=1)
    assert r.status is OrderStatus.FILLED, r.reason
    assert (r.connection, r.account) == ("paper-global", "DEMO-GLOBAL-1")


def test_crypto_is_placed_in_the_connections_crypto_account(ex):
    r = ex.place_order(symbol="BTC/USD", side="buy", quantity="0.001", time_in_force="gtc")
    assert r.status is OrderStatus.FILLED, r.reason
    assert (r.connection, r.account) == ("paper-global", "DEMO-CRYPTO-1")


def test_no_account_for_eur_equities_is_no_route_naming_why(book_url, paper_url):
    svc = service(book_url, paper_url, {"equity": "paper-us"})
    try:
        r = svc.place_order(symbol="STK:SAP@XETRA", side="buy", quantity=1)
    finally:
        svc.brokerage.close()
    assert r.status is OrderStatus.REJECTED and r.codes == ["NO_ROUTE"]
    assert "no account on 'paper-us' trades EUR equity on XETRA" in r.reason


def test_the_embedded_default_routes_sap_to_the_eur_account_and_bitcoin_to_the_crypto_account(
        book_url):
    """With nothing configured, the sandbox's connections publish what each demo account
    holds, and its routing sends XETRA to paper-global."""
    brokerage = BrokerageService(Settings(book_url=book_url))
    try:
        ex = ExecutionService(brokerage, Book(book_url))
        sap = ex.place_order(symbol="STK:SAP@XETRA", side="buy", quantity=1)
        assert (sap.status, sap.connection, sap.account) == \
            (OrderStatus.FILLED, "paper-global", "DEMO-GLOBAL-1"), sap.reason
        btc = ex.place_order(symbol="BTC/USD", side="buy", quantity="0.001",
                             time_in_force="gtc")
        assert (btc.status, btc.connection, btc.account) == \
            (OrderStatus.FILLED, "paper-global", "DEMO-CRYPTO-1"), btc.reason
        eur_on_us = ex.place_order(symbol="STK:SAP@XETRA", side="buy", quantity=1,
                                   connection="paper-us")
        assert eur_on_us.status is OrderStatus.REJECTED and "NO_ROUTE" in eur_on_us.codes
        assert "EUR" in eur_on_us.reason
    finally:
        brokerage.close()
