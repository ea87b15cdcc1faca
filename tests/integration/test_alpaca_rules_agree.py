"""Alpaca's order rules, asked twice: the adapter's pre-trade check (`check_intent`, with the
instrument row the pipeline passes) and the Alpaca sandbox server (`POST /v2/orders` through
alpaca-py). Each has its own code over `brokerkit.venues.alpaca`; for every intent in the
table they must give the same verdict, and the verdict the documentation gives."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient

from brokerkit import runtime
from brokerkit.adapters.alpaca import AlpacaAdapter
from brokerkit.config import ConnectionConfig
from brokerkit.model import OrderIntent
from brokerkit.sandbox.alpaca import start_alpaca
from brokerkit.secrets import get_secret_store

KEY, SECRET = "PKRULESKEY", "rules-secret"
SECRETS = {"api_key": "alpaca_key", "secret_key": "alpaca_secret"}

# (name, intent keywords, the documentation's verdict: True = Alpaca takes it)
CASES: list[tuple[str, dict[str, Any], bool]] = [
    ("whole market day", dict(symbol="AAPL", quantity="1"), True),
    ("notional market day", dict(symbol="AAPL", notional="50"), True),
    ("notional under $1", dict(symbol="AAPL", notional="0.5"), False),
    # notional limit (Alpaca: "Fractional Shares Trading Supports Limit Orders and Extended
    # Hours"), stop and stop limit (docs.alpaca.markets changelog 2024-08-20)
    ("notional limit", dict(symbol="AAPL", notional="50", order_type="limit",
                            limit_price="1.00"), True),
    ("notional stop", dict(symbol="AAPL", notional="50", order_type="stop",
                           stop_price="100000.00"), True),
    ("notional trailing stop", dict(symbol="AAPL", notional="50", order_type="trailing_stop",
                                    trail_percent="5"), False),
    ("notional gtc", dict(symbol="AAPL", notional="50", time_in_force="gtc"), False),
    ("fractional limit day", dict(symbol="AAPL", quantity="1.5", order_type="limit",
                                  limit_price="1.00"), True),
    ("fractional stop day", dict(symbol="AAPL", quantity="1.5", order_type="stop",
                                 stop_price="100000.00"), True),
    ("fractional limit gtc", dict(symbol="AAPL", quantity="1.5", order_type="limit",
                                  limit_price="1.00", time_in_force="gtc"), False),
    ("fractional trailing stop", dict(symbol="AAPL", quantity="1.5",
                                      order_type="trailing_stop", trail_percent="5"), False),
    ("fractional, not fractionable", dict(symbol="BRK.A", quantity="0.5"), False),
    ("notional, not fractionable", dict(symbol="BRK.A", notional="100"), False),
    ("whole limit gtc", dict(symbol="AAPL", quantity="1", order_type="limit",
                             limit_price="1.00", time_in_force="gtc"), True),
    ("extended hours day limit", dict(symbol="AAPL", quantity="1", order_type="limit",
                                      limit_price="1.00", extended_hours=True), True),
    ("extended hours gtc limit", dict(symbol="AAPL", quantity="1", order_type="limit",
                                      limit_price="1.00", time_in_force="gtc",
                                      extended_hours=True), False),
    ("extended hours market", dict(symbol="AAPL", quantity="1", extended_hours=True), False),
    ("crypto market gtc", dict(symbol="BTC/USD", quantity="0.001", time_in_force="gtc"), True),
    ("crypto limit ioc", dict(symbol="BTC/USD", quantity="0.001", order_type="limit",
                              limit_price="1000", time_in_force="ioc"), True),
    ("crypto market day", dict(symbol="BTC/USD", quantity="0.001"), False),
    ("crypto limit fok", dict(symbol="BTC/USD", quantity="0.001", order_type="limit",
                              limit_price="1000", time_in_force="fok"), False),
    ("crypto stop gtc", dict(symbol="BTC/USD", quantity="0.001", order_type="stop",
                             stop_price="1000000", time_in_force="gtc"), False),
]


@pytest.fixture(scope="module")
def venue(tmp_path_factory):
    """One sandbox and Alpaca server for the table, with a connected adapter and a client."""
    from brokerkit.sandbox import get_sandbox, reset_sandbox

    seed = 880_001
    sandbox = get_sandbox(seed)
    server = runtime.run(start_alpaca(sandbox, key_id=KEY, secret_key=SECRET, rate_limit=None))
    mp = pytest.MonkeyPatch()
    mp.setenv("NO_PROXY", "127.0.0.1,localhost")
    mp.setenv("BROKERKIT_SECRET_ALPACA_KEY", KEY)
    mp.setenv("BROKERKIT_SECRET_ALPACA_SECRET", SECRET)
    cfg = ConnectionConfig("alpaca", "alpaca", options={"url": server.url, "rate_limit": False},
                           secrets=SECRETS)
    adapter = AlpacaAdapter(cfg, get_secret_store().resolve(SECRETS))
    adapter.connect()
    client = TradingClient(KEY, SECRET, paper=True, url_override=server.url)
    client._retry = 0
    rows = adapter.instruments(["AAPL", "BRK.A", "BTC/USD"])
    instruments = {r["symbol"]: r for r in rows.to_dict("records")}
    yield adapter, client, instruments
    adapter.close()
    runtime.run(server.close())
    mp.undo()
    reset_sandbox(seed)


def _body(intent: OrderIntent) -> dict[str, Any]:
    """The order as Alpaca's API takes it (http-apis.md §1.5), written here, not by the
    adapter, so the server is asked about exactly the intent."""
    body: dict[str, Any] = {"symbol": intent.symbol, "side": intent.side.value,
                            "type": intent.order_type.value,
                            "time_in_force": intent.time_in_force.value,
                            "client_order_id": f"rules-{uuid.uuid4().hex[:16]}"}
    for ours, theirs in (("quantity", "qty"), ("notional", "notional"),
                         ("limit_price", "limit_price"), ("stop_price", "stop_price"),
                         ("trail_percent", "trail_percent")):
        value = getattr(intent, ours)
        if value is not None:
            body[theirs] = str(value)
    if intent.extended_hours:
        body["extended_hours"] = True
    return body


def _server_takes(client: TradingClient, intent: OrderIntent) -> tuple[bool, str]:
    try:
        client.post("/orders", _body(intent))
    except APIError as exc:
        return False, f"{exc.status_code} {exc}"
    return True, "accepted"


def _adapter_takes(adapter: AlpacaAdapter, instruments: dict[str, Any], intent: OrderIntent
                   ) -> tuple[bool, str]:
    row = instruments.get(intent.symbol)
    violations = adapter.check_intent(intent, row)
    return not violations, "; ".join(v.message for v in violations) or "accepted"


@pytest.mark.parametrize(("name", "kwargs", "documented"), CASES, ids=[c[0] for c in CASES])
def test_adapter_check_and_sandbox_server_agree_with_alpacas_rules(venue, name, kwargs,
                                                                     documented):
    adapter, client, instruments = venue
    intent = OrderIntent(side="buy", **kwargs)
    by_adapter, why_adapter = _adapter_takes(adapter, instruments, intent)
    by_server, why_server = _server_takes(client, intent)
    assert (by_adapter, by_server) == (documented, documented), (
        f"{name}: documented {documented}; adapter {by_adapter} ({why_adapter}); "
        f"server {by_server} ({why_server})")


def test_the_table_covers_both_verdicts_for_every_alpaca_rule():
    takes = {c[2] for c in CASES}
    assert takes == {True, False}
    assert any(Decimal(c[1].get("notional", "1")) < 1 for c in CASES)
