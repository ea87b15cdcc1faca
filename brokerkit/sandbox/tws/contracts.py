"""The gateway's contract database: every sandbox listing as IB describes it.

Each non-crypto listing of the market becomes one `TwsContract` with a stable conId (IB's
real ids for AAPL, SPY and EUR.USD; a hash of the instrument key for the rest), IB's
exchange names (SMART routing for stocks and options, IBIS for XETRA, TSEJ for Tokyo, TSE for
Toronto, IDEALPRO for FX, CME for futures) and the details `reqContractDetails` answers.
`ContractDB.match(query)` applies TWS's matching rules (conId alone when given; otherwise
symbol, secType, currency, expiry prefix, strike, right, localSymbol, exchange).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ...model import AssetClass
from ..market import Listing

__all__ = ["ContractDB", "ContractQuery", "TwsContract", "stable_con_id"]

_KNOWN_IDS = {"STK:AAPL": 265598, "STK:SPY": 756733, "CASH:EUR.USD": 12087792,
              "STK:MSFT": 272093, "STK:NVDA": 4815747}
#: IB's exchange name for each sandbox exchange, and the time zone TWS reports.
_IB_EXCHANGE = {"NASDAQ": "NASDAQ", "NYSE": "NYSE", "ARCA": "ARCA", "CBOE": "CBOE",
                "XETRA": "IBIS", "LSE": "LSE", "TSE": "TSEJ", "SEHK": "SEHK", "TSX": "TSE",
                "CME": "CME", "IDEALPRO": "IDEALPRO"}
_ALIASES = {"XETRA": "IBIS", "TSEJ": "TSEJ", "ISLAND": "NASDAQ"}
_TZ = {"NASDAQ": "US/Eastern", "NYSE": "US/Eastern", "ARCA": "US/Eastern",
       "CBOE": "US/Eastern", "XETRA": "MET", "LSE": "Europe/London", "TSE": "Japan",
       "SEHK": "Hongkong", "TSX": "EST5EDT", "CME": "US/Central", "IDEALPRO": "US/Eastern"}
_US_VALID = "SMART,NASDAQ,NYSE,ARCA,BATS,IEX,ISLAND"
_RIGHTS = {"CALL": "C", "PUT": "P", "C": "C", "P": "P", "": ""}


def stable_con_id(key: str) -> int:
    """A deterministic conId for an instrument key (same in every process)."""
    known = _KNOWN_IDS.get(key)
    if known is not None:
        return known
    digest = hashlib.blake2b(key.encode(), digest_size=8, person=b"tws-conid").digest()
    return 100_000_000 + int.from_bytes(digest, "little") % 800_000_000


@dataclass(frozen=True)
class TwsContract:
    """One instrument in IB's terms, with the contract-details facts."""

    listing: Listing
    con_id: int
    symbol: str
    sec_type: str
    exchange: str  # the default routing exchange (SMART, CME, IDEALPRO, LSE, ...)
    primary_exchange: str
    currency: str
    local_symbol: str
    trading_class: str
    last_trade_date: str = ""
    strike: float = 0.0
    right: str = ""
    multiplier: str = ""
    valid_exchanges: tuple[str, ...] = ()
    min_tick: float = 0.01
    long_name: str = ""
    market_name: str = ""
    time_zone: str = "US/Eastern"
    under_con_id: int = 0
    under_symbol: str = ""
    under_sec_type: str = ""
    stock_type: str = ""
    min_size: float = 1.0
    size_increment: float = 1.0
    order_types: str = "ACTIVETIM,ADJUST,ALERT,GTC,IOC,LMT,MKT,STP,STPLMT,TRAIL"
    aliases: tuple[str, ...] = field(default=())

    @property
    def key(self) -> str:
        return self.listing.key

    @property
    def contract_month(self) -> str:
        return self.last_trade_date[:6]

    @property
    def mult(self) -> float:
        return float(self.multiplier) if self.multiplier else 1.0

    def c11(self, exchange: str | None = None) -> list[object]:
        """conId, symbol, secType, lastTradeDate, strike, right, multiplier, exchange,
        currency, localSymbol, tradingClass (the contract block of openOrder/execDetails)."""
        return [self.con_id, self.symbol, self.sec_type, self.last_trade_date, self.strike,
                self.right, self.multiplier, exchange or self.exchange, self.currency,
                self.local_symbol, self.trading_class]

    def position_exchange(self) -> str:
        """The exchange a position line shows (TWS shows the listing exchange)."""
        if self.sec_type == "STK":
            return self.primary_exchange
        return self.exchange


@dataclass(frozen=True)
class ContractQuery:
    """The 12 contract fields of a client request."""

    con_id: int = 0
    symbol: str = ""
    sec_type: str = ""
    last_trade_date: str = ""
    strike: float = 0.0
    right: str = ""
    multiplier: str = ""
    exchange: str = ""
    primary_exchange: str = ""
    currency: str = ""
    local_symbol: str = ""
    trading_class: str = ""

    def describe(self) -> str:
        parts = [f"{k}={v!r}" for k, v in (
            ("conId", self.con_id), ("symbol", self.symbol), ("secType", self.sec_type),
            ("expiry", self.last_trade_date), ("strike", self.strike), ("right", self.right),
            ("exchange", self.exchange), ("currency", self.currency),
            ("localSymbol", self.local_symbol)) if v]
        return ", ".join(parts)


def _ib_symbol(li: Listing) -> str:
    if li.exchange == "SEHK":
        return li.symbol.lstrip("0") or li.symbol
    return li.symbol


