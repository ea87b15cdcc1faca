"""The sandbox market: a universe of listings, seeded deterministic prices, and a matching engine.

Every sandbox server (paper, Alpaca REST, the TWS gateway, crypto exchanges) reads one `Market`,
so an instrument has one price everywhere. The pieces:

- `UNIVERSE`: the listings, as data in one place (`Listing`: instrument, base price, volatility,
  spread, tick, lot, fractionable/shortable/tradable, top-of-book size, fees).
- `Clock`, `Session`, `EXCHANGES` (from `clock`): the market's now and each exchange's hours.
- `Market`: `quote(symbol)`, `quotes(symbols)`, `price(symbol)`, `fx_rate(a, b)`, `is_open(...)`,
  `trade_date(...)`, in the clock mode `"always-open"` (default) or `"exchange"` (see `clock`).
  The mid price is a pure function of (seed, instrument key, step), with step = clock seconds /
  `step_seconds`: a Brownian bridge in log price, pinned to the base price every 2**20 steps
  (about 12 days at one step a second), built top-down from a counter-based hash RNG keyed by
  the instrument. No state is kept, so a price never depends on which other symbols were asked,
  two processes agree at the same wall time, and prices wander like a random walk while staying
  near their base.
- `MatchingEngine`: market, limit, stop, stop-limit and trailing-stop orders; day, gtc, ioc and
  fok; marketable orders fill up to the top-of-book size of the current step, the rest on later
  steps. It is evaluated lazily: `submit` and `process()` match against the clock's now.

Order quantities and prices are `Decimal`; frames built from these records use floats.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal

import numpy as np

from ..errors import BrokerkitError
from ..model import AssetClass, Instrument, OrderStatus, OrderType, Side, TimeInForce
from ..post_trade.settlement import settle_date_of, trade_date_of
from .clock import EXCHANGES, Clock, ClockMode, Session, _utc, check_clock_mode, sessions

__all__ = [
    "EXCHANGES",
    "UNIVERSE",
    "Clock",
    "ClockMode",
    "FeeSchedule",
    "Fill",
    "Listing",
    "Market",
    "MatchingEngine",
    "Order",
    "Quote",
    "Session",
    "UnknownSymbol",
]

SECONDS_PER_YEAR = 365.25 * 24 * 3600
BRIDGE_DEPTH = 20  # prices are pinned to their base every 2**20 steps
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
_D = Decimal


class UnknownSymbol(BrokerkitError, KeyError):
    """No listing in the sandbox universe matches a symbol or instrument key."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        super().__init__(f"unknown symbol {symbol!r}: not listed in the sandbox market "
                         f"(try 'AAPL', 'BTC/USD', 'EUR.USD', 'VOD' or a key like 'STK:AAPL')")

    def __str__(self) -> str:
        return str(self.args[0])


# --------------------------------------------------------------------------------------------
# Facts: fees and listings


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """Commission per order: `per_unit` x quantity plus `bps` of value, at least `minimum`,
    at most `max_pct` percent of value. Charged in the listing's currency."""

    per_unit: Decimal = Decimal(0)
    bps: Decimal = Decimal(0)
    minimum: Decimal = Decimal(0)
    max_pct: Decimal | None = None

    def fee(self, quantity: Decimal, value: Decimal) -> Decimal:
        """The commission for an order of `quantity` worth `value` so far (rounded to cents)."""
        if quantity <= 0:
            return _D(0)
        raw = quantity * self.per_unit + value * self.bps / 10_000
        raw = max(raw, self.minimum)
        if self.max_pct is not None:
            raw = min(raw, value * self.max_pct / 100)
        return raw.quantize(_D("0.01"))


