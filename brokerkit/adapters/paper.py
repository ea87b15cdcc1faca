"""`PaperAdapter`: the connection type "paper", a client of the sandbox's paper-broker API.

It speaks HTTP to a paper server (`brokerkit.sandbox.paper`, served by the shared sandbox
service on loopback) with one aiohttp session on the runtime loop, and returns canonical
frames. Options (`ConnectionConfig.options`):

==============  ==============================================================================
url             the paper server's base URL (required), e.g. http://127.0.0.1:8765
broker          name of the paper broker on that server (default "paper"); brokers share one
                market, each holds its own accounts
timeout         seconds a request may take (default 10); a submit that times out raises
                `SubmitUncertain`
==============  ==============================================================================

Accounts are `ConnectionConfig.accounts`, else every account of the broker. Faults (latency,
errors, timeouts, dropped answers) are set on the server: `Sandbox.broker(name).faults` or
the control API's `POST /v1/faults`. A submit whose answer is lost (a timeout, a dropped
connection, a 5xx) raises `SubmitUncertain`; `lookup` by client order id then decides.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlsplit

import aiohttp

from .. import frames
from ..errors import AdapterError, ConnectionDown, SubmitUncertain
from ..model import AssetClass, OrderIntent, OrderStatus, OrderType
from .base import Adapter, BrokerOrder, Capabilities, Options, fills_frame

if TYPE_CHECKING:
    import pandas as pd

    from ..config import ConnectionConfig
    from ..secrets import Secret

__all__ = ["PaperAdapter"]

_OPTIONS = {"url", "broker", "timeout"}
DEFAULT_TIMEOUT = 10.0
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_INTENT_FIELDS = ("quantity", "notional", "limit_price", "stop_price", "trail_price",
                  "trail_percent")


class _Failed(Exception):
    """The request got no answer (timeout, refused or dropped connection)."""


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _day(text: str | None) -> date | None:
    return None if text is None else date.fromisoformat(text)


def _float(text: str | None) -> float | None:
    return None if text is None else float(text)


class PaperAdapter(Adapter):
    """A trading connection to a paper broker of the sandbox service."""

    institution = "Sandbox Paper"
    capabilities = Capabilities(
        trading=True,
        asset_classes=frozenset({AssetClass.EQUITY, AssetClass.ETF, AssetClass.FX,
                                 AssetClass.CRYPTO}),
        fractional=True, notional=True, order_types=frozenset(OrderType), short_selling=True)
    #: Orders asked for per page when listing them (the server allows up to 1000).
    page_size: int = 500

    def __init__(self, config: ConnectionConfig, secrets: Mapping[str, Secret] | None = None
                 ) -> None:
        super().__init__(config, secrets)
        opts = Options(config, _OPTIONS)
        url = opts.get("url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise opts.fail("url", url, "the paper server's base URL, e.g. "
                                        "http://127.0.0.1:8765")
        broker = opts.get("broker", "paper")
        if not isinstance(broker, str) or not broker:
            raise opts.fail("broker", broker, "the name of a paper broker")
        timeout = opts.get("timeout", DEFAULT_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise opts.fail("timeout", timeout, "a number of seconds > 0")
        self._base = f"{url.rstrip('/')}/v1/brokers/{quote(broker, safe='')}"
        self._broker_name = broker
        self._timeout = float(timeout)
        self._local = parts.hostname in _LOOPBACK
        self._where = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"  # no user:password
        self._session: aiohttp.ClientSession | None = None
        self._connected = False
        self._accounts: list[str] = list(config.accounts)

    @property
    def accounts(self) -> list[str]:
        return list(self._accounts)

    @property
    def _institution(self) -> str:
        return self.config.institution or self.institution

    # -- the wire -------------------------------------------------------------------------
    async def _request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                       body: Mapping[str, Any] | None = None) -> tuple[int, Any]:
        """One request: its status and JSON body (or text). Raises `ConnectionDown` when not
        connected and `_Failed` when no answer came."""
        if self._session is None or not self._connected:
            raise ConnectionDown(self.name, "not connected; call connect() first")
        return await self._send(self._session, method, path, params, body)

    async def _send(self, session: aiohttp.ClientSession, method: str, path: str,
                    params: Mapping[str, str] | None, body: Mapping[str, Any] | None
                    ) -> tuple[int, Any]:
        try:
            async with session.request(method, self._base + path, params=params,
                                       json=body) as resp:
                text = await resp.text()
                status = resp.status
        except TimeoutError:
            raise _Failed(f"no answer within {self._timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise _Failed(str(exc) or type(exc).__name__) from exc
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    @staticmethod
    def _error(status: int, data: Any) -> str:
        """The server's error message of a refused request."""
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            return f"{data['error']} (HTTP {status})"
        return f"HTTP {status}: {str(data)[:200]}"

    async def _get(self, path: str, **params: str) -> Any:
        """A read: its JSON answer; any failure is an `AdapterError`."""
        try:
            status, data = await self._request("GET", path, params=params)
        except _Failed as exc:
            raise AdapterError(self.name, f"GET {path or '/'} failed: {exc}") from exc
        if status != 200:
            raise AdapterError(self.name, self._error(status, data))
        return data

    def _scope(self) -> dict[str, str]:
        return {"accounts": ",".join(self._accounts)}

    # -- lifecycle ------------------------------------------------------------------------
    async def connect_async(self) -> None:
        """Reach the paper server and check the accounts exist there; raises
        `ConnectionDown` when it cannot."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                trust_env=not self._local)  # loopback never goes through a proxy
        try:
            status, data = await self._send(self._session, "GET", "", None, None)
        except _Failed as exc:
            await self.close_async()
            raise ConnectionDown(self.name, f"connect failed: {self._where}: {exc}") from exc
        if status != 200 or not isinstance(data, dict):
            await self.close_async()
            raise ConnectionDown(self.name, f"connect failed: {self._error(status, data)}")
        known: list[str] = data["accounts"]
        if not self._accounts:
            self._accounts = list(known)
        missing = [a for a in self._accounts if a not in known]
        if missing:
            await self.close_async()
            raise ConnectionDown(self.name, f"connect failed: no account {missing[0]!r} at "
                                            f"paper broker {self._broker_name!r} (accounts: "
                                            f"{', '.join(known)})")
        self._connected = True

    async def close_async(self) -> None:
        self._connected = False
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # -- reads ----------------------------------------------------------------------------
    async def balances_async(self) -> pd.DataFrame:
        """One row per account and currency."""
        data = await self._get("/balances", **self._scope())
        return frames.make(frames.BALANCES, data["balances"], connection=self.name,
                           institution=self._institution, as_of=_time(data["as_of"]))

    async def positions_async(self) -> pd.DataFrame:
        """Every open position, valued at the last price."""
        data = await self._get("/positions", **self._scope())
        rows = [{**p, "expiry": _day(p["expiry"])} for p in data["positions"]]
        return frames.make(frames.POSITIONS, rows, connection=self.name,
                           institution=self._institution, as_of=_time(data["as_of"]))

    async def orders_async(self) -> pd.DataFrame:
        """Every order of the connection's accounts, oldest first (every page is read)."""
        return await self._orders("all")

    async def open_orders_async(self) -> pd.DataFrame:
        """Every open order of the connection's accounts, whoever placed it, oldest first
        (every page is read)."""
        return await self._orders("open")

    async def _orders(self, status: Literal["all", "open"]) -> pd.DataFrame:
        rows: list[dict[str, Any]] = []
        params = {**self._scope(), "status": status, "limit": str(self.page_size)}
        while True:
            data = await self._get("/orders", **params)
            rows.extend(self._order_row(o) for o in data["orders"])
            if not data["next"]:
                return frames.make(frames.ORDERS, rows, connection=self.name)
            params["after"] = data["next"]

    async def fills_async(self, since: datetime | None = None) -> pd.DataFrame:
        """Fills of the connection's accounts, oldest first (at or after `since` if given)."""
        params = self._scope()
        if since is not None:
            params["since"] = since.isoformat()
        data = await self._get("/fills", **params)
        rows = [{**f, "executed_at": _time(f["executed_at"]), "trade_date": _day(f["trade_date"]),
                 "settle_date": _day(f["settle_date"])} for f in data["fills"]]
        return fills_frame(rows, self.name)

    async def corporate_actions_async(self, since: datetime | None = None) -> pd.DataFrame:
        """Splits the paper broker applied to positions of the connection's accounts, oldest
        first (effective at or after `since` if given): one row per action and account."""
        params = self._scope()
        if since is not None:
            params["since"] = since.isoformat()
        data = await self._get("/corporate_actions", **params)
        rows = [{**a, "effective_date": _day(a["effective_date"])}
                for a in data["corporate_actions"]]
        return frames.make(frames.CORPORATE_ACTIONS, rows, connection=self.name)

    async def quotes_async(self, symbols: Sequence[str]) -> pd.DataFrame:
        """Top of book for `symbols`; an unknown symbol is an `AdapterError` naming it."""
        data = await self._get("/quotes", symbols=",".join(symbols))
        rows = [{**q, "as_of": _time(q["as_of"])} for q in data["quotes"]]
        return frames.make(frames.QUOTES, rows, connection=self.name)

    async def instruments_async(self, symbols: Sequence[str]) -> pd.DataFrame:
        """Instrument facts (tradable, fractionable, shortable, ticks) for `symbols`."""
        data = await self._get("/instruments", symbols=",".join(symbols))
        return frames.make(frames.INSTRUMENTS, data["instruments"], connection=self.name)

    async def account_types_async(self) -> dict[str, str]:
        """"cash" or "margin" for each account of the connection."""
        data = await self._get("/accounts")
        types = {a["id"]: a["type"] for a in data["accounts"]}
        return {a: types[a] for a in self._accounts if a in types}

    async def market_open_async(self, symbol: str) -> bool | None:
        """Whether `symbol`'s exchange is open now at the sandbox market's clock."""
        data = await self._get("/clock", symbol=symbol)
        return bool(data["is_open"])

    # -- trading --------------------------------------------------------------------------
    async def submit_async(self, intent: OrderIntent, client_order_id: str) -> BrokerOrder:
        """Place `intent` with `client_order_id`; a broker refusal comes back REJECTED with
        its reason, and so does a request the server refuses (a 4xx: an invalid order, its
        request limit pushing back with 429). Raises `SubmitUncertain` when the answer is
        lost (timeout, dropped connection, 5xx) and `AdapterError` when the client order id
        was used before (409: the order is looked up)."""
        if not self.capabilities.trading:
            raise self._read_only("submit")
        account = intent.account or (self._accounts[0] if self._accounts else None)
        if account not in self._accounts:
            raise AdapterError(self.name, f"account {account!r} is not on connection "
                                          f"{self.name} (accounts: {', '.join(self._accounts)})")
        body: dict[str, Any] = {
            "account": account, "symbol": intent.symbol, "side": intent.side.value,
            "order_type": intent.order_type.value, "time_in_force": intent.time_in_force.value,
            "client_order_id": client_order_id}
        for name in _INTENT_FIELDS:
            value = getattr(intent, name)
            if value is not None:
                body[name] = str(value)
        try:
            status, data = await self._request("POST", "/orders", body=body)
        except _Failed as exc:
            raise SubmitUncertain(self.name, client_order_id, str(exc)) from exc
        if status >= 500:
            raise SubmitUncertain(self.name, client_order_id, self._error(status, data))
        if status == 409:  # an order with this client order id exists: lookup shows it
            raise AdapterError(self.name, self._error(status, data))
        if status not in (200, 201):  # refused before it was placed (429: pushback)
            return BrokerOrder(order_id="", client_order_id=client_order_id, account=account,
                               status=OrderStatus.REJECTED, reason=self._error(status, data))
        return self._broker_order(data["order"])

    async def cancel_async(self, order_id: str) -> BrokerOrder:
        """Cancel an open order of this connection; returns its state afterwards."""
        if not self.capabilities.trading:
            raise self._read_only("cancel")
        path = f"/orders/{quote(order_id, safe='')}"
        try:
            status, data = await self._request("DELETE", path, params=self._scope())
        except _Failed as exc:
            raise AdapterError(self.name, f"cancel of {order_id} failed: {exc}") from exc
        if status != 200:
            raise AdapterError(self.name, self._error(status, data))
        return self._broker_order(data["order"])

    async def lookup_async(self, client_order_id: str) -> BrokerOrder | None:
        """The order placed with `client_order_id` on this connection's accounts, or None
        when the broker says it has none."""
        if not self.capabilities.trading:
            raise self._read_only("lookup")
        path = f"/orders:by-client-id/{quote(client_order_id, safe='')}"
        try:
            status, data = await self._request("GET", path, params=self._scope())
        except _Failed as exc:
            raise AdapterError(self.name, f"lookup of {client_order_id} failed: {exc}") from exc
        if status == 404 and isinstance(data, dict) and "error" in data:  # the broker's "none"
            return None
        if status != 200:
            raise AdapterError(self.name, self._error(status, data))
        return self._broker_order(data["order"])

    # -- conversions ----------------------------------------------------------------------
    @staticmethod
    def _broker_order(o: Mapping[str, Any]) -> BrokerOrder:
        return BrokerOrder(order_id=o["order_id"], client_order_id=o["client_order_id"],
                           account=o["account"], status=OrderStatus(o["status"]),
                           filled_quantity=float(o["filled_quantity"]),
                           avg_fill_price=_float(o["avg_fill_price"]), reason=o["reason"],
                           submitted_at=_time(o["submitted_at"]), raw={"order": dict(o)})

    @staticmethod
    def _order_row(o: Mapping[str, Any]) -> dict[str, Any]:
        notional = o["notional"]
        return {**o, "quantity": None if notional is not None else o["quantity"],
                "submitted_at": _time(o["submitted_at"]), "updated_at": _time(o["updated_at"])}
