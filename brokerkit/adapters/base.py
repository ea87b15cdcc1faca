"""The adapter contract: what every institution's adapter must do.

An adapter is one connection to one institution. Subclasses implement coroutine methods only;
each runs on the runtime loop (`brokerkit.runtime`), and this base gives every one its
synchronous twin, written once here.

=====================  =========  ===============================================================
method                 required   returns
=====================  =========  ===============================================================
connect_async          yes        None; raises on failure (auth, network)
close_async            yes        None; idempotent
balances_async         yes        `frames.BALANCES`
positions_async        yes        `frames.POSITIONS`
orders_async           yes        `frames.ORDERS` (open and recent)
open_orders_async      trading    `frames.ORDERS`: every open order at the connection, whoever
                                  placed it (all pages; default: the open rows of orders_async)
fills_async            yes        `frames.FILLS`, those executed at or after `since` if given
quotes_async           yes        `frames.QUOTES` for the given symbols
instruments_async      yes        `frames.INSTRUMENTS` for the given symbols
account_types_async    trading    {account: "cash" | "margin"}; {} when the broker won't say
market_open_async      trading    whether the symbol's market is open now; None if unknown
submit_async           trading    `BrokerOrder` acknowledgement; raises `SubmitUncertain` when
                                  it cannot know whether the broker took the order
cancel_async           trading    `BrokerOrder` after the cancel request
cancel_all_async       trading    [`BrokerOrder`]: cancel every open order in as few requests as
                                  the broker allows (default: cancel_async for each open order)
lookup_async           trading    `BrokerOrder` or None, by client order id
=====================  =========  ===============================================================

Read-only adapters (statement imports) leave the trading methods alone: the base refuses.
`corporate_actions_async(since)` (optional) returns the `frames.CORPORATE_ACTIONS` the broker
applied at or after `since`; the default is the typed empty frame (the broker reports none).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from .. import runtime
from ..errors import AdapterError, ConfigError
from ..model import AssetClass, OrderIntent, OrderStatus, OrderType, Violation

if TYPE_CHECKING:
    import pandas as pd

    from ..config import ConnectionConfig
    from ..execution.sharedlimit import RateLimitStore
    from ..secrets import Secret

__all__ = ["Adapter", "BrokerOrder", "Capabilities", "Health", "Options", "cancel_listed",
           "fills_frame"]


@dataclass(frozen=True)
class Capabilities:
    """What an adapter can do; routing and pre-trade checks read it."""

    trading: bool = False
    asset_classes: frozenset[AssetClass] = frozenset()
    fractional: bool = False
    notional: bool = False
    order_types: frozenset[OrderType] = frozenset()
    notional_order_types: frozenset[OrderType] = frozenset({OrderType.MARKET})
    short_selling: bool = False

    @property
    def read_only(self) -> bool:
        return not self.trading


@dataclass
class Health:
    """A connection's health as the registry last saw it."""

    status: str = "disconnected"  # connected | degraded | down | disconnected
    latency_ms: float | None = None
    last_error: str | None = None
    checked_at: datetime | None = None


@dataclass(frozen=True)
class BrokerOrder:
    """A broker's view of one order, as returned by submit, cancel and lookup."""

    order_id: str
    client_order_id: str
    account: str
    status: OrderStatus
    filled_quantity: float = 0.0
    avg_fill_price: float | None = None
    reason: str = ""
    submitted_at: datetime | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


class Options(dict[str, Any]):
    """A connection's options, checked against what its adapter takes: an unknown key or a
    wrong value raises `ConfigError` naming `connections.<name>.options.<key>`."""

    def __init__(self, config: ConnectionConfig, allowed: Collection[str]) -> None:
        from ..config import COMMON_OPTIONS

        super().__init__(config.options)
        self.where = f"connections.{config.name}.options"
        known = set(allowed) | COMMON_OPTIONS
        unknown = sorted(set(self) - known)
        if unknown:
            raise ConfigError("unknown option", key=f"{self.where}.{unknown[0]}",
                              expected="one of " + ", ".join(sorted(known)))

    def fail(self, key: str, value: Any, expected: str) -> ConfigError:
        """The error for option `key` holding `value` where `expected` was wanted."""
        return ConfigError(f"is {value!r}", key=f"{self.where}.{key}", expected=expected)

    def flag(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, value, "true or false")
        return value


