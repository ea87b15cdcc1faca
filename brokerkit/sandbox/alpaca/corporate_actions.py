"""The market-data API's corporate actions (`GET /v1/corporate-actions`, what alpaca-py's
`CorporateActionsClient.get_corporate_actions` asks for), fed from the splits the server's
`PaperBroker` applied (`PaperBroker.apply_split`).

Shape (source: https://docs.alpaca.markets/reference/corporateactions-1, and alpaca-py 0.44
`alpaca.data.models.corporate_actions`, whose `ForwardSplit` needs `id` (a UUID), `symbol`,
`cusip`, `new_rate`, `old_rate`, `process_date` and `ex_date`; `ReverseSplit` `old_cusip` and
`new_cusip` instead of `cusip`): `{"corporate_actions": {"forward_splits": [...],
"reverse_splits": [...]}, "next_page_token": null}`. Query: `symbols`, `types`
(forward_split, reverse_split; the other types are accepted and have no rows here), `start`
and `end` (inclusive dates of `process_date`; default today), `limit` (1 to 1000), `sort`
(asc | desc), `page_token` (the `next_page_token` of the page before). The sandbox lists no
CUSIPs: those fields are empty strings; a split's process date is its ex-date.
"""

from __future__ import annotations

from datetime import date
from fractions import Fraction
from typing import Any

from aiohttp import web

from .errors import unprocessable
from .middleware import endpoint
from .params import int_param
from .shapes import uid
from .state import STATE

__all__ = ["routes"]

routes = web.RouteTableDef()

# source: https://docs.alpaca.markets/reference/corporateactions-1 (the `types` parameter)
_TYPES = frozenset(("reverse_split", "forward_split", "unit_split", "cash_dividend",
                    "stock_dividend", "spin_off", "cash_merger", "stock_merger",
                    "stock_and_cash_merger", "redemption", "name_change", "worthless_removal",
                    "rights_distribution"))


def _day(request: web.Request, name: str, default: date) -> date:
    raw = request.query.get(name)
    if not raw:
        return default
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise unprocessable(f"invalid {name}: {raw!r} (YYYY-MM-DD)") from None


@routes.get("/v1/corporate-actions")
@endpoint("corporate_actions")
async def corporate_actions(request: web.Request) -> dict[str, Any]:
    state = request.app[STATE]
    q = request.query
    symbols = {s.strip().upper() for s in q.get("symbols", "").split(",") if s.strip()}
    types = {t.strip() for t in q.get("types", "").split(",") if t.strip()}
    bad = sorted(types - _TYPES)
    if bad:
        raise unprocessable(f"invalid type: {bad[0]}")
    today = state.market.now().date()
    start, end = _day(request, "start", today), _day(request, "end", today)
    if start > end:
        raise unprocessable("start must not be after end")
    sort = q.get("sort", "asc")
    if sort not in ("asc", "desc"):
        raise unprocessable(f"invalid sort: {sort!r}")
    limit = int_param(request, "limit", 100, 1000)
    token = q.get("page_token") or "0"
    if not token.isdigit():
        raise unprocessable(f"invalid page_token: {token!r}")
    rows: list[tuple[str, dict[str, Any]]] = []
    found = [a for a in state.broker.corporate_actions()
             if start <= a.effective_date <= end and (not symbols or a.symbol in symbols)]
    for a in reversed(found) if sort == "desc" else found:
        name = "forward_split" if a.kind == "split" else "reverse_split"
        if types and name not in types:
            continue
        rate = Fraction(a.ratio).limit_denominator(10_000)
        cusips = {"cusip": ""} if name == "forward_split" else {"old_cusip": "",
                                                                 "new_cusip": ""}
        rows.append((f"{name}s", {
            "id": uid("corporate_action", a.action_id), "symbol": a.symbol, **cusips,
            "new_rate": rate.numerator, "old_rate": rate.denominator,
            "process_date": a.effective_date.isoformat(),
            "ex_date": a.effective_date.isoformat()}))
    first = int(token)
    out: dict[str, list[dict[str, Any]]] = {}
    for group, row in rows[first:first + limit]:
        out.setdefault(group, []).append(row)
    more = first + limit < len(rows)
    return {"corporate_actions": out, "next_page_token": str(first + limit) if more else None}