def _from_listing(li: Listing) -> TwsContract | None:
    ac = li.asset_class
    inst = li.instrument
    key = li.key
    tz = _TZ.get(li.exchange, "US/Eastern")
    tick = float(li.tick)
    if ac in (AssetClass.EQUITY, AssetClass.ETF, AssetClass.FUND):
        prim = _IB_EXCHANGE.get(li.exchange, li.exchange)
        sym = _ib_symbol(li)
        if li.currency == "USD":
            valid = tuple(_US_VALID.split(","))
            tclass = "NMS" if prim == "NASDAQ" else sym
        else:
            valid = ("SMART", prim)
            tclass = sym
        aliases = (li.symbol,) if sym != li.symbol else ()
        return TwsContract(
            li, stable_con_id(key), sym, "STK", "SMART", prim, li.currency, sym, tclass,
            valid_exchanges=valid, min_tick=tick, long_name=f"{li.symbol} (sandbox)",
            market_name=tclass, time_zone=tz, stock_type="ETF" if ac is AssetClass.ETF
            else "COMMON", min_size=float(li.min_quantity), size_increment=float(li.lot_size),
            aliases=aliases)
    if ac is AssetClass.OPTION:
        assert inst.expiry is not None and inst.strike is not None
        under = inst.underlying or inst.symbol
        return TwsContract(
            li, stable_con_id(key), under, "OPT", "SMART", "", li.currency,
            inst.occ_symbol, under, last_trade_date=f"{inst.expiry:%Y%m%d}",
            strike=float(inst.strike), right=inst.right, multiplier=str(int(li.multiplier)),
            valid_exchanges=("SMART", "CBOE", "AMEX", "ISE", "PHLX", "BOX"), min_tick=tick,
            long_name=f"{under} {inst.expiry:%b%d'%y} {inst.strike} {inst.right}",
            market_name=under, time_zone=tz, under_con_id=stable_con_id(f"STK:{under}"),
            under_symbol=under, under_sec_type="STK")
    if ac is AssetClass.FUTURE:
        assert inst.expiry is not None
        under = inst.underlying or inst.symbol
        return TwsContract(
            li, stable_con_id(key), under, "FUT", li.exchange, li.exchange, li.currency,
            inst.symbol,
            under, last_trade_date=f"{inst.expiry:%Y%m%d}",
            multiplier=str(int(li.multiplier)), valid_exchanges=(li.exchange,), min_tick=tick,
            long_name=f"E-mini S&P 500 {inst.expiry:%b%y}" if under == "ES" else under,
            market_name=under, time_zone=tz, under_con_id=stable_con_id(f"IND:{under}"),
            under_symbol=under, under_sec_type="IND",
            order_types="ACTIVETIM,ADJUST,ALERT,GTC,LMT,MKT,STP,STPLMT,TRAIL")
    if ac is AssetClass.FX:
        base, _, quote = li.symbol.partition(".")
        return TwsContract(
            li, stable_con_id(f"CASH:{li.symbol}"), base, "CASH", "IDEALPRO", "", quote,
            li.symbol, li.symbol, valid_exchanges=("IDEALPRO",), min_tick=tick,
            long_name="European Monetary Union Euro" if base == "EUR" else base,
            market_name=li.symbol, time_zone=tz, min_size=1.0, size_increment=0.01,
            order_types="ACTIVETIM,ADJUST,ALERT,GTC,IOC,LMT,MKT,STP,STPLMT,TRAIL")
    return None


class ContractDB:
    """Every IB-tradable sandbox listing, by conId and by instrument key."""

    def __init__(self, listings: Iterable[Listing]) -> None:
        self._by_id: dict[int, TwsContract] = {}
        self._by_key: dict[str, TwsContract] = {}
        for li in listings:
            c = _from_listing(li)
            if c is None:
                continue
            if c.con_id in self._by_id:
                raise ValueError(f"conId {c.con_id} of {c.key} collides with "
                                 f"{self._by_id[c.con_id].key}")
            self._by_id[c.con_id] = c
            self._by_key[c.key] = c

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[TwsContract]:
        return iter(self._by_id.values())

    def by_con_id(self, con_id: int) -> TwsContract | None:
        return self._by_id.get(con_id)

    def by_key(self, key: str) -> TwsContract | None:
        return self._by_key.get(key)

    def match(self, q: ContractQuery) -> list[TwsContract]:
        """Every contract the query describes (TWS's rules; see the module docstring)."""
        if q.con_id:
            found = self._by_id.get(q.con_id)
            return [found] if found is not None else []
        out = []
        symbol = q.symbol.strip().upper()
        local = q.local_symbol.strip().upper()
        right = _RIGHTS.get(q.right.strip().upper(), "?")
        exchange = _ALIASES.get(q.exchange.upper(), q.exchange.upper())
        primary = _ALIASES.get(q.primary_exchange.upper(), q.primary_exchange.upper())
        for c in self._by_id.values():
            if symbol and symbol != c.symbol and symbol not in c.aliases:
                continue
            if not symbol and not local:
                continue
            if q.sec_type and q.sec_type.upper() != c.sec_type:
                continue
            if q.currency and q.currency.upper() != c.currency:
                continue
            if q.last_trade_date and not c.last_trade_date.startswith(q.last_trade_date):
                continue
            if q.strike and abs(q.strike - c.strike) > 1e-9:
                continue
            if q.right and right != c.right:
                continue
            if local and local.replace(" ", "") != c.local_symbol.upper().replace(" ", ""):
                continue
            if q.multiplier and c.multiplier and float(q.multiplier) != c.mult:
                continue
            if exchange and exchange not in c.valid_exchanges:
                continue
            if primary and c.primary_exchange and primary != c.primary_exchange:
                continue
            out.append(c)
        return out
