"""The account, its positions and its activities (FILL)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from aiohttp import web

from .errors import not_found, unprocessable
from .middleware import endpoint
from .params import int_param, time_param
from .shapes import alpaca_class, dec, position_json, ts, uid
from .state import ACCOUNT, STATE, AppState

if TYPE_CHECKING:
    from ..market import Fill

__all__ = ["routes"]

routes = web.RouteTableDef()

_NY = ZoneInfo("America/New_York")
_CREATED = "2025-01-02T15:00:00Z"
# source: Alpaca API reference, "Get account activities" (activity_type values)
_ACTIVITY_TYPES = frozenset((
    "FILL", "ACATC", "ACATS", "CFEE", "CIL", "CSD", "CSW", "DIV", "DIVCGL", "DIVCGS", "DIVNRA",
    "DIVROC", "DIVTXEX", "DIVWH", "EXTRD", "FEE", "FXTRD", "INT", "INTPNL", "JNLC", "JNLS", "MA",
    "MEM", "NC", "OCT", "OPASN", "OPCSH", "OPEXC", "OPEXP", "OPTRD", "PTC", "REORG", "SPIN",
    "SPLIT", "SWP", "VOF", "WH"))


@routes.get("/v2/account")
@endpoint("balances")
async def account(request: web.Request) -> dict[str, Any]:
    broker = request.app[STATE].broker
    acct = broker.account(ACCOUNT)
    row = next(r for r in broker.balances([ACCOUNT]) if r.currency == "USD")
    long_mv = sum(p.market_value for p in broker.positions([ACCOUNT]) if p.quantity > 0)
    short_mv = sum(p.market_value for p in broker.positions([ACCOUNT]) if p.quantity < 0)
    bp = broker.buying_power(ACCOUNT)
    margin = acct.type == "margin"
    return {
        "id": uid("account", ACCOUNT), "account_number": ACCOUNT, "status": "ACTIVE",
        "crypto_status": "ACTIVE", "currency": "USD", "buying_power": dec(bp),
        "regt_buying_power": dec(bp), "daytrading_buying_power": "0",
        "non_marginable_buying_power": dec(bp / 2 if margin else bp),
        "cash": dec(row.cash), "accrued_fees": "0", "pending_transfer_in": "0",
        "pending_transfer_out": "0", "portfolio_value": dec(row.equity),
        "equity": dec(row.equity), "last_equity": dec(row.equity),
        "long_market_value": dec(long_mv), "short_market_value": dec(short_mv),
        "initial_margin": dec(row.margin_init), "maintenance_margin": dec(row.margin_maint),
        "last_maintenance_margin": dec(row.margin_maint), "sma": "0",
        "multiplier": "2" if margin else "1", "shorting_enabled": margin,
        "pattern_day_trader": False, "trading_blocked": False, "transfers_blocked": False,
        "account_blocked": False, "trade_suspended_by_user": False,
        "created_at": _CREATED, "daytrade_count": 0, "options_buying_power": dec(bp / 2),
        "options_approved_level": 0, "options_trading_level": 0,
    }


@routes.get("/v2/positions")
@endpoint("positions")
async def positions(request: web.Request) -> list[dict[str, Any]]:
    broker = request.app[STATE].broker
    return [position_json(p) for p in broker.positions([ACCOUNT]) if alpaca_class(p.listing)]


@routes.get("/v2/positions/{symbol:.+}")
@endpoint("positions")
async def position(request: web.Request) -> dict[str, Any]:
    state = request.app[STATE]
    li = state.asset(request.match_info["symbol"])
    for p in state.broker.positions([ACCOUNT]):
        if li is not None and p.listing.key == li.key:
            return position_json(p)
    raise not_found("position does not exist")


def _fill_activities(state: AppState) -> list[dict[str, Any]]:
    cum: dict[str, Decimal] = {}
    out = []
    for f in state.broker.fills([ACCOUNT]):
        o = state.broker.order(f.order_id)
        cum[f.order_id] = cum.get(f.order_id, Decimal(0)) + f.quantity
        leaves = (o.quantity or cum[f.order_id]) - cum[f.order_id]
        out.append(_activity_json(f, cum[f.order_id], leaves))
    return out


def _activity_json(f: Fill, cum: Decimal, leaves: Decimal) -> dict[str, Any]:
    at = f.executed_at.astimezone(UTC)
    partial = leaves > 0
    return {
        "id": f"{at:%Y%m%d%H%M%S}{at.microsecond // 1000:03d}::{uid('fill', f.fill_id)}",
        "activity_type": "FILL", "transaction_time": ts(at),
        "type": "partial_fill" if partial else "fill", "price": dec(f.price),
        "qty": dec(f.quantity), "side": f.side.value, "symbol": f.symbol,
        "leaves_qty": dec(leaves), "order_id": f.order_id,
        "cum_qty": dec(cum), "order_status": "partially_filled" if partial else "filled",
    }


def _at(activity: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(str(activity["transaction_time"]).replace("Z", "+00:00"))


@routes.get("/v2/account/activities")
@endpoint("fills")
async def activities(request: web.Request) -> list[dict[str, Any]]:
    """FILL activities; page_size (<= 100) and page_token."""
    q = request.query
    kinds = request.match_info.get("activity_type") or q.get("activity_types", "")
    wanted = {k.strip().upper() for k in kinds.split(",") if k.strip()}
    for kind in wanted:
        if kind not in _ACTIVITY_TYPES:
            raise unprocessable(f"invalid activity type: {kind}")
    category = q.get("category")
    if category not in (None, "trade_activity", "non_trade_activity"):
        raise unprocessable(f"invalid category: {category}")
    if (wanted and "FILL" not in wanted) or category == "non_trade_activity":
        return []
    items = _fill_activities(request.app[STATE])
    after, until = time_param(request, "after"), time_param(request, "until")
    day = q.get("date")
    if day:
        try:
            d = date.fromisoformat(day[:10])
        except ValueError:
            raise unprocessable(f"invalid date: {day!r}") from None
        after = datetime.combine(d, dtime(), _NY)
        until = after + timedelta(days=1)
    if after or until:
        items = [a for a in items
                 if (not after or _at(a) > after) and (not until or _at(a) < until)]
    direction = q.get("direction", "desc")
    if direction not in ("asc", "desc"):
        raise unprocessable(f"invalid direction: {direction!r}")
    if direction == "desc":
        items.reverse()
    token = q.get("page_token")
    if token:
        ids = [a["id"] for a in items]
        if token not in ids:
            raise unprocessable(f"invalid page_token: {token!r}")
        items = items[ids.index(token) + 1:]
    return items[:int_param(request, "page_size", 100, 100)]


routes.get("/v2/account/activities/{activity_type}")(activities)