class Adapter(runtime.Bridged):
    """One connection to one institution. Subclass, set `institution` and `capabilities`, and
    implement the coroutine methods of the table in this module's docstring."""

    institution: ClassVar[str] = ""
    capabilities: ClassVar[Capabilities] = Capabilities()
    #: The book's shared rate-limit store, handed down by the brokerage service (None: this
    #: process limits alone). An adapter that limits its own requests shares its limiters
    #: through it, one budget per broker credential (`RateLimitStore.share`).
    rate_limits: RateLimitStore | None = None

    def __init__(self, config: ConnectionConfig, secrets: Mapping[str, Secret] | None = None
                 ) -> None:
        self.config = config
        self.name = config.name
        self.secrets: Mapping[str, Secret] = dict(secrets or {})
        self.health = Health()
        if config.read_only and self.capabilities.trading:  # this connection only reads
            self.capabilities = Capabilities(
                trading=False, asset_classes=type(self).capabilities.asset_classes)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.health.status}>"

    @property
    def accounts(self) -> list[str]:
        """Account ids known on this connection (filled in by `connect`)."""
        return list(self.config.accounts)

    # -- lifecycle ------------------------------------------------------------------------
    async def connect_async(self) -> None:
        raise NotImplementedError

    async def close_async(self) -> None:
        raise NotImplementedError

    def connect(self) -> None:
        runtime.run(self.connect_async())

    def close(self) -> None:
        runtime.run(self.close_async())

    async def ping_async(self) -> float:
        """Round-trip a cheap call (balances) and return its latency in milliseconds."""
        t0 = time.perf_counter()
        await self.balances_async()
        return (time.perf_counter() - t0) * 1000

    # -- reads ----------------------------------------------------------------------------
    async def balances_async(self) -> pd.DataFrame:
        raise NotImplementedError

    async def positions_async(self) -> pd.DataFrame:
        raise NotImplementedError

    async def orders_async(self) -> pd.DataFrame:
        raise NotImplementedError

    async def open_orders_async(self) -> pd.DataFrame:
        """Every open order at the connection, whoever placed it (another process, another
        tool), oldest first. This default keeps the open rows of `orders_async`: adapters whose
        broker lists orders in a window (the latest N) override it to read every page."""
        orders = await self.orders_async()
        is_open = orders["status"].map(lambda s: OrderStatus.parse(s).is_open).astype(bool)
        return orders[is_open].reset_index(drop=True)

    async def fills_async(self, since: datetime | None = None) -> pd.DataFrame:
        """Fills, oldest first; with `since`, only those executed at or after it (an adapter
        may return more, never fewer: the book drops fills it already holds)."""
        raise NotImplementedError

    async def corporate_actions_async(self, since: datetime | None = None) -> pd.DataFrame:
        """Corporate actions (splits...) the broker applied to the connection's positions,
        effective at or after `since` (all when None): one row per action and account whose
        position it changed. This default is the typed empty frame: an adapter whose broker
        reports them overrides it."""
        from .. import frames

        return frames.empty(frames.CORPORATE_ACTIONS)

    async def quotes_async(self, symbols: Sequence[str]) -> pd.DataFrame:
        raise NotImplementedError

    async def instruments_async(self, symbols: Sequence[str]) -> pd.DataFrame:
        raise NotImplementedError

    async def account_types_async(self) -> dict[str, str]:
        """"cash" or "margin" per account; empty when the broker does not say."""
        return {}

    async def market_open_async(self, symbol: str) -> bool | None:
        """Whether `symbol`'s market is open now; None when the adapter cannot tell."""
        return None

    def balances(self) -> pd.DataFrame:
        return runtime.run(self.balances_async())

    def positions(self) -> pd.DataFrame:
        return runtime.run(self.positions_async())

    def orders(self) -> pd.DataFrame:
        return runtime.run(self.orders_async())

    def open_orders(self) -> pd.DataFrame:
        return runtime.run(self.open_orders_async())

    def fills(self, since: datetime | None = None) -> pd.DataFrame:
        return runtime.run(self.fills_async(since))

    def corporate_actions(self, since: datetime | None = None) -> pd.DataFrame:
        return runtime.run(self.corporate_actions_async(since))

    def quotes(self, symbols: Sequence[str]) -> pd.DataFrame:
        return runtime.run(self.quotes_async(symbols))

    def instruments(self, symbols: Sequence[str]) -> pd.DataFrame:
        return runtime.run(self.instruments_async(symbols))

    def account_types(self) -> dict[str, str]:
        return runtime.run(self.account_types_async())

    def market_open(self, symbol: str) -> bool | None:
        return runtime.run(self.market_open_async(symbol))

    # -- trading --------------------------------------------------------------------------
    def check_intent(self, intent: OrderIntent, instrument: Mapping[str, Any] | None
                     ) -> list[Violation]:
        """The broker's own rules an order must meet, checked before it is sent (pure, no
        I/O): supported order types, which types may be notional, prices on the tick.
        `instrument` is the order's row of `instruments()`. Adapters extend it with rules
        their broker enforces (e.g. Alpaca's fractional-order rules)."""
        out: list[Violation] = []
        caps = self.capabilities
        if caps.order_types and intent.order_type not in caps.order_types:
            out.append(Violation("UNSUPPORTED_ORDER", f"{self.name} does not take "
                                 f"{intent.order_type.value} orders"))
        if intent.notional is not None and (
                not caps.notional or intent.order_type not in caps.notional_order_types):
            kinds = ", ".join(sorted(t.value for t in caps.notional_order_types)) \
                if caps.notional else "none"
            out.append(Violation("UNSUPPORTED_ORDER", f"{self.name} takes notional amounts "
                                 f"only on these order types: {kinds}"))
        tick = instrument.get("price_increment") if instrument else None
        if tick and tick == tick and tick > 0:
            step = Decimal(repr(float(tick)))
            for name in ("limit_price", "stop_price"):
                price = getattr(intent, name)
                if price is not None and price % step:
                    out.append(Violation("PRICE_NOT_ON_TICK", f"{name} {price} is not a "
                                         f"multiple of the tick {step} for {intent.symbol}"))
        return out

    async def submit_async(self, intent: OrderIntent, client_order_id: str) -> BrokerOrder:
        raise self._read_only("submit")

    async def cancel_async(self, order_id: str) -> BrokerOrder:
        raise self._read_only("cancel")

    async def lookup_async(self, client_order_id: str) -> BrokerOrder | None:
        raise self._read_only("lookup")

    async def cancel_all_async(self) -> list[BrokerOrder]:
        """Cancel every open order at the connection (the kill switch's call); returns each
        order's state after its cancel request. An order whose cancel failed comes back in the
        state it was listed in, with the failure as `reason`. This default cancels the rows of
        `open_orders_async` one by one; adapters whose broker has a cancel-all call use it."""
        if not self.capabilities.trading:
            raise self._read_only("cancel")
        return [await cancel_listed(self, row)
                for row in (await self.open_orders_async()).itertuples(index=False)]

    def submit(self, intent: OrderIntent, client_order_id: str) -> BrokerOrder:
        return runtime.run(self.submit_async(intent, client_order_id))

    def cancel(self, order_id: str) -> BrokerOrder:
        return runtime.run(self.cancel_async(order_id))

    def lookup(self, client_order_id: str) -> BrokerOrder | None:
        return runtime.run(self.lookup_async(client_order_id))

    def cancel_all(self) -> list[BrokerOrder]:
        return runtime.run(self.cancel_all_async())

    def _read_only(self, what: str) -> AdapterError:
        if self.capabilities.trading:
            return AdapterError(self.name, f"{type(self).__name__} does not implement {what}")
        return AdapterError(self.name, f"read-only connection: cannot {what}")


async def cancel_listed(adapter: Adapter, row: Any) -> BrokerOrder:
    """`adapter.cancel_async` of one row (a named tuple) of `open_orders_async`; a refusal
    (`AdapterError`) comes back as the order in its listed state, with the reason."""
    try:
        return await adapter.cancel_async(str(row.order_id))
    except AdapterError as exc:
        return BrokerOrder(order_id=str(row.order_id),
                           client_order_id=str(row.client_order_id or ""),
                           account=str(row.account or ""), status=OrderStatus.parse(row.status),
                           reason=exc.message)


def fills_frame(rows: Sequence[Mapping[str, Any]], connection: str) -> pd.DataFrame:
    """A `frames.FILLS` frame of an adapter's `rows`, with each fill's trade date (where the
    row has none) and settle date from `post_trade.settlement`, the one source of both."""
    from .. import frames
    from ..post_trade.settlement import with_settlement

    return with_settlement(frames.make(frames.FILLS, rows, connection=connection))
