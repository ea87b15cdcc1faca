"""`TwsBroker`: what the TWS gateway knows, shared by every session and every gateway server
of one sandbox broker (so it survives reconnects and server restarts).

It sits on a `PaperBroker` of the sandbox (`sandbox.broker("ibkr")`, IBKR-style commissions)
and adds what TWS has and the paper broker has not: conIds (`ContractDB`), permIds, the
(clientId, orderId) of every order, execution ids and commission reports, IB's account value
keys, forex positions, and the margin model.

The demo account `DU1234567` (margin, base USD) is opened on first use with stocks in four
currencies (AAPL, SAP on IBIS, VOD on LSE, 7203 on TSEJ), 5 AAPL 230 calls, 2 ES futures,
a EUR.USD forex position and cash in USD, EUR, GBP and JPY.

Forex positions: the paper broker moves cash between currencies on FX fills and keeps no FX
position. Like TWS, the gateway reports a CASH position per pair traded on IDEALPRO (quantity
and average rate, kept here); it is informational: the cash balances carry its value, so it
does not count again in the net liquidation value.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from ...model import AssetClass, OrderStatus, OrderType, Side, TimeInForce
from ..broker import PaperBroker
from ..market import IBKR_FIXED, Fill, Order
from .contracts import ContractDB, TwsContract
from .margin import MarginModel
from .records import TwsExecution, TwsOrder, WhatIfState

if TYPE_CHECKING:
    from ..demo import Sandbox

__all__ = ["ACCOUNT", "AccountSnapshot", "PortfolioLine", "TwsBroker", "tws_broker"]

ACCOUNT = "DU1234567"
_SEED_CASH = {"USD": 200_000.0, "EUR": 65_000.0, "GBP": 12_000.0, "JPY": 1_500_000.0}
_SEED_STOCKS = (("STK:AAPL", "200", "185.50"), ("STK:SAP@XETRA", "60", "205.40"),
                ("STK:VOD@LSE", "8000", "0.7000"), ("STK:7203@TSE", "300", "2650"))
_SEED_OPTION = ("5", "21.40")
_SEED_FUTURE = ("2", "5940.00")
_SEED_FX = ("EUR.USD", 50_000.0, 1.0650)
_IB_TYPES = {"MKT": OrderType.MARKET, "LMT": OrderType.LIMIT, "STP": OrderType.STOP,
             "STP LMT": OrderType.STOP_LIMIT, "TRAIL": OrderType.TRAILING_STOP}
_IB_TIF = {"": TimeInForce.DAY, "DAY": TimeInForce.DAY, "GTC": TimeInForce.GTC,
           "IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK, "OPG": TimeInForce.OPG}
_VENUE = {"NASDAQ": "ISLAND", "NYSE": "NYSE", "ARCA": "ARCA"}

Event = tuple[str, TwsOrder | None, TwsExecution | None]
Listener = Callable[[str, TwsOrder | None, TwsExecution | None], None]


def ib_time(at: datetime) -> str:
    return at.strftime("%Y%m%d %H:%M:%S UTC")


@dataclass
class PortfolioLine:
    """One position the way updatePortfolio/position report it (IB's avgCost convention:
    per share for STK/CASH, per contract including the multiplier for OPT/FUT)."""

    contract: TwsContract
    qty: float
    price: float
    value: float
    avg_cost: float
    unrealized: float
    realized: float


@dataclass
class AccountSnapshot:
    """An account valued now: ledger per currency, positions, totals in the base currency."""

    account: str
    base: str
    rates: dict[str, float] = field(default_factory=dict)  # currency -> base
    cash: dict[str, float] = field(default_factory=dict)
    settled: dict[str, float] = field(default_factory=dict)  # cash less unsettled proceeds
    stock_value: dict[str, float] = field(default_factory=dict)
    option_value: dict[str, float] = field(default_factory=dict)
    futures_pnl: dict[str, float] = field(default_factory=dict)
    unrealized: dict[str, float] = field(default_factory=dict)
    realized: dict[str, float] = field(default_factory=dict)
    lines: list[PortfolioLine] = field(default_factory=list)
    init_margin: float = 0.0
    maint_margin: float = 0.0

    def in_base(self, per_ccy: dict[str, float]) -> float:
        return sum(v * self.rates[c] for c, v in per_ccy.items())

    @property
    def total_cash(self) -> float:
        return self.in_base(self.cash)

    @property
    def total_settled(self) -> float:
        return self.in_base(self.settled)

    @property
    def net_liquidation(self) -> float:
        return self.total_cash + self.in_base(self.stock_value) + \
            self.in_base(self.option_value) + self.in_base(self.futures_pnl)

    @property
    def gross_position_value(self) -> float:
        return sum(abs(ln.value) * self.rates[ln.contract.currency] for ln in self.lines
                   if ln.contract.sec_type in ("STK", "OPT"))

    @property
    def equity_with_loan(self) -> float:
        return self.net_liquidation

    @property
    def available_funds(self) -> float:
        return self.equity_with_loan - self.init_margin

    @property
    def excess_liquidity(self) -> float:
        return self.equity_with_loan - self.maint_margin

    def currency_nlv(self, ccy: str) -> float:
        return self.cash.get(ccy, 0.0) + self.stock_value.get(ccy, 0.0) + \
            self.option_value.get(ccy, 0.0) + self.futures_pnl.get(ccy, 0.0)


class TwsBroker:
    """TWS-side state over one paper broker; see the module docstring."""

    def __init__(self, paper: PaperBroker, *, margin: MarginModel | None = None) -> None:
        self.paper = paper
        self.market = paper.market
        self.contracts = ContractDB(self.market.listings)
        self.margin = margin or MarginModel()
        self.orders: dict[int, TwsOrder] = {}  # by permId
        self.executions: list[TwsExecution] = []
        self.fx_positions: dict[tuple[str, str], list[float]] = {}  # (acct, pair) -> [q, avg]
        self.max_order_id: dict[int, int] = {}
        self._by_paper: dict[str, TwsOrder] = {}
        self._by_client: dict[tuple[int, int], TwsOrder] = {}
        self._next_perm = 1_000_000
        self._exec_seq = 0
        self._pending: list[tuple[Order, Fill]] = []
        self._listeners: list[Listener] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_scheduled = False
        for ac in (AssetClass.EQUITY, AssetClass.ETF):
            paper.fees.setdefault(ac, IBKR_FIXED)
        self._seed()
        paper.engine.subscribe(self._on_fill)

    # -- accounts ---------------------------------------------------------------------------
    @property
    def accounts(self) -> list[str]:
        return [ACCOUNT]

    def _seed(self) -> None:
        paper = self.paper
        if ACCOUNT in paper.accounts:
            return
        paper.open_account(ACCOUNT, "margin", "USD", _SEED_CASH)
        for key, qty, cost in _SEED_STOCKS:
            paper.set_position(ACCOUNT, key, qty, cost)
        for li in self.market.listings:
            if li.asset_class is AssetClass.OPTION and li.instrument.underlying == "AAPL":
                paper.set_position(ACCOUNT, li.key, *_SEED_OPTION)
            elif li.asset_class is AssetClass.FUTURE and li.symbol == "ESZ6":
                paper.set_position(ACCOUNT, li.key, *_SEED_FUTURE)
        pair, qty, avg = _SEED_FX
        self.fx_positions[(ACCOUNT, pair)] = [qty, avg]

    def snapshot(self, account: str = ACCOUNT) -> AccountSnapshot:
        """The account valued at the market's now."""
        acct = self.paper.account(account)
        snap = AccountSnapshot(account, acct.base_currency)
        ccys = set(acct.cash)
        marks: dict[str, float] = {}
        for p in acct.positions.values():
            ccys.add(p.listing.currency)
        for ccy in ccys:
            snap.rates[ccy] = self.market.fx_rate(ccy, acct.base_currency)
            snap.cash[ccy] = float(acct.cash.get(ccy, Decimal(0)))
            snap.settled[ccy] = float(self.paper.settled_cash(account, ccy))
            for d in (snap.stock_value, snap.option_value, snap.futures_pnl, snap.unrealized,
                      snap.realized):
                d[ccy] = 0.0
        for key, pos in sorted(acct.positions.items()):
            c = self.contracts.by_key(key)
            if c is None:
                continue
            price = marks[key] = float(self.market.quote(pos.listing).last)
            qty, avg, mult = float(pos.quantity), float(pos.avg_cost), c.mult
            value = qty * price * mult
            upnl = value - qty * avg * mult
            ccy = c.currency
            if c.sec_type == "STK":
                snap.stock_value[ccy] += value
            elif c.sec_type == "OPT":
                snap.option_value[ccy] += value
            elif c.sec_type == "FUT":
                snap.futures_pnl[ccy] += upnl
            snap.unrealized[ccy] += upnl
            snap.realized[ccy] += float(pos.realized_pnl)
            snap.lines.append(PortfolioLine(c, qty, price, value, avg * mult, upnl,
                                            float(pos.realized_pnl)))
            init, maint = self._requirement(c, qty, price)
            snap.init_margin += init * snap.rates[ccy]
            snap.maint_margin += maint * snap.rates[ccy]
        for (acct_id, pair), (qty, avg) in sorted(self.fx_positions.items()):
            c = self.contracts.by_key(f"CASH:{pair}")
            if acct_id != account or c is None or not qty:
                continue
            price = float(self.market.quote(c.listing).last)
            snap.rates.setdefault(c.currency, self.market.fx_rate(c.currency, snap.base))
            snap.lines.append(PortfolioLine(c, qty, price, qty * price, avg,
                                            qty * (price - avg), 0.0))
        return snap

    def _requirement(self, c: TwsContract, qty: float, price: float) -> tuple[float, float]:
        under = 0.0
        if c.sec_type == "OPT" and qty < 0:
            under_c = self.contracts.by_con_id(c.under_con_id)
            if under_c is not None:
                under = float(self.market.quote(under_c.listing).last)
        return self.margin.requirement(c.sec_type, qty, price, c.mult, under)

    def position_qty(self, account: str, c: TwsContract) -> float:
        if c.sec_type == "CASH":
            return self.fx_positions.get((account, c.listing.symbol), [0.0, 0.0])[0]
        pos = self.paper.account(account).positions.get(c.key)
        return float(pos.quantity) if pos else 0.0

    def what_if(self, account: str, c: TwsContract, action: str, qty: float,
                lmt_price: float | None) -> WhatIfState:
        """Margin before, change and after for an order filled in full at its price."""
        snap = self.snapshot(account)
        quote = self.market.quote(c.listing)
        buy = action == "BUY"
        touch = float(quote.ask if buy else quote.bid)
        price = touch if lmt_price is None else (min(touch, lmt_price) if buy
                                                 else max(touch, lmt_price))
        signed = qty if buy else -qty
        rate = snap.rates.get(c.currency) or self.market.fx_rate(c.currency, snap.base)
        init_change = maint_change = 0.0
        if c.sec_type != "CASH":
            held = self.position_qty(account, c)
            mark = float(quote.last)
            i0, m0 = self._requirement(c, held, mark)
            i1, m1 = self._requirement(c, held + signed, mark)
            init_change, maint_change = (i1 - i0) * rate, (m1 - m0) * rate
        commission = self.commission(c, qty, price)
        ewl_change = -commission * rate
        if c.sec_type in ("STK", "OPT"):  # paying the touch instead of the mark
            ewl_change -= signed * (price - float(quote.last)) * c.mult * rate
        ewl = snap.equity_with_loan
        return WhatIfState(
            snap.init_margin, snap.maint_margin, ewl, init_change, maint_change, ewl_change,
            snap.init_margin + init_change, snap.maint_margin + maint_change, ewl + ewl_change,
            commission, c.currency)

    def commission(self, c: TwsContract, qty: float, price: float) -> float:
        li = c.listing
        fees = self.paper.fees.get(li.asset_class, li.fees)
        q = Decimal(repr(qty))
        return float(fees.fee(q, q * Decimal(repr(price)) * li.multiplier))

    # -- orders -----------------------------------------------------------------------------
    def order_for(self, client_id: int, order_id: int) -> TwsOrder | None:
        return self._by_client.get((client_id, order_id))

    def next_valid_id(self, client_id: int) -> int:
        return self.max_order_id.get(client_id, 0) + 1

    def new_order(self, **kw: object) -> TwsOrder:
        """Register an order (not yet sent to the paper broker) with a fresh permId."""
        perm = self._next_perm
        self._next_perm += 1
        o = TwsOrder(perm_id=perm, **kw)  # type: ignore[arg-type]
        self.orders[perm] = o
        self._by_client[(o.client_id, o.order_id)] = o
        self.max_order_id[o.client_id] = max(self.max_order_id.get(o.client_id, 0),
                                             o.order_id)
        return o

    def submit(self, o: TwsOrder) -> str:
        """Send `o` to the paper broker; returns the rejection reason ('' when accepted).
        Fills are queued and published by `flush()`."""
        itype = _IB_TYPES.get(o.order_type)
        if itype is None:
            return self._reject(o, f"order type {o.order_type!r} is not supported by the "
                                   f"sandbox (MKT, LMT, STP, STP LMT, TRAIL)")
        tif = _IB_TIF.get(o.tif.upper())
        if tif is None:
            return self._reject(o, f"time in force {o.tif!r} is not supported")
        kw: dict[str, object] = {}
        if itype in (OrderType.LIMIT, OrderType.STOP_LIMIT):
            kw["limit_price"] = _dec(o.lmt_price)
        if itype in (OrderType.STOP, OrderType.STOP_LIMIT):
            kw["stop_price"] = _dec(o.aux_price)
        if itype is OrderType.TRAILING_STOP:
            if o.trailing_percent is not None:
                kw["trail_percent"] = _dec(o.trailing_percent)
            else:
                kw["trail_price"] = _dec(o.aux_price)
        o.revision += 1
        coid = f"TWS-{o.perm_id}" if o.revision == 1 else f"TWS-{o.perm_id}-r{o.revision}"
        try:
            po = self.paper.submit(o.account, o.contract.key, Side.parse(o.action.lower()),
                                   quantity=_dec(o.total_qty), order_type=itype,
                                   time_in_force=tif, client_order_id=coid,
                                   **kw)  # type: ignore[arg-type]
        except Exception as exc:  # invalid values: the paper broker raises
            return self._reject(o, str(exc))
        o.paper_order_id = po.order_id
        self._by_paper[po.order_id] = o
        if po.status is OrderStatus.REJECTED:
            return self._reject(o, po.reason)
        o.status = "Submitted"
        return ""

    def _reject(self, o: TwsOrder, reason: str) -> str:
        o.status, o.reason = "Cancelled", reason
        o.completed_status = "Rejected"
        o.completed_time = ib_time(self.market.now())
        return reason or "rejected"

    def cancel(self, o: TwsOrder) -> None:
        if o.paper_order_id is not None:
            self.paper.cancel(o.paper_order_id)
        self.flush()
        if o.is_open:
            o.status, o.completed_status = "Cancelled", "Cancelled by Trader"
            o.completed_time = ib_time(self.market.now())

    def working(self) -> list[TwsOrder]:
        return [o for o in self.orders.values() if o.is_open]

    def completed(self) -> list[TwsOrder]:
        return [o for o in self.orders.values() if not o.is_open]

    # -- fills ------------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Hear every ("exec" | "status", order, execution) event; returns an unsubscriber."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners \
            else None

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def _on_fill(self, order: Order, fill: Fill) -> None:
        if order.order_id not in self._by_paper and not (
                order.owner == self.paper.name and order.client_order_id.startswith("TWS-")):
            return
        self._pending.append((order, fill))
        loop = self._loop
        if loop is not None and not self._flush_scheduled and not loop.is_closed():
            self._flush_scheduled = True
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                loop.call_soon(self.flush)
            else:
                loop.call_soon_threadsafe(self.flush)

    def process(self) -> None:
        """Match resting orders at the market's now, then publish fills and final states."""
        self.paper.process()
        self.flush()
        for o in self.working():
            if o.paper_order_id is None:
                continue
            po = self.paper.order(o.paper_order_id)
            if po.status in (OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED):
                o.status, o.completed_status = "Cancelled", po.status.value.title()
                o.completed_time = ib_time(self.market.now())
                o.reason = po.reason
                self._emit("status", o, None)

    def flush(self) -> None:
        """Turn queued paper fills into executions and tell the listeners."""
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        for order, fill in pending:
            o = self._by_paper.get(order.order_id)
            if o is None:
                continue
            self._exec_seq += 1
            shares, price = float(fill.quantity), float(fill.price)
            prev = o.filled
            o.filled = prev + shares
            o.avg_fill_price = (o.avg_fill_price * prev + price * shares) / o.filled
            o.last_fill_price = price
            if order.status is OrderStatus.FILLED or o.remaining <= 1e-9:
                o.status = o.completed_status = "Filled"
                o.completed_time = ib_time(fill.executed_at)
            c = o.contract
            if c.sec_type == "CASH":
                self._apply_fx(o.account, c.listing.symbol,
                               shares if o.action == "BUY" else -shares, price)
            e = TwsExecution(
                exec_id=f"0000e0d5.{o.perm_id:08x}.{self._exec_seq:02d}.01", order=o,
                time=ib_time(fill.executed_at),
                venue=_VENUE.get(c.primary_exchange, c.primary_exchange or c.exchange),
                side="BOT" if o.action == "BUY" else "SLD", shares=shares, price=price,
                cum_qty=o.filled, avg_price=o.avg_fill_price, commission=float(fill.fee),
                commission_currency=fill.fee_currency)
            o.exec_ids.append(e.exec_id)
            self.executions.append(e)
            self._emit("exec", o, e)

    def _apply_fx(self, account: str, pair: str, signed: float, price: float) -> None:
        q, avg = self.fx_positions.get((account, pair), [0.0, 0.0])
        new = q + signed
        if q == 0 or (q > 0) == (signed > 0):
            avg = (q * avg + signed * price) / new if new else 0.0
        elif new and (new > 0) != (q > 0):
            avg = price
        self.fx_positions[(account, pair)] = [new, avg if new else 0.0]

    def _emit(self, kind: str, o: TwsOrder | None, e: TwsExecution | None) -> None:
        for listener in list(self._listeners):
            listener(kind, o, e)


def _dec(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(repr(value))


_states: weakref.WeakKeyDictionary[PaperBroker, TwsBroker] = weakref.WeakKeyDictionary()


def tws_broker(sandbox: Sandbox, name: str = "ibkr", *, margin: MarginModel | None = None
               ) -> TwsBroker:
    """The TWS state over `sandbox.broker(name)`, made (and the demo account opened) on first
    use; later calls return the same state, so it outlives servers and reconnects."""
    paper = sandbox.broker(name)
    state = _states.get(paper)
    if state is None:
        state = _states[paper] = TwsBroker(paper, margin=margin)
    return state


def tws_states(brokers: Iterable[PaperBroker]) -> dict[str, TwsBroker]:
    """The TWS state kept over each of `brokers` that has one, by broker name."""
    return {p.name: s for p in brokers if (s := _states.get(p)) is not None}


def adopt_tws_state(paper: PaperBroker, state: TwsBroker) -> None:
    """Make `state` (restored from disk) the TWS state over `paper`."""
    state.paper, state.market = paper, paper.market
    _states[paper] = state
