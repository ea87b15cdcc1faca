"""`PaperBroker`: a broker's account state over the sandbox market and matching engine.

Several accounts, each `cash` or `margin`, with a base currency, cash in several currencies,
fractional positions with average cost, orders (by broker id and by client order id) and fills
with fees. `submit` runs the checks a real broker runs and records a REJECTED order with the
reason when one fails: unknown or non-tradable symbol, quantity rules (minimum, lots,
fractional), tick size, short sales (never in a cash account, never on a non-shortable
listing), buying power. A client order id used twice in one account raises
`DuplicateClientOrderId`, as Alpaca answers 422.

Buying power: a cash account may spend its settled cash in the order's currency (equity sale
proceeds settle one business day later, crypto and FX the same day); a margin account has
Reg-T-like buying power of 2 x (equity - initial margin) in its base currency, with initial
margin 50% of the absolute market value of positions (Reg T) and maintenance 25% of it long,
30% (or $5.00 a share; under $5.00 a share, 100% or $2.50 a share) short for stocks (FINRA
4210(c)), both from `brokerkit.venues.margin`; 100% for crypto.
Open buy orders reserve what they may cost. FX trades move cash between the two currencies.

Splits (`apply_split(symbol, ratio)`, a 4-for-1 is 4, a 1-for-10 reverse 0.1): every
account's position quantity x ratio and average cost / ratio (the cost basis is kept), open
orders adjusted as FINRA Rule 5330(a)(2) has a broker adjust them on the ex-date (see
`_adjust_for_split`; a reverse split cancels them), and a `CorporateAction` record listed by
`corporate_actions(accounts, since)`. The market's price is the market's (`sandbox.market`):
this broker's books change, its quotes do not.

Not thread-safe: the sandbox calls it from the runtime loop only (`brokerkit.runtime`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_CEILING, ROUND_DOWN, Decimal
from typing import Any, Literal

from ..errors import BrokerkitError
from ..model import AssetClass, OrderStatus, OrderType, Side, TimeInForce, to_decimal
from ..venues import margin as rules
from .faults import FaultInjector
from .market import FeeSchedule, Fill, Listing, Market, MatchingEngine, Order, UnknownSymbol

__all__ = [
    "Account",
    "AccountType",
    "BalanceRow",
    "CorporateAction",
    "DuplicateClientOrderId",
    "PaperBroker",
    "Position",
    "PositionRow",
    "UnknownAccount",
    "UnknownOrder",
]

AccountType = Literal["cash", "margin"]
_D = Decimal
_ZERO = _D(0)
_INITIAL = {AssetClass.CRYPTO: _D(1), AssetClass.FUTURE: _D("0.06")}
_MAINTENANCE = {AssetClass.CRYPTO: _D(1), AssetClass.FUTURE: _D("0.05")}
_INITIAL_DEFAULT, _MAINTENANCE_DEFAULT = rules.REG_T_INITIAL, rules.LONG_MAINTENANCE
_STOCKS = {AssetClass.EQUITY, AssetClass.ETF}  # FINRA 4210(c)'s short-stock minimums apply
_SHARES = {AssetClass.EQUITY, AssetClass.ETF, AssetClass.FUND}  # what a split applies to
_SIMULATED = {AssetClass.EQUITY, AssetClass.ETF, AssetClass.FUND, AssetClass.FX,
              AssetClass.CRYPTO, AssetClass.OPTION, AssetClass.FUTURE}


class UnknownAccount(BrokerkitError, KeyError):
    """The broker holds no account of that id."""

    def __init__(self, account: str, known: Iterable[str]) -> None:
        self.account = account
        super().__init__(f"unknown account {account!r}; accounts: {', '.join(known) or 'none'}")

    def __str__(self) -> str:
        return str(self.args[0])


class UnknownOrder(BrokerkitError, KeyError):
    """The broker holds no order of that id."""

    def __init__(self, order_id: str) -> None:
        self.order_id = order_id
        super().__init__(f"unknown order id {order_id!r}")

    def __str__(self) -> str:
        return str(self.args[0])


class DuplicateClientOrderId(BrokerkitError, ValueError):
    """A client order id was already used in the account (Alpaca's 422)."""

    def __init__(self, account: str, client_order_id: str, order_id: str) -> None:
        self.account, self.client_order_id, self.order_id = account, client_order_id, order_id
        super().__init__(f"client order id {client_order_id!r} is already used in account "
                         f"{account} by order {order_id}")


@dataclass
class Position:
    """A holding: signed quantity and average cost per unit, in the listing's currency."""

    listing: Listing
    quantity: Decimal = _ZERO
    avg_cost: Decimal = _ZERO
    realized_pnl: Decimal = _ZERO


@dataclass
class Account:
    """One account's state. `unsettled` holds sale proceeds not yet settled."""

    account_id: str
    type: AccountType
    base_currency: str
    cash: dict[str, Decimal] = field(default_factory=dict)
    positions: dict[str, Position] = field(default_factory=dict)
    unsettled: list[tuple[date, str, Decimal]] = field(default_factory=list)


@dataclass(frozen=True)
class CorporateAction:
    """A split the broker applied: `ratio` new shares per old share of `instrument`, at
    `effective_at` (the ex-date, `effective_date`, in the listing's market), to the positions
    of `accounts` (those that held it then)."""

    action_id: str
    symbol: str
    instrument: str
    kind: Literal["split", "reverse_split"]
    ratio: Decimal
    effective_at: datetime
    effective_date: date
    accounts: tuple[str, ...]


@dataclass(frozen=True)
class BalanceRow:
    """One account and currency. Rows add up across currencies: a margin account's buying
    power sits on its base-currency row, a cash account's on each currency's row."""

    account: str
    currency: str
    cash: float
    settled_cash: float
    buying_power: float
    equity: float
    margin_init: float
    margin_maint: float


@dataclass(frozen=True)
class PositionRow:
    """One position valued at the last price."""

    account: str
    listing: Listing
    quantity: float
    avg_cost: float
    market_price: float
    market_value: float
    unrealized_pnl: float


class PaperBroker:
    """Account state at one simulated broker, over a shared `Market` and `MatchingEngine`.

    `fees` overrides the listings' fee schedules per asset class (e.g. IBKR-style per-share
    commissions for a TWS sandbox); `faults` is the injector its servers and adapters apply.
    """

    def __init__(self, name: str, market: Market, engine: MatchingEngine | None = None, *,
                 fees: Mapping[AssetClass, FeeSchedule] | None = None,
                 faults: FaultInjector | None = None) -> None:
        self.name = name
        self.market = market
        self.engine = engine if engine is not None else MatchingEngine(market)
        self.fees = dict(fees or {})
        self.faults = faults if faults is not None else FaultInjector()
        self._accounts: dict[str, Account] = {}
        self._orders: dict[str, Order] = {}
        self._by_client: dict[tuple[str, str], str] = {}
        self._fills: list[Fill] = []
        self._actions: list[CorporateAction] = []
        self.engine.subscribe(self._on_fill)

    def __repr__(self) -> str:
        return f"<PaperBroker {self.name!r} accounts={list(self._accounts)}>"

    # -- accounts -------------------------------------------------------------------------
    def open_account(self, account_id: str, type: AccountType = "margin",
                     base_currency: str = "USD",
                     cash: Mapping[str, Decimal | float | int | str] | None = None) -> Account:
        """Open an account with starting cash per currency; returns it."""
        if account_id in self._accounts:
            raise ValueError(f"account {account_id!r} already exists at broker {self.name!r}")
        if type not in ("cash", "margin"):
            raise ValueError(f"account type {type!r} is not 'cash' or 'margin'")
        acct = Account(account_id, type, base_currency.upper())
        acct.cash[acct.base_currency] = _ZERO
        self._accounts[account_id] = acct
        for ccy, amount in (cash or {}).items():
            self.deposit(account_id, ccy, amount)
        return acct

    @property
    def accounts(self) -> list[str]:
        return list(self._accounts)

    def account(self, account_id: str) -> Account:
        """The account `account_id`; raises `UnknownAccount` naming it."""
        try:
            return self._accounts[account_id]
        except KeyError:
            raise UnknownAccount(account_id, self._accounts) from None

    def deposit(self, account_id: str, currency: str, amount: Decimal | float | int | str
                ) -> None:
        """Add (or with a negative amount, withdraw) settled cash."""
        acct = self.account(account_id)
        ccy = currency.upper()
        acct.cash[ccy] = acct.cash.get(ccy, _ZERO) + to_decimal(amount, "amount")

    def set_position(self, account_id: str, symbol: str, quantity: Decimal | float | int | str,
                     avg_cost: Decimal | float | int | str) -> Position:
        """Put a position in an account directly (for seeding demo accounts)."""
        acct = self.account(account_id)
        listing = self.market.listing(symbol)
        pos = Position(listing, to_decimal(quantity, "quantity"), to_decimal(avg_cost, "avg_cost"))
        acct.positions[listing.key] = pos
        return pos

    # -- corporate actions ----------------------------------------------------------------
    def apply_split(self, symbol: str, ratio: Decimal | float | int | str, *,
                    action_id: str | None = None) -> CorporateAction:
        """Split `symbol` now: `ratio` new shares per old (4 for a 4-for-1, 0.1 for a 1-for-10
        reverse). Every account's position: quantity x ratio, average cost / ratio (the cost
        basis stays); open orders adjusted or, for a reverse split, canceled; returns the
        recorded action. Raises `UnknownSymbol`, `InvalidIntent` for a ratio that is not a
        number, and `ValueError` for a ratio that is not > 0 and != 1, a listing that is not
        shares, or an `action_id` used before."""
        listing = self.market.listing(symbol)
        r = to_decimal(ratio, "ratio")
        if not r > 0 or r == 1:
            raise ValueError(f"split ratio must be a number > 0 other than 1 (new shares per "
                             f"old: 4 for a 4-for-1, 0.1 for a 1-for-10 reverse), got {ratio!r}")
        if listing.asset_class not in _SHARES:
            raise ValueError(f"{listing.symbol} is {listing.asset_class.value}: only shares "
                             f"({', '.join(sorted(a.value for a in _SHARES))}) split")
        action_id = action_id or f"CA-{uuid.uuid4().hex[:12]}"
        if any(a.action_id == action_id for a in self._actions):
            raise ValueError(f"corporate action id {action_id!r} is already used at broker "
                             f"{self.name!r}")
        held = []
        for acct in self._accounts.values():
            pos = acct.positions.get(listing.key)
            if pos is not None:
                pos.quantity *= r
                pos.avg_cost /= r
                held.append(acct.account_id)
        now = self.market.now()
        kind: Literal["split", "reverse_split"] = "split" if r > 1 else "reverse_split"
        for order in list(self._open_for(listing.key)):
            self._adjust_for_split(order, listing, r, kind)
        action = CorporateAction(action_id, listing.symbol, listing.key, kind, r, now,
                                 self.market.trade_date(listing, now), tuple(held))
        self._actions.append(action)
        return action

    def corporate_actions(self, accounts: Iterable[str] | None = None,
                          since: datetime | None = None) -> list[CorporateAction]:
        """The actions applied to a position of `accounts` (default all), oldest first; with
        `since`, those effective at or after it."""
        wanted = self._wanted(accounts)
        return [a for a in self._actions if wanted.intersection(a.accounts)
                and (since is None or a.effective_at >= since)]

    def _open_for(self, key: str) -> Iterator[Order]:
        return (o for o in self.engine.open_orders
                if o.owner == self.name and o.key == key and o.status.is_open)

    def _adjust_for_split(self, o: Order, li: Listing, r: Decimal, kind: str) -> None:
        """An open order on the ex-date of a split, adjusted as FINRA Rule 5330(a) has a
        member adjust it (source: https://www.finra.org/rules-guidance/rulebooks/finra-rules/5330;
        the split clause, NASD Rule 3220(a)(2) before 2010: "the price of the order shall be
        reduced by rounding the dollar value of the stock dividend or split to the next higher
        minimum quotation variation ... and subtracting that amount from the price of the
        order", the size multiplied by the ratio and rounded down): each price less
        (price - price / ratio) rounded up to the tick, the unfilled size x ratio rounded down
        to the listing's lot (the rule's round lot; the paper broker trades odd lots), a
        notional amount left alone, what is filled left as filled. A reverse split cancels
        the order (source: Investopedia Series 55 study guide, "Adjustments for Stock Splits":
        "If a stock is subject to a reverse stock split all open orders will be canceled")."""
        if kind == "reverse_split":
            self.engine.cancel(o.order_id, f"canceled: {li.symbol} reverse split "
                                           f"(1-for-{1 / r:g}); open orders are not adjusted")
            return
        for name in ("limit_price", "stop_price", "trail_price"):
            price = getattr(o, name)
            if price is not None:
                cut = ((price - price / r) / li.tick).to_integral_value(ROUND_CEILING) * li.tick
                setattr(o, name, max(li.tick, price - cut))
        if o.water_mark is not None:
            o.water_mark /= r
        if o.quantity is not None:
            rest = o.remaining * r
            if not li.fractionable:
                rest = (rest / li.lot_size).to_integral_value(ROUND_DOWN) * li.lot_size
            o.quantity = o.filled_quantity + rest
            if rest <= 0:
                self.engine.cancel(o.order_id, f"canceled: nothing left to fill after the "
                                               f"{li.symbol} split")

    # -- orders ---------------------------------------------------------------------------
    def submit(self, account_id: str, symbol: str, side: Side | str, *,
               quantity: Decimal | float | str | None = None,
               notional: Decimal | float | str | None = None,
               order_type: OrderType | str = OrderType.MARKET,
               time_in_force: TimeInForce | str = TimeInForce.DAY,
               limit_price: Decimal | float | str | None = None,
               stop_price: Decimal | float | str | None = None,
               trail_price: Decimal | float | str | None = None,
               trail_percent: Decimal | float | str | None = None,
               client_order_id: str | None = None) -> Order:
        """Check and place an order; returns it, ACCEPTED, (partially) FILLED or REJECTED.

        Raises `UnknownAccount`, `DuplicateClientOrderId`, and `InvalidIntent` for values
        that are not numbers or choices at all; every business rule rejects instead.
        """
        acct = self.account(account_id)
        coid = client_order_id or uuid.uuid4().hex
        if (account_id, coid) in self._by_client:
            raise DuplicateClientOrderId(account_id, coid, self._by_client[(account_id, coid)])

        def dec(value: Any, name: str) -> Decimal | None:
            return None if value is None else to_decimal(value, name)

        try:
            listing: Listing | None = self.market.listing(symbol)
        except UnknownSymbol:
            listing = None
        order = Order(
            order_id=str(uuid.uuid4()), client_order_id=coid, owner=self.name,
            account=account_id, symbol=listing.symbol if listing else str(symbol).upper(),
            listing=listing, side=Side.parse(side), quantity=dec(quantity, "quantity"),
            notional=dec(notional, "notional"), order_type=OrderType.parse(order_type),
            time_in_force=TimeInForce.parse(time_in_force),
            limit_price=dec(limit_price, "limit_price"), stop_price=dec(stop_price, "stop_price"),
            trail_price=dec(trail_price, "trail_price"),
            trail_percent=dec(trail_percent, "trail_percent"))
        if listing is not None:
            order.fees = self.fees.get(listing.asset_class, listing.fees)
        reason = self._check(acct, order)  # before recording: it sees only earlier orders
        self._orders[order.order_id] = order
        self._by_client[(account_id, coid)] = order.order_id
        if reason:
            now = self.market.now()
            order.status, order.reason = OrderStatus.REJECTED, reason
            order.submitted_at = order.updated_at = now
            return order
        self.engine.submit(order)
        return order

    def cancel(self, order_id: str) -> Order:
        """Cancel an open order; a final order is returned unchanged."""
        order = self.order(order_id)
        if order.status.is_open:
            self.engine.cancel(order_id)
        return order

    def order(self, order_id: str) -> Order:
        """The order `order_id`; raises `UnknownOrder`."""
        try:
            return self._orders[order_id]
        except KeyError:
            raise UnknownOrder(order_id) from None

    def find_client_order(self, client_order_id: str, accounts: Iterable[str] | None = None
                          ) -> Order | None:
        """The order placed with `client_order_id` in one of `accounts` (default: any)."""
        for acct in self._accounts if accounts is None else accounts:
            order_id = self._by_client.get((acct, client_order_id))
            if order_id is not None:
                return self._orders[order_id]
        return None

    def orders(self, accounts: Iterable[str] | None = None) -> list[Order]:
        """Every order of `accounts` (default all), oldest first."""
        wanted = self._wanted(accounts)
        return [o for o in self._orders.values() if o.account in wanted]

    def fills(self, accounts: Iterable[str] | None = None, since: datetime | None = None
              ) -> list[Fill]:
        """Every fill of `accounts` (default all), oldest first; with `since`, only those
        executed at or after it."""
        wanted = self._wanted(accounts)
        return [f for f in self._fills if f.account in wanted
                and (since is None or f.executed_at >= since)]

    def process(self) -> list[Fill]:
        """Match open orders at the clock's now and settle what is due; returns new fills."""
        fills = self.engine.process()
        today = self.market.now().date()
        for acct in self._accounts.values():
            if acct.unsettled:
                acct.unsettled = [u for u in acct.unsettled if u[0] > today]
        return [f for f in fills if f.order_id in self._orders]

    def _wanted(self, accounts: Iterable[str] | None) -> set[str]:
        if accounts is None:
            return set(self._accounts)
        wanted = set(accounts)
        for a in wanted:
            self.account(a)
        return wanted

    # -- valuation ------------------------------------------------------------------------
    def settled_cash(self, account_id: str, currency: str) -> Decimal:
        acct = self.account(account_id)
        today = self.market.now().date()
        pending = sum((amt for d, c, amt in acct.unsettled if c == currency and d > today),
                      _ZERO)
        return acct.cash.get(currency, _ZERO) - pending

    def _marks(self, acct: Account) -> dict[str, Decimal]:
        quotes = self.market.quotes([p.listing for p in acct.positions.values()])
        return {q.key: q.last for q in quotes}

    def _rate(self, a: str, b: str) -> Decimal:
        return _D(repr(self.market.fx_rate(a, b)))

    def _open_orders(self, account_id: str) -> Iterator[Order]:
        """The account's open orders: the engine holds every open order, so this costs what
        is open, not every order the account ever placed."""
        return (o for o in self.engine.open_orders
                if o.owner == self.name and o.account == account_id and o.status.is_open)

    def _reserved(self, acct: Account) -> dict[str, Decimal]:
        """What open buy orders may still cost, per currency."""
        out: dict[str, Decimal] = {}
        for o in self._open_orders(acct.account_id):
            if o.side is not Side.BUY or o.listing is None:
                continue
            ref = o.limit_price or o.stop_price or self.market.quote(o.listing).ask
            cost = o.notional - o.filled_value if o.quantity is None and o.notional else \
                o.remaining * ref * o.listing.multiplier
            out[o.listing.currency] = out.get(o.listing.currency, _ZERO) + cost
        return out

    def _per_currency(self, acct: Account) -> dict[str, dict[str, Decimal]]:
        marks = self._marks(acct)
        rows: dict[str, dict[str, Decimal]] = {}

        def row(ccy: str) -> dict[str, Decimal]:
            return rows.setdefault(ccy, {"mv": _ZERO, "init": _ZERO, "maint": _ZERO})

        for ccy in acct.cash:
            row(ccy)
        for key, pos in acct.positions.items():
            li = pos.listing
            mv = pos.quantity * marks[key] * li.multiplier
            r = row(li.currency)
            # a future is worth its open P&L (its notional is never paid); others their value
            r["mv"] += mv - pos.quantity * pos.avg_cost * li.multiplier \
                if li.asset_class is AssetClass.FUTURE else mv
            if acct.type == "margin":
                r["init"] += abs(mv) * _INITIAL.get(li.asset_class, _INITIAL_DEFAULT)
                r["maint"] += rules.stock_maintenance(pos.quantity, marks[key] * li.multiplier) \
                    if li.asset_class in _STOCKS else \
                    abs(mv) * _MAINTENANCE.get(li.asset_class, _MAINTENANCE_DEFAULT)
        return rows

    def buying_power(self, account_id: str, currency: str | None = None) -> Decimal:
        """What the account can buy now, in `currency` (default its base currency): settled
        cash in that currency for a cash account, 2 x excess equity for a margin account;
        less what open buy orders reserve."""
        acct = self.account(account_id)
        ccy = (currency or acct.base_currency).upper()
        reserved = self._reserved(acct)
        if acct.type == "cash":
            return max(_ZERO, self.settled_cash(account_id, ccy) - reserved.get(ccy, _ZERO))
        rows = self._per_currency(acct)
        base = acct.base_currency
        equity = init = held = _ZERO
        for c, r in rows.items():
            rate = self._rate(c, base)
            equity += (acct.cash.get(c, _ZERO) + r["mv"]) * rate
            init += r["init"] * rate
            held += reserved.get(c, _ZERO) * rate
        bp = max(_ZERO, 2 * (equity - init) - held)
        return bp if ccy == base else bp * self._rate(base, ccy)

    def balances(self, accounts: Iterable[str] | None = None) -> list[BalanceRow]:
        """One row per account and currency (every currency with cash or positions)."""
        out = []
        for account_id in sorted(self._wanted(accounts)):
            acct = self._accounts[account_id]
            rows = self._per_currency(acct)
            margin_bp = self.buying_power(account_id) if acct.type == "margin" else None
            for ccy in sorted(rows, key=lambda c: (c != acct.base_currency, c)):
                r = rows[ccy]
                cash = acct.cash.get(ccy, _ZERO)
                if margin_bp is not None:
                    bp = margin_bp if ccy == acct.base_currency else _ZERO
                else:
                    bp = self.buying_power(account_id, ccy)
                out.append(BalanceRow(account_id, ccy, float(cash),
                                      float(self.settled_cash(account_id, ccy)), float(bp),
                                      float(cash + r["mv"]), float(r["init"]),
                                      float(r["maint"])))
        return out

    def positions(self, accounts: Iterable[str] | None = None) -> list[PositionRow]:
        """Every open position of `accounts` (default all), valued at the last price."""
        out = []
        for account_id in sorted(self._wanted(accounts)):
            acct = self._accounts[account_id]
            marks = self._marks(acct)
            for key, pos in sorted(acct.positions.items()):
                mult = pos.listing.multiplier
                mv = pos.quantity * marks[key] * mult
                out.append(PositionRow(account_id, pos.listing, float(pos.quantity),
                                       float(pos.avg_cost), float(marks[key]), float(mv),
                                       float(mv - pos.quantity * pos.avg_cost * mult)))
        return out

    # -- checks ---------------------------------------------------------------------------
    def _check(self, acct: Account, o: Order) -> str:
        """The first reason the broker refuses `o`, or ''."""
        li = o.listing
        if li is None:
            return f"unknown symbol {o.symbol!r}"
        if not li.tradable:
            return f"{li.symbol} is not tradable"
        if li.asset_class not in _SIMULATED:
            return f"{li.asset_class.value} orders are not simulated by the paper broker"
        if (o.quantity is None) == (o.notional is None):
            return "give exactly one of quantity and notional"
        for name in ("quantity", "notional", "limit_price", "stop_price", "trail_price",
                     "trail_percent"):
            v = getattr(o, name)
            if v is not None and v <= 0:
                return f"{name} must be positive, got {v}"
        if o.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) and o.limit_price is None:
            return f"a {o.order_type.value} order needs a limit price"
        if o.order_type in (OrderType.STOP, OrderType.STOP_LIMIT) and o.stop_price is None:
            return f"a {o.order_type.value} order needs a stop price"
        if o.order_type is OrderType.TRAILING_STOP and \
                (o.trail_price is None) == (o.trail_percent is None):
            return "a trailing_stop order needs one of trail_price and trail_percent"
        for name in ("limit_price", "stop_price"):
            v = getattr(o, name)
            if v is not None and v % li.tick:
                return f"{name} {v} is not a multiple of the tick {li.tick} for {li.symbol}"
        if o.notional is not None:
            if not li.fractionable:
                return f"{li.symbol} is not fractionable: notional orders are not accepted"
            if o.order_type is OrderType.TRAILING_STOP:
                return "notional orders cannot be trailing stop orders"
        else:
            assert o.quantity is not None
            if not li.fractionable and o.quantity != o.quantity.to_integral_value():
                return f"{li.symbol} is not fractionable: quantity {o.quantity} must be whole"
            if o.quantity < li.min_quantity:
                return f"quantity {o.quantity} is below the minimum {li.min_quantity} for " \
                       f"{li.symbol}"
            if o.quantity % li.lot_size:
                return f"quantity {o.quantity} is not a multiple of the lot size " \
                       f"{li.lot_size} for {li.symbol}"
        return self._check_funds(acct, o, li)

    def _check_funds(self, acct: Account, o: Order, li: Listing) -> str:
        quote = self.market.quote(li)
        buy = o.side is Side.BUY
        ref = o.limit_price or o.stop_price or (quote.ask if buy else quote.bid)
        qty = o.quantity if o.quantity is not None else (o.notional or _ZERO) / ref
        if li.asset_class is AssetClass.FX:
            base, _, quote_ccy = li.symbol.partition(".")
            pay_ccy, pay = (quote_ccy, qty * ref) if buy else (base, qty)
            if acct.type == "cash":
                have = self.buying_power(acct.account_id, pay_ccy)
                if pay > have:
                    return f"insufficient settled {pay_ccy}: the order needs {pay:,.2f}, " \
                           f"the account has {have:,.2f}"
                return ""
            return self._margin_check(acct, qty * ref, li.currency)
        open_sells = sum((x.remaining for x in self._open_orders(acct.account_id)
                          if x.side is Side.SELL and x.key == li.key), _ZERO)
        held = acct.positions[li.key].quantity if li.key in acct.positions else _ZERO
        cost = qty * ref * li.multiplier
        if li.asset_class is AssetClass.FUTURE:  # margined: the notional is never paid
            if acct.type == "cash":
                return f"futures need a margin account; {acct.account_id} is a cash account"
            grows = abs(held + qty * (1 if buy else -1)) > abs(held)
            if not grows:
                return ""
            return self._margin_check(acct, cost * _INITIAL[AssetClass.FUTURE]
                                      + o.fees.fee(qty, cost), li.currency)
        if buy:
            opening = cost
        else:
            short = qty - max(_ZERO, held - open_sells)
            if short > 0:
                if acct.type == "cash":
                    return f"short sale of {li.symbol} is not allowed in cash account " \
                           f"{acct.account_id} (holds {held - open_sells} to sell)"
                if not li.shortable:
                    return f"{li.symbol} is not shortable"
            opening = max(_ZERO, short) * ref * li.multiplier
        if not opening:
            return ""
        opening += o.fees.fee(qty, cost)
        if acct.type == "cash":
            have = self.buying_power(acct.account_id, li.currency)
            if opening > have:
                return f"insufficient buying power: the order needs {opening:,.2f} " \
                       f"{li.currency}, settled cash available is {have:,.2f} {li.currency}"
            return ""
        return self._margin_check(acct, opening, li.currency)

    def _margin_check(self, acct: Account, amount: Decimal, currency: str) -> str:
        base = acct.base_currency
        need = amount * self._rate(currency, base)
        have = self.buying_power(acct.account_id)
        if need > have:
            return f"insufficient buying power: the order needs {need:,.2f} {base}, " \
                   f"buying power is {have:,.2f} {base}"
        return ""

    # -- fills ----------------------------------------------------------------------------
    def _on_fill(self, order: Order, fill: Fill) -> None:
        if order.owner != self.name or order.order_id not in self._orders:
            return
        acct = self._accounts[order.account]
        li = order.listing
        assert li is not None
        signed = fill.quantity * fill.side.sign
        cash = acct.cash
        if li.asset_class is AssetClass.FX:
            base, _, quote = li.symbol.partition(".")
            cash[base] = cash.get(base, _ZERO) + signed
            cash[quote] = cash.get(quote, _ZERO) - signed * fill.price
        elif li.asset_class is AssetClass.FUTURE:  # only realized P&L moves cash
            realized = self._closed_pnl(acct.positions.get(li.key), signed, fill.price, li)
            self._apply_position(acct, li, signed, fill.price)
            cash[li.currency] = cash.get(li.currency, _ZERO) + realized
        else:
            value = fill.quantity * fill.price * li.multiplier
            cash[li.currency] = cash.get(li.currency, _ZERO) - fill.side.sign * value
            if fill.side is Side.SELL and fill.settle_date > fill.trade_date:
                acct.unsettled.append((fill.settle_date, li.currency, value))
            self._apply_position(acct, li, signed, fill.price)
        cash[fill.fee_currency] = cash.get(fill.fee_currency, _ZERO) - fill.fee
        self._fills.append(fill)

    @staticmethod
    def _closed_pnl(pos: Position | None, signed: Decimal, price: Decimal, li: Listing
                    ) -> Decimal:
        """The P&L realized by a fill of `signed` at `price` against `pos` (before it)."""
        if pos is None or pos.quantity == 0 or (pos.quantity > 0) == (signed > 0):
            return _ZERO
        closed = min(abs(signed), abs(pos.quantity))
        return closed * (price - pos.avg_cost) * (1 if pos.quantity > 0 else -1) \
            * li.multiplier

    @staticmethod
    def _apply_position(acct: Account, li: Listing, signed: Decimal, price: Decimal) -> None:
        pos = acct.positions.get(li.key) or Position(li)
        old = pos.quantity
        new = old + signed
        if old == 0 or (old > 0) == (signed > 0):  # opening or adding
            pos.avg_cost = (old * pos.avg_cost + signed * price) / new
        else:  # reducing, closing, or flipping
            pos.realized_pnl += PaperBroker._closed_pnl(pos, signed, price, li)
            if new != 0 and (new > 0) != (old > 0):
                pos.avg_cost = price
        pos.quantity = new
        if new == 0:
            acct.positions.pop(li.key, None)
        else:
            acct.positions[li.key] = pos
