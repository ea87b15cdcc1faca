"""`IBKRAdapter`: the connection type "ibkr", Interactive Brokers over ib_async.

ib_async (the maintained successor of ib_insync) talks the TWS API to a TWS or IB Gateway
(or to the sandbox's TWS-protocol gateway). It is asyncio-native: every call here runs on the
runtime loop, where ib_async's socket lives. Options (`ConnectionConfig.options`):

==============  ==============================================================================
host            TWS/Gateway host (default 127.0.0.1)
port            its API port (default 7497, TWS paper; IB Gateway paper is 4002)
client_id       the API client id (default: a stable number from the connection's name);
                if it is taken, the next free ids are tried
account         the account whose values and portfolio are streamed (default: the only one)
timeout         seconds for connecting and for each request (default 4)
reconnect       true (default): after a lost connection, reconnect with backoff
fill_wait       seconds a market order's submit waits for its fill (default 1)
==============  ==============================================================================

Client ids: a connection that connects again in the same process (a re-run notebook cell)
takes over its own id from the previous adapter; another connection, or another process,
holding the id makes it try the next one (TWS answers 326, detected at once). Order ids never
go backwards: the highest id used per gateway and client id is remembered across reconnects.

No fill is lost: fills are kept by execution id across reconnects, and the executions are
requested again after every reconnect (ib_async's start-up does, and this adapter merges).
Submits carry the client order id in `orderRef`; `lookup` searches open and completed orders
and the executions for it. A submit whose answer is lost raises `SubmitUncertain`.

Beyond the canonical frames, IBKR's analytics: `margin_requirements()`, `what_if(intent)`,
`currency_exposure()` and `position_summary()` (frames `MARGIN`, `WHAT_IF`,
`CURRENCY_EXPOSURE`, `POSITION_SUMMARY` of `brokerkit.frames`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import weakref
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from .. import frames, runtime
from ..errors import AdapterError, ConnectionDown, SubmitUncertain
from ..model import (
    AssetClass,
    Instrument,
    OrderIntent,
    OrderStatus,
    OrderType,
    Side,
    Violation,
)
from ..venues import ibkr as venue
from ..venues.currencies import EXCHANGE_CURRENCIES
from ..venues.symbols import share_class_symbol
from .base import Adapter, BrokerOrder, Capabilities, Options, fills_frame

if TYPE_CHECKING:
    import pandas as pd
    from ib_async import IB, Contract, ContractDetails, Trade

    from ..config import ConnectionConfig
    from ..secrets import Secret

__all__ = ["IBKRAdapter", "contract_for", "instrument_of"]

log = logging.getLogger(__name__)
# ib_async logs every order error and cancel at ERROR with no handler of its own, so Python's
# last-resort handler would print them on stderr (in notebooks too); brokerkit reports them in
# its results. A handler configured by the application still receives them.
logging.getLogger("ib_async").addHandler(logging.NullHandler())

_OPTIONS = {"host", "port", "client_id", "account", "timeout", "reconnect",
            "fill_wait", "rate_limit"}
DEFAULT_PORT = 7497
DEFAULT_TIMEOUT = 4.0
#: Client ids tried after the preferred one is taken.
CLIENT_ID_TRIES = 10
#: Connects tried when the start-up sync (positions, portfolio, orders, executions) does not
#: complete within the timeout: ib_async would connect without that data, which the adapter
#: refuses (a portfolio with holes looks like a smaller one).
SYNC_TRIES = 2
#: Reconnect backoff: first delay, factor, longest delay (seconds).
BACKOFF = (0.1, 2.0, 5.0)

#: Our exchange names (the keys' `@EXCHANGE`) where IB names the venue differently.
IB_EXCHANGE = {"XETRA": "IBIS", "TSE": "TSEJ", "TSX": "TSE"}
CANONICAL_EXCHANGE = {ib: ours for ours, ib in IB_EXCHANGE.items()}
#: Trade dates are the market's: its time zone by currency, when the contract has none.
CURRENCY_TZ = {"USD": "America/New_York", "EUR": "Europe/Berlin", "GBP": "Europe/London",
               "JPY": "Asia/Tokyo", "HKD": "Asia/Hong_Kong", "CAD": "America/Toronto",
               "CHF": "Europe/Zurich", "AUD": "Australia/Sydney"}

# IB's order type and time-in-force codes: data in brokerkit.venues.ibkr, with their sources
_ORDER_TYPE = venue.ORDER_TYPE_CODES
_ORDER_TYPE_BACK = {v: k for k, v in _ORDER_TYPE.items()}
_TIF = venue.TIME_IN_FORCE_CODES
_TIF_BACK = {v: k for k, v in _TIF.items()}
_STATUS = {"PendingSubmit": OrderStatus.PENDING, "ApiPending": OrderStatus.PENDING,
           "PreSubmitted": OrderStatus.ACCEPTED, "Submitted": OrderStatus.ACCEPTED,
           "ApiUpdate": OrderStatus.ACCEPTED, "ValidationError": OrderStatus.ACCEPTED,
           "PendingCancel": OrderStatus.ACCEPTED, "Filled": OrderStatus.FILLED,
           "Cancelled": OrderStatus.CANCELED, "ApiCancelled": OrderStatus.CANCELED,
           "Inactive": OrderStatus.REJECTED}
_SEC_CLASS = {"STK": AssetClass.EQUITY, "OPT": AssetClass.OPTION, "FUT": AssetClass.FUTURE,
              "CASH": AssetClass.FX, "CRYPTO": AssetClass.CRYPTO, "BOND": AssetClass.BOND,
              "FUND": AssetClass.FUND}
#: Error codes that refuse an order (as opposed to cancelling a working one).
_REJECT_CODES = frozenset({103, 104, 105, 106, 107, 109, 110, 111, 113, 116, 117, 200, 201,
                           203, 382, 383, 387, 388, 399, 10006, 10147})

_OCC = re.compile(r"([A-Z]{1,6}) *(\d{6})([CP])(\d{8})")
_FUTURE = re.compile(r"[A-Z]{1,4}[FGHJKMNQUVXZ]\d{1,2}")
_FX = re.compile(r"([A-Z]{3})\.([A-Z]{3})")


def _f(value: Any) -> float:
    """A float from IB's strings and numbers; NaN for '', None and IB's unset double."""
    if value is None or value == "":
        return math.nan
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return math.nan if out >= 1.7e308 or out == 2147483647 else out


def _expiry(text: str) -> date | None:
    digits = (text or "")[:8]
    if len(digits) == 8 and digits.isdigit():
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    if len(digits) >= 6 and digits[:6].isdigit():  # a contract month: YYYYMM
        return date(int(digits[:4]), int(digits[4:6]), 1)
    return None


# --------------------------------------------------------------------------------------------
# Contracts <-> canonical instruments


def instrument_of(contract: Contract) -> Instrument:
    """The canonical instrument of an IB contract (keys: STK:AAPL, STK:VOD@LSE, OPT:<OCC>,
    FUT:ESZ6, CASH:EUR.USD)."""
    sec = contract.secType
    ccy = contract.currency or "USD"
    if sec == "OPT":
        exp = _expiry(contract.lastTradeDateOrContractMonth)
        if exp is None:
            raise ValueError(f"option {contract.localSymbol or contract.symbol!r} has no expiry")
        mult = _f(contract.multiplier)
        return Instrument.option(contract.symbol, exp, repr(float(contract.strike)),
                                 contract.right[:1], ccy, int(mult) if mult == mult else 100)
    if sec == "FUT":
        exp = _expiry(contract.lastTradeDateOrContractMonth) or date.min
        mult = _f(contract.multiplier)
        return Instrument.future(contract.localSymbol or contract.symbol, contract.symbol, exp,
                                 CANONICAL_EXCHANGE.get(contract.exchange, contract.exchange),
                                 ccy, int(mult) if mult == mult else 1)
    if sec == "CASH":
        return Instrument.fx(contract.symbol, ccy)
    if sec == "CRYPTO":
        return Instrument.crypto(contract.symbol, ccy)
    ac = _SEC_CLASS.get(sec, AssetClass.EQUITY)
    venue = contract.primaryExchange or contract.exchange
    if venue in ("SMART", ""):
        venue = ""
    symbol = contract.symbol
    if venue == "SEHK" and symbol.isdigit():
        symbol = symbol.zfill(4)  # IB's "700" is HKEX's stock code 0700
    return Instrument(symbol, ac, ccy,
                      "" if ccy == "USD" else CANONICAL_EXCHANGE.get(venue, venue))


def contract_for(symbol: str, asset_class: AssetClass | None = None,
                 currency: str | None = None) -> Contract:
    """An (unqualified) IB contract for a canonical key ("STK:VOD@LSE", "OPT:AAPL  261218C…",
    "FUT:ESZ6", "CASH:EUR.USD") or an order's symbol ("AAPL", "AAPL261218C00230000",
    "ESZ6", "EUR.USD"), with the asset class and currency as hints."""
    from ib_async import Contract, Forex, Option, Stock

    text = symbol.strip().upper()
    if ":" in text:
        inst = Instrument.parse_key(text)
        ac, text = inst.asset_class, text.partition(":")[2]
        asset_class = asset_class or ac
    m = _OCC.fullmatch(text)
    if m and asset_class in (None, AssetClass.OPTION):
        root, ymd, right, strike = m.groups()
        return Option(root, "20" + ymd, int(strike) / 1000, right, "SMART",
                      currency=currency or "USD")
    m = _FX.fullmatch(text)
    if m and asset_class in (None, AssetClass.FX):
        return Forex(m.group(1) + m.group(2))
    if asset_class is AssetClass.FUTURE or (asset_class is None and _FUTURE.fullmatch(text)):
        return Contract(secType="FUT", localSymbol=text, currency=currency or "")
    if asset_class is AssetClass.CRYPTO:
        base, _, quote = text.partition("/")
        return Contract(secType="CRYPTO", symbol=base, exchange="PAXOS",
                        currency=quote or currency or "USD")
    ticker, _, venue = text.partition("@")
    if venue:
        exchange = IB_EXCHANGE.get(venue, venue)
        if exchange == "SEHK" and ticker.isdigit():
            ticker = ticker.lstrip("0") or "0"  # HKEX's 0700 is IB's "700"
        listed_in = EXCHANGE_CURRENCIES.get(CANONICAL_EXCHANGE.get(exchange, exchange), "")
        return Stock(ticker, exchange, currency or listed_in)
    # IB spells a share class with a space: BRK B (venues.symbols)
    return Stock(share_class_symbol(ticker).replace(".", " "), "SMART", currency or "USD")


def _contract_columns(c: Contract, inst: Instrument) -> dict[str, Any]:
    exchange = c.primaryExchange or c.exchange
    if exchange in ("", "SMART"):
        exchange = inst.exchange
    mult = _f(c.multiplier)
    return {"exchange": CANONICAL_EXCHANGE.get(exchange, exchange) or None,
            "multiplier": mult if mult == mult else 1.0, "expiry": inst.expiry,
            "strike": None if inst.strike is None else float(inst.strike),
            "right": inst.right or None}


# --------------------------------------------------------------------------------------------
# Client ids: one holder per (host, port, client id) in this process


@dataclass
class _Slot:
    holder: weakref.ref[IBKRAdapter]
    connection: str


_slots: dict[tuple[str, int, int], _Slot] = {}
_next_order_ids: dict[tuple[str, int, int], int] = {}


def _default_client_id(name: str) -> int:
    return 100 + zlib.crc32(name.encode()) % 9000


class IBKRAdapter(Adapter):
    """A trading connection to Interactive Brokers through TWS / IB Gateway."""

    institution = "Interactive Brokers"
    capabilities = Capabilities(
        trading=True,
        asset_classes=frozenset({AssetClass.EQUITY, AssetClass.ETF, AssetClass.OPTION,
                                 AssetClass.FUTURE, AssetClass.FX}),
        fractional=venue.FRACTIONAL, notional=venue.NOTIONAL,
        order_types=frozenset(_ORDER_TYPE),
        notional_order_types=frozenset(), short_selling=True)

    def __init__(self, config: ConnectionConfig, secrets: Mapping[str, Secret] | None = None
                 ) -> None:
        super().__init__(config, secrets)
        opts = Options(config, _OPTIONS)
        fail = opts.fail
        self._host = opts.get("host", "127.0.0.1")
        if not isinstance(self._host, str) or not self._host:
            raise fail("host", self._host, "a host name or address")
        port = opts.get("port")
        if port is not None and (isinstance(port, bool) or not isinstance(port, int)
                                 or not 0 < port < 65536):
            raise fail("port", port, "a TCP port number")
        self._port: int | None = port
        cid = opts.get("client_id", _default_client_id(config.name))
        if isinstance(cid, bool) or not isinstance(cid, int) or not 0 <= cid < 2**31:
            raise fail("client_id", cid, "an integer from 0")
        self._preferred_client_id = cid
        self._account_opt = opts.get("account")
        if self._account_opt is not None and not isinstance(self._account_opt, str):
            raise fail("account", self._account_opt, "an account id")
        self._timeout = self._seconds(opts, "timeout", DEFAULT_TIMEOUT)
        self._fill_wait = self._seconds(opts, "fill_wait", 1.0, zero=True)
        self._reconnect = opts.flag("reconnect", True)
        self._ib: IB | None = None
        self.client_id: int | None = None
        self._accounts: list[str] = list(config.accounts)
        self._closing = False
        self._reconnecting: asyncio.Task[None] | None = None
        self._fills: dict[str, Any] = {}  # execId -> ib_async Fill, kept across reconnects
        self._details: dict[str, ContractDetails] = {}  # canonical key / symbol -> details
        self.reconnects = 0

    @staticmethod
    def _seconds(opts: Options, key: str, default: float, zero: bool = False) -> float:
        value = opts.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or (
                value == 0 and not zero):
            raise opts.fail(key, value, "a number of seconds > 0")
        return float(value)

    def __repr__(self) -> str:
        where = f"{self._host}:{self._port or DEFAULT_PORT}"
        return f"<IBKRAdapter {self.name!r} {where} client_id={self.client_id} " \
               f"{self.health.status}>"

    @property
    def accounts(self) -> list[str]:
        return list(self._accounts)

    @property
    def ib(self) -> IB:
        """The connected ib_async `IB` (for what brokerkit does not wrap)."""
        if self._ib is None or not self._ib.isConnected():
            raise ConnectionDown(self.name, "not connected; call connect() first")
        return self._ib

    @property
    def _institution(self) -> str:
        return self.config.institution or self.institution

    # -- lifecycle ------------------------------------------------------------------------
    async def connect_async(self) -> None:
        """Connect (taking over this connection's client id from an earlier adapter in this
        process, else the first free id); raises `ConnectionDown` when it cannot."""
        self._closing = False
        try:
            await self._open()
        except ConnectionDown:
            raise
        except Exception as exc:  # socket errors, timeouts
            raise ConnectionDown(self.name, f"connect failed: {_text(exc)}") from exc

    async def _endpoint(self) -> tuple[str, int]:
        return self._host, DEFAULT_PORT if self._port is None else self._port

    async def _open(self) -> None:
        host, port = await self._endpoint()
        cid = self._preferred_client_id
        errors: list[str] = []
        for _ in range(CLIENT_ID_TRIES):
            key = (host, port, cid)
            slot = _slots.get(key)
            holder = slot.holder() if slot else None
            if holder is not None and holder is not self:
                if slot is not None and slot.connection == self.name:
                    await holder.close_async()  # our own earlier adapter (a re-run cell)
                else:
                    cid += 1
                    continue
            try:
                await self._connect_with_sync(host, port, cid)
            except _ClientIdInUse as exc:
                errors.append(str(exc))
                cid += 1
                continue
            return
        raise ConnectionDown(self.name, f"connect failed: client ids "
                                        f"{self._preferred_client_id}..{cid - 1} are all in use"
                                        f" at {host}:{port}")

    async def _connect_with_sync(self, host: str, port: int, cid: int) -> None:
        """`_connect_once`, tried again when the start-up sync timed out."""
        for attempt in range(1, SYNC_TRIES + 1):
            try:
                await self._connect_once(host, port, cid)
                return
            except _SyncIncomplete as exc:
                if attempt == SYNC_TRIES:
                    raise ConnectionDown(self.name, f"connect failed: the start-up sync did "
                                                    f"not complete within {self._timeout:g} s "
                                                    f"({exc})") from None
                log.warning("%s: the start-up sync did not complete (%s); connecting again",
                            self.name, exc)

    async def _connect_once(self, host: str, port: int, cid: int) -> None:
        from ib_async import IB

        ib = IB()
        ib.RequestTimeout = self._timeout
        refused: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_error(req_id: int, code: int, text: str, contract: Any) -> None:
            if code == 326 and not refused.done():
                refused.set_result(text)

        ib.errorEvent += on_error
        account = self._account_opt or (self._accounts[0] if len(self._accounts) == 1 else "")
        connecting = asyncio.ensure_future(ib.connectAsync(
            host, port, clientId=cid, timeout=self._timeout, readonly=self.config.read_only,
            account=account, raiseSyncErrors=True))
        done, _ = await asyncio.wait({connecting, refused}, return_when=asyncio.FIRST_COMPLETED)
        if refused in done and not connecting.done():
            connecting.cancel()
            with contextlib.suppress(BaseException):
                await connecting
            ib.disconnect()
            raise _ClientIdInUse(f"client id {cid}: {refused.result()}")
        refused.cancel()
        try:
            connecting.result()
        except BaseException as exc:
            ib.disconnect()
            if refused.done() and not refused.cancelled():
                raise _ClientIdInUse(f"client id {cid}: {refused.result()}") from None
            if type(exc) is ConnectionError and exc.args and isinstance(exc.args[0], list):
                # raiseSyncErrors: the start-up requests that timed out
                raise _SyncIncomplete("; ".join(map(str, exc.args[0]))) from None
            raise
        ib.errorEvent -= on_error
        key = (host, port, cid)
        # order ids never go backwards, whatever nextValidId the gateway sends
        ib.client.updateReqId(_next_order_ids.get(key, 0))
        self._ib, self.client_id = ib, cid
        _slots[key] = _Slot(weakref.ref(self), self.name)
        managed = ib.managedAccounts()
        if self.config.accounts:
            missing = [a for a in self.config.accounts if a not in managed]
            if missing:
                await self.close_async()
                raise ConnectionDown(self.name, f"connect failed: account {missing[0]!r} is "
                                                f"not managed by this login (accounts: "
                                                f"{', '.join(managed)})")
        else:
            self._accounts = list(managed)
        ib.disconnectedEvent += self._on_disconnected
        ib.execDetailsEvent += self._on_fill
        ib.commissionReportEvent += self._on_commission
        for fill in ib.fills():  # executions re-requested at every (re)connect
            self._keep(fill)

    async def close_async(self) -> None:
        self._closing = True
        task, self._reconnecting = self._reconnecting, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        ib, self._ib = self._ib, None
        if ib is not None:
            ib.disconnectedEvent -= self._on_disconnected
            ib.disconnect()
            for key, slot in list(_slots.items()):
                if slot.holder() is self:
                    self._remember_order_id(key, ib)
                    del _slots[key]

    def _remember_order_id(self, key: tuple[str, int, int], ib: IB) -> None:
        seq = getattr(ib.client, "_reqIdSeq", 0) or 0
        _next_order_ids[key] = max(_next_order_ids.get(key, 0), int(seq))

    # -- reconnect ------------------------------------------------------------------------
    def _on_disconnected(self) -> None:
        if self._closing:
            return
        self.health.status = "down"
        self.health.last_error = "connection to TWS lost"
        ib = self._ib
        if ib is not None and self.client_id is not None:
            for key, slot in _slots.items():
                if slot.holder() is self:
                    self._remember_order_id(key, ib)
        if self._reconnect and self._reconnecting is None:
            self._reconnecting = asyncio.ensure_future(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        delay, factor, longest = BACKOFF
        try:
            while not self._closing:
                await asyncio.sleep(delay)
                try:
                    old = self._ib
                    if old is not None:
                        old.disconnectedEvent -= self._on_disconnected
                    await self._open()
                    self.reconnects += 1
                    self.health.status = "connected"
                    self.health.last_error = None
                    log.info("%s: reconnected (client id %s)", self.name, self.client_id)
                    return
                except Exception as exc:
                    log.warning("%s: reconnect failed: %s", self.name, _text(exc))
                    delay = min(delay * factor, longest)
        finally:
            self._reconnecting = None

    async def _connected(self) -> IB:
        """The live `IB`, waiting for a reconnect in progress (up to the timeout)."""
        ib = self._ib
        if ib is not None and ib.isConnected():
            return ib
        task = self._reconnecting
        if task is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), self._timeout)
            ib = self._ib
            if ib is not None and ib.isConnected():
                return ib
        raise ConnectionDown(self.name, "not connected to TWS"
                             + ("; reconnecting" if self._reconnecting else
                                "; call connect() first"))

    # -- fills kept across reconnects -----------------------------------------------------
    def _on_fill(self, trade: Trade, fill: Any) -> None:
        self._keep(fill)

    def _on_commission(self, trade: Trade, fill: Any, report: Any) -> None:
        self._keep(fill)

    def _keep(self, fill: Any) -> None:
        exec_id = fill.execution.execId
        old = self._fills.get(exec_id)
        if old is None or (not old.commissionReport.execId and fill.commissionReport.execId):
            self._fills[exec_id] = fill
        self._remember_contract(fill.contract)

    # -- contracts ------------------------------------------------------------------------
    def _remember_contract(self, contract: Contract) -> None:
        with contextlib.suppress(ValueError):
            key = instrument_of(contract).key
            if key not in self._details and contract.conId:
                from ib_async import ContractDetails

                self._details[key] = ContractDetails(contract=contract)

    async def _details_for(self, symbol: str, asset_class: AssetClass | None = None,
                           currency: str | None = None) -> ContractDetails:
        """The contract details for a key or symbol (cached); `AdapterError` naming the
        symbol when IB knows none or several."""
        cache_key = f"{symbol}|{asset_class}|{currency}"
        hit = self._details.get(cache_key) or self._details.get(symbol)
        if hit is not None and hit.minTick:
            return hit
        ib = await self._connected()
        try:
            wanted = contract_for(symbol, asset_class, currency)
        except ValueError as exc:
            raise AdapterError(self.name, str(exc)) from None
        found = await self._ask(ib.reqContractDetailsAsync(wanted), f"contract {symbol}")
        if not found and wanted.secType == "STK" and wanted.exchange == "SMART" \
                and currency is None:
            from ib_async import Contract

            found = await self._ask(ib.reqContractDetailsAsync(
                Contract(secType="STK", symbol=wanted.symbol)), f"contract {symbol}")
        if not found:
            raise AdapterError(self.name, f"no IB contract for {symbol!r}")
        if len(found) > 1:
            where = ", ".join(f"{d.contract.primaryExchange or d.contract.exchange} "
                              f"{d.contract.currency}" for d in found[:5])
            raise AdapterError(self.name, f"{symbol!r} is ambiguous at IB ({where}): give a "
                                          f"currency or a key such as STK:{symbol}@LSE")
        details = found[0]
        self._details[cache_key] = details
        self._details[instrument_of(details.contract).key] = details
        return details

    async def _ask(self, awaitable: Any, what: str) -> Any:
        try:
            return await asyncio.wait_for(awaitable, self._timeout)
        except TimeoutError:
            raise AdapterError(self.name, f"{what}: no answer from TWS in "
                                          f"{self._timeout:g} s") from None
        except ConnectionError as exc:
            raise ConnectionDown(self.name, f"{what}: {_text(exc)}") from exc

    # -- reads ----------------------------------------------------------------------------
    def _values(self, ib: IB, account: str) -> dict[tuple[str, str], str]:
        out: dict[tuple[str, str], str] = {}
        for v in ib.accountValues(account):
            out[(v.tag, v.currency)] = v.value
        return out

    async def _summary(self, ib: IB) -> dict[str, dict[tuple[str, str], str]]:
        """Account summary rows (with `$LEDGER:ALL`) and account values, per account."""
        rows = await self._ask(ib.accountSummaryAsync(), "account summary")
        out: dict[str, dict[tuple[str, str], str]] = {a: {} for a in self._accounts}
        for a in self._accounts:
            out[a].update(self._values(ib, a))
        for v in rows:
            if v.account in out:
                out[v.account][(v.tag, v.currency)] = v.value
        return out

    @staticmethod
    def _base(values: Mapping[tuple[str, str], str]) -> str:
        for (tag, ccy), _ in values.items():
            if tag in ("NetLiquidation", "TotalCashValue") and ccy not in ("", "BASE"):
                return ccy
        return "USD"

    @staticmethod
    def _zero_nan(x: float) -> float:
        """0.0 for a figure IB did not send (NaN)."""
        return x if x == x else 0.0

    async def balances_async(self) -> pd.DataFrame:
        """A row per account and currency held, every figure in the row's own currency: the
        base-currency row carries the account's totals (buying power, net liquidation,
        margin); the others their cash and net liquidation in that currency.

        `settled_cash`: TWS reports settled cash only for the whole account, in the base
        currency (`SettledCash`: "cash recognized at the time of settlement - purchases at
        the time of trade - commissions - taxes - fees"; IB's ledger per currency has
        `CashBalance` but no settled figure). Each other currency's row takes its own
        `CashBalance`; the base row takes `SettledCash` less those other balances at IB's
        `ExchangeRate`, so the rows add up (in base) to IB's figure and unsettled sale
        proceeds, which IB does not break down, are counted against the base currency."""
        ib = await self._connected()
        summary = await self._summary(ib)
        rows = []
        for account, values in summary.items():
            base = self._base(values)
            ccys = sorted({c for (t, c) in values if t == "CashBalance"
                           and c not in ("", "BASE")} | {base})

            def get(tag: str, c: str, v: Mapping[tuple[str, str], str] = values) -> float:
                return _f(v.get((tag, c)))

            others_in_base = 0.0
            for ccy in ccys:
                if ccy != base:
                    others_in_base += self._zero_nan(get("CashBalance", ccy)) * \
                        get("ExchangeRate", ccy)
            for ccy in ccys:
                if ccy == base:
                    cash = get("CashBalance", base)
                    rows.append({
                        "account": account, "currency": base,
                        "cash": cash if cash == cash else get("TotalCashValue", base),
                        "settled_cash": get("SettledCash", base) - others_in_base,
                        "buying_power": get("BuyingPower", base),
                        "equity": get("NetLiquidationByCurrency", base)
                        if len(ccys) > 1 else get("NetLiquidation", base),
                        "margin_init": get("InitMarginReq", base),
                        "margin_maint": get("MaintMarginReq", base)})
                else:
                    cash = get("CashBalance", ccy)
                    rows.append({"account": account, "currency": ccy, "cash": cash,
                                 "settled_cash": cash, "buying_power": 0.0,
                                 "equity": get("NetLiquidationByCurrency", ccy),
                                 "margin_init": 0.0, "margin_maint": 0.0})
        return frames.make(frames.BALANCES, rows, connection=self.name,
                           institution=self._institution, as_of=datetime.now(UTC))

    async def positions_async(self) -> pd.DataFrame:
        """Every position of every account: stocks, options, futures, FX; valued from the
        portfolio stream where TWS streams it, with multiplier, expiry, strike, right and
        exchange."""
        ib = await self._connected()
        rows = []
        streamed: set[tuple[str, int]] = set()
        for item in ib.portfolio():
            streamed.add((item.account, item.contract.conId))
            rows.append(self._position_row(item.account, item.contract, item.position,
                                           item.averageCost, item.marketPrice,
                                           item.marketValue, item.unrealizedPNL))
        for p in ib.positions():
            if (p.account, p.contract.conId) in streamed or not p.position:
                continue
            rows.append(self._position_row(p.account, p.contract, p.position, p.avgCost,
                                           math.nan, math.nan, math.nan))
        rows = [r for r in rows if r["account"] in self._accounts]
        return frames.make(frames.POSITIONS, rows, connection=self.name,
                           institution=self._institution, as_of=datetime.now(UTC))

    def _position_row(self, account: str, c: Contract, qty: float, avg_cost: float,
                      price: float, value: float, upnl: float) -> dict[str, Any]:
        self._remember_contract(c)
        inst = instrument_of(c)
        cols = _contract_columns(c, inst)
        mult = cols["multiplier"] if c.secType in ("OPT", "FUT", "FOP") else 1.0
        return {"account": account, "instrument": inst.key, "symbol": inst.symbol,
                "asset_class": inst.asset_class.value, "quantity": float(qty),
                "avg_cost": _f(avg_cost) / mult,  # IB's per-contract cost includes it
                "market_price": _f(price), "market_value": _f(value),
                "currency": c.currency, "unrealized_pnl": _f(upnl), **cols}

    async def orders_async(self) -> pd.DataFrame:
        """Orders of this session, open orders of every client and today's completed ones,
        oldest first."""
        ib = await self._connected()
        await self._ask(ib.reqAllOpenOrdersAsync(), "open orders")
        trades = self._unique_trades(ib)
        rows = [self._order_row(t) for t in trades if t.order.account in self._accounts
                or not t.order.account]
        return frames.make(frames.ORDERS, rows, connection=self.name)

    async def open_orders_async(self) -> pd.DataFrame:
        """Every working order of the connection's accounts, of every API client and of TWS
        itself, as `reqAllOpenOrders` answers now (`openTrades()` knows only what this
        session has seen, and the orders of other clients are not kept in sync), oldest
        first."""
        ib = await self._connected()
        trades = await self._all_open_trades(ib)
        return frames.make(frames.ORDERS, [self._order_row(t) for t in trades],
                           connection=self.name)

    async def _all_open_trades(self, ib: IB) -> list[Trade]:
        got = await self._ask(ib.reqAllOpenOrdersAsync(), "open orders")
        seen: dict[Any, Trade] = {}
        for t in got:
            if t.isDone() or (t.order.account and t.order.account not in self._accounts):
                continue
            seen[t.order.permId or (t.order.clientId, t.order.orderId)] = t
        return sorted(seen.values(), key=lambda t: (
            t.log[0].time if t.log else datetime.min.replace(tzinfo=UTC), t.order.permId))

    @staticmethod
    def _unique_trades(ib: IB) -> list[Trade]:
        seen: dict[Any, Trade] = {}
        for t in ib.trades():
            key = t.order.permId or (t.order.clientId, t.order.orderId)
            seen[key] = t
        return sorted(seen.values(), key=lambda t: t.log[0].time if t.log else datetime.min
                      .replace(tzinfo=UTC))

    async def fills_async(self, since: datetime | None = None) -> pd.DataFrame:
        """Every execution seen on this connection (kept across reconnects), with
        commissions, oldest first; at or after `since` if given. The day's executions are
        asked for on every call: TWS sends a client the executions of its own orders only,
        so an order placed before a reconnect (under another client id) that fills after it
        is seen only by asking."""
        ib = await self._connected()
        for fill in await self._ask(ib.reqExecutionsAsync(), "executions"):
            self._keep(fill)
        for fill in ib.fills():
            self._keep(fill)
        fills = sorted(self._fills.values(), key=lambda f: f.execution.time)
        rows = [self._fill_row(f) for f in fills
                if f.execution.acctNumber in self._accounts
                and (since is None or f.execution.time >= since)]
        return fills_frame(rows, self.name)

    def _fill_row(self, f: Any) -> dict[str, Any]:
        e, c, r = f.execution, f.contract, f.commissionReport
        inst = instrument_of(c)
        executed = e.time if e.time.tzinfo else e.time.replace(tzinfo=UTC)
        return {"account": e.acctNumber, "fill_id": e.execId, "order_id": _order_id(
                    e.permId, e.clientId, e.orderId), "client_order_id": e.orderRef or None,
                "instrument": inst.key, "symbol": inst.symbol,
                "asset_class": inst.asset_class.value,
                "side": "buy" if e.side in ("BOT", "BUY") else "sell",
                "quantity": float(e.shares), "price": float(e.price),
                "fee": _f(r.commission) if r.execId else math.nan,
                "fee_currency": r.currency or None, "currency": c.currency,
                "executed_at": executed, "trade_date": None, "settle_date": None}

    async def quotes_async(self, symbols: Sequence[str]) -> pd.DataFrame:
        """Snapshot bid, ask and last for `symbols` (keys or order symbols)."""
        ib = await self._connected()
        details = [await self._details_for(s) for s in symbols]
        contracts = [d.contract for d in details]
        tickers = await self._ask(ib.reqTickersAsync(*contracts), "quotes") if contracts else []
        by_id = {t.contract.conId: t for t in tickers}
        rows = []
        for d in details:
            c = d.contract
            t = by_id.get(c.conId)
            if t is None:
                raise AdapterError(self.name, f"no quote for {c.localSymbol or c.symbol}")
            inst = instrument_of(c)
            as_of = t.time or datetime.now(UTC)
            rows.append({"instrument": inst.key, "symbol": inst.symbol,
                         "bid": _f(t.bid), "ask": _f(t.ask), "last": _f(t.last),
                         "currency": c.currency, "as_of": as_of})
        return frames.make(frames.QUOTES, rows, connection=self.name)

    async def instruments_async(self, symbols: Sequence[str]) -> pd.DataFrame:
        """Contract facts for `symbols`: exchange, tick, multiplier (IB takes whole
        quantities; every qualified contract is tradable)."""
        rows = []
        for s in symbols:
            d = await self._details_for(s)
            c = d.contract
            inst = instrument_of(c)
            mult = _f(c.multiplier)
            rows.append({"instrument": inst.key, "symbol": inst.symbol,
                         "asset_class": inst.asset_class.value, "currency": c.currency,
                         "exchange": _contract_columns(c, inst)["exchange"],
                         "tradable": True, "fractionable": False,
                         "shortable": c.secType != "CRYPTO",
                         "min_quantity": _f(getattr(d, "minSize", 1)) or 1.0,
                         "price_increment": _f(d.minTick),
                         "multiplier": mult if mult == mult else 1.0})
        return frames.make(frames.INSTRUMENTS, rows, connection=self.name)

    async def market_open_async(self, symbol: str) -> bool | None:
        """From the contract's liquid hours (its own time zone); None when TWS gives none."""
        d = await self._details_for(symbol)
        return _in_hours(d.liquidHours or d.tradingHours, d.timeZoneId, datetime.now(UTC))

    # -- analytics ------------------------------------------------------------------------
    async def margin_requirements_async(self) -> pd.DataFrame:
        """Per account, in its base currency: net liquidation, equity with loan, initial and
        maintenance margin, available funds, excess liquidity, cushion, buying power, and
        the look-ahead values (at the next margin change)."""
        ib = await self._connected()
        summary = await self._summary(ib)
        rows = []
        for account, values in summary.items():
            base = self._base(values)

            def get(tag: str, v: Mapping[tuple[str, str], str] = values, b: str = base
                    ) -> float:
                return _f(v.get((tag, b), v.get((tag, ""))))

            rows.append({"account": account, "currency": base,
                         "net_liquidation": get("NetLiquidation"),
                         "equity_with_loan": get("EquityWithLoanValue"),
                         "initial_margin": get("InitMarginReq"),
                         "maintenance_margin": get("MaintMarginReq"),
                         "available_funds": get("AvailableFunds"),
                         "excess_liquidity": get("ExcessLiquidity"),
                         "cushion": get("Cushion"), "buying_power": get("BuyingPower"),
                         "look_ahead_initial_margin": get("LookAheadInitMarginReq"),
                         "look_ahead_maintenance_margin": get("LookAheadMaintMarginReq"),
                         "look_ahead_available_funds": get("LookAheadAvailableFunds"),
                         "look_ahead_excess_liquidity": get("LookAheadExcessLiquidity")})
        return frames.make(frames.MARGIN, rows, connection=self.name, as_of=datetime.now(UTC))

    async def what_if_async(self, intent: OrderIntent | Mapping[str, Any]) -> pd.DataFrame:
        """The margin impact of an order before it is sent (IB's whatIf: nothing is placed):
        initial and maintenance margin and equity with loan, before, change and after, with
        the estimated commission. A refusal is an `AdapterError` with IB's reason."""
        intent = intent if isinstance(intent, OrderIntent) else OrderIntent.of(intent)
        ib = await self._connected()
        details = await self._details_for(intent.symbol, intent.asset_class, intent.currency)
        account = self._account_for(intent)
        order = self._ib_order(intent, account, "")
        errors: list[str] = []

        def on_error(req_id: int, code: int, text: str, contract: Any) -> None:
            if code not in (2104, 2106, 2158):
                errors.append(f"{text} (IB error {code})")

        ib.errorEvent += on_error
        try:
            state = await self._ask(ib.whatIfOrderAsync(details.contract, order), "what-if")
        finally:
            ib.errorEvent -= on_error
        if not state:
            raise AdapterError(self.name, "what-if refused: " + ("; ".join(errors)
                                                                 or "no answer"))
        values = self._values(ib, account)
        inst = instrument_of(details.contract)
        row = {"account": account, "instrument": inst.key, "side": intent.side.value,
               "quantity": float(intent.quantity or 0), "currency": self._base(values)
               if values else (state.commissionCurrency or "USD"),
               "initial_margin_before": _f(state.initMarginBefore),
               "initial_margin_change": _f(state.initMarginChange),
               "initial_margin_after": _f(state.initMarginAfter),
               "maintenance_margin_before": _f(state.maintMarginBefore),
               "maintenance_margin_change": _f(state.maintMarginChange),
               "maintenance_margin_after": _f(state.maintMarginAfter),
               "equity_with_loan_before": _f(state.equityWithLoanBefore),
               "equity_with_loan_change": _f(state.equityWithLoanChange),
               "equity_with_loan_after": _f(state.equityWithLoanAfter),
               "commission": _f(state.commission),
               "commission_currency": state.commissionCurrency or None,
               "warning": state.warningText or None}
        return frames.make(frames.WHAT_IF, [row], connection=self.name)

    async def currency_exposure_async(self) -> pd.DataFrame:
        """Per account and currency: cash, market value of the positions priced in it,
        net exposure, and that exposure in the account's base currency (IB's own rates).

        A future counts at its open P&L, never its notional: IB's `FuturesPNL` for the
        currency (what TWS adds into `NetLiquidationByCurrency`), else the futures'
        unrealized P&L. FX positions count through the cash balances they move. So the
        exposures, in base, add up to the account's `NetLiquidation`."""
        ib = await self._connected()
        summary = await self._summary(ib)
        positions = await self.positions_async()
        now = datetime.now(UTC)
        rows = []
        for account, values in summary.items():
            base = self._base(values)
            held = positions[positions["account"] == account]
            mv = held[~held["asset_class"].isin(["fx", "future"])] \
                .groupby("currency")["market_value"].sum()
            futures = held[held["asset_class"] == "future"]
            fut_pnl = futures.groupby("currency")["unrealized_pnl"].sum()
            ccys = sorted({c for (t, c) in values if t in ("CashBalance", "ExchangeRate")
                           and c not in ("", "BASE")} | set(mv.index) | set(fut_pnl.index))
            for ccy in ccys:
                cash = self._zero_nan(_f(values.get(("CashBalance", ccy))))
                reported = _f(values.get(("FuturesPNL", ccy)))
                pnl = reported if reported == reported else float(fut_pnl.get(ccy, 0.0))
                value = float(mv.get(ccy, 0.0)) + self._zero_nan(pnl)
                rate = 1.0 if ccy == base else _f(values.get(("ExchangeRate", ccy)))
                net = cash + value
                rows.append({"account": account, "currency": ccy, "cash": cash,
                             "market_value": value, "net_exposure": net, "fx_rate": rate,
                             "base_currency": base, "net_exposure_base": net * rate})
        return frames.make(frames.CURRENCY_EXPOSURE, rows, connection=self.name, as_of=now)

    async def position_summary_async(self) -> pd.DataFrame:
        """Positions grouped by asset class, currency and exchange: count, long, short, net
        and gross value, and net, gross and unrealized P&L in the base currency."""
        ib = await self._connected()
        summary = await self._summary(ib)
        positions = await self.positions_async()
        rates: dict[str, float] = {}
        base = "USD"
        for values in summary.values():
            base = self._base(values)
            for (tag, ccy), v in values.items():
                if tag == "ExchangeRate" and ccy not in ("", "BASE"):
                    rates[ccy] = _f(v)
        rates[base] = 1.0
        df = positions.assign(exchange=positions["exchange"].fillna(""))
        rows = []
        for (ac, ccy, ex), g in df.groupby(["asset_class", "currency", "exchange"], sort=True):
            mv = g["market_value"].fillna(0.0)
            rate = rates.get(str(ccy), math.nan)
            long_v, short_v = float(mv[mv > 0].sum()), float(mv[mv < 0].sum())
            rows.append({"asset_class": ac, "currency": ccy, "exchange": ex or None,
                         "positions": float(len(g)), "long_value": long_v,
                         "short_value": short_v, "net_value": long_v + short_v,
                         "gross_value": long_v - short_v, "base_currency": base,
                         "net_value_base": (long_v + short_v) * rate,
                         "gross_value_base": (long_v - short_v) * rate,
                         "unrealized_pnl_base": float(g["unrealized_pnl"].fillna(0.0).sum())
                         * rate})
        return frames.make(frames.POSITION_SUMMARY, rows, connection=self.name)

    def margin_requirements(self) -> pd.DataFrame:
        return runtime.run(self.margin_requirements_async())

    def what_if(self, intent: OrderIntent | Mapping[str, Any] | None = None, **kw: Any
                ) -> pd.DataFrame:
        return runtime.run(self.what_if_async(intent if intent is not None else kw))

    def currency_exposure(self) -> pd.DataFrame:
        return runtime.run(self.currency_exposure_async())

    def position_summary(self) -> pd.DataFrame:
        return runtime.run(self.position_summary_async())

    # -- trading --------------------------------------------------------------------------
    def check_intent(self, intent: OrderIntent, instrument: Mapping[str, Any] | None
                     ) -> list[Violation]:
        """Base rules plus IB's: whole quantities, no notional amounts, no close-auction
        time in force."""
        out = super().check_intent(intent, instrument)
        if instrument is None and intent.quantity is not None \
                and intent.quantity != intent.quantity.to_integral():
            # with the instrument row, the pipeline's NOT_FRACTIONABLE check says it
            out.append(Violation("NOT_FRACTIONABLE", f"{self.name} takes whole quantities "
                                 f"through the TWS API; {intent.quantity} is fractional"))
        if intent.time_in_force not in _TIF:
            out.append(Violation("UNSUPPORTED_ORDER", f"{self.name} does not take time in "
                                 f"force {intent.time_in_force.value}"))
        return out

    def _account_for(self, intent: OrderIntent) -> str:
        account = intent.account or (self._accounts[0] if self._accounts else "")
        if account not in self._accounts:
            raise AdapterError(self.name, f"account {account!r} is not on connection "
                                          f"{self.name} (accounts: {', '.join(self._accounts)})")
        return account

    @staticmethod
    def _ib_order(intent: OrderIntent, account: str, client_order_id: str) -> Any:
        from ib_async import Order

        if intent.quantity is None:
            raise AdapterError("ibkr", "IB orders need a quantity, not a notional amount")
        order = Order(action="BUY" if intent.side is Side.BUY else "SELL",
                      totalQuantity=float(intent.quantity),
                      orderType=_ORDER_TYPE[intent.order_type],
                      tif=_TIF.get(intent.time_in_force, "DAY"), account=account,
                      orderRef=client_order_id, outsideRth=intent.extended_hours,
                      transmit=True)
        if intent.limit_price is not None:
            order.lmtPrice = float(intent.limit_price)
        if intent.stop_price is not None:
            order.auxPrice = float(intent.stop_price)
        if intent.trail_price is not None:
            order.auxPrice = float(intent.trail_price)
        if intent.trail_percent is not None:
            order.trailingPercent = float(intent.trail_percent)
        return order

    async def submit_async(self, intent: OrderIntent, client_order_id: str) -> BrokerOrder:
        """Place `intent` with `client_order_id` in `orderRef`. IB's refusal (error 201 and
        kin) comes back REJECTED with its text; a lost connection or no acknowledgement in
        time raises `SubmitUncertain` (the pipeline then looks the order up)."""
        if not self.capabilities.trading:
            raise self._read_only("submit")
        account = self._account_for(intent)
        details = await self._details_for(intent.symbol, intent.asset_class, intent.currency)
        ib = await self._connected()
        order = self._ib_order(intent, account, client_order_id)
        try:
            trade = ib.placeOrder(details.contract, order)
        except ConnectionError as exc:  # nothing was written
            raise ConnectionDown(self.name, f"submit: {_text(exc)}") from exc
        key = (ib.client.host, ib.client.port, ib.client.clientId)
        _next_order_ids[key] = max(_next_order_ids.get(key, 0), order.orderId + 1)
        wait_fill = intent.order_type is OrderType.MARKET and self._fill_wait > 0
        try:
            await self._settle(ib, trade, wait_fill)
        except (TimeoutError, ConnectionError) as exc:
            raise SubmitUncertain(self.name, client_order_id, f"no acknowledgement from TWS "
                                  f"({_text(exc) or 'timeout'})") from exc
        return self._broker_order(trade)

    async def _settle(self, ib: IB, trade: Trade, wait_fill: bool) -> None:
        """Wait for TWS's acknowledgement (a working or final status), and for a market
        order's fill up to `fill_wait`. Raises ConnectionError when the socket drops."""
        loop = asyncio.get_running_loop()
        acked: asyncio.Future[None] = loop.create_future()
        filled: asyncio.Future[None] = loop.create_future()
        lost: asyncio.Future[None] = loop.create_future()

        def on_status(t: Trade) -> None:
            st = t.orderStatus.status
            if st not in ("PendingSubmit", "ApiPending") and not acked.done():
                acked.set_result(None)
            if (st in t.orderStatus.DoneStates or t.orderStatus.remaining == 0) \
                    and not filled.done():
                filled.set_result(None)

        def on_lost() -> None:
            if not lost.done():
                lost.set_exception(ConnectionError("connection to TWS lost"))

        trade.statusEvent += on_status
        trade.cancelledEvent += on_status
        ib.disconnectedEvent += on_lost
        try:
            on_status(trade)
            await self._race(acked, lost, self._timeout)
            if wait_fill and not filled.done():
                with contextlib.suppress(asyncio.TimeoutError):
                    await self._race(filled, lost, self._fill_wait)
        finally:
            trade.statusEvent -= on_status
            trade.cancelledEvent -= on_status
            ib.disconnectedEvent -= on_lost
            if not lost.done():
                lost.cancel()
            else:
                lost.exception()  # retrieved

    @staticmethod
    async def _race(wanted: asyncio.Future[None], lost: asyncio.Future[None],
                    timeout: float) -> None:
        done, _ = await asyncio.wait({wanted, lost}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if lost in done:
            lost.result()
        if wanted not in done:
            raise TimeoutError

    async def cancel_async(self, order_id: str) -> BrokerOrder:
        """Cancel a working order (by the id `submit` returned); returns its state after
        TWS answers (an order already final is returned as it is)."""
        if not self.capabilities.trading:
            raise self._read_only("cancel")
        ib = await self._connected()
        trade = self._find(ib, lambda t: _order_id(t.order.permId, t.order.clientId,
                                                   t.order.orderId) == order_id)
        if trade is None:
            await self._ask(ib.reqAllOpenOrdersAsync(), "open orders")
            trade = self._find(ib, lambda t: _order_id(t.order.permId, t.order.clientId,
                                                       t.order.orderId) == order_id)
        if trade is None:
            raise AdapterError(self.name, f"no order {order_id!r} on connection {self.name}")
        if trade.isDone():
            return self._broker_order(trade)
        owner = trade.order.clientId if trade.order.orderId > 0 else 0
        if owner != ib.client.clientId:
            # cancelOrder names the order by its owner's order id, so sent from another client
            # it would cancel that client's order of the same number, or nothing (IB API docs,
            # "Cancelling Orders": only the placing client id, or 0 for TWS orders)
            raise AdapterError(self.name, f"order {order_id} was placed by API client "
                                          f"{owner}; TWS lets only that client cancel it "
                                          f"(a halt cancels it with a global cancel)")
        ib.cancelOrder(trade.order)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def on_done(t: Trade) -> None:
            if t.isDone() and not done.done():
                done.set_result(None)

        trade.statusEvent += on_done
        trade.cancelledEvent += on_done
        try:
            on_done(trade)
            await asyncio.wait_for(asyncio.shield(done), self._timeout)
        except TimeoutError:
            pass  # TWS has not confirmed yet: report the state as it is
        finally:
            trade.statusEvent -= on_done
            trade.cancelledEvent -= on_done
        return self._broker_order(trade)

    async def cancel_all_async(self) -> list[BrokerOrder]:
        """Cancel every working order with `reqGlobalCancel`, the one call that reaches the
        orders of other API clients and of TWS itself (IB API docs, "Cancelling Orders":
        interactivebrokers.github.io/tws-api/cancel_order.html). It acts on the whole TWS
        login, every account of it. Waits (up to the timeout) until `reqAllOpenOrders` no
        longer lists the orders that were working; each comes back with its final state
        from the completed orders, or as still working with the reason."""
        if not self.capabilities.trading:
            raise self._read_only("cancel")
        ib = await self._connected()
        working = await self._all_open_trades(ib)
        if not working:
            return []
        ib.reqGlobalCancel()
        key = _trade_id
        wanted = {key(t) for t in working}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        still = wanted
        while still and loop.time() < deadline:
            await asyncio.sleep(0.05)
            still = wanted & {key(t) for t in await self._all_open_trades(ib)}
        completed = {key(t): t for t in await self._ask(ib.reqCompletedOrdersAsync(False),
                                                        "completed orders")}
        out: list[BrokerOrder] = []
        for t in working:
            k = key(t)
            if k in still:
                out.append(replace(self._broker_order(t), reason=f"still working "
                                   f"{self._timeout:g} s after the global cancel"))
            elif k in completed:
                out.append(self._broker_order(completed[k]))
            else:  # gone from the open orders, not (yet) among the completed ones
                out.append(replace(self._broker_order(t), status=OrderStatus.CANCELED,
                                   reason=""))
        return out

    async def lookup_async(self, client_order_id: str) -> BrokerOrder | None:
        """The order with `client_order_id` in its orderRef: this session's trades, then
        every client's open orders and today's completed orders, then the executions."""
        if not self.capabilities.trading:
            raise self._read_only("lookup")
        ib = await self._connected()

        def match(t: Trade) -> bool:
            return t.order.orderRef == client_order_id

        trade = self._find(ib, match)
        if trade is None:
            await self._ask(ib.reqAllOpenOrdersAsync(), "open orders")
            completed = await self._ask(ib.reqCompletedOrdersAsync(False), "completed orders")
            trade = self._find(ib, match) or next((t for t in completed if match(t)), None)
        if trade is not None:
            return self._broker_order(trade)
        fills = [f for f in self._fills.values() if f.execution.orderRef == client_order_id]
        if not fills:
            return None
        e = fills[-1].execution
        qty = sum(f.execution.shares for f in fills)
        avg = sum(f.execution.shares * f.execution.price for f in fills) / qty
        return BrokerOrder(order_id=_order_id(e.permId, e.clientId, e.orderId),
                           client_order_id=client_order_id, account=e.acctNumber,
                           status=OrderStatus.PARTIALLY_FILLED, filled_quantity=float(qty),
                           avg_fill_price=float(avg), reason="found by its executions",
                           submitted_at=fills[0].execution.time)

    @staticmethod
    def _find(ib: IB, match: Any) -> Trade | None:
        """The newest trade `match` accepts that the broker has answered: ib_async keeps a
        trade from the moment it sends the order (PendingSubmit, no permId), which proves
        nothing about what the broker has (a late accept, an order lost on the way)."""
        found = [t for t in ib.trades() if match(t)
                 and (t.order.permId or t.orderStatus.status != "PendingSubmit")]
        return found[-1] if found else None

    # -- conversions ----------------------------------------------------------------------
    def _broker_order(self, trade: Trade) -> BrokerOrder:
        o, s = trade.order, trade.orderStatus
        status = _STATUS.get(s.status, OrderStatus.PENDING)
        reason = ""
        errors = [e for e in trade.log if e.errorCode and e.errorCode not in (202, 2109)]
        if status is OrderStatus.CANCELED and any(e.errorCode in _REJECT_CODES for e in errors):
            status = OrderStatus.REJECTED
        if errors:
            reason = "; ".join(f"{e.message} (IB error {e.errorCode})" for e in errors)
        filled = float(s.filled or 0)
        if status is OrderStatus.ACCEPTED and filled > 0:
            status = OrderStatus.PARTIALLY_FILLED
        return BrokerOrder(order_id=_order_id(o.permId, o.clientId, o.orderId),
                           client_order_id=o.orderRef, account=o.account, status=status,
                           filled_quantity=filled,
                           avg_fill_price=_f(s.avgFillPrice) if filled else None,
                           reason=reason, submitted_at=trade.log[0].time if trade.log else None,
                           raw={"trade": trade})

    def _order_row(self, t: Trade) -> dict[str, Any]:
        o, s, c = t.order, t.orderStatus, t.contract
        try:
            inst: Instrument | None = instrument_of(c)
        except ValueError:
            inst = None
        otype = _ORDER_TYPE_BACK.get(o.orderType)
        tif = _TIF_BACK.get(o.tif)
        status = self._broker_order(t).status
        return {"account": o.account, "order_id": _order_id(o.permId, o.clientId, o.orderId),
                "client_order_id": o.orderRef or None,
                "instrument": inst.key if inst else None,
                "symbol": inst.symbol if inst else c.symbol,
                "asset_class": inst.asset_class.value if inst else None,
                "side": "buy" if o.action == "BUY" else "sell",
                "order_type": otype.value if otype else o.orderType.lower(),
                "quantity": _f(o.totalQuantity), "notional": math.nan,
                "limit_price": _f(o.lmtPrice),
                "stop_price": _f(o.auxPrice) if o.orderType in ("STP", "STP LMT") else math.nan,
                "time_in_force": tif.value if tif else (o.tif or "").lower() or None,
                "status": status.value, "filled_quantity": float(s.filled or 0),
                "avg_fill_price": _f(s.avgFillPrice) if s.filled else math.nan,
                "submitted_at": t.log[0].time if t.log else None,
                "updated_at": t.log[-1].time if t.log else None}


class _SyncIncomplete(Exception):
    """ib_async's start-up sync had requests time out (their names are the message)."""


class _ClientIdInUse(Exception):
    """TWS refused the client id (error 326)."""


def _order_id(perm_id: int, client_id: int, order_id: int) -> str:
    """IB's permanent id (stable across sessions and clients) once TWS gave one."""
    return str(perm_id) if perm_id else f"{client_id}/{order_id}"


def _trade_id(t: Trade) -> str:
    return _order_id(t.order.permId, t.order.clientId, t.order.orderId)


def _text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


#: IB's time zone names that are not IANA names.
_TZ_ALIASES = {"EST": "America/New_York", "US/Eastern": "America/New_York",
               "CST": "America/Chicago", "US/Central": "America/Chicago",
               "GB": "Europe/London", "MET": "Europe/Berlin", "JST": "Asia/Tokyo",
               "Japan": "Asia/Tokyo", "Hongkong": "Asia/Hong_Kong"}


def _in_hours(hours: str, tz_name: str, now: datetime) -> bool | None:
    """Whether `now` falls in IB's hours string ("20261123:0930-20261123:1600;20261124:
    CLOSED;..."), read in `tz_name`; None when there are no hours to read."""
    if not hours:
        return None
    try:
        tz = ZoneInfo(_TZ_ALIASES.get(tz_name, tz_name or "America/New_York"))
    except (KeyError, ValueError):
        return None
    local = now.astimezone(tz).replace(tzinfo=None)
    stamp = local.strftime("%Y%m%d:%H%M")
    seen = False
    for part in hours.split(";"):
        part = part.strip()
        if not part or "CLOSED" in part:
            continue
        start, sep, end = part.partition("-")
        if not sep:
            continue
        seen = True
        if start <= stamp < end:
            return True
    return False if seen else None
