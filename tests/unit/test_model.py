"""OrderIntent validation, instrument keys and OrderResult's two faces."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokerkit.errors import InvalidIntent
from brokerkit.model import (
    AssetClass,
    Instrument,
    OrderIntent,
    OrderResult,
    OrderStatus,
    OrderType,
    Side,
    Violation,
)


def test_intent_from_dict_with_aliases_normalises_everything():
    i = OrderIntent.of({"symbol": " nvda ", "side": "BUY", "qty": "1.5", "type": "LMT",
                        "limit_price": 120.1, "tif": "gtc"})
    assert i.symbol == "NVDA" and i.side is Side.BUY and i.order_type is OrderType.LIMIT
    assert i.quantity == Decimal("1.5") and i.limit_price == Decimal("120.1")
    assert i.time_in_force.value == "gtc"


def test_intent_float_prices_do_not_carry_binary_artefacts():
    assert OrderIntent.of(symbol="A", side="buy", quantity=0.1).quantity == Decimal("0.1")


def test_numpy_numbers_are_accepted_as_numbers():
    import numpy as np

    i = OrderIntent.of(symbol="A", side="buy", quantity=np.int64(3), order_type="limit",
                       limit_price=np.float64(215.57))
    assert i.quantity == Decimal(3) and i.limit_price == Decimal("215.57")


@pytest.mark.parametrize(("fields", "bad"), [
    ({"side": "buy", "quantity": 1}, "symbol"),
    ({"symbol": "AAPL", "quantity": 1}, "side"),
    ({"symbol": "AAPL", "side": "hold", "quantity": 1}, "side"),
    ({"symbol": "AAPL", "side": "buy"}, "quantity"),
    ({"symbol": "AAPL", "side": "buy", "quantity": 1, "notional": 100}, "quantity"),
    ({"symbol": "AAPL", "side": "buy", "quantity": -1}, "quantity"),
    ({"symbol": "AAPL", "side": "buy", "quantity": "abc"}, "quantity"),
    ({"symbol": "AAPL", "side": "buy", "quantity": float("nan")}, "quantity"),
    ({"symbol": "AAPL", "side": "buy", "quantity": True}, "quantity"),
    ({"symbol": "AAPL", "side": "buy", "quantity": 1, "order_type": "limit"}, "limit_price"),
    ({"symbol": "AAPL", "side": "buy", "quantity": 1, "limit_price": 5}, "limit_price"),
    ({"symbol": "AAPL", "side": "buy", "quantity": 1, "order_type": "stop_limit",
      "stop_price": 5}, "limit_price"),
    ({"symbol": "AAPL", "side": "buy", "quantity": 1, "order_type": "trailing_stop"},
     "trail_price"),
    ({"symbol": "AAPL", "side": "buy", "quantity": 1, "time_in_force": "forever"},
     "time_in_force"),
    ({"symbol": "AAPL", "side": "buy", "quantity": 1, "colour": "red"}, "colour"),
    ({"symbol": "AAPL", "side": "buy", "quantity": 1, "client_order_id": "a b"},
     "client_order_id"),
    ({"symbol": "AAPL", "side": "buy", "quantity": 1, "qty": 2}, "qty"),
])
def test_bad_intent_names_the_field(fields, bad):
    with pytest.raises(InvalidIntent) as exc:
        OrderIntent.of(fields)
    assert exc.value.field == bad


def test_intent_that_is_not_a_mapping_is_invalid():
    with pytest.raises(InvalidIntent, match="expected a dict"):
        OrderIntent.of(["AAPL"])  # type: ignore[arg-type]


@given(st.dictionaries(st.sampled_from(["symbol", "side", "quantity", "notional", "order_type",
                                        "limit_price", "stop_price", "time_in_force", "x"]),
                       st.one_of(st.none(), st.text(max_size=5), st.integers(-5, 5),
                                 st.floats(allow_nan=True), st.booleans())))
def test_any_input_builds_an_intent_or_raises_invalid_intent(raw):
    try:
        intent = OrderIntent.of(raw)
    except InvalidIntent as exc:
        assert exc.field
    else:
        assert (intent.quantity is None) != (intent.notional is None)


def test_instrument_keys_are_canonical():
    assert Instrument.equity("aapl").key == "STK:AAPL"
    assert Instrument.equity("VOD", "GBP", "LSE").key == "STK:VOD@LSE"
    assert Instrument.fx("eur", "usd").key == "CASH:EUR.USD"
    assert Instrument.crypto("btc").key == "CRYPTO:BTC/USD"
    opt = Instrument.option("AAPL", date(2026, 12, 18), 150, "C")
    assert opt.key == "OPT:AAPL  261218C00150000"
    fut = Instrument.future("ESZ6", "ES", date(2026, 12, 18), multiplier=50)
    assert fut.key == "FUT:ESZ6"


@pytest.mark.parametrize("key", ["STK:AAPL", "STK:VOD@LSE", "CASH:EUR.USD", "CRYPTO:BTC/USD",
                                 "OPT:AAPL  261218C00150000", "FUT:ESZ6"])
def test_instrument_key_round_trips(key):
    assert Instrument.parse_key(key).key == key


def test_bad_instrument_key_is_explained():
    with pytest.raises(ValueError, match="not an instrument key"):
        Instrument.parse_key("AAPL")


def test_asset_class_aliases():
    assert AssetClass.parse("Stock") is AssetClass.EQUITY
    assert AssetClass.parse("forex") is AssetClass.FX


def test_order_result_reads_as_mapping_and_attributes():
    r = OrderResult(OrderStatus.REJECTED, reason="halted", violations=(
        Violation("TRADING_HALTED", "trading is halted"),))
    assert r["status"] == "REJECTED" and r.status is OrderStatus.REJECTED
    assert r["reason"] == r.reason == "halted"
    assert r["order_id"] is None
    assert r["violations"] == [{"code": "TRADING_HALTED", "message": "trading is halted"}]
    assert dict(r)["status"] == "REJECTED" and not r.ok and r.codes == ["TRADING_HALTED"]
    with pytest.raises(KeyError):
        r["nope"]


@pytest.mark.parametrize(("given", "key", "asset_class"), [
    ("STK:SAP@XETRA", "STK:SAP@XETRA", AssetClass.EQUITY),
    ("stk:aapl", "STK:AAPL", AssetClass.EQUITY),
    ("OPT:AAPL  261218C00230000", "OPT:AAPL  261218C00230000", AssetClass.OPTION),
    ("OPT:AAPL261218C00230000", "OPT:AAPL  261218C00230000", AssetClass.OPTION),
    ("FUT:ESZ6", "FUT:ESZ6", AssetClass.FUTURE),
    ("CASH:EUR.USD", "CASH:EUR.USD", AssetClass.FX),
    ("CRYPTO:BTC/USD", "CRYPTO:BTC/USD", AssetClass.CRYPTO),
])
def test_canonical_keys_are_accepted_as_an_orders_symbol(given, key, asset_class):
    """The keys brokerkit's frames join on (model.Instrument.key; the OCC symbol pads its root
    to 6: OCC's "Symbology" of the Options Symbology Initiative) name an order's instrument."""
    i = OrderIntent.of(symbol=given, side="buy", quantity=1)
    assert i.symbol == key and i.instrument is not None
    assert i.instrument.asset_class is asset_class and i.instrument.key == key
    assert OrderIntent.of(symbol="AAPL", side="buy", quantity=1).instrument is None


@pytest.mark.parametrize(("fields", "field", "words"), [
    ({"symbol": "CASH:EURUSD"}, "symbol", "CASH:EUR.USD"),
    ({"symbol": "OPT:AAPL 2612C230"}, "symbol", "OCC"),
    ({"symbol": "BOGUS:AAPL"}, "symbol", "STK:SAP@XETRA"),
    ({"symbol": "STK:SAP@XETRA", "asset_class": "option"}, "asset_class", "does not match"),
])
def test_bad_canonical_key_names_what_is_wrong(fields, field, words):
    with pytest.raises(InvalidIntent) as exc:
        OrderIntent.of({"symbol": "AAPL", "side": "buy", "quantity": 1, **fields})
    assert exc.value.field == field and words in str(exc.value)


def test_currency_not_in_iso_4217_is_refused():
    """ISO 4217 List One (SIX, the maintenance agency) has no ZZZ; EUR and the market's CNH
    are accepted."""
    with pytest.raises(InvalidIntent) as exc:
        OrderIntent.of(symbol="AAPL", side="buy", quantity=1, currency="ZZZ")
    assert exc.value.field == "currency" and "ISO 4217" in str(exc.value)
    assert OrderIntent.of(symbol="AAPL", side="buy", quantity=1, currency="eur").currency == "EUR"
    assert OrderIntent.of(symbol="USD.CNH", side="buy", quantity=1, currency="CNH").currency


def test_account_profile_refuses_a_currency_code_that_is_not_iso_4217():
    from brokerkit.model import AccountProfile

    with pytest.raises(ValueError, match="ZZZ"):
        AccountProfile("U1", currencies=frozenset({"ZZZ"}))
    with pytest.raises(ValueError, match="savings"):
        AccountProfile("U1", kind="savings")


# -- malformed input (issue 16) ---------------------------------------------------------------


@pytest.mark.parametrize("key", [1, None, ("symbol",), 2.5, b"symbol"])
def test_non_string_keys_in_an_intent_name_the_key_and_its_type(key):
    with pytest.raises(InvalidIntent) as err:
        OrderIntent.of({key: "x", "symbol": "AAPL", "side": "buy", "quantity": 1})
    assert err.value.field == "intent"
    assert "field names must be strings" in str(err.value)
    assert type(key).__name__ in str(err.value)


def test_unknown_keyword_next_to_an_order_intent_names_it():
    base = OrderIntent("AAPL", "buy", quantity=1)
    with pytest.raises(InvalidIntent) as err:
        OrderIntent.of(base, bogus=1)
    assert err.value.field == "bogus" and "unknown field" in str(err.value)
    assert OrderIntent.of(base, qty=3).quantity == Decimal(3)  # aliases work here too
    with pytest.raises(InvalidIntent) as err:
        OrderIntent.of(base, quantity="-1")
    assert err.value.field == "quantity"
