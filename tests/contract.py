"""The adapter contract: what every adapter must do, as one base test class.

Subclass `AdapterContract` in a test module (as exchange_calendars does for its calendars) and
override the `adapter` fixture with a connected adapter (started against its sandbox server),
`impatient_adapter` with one whose requests time out within about a second, and `broker_faults`
with the `FaultInjector` of the sandbox broker behind them (the server applies its "submit"
faults); override `trade_symbol` with a symbol it can quote and trade, and `read_only_adapter`
when the generic one (the same connection with `read_only=True`) does not fit::

    from contract import AdapterContract   # tests/ is on sys.path through tests/conftest.py

    class TestAlpacaContract(AdapterContract):
        @pytest.fixture
        def adapter(self, alpaca_server): ...
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest

from brokerkit import frames
from brokerkit.adapters.base import Adapter, BrokerOrder
from brokerkit.errors import AdapterError, SubmitUncertain
from brokerkit.model import OrderIntent, OrderStatus

__all__ = ["AdapterContract"]


def _coid() -> str:
    return f"contract-{uuid.uuid4().hex[:16]}"


def _eventually(probe: Callable[[], Any], timeout: float = 5.0) -> Any:
    """`probe()`'s first truthy answer within `timeout` seconds (else the assertion fails)."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found or time.monotonic() > deadline:
            assert found, f"nothing came within {timeout:g} s"
            return found
        time.sleep(0.05)