ZERO_FEES = FeeSchedule()
IBKR_FIXED = FeeSchedule(per_unit=_D("0.005"), minimum=_D("1.00"), max_pct=_D(1))
IBKR_OPTIONS = FeeSchedule(per_unit=_D("0.65"), minimum=_D("1.00"))
IBKR_FUTURES = FeeSchedule(per_unit=_D("0.85"))
IBKR_FX = FeeSchedule(bps=_D("0.2"), minimum=_D("2.00"))
CRYPTO_TAKER = FeeSchedule(bps=_D(25))


@dataclass(frozen=True, slots=True)
class Listing:
    """One instrument as the sandbox lists it: price model parameters and trading rules."""

    instrument: Instrument
    price: float  # base price, in currency
    volatility: float = 0.3  # annualised
    spread_bps: float = 2.0
    tick: Decimal = Decimal("0.01")
    min_quantity: Decimal = Decimal(1)
    lot_size: Decimal = Decimal(1)
    fractionable: bool = False
    shortable: bool = True
    tradable: bool = True
    top_size: Decimal = Decimal(1000)
    fees: FeeSchedule = ZERO_FEES
    exchange: str = "NASDAQ"

    @property
    def key(self) -> str:
        return self.instrument.key

    @property
    def symbol(self) -> str:
        return self.instrument.symbol

    @property
    def currency(self) -> str:
        return self.instrument.currency

    @property
    def asset_class(self) -> AssetClass:
        return self.instrument.asset_class

    @property
    def multiplier(self) -> Decimal:
        return self.instrument.multiplier

    @property
    def session(self) -> Session:
        return EXCHANGES[self.exchange]


def _us(symbol: str, price: float, vol: float = 0.3, *, etf: bool = False,
        exchange: str = "NASDAQ", **kw: object) -> Listing:
    ac = AssetClass.ETF if etf else AssetClass.EQUITY
    fractional = bool(kw.setdefault("fractionable", True))
    kw.setdefault("min_quantity", _D("0.000000001") if fractional else _D(1))
    kw.setdefault("lot_size", _D("0.000000001") if fractional else _D(1))
    return Listing(Instrument(symbol, ac, "USD", exchange), price, vol,  # type: ignore[arg-type]
                   spread_bps=1.0 if etf else 2.0, exchange=exchange, **kw)


def _intl(symbol: str, ccy: str, exchange: str, price: float, tick: str, *, vol: float = 0.25,
          lot: int = 1, fees: FeeSchedule, top: int = 2000) -> Listing:
    return Listing(Instrument(symbol, AssetClass.EQUITY, ccy, exchange), price, vol,
                   spread_bps=4.0, tick=_D(tick), min_quantity=_D(lot), lot_size=_D(lot),
                   top_size=_D(top), fees=fees, exchange=exchange)


def _fx(base: str, quote: str, price: float, tick: str, vol: float = 0.08) -> Listing:
    return Listing(Instrument.fx(base, quote), price, vol, spread_bps=0.5, tick=_D(tick),
                   min_quantity=_D(1), lot_size=_D("0.01"), fractionable=True,
                   top_size=_D(5_000_000), fees=IBKR_FX, exchange="IDEALPRO")


def _coin(base: str, quote: str, price: float, tick: str, min_qty: str, top: str,
          vol: float = 0.6) -> Listing:
    return Listing(Instrument.crypto(base, quote), price, vol, spread_bps=5.0, tick=_D(tick),
                   min_quantity=_D(min_qty), lot_size=_D("0.000000001"), fractionable=True,
                   shortable=False, top_size=_D(top), fees=CRYPTO_TAKER,
                   exchange="CRYPTO")


