"""Enums and value objects shared by every part of brokerkit.

`Instrument` names one tradable thing with a canonical key that is the same at every broker
(`STK:AAPL`, `OPT:AAPL  261218C00150000`, `FUT:ESZ6`, `CASH:EUR.USD`, `CRYPTO:BTC/USD`), so
frames from different brokers join on it. `OrderIntent` is a validated order request: it fails
at construction, naming the field, as alpaca-py's request objects do. `OrderResult` is the
answer to every order: readable as a mapping (`result['status']`) and by attribute.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import Enum, StrEnum
from fractions import Fraction
from typing import Any

from .errors import InvalidIntent
from .venues.currencies import is_currency
from .venues.symbols import share_class_symbol

__all__ = [
    "ACCOUNT_KINDS",
    "AccountProfile",
    "AssetClass",
    "Instrument",
    "OrderIntent",
    "OrderResult",
    "OrderStatus",
    "OrderType",
    "Side",
    "TimeInForce",
    "Violation",
    "reason_of",
    "to_decimal",
]


class _Choice(StrEnum):
    """A string enum parsed case-insensitively, with aliases, naming the choices when wrong."""

    @classmethod
    def _aliases(cls) -> dict[str, str]:
        return {}

    @classmethod
    def parse(cls, value: Any, field_name: str | None = None) -> Any:
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            text = value.strip().lower().replace("-", "_").replace(" ", "_")
            text = cls._aliases().get(text, text)
            for member in cls:
                if member.value.lower() == text or member.name.lower() == text:
                    return member
        choices = ", ".join(m.value for m in cls)
        raise InvalidIntent(field_name or _snake(cls.__name__),
                            f"{value!r} is not one of: {choices}")

    def __str__(self) -> str:
        return self.value


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class AssetClass(_Choice):
    EQUITY = "equity"
    ETF = "etf"
    OPTION = "option"
    FUTURE = "future"
    FX = "fx"
    CRYPTO = "crypto"
    BOND = "bond"
    FUND = "fund"

    @classmethod
    def _aliases(cls) -> dict[str, str]:
        return {"stock": "equity", "stk": "equity", "us_equity": "equity", "opt": "option",
                "fut": "future", "forex": "fx", "cash": "fx", "mutual_fund": "fund",
                "treasury": "bond", "fixed_income": "bond"}

    @property
    def key_prefix(self) -> str:
        return _KEY_PREFIX[self]


_KEY_PREFIX = {
    AssetClass.EQUITY: "STK", AssetClass.ETF: "STK", AssetClass.OPTION: "OPT",
    AssetClass.FUTURE: "FUT", AssetClass.FX: "CASH", AssetClass.CRYPTO: "CRYPTO",
    AssetClass.BOND: "BOND", AssetClass.FUND: "FUND",
}
_PREFIX_CLASS = {"STK": AssetClass.EQUITY, "OPT": AssetClass.OPTION, "FUT": AssetClass.FUTURE,
                 "CASH": AssetClass.FX, "CRYPTO": AssetClass.CRYPTO, "BOND": AssetClass.BOND,
                 "FUND": AssetClass.FUND}


class Side(_Choice):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1


class OrderType(_Choice):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"
    TRAILING_STOP = "trailing_stop"

    @classmethod
    def _aliases(cls) -> dict[str, str]:
        return {"mkt": "market", "lmt": "limit", "stp": "stop", "stp_lmt": "stop_limit",
                "stoplimit": "stop_limit", "trail": "trailing_stop"}


class TimeInForce(_Choice):
    DAY = "day"
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"
    OPG = "opg"
    CLS = "cls"


class OrderStatus(_Choice):
    """Where an order stands. The first six are the answers `place_order` gives.

    UNCERTAIN: the order was sent and the broker's answer was lost (a timeout, a dropped
    connection, a 5xx), and the broker has not shown it since: it may be live. It is neither
    open nor final; the pipeline keeps looking it up by client order id until the broker
    answers (then the broker's status replaces it). Never place it again meanwhile."""

    FILLED = "FILLED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    ERROR = "ERROR"
    UNCERTAIN = "UNCERTAIN"
    PENDING = "PENDING"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"

    @classmethod
    def _aliases(cls) -> dict[str, str]:
        return {"new": "accepted", "pending_new": "pending", "cancelled": "canceled",
                "partial": "partially_filled", "open": "accepted", "working": "accepted"}

    @property
    def is_open(self) -> bool:
        return self in (OrderStatus.PENDING, OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED)

    @property
    def is_final(self) -> bool:
        """The broker has said its last word (UNCERTAIN is neither open nor final)."""
        return not self.is_open and self is not OrderStatus.UNCERTAIN


# --------------------------------------------------------------------------------------------
# Instruments


@dataclass(frozen=True, slots=True)
class Instrument:
    """One tradable thing. `key` is its canonical name across brokers.

    Equities listed outside the US carry their exchange in the key (`STK:VOD@LSE`), so a London
    listing never joins with a US one of the same ticker.
    """

    symbol: str
    asset_class: AssetClass = AssetClass.EQUITY
    currency: str = "USD"
    exchange: str = ""
    underlying: str = ""
    expiry: date | None = None
    strike: Decimal | None = None
    right: str = ""  # "C" or "P" for options
    multiplier: Decimal = Decimal(1)

    @property
    def key(self) -> str:
        """`STK:AAPL`, `STK:SAP@XETRA`, `OPT:<OCC>`, ...; a share class is spelled one way
        (`BRK B`, `BRK/B`, `BRK-B` -> `STK:BRK.B`: `venues.symbols`)."""
        ac = self.asset_class
        if ac is AssetClass.OPTION:
            return f"OPT:{self.occ_symbol}"
        if ac in (AssetClass.EQUITY, AssetClass.ETF, AssetClass.FUND):
            symbol = share_class_symbol(self.symbol)
            if self.currency != "USD" and self.exchange:
                return f"{ac.key_prefix}:{symbol}@{self.exchange}"
            return f"{ac.key_prefix}:{symbol}"
        return f"{ac.key_prefix}:{self.symbol}"

    @property
    def occ_symbol(self) -> str:
        """The 21-character OCC option symbol: root padded to 6, YYMMDD, C/P, strike x 1000."""
        if self.expiry is None or self.strike is None or self.right not in ("C", "P"):
            raise ValueError(f"option {self.symbol!r} needs expiry, strike and right")
        root = (self.underlying or self.symbol).ljust(6)
        return f"{root}{self.expiry:%y%m%d}{self.right}{int(self.strike * 1000):08d}"

    @classmethod
    def equity(cls, symbol: str, currency: str = "USD", exchange: str = "") -> Instrument:
        return cls(symbol.upper(), AssetClass.EQUITY, currency, exchange)

    @classmethod
    def fx(cls, base: str, quote: str) -> Instrument:
        return cls(f"{base}.{quote}".upper(), AssetClass.FX, quote.upper(), "IDEALPRO")

    @classmethod
    def crypto(cls, base: str, quote: str = "USD") -> Instrument:
        return cls(f"{base}/{quote}".upper(), AssetClass.CRYPTO, quote.upper())

    @classmethod
    def option(cls, underlying: str, expiry: date, strike: Decimal | float | str, right: str,
               currency: str = "USD", multiplier: int = 100) -> Instrument:
        strike_d = to_decimal(strike, "strike")
        inst = cls(underlying.upper(), AssetClass.OPTION, currency, "", underlying.upper(),
                   expiry, strike_d, right.upper()[:1], Decimal(multiplier))
        return replace(inst, symbol=inst.occ_symbol.replace(" ", ""))

    @classmethod
    def future(cls, local_symbol: str, underlying: str, expiry: date, exchange: str = "CME",
               currency: str = "USD", multiplier: Decimal | int = 1) -> Instrument:
        return cls(local_symbol.upper(), AssetClass.FUTURE, currency, exchange,
                   underlying.upper(), expiry, None, "", Decimal(multiplier))

    @classmethod
    def parse_key(cls, key: str) -> Instrument:
        """Rebuild the identifying part of an instrument from its key (`STK:SAP@XETRA`,
        `OPT:AAPL  261218C00230000` with or without the root's padding, `FUT:ESZ6`,
        `CASH:EUR.USD`, `CRYPTO:BTC/USD`); raises ValueError naming what is wrong."""
        prefix, sep, rest = key.partition(":")
        if not sep or prefix not in _PREFIX_CLASS or not rest:
            raise ValueError(f"not an instrument key: {key!r} (expected e.g. STK:AAPL, "
                             f"STK:SAP@XETRA, OPT:AAPL  261218C00230000, FUT:ESZ6, "
                             f"CASH:EUR.USD, CRYPTO:BTC/USD)")
        ac = _PREFIX_CLASS[prefix]
        if ac is AssetClass.OPTION:
            m = _OCC_KEY.fullmatch(rest)
            if not m:
                raise ValueError(f"not an OCC option key: {key!r} (expected root, YYMMDD, C or "
                                 f"P and the strike x 1000 in 8 digits)")
            root, ymd, right, strike = m.groups()
            try:
                exp = datetime.strptime(ymd, "%y%m%d").date()
            except ValueError:
                raise ValueError(f"not an OCC option key: {key!r} ({ymd} is no date)") from None
            return cls.option(root.strip(), exp, Decimal(strike) / 1000, right)
        if ac is AssetClass.FX:
            if not re.fullmatch(r"[A-Z]{3}\.[A-Z]{3}", rest):
                raise ValueError(f"not an FX key: {key!r} (expected e.g. CASH:EUR.USD)")
            base, _, quote = rest.partition(".")
            return cls.fx(base, quote)
        if ac is AssetClass.CRYPTO:
            base, _, quote = rest.partition("/")
            if not base:
                raise ValueError(f"not a crypto key: {key!r} (expected e.g. CRYPTO:BTC/USD)")
            return cls.crypto(base, quote or "USD")
        symbol, _, exchange = rest.partition("@")
        if not symbol.strip() or (_ and not exchange):
            raise ValueError(f"not an instrument key: {key!r} (expected e.g. STK:SAP@XETRA)")
        return cls(symbol, ac, "USD" if not exchange else "", exchange)


#: An OCC option symbol inside a key: root (padded to 6 or not), YYMMDD, C/P, strike x 1000.
_OCC_KEY = re.compile(r"([A-Z][A-Z0-9.]{0,5}) *(\d{6})([CP])(\d{8})")


# --------------------------------------------------------------------------------------------
# Orders


def to_decimal(value: Any, field_name: str) -> Decimal:
    """A finite Decimal from an int, str, Decimal or float (floats via their shortest repr)."""
    if isinstance(value, bool):
        raise InvalidIntent(field_name, f"{value!r} is not a number")
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, numbers.Integral):  # int and numpy integers
        d = Decimal(int(value))
    elif isinstance(value, numbers.Real) and not isinstance(value, Fraction):
        f = float(value)  # float and numpy floats, via Python's shortest repr
        if not math.isfinite(f):
            raise InvalidIntent(field_name, f"{value!r} is not a finite number")
        d = Decimal(repr(f))
    elif isinstance(value, str):
        try:
            d = Decimal(value.strip().replace("_", ""))
        except InvalidOperation:
            raise InvalidIntent(field_name, f"{value!r} is not a number") from None
    else:
        raise InvalidIntent(field_name, f"{value!r} is not a number")
    if not d.is_finite():
        raise InvalidIntent(field_name, f"{value!r} is not a finite number")
    return d