class AdapterContract:
    """Tests every adapter must pass."""

    @pytest.fixture
    def adapter(self) -> Adapter:
        raise NotImplementedError("override the `adapter` fixture with a connected adapter")

    @pytest.fixture
    def trade_symbol(self) -> str:
        return "AAPL"

    @pytest.fixture
    def trade_quantity(self) -> str:
        return "1"

    @pytest.fixture
    def impatient_adapter(self) -> Adapter:
        raise NotImplementedError("override `impatient_adapter`: a connected adapter whose "
                                  "requests time out within about a second")

    @pytest.fixture
    def broker_faults(self) -> Any:
        raise NotImplementedError("override `broker_faults`: the sandbox broker's FaultInjector")

    @pytest.fixture
    def read_only_adapter(self, adapter: Adapter):
        if adapter.capabilities.read_only:
            yield adapter
            return
        config = dataclasses.replace(adapter.config, read_only=True)
        ro = type(adapter)(config, adapter.secrets)
        ro.connect()
        yield ro
        ro.close()

    # -- frames ---------------------------------------------------------------------------
    def test_connected_adapter_names_its_accounts(self, adapter: Adapter) -> None:
        assert adapter.accounts and all(isinstance(a, str) and a for a in adapter.accounts)

    @pytest.mark.parametrize("method", ["balances", "positions", "orders", "fills",
                                        "corporate_actions"])
    def test_account_frames_match_their_schema(self, adapter: Adapter, method: str) -> None:
        df = getattr(adapter, method)()
        frames.validate(frames.SCHEMAS[method], df)
        if len(df):
            assert set(df["connection"]) == {adapter.name}
            assert set(df["account"]) <= set(adapter.accounts)

    def test_balances_cover_every_account(self, adapter: Adapter) -> None:
        assert set(adapter.balances()["account"]) == set(adapter.accounts)

    def test_quotes_and_instruments_match_their_schema(self, adapter: Adapter,
                                                       trade_symbol: str) -> None:
        quotes = frames.validate(frames.QUOTES, adapter.quotes([trade_symbol]))
        assert len(quotes) == 1
        q = quotes.iloc[0]
        assert 0 < q["bid"] <= q["ask"] and q["bid"] <= q["last"] <= q["ask"]
        inst = frames.validate(frames.INSTRUMENTS, adapter.instruments([trade_symbol]))
        assert len(inst) == 1 and inst.iloc[0]["instrument"] == q["instrument"]

    @pytest.mark.parametrize("method", ["quotes", "instruments"])
    def test_no_symbols_give_a_typed_empty_frame(self, adapter: Adapter, method: str) -> None:
        df = getattr(adapter, method)([])
        assert len(df) == 0
        frames.validate(frames.SCHEMAS[method], df)

    async def test_sync_and_async_forms_agree(self, adapter: Adapter,
                                              trade_symbol: str) -> None:
        sync_inst = adapter.instruments([trade_symbol])
        async_inst = await adapter.instruments_async([trade_symbol])
        pd.testing.assert_frame_equal(sync_inst, async_inst)
        cols = ["connection", "account", "currency", "cash"]
        sync_bal = adapter.balances()[cols]
        async_bal = (await adapter.balances_async())[cols]
        pd.testing.assert_frame_equal(sync_bal, async_bal)

    # -- trading --------------------------------------------------------------------------
    def test_submitted_order_is_found_by_its_client_order_id(
            self, adapter: Adapter, trade_symbol: str, trade_quantity: str) -> None:
        coid = _coid()
        intent = OrderIntent(trade_symbol, "buy", quantity=trade_quantity)
        if adapter.capabilities.read_only:  # nothing to find: the submit itself is refused
            _assert_submit_refused(adapter, intent, coid)
            return
        ack = adapter.submit(intent, coid)
        assert isinstance(ack, BrokerOrder) and ack.client_order_id == coid
        assert ack.status is not OrderStatus.REJECTED, ack.reason
        found = adapter.lookup(coid)
        assert found is not None
        assert found.order_id == ack.order_id and found.client_order_id == coid
        assert found.account in adapter.accounts
        orders = adapter.orders()
        assert (orders["client_order_id"] == coid).sum() == 1

    def test_lookup_of_an_unknown_client_order_id_is_none(self, adapter: Adapter) -> None:
        try:
            found = adapter.lookup(_coid())
        except AdapterError as exc:  # a read-only connection may refuse order calls outright
            assert adapter.capabilities.read_only and "read-only" in str(exc), exc
        else:
            assert found is None

    def test_read_only_adapter_refuses_to_trade(self, read_only_adapter: Adapter,
                                                trade_symbol: str,
                                                trade_quantity: str) -> None:
        assert read_only_adapter.capabilities.read_only
        intent = OrderIntent(trade_symbol, "buy", quantity=trade_quantity)
        _assert_submit_refused(read_only_adapter, intent, _coid())
        frames.validate(frames.BALANCES, read_only_adapter.balances())

    # -- the order's life: cancel, fills, and the answers a broker fault leaves -------------
    def _resting(self, adapter: Adapter, symbol: str, quantity: str) -> OrderIntent:
        """A buy limit order far under the market: it rests."""
        bid = float(adapter.quotes([symbol])["bid"].iloc[0])
        tick = Decimal(repr(float(adapter.instruments([symbol])["price_increment"].iloc[0])))
        price = (Decimal(repr(bid * 0.5)) / tick).to_integral_value() * tick
        return OrderIntent(symbol, "buy", quantity=quantity, order_type="limit",
                           limit_price=price)

    def test_a_resting_order_is_cancelled_and_found_cancelled(
            self, adapter: Adapter, trade_symbol: str, trade_quantity: str) -> None:
        coid = _coid()
        ack = adapter.submit(self._resting(adapter, trade_symbol, trade_quantity), coid)
        assert ack.status is OrderStatus.ACCEPTED, ack.reason
        assert ack.order_id in set(map(str, adapter.open_orders()["order_id"]))
        adapter.cancel(ack.order_id)
        found = _eventually(lambda: (o := adapter.lookup(coid)) is not None
                            and o.status is OrderStatus.CANCELED and o)
        assert found.order_id == ack.order_id and found.filled_quantity == 0
        assert ack.order_id not in set(map(str, adapter.open_orders()["order_id"]))

    def test_a_fill_shows_in_fills_with_its_order_and_quantity(
            self, adapter: Adapter, trade_symbol: str, trade_quantity: str) -> None:
        coid = _coid()
        ack = adapter.submit(OrderIntent(trade_symbol, "buy", quantity=trade_quantity), coid)
        assert ack.status is not OrderStatus.REJECTED, ack.reason

        def mine() -> tuple[pd.DataFrame] | None:
            fills = adapter.fills()
            rows = fills[fills["order_id"].astype(str) == str(ack.order_id)]
            return (rows,) if rows["quantity"].sum() == float(trade_quantity) else None

        (rows,) = _eventually(mine)
        frames.validate(frames.FILLS, rows)
        assert (rows["price"] > 0).all() and rows["fill_id"].is_unique

    def test_an_answer_lost_after_the_accept_is_uncertain_and_the_order_is_found(
            self, adapter: Adapter, broker_faults: Any, trade_symbol: str,
            trade_quantity: str) -> None:
        broker_faults.set("submit", drop_after_accept=1)
        coid = _coid()
        with pytest.raises(SubmitUncertain):
            adapter.submit(OrderIntent(trade_symbol, "buy", quantity=trade_quantity), coid)
        found = _eventually(lambda: adapter.lookup(coid))
        assert found.client_order_id == coid and found.status is not OrderStatus.REJECTED

    def test_a_late_accept_is_uncertain_and_the_order_appears_later(
            self, impatient_adapter: Adapter, broker_faults: Any, trade_symbol: str,
            trade_quantity: str) -> None:
        broker_faults.set("submit", accept_late_next=1, accept_late_s=2.5)
        coid = _coid()
        with pytest.raises(SubmitUncertain):
            impatient_adapter.submit(OrderIntent(trade_symbol, "buy", quantity=trade_quantity),
                                     coid)
        assert impatient_adapter.lookup(coid) is None  # not at the broker yet: not "not placed"
        found = _eventually(lambda: impatient_adapter.lookup(coid), timeout=8.0)
        assert found.client_order_id == coid


def _assert_submit_refused(adapter: Adapter, intent: OrderIntent, coid: str) -> None:
    """A read-only adapter refuses `intent`, saying so, and no order of `coid` exists after."""
    with pytest.raises(AdapterError, match="read-only"):
        adapter.submit(intent, coid)
    orders = adapter.orders()
    assert coid not in set(orders["client_order_id"].astype(str))
