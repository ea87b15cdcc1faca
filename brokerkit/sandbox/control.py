"""The sandbox control server: a small JSON API on loopback to watch and steer the sandbox.

=======================  =====================================================================
GET  /health             {"status": "ok", "seed", "time", "brokers"}
GET  /v1/quotes          ?symbols=AAPL,BTC/USD -> {"quotes": [{symbol, instrument, bid, ...}]}
GET  /v1/fx              ?pairs=EURUSD,USDT/USD -> {"rates": {"EURUSD": 1.08, ...}, "as_of"}
GET  /v1/accounts        ?broker=paper (default: every broker) -> {"accounts": [...]}
POST /v1/faults          {"broker": "paper", "endpoint": "submit", "latency_ms": 200, ...};
                         {"clear": true} removes them -> {"broker", "faults"}
POST /v1/clock/advance   {"seconds": 60} -> {"time", "fills"} (open orders are matched)
=======================  =====================================================================

`POST /v1/corporate_actions` `{"symbol": "AAPL", "ratio": 4}` splits the symbol now, as an
issuer's split reaches everyone: every broker's positions and open orders, and the market's
price (`Sandbox.apply_split`: 4 is a 4-for-1, 0.1 a 1-for-10 reverse; optional "action_id")
-> `{"broker", "action": {action_id, symbol, instrument, kind, ratio, effective_at,
effective_date, accounts}}`, the action as recorded at "broker" (default "paper").

Errors answer `{"error": message}` with status 400 (bad input) or 404 (unknown name).
Runs on the brokerkit runtime loop; aiohttp is imported only when the server starts.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..errors import InvalidIntent
from .http import LoopbackServer, listen
from .market import UnknownSymbol

if TYPE_CHECKING:
    from aiohttp import web

    from .demo import Sandbox

__all__ = ["make_app", "start_control"]


class _BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        self.status = status
        super().__init__(message)


def make_app(sandbox: Sandbox) -> web.Application:
    """The aiohttp application serving `sandbox`."""
    from aiohttp import web

    market = sandbox.market

    @web.middleware
    async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except _BadRequest as exc:
            return web.json_response({"error": str(exc)}, status=exc.status)
        except UnknownSymbol as exc:
            return web.json_response({"error": str(exc)}, status=404)

    def csv_param(request: web.Request, name: str) -> list[str]:
        raw = request.query.get(name, "")
        values = [v.strip() for v in raw.split(",") if v.strip()]
        if not values:
            raise _BadRequest(f"query parameter {name!r} is required (comma-separated)")
        return values

    async def body(request: web.Request) -> dict[str, Any]:
        try:
            data = await request.json() if request.can_read_body else {}
        except ValueError:
            raise _BadRequest("request body is not JSON") from None
        if not isinstance(data, dict):
            raise _BadRequest("request body must be a JSON object")
        return data

    def brokers(name: str | None) -> list[Any]:
        if name is None:
            return list(sandbox.brokers.values())
        found = sandbox.brokers.get(name)
        if found is None:
            raise _BadRequest(f"unknown broker {name!r}; brokers: "
                              f"{', '.join(sandbox.brokers) or 'none'}", 404)
        return [found]

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "seed": sandbox.seed,
                                  "time": market.now().isoformat(),
                                  "brokers": list(sandbox.brokers)})

    async def quotes(request: web.Request) -> web.Response:
        rows = [{"symbol": q.symbol, "instrument": q.key, "bid": float(q.bid),
                 "ask": float(q.ask), "last": float(q.last), "bid_size": float(q.bid_size),
                 "ask_size": float(q.ask_size), "currency": q.currency,
                 "as_of": q.as_of.isoformat()}
                for q in market.quotes(csv_param(request, "symbols"))]
        return web.json_response({"quotes": rows})

    async def fx(request: web.Request) -> web.Response:
        rates = {}
        for pair in csv_param(request, "pairs"):
            code = pair.upper().replace(".", "/")
            a, b = code.split("/", 1) if "/" in code else (code[:3], code[3:])
            if not (2 < len(a) < 6 and 2 < len(b) < 6 and (a + b).isalpha()) or \
                    ("/" not in code and len(code) != 6):
                raise _BadRequest(f"pair {pair!r} is not like EURUSD or USDT/USD")
            rates[f"{a}{b}" if len(a) == len(b) == 3 else f"{a}/{b}"] = market.fx_rate(a, b)
        return web.json_response({"rates": rates, "as_of": market.now().isoformat()})

    async def accounts(request: web.Request) -> web.Response:
        out = []
        for broker in brokers(request.query.get("broker")):
            broker.process()
            positions: dict[str, list[dict[str, Any]]] = {}
            for p in broker.positions():
                positions.setdefault(p.account, []).append({
                    "symbol": p.listing.symbol, "instrument": p.listing.key,
                    "quantity": p.quantity, "avg_cost": p.avg_cost,
                    "market_price": p.market_price, "market_value": p.market_value,
                    "currency": p.listing.currency})
            for account_id in broker.accounts:
                acct = broker.account(account_id)
                out.append({"broker": broker.name, "account": account_id, "type": acct.type,
                            "base_currency": acct.base_currency,
                            "cash": {c: float(v) for c, v in acct.cash.items()},
                            "buying_power": float(broker.buying_power(account_id)),
                            "positions": positions.get(account_id, [])})
        return web.json_response({"accounts": out})

    async def faults(request: web.Request) -> web.Response:
        data = await body(request)
        name = data.pop("broker", "paper")
        endpoint = data.pop("endpoint", "*")
        clear = data.pop("clear", False)
        for what, value in (("broker", name), ("endpoint", endpoint)):
            if not isinstance(value, str) or not value:
                raise _BadRequest(f"{what} {value!r} must be a non-empty string")
        broker = sandbox.broker(name)  # faults may be set before a broker's first use
        if clear:
            broker.faults.clear(None if endpoint == "*" else endpoint)
        try:
            if data:
                broker.faults.set(endpoint, **data)
        except ValueError as exc:
            raise _BadRequest(str(exc)) from None
        return web.json_response({"broker": broker.name, "faults": broker.faults.snapshot()})

    async def advance(request: web.Request) -> web.Response:
        data = await body(request)
        seconds = data.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) \
                or not math.isfinite(seconds) or seconds < 0:
            raise _BadRequest(f"seconds {seconds!r} must be a number >= 0")
        now = market.clock.advance(seconds)
        fills = sum(len(b.process()) for b in sandbox.brokers.values())
        return web.json_response({"time": now.isoformat(), "fills": fills})

    async def corporate_actions(request: web.Request) -> web.Response:
        data = await body(request)
        unknown = sorted(set(data) - {"broker", "symbol", "ratio", "action_id"})
        if unknown:
            raise _BadRequest(f"unknown field {unknown[0]!r}; fields: broker, symbol, ratio, "
                              f"action_id")
        name, symbol = data.get("broker", "paper"), data.get("symbol")
        action_id = data.get("action_id")
        for what, value in (("broker", name), ("symbol", symbol)):
            if not isinstance(value, str) or not value:
                raise _BadRequest(f"{what} {value!r} must be a non-empty string")
        if action_id is not None and (not isinstance(action_id, str) or not action_id):
            raise _BadRequest(f"action_id {action_id!r} must be a non-empty string")
        ratio = data.get("ratio")
        if isinstance(ratio, bool) or not isinstance(ratio, int | float | str):
            raise _BadRequest(f"ratio {ratio!r} must be a number (new shares per old)")
        broker = brokers(name)[0]
        try:  # an issuer's split: every broker of the sandbox, and the market's price
            action = sandbox.apply_split(symbol, ratio, action_id=action_id)[broker.name]
        except (InvalidIntent, ValueError) as exc:
            raise _BadRequest(str(exc)) from None
        return web.json_response({"broker": broker.name, "action": {
            "action_id": action.action_id, "symbol": action.symbol,
            "instrument": action.instrument, "kind": action.kind, "ratio": str(action.ratio),
            "effective_at": action.effective_at.isoformat(),
            "effective_date": action.effective_date.isoformat(),
            "accounts": list(action.accounts)}})

    app = web.Application(middlewares=[errors])
    app.router.add_get("/health", health)
    app.router.add_get("/v1/quotes", quotes)
    app.router.add_get("/v1/fx", fx)
    app.router.add_get("/v1/accounts", accounts)
    app.router.add_post("/v1/faults", faults)
    app.router.add_post("/v1/clock/advance", advance)
    app.router.add_post("/v1/corporate_actions", corporate_actions)
    return app


async def start_control(sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0
                        ) -> LoopbackServer:
    """Serve `sandbox`'s control API on `host` (a free port unless given)."""
    return await listen(make_app(sandbox), host, port)