_MAX_DIGITS = 15  # no real order needs more; Decimal arithmetic stays exact below it
_CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,47}")
_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9./\- ]{0,31}")


def _check_client_order_id(value: object) -> None:
    if not isinstance(value, str) or not _CLIENT_ID.fullmatch(value):
        raise InvalidIntent("client_order_id", f"{value!r}: 1-48 characters of A-Z a-z 0-9 . _ : -")

_ALIASES = {
    "qty": "quantity", "type": "order_type", "tif": "time_in_force", "broker": "connection",
    "account_id": "account", "limit": "limit_price", "stop": "stop_price",
    "coid": "client_order_id",
}


def _intent_fields(raw: Mapping[Any, Any]) -> dict[str, Any]:
    """`raw`'s keys as `OrderIntent` field names (aliases resolved); InvalidIntent naming the
    key for one that is not a string, not a field, or a field given twice."""
    data: dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise InvalidIntent("intent", f"field names must be strings, got {key!r} "
                                          f"({type(key).__name__})")
        name = _ALIASES.get(key.lower(), key.lower())
        if name not in _INTENT_FIELDS:
            raise InvalidIntent(key, f"unknown field; expected one of "
                                     f"{', '.join(sorted(_INTENT_FIELDS))}")
        if name in data:
            raise InvalidIntent(key, f"given twice (as {name})")
        data[name] = value
    return data