UNIVERSE: tuple[Listing, ...] = (
    # US equities and ETFs (Alpaca-like: zero commission, fractional)
    _us("AAPL", 228.0, 0.25),
    _us("MSFT", 430.0, 0.22),
    _us("NVDA", 135.0, 0.45),
    _us("AMZN", 195.0, 0.30),
    _us("GOOGL", 175.0, 0.28),
    _us("TSLA", 260.0, 0.55),
    _us("META", 590.0, 0.35),
    _us("JPM", 240.0, 0.20, exchange="NYSE"),
    _us("SPY", 590.0, 0.15, etf=True, exchange="ARCA", top_size=_D(5000)),
    _us("QQQ", 510.0, 0.18, etf=True, top_size=_D(5000)),
    # US listings for rule checks
    _us("BRK.A", 700_000.0, 0.15, exchange="NYSE", fractionable=False, min_quantity=_D(1),
        top_size=_D(5)),
    _us("GME", 25.0, 0.9, exchange="NYSE", shortable=False),
    _us("ZVZZT", 10.0, 0.1, tradable=False, fractionable=False, min_quantity=_D(1)),
    # Non-US listings, IBKR-like commissions
    _intl("SAP", "EUR", "XETRA", 220.0, "0.02", fees=FeeSchedule(bps=_D(5), minimum=_D("1.25"))),
    _intl("VOD", "GBP", "LSE", 0.72, "0.0002", top=200_000,
          fees=FeeSchedule(bps=_D(5), minimum=_D(1))),
    _intl("7203", "JPY", "TSE", 2800.0, "0.5", lot=100, top=20_000,
          fees=FeeSchedule(bps=_D(5), minimum=_D(80))),
    _intl("0700", "HKD", "SEHK", 400.0, "0.2", lot=100, top=20_000,
          fees=FeeSchedule(bps=_D(8), minimum=_D(18))),
    _intl("SHOP", "CAD", "TSX", 110.0, "0.01", vol=0.5,
          fees=FeeSchedule(per_unit=_D("0.01"), minimum=_D(1), max_pct=_D("0.5"))),
    # FX (IDEALPRO-like)
    _fx("EUR", "USD", 1.08, "0.00005"),
    _fx("GBP", "USD", 1.27, "0.00005"),
    _fx("USD", "JPY", 150.0, "0.005"),
    _fx("USD", "CAD", 1.36, "0.00005"),
    _fx("USD", "HKD", 7.80, "0.00005", vol=0.01),
    _fx("USD", "CHF", 0.88, "0.00005"),
    _fx("EUR", "GBP", 0.85, "0.00005"),
    _fx("AUD", "USD", 0.66, "0.00005"),
    # Crypto
    _coin("BTC", "USD", 65_000.0, "0.01", "0.0001", "2"),
    _coin("ETH", "USD", 3_200.0, "0.01", "0.001", "40"),
    _coin("SOL", "USD", 150.0, "0.001", "0.01", "500"),
    _coin("BTC", "USDT", 65_000.0, "0.01", "0.0001", "2"),
    _coin("ETH", "BTC", 0.049, "0.00001", "0.001", "40", vol=0.4),
    _coin("USDT", "USD", 1.0, "0.0001", "1", "1000000", vol=0.002),
    # Derivatives, for later IB work
    Listing(Instrument.option("AAPL", date(2026, 12, 18), 230, "C"), 25.0, 0.5, spread_bps=60,
            tick=_D("0.05"), top_size=_D(50), shortable=False, fees=IBKR_OPTIONS,
            exchange="CBOE"),
    Listing(Instrument.future("ESZ6", "ES", date(2026, 12, 18), "CME", multiplier=50), 6000.0,
            0.16, spread_bps=0.4, tick=_D("0.25"), top_size=_D(50), fees=IBKR_FUTURES,
            exchange="CME"),
)


