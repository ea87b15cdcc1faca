"""Assets, the clock and calendar, and the market-data latest quotes and trades (stocks on
`/v2/stocks`, crypto on `/v1beta3/crypto/us`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from aiohttp import web

from ...model import AssetClass
from ...venues import alpaca as alpaca_venue
from ...venues.hours import HOURS
from ...venues.settlement import US
from .errors import Reply, not_found, unprocessable
from .middleware import endpoint
from .shapes import asset_json, quote_json, trade_json
from .state import STATE, AppState

if TYPE_CHECKING:
    from ..market import Listing

__all__ = ["routes"]

routes = web.RouteTableDef()

_SESSION = HOURS["NYSE"]  # Alpaca's clock and calendar are the US equity market's
_TZ = ZoneInfo(_SESSION.tz)


@routes.get("/v2/assets")
@endpoint("instruments")
async def list_assets(request: web.Request) -> list[dict[str, Any]]:
    q = request.query
    status, klass, exchange = q.get("status"), q.get("asset_class"), q.get("exchange")
    attributes = {a for a in q.get("attributes", "").split(",") if a}
    out = []
    for li in request.app[STATE].assets.values():
        a = asset_json(li)
        if (status and status != a["status"]) or (klass and klass != a["class"]) \
                or (exchange and exchange != a["exchange"]) \
                or (attributes and not attributes & set(a["attributes"])):
            continue
        out.append(a)
    return out


@routes.get("/v2/assets/{symbol:.+}")
@endpoint("instruments")
async def get_asset(request: web.Request) -> dict[str, Any]:
    symbol = request.match_info["symbol"]
    li = request.app[STATE].asset(symbol)
    if li is None:
        raise not_found(f"asset not found for {symbol}")
    return asset_json(li)


def _next_sessions(now: datetime) -> tuple[datetime, datetime]:
    """(next_open, next_close) of the US equity market after `now` (weekdays, no holidays)."""
    local = now.astimezone(_TZ)

    def first(t: Any) -> datetime:
        day = local.date()
        while True:
            at = datetime.combine(day, t, _TZ)
            if day.weekday() < 5 and at > local:
                return at
            day += timedelta(days=1)

    return first(_SESSION.open), first(_SESSION.close)


@routes.get("/v2/clock")
@endpoint("clock")
async def clock(request: web.Request) -> dict[str, Any]:
    state = request.app[STATE]
    now = state.market.now()
    next_open, next_close = _next_sessions(now)
    aapl = state.assets.get("AAPL")
    return {"timestamp": now.astimezone(_TZ).isoformat(),
            "is_open": state.market.is_open(aapl) if aapl is not None else False,
            "next_open": next_open.isoformat(), "next_close": next_close.isoformat()}


def _weekdays_after(day: date, n: int) -> date:
    while n > 0:
        day += timedelta(days=1)
        n -= day.weekday() < 5
    return day


@routes.get("/v2/calendar")
@endpoint("clock")
async def calendar(request: web.Request) -> list[dict[str, Any]]:
    """Weekday sessions with the extended-hours session and the US settlement date."""
    today = request.app[STATE].market.now().astimezone(_TZ).date()
    q = request.query
    try:
        start = date.fromisoformat(q["start"][:10]) if q.get("start") \
            else today - timedelta(days=30)
        end = date.fromisoformat(q["end"][:10]) if q.get("end") else today + timedelta(days=30)
    except ValueError:
        raise unprocessable("invalid start or end date") from None
    pre, post = alpaca_venue.EXTENDED_HOURS
    out, day = [], start
    while day <= end and len(out) < 10_000:
        if day.weekday() < 5:
            out.append({"date": day.isoformat(), "open": f"{_SESSION.open:%H:%M}",
                        "close": f"{_SESSION.close:%H:%M}", "session_open": f"{pre:%H%M}",
                        "session_close": f"{post:%H%M}",
                        "settlement_date": _weekdays_after(day, US.lag_on(day)).isoformat()})
        day += timedelta(days=1)
    return out


def _data_symbols(state: AppState, request: web.Request, crypto: bool) -> list[Listing]:
    raw = request.match_info.get("symbol") or request.query.get("symbols", "")
    names = [s.strip() for s in raw.split(",") if s.strip()]
    if not names:
        raise Reply(400, 40010001, "symbols is required")
    out = []
    for name in names:
        li = state.asset(name)
        if li is not None and (li.asset_class is AssetClass.CRYPTO) == crypto:
            out.append(li)
    return out


def _latest(kind: str, crypto: bool, single: bool = False
            ) -> Callable[[web.Request], Awaitable[dict[str, Any]]]:
    async def handle(request: web.Request) -> dict[str, Any]:
        state = request.app[STATE]
        rows = {}
        for q in state.market.quotes(_data_symbols(state, request, crypto)):
            rows[q.symbol] = quote_json(q, crypto) if kind == "quote" \
                else trade_json(q, crypto, next(state.trade_seq))
        if single:
            if not rows:
                raise not_found(f"no {kind} found for {request.match_info['symbol']}")
            symbol, row = next(iter(rows.items()))
            return {"symbol": symbol, kind: row}
        return {f"{kind}s": rows}

    return endpoint("quotes")(handle)


for _kind in ("quote", "trade"):
    routes.get(f"/v2/stocks/{_kind}s/latest")(_latest(_kind, False))
    routes.get(f"/v2/stocks/{{symbol}}/{_kind}s/latest")(_latest(_kind, False, single=True))
    routes.get(f"/v1beta3/crypto/us/latest/{_kind}s")(_latest(_kind, True))
