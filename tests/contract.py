"""The adapter contract: what every adapter must do, as one base test class.

Subclass `AdapterContract` in a test module (as exchange_calendars does for its calendars) and
override the `adapter` fixture with a connected adapter (started against its sandbox server);
override `trade_symbol` with a symbol it can quote and trade, and `read_only_adapter` when the
generic one (the same connection with `read_only=True`) does not fit::

    from contract import AdapterContract   # tests/ is on sys.path through tests/conftest.py

    class TestAlpacaContract(AdapterContract):
        @pytest.fixture
        def adapter(self, alpaca_server): ...
"""

from __future__ import annotations

import dataclasses
import uuid

import pandas as pd
import pytest

from brokerkit import frames
from brokerkit.adapters.base import Adapter, BrokerOrder
from brokerkit.errors import AdapterError
from brokerkit.model import OrderIntent, OrderStatus

__all__ = ["AdapterContract"]


def _coid() -> str:
    return f"contract-{uuid.uuid4().hex[:16]}"


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

    @pytest.mark.parametrize("method", ["balances", "positions", "orders", "fills"])
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
        if adapter.capabilities.read_only:
            return  # covered by test_read_only_adapter_refuses_to_trade
        coid = _coid()
        intent = OrderIntent(trade_symbol, "buy", quantity=trade_quantity)
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
        if adapter.capabilities.read_only:
            return  # covered by test_read_only_adapter_refuses_to_trade
        assert adapter.lookup(_coid()) is None

    def test_read_only_adapter_refuses_to_trade(self, read_only_adapter: Adapter,
                                                trade_symbol: str,
                                                trade_quantity: str) -> None:
        assert read_only_adapter.capabilities.read_only
        intent = OrderIntent(trade_symbol, "buy", quantity=trade_quantity)
        with pytest.raises(AdapterError, match="read-only"):
            read_only_adapter.submit(intent, _coid())
        frames.validate(frames.BALANCES, read_only_adapter.balances())