# --------------------------------------------------------------------------------------------
# Prices


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective 64-bit hash, vectorised."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _normals(keys: np.ndarray, period: int, nodes: np.ndarray) -> np.ndarray:
    """Standard normals for (key, period, node), shape (len(keys), len(nodes)): counter-based,
    so each number depends only on its own coordinates (Box-Muller on two hashes)."""
    with np.errstate(over="ignore"):
        base = _mix(keys[:, None] ^ _mix(np.uint64(period) * _GOLDEN + nodes[None, :]))
        h1 = _mix(base + _GOLDEN)
        h2 = _mix(base + _GOLDEN * np.uint64(2))
    u1 = ((h1 >> np.uint64(11)).astype(np.float64) + 1.0) / 2.0**53  # (0, 1]
    u2 = (h2 >> np.uint64(11)).astype(np.float64) / 2.0**53
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def _bridge(keys: np.ndarray, step: int) -> np.ndarray:
    """Standard Brownian bridge values (unit variance per step) at `step` for every key."""
    period, r = divmod(step, 1 << BRIDGE_DEPTH)
    lo, hi = 0, 1 << BRIDGE_DEPTH
    w_lo = np.zeros(len(keys))
    w_hi = np.zeros(len(keys))
    path: list[tuple[int, int, int]] = []  # (heap node, half-width, went right)
    node = 1
    while r != lo:
        mid = (lo + hi) // 2
        path.append((node, hi - lo, int(r >= mid)))
        if r >= mid:
            lo, node = mid, 2 * node + 1
        else:
            hi, node = mid, 2 * node
    if not path:
        return w_lo
    z = _normals(keys, period, np.array([p[0] for p in path], dtype=np.uint64))
    for i, (_, width, right) in enumerate(path):
        w_mid = (w_lo + w_hi) / 2 + z[:, i] * math.sqrt(width / 4)
        if right:
            w_lo = w_mid
        else:
            w_hi = w_mid
    return w_lo


@dataclass(frozen=True, slots=True)
class Quote:
    """Top of book for one listing at one time; prices on the listing's tick."""

    key: str
    symbol: str
    currency: str
    bid: Decimal
    ask: Decimal
    last: Decimal
    bid_size: Decimal
    ask_size: Decimal
    as_of: datetime

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2


def _on_tick(value: float, tick: Decimal, rounding: str) -> Decimal:
    return (_D(repr(value)) / tick).quantize(_D(1), rounding=rounding) * tick


