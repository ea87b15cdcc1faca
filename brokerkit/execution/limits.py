"""Risk limits from the `[risk]` table: `parse_risk` builds `RiskLimits`, `for_order` resolves.

Limits are set at four levels and the most specific one wins: a symbol's table over its asset
class's, over its connection's, over the global keys::

    [risk]
    max_order_quantity = 10000
    max_order_notional = 250000          # base currency
    max_position_quantity = 50000        # |position| per instrument after the order
    max_position_notional = 1000000
    max_gross_exposure = 5000000         # sum of |market value| + this order (global only)
    restricted_symbols = ["GME"]         # global only; `restricted = false` in a symbol frees one
    price_collar_pct = 10                # limit/stop price within ±10% of last
    max_orders_per_second = 20           # global or per connection
    allow_short = true                   # default false
    on_rate_limit = "reject"             # or "wait"; global or per connection
    duplicate_window_seconds = 5         # global only; 0 turns the check off
    [risk.connections.alpaca]
    max_order_notional = 50000
    [risk.asset_classes.crypto]
    max_order_notional = 10000
    [risk.symbols.TSLA]
    max_order_quantity = 100

An absent limit is no limit. Every wrong key or value raises `ConfigError` naming the file, the
dotted key and what was expected.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ConfigError, InvalidIntent
from ..model import AssetClass

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["EffectiveLimits", "RiskLimits", "parse_risk"]

OnRateLimit = Literal["reject", "wait"]


@dataclass(frozen=True, slots=True)
class EffectiveLimits:
    """The limits in force for one (connection, asset class, symbol); None means no limit.

    Money is in the base currency; quantities are in units of the instrument.
    """

    max_order_quantity: Decimal | None = None
    max_order_notional: Decimal | None = None
    max_position_quantity: Decimal | None = None
    max_position_notional: Decimal | None = None
    max_gross_exposure: Decimal | None = None
    price_collar_pct: Decimal | None = None
    restricted: bool = False
    allow_short: bool = False
    max_orders_per_second: float | None = None
    on_rate_limit: OnRateLimit = "reject"
    duplicate_window_seconds: float = 5.0


_LIMIT_NAMES = frozenset(f.name for f in fields(EffectiveLimits))
_POSITIVE_DECIMALS = ("max_order_quantity", "max_order_notional", "max_position_quantity",
                      "max_position_notional", "max_gross_exposure", "price_collar_pct")
# The keys each level may set. Exposure, the restricted list and the duplicate window are
# account-wide ideas, so only the global level sets them; rate settings belong to a connection.
_PER_ORDER = frozenset({"max_order_quantity", "max_order_notional", "max_position_quantity",
                        "max_position_notional", "price_collar_pct", "allow_short"})
_GLOBAL = _PER_ORDER | {"max_gross_exposure", "restricted_symbols", "max_orders_per_second",
                        "on_rate_limit", "duplicate_window_seconds",
                        "connections", "asset_classes", "symbols"}
_CONNECTION = _PER_ORDER | {"max_orders_per_second", "on_rate_limit"}
_ASSET_CLASS = _PER_ORDER
_SYMBOL = _PER_ORDER | {"restricted"}

_Key = tuple[str | None, AssetClass | None, str | None]
_CACHE_SIZE = 4096


@dataclass(frozen=True)
class RiskLimits:
    """Parsed `[risk]` limits at their four levels; `for_order` resolves them (cached)."""

    global_limits: Mapping[str, Any] = field(default_factory=dict)
    restricted_symbols: frozenset[str] = frozenset()
    connections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    asset_classes: Mapping[AssetClass, Mapping[str, Any]] = field(default_factory=dict)
    symbols: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    _cache: dict[_Key, EffectiveLimits] = field(default_factory=dict, init=False, repr=False,
                                                compare=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> RiskLimits:
        """The limits of `settings.risk`, checking connection names against `settings`."""
        file = str(settings.source) if settings.source else None
        return parse_risk(settings.risk, file, known_connections=settings.connections)

    def for_order(self, connection: str | None, asset_class: AssetClass | str | None,
                  symbol: str | None) -> EffectiveLimits:
        """The limits in force for an order: symbol over asset class over connection over global.

        Any of the three may be None to skip its level (e.g. `for_order("alpaca", None, None)`
        for the connection's rate settings). Results are cached: this is on the order hot path.
        """
        if asset_class is not None and not isinstance(asset_class, AssetClass):
            asset_class = AssetClass.parse(asset_class, "asset_class")
        if symbol is not None:
            symbol = symbol.strip().upper()
        key = (connection, asset_class, symbol)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        merged: dict[str, Any] = dict(self.global_limits)
        merged["restricted"] = symbol is not None and symbol in self.restricted_symbols
        for level in (self.connections.get(connection) if connection is not None else None,
                      self.asset_classes.get(asset_class) if asset_class is not None else None,
                      self.symbols.get(symbol) if symbol is not None else None):
            if level:
                merged.update(level)
        limits = EffectiveLimits(**merged)
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[key] = limits
        return limits


def parse_risk(raw: Mapping[str, Any] | None, file: str | None = None, *,
               known_connections: Collection[str] | None = None) -> RiskLimits:
    """Check the raw `[risk]` table and return its `RiskLimits`.

    Raises `ConfigError` naming the file and the dotted key (`risk.symbols.TSLA.max_order_quantity`)
    for unknown keys, wrong types, non-positive limits, and, when `known_connections` is given,
    connection tables naming no configured connection.
    """
    p = _Parser(file or "<settings>")
    raw = p.table(raw or {}, "risk")
    global_limits = p.level(raw, "risk", _GLOBAL)
    restricted = p.symbol_list(raw.get("restricted_symbols", []), "risk.restricted_symbols")

    connections: dict[str, Mapping[str, Any]] = {}
    for name, body in p.table(raw.get("connections", {}), "risk.connections").items():
        key = f"risk.connections.{name}"
        if known_connections is not None and name not in known_connections:
            raise p.fail(key, "names no configured connection",
                         "one of " + (", ".join(sorted(known_connections)) or "(none configured)"))
        connections[name] = p.level(p.table(body, key), key, _CONNECTION)

    asset_classes: dict[AssetClass, Mapping[str, Any]] = {}
    for name, body in p.table(raw.get("asset_classes", {}), "risk.asset_classes").items():
        key = f"risk.asset_classes.{name}"
        try:
            ac = AssetClass.parse(name)
        except InvalidIntent:
            raise p.fail(key, "is not an asset class",
                         "one of " + ", ".join(a.value for a in AssetClass)) from None
        if ac in asset_classes:
            raise p.fail(key, f"repeats asset class {ac.value!r}", "each asset class once")
        asset_classes[ac] = p.level(p.table(body, key), key, _ASSET_CLASS)

    symbols: dict[str, Mapping[str, Any]] = {}
    for name, body in p.table(raw.get("symbols", {}), "risk.symbols").items():
        key = f"risk.symbols.{name}"
        symbol = p.symbol(name, key)
        if symbol in symbols:
            raise p.fail(key, f"repeats symbol {symbol!r}", "each symbol once")
        symbols[symbol] = p.level(p.table(body, key), key, _SYMBOL)

    return RiskLimits(global_limits=MappingProxyType(global_limits),
                      restricted_symbols=restricted,
                      connections=MappingProxyType(connections),
                      asset_classes=MappingProxyType(asset_classes),
                      symbols=MappingProxyType(symbols))


class _Parser:
    """Reads one `[risk]` table, failing with the file and the dotted key."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, key: str, message: str, expected: str) -> ConfigError:
        return ConfigError(message, file=self.file, key=key, expected=expected)

    def table(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(key, f"is {value!r}", "a table")
        return dict(value)

    def known(self, data: Mapping[str, Any], key: str, allowed: frozenset[str]) -> None:
        for k in data:
            if k not in allowed:
                hint = " (set at the global [risk] level only)" if k in _GLOBAL else ""
                raise self.fail(f"{key}.{k}", f"unknown key here{hint}",
                                "one of " + ", ".join(sorted(allowed)))

    def level(self, data: Mapping[str, Any], key: str, allowed: frozenset[str]) -> dict[str, Any]:
        """The limits one level sets, parsed; keys it does not set are absent."""
        self.known(data, key, allowed)
        out: dict[str, Any] = {}
        for name, value in data.items():
            if name not in _LIMIT_NAMES:
                continue  # sub-tables and the restricted list are read by the caller
            where = f"{key}.{name}"
            if name in _POSITIVE_DECIMALS:
                out[name] = self.decimal(value, where)
            elif name in ("allow_short", "restricted"):
                if not isinstance(value, bool):
                    raise self.fail(where, f"is {value!r}", "true or false")
                out[name] = value
            elif name == "max_orders_per_second":
                out[name] = float(self.decimal(value, where))
            elif name == "duplicate_window_seconds":
                out[name] = float(self.decimal(value, where, allow_zero=True))
            elif name == "on_rate_limit":
                if value not in ("reject", "wait"):
                    raise self.fail(where, f"is {value!r}", "'reject' or 'wait'")
                out[name] = value
        return out

    def decimal(self, value: Any, key: str, *, allow_zero: bool = False) -> Decimal:
        expected = "a number >= 0" if allow_zero else "a positive number"
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise self.fail(key, f"is {value!r}", expected)
        d = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        if not d.is_finite() or d < 0 or (d == 0 and not allow_zero):
            raise self.fail(key, f"is {value!r}", expected)
        return d

    def symbol(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"is {value!r}", "a symbol like 'AAPL' or 'BTC/USD'")
        return value.strip().upper()

    def symbol_list(self, value: Any, key: str) -> frozenset[str]:
        if not isinstance(value, list | tuple):
            raise self.fail(key, f"is {value!r}", "a list of symbols")
        return frozenset(self.symbol(v, f"{key}[{i}]") for i, v in enumerate(value))
