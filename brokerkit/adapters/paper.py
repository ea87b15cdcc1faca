"""`PaperAdapter`: the connection type "paper", an adapter over a sandbox `PaperBroker`.

In-process, no sockets: every call reads the broker's state on the runtime loop (after
matching open orders at the market's now) and returns canonical frames. Options
(`ConnectionConfig.options`):

==============  ==============================================================================
broker          name of the sandbox broker (default "paper"); brokers share one market
seed            the sandbox's seed (default 0: the process-wide sandbox)
latency_ms      latency injected on every call (e.g. 200 to benchmark slow brokers)
fail_connect    true: the connection cannot connect (for tests of a down connection)
faults          {endpoint: {setting: value}} for `sandbox.faults.FaultInjector`; endpoints are
                connect, balances, positions, orders, fills, quotes, instruments, submit,
                cancel, lookup, or "*" for all
==============  ==============================================================================

Accounts are `ConnectionConfig.accounts`, by default the demo accounts of a demo connection
(`paper-us`, `paper-global`), else every account of the broker. With `drop_after_accept` on
"submit", the order is placed and then `SubmitUncertain` is raised, as when a connection
drops before the answer arrives; `lookup` by client order id then finds it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import frames
from ..errors import AdapterError, ConfigError, ConnectionDown, SubmitUncertain
from ..model import AssetClass, Instrument, OrderIntent, OrderType
from .base import Adapter, BrokerOrder, Capabilities, Options

if TYPE_CHECKING:
    import pandas as pd

    from ..config import ConnectionConfig
    from ..sandbox.broker import PaperBroker
    from ..sandbox.market import Order
    from ..secrets import Secret

__all__ = ["PaperAdapter"]

_OPTIONS = {"broker", "seed", "latency_ms", "fail_connect", "faults"}


def _contract_columns(inst: Instrument, exchange: str) -> dict[str, Any]:
    """The positions frame's contract columns (exchange, multiplier, expiry, strike, right)."""
    return {"exchange": exchange or inst.exchange or None, "multiplier": float(inst.multiplier),
            "expiry": inst.expiry, "strike": None if inst.strike is None else float(inst.strike),
            "right": inst.right or None}


def _num(value: Any) -> float:
    return float("nan") if value is None else float(value)


