"""Routing: the rules in order, read-only connections never chosen, NO_ROUTE saying why."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokerkit.adapters.base import Capabilities
from brokerkit.config import ConnectionConfig
from brokerkit.errors import ConfigError
from brokerkit.execution.routing import (
    Route,
    RouteTarget,
    RoutingTable,
    infer_asset_class,
    parse_routing,
    route,
)
from brokerkit.model import AccountProfile, AssetClass, OrderIntent, Violation

EQ, CR, FX, OPT = AssetClass.EQUITY, AssetClass.CRYPTO, AssetClass.FX, AssetClass.OPTION

CONNECTIONS = {
    "alpaca": RouteTarget("alpaca", "alpaca", True, frozenset({EQ, CR}), ("PA1",)),
    "ibkr": RouteTarget("ibkr", "ibkr", True, frozenset({EQ, OPT, FX}), ("U1", "U2")),
    "kraken": RouteTarget("kraken", "crypto", True, frozenset({CR})),
    "paper-us": RouteTarget("paper-us", "paper", True, frozenset({EQ, CR, FX, OPT}),
                            ("PAPER",)),
    "fidelity": RouteTarget("fidelity", "statements", False, frozenset({EQ}), ("Z123",)),
}
ROUTING = {"equity": "alpaca", "crypto": "kraken", "default": "paper-us",
           "accounts": {"U9": "ibkr"}}


def go(routing: Any = None, connections: Any = None, **intent: Any) -> Route | Violation:
    order = OrderIntent.of({"symbol": "AAPL", "side": "buy", "quantity": 1, **intent})
    return route(order, ROUTING if routing is None else routing,
                 CONNECTIONS if connections is None else connections)


def no_route(result: Route | Violation) -> str:
    assert isinstance(result, Violation) and result.code == "NO_ROUTE", result
    return result.message


# --------------------------------------------------------------------------------------------
# Rule 1: explicit connection


def test_explicit_connection_wins_over_every_other_rule():
    r = go(connection="ibkr", account="U2")
    assert r == Route("ibkr", "U2", EQ, "explicit")


def test_explicit_unknown_connection_is_no_route_naming_the_known_ones():
    msg = no_route(go(connection="robinhood"))
    assert "'robinhood'" in msg and "alpaca" in msg and "ibkr" in msg


def test_explicit_read_only_connection_is_never_routed():
    assert "read-only" in no_route(go(connection="fidelity"))


def test_explicit_connection_must_trade_the_asset_class():
    msg = no_route(go(connection="kraken"))
    assert "does not trade equity" in msg and "crypto" in msg


def test_explicit_account_must_belong_to_the_explicit_connection():
    assert "not one of 'alpaca'" in no_route(go(connection="alpaca", account="U1"))
    assert "belongs to 'ibkr'" in no_route(go(connection="alpaca", account="U9"))
    assert go(connection="ibkr", account="U9") == Route("ibkr", "U9", EQ, "explicit")


# --------------------------------------------------------------------------------------------
# Rule 2: the account's connection


def test_account_listed_on_a_connection_routes_there():
    assert go(account="U1") == Route("ibkr", "U1", EQ, "account")


def test_routing_accounts_table_maps_an_account_to_its_connection():
    assert go(account="U9") == Route("ibkr", "U9", EQ, "account")


def test_account_on_a_read_only_connection_is_no_route_not_a_fallback():
    assert "read-only" in no_route(go(account="Z123"))


def test_unknown_account_is_no_route_rather_than_a_guess():
    msg = no_route(go(account="NOPE"))
    assert "'NOPE'" in msg and "[routing.accounts]" in msg


def test_account_on_two_trading_connections_is_ambiguous():
    twins = {**CONNECTIONS,
             "ibkr2": RouteTarget("ibkr2", "ibkr", True, frozenset({EQ}), ("U1",))}
    msg = no_route(go(connections=twins, account="U1"))
    assert "ibkr, ibkr2" in msg


def test_account_connection_must_trade_the_asset_class():
    assert "does not trade crypto" in no_route(go(account="U1", symbol="BTC/USD"))


# --------------------------------------------------------------------------------------------
# Rules 3 and 4: asset-class default, default, the only candidate


@pytest.mark.parametrize(("symbol", "connection", "asset_class", "rule"), [
    ("AAPL", "alpaca", EQ, "asset_class"),
    ("BTC/USD", "kraken", CR, "asset_class"),
    ("EUR.USD", "paper-us", FX, "default"),
    ("AAPL261218C00150000", "paper-us", OPT, "default"),
])
def test_asset_class_default_then_catch_all_default(symbol, connection, asset_class, rule):
    assert go(symbol=symbol) == Route(connection, None, asset_class, rule)


def test_intent_asset_class_overrides_inference():
    assert go(symbol="SPY", asset_class="option").connection == "paper-us"


def test_asset_class_default_on_a_read_only_connection_is_no_route():
    msg = no_route(go(routing={"equity": "fidelity"}))
    assert "[routing] equity" in msg and "read-only" in msg


def test_without_routing_the_only_trading_connection_for_the_class_is_used():
    assert go(routing={}, symbol="EUR.USD", connections={
        k: v for k, v in CONNECTIONS.items() if k != "paper-us"}) == \
        Route("ibkr", None, FX, "only")


def test_without_routing_several_candidates_is_no_route_naming_them():
    msg = no_route(go(routing={}))
    assert "alpaca, ibkr, paper-us" in msg and "fidelity" not in msg


def test_no_trading_connection_at_all_is_no_route():
    msg = no_route(go(routing={}, connections={"fidelity": CONNECTIONS["fidelity"]}))
    assert "no trading connection trades equity" in msg


def test_routing_table_can_be_passed_parsed():
    table = parse_routing(ROUTING)
    assert go(routing=table) == Route("alpaca", None, EQ, "asset_class")


# --------------------------------------------------------------------------------------------
# Asset-class inference and targets


@pytest.mark.parametrize(("symbol", "expected"), [
    ("BTC/USD", CR), ("eth/usdt", CR), ("EUR.USD", FX), ("GBP.JPY", FX),
    ("BRK.B", EQ), ("ABC.DEF", EQ), ("AAPL  261218C00150000", OPT), ("SPY240119P00450000", OPT),
    ("AAPL", EQ), ("ESZ6", AssetClass.FUTURE), ("CLF27", AssetClass.FUTURE), ("7203", EQ),
    ("GOOGL", EQ), ("STK:SAP@XETRA", EQ), ("OPT:AAPL  261218C00230000", OPT),
    ("FUT:ESZ6", AssetClass.FUTURE), ("CASH:EUR.USD", FX), ("CRYPTO:BTC/USD", CR),
])
def test_asset_class_is_inferred_from_the_symbol(symbol, expected):
    assert infer_asset_class(symbol) is expected


def test_instrument_lookup_is_preferred_and_none_falls_back_to_the_symbol():
    facts = {"SPY": "etf"}
    assert infer_asset_class("SPY", facts.get) is AssetClass.ETF
    assert infer_asset_class("BTC/USD", facts.get) is CR


def test_etf_routes_where_equities_go():
    assert go(symbol="SPY", asset_class="etf") == Route("alpaca", None, AssetClass.ETF,
                                                       "asset_class")


def test_route_target_from_config_is_read_only_when_config_or_adapter_says_so():
    caps = Capabilities(trading=True, asset_classes=frozenset({EQ}))
    live = RouteTarget.of(ConnectionConfig("a", "alpaca", accounts=("PA1",)), caps, ["PA2"])
    assert live.trading and live.accounts == ("PA1", "PA2")
    assert RouteTarget.of(ConnectionConfig("a", "alpaca", read_only=True), caps).read_only
    assert RouteTarget.of(ConnectionConfig("a", "alpaca", enabled=False), caps).read_only
    assert RouteTarget.of(ConnectionConfig("a", "alpaca"), Capabilities()).read_only


# --------------------------------------------------------------------------------------------
# [routing] config


def test_parse_routing_reads_defaults_aliases_and_accounts():
    t = parse_routing({"stock": "alpaca", "default": "paper-us", "accounts": {"U9": "ibkr"}},
                      known_connections=CONNECTIONS)
    assert t == RoutingTable({EQ: "alpaca"}, "paper-us", {"U9": "ibkr"})


@pytest.mark.parametrize(("raw", "key", "expected"), [
    ({"equitee": "alpaca"}, "routing.equitee", "asset class"),
    ({"equity": 5}, "routing.equity", "connection name"),
    ({"equity": "alpacca"}, "routing.equity", "one of alpaca"),
    ({"default": "nowhere"}, "routing.default", "one of"),
    ({"accounts": ["U1"]}, "routing.accounts", "table"),
    ({"accounts": {"U1": "nowhere"}}, "routing.accounts.U1", "one of"),
    ({"equity": "alpaca", "stock": "ibkr"}, "routing.stock", "once"),
])
def test_bad_routing_config_names_the_key(raw, key, expected):
    with pytest.raises(ConfigError) as err:
        parse_routing(raw, "brokerkit.toml", known_connections=CONNECTIONS)
    assert err.value.key == key and err.value.file == "brokerkit.toml"
    assert expected in str(err.value)


# --------------------------------------------------------------------------------------------
# Accounts that can hold the order: asset class, market and currency (issue 14)

GLOBAL = RouteTarget(
    "ibkr", "ibkr", True, frozenset({EQ, OPT, FX, CR}), ("U-US", "U-EU", "U-CRYPTO"), (
        AccountProfile("U-US", "margin", frozenset({"USD"})),
        AccountProfile("U-EU", "margin", frozenset({"EUR", "USD"}), frozenset({"XETRA"})),
        AccountProfile("U-CRYPTO", "crypto", frozenset({"USD"})),
    ))
US_ONLY = RouteTarget("ibkr", "ibkr", True, frozenset({EQ}), ("U-US",),
                      (AccountProfile("U-US", "margin", frozenset({"USD"})),))


def test_sap_in_eur_on_xetra_goes_to_the_account_that_holds_eur_not_the_us_margin_account():
    """SAP SE trades on Xetra in EUR (venues.currencies.EXCHANGE_CURRENCIES, from IBKR's
    exchange list, interactivebrokers.com/en/trading/products-exchanges.php); issue 14 saw it
    routed to the US margin account, leaving a EUR debit there."""
    r = go({"equity": "ibkr"}, {"ibkr": GLOBAL}, symbol="STK:SAP@XETRA")
    assert r == Route("ibkr", "U-EU", EQ, "asset_class")
    assert go({"equity": "ibkr"}, {"ibkr": GLOBAL}, symbol="AAPL").account == "U-US"


def test_no_account_that_trades_eur_equities_on_xetra_is_no_route_naming_why():
    msg = no_route(go({"equity": "ibkr"}, {"ibkr": US_ONLY}, symbol="STK:SAP@XETRA"))
    assert "no account on 'ibkr' trades EUR equity on XETRA" in msg
    assert "U-US holds USD, not EUR" in msg


def test_named_account_that_cannot_hold_the_currency_is_no_route():
    msg = no_route(go({}, {"ibkr": GLOBAL}, symbol="STK:SAP@XETRA", account="U-US"))
    assert "account U-US holds USD, not EUR" in msg
    assert go({}, {"ibkr": GLOBAL}, symbol="SAP", currency="EUR", account="U-EU") == \
        Route("ibkr", "U-EU", EQ, "account")


def test_crypto_goes_to_the_connections_crypto_account_not_its_first_account():
    """The sandbox's paper-global shows DEMO-GLOBAL-1 first and DEMO-CRYPTO-1 for crypto
    (issue 14: crypto went to the first account); a crypto account holds crypto only."""
    assert go({"crypto": "ibkr"}, {"ibkr": GLOBAL}, symbol="BTC/USD") == \
        Route("ibkr", "U-CRYPTO", CR, "asset_class")
    assert "is a crypto account" in no_route(
        go({}, {"ibkr": GLOBAL}, symbol="AAPL", account="U-CRYPTO"))


def test_routing_markets_table_sends_an_exchange_to_its_connection():
    targets = {"alpaca": CONNECTIONS["alpaca"], "ibkr": GLOBAL}
    routing = {"equity": "alpaca", "markets": {"xetra": "ibkr"}}
    assert go(routing, targets, symbol="STK:SAP@XETRA") == Route("ibkr", "U-EU", EQ, "market")
    assert go(routing, targets, symbol="AAPL") == Route("alpaca", None, EQ, "asset_class")


def test_only_rule_skips_connections_without_an_account_for_the_currency():
    targets = {"us": RouteTarget("us", "paper", True, frozenset({EQ}), ("U-US",),
                                 (AccountProfile("U-US", None, frozenset({"USD"})),)),
               "ibkr": GLOBAL}
    assert go({}, targets, symbol="STK:SAP@XETRA") == Route("ibkr", "U-EU", EQ, "only")
    assert "several trading connections" in no_route(go({}, targets, symbol="AAPL"))


def test_route_target_of_takes_the_configured_account_profiles():
    caps = Capabilities(trading=True, asset_classes=frozenset({EQ}))
    profile = AccountProfile("U2", "margin", frozenset({"EUR"}), frozenset({"XETRA"}))
    t = RouteTarget.of(ConnectionConfig("ibkr", "ibkr", accounts=("U1", "U2"),
                                        account_profiles={"U2": profile}), caps)
    assert t.profile("U2") == profile and t.profile("U1") is None


@pytest.mark.parametrize(("raw", "key"), [
    ({"markets": {"NOWHERE": "ibkr"}}, "routing.markets.NOWHERE"),
    ({"markets": ["XETRA"]}, "routing.markets"),
])
def test_bad_routing_markets_name_the_key(raw, key):
    with pytest.raises(ConfigError) as err:
        parse_routing(raw, "brokerkit.toml", known_connections=CONNECTIONS)
    assert err.value.key == key


@given(symbol=st.from_regex(r"[A-Z0-9][A-Z0-9./\- ]{0,20}", fullmatch=True),
       connection=st.sampled_from([None, *CONNECTIONS, "other"]),
       account=st.sampled_from([None, "PA1", "U1", "U9", "Z123", "PAPER", "nope"]))
def test_route_always_answers_with_a_usable_route_or_no_route(symbol, connection, account):
    r = go(symbol=symbol.strip() or "X", connection=connection, account=account)
    if isinstance(r, Route):
        target = CONNECTIONS[r.connection]
        assert target.trades(r.asset_class)
        assert r.account is None or r.account in target.accounts or r.account == "U9"
    else:
        assert r.code == "NO_ROUTE" and r.message