@dataclass(frozen=True)
class OrderIntent:
    """What the user wants to trade, validated: exactly one of quantity and notional, the
    prices the order type needs and no others, positive Decimal amounts."""

    symbol: str
    side: Side
    quantity: Decimal | None = None
    notional: Decimal | None = None
    order_type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.DAY
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    asset_class: AssetClass | None = None
    currency: str | None = None
    connection: str | None = None
    account: str | None = None
    client_order_id: str | None = None
    extended_hours: bool = False
    reduce_only: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.symbol, str) or not self.symbol.strip():
            raise InvalidIntent("symbol", "is required (e.g. 'AAPL', 'BTC/USD', 'EUR.USD')")
        symbol = self.symbol.strip().upper()
        keyed = _key_instrument(symbol) if ":" in symbol else None
        if keyed is not None:
            symbol = keyed.key  # the canonical spelling (an OCC root padded to 6)
        elif not _SYMBOL.fullmatch(symbol):
            raise InvalidIntent("symbol", f"{self.symbol!r} is not a valid symbol or "
                                          f"instrument key")
        set_(self, "symbol", symbol)
        set_(self, "side", Side.parse(self.side, "side"))
        set_(self, "order_type", OrderType.parse(self.order_type, "order_type"))
        set_(self, "time_in_force", TimeInForce.parse(self.time_in_force, "time_in_force"))
        if self.asset_class is not None:
            set_(self, "asset_class", AssetClass.parse(self.asset_class, "asset_class"))
            if keyed is not None and self.asset_class.key_prefix != keyed.asset_class.key_prefix:
                raise InvalidIntent("asset_class", f"{self.asset_class.value!r} does not match "
                                                   f"the key {symbol} "
                                                   f"({keyed.asset_class.value})")
        for name in ("quantity", "notional", "limit_price", "stop_price", "trail_price",
                     "trail_percent"):
            value = getattr(self, name)
            if value is None:
                continue
            d = to_decimal(value, name)
            if d <= 0:
                raise InvalidIntent(name, f"must be positive, got {value!r}")
            if d.adjusted() >= _MAX_DIGITS:
                raise InvalidIntent(name, f"{value!r} is too large (at most {_MAX_DIGITS} "
                                          f"digits before the point)")
            set_(self, name, d)
        if (self.quantity is None) == (self.notional is None):
            raise InvalidIntent("quantity", "give exactly one of quantity and notional")
        needs = _PRICES_NEEDED[self.order_type]
        for name in ("limit_price", "stop_price"):
            given = getattr(self, name) is not None
            if name in needs and not given:
                raise InvalidIntent(name, f"a {self.order_type.value} order needs {name}")
            if name not in needs and given:
                raise InvalidIntent(name, f"a {self.order_type.value} order takes no {name}")
        trails = [n for n in ("trail_price", "trail_percent") if getattr(self, n) is not None]
        if self.order_type is OrderType.TRAILING_STOP:
            if len(trails) != 1:
                raise InvalidIntent("trail_price",
                                    "a trailing_stop order needs one of trail_price, trail_percent")
        elif trails:
            raise InvalidIntent(trails[0], f"a {self.order_type.value} order takes no {trails[0]}")
        if self.limit_price is not None and self.stop_price is not None \
                and self.order_type is not OrderType.STOP_LIMIT:
            raise InvalidIntent("stop_price", "only stop_limit orders take both prices")
        for name in ("connection", "account", "currency"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise InvalidIntent(name, f"{value!r} is not a valid {name}")
        if self.currency is not None:
            currency = self.currency.strip().upper()
            if not is_currency(currency):
                raise InvalidIntent("currency", f"{self.currency!r} is not an ISO 4217 "
                                                f"currency code (e.g. USD, EUR, JPY)")
            set_(self, "currency", currency)
        if self.client_order_id is not None:
            _check_client_order_id(self.client_order_id)
        for name in ("extended_hours", "reduce_only"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidIntent(name, f"{getattr(self, name)!r} is not true or false")

    @classmethod
    def of(cls, intent: OrderIntent | Mapping[str, Any] | None = None, /,
           **kwargs: Any) -> OrderIntent:
        """Build an intent from an `OrderIntent`, a dict, keywords, or a dict plus keywords.

        Common aliases are accepted (`qty`, `type`, `tif`, `limit`, `stop`, `broker`); an
        unknown key is an error naming it, never silently ignored.
        """
        if isinstance(intent, OrderIntent):
            return replace(intent, **_intent_fields(kwargs)) if kwargs else intent
        if intent is not None and not isinstance(intent, Mapping):
            raise InvalidIntent("intent", f"expected a dict or OrderIntent, got "
                                          f"{type(intent).__name__}")
        data = _intent_fields({**(intent or {}), **kwargs})
        for name in ("symbol", "side"):
            if name not in data:
                raise InvalidIntent(name, "is required")
        return cls(**data)

    @property
    def instrument(self) -> Instrument | None:
        """The instrument the symbol names when it is a canonical key (`STK:SAP@XETRA`,
        `OPT:AAPL  261218C00230000`), else None (a broker's plain symbol)."""
        return Instrument.parse_key(self.symbol) if ":" in self.symbol else None

    @property
    def signed_quantity(self) -> Decimal | None:
        return None if self.quantity is None else self.quantity * self.side.sign

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, v in self.__dict__.items():
            out[name] = v.value if isinstance(v, Enum) else str(v) if isinstance(v, Decimal) \
                else v
        return out

    def routed(self, client_order_id: str, connection: str, account: str | None,
               asset_class: AssetClass) -> OrderIntent:
        """This intent as the pipeline sends it: with its client order id, connection,
        account and asset class (each already validated; nothing else re-checked)."""
        _check_client_order_id(client_order_id)
        out = object.__new__(OrderIntent)
        out.__dict__.update(self.__dict__, client_order_id=client_order_id,
                            connection=connection, account=account, asset_class=asset_class)
        return out


_INTENT_FIELDS = frozenset(f.name for f in fields(OrderIntent))


def _key_instrument(symbol: str) -> Instrument:
    """The instrument of a canonical key given as an order's symbol, or INVALID_INTENT."""
    try:
        return Instrument.parse_key(symbol)
    except ValueError as exc:
        raise InvalidIntent("symbol", str(exc)) from None

_PRICES_NEEDED: dict[OrderType, tuple[str, ...]] = {
    OrderType.MARKET: (),
    OrderType.LIMIT: ("limit_price",),
    OrderType.STOP: ("stop_price",),
    OrderType.STOP_LIMIT: ("limit_price", "stop_price"),
    OrderType.TRAILING_STOP: (),
}


#: What an account is for: `cash` and `margin` accounts hold securities, a `crypto` account
#: (a broker's separate crypto wallet, e.g. Alpaca Crypto's or IBKR's Paxos) holds crypto only.
ACCOUNT_KINDS = ("cash", "margin", "crypto")


@dataclass(frozen=True, slots=True)
class AccountProfile:
    """What one account may hold, as its connection knows it (configured or discovered).

    Each empty set says "not restricted": `currencies` it holds cash in, `markets` (exchange
    names, as in `STK:SAP@XETRA`) and `asset_classes` it is permitted to trade. A `crypto`
    account holds crypto only, and no other account takes crypto from it.
    """

    account: str
    kind: str | None = None
    currencies: frozenset[str] = frozenset()
    markets: frozenset[str] = frozenset()
    asset_classes: frozenset[AssetClass] = frozenset()

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.account, str) or not self.account:
            raise ValueError(f"account must be a non-empty string, got {self.account!r}")
        if self.kind is not None and self.kind not in ACCOUNT_KINDS:
            raise ValueError(f"account {self.account}: kind {self.kind!r} is not one of "
                             f"{', '.join(ACCOUNT_KINDS)}")
        currencies = frozenset(str(c).upper() for c in self.currencies)
        # a crypto account holds coins and stablecoins (USDT) besides ISO currencies
        bad = sorted(c for c in currencies if not (
            is_currency(c) or (self.kind == "crypto" and re.fullmatch(r"[A-Z0-9]{2,10}", c))))
        if bad:
            raise ValueError(f"account {self.account}: {bad[0]!r} is not an ISO 4217 "
                             f"currency code")
        set_(self, "currencies", currencies)
        set_(self, "markets", frozenset(str(m).upper() for m in self.markets))
        try:
            classes = frozenset(AssetClass.parse(a, "asset_classes") for a in self.asset_classes)
        except InvalidIntent as exc:
            raise ValueError(f"account {self.account}: {exc}") from None
        if self.kind == "crypto" and not classes:
            classes = frozenset({AssetClass.CRYPTO})
        set_(self, "asset_classes", classes)

    def refusal(self, asset_class: AssetClass, market: str, currencies: Iterable[str]
                ) -> str | None:
        """Why this account cannot hold the instrument (asset class, market or "" when not
        known, the currencies it settles in), or None when it can."""
        if self.kind == "crypto" and asset_class is not AssetClass.CRYPTO:
            return f"{self.account} is a crypto account, not for {asset_class.value}"
        held = self.asset_classes
        if asset_class is AssetClass.ETF and AssetClass.EQUITY in held:
            held = held | {AssetClass.ETF}
        if held and asset_class not in held:
            what = ", ".join(sorted(a.value for a in held))
            return f"{self.account} trades {what}, not {asset_class.value}"
        if self.markets and market and market not in self.markets:
            return f"{self.account} trades on {', '.join(sorted(self.markets))}, not {market}"
        missing = [c for c in currencies if self.currencies and c not in self.currencies]
        if missing:
            return f"{self.account} holds {', '.join(sorted(self.currencies))}, not " \
                   f"{', '.join(missing)}"
        return None

    def fit(self, asset_class: AssetClass, market: str, currencies: Iterable[str]) -> int:
        """How specifically this account is meant for the instrument: one point each for
        naming its asset class, its market and its currencies (0: merely not excluded)."""
        return (bool(self.asset_classes) and asset_class in self.asset_classes) + \
            (bool(market) and market in self.markets) + \
            (bool(self.currencies) and all(c in self.currencies for c in currencies))


@dataclass(frozen=True, slots=True)
class Violation:
    """One failed pre-trade check: a stable code and a message that names the numbers."""

    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def reason_of(violations: Iterable[Violation]) -> str:
    """Violations as one reason, as every refusal words it: `CODE: message; CODE: message`."""
    return "; ".join(f"{v.code}: {v.message}" for v in violations)


@dataclass(frozen=True)
class OrderResult(Mapping[str, Any]):
    """The answer to an order: FILLED, PARTIALLY_FILLED, ACCEPTED, REJECTED, ERROR or
    UNCERTAIN (sent, and the broker has not shown it yet: never place it again), and why.

    Readable as a mapping (`result['status']`, `dict(result)`) and by attribute.
    """

    status: OrderStatus
    reason: str = ""
    order_id: str | None = None
    client_order_id: str | None = None
    connection: str | None = None
    account: str | None = None
    symbol: str | None = None
    side: str | None = None
    quantity: float | None = None
    filled_quantity: float = 0.0
    avg_fill_price: float | None = None
    violations: tuple[Violation, ...] = field(default_factory=tuple)
    submitted_at: datetime | None = None

    def __getitem__(self, key: str) -> Any:
        if key not in _RESULT_KEYS:
            raise KeyError(key)
        value = getattr(self, key)
        if key == "status":
            return value.value
        if key == "violations":
            return [v.to_dict() for v in value]
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(_RESULT_KEYS)

    def __len__(self) -> int:
        return len(_RESULT_KEYS)

    @property
    def ok(self) -> bool:
        return self.status in (OrderStatus.FILLED, OrderStatus.PARTIALLY_FILLED,
                               OrderStatus.ACCEPTED)

    @property
    def codes(self) -> list[str]:
        return [v.code for v in self.violations]

    def __str__(self) -> str:
        head = f"{self.status.value}"
        if self.symbol:
            head += f" {self.side or ''} {self.quantity if self.quantity is not None else ''}" \
                    f" {self.symbol}".rstrip()
        if self.filled_quantity:
            head += f" filled {self.filled_quantity:g} @ {self.avg_fill_price:g}"
        if self.reason:
            head += f": {self.reason}"
        return head


_RESULT_KEYS = tuple(f.name for f in fields(OrderResult))