class PaperAdapter(Adapter):
    """A trading connection to a sandbox paper broker."""

    institution = "Sandbox Paper"
    capabilities = Capabilities(
        trading=True,
        asset_classes=frozenset({AssetClass.EQUITY, AssetClass.ETF, AssetClass.FX,
                                 AssetClass.CRYPTO}),
        fractional=True, notional=True, order_types=frozenset(OrderType), short_selling=True)

    def __init__(self, config: ConnectionConfig, secrets: Mapping[str, Secret] | None = None
                 ) -> None:
        super().__init__(config, secrets)
        from ..sandbox.faults import FaultInjector

        opts = Options(config, _OPTIONS)
        fail = opts.fail
        self._broker_name = opts.get("broker", "paper")
        if not isinstance(self._broker_name, str) or not self._broker_name:
            raise fail("broker", self._broker_name, "the name of a sandbox broker")
        self._seed = opts.get("seed", 0)
        if isinstance(self._seed, bool) or not isinstance(self._seed, int):
            raise fail("seed", self._seed, "an integer")
        latency = opts.get("latency_ms", 0)
        if isinstance(latency, bool) or not isinstance(latency, int | float) or latency < 0:
            raise fail("latency_ms", latency, "a number of milliseconds >= 0")
        self._fail_connect = opts.flag("fail_connect", False)
        faults = opts.get("faults", {})
        if not isinstance(faults, Mapping):
            raise fail("faults", faults, "a table of endpoint -> settings")
        try:
            self._faults = FaultInjector(faults, seed=self._seed)
            if latency:
                self._faults.set("*", latency_ms=float(latency))
        except ValueError as exc:
            raise ConfigError(str(exc), key=f"{opts.where}.faults") from None
        self._connected = False
        self._accounts: list[str] = list(config.accounts)

    @property
    def accounts(self) -> list[str]:
        return list(self._accounts)

    @property
    def broker(self) -> PaperBroker:
        """The sandbox broker behind this connection."""
        from ..sandbox import get_sandbox

        return get_sandbox(self._seed).broker(self._broker_name)

    @property
    def _institution(self) -> str:
        return self.config.institution or self.institution

    async def _enter(self, endpoint: str) -> PaperBroker:
        """Apply faults, require a connection, and bring the market up to now."""
        if not self._connected:
            raise ConnectionDown(self.name, "not connected; call connect() first")
        broker = self.broker
        await self._apply_faults(endpoint, broker)
        broker.process()
        return broker

    async def _apply_faults(self, endpoint: str, broker: PaperBroker) -> None:
        from ..sandbox.faults import InjectedFault

        try:
            await self._faults.apply(endpoint)
            await broker.faults.apply(endpoint)
        except InjectedFault as exc:
            raise AdapterError(self.name, str(exc)) from exc

    # -- lifecycle ------------------------------------------------------------------------
    async def connect_async(self) -> None:
        """Check the broker and accounts exist; raises `ConnectionDown` when it cannot."""
        broker = self.broker
        try:
            await self._apply_faults("connect", broker)
        except (AdapterError, TimeoutError) as exc:
            raise ConnectionDown(self.name, f"connect failed: {exc}") from exc
        if self._fail_connect:
            raise ConnectionDown(self.name, "connect failed: the sandbox refused the "
                                            "connection (option fail_connect)")
        from ..sandbox import Sandbox

        if not self._accounts:
            self._accounts = list(Sandbox.demo_accounts(self.name)) or broker.accounts
        missing = [a for a in self._accounts if a not in broker.accounts]
        if missing:
            raise ConnectionDown(self.name, f"connect failed: no account {missing[0]!r} at "
                                            f"sandbox broker {self._broker_name!r} (accounts: "
                                            f"{', '.join(broker.accounts)})")
        self._connected = True

    async def close_async(self) -> None:
        self._connected = False

    # -- reads ----------------------------------------------------------------------------
    async def balances_async(self) -> pd.DataFrame:
        """One row per account and currency."""
        broker = await self._enter("balances")
        now = broker.market.now()
        rows = [{"account": r.account, "currency": r.currency, "cash": r.cash,
                 "settled_cash": r.settled_cash, "buying_power": r.buying_power,
                 "equity": r.equity, "margin_init": r.margin_init,
                 "margin_maint": r.margin_maint} for r in broker.balances(self._accounts)]
        return frames.make(frames.BALANCES, rows, connection=self.name,
                           institution=self._institution, as_of=now)

    async def positions_async(self) -> pd.DataFrame:
        """Every open position, valued at the last price."""
        broker = await self._enter("positions")
        now = broker.market.now()
        rows = [{"account": p.account, "instrument": p.listing.key, "symbol": p.listing.symbol,
                 "asset_class": p.listing.asset_class.value, "quantity": p.quantity,
                 "avg_cost": p.avg_cost, "market_price": p.market_price,
                 "market_value": p.market_value, "currency": p.listing.currency,
                 "unrealized_pnl": p.unrealized_pnl,
                 **_contract_columns(p.listing.instrument, p.listing.exchange)}
                for p in broker.positions(self._accounts)]
        return frames.make(frames.POSITIONS, rows, connection=self.name,
                           institution=self._institution, as_of=now)

    async def orders_async(self) -> pd.DataFrame:
        """Every order of the connection's accounts, oldest first."""
        broker = await self._enter("orders")
        rows = [self._order_row(o) for o in broker.orders(self._accounts)]
        return frames.make(frames.ORDERS, rows, connection=self.name)

    async def fills_async(self, since: datetime | None = None) -> pd.DataFrame:
        """Fills of the connection's accounts, oldest first (at or after `since` if given)."""
        broker = await self._enter("fills")
        rows = [{"account": f.account, "fill_id": f.fill_id, "order_id": f.order_id,
                 "client_order_id": f.client_order_id, "instrument": f.key, "symbol": f.symbol,
                 "asset_class": broker.market.listing(f.key).asset_class.value,
                 "side": f.side.value, "quantity": float(f.quantity), "price": float(f.price),
                 "fee": float(f.fee), "fee_currency": f.fee_currency, "currency": f.currency,
                 "executed_at": f.executed_at, "trade_date": f.trade_date,
                 "settle_date": f.settle_date} for f in broker.fills(self._accounts, since)]
        return frames.make(frames.FILLS, rows, connection=self.name)

    async def quotes_async(self, symbols: Sequence[str]) -> pd.DataFrame:
        """Top of book for `symbols`; an unknown symbol is an `AdapterError` naming it."""
        broker = await self._enter("quotes")
        quotes = broker.market.quotes([self._listing(broker, s) for s in symbols])
        rows = [{"instrument": q.key, "symbol": q.symbol, "bid": float(q.bid),
                 "ask": float(q.ask), "last": float(q.last), "currency": q.currency,
                 "as_of": q.as_of} for q in quotes]
        return frames.make(frames.QUOTES, rows, connection=self.name)

    async def instruments_async(self, symbols: Sequence[str]) -> pd.DataFrame:
        """Instrument facts (tradable, fractionable, shortable, ticks) for `symbols`."""
        broker = await self._enter("instruments")
        rows = []
        for s in symbols:
            li = self._listing(broker, s)
            rows.append({"instrument": li.key, "symbol": li.symbol,
                         "asset_class": li.asset_class.value, "currency": li.currency,
                         "exchange": li.exchange, "tradable": li.tradable,
                         "fractionable": li.fractionable, "shortable": li.shortable,
                         "min_quantity": float(li.min_quantity),
                         "price_increment": float(li.tick),
                         "multiplier": float(li.multiplier)})
        return frames.make(frames.INSTRUMENTS, rows, connection=self.name)

    async def account_types_async(self) -> dict[str, str]:
        """"cash" or "margin" for each account of the connection."""
        broker = await self._enter("accounts")
        return {a: broker.account(a).type for a in self._accounts}

    async def market_open_async(self, symbol: str) -> bool | None:
        """Whether `symbol`'s exchange is open now at the sandbox market's clock."""
        broker = await self._enter("clock")
        return broker.market.is_open(self._listing(broker, symbol))

    def _listing(self, broker: PaperBroker, symbol: str) -> Any:
        from ..sandbox.market import UnknownSymbol

        try:
            return broker.market.listing(symbol)
        except UnknownSymbol as exc:
            raise AdapterError(self.name, str(exc)) from None

    # -- trading --------------------------------------------------------------------------
    async def submit_async(self, intent: OrderIntent, client_order_id: str) -> BrokerOrder:
        """Place `intent` with `client_order_id`; a broker refusal comes back REJECTED with
        its reason. Raises `SubmitUncertain` when the answer is lost (timeout, dropped)."""
        if not self.capabilities.trading:
            raise self._read_only("submit")
        from ..sandbox.broker import DuplicateClientOrderId

        account = intent.account or (self._accounts[0] if self._accounts else None)
        if account not in self._accounts:
            raise AdapterError(self.name, f"account {account!r} is not on connection "
                                          f"{self.name} (accounts: {', '.join(self._accounts)})")
        if not self._connected:
            raise ConnectionDown(self.name, "not connected; call connect() first")
        broker = self.broker
        try:
            await self._apply_faults("submit", broker)
        except TimeoutError as exc:
            raise SubmitUncertain(self.name, client_order_id, str(exc)) from exc
        broker.process()
        try:
            order = broker.submit(
                account, intent.symbol, intent.side, quantity=intent.quantity,
                notional=intent.notional, order_type=intent.order_type,
                time_in_force=intent.time_in_force, limit_price=intent.limit_price,
                stop_price=intent.stop_price, trail_price=intent.trail_price,
                trail_percent=intent.trail_percent, client_order_id=client_order_id)
        except DuplicateClientOrderId as exc:
            raise AdapterError(self.name, str(exc)) from exc
        if self._faults.take_drop("submit") or broker.faults.take_drop("submit"):
            raise SubmitUncertain(self.name, client_order_id,
                                  "connection dropped after the broker accepted the order")
        return self._broker_order(order)

    async def cancel_async(self, order_id: str) -> BrokerOrder:
        """Cancel an open order of this connection; returns its state afterwards."""
        if not self.capabilities.trading:
            raise self._read_only("cancel")
        from ..sandbox.broker import UnknownOrder

        broker = await self._enter("cancel")
        try:
            order = broker.order(order_id)
        except UnknownOrder as exc:
            raise AdapterError(self.name, str(exc)) from None
        if order.account not in self._accounts:
            raise AdapterError(self.name, f"order {order_id!r} is not on connection {self.name}")
        return self._broker_order(broker.cancel(order_id))

    async def lookup_async(self, client_order_id: str) -> BrokerOrder | None:
        """The order placed with `client_order_id` on this connection's accounts, or None."""
        if not self.capabilities.trading:
            raise self._read_only("lookup")
        broker = await self._enter("lookup")
        order = broker.find_client_order(client_order_id, self._accounts)
        return None if order is None else self._broker_order(order)

    # -- conversions ----------------------------------------------------------------------
    @staticmethod
    def _broker_order(o: Order) -> BrokerOrder:
        avg = o.avg_fill_price
        return BrokerOrder(order_id=o.order_id, client_order_id=o.client_order_id,
                           account=o.account, status=o.status,
                           filled_quantity=float(o.filled_quantity),
                           avg_fill_price=None if avg is None else float(avg), reason=o.reason,
                           submitted_at=o.submitted_at, raw={"order": o})

    @staticmethod
    def _order_row(o: Order) -> dict[str, Any]:
        li = o.listing
        return {"account": o.account, "order_id": o.order_id,
                "client_order_id": o.client_order_id, "instrument": li.key if li else None,
                "symbol": o.symbol, "asset_class": li.asset_class.value if li else None,
                "side": o.side.value, "order_type": o.order_type.value,
                "quantity": _num(None if o.notional is not None else o.quantity),
                "notional": _num(o.notional),
                "limit_price": _num(o.limit_price), "stop_price": _num(o.stop_price),
                "time_in_force": o.time_in_force.value, "status": o.status.value,
                "filled_quantity": float(o.filled_quantity),
                "avg_fill_price": _num(o.avg_fill_price), "submitted_at": o.submitted_at,
                "updated_at": o.updated_at}
