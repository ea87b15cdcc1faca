"""Order routing: which connection (and account) an intent goes to, or why none.

`route(intent, routing, connections)` applies these rules in order, and the first that applies
decides; a rule that applies but cannot be honoured is `NO_ROUTE`, never a fall-through to a
broker the user did not mean:

1. **explicit**: `intent.connection` must exist, trade, and trade the asset class; an explicit
   `intent.account` must be one of its accounts.
2. **account**: `intent.account` goes to the connection `[routing.accounts]` maps it to, else
   to the one trading connection that lists it among its accounts.
3. **market**: `[routing.markets] XETRA = "ibkr"` sends what trades on that exchange (the
   exchange of a key such as `STK:SAP@XETRA`) to that connection.
4. **asset class**: `[routing] equity = "alpaca"`, `crypto = "kraken"`... else
   `default = "paper-us"`.
5. **only**: with no routing entry, the one trading connection that trades the asset class
   and has an account that can hold the instrument.

Then the **account**: the order's own, else the connection's account that can hold what the
order buys (`AccountProfile`: its kind, the currencies it holds, the markets and asset classes
it trades), the most specific first: SAP in EUR on XETRA goes to the account that holds EUR and
trades XETRA, crypto to the connection's crypto account. An account that cannot hold it is
`NO_ROUTE` naming why ("no account on 'ibkr' trades EUR equity on XETRA"), never a EUR debit
in a USD account. A connection whose accounts carry no profile leaves the account to the
connection (its first account).

Read-only connections never route. The asset class is the intent's, else the instrument lookup's
answer, else read from the symbol or canonical key (`BTC/USD` crypto, `EUR.USD` fx, an OCC
symbol option, `STK:SAP@XETRA` equity, anything else equity). The currency is the intent's,
else the key's or its exchange's (`venues.currencies.EXCHANGE_CURRENCIES`); a plain symbol
of a security is its US listing (USD), as in instrument keys::

    [routing]
    default = "paper-us"
    equity = "alpaca"
    crypto = "kraken"
    [routing.accounts]
    U1234567 = "ibkr"
    [routing.markets]
    XETRA = "ibkr"
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, InvalidIntent
from ..model import AccountProfile, AssetClass, Instrument, OrderIntent, Violation
from ..venues.currencies import CURRENCIES, EXCHANGE_CURRENCIES

if TYPE_CHECKING:
    from ..adapters.base import Capabilities
    from ..config import ConnectionConfig, Settings

__all__ = [
    "Holding",
    "Route",
    "RouteTarget",
    "RoutingTable",
    "infer_asset_class",
    "parse_routing",
    "route",
]

Lookup = Callable[[str], AssetClass | str | None]

_FX = re.compile(r"([A-Z]{3})\.([A-Z]{3})")
_OCC = re.compile(r"[A-Z][A-Z0-9.]{0,5} *\d{6}[CP]\d{8}")
#: A future's local symbol: root, month code, year digit(s) (ESZ6, CLF27); no stock ticker
#: takes this shape (tickers carry no digits in the US, and only digits in Asia).
_FUTURE = re.compile(r"[A-Z]{1,3}[FGHJKMNQUVXZ]\d{1,2}")


@dataclass(frozen=True, slots=True)
class RouteTarget:
    """What routing needs to know of one connection.

    `accounts` are the account ids it serves, configured or discovered; an empty tuple means
    none are known, and then an account can reach it only through `[routing.accounts]`.
    `profiles` say what some of them may hold (an account without one is not restricted).
    An ETF routes wherever equities do.
    """

    name: str
    type: str
    trading: bool
    asset_classes: frozenset[AssetClass] = frozenset()
    accounts: tuple[str, ...] = ()
    profiles: tuple[AccountProfile, ...] = ()

    def profile(self, account: str) -> AccountProfile | None:
        """The profile of `account`, None when nothing is known of it."""
        return next((p for p in self.profiles if p.account == account), None)

    def account_for(self, held: Holding, account: str | None = None
                    ) -> tuple[str | None, str | None]:
        """(account, None) for the account that takes an order for `held` (None: the
        connection's default, when no account has a profile), or (None, why not).

        `account`, when given, is checked; else the most specific able account is chosen,
        in the order of `accounts`."""
        if account is not None:
            p = self.profile(account)
            why = p.refusal(held.asset_class, held.market, held.currencies) if p else None
            return (None, f"account {why}") if why else (account, None)
        if not self.profiles:
            return None, None
        able: list[tuple[int, str]] = []
        refusals: list[str] = []
        for acct in self.accounts:
            p = self.profile(acct)
            why = p.refusal(held.asset_class, held.market, held.currencies) if p else None
            if why:
                refusals.append(why)
            else:
                fit = p.fit(held.asset_class, held.market, held.currencies) if p else 0
                able.append((fit, acct))
        if not able:
            return None, f"no account on {self.name!r} trades {held} ({'; '.join(refusals)})"
        best = max(fit for fit, _ in able)
        return next(acct for fit, acct in able if fit == best), None

    @property
    def read_only(self) -> bool:
        return not self.trading

    def trades(self, asset_class: AssetClass) -> bool:
        """True when this connection can place orders in `asset_class`."""
        ac = self.asset_classes
        return self.trading and (asset_class in ac
                                 or (asset_class is AssetClass.ETF and AssetClass.EQUITY in ac))

    @classmethod
    def of(cls, config: ConnectionConfig, capabilities: Capabilities,
           accounts: Collection[str] = ()) -> RouteTarget:
        """A target from a connection's config and its adapter's capabilities.

        It trades only when the adapter can, the config does not say `read_only`, and the
        connection is enabled; `accounts` adds discovered accounts to the configured ones.
        """
        trading = capabilities.trading and not config.read_only and config.enabled
        return cls(config.name, config.type, trading, frozenset(capabilities.asset_classes),
                   tuple(dict.fromkeys([*config.accounts, *accounts])),
                   tuple(config.account_profiles.values()))


@dataclass(frozen=True, slots=True)
class Holding:
    """What an order would make its account hold: an asset class on a market ("" when not
    known) settling in `currencies` (() when not known)."""

    asset_class: AssetClass
    market: str = ""
    currencies: tuple[str, ...] = ()

    def __str__(self) -> str:
        ccy = "/".join(self.currencies)
        on = f" on {self.market}" if self.market else ""
        return f"{ccy + ' ' if ccy else ''}{self.asset_class.value}{on}"

    @classmethod
    def of(cls, intent: OrderIntent, asset_class: AssetClass) -> Holding:
        """The holding of `intent` (see the module doc for where each part comes from)."""
        inst = intent.instrument
        market = inst.exchange if inst is not None and asset_class not in (
            AssetClass.FX, AssetClass.CRYPTO) else ""
        body = intent.symbol.partition(":")[2] if inst is not None else intent.symbol
        if asset_class is AssetClass.FX:
            m = _FX.fullmatch(body)
            pair = (m[1], m[2]) if m else ()
            return cls(asset_class, "", pair or ((intent.currency,) if intent.currency else ()))
        ccy = intent.currency
        if ccy is None and asset_class is AssetClass.CRYPTO and "/" in body:
            ccy = body.partition("/")[2] or None
        if ccy is None and market:
            ccy = EXCHANGE_CURRENCIES.get(market)
        if ccy is None and inst is not None and inst.currency:
            ccy = inst.currency
        if ccy is None and not market and asset_class in _US_BY_DEFAULT:
            ccy = "USD"  # a plain symbol is its US listing, as in instrument keys
        return cls(asset_class, market, (ccy,) if ccy else ())


#: Securities whose plain symbol (no exchange) names the US listing (`Instrument.key`).
_US_BY_DEFAULT = frozenset({AssetClass.EQUITY, AssetClass.ETF, AssetClass.FUND,
                            AssetClass.OPTION, AssetClass.BOND})


@dataclass(frozen=True, slots=True)
class Route:
    """Where an order goes; `rule` says which routing rule chose it."""

    connection: str
    account: str | None
    asset_class: AssetClass
    rule: str  # explicit | account | market | asset_class | default | only


@dataclass(frozen=True)
class RoutingTable:
    """The parsed `[routing]` table."""

    asset_classes: Mapping[AssetClass, str] = field(default_factory=dict)
    default: str | None = None
    accounts: Mapping[str, str] = field(default_factory=dict)
    markets: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> RoutingTable:
        """The routing of `settings`, checking connection names against its connections."""
        file = str(settings.source) if settings.source else None
        return parse_routing(settings.routing, file, known_connections=settings.connections)


def parse_routing(raw: Mapping[str, Any] | None, file: str | None = None, *,
                  known_connections: Collection[str] | None = None) -> RoutingTable:
    """Check the raw `[routing]` table and return its `RoutingTable`.

    Keys are `default`, `accounts` (a table of account id to connection), `markets` (a table
    of exchange name to connection) and asset classes (`equity`, `crypto`, ...), each naming
    a connection. Raises `ConfigError` naming the file
    and the dotted key for anything else, and, when `known_connections` is given, for a
    connection name that is not configured.
    """
    where = file or "<settings>"
    expected_keys = "default, accounts, markets, or an asset class: " + \
        ", ".join(a.value for a in AssetClass)

    def fail(key: str, message: str, expected: str) -> ConfigError:
        return ConfigError(message, file=where, key=key, expected=expected)

    def connection(value: Any, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise fail(key, f"is {value!r}", "a connection name")
        if known_connections is not None and value not in known_connections:
            raise fail(key, f"names no configured connection {value!r}",
                       "one of " + (", ".join(sorted(known_connections)) or "(none configured)"))
        return value

    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise fail("routing", f"is {raw!r}", "a table")
    by_class: dict[AssetClass, str] = {}
    default: str | None = None
    accounts: dict[str, str] = {}
    markets: dict[str, str] = {}
    for key, value in raw.items():
        dotted = f"routing.{key}"
        if key == "default":
            default = connection(value, dotted)
        elif key == "accounts":
            if not isinstance(value, Mapping):
                raise fail(dotted, f"is {value!r}", "a table of account id = connection")
            for account, target in value.items():
                accounts[str(account)] = connection(target, f"{dotted}.{account}")
        elif key == "markets":
            if not isinstance(value, Mapping):
                raise fail(dotted, f"is {value!r}", "a table of exchange = connection")
            for market, target in value.items():
                if str(market).upper() not in EXCHANGE_CURRENCIES:
                    raise fail(f"{dotted}.{market}", "unknown exchange",
                               "one of " + ", ".join(sorted(EXCHANGE_CURRENCIES)))
                markets[str(market).upper()] = connection(target, f"{dotted}.{market}")
        else:
            try:
                ac = AssetClass.parse(key)
            except InvalidIntent:
                raise fail(dotted, "unknown key", expected_keys) from None
            if ac in by_class:
                raise fail(dotted, f"repeats asset class {ac.value!r}", "each asset class once")
            by_class[ac] = connection(value, dotted)
    return RoutingTable(MappingProxyType(by_class), default, MappingProxyType(accounts),
                        MappingProxyType(markets))


def infer_asset_class(symbol: str, lookup: Lookup | None = None) -> AssetClass:
    """The asset class of `symbol`: `lookup(symbol)` when it knows, else read from the symbol.

    `BTC/USD` is crypto, `EUR.USD` (two ISO currencies) fx, `AAPL261218C00150000` (OCC,
    spaces allowed) option, `ESZ6` (root, month code, year) future, a canonical key
    (`STK:SAP@XETRA`, `CRYPTO:BTC/USD`) its prefix's class, anything else equity.
    """
    if lookup is not None:
        known = lookup(symbol)
        if known is not None:
            return AssetClass.parse(known, "asset_class")
    s = symbol.strip().upper()
    if ":" in s:
        try:
            return Instrument.parse_key(s).asset_class
        except ValueError:
            pass  # not a key after all: read it as a symbol
    if "/" in s:
        return AssetClass.CRYPTO
    m = _FX.fullmatch(s)
    if m and m[1] in CURRENCIES and m[2] in CURRENCIES:
        return AssetClass.FX
    if _OCC.fullmatch(s):
        return AssetClass.OPTION
    if _FUTURE.fullmatch(s):
        return AssetClass.FUTURE
    return AssetClass.EQUITY


def route(intent: OrderIntent, settings_routing: RoutingTable | Mapping[str, Any],
          connections: Mapping[str, RouteTarget], *,
          lookup: Lookup | None = None) -> Route | Violation:
    """The `Route` for `intent`, or a `NO_ROUTE` violation naming what was tried.

    `settings_routing` is a `RoutingTable` or the raw `[routing]` table (parsed here, raising
    `ConfigError` when wrong); `lookup` maps a symbol to its asset class from instrument facts.
    """
    table = settings_routing if isinstance(settings_routing, RoutingTable) \
        else parse_routing(settings_routing)
    ac = intent.asset_class or infer_asset_class(intent.symbol, lookup)
    held = Holding.of(intent, ac)
    what = f"{intent.symbol} ({ac.value})"

    def no_route(why: str) -> Violation:
        return Violation("NO_ROUTE", f"no route for {what}: {why}")

    def refusal(name: str, via: str) -> str | None:
        """Why connection `name`, chosen `via` a rule, cannot take the order; None if it can."""
        target = connections.get(name)
        if target is None:
            known = ", ".join(sorted(connections)) or "none"
            return f"{via} {name!r}, which is not a connection (known: {known})"
        if target.read_only:
            return f"{via} {name!r}, which is read-only"
        if not target.trades(ac):
            trades = ", ".join(sorted(a.value for a in target.asset_classes)) or "nothing"
            return f"{via} {name!r}, which does not trade {ac.value} (it trades {trades})"
        return None

    def placed(name: str, account: str | None, rule: str) -> Route | Violation:
        """The route to connection `name` (already able) and the account that can hold it."""
        chosen, why = connections[name].account_for(held, account)
        if why:
            return no_route(why)
        return Route(name, chosen, ac, rule)

    account = intent.account
    if intent.connection is not None:
        name = intent.connection
        why = refusal(name, "the order names connection")
        if why:
            return no_route(why)
        if account is not None:
            mapped = table.accounts.get(account)
            if mapped is not None and mapped != name:
                return no_route(f"account {account!r} belongs to {mapped!r} in "
                                f"[routing.accounts], not to the named connection {name!r}")
            if mapped is None and account not in connections[name].accounts:
                known = ", ".join(connections[name].accounts) or "none known"
                return no_route(f"account {account!r} is not one of {name!r}'s accounts "
                                f"({known}); list it in [routing.accounts]")
        return placed(name, account, "explicit")

    if account is not None:
        mapped = table.accounts.get(account)
        if mapped is not None:
            why = refusal(mapped, f"[routing.accounts] sends account {account!r} to")
            return no_route(why) if why else placed(mapped, account, "account")
        owners = sorted(t.name for t in connections.values() if account in t.accounts)
        able = [n for n in owners if refusal(n, "") is None]
        if len(able) == 1:
            return placed(able[0], account, "account")
        if len(able) > 1:
            return no_route(f"account {account!r} is on several trading connections "
                            f"({', '.join(able)}); name one, or map it in [routing.accounts]")
        if owners:
            return no_route("; ".join(str(refusal(n, f"account {account!r} is on"))
                                      for n in owners))
        return no_route(f"account {account!r} is on no connection and not in "
                        f"[routing.accounts]")

    mapped = table.markets.get(held.market) if held.market else None
    rule, via = "market", f"[routing.markets] {held.market} sends it to"
    if mapped is None:
        mapped = table.asset_classes.get(ac)
        if mapped is None and ac is AssetClass.ETF:
            mapped = table.asset_classes.get(AssetClass.EQUITY)
        rule, via = "asset_class", f"[routing] {ac.value} sends it to"
    if mapped is None and table.default is not None:
        mapped, rule, via = table.default, "default", "[routing] default sends it to"
    if mapped is not None:
        why = refusal(mapped, via)
        return no_route(why) if why else placed(mapped, None, rule)

    trading = sorted(t.name for t in connections.values() if t.trades(ac))
    able = [n for n in trading if connections[n].account_for(held)[1] is None]
    if len(able) == 1:
        return placed(able[0], None, "only")
    if len(able) > 1:
        tried = f"several trading connections trade {held} ({', '.join(able)})"
    elif trading:
        tried = "; ".join(str(connections[n].account_for(held)[1]) for n in trading)
    else:
        tried = f"no trading connection trades {ac.value}"
    return no_route(f"no connection or account named, no [routing] {ac.value} or default "
                    f"entry, and {tried}")