class Market:
    """The sandbox market: listings, a clock, and deterministic prices.

    `clock_mode` "always-open" (the default) makes `is_open` answer True at any hour so
    demos always trade; "exchange" trades only in each exchange's real sessions (holidays and
    early closes from exchange_calendars). Trade dates are real sessions in both modes.
    """

    def __init__(self, seed: int = 0, *, clock: Clock | None = None,
                 clock_mode: ClockMode = "always-open", step_seconds: float = 1.0,
                 listings: Iterable[Listing] = UNIVERSE) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r}")
        if not step_seconds > 0:
            raise ValueError(f"step_seconds must be positive, got {step_seconds!r}")
        self.seed = seed
        self.clock = clock if clock is not None else Clock()
        self.clock_mode: ClockMode = check_clock_mode(clock_mode)
        self.step_seconds = float(step_seconds)
        self._by_key: dict[str, Listing] = {}
        self._by_symbol: dict[str, list[Listing]] = {}
        for listing in listings:
            if listing.key in self._by_key:
                raise ValueError(f"listing {listing.key!r} is given twice")
            self._by_key[listing.key] = listing
            self._by_symbol.setdefault(listing.symbol, []).append(listing)
        self._hash = {k: self._key_hash(k) for k in self._by_key}
        self._cache: dict[int, dict[str, float]] = {}
        #: key -> price factor from the splits applied (0.25 after a 4-for-1)
        self.split_factors: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"<Market seed={self.seed} listings={len(self._by_key)} {self.clock_mode} " \
               f"{self.clock!r}>"

    @property
    def always_open(self) -> bool:
        """True in the "always-open" clock mode."""
        return self.clock_mode == "always-open"

    def _key_hash(self, key: str) -> int:
        digest = hashlib.blake2b(f"{self.seed}\x00{key}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little")

    # -- listings -------------------------------------------------------------------------
    @property
    def listings(self) -> tuple[Listing, ...]:
        return tuple(self._by_key.values())

    def listing(self, symbol: str | Instrument | Listing) -> Listing:
        """The listing for a canonical key (`STK:VOD@LSE`), an `Instrument`, or a plain symbol
        (`AAPL`, `BTC/USD`, `EUR.USD`; a symbol with no US listing resolves to its only or
        first listing, so `VOD` is London). Raises `UnknownSymbol`."""
        if isinstance(symbol, Listing):
            return symbol
        if isinstance(symbol, Instrument):
            symbol = symbol.key
        if not isinstance(symbol, str):
            raise UnknownSymbol(repr(symbol))
        text = symbol.strip()
        found = self._by_key.get(text) or self._by_key.get(text.upper())
        if found is not None:
            return found
        candidates = self._by_symbol.get(text.upper()) or self._by_symbol.get(
            text.upper().replace(" ", ""))
        if not candidates:
            raise UnknownSymbol(symbol)
        us = [c for c in candidates if c.currency == "USD"]
        return (us or candidates)[0]

    # -- time and prices ------------------------------------------------------------------
    def now(self) -> datetime:
        return self.clock.now()

    def step(self, at: datetime | None = None) -> int:
        """The price step at `at` (default now): whole `step_seconds` since 2025-01-01 UTC."""
        at = self.now() if at is None else _utc(at)
        return max(0, math.floor((at - EPOCH).total_seconds() / self.step_seconds))

    def _mids(self, listings: Sequence[Listing], step: int) -> list[float]:
        cache = self._cache.get(step)
        if cache is None:
            self._cache = {step: {}}  # keep one step: the next call is almost always the same
            cache = self._cache[step]
        todo = [li for li in listings if li.key not in cache]
        if todo:
            keys = np.array([self._hash[li.key] for li in todo], dtype=np.uint64)
            w = _bridge(keys, step)
            scale = math.sqrt(self.step_seconds / SECONDS_PER_YEAR)
            factors = self.split_factors
            for li, wi in zip(todo, w, strict=True):
                cache[li.key] = li.price * math.exp(li.volatility * scale * float(wi)) \
                    * factors.get(li.key, 1.0)
        return [cache[li.key] for li in listings]

    def split(self, symbol: str | Instrument | Listing, ratio: Decimal) -> None:
        """Its price divided by `ratio` from now on (new shares per old: a 4-for-1 quarters
        it); the brokers' positions and orders are `Sandbox.apply_split`'s business."""
        key = self.listing(symbol).key
        self.split_factors[key] = self.split_factors.get(key, 1.0) / float(ratio)
        self._cache = {}

    def price(self, symbol: str | Instrument | Listing, at: datetime | None = None) -> float:
        """The mid price of `symbol` at `at` (default now), unrounded."""
        return self._mids([self.listing(symbol)], self.step(at))[0]

    def quote(self, symbol: str | Instrument | Listing, at: datetime | None = None) -> Quote:
        """Top of book for `symbol` at `at` (default now)."""
        return self.quotes([symbol], at)[0]

    def quotes(self, symbols: Iterable[str | Instrument | Listing],
               at: datetime | None = None) -> list[Quote]:
        """Quotes for many symbols at once, computed in one vectorised pass."""
        when = self.now() if at is None else _utc(at)
        listings = [self.listing(s) for s in symbols]
        mids = self._mids(listings, self.step(when))
        out = []
        for li, mid in zip(listings, mids, strict=True):
            half = mid * li.spread_bps / 20_000
            bid = _on_tick(mid - half, li.tick, ROUND_FLOOR)
            ask = _on_tick(mid + half, li.tick, ROUND_CEILING)
            if ask <= bid:
                ask = bid + li.tick
            if bid <= 0:
                bid = li.tick
                ask = max(ask, bid + li.tick)
            last = min(max(_on_tick(mid, li.tick, "ROUND_HALF_EVEN"), bid), ask)
            out.append(Quote(li.key, li.symbol, li.currency, bid, ask, last, li.top_size,
                             li.top_size, when))
        return out

    def fx_rate(self, from_ccy: str, to_ccy: str, at: datetime | None = None) -> float:
        """Units of `to_ccy` per one `from_ccy`, from the FX and crypto listings' mids:
        direct, inverse, or across USD. Raises `UnknownSymbol` naming the missing pair."""
        a, b = from_ccy.strip().upper(), to_ccy.strip().upper()
        if a == b:
            return 1.0
        step = self.step(at)
        direct = self._pair_rate(a, b, step)
        if direct is not None:
            return direct
        via_a, via_b = self._pair_rate(a, "USD", step), self._pair_rate("USD", b, step)
        if via_a is None or via_b is None:
            raise UnknownSymbol(f"{a}{b}")
        return via_a * via_b

    def _pair_rate(self, a: str, b: str, step: int) -> float | None:
        if a == b:
            return 1.0
        for sym, invert in ((f"{a}.{b}", False), (f"{b}.{a}", True), (f"{a}/{b}", False),
                            (f"{b}/{a}", True)):
            found = self._by_symbol.get(sym)
            if found:
                mid = self._mids(found[:1], step)[0]
                return 1.0 / mid if invert else mid
        return None

    # -- hours ----------------------------------------------------------------------------
    def is_open(self, symbol: str | Instrument | Listing, at: datetime | None = None) -> bool:
        """True when `symbol` trades at `at` (default now): always in the "always-open"
        clock mode; in "exchange" mode inside a session of its exchange (holidays, early
        closes and lunch breaks included; FX 24/5, crypto 24/7)."""
        listing = self.listing(symbol)
        if self.always_open:
            return True
        at = self.now() if at is None else _utc(at)
        return sessions(listing.exchange, at).is_open(at)

    def warm_dates(self) -> None:
        """Build the calendars its listings' fills are dated on (`post_trade.settlement`; a
        few hundred ms once per process), so the first fill does not wait for them."""
        now = self.now()
        for inst in {li.instrument.key: li.instrument for li in self.listings}.values():
            day = trade_date_of(now, inst.asset_class.value, inst.key, inst.currency)
            settle_date_of(inst.asset_class.value, inst.key, inst.currency, day)

    def trade_date(self, symbol: str | Instrument | Listing, at: datetime | None = None
                   ) -> date:
        """The session `at` (default now) belongs to, in either clock mode: during a session
        that session, outside one (night, weekend, holiday) the next, so never a weekend or
        holiday. Futures and FX roll to the next date at their evening close (CME 16:00
        Chicago, FX 17:00 New York); crypto trade dates are UTC days."""
        listing = self.listing(symbol)
        at = self.now() if at is None else _utc(at)
        return sessions(listing.exchange, at).trade_date(at)


