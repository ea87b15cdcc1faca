"""Crypto exchanges through ccxt: each exchange's request budget as ccxt describes it.

ccxt throttles by `rateLimit` (milliseconds per unit of cost) and gives each endpoint a cost;
brokerkit's operations map to the endpoints its crypto adapter calls. Read by
`execution.ratelimit`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["CCXT", "CcxtBudget"]


@dataclass(frozen=True, slots=True)
class CcxtBudget:
    """ccxt's `rateLimit` (ms per unit of cost) and the cost of brokerkit's operations."""

    rate_limit_ms: int
    costs: Mapping[str, int] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "costs", MappingProxyType(dict(self.costs)))


#: By ccxt exchange id.
CCXT: Mapping[str, CcxtBudget] = MappingProxyType({
    # source: ccxt 4.5.90 kraken.describe(): rateLimit 1000; private AddOrder and CancelOrder
    # cost 0 (Kraken's own trading counter governs them), Balance, OpenOrders and QueryOrders
    # 3, TradesHistory 6 (python/ccxt/kraken.py)
    "kraken": CcxtBudget(1000, {"submit": 0, "cancel": 0, "balances": 3, "positions": 3,
                                "orders": 3, "lookup": 3, "fills": 6},
                         "ccxt kraken.describe(): rateLimit 1000 ms"),
    # source: ccxt 4.5.90 coinbase.describe(): rateLimit 34 (~30 requests/s private); the
    # Advanced Trade v3 brokerage endpoints cost 1 (python/ccxt/coinbase.py)
    "coinbase": CcxtBudget(34, {}, "ccxt coinbase.describe(): rateLimit 34 ms"),
    # source: ccxt 4.5.90 binanceus.describe(): rateLimit 50 ("1200 requests per minute");
    # private GET account 10, openOrders 3, order 2, myTrades 10; POST order 1
    # (python/ccxt/binanceus.py, python/ccxt/binance.py)
    "binanceus": CcxtBudget(50, {"balances": 10, "positions": 10, "orders": 3, "lookup": 2,
                                 "fills": 10},
                            "ccxt binanceus.describe(): rateLimit 50 ms"),
})
