"""Alpaca's JSON shapes: assets, orders, positions, quotes and trades, as alpaca-py reads
them (shared/reference/http-apis.md §1.6)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ...model import AssetClass, OrderStatus
from ...venues import alpaca as venue

if TYPE_CHECKING:
    from ..market import Listing, Order

__all__ = ["OPEN_STATUSES", "STATUS", "alpaca_class", "asset_json", "dec", "order_json",
           "position_json", "quote_json", "trade_json", "ts", "uid"]

_NS = uuid.UUID("6c1f0ad2-1c8e-4a4e-9a57-3b0c5ad0a1c7")
#: Alpaca's order status names.
STATUS = {
    OrderStatus.PENDING: "pending_new", OrderStatus.ACCEPTED: "new",
    OrderStatus.PARTIALLY_FILLED: "partially_filled", OrderStatus.FILLED: "filled",
    OrderStatus.CANCELED: "canceled", OrderStatus.EXPIRED: "expired",
    OrderStatus.REJECTED: "rejected", OrderStatus.ERROR: "rejected",
}
OPEN_STATUSES = frozenset({OrderStatus.PENDING, OrderStatus.ACCEPTED,
                           OrderStatus.PARTIALLY_FILLED})


def uid(kind: str, name: str) -> str:
    """A stable UUID for an account, asset or fill name."""
    return str(uuid.uuid5(_NS, f"{kind}:{name}"))


def dec(value: Decimal | float | int | None) -> str | None:
    """A decimal as Alpaca writes it: a plain string, no exponent."""
    if value is None:
        return None
    d = value if isinstance(value, Decimal) else Decimal(repr(float(value)))
    text = format(d.normalize(), "f")
    return "0" if text in ("-0", "") else text


def ts(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def alpaca_class(listing: Listing) -> str | None:
    """'us_equity' or 'crypto' for listings Alpaca trades, else None."""
    ac = listing.asset_class
    if ac in (AssetClass.EQUITY, AssetClass.ETF) and listing.currency == "USD" \
            and listing.exchange in venue.EQUITY_EXCHANGES:
        return "us_equity"
    if ac is AssetClass.CRYPTO:
        return "crypto"
    return None


def asset_json(li: Listing) -> dict[str, Any]:
    crypto = li.asset_class is AssetClass.CRYPTO
    out: dict[str, Any] = {
        "id": uid("asset", li.symbol), "class": alpaca_class(li),
        "exchange": "CRYPTO" if crypto else venue.EQUITY_EXCHANGES[li.exchange],
        "symbol": li.symbol, "name": li.symbol, "status": "active", "tradable": li.tradable,
        "marginable": not crypto, "shortable": li.shortable and not crypto,
        "easy_to_borrow": li.shortable and not crypto, "fractionable": li.fractionable,
        "maintenance_margin_requirement": 100.0 if crypto else 30.0,
        "price_increment": float(li.tick),
        "attributes": ["fractional_eh_enabled"] if li.fractionable and not crypto else [],
    }
    if crypto:
        out["min_order_size"] = float(li.min_quantity)
        out["min_trade_increment"] = float(li.lot_size)
    return out


def order_json(o: Order, extended_hours: bool) -> dict[str, Any]:
    li = o.listing
    status = o.status
    final_at = o.updated_at if status in (OrderStatus.FILLED, OrderStatus.CANCELED,
                                          OrderStatus.EXPIRED) else None
    otype = o.order_type.value
    return {
        "id": o.order_id, "client_order_id": o.client_order_id,
        "created_at": ts(o.submitted_at), "updated_at": ts(o.updated_at),
        "submitted_at": ts(o.submitted_at),
        "filled_at": ts(final_at) if status is OrderStatus.FILLED else None,
        "expired_at": ts(final_at) if status is OrderStatus.EXPIRED else None,
        "canceled_at": ts(final_at) if status is OrderStatus.CANCELED else None,
        "failed_at": ts(o.updated_at) if status is OrderStatus.REJECTED else None,
        "replaced_at": None, "replaced_by": None, "replaces": None,
        "asset_id": uid("asset", li.symbol) if li else None, "symbol": o.symbol,
        "asset_class": alpaca_class(li) if li else None,
        "notional": dec(o.notional),
        "qty": dec(o.quantity) if o.notional is None or status is OrderStatus.FILLED else None,
        "filled_qty": dec(o.filled_quantity), "filled_avg_price": dec(o.avg_fill_price),
        "order_class": "", "order_type": otype, "type": otype, "side": o.side.value,
        "position_intent": None, "time_in_force": o.time_in_force.value,
        "limit_price": dec(o.limit_price), "stop_price": dec(o.stop_price),
        "status": STATUS[status], "extended_hours": extended_hours,
        "legs": None, "trail_percent": dec(o.trail_percent), "trail_price": dec(o.trail_price),
        "hwm": dec(o.water_mark), "expires_at": None,
    }


def position_json(p: Any) -> dict[str, Any]:
    li = p.listing
    qty = Decimal(repr(p.quantity))
    cost = Decimal(repr(p.avg_cost)) * qty
    mv = Decimal(repr(p.market_value))
    price = Decimal(repr(p.market_price))
    pl = mv - cost
    crypto = li.asset_class is AssetClass.CRYPTO
    plpc = dec(round(pl / abs(cost), 6)) if cost else "0"
    return {
        "asset_id": uid("asset", li.symbol), "symbol": li.symbol.replace("/", ""),
        "exchange": "CRYPTO" if crypto else venue.EQUITY_EXCHANGES.get(li.exchange, ""),
        "asset_class": alpaca_class(li) or "us_equity", "asset_marginable": not crypto,
        "avg_entry_price": dec(p.avg_cost), "qty": dec(qty), "qty_available": dec(qty),
        "side": "long" if qty > 0 else "short", "market_value": dec(mv),
        "cost_basis": dec(cost), "unrealized_pl": dec(pl), "unrealized_plpc": plpc,
        "unrealized_intraday_pl": dec(pl), "unrealized_intraday_plpc": plpc,
        "current_price": dec(price), "lastday_price": dec(price), "change_today": "0",
    }


def quote_json(q: Any, crypto: bool) -> dict[str, Any]:
    if crypto:
        return {"ap": float(q.ask), "as": float(q.ask_size), "bp": float(q.bid),
                "bs": float(q.bid_size), "t": ts(q.as_of)}
    return {"ap": float(q.ask), "as": int(q.ask_size), "ax": "V", "bp": float(q.bid),
            "bs": int(q.bid_size), "bx": "V", "c": ["R"], "t": ts(q.as_of), "z": "C"}


def trade_json(q: Any, crypto: bool, seq: int) -> dict[str, Any]:
    out: dict[str, Any] = {"p": float(q.last), "s": 100 if not crypto else 0.01,
                           "t": ts(q.as_of), "i": seq}
    if crypto:
        out["tks"] = "B"
    else:
        out.update({"x": "V", "c": ["@"], "z": "C"})
    return out