def _lots(quantity: Decimal, listing: Listing) -> Decimal:
    """`quantity` rounded down to whole lots of `listing`."""
    return (quantity / listing.lot_size).to_integral_value(ROUND_DOWN) * listing.lot_size


# --------------------------------------------------------------------------------------------
# Orders and matching


@dataclass
class Order:
    """One order as the sandbox broker and engine see it. Mutable: the engine updates it."""

    order_id: str
    client_order_id: str
    owner: str  # name of the broker whose account placed it
    account: str
    symbol: str
    listing: Listing | None
    side: Side
    quantity: Decimal | None
    notional: Decimal | None = None
    order_type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.DAY
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    fees: FeeSchedule = ZERO_FEES
    status: OrderStatus = OrderStatus.PENDING
    reason: str = ""
    filled_quantity: Decimal = Decimal(0)
    filled_value: Decimal = Decimal(0)
    fees_paid: Decimal = Decimal(0)
    submitted_at: datetime | None = None
    updated_at: datetime | None = None
    session: date | None = None  # trade date a day order lives in (set when first open)
    triggered: bool = False
    water_mark: Decimal | None = None  # trailing stops: best last price since submit
    fill_ids: list[str] = field(default_factory=list)

    @property
    def remaining(self) -> Decimal:
        return _D(0) if self.quantity is None else self.quantity - self.filled_quantity

    @property
    def avg_fill_price(self) -> Decimal | None:
        if not self.filled_quantity:
            return None
        mult = self.listing.multiplier if self.listing else _D(1)
        return self.filled_value / (self.filled_quantity * mult)

    @property
    def key(self) -> str | None:
        return self.listing.key if self.listing else None


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution: quantity at price, its fee, and its trade and settlement dates."""

    fill_id: str
    order_id: str
    client_order_id: str
    account: str
    key: str
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str
    currency: str
    executed_at: datetime
    trade_date: date
    settle_date: date


FillListener = Callable[[Order, Fill], None]


class MatchingEngine:
    """Matches orders against the market's quotes at the clock's now.

    Marketable orders fill at the touch (buys at the ask, sells at the bid; limit orders at
    that price when it is at least as good as the limit) up to the size left at the top of
    book in the current step; the rest waits for later steps, when the size refreshes. Stops
    trigger on the last price. `process()` re-evaluates every open order; listeners hear
    every fill. Not thread-safe: call it from one thread (the runtime loop).
    """

    def __init__(self, market: Market) -> None:
        self.market = market
        self._open: dict[str, Order] = {}
        self._taken: dict[tuple[str, Side], tuple[int, Decimal]] = {}
        self._listeners: list[FillListener] = []

    def __repr__(self) -> str:
        return f"<MatchingEngine open={len(self._open)}>"

    def subscribe(self, listener: FillListener) -> Callable[[], None]:
        """Call `listener(order, fill)` on every fill; returns a function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    @property
    def open_orders(self) -> list[Order]:
        return list(self._open.values())

    def submit(self, order: Order) -> list[Fill]:
        """Accept `order` (which must have a listing) and match it now; returns its fills."""
        if order.listing is None:
            raise ValueError(f"order {order.order_id} has no listing to match against")
        now = self.market.now()
        order.status, order.submitted_at, order.updated_at = OrderStatus.ACCEPTED, now, now
        if order.order_type is OrderType.TRAILING_STOP:
            order.water_mark = self.market.quote(order.listing, now).last
        self._open[order.order_id] = order
        return self._evaluate(order, now)

    def cancel(self, order_id: str, reason: str = "canceled by request") -> Order | None:
        """Cancel an open order; returns it, or None when it is not open (filled, unknown)."""
        order = self._open.pop(order_id, None)
        if order is not None:
            self._finish(order, OrderStatus.CANCELED, reason, self.market.now())
        return order

    def process(self) -> list[Fill]:
        """Re-evaluate every open order at the clock's now; returns the new fills."""
        now = self.market.now()
        fills: list[Fill] = []
        for order in list(self._open.values()):
            fills.extend(self._evaluate(order, now))
        return fills

    on_tick = process

    # -- matching -------------------------------------------------------------------------
    def _finish(self, order: Order, status: OrderStatus, reason: str, now: datetime) -> None:
        self._open.pop(order.order_id, None)
        order.status, order.reason, order.updated_at = status, reason, now

    def _evaluate(self, order: Order, now: datetime) -> list[Fill]:
        listing = order.listing
        assert listing is not None
        market = self.market
        tif = order.time_in_force
        immediate = tif in (TimeInForce.IOC, TimeInForce.FOK)
        if tif is TimeInForce.DAY and order.session is not None and \
                market.trade_date(listing, now) != order.session:
            self._finish(order, OrderStatus.EXPIRED, "day order expired at the session end", now)
            return []
        if not market.is_open(listing, now):
            if immediate:
                self._finish(order, OrderStatus.CANCELED, f"{listing.exchange} is closed", now)
            return []  # queued for the next session
        if order.session is None:
            order.session = market.trade_date(listing, now)
        quote = market.quote(listing, now)
        buy = order.side is Side.BUY
        if not self._triggered(order, quote.last, buy):
            return []
        touch = quote.ask if buy else quote.bid
        limit = order.limit_price if order.order_type in (OrderType.LIMIT,
                                                          OrderType.STOP_LIMIT) else None
        if limit is not None and (touch > limit if buy else touch < limit):
            if immediate:
                self._finish(order, OrderStatus.CANCELED,
                             f"{tif.value} limit {limit} not marketable at {touch}", now)
            return []
        if order.quantity is None:  # notional: sized at the first price it can trade at
            assert order.notional is not None
            order.quantity = _lots(order.notional / (touch * listing.multiplier), listing)
            if order.quantity < listing.min_quantity:
                self._finish(order, OrderStatus.REJECTED, f"notional {order.notional} buys "
                             f"less than the minimum quantity {listing.min_quantity}", now)
                return []
        step = market.step(now)
        taken_step, taken = self._taken.get((listing.key, order.side), (step, _D(0)))
        available = listing.top_size - (taken if taken_step == step else _D(0))
        qty = min(available, order.remaining)
        qty = _lots(qty, listing)
        if tif is TimeInForce.FOK and qty < order.remaining:
            self._finish(order, OrderStatus.CANCELED, f"fill-or-kill: only {available} of "
                         f"{order.remaining} available at {touch}", now)
            return []
        fills = []
        if qty > 0:
            self._taken[(listing.key, order.side)] = (
                step, (taken if taken_step == step else _D(0)) + qty)
            fills.append(self._fill(order, qty, touch, now))
        if order.remaining <= 0:
            self._finish(order, OrderStatus.FILLED, order.reason, now)
        elif tif is TimeInForce.IOC:
            self._finish(order, OrderStatus.CANCELED,
                         f"immediate-or-cancel: {order.remaining} unfilled", now)
        return fills

    def _triggered(self, order: Order, last: Decimal, buy: bool) -> bool:
        if order.triggered or order.order_type in (OrderType.MARKET, OrderType.LIMIT):
            return True
        if order.order_type is OrderType.TRAILING_STOP:
            mark = order.water_mark if order.water_mark is not None else last
            mark = min(mark, last) if buy else max(mark, last)
            order.water_mark = mark
            if order.trail_price is not None:
                offset = order.trail_price
            else:
                offset = mark * (order.trail_percent or _D(0)) / 100
            stop = mark + offset if buy else mark - offset
        else:
            stop = order.stop_price if order.stop_price is not None else last
        order.triggered = last >= stop if buy else last <= stop
        return order.triggered

    def _fill(self, order: Order, qty: Decimal, price: Decimal, now: datetime) -> Fill:
        listing = order.listing
        assert listing is not None
        order.filled_quantity += qty
        order.filled_value += qty * price * listing.multiplier
        total_fee = order.fees.fee(order.filled_quantity, order.filled_value)
        fee, order.fees_paid = total_fee - order.fees_paid, total_fee
        order.status, order.updated_at = OrderStatus.PARTIALLY_FILLED, now
        inst = listing.instrument
        trade_date = trade_date_of(now, inst.asset_class.value, inst.key, inst.currency)
        settle_date = settle_date_of(inst.asset_class.value, inst.key, inst.currency, trade_date)
        assert settle_date is not None, f"no settlement rule for {inst.key}"
        fill = Fill(
            fill_id=f"{order.order_id[:8]}-{len(order.fill_ids) + 1}-{uuid.uuid4().hex[:6]}",
            order_id=order.order_id, client_order_id=order.client_order_id,
            account=order.account, key=listing.key, symbol=listing.symbol, side=order.side,
            quantity=qty, price=price, fee=fee, fee_currency=listing.currency,
            currency=listing.currency, executed_at=now, trade_date=trade_date,
            settle_date=settle_date)
        order.fill_ids.append(fill.fill_id)
        for listener in list(self._listeners):
            listener(order, fill)
        return fill
