"""TradeStation API v3: the request limit."""

from __future__ import annotations

from .base import RateLimit

__all__ = ["REQUEST_RATE"]

#: Accounts, balances, positions and order details: 250 requests per 5 minutes each.
# source: https://api.tradestation.com/docs/fundamentals/rate-limiting
REQUEST_RATE = RateLimit(250, 300.0, "TradeStation: 250 requests per 5 min "
                         "(api.tradestation.com/docs/fundamentals/rate-limiting)")
