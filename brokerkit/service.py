"""The registry of connections: lifecycle, health, and consolidated views across institutions.

`get_brokerage_service()` returns the process-wide `BrokerageService`. It builds one adapter per
configured connection (or the embedded sandbox's demo connections when nothing is configured),
connects them concurrently, and answers:

- `get_status()`: `{'summary': {...}, 'connections': [{'name', 'institution', 'status', ...}]}`
  with total buying power in the base currency;
- `balances()`, `positions()`, `orders()`, `fills()`: canonical frames of every connection
  stacked, with base-currency columns added to balances and positions.

Consolidated buying power. Brokers' own figures are unlike (IBKR's `BuyingPower` is 4 x
AvailableFunds, intraday; Alpaca's is 2x overnight, or 4x intraday for a pattern day
trader), so adding them says nothing. Each account gets ONE figure by its type, in the base
currency (`buying_power_consolidated_base`, on the account's first row), and the summary's
`total_buying_power` adds those; each connection's native figure stays beside it
(`buying_power` in the frame, `buying_power_native` in the status entry):

- cash: settled cash available, the sum of `settled_cash` (floored at 0);
- Reg T margin: overnight buying power, 2 x excess equity = 2 x (equity - initial margin)
  (Reg T's 50% initial margin, 12 CFR 220.12; never the intraday 4x), floored at 0;
- portfolio margin: excess equity, equity - initial (risk-based) margin, floored at 0;
- crypto: cash available, as for a cash account (crypto settles at once).

The type is the adapter's `account_types` ("cash", "margin", "portfolio_margin"); a
connection trading crypto only is "crypto"; an account whose broker does not say is "margin"
when it reports an initial margin requirement, else "cash".

One slow or failing connection never blocks or hides the others: every call to a connection
has a timeout, and a connection that fails shows as `degraded` or `down` with its error. The
frames carry the connections that could not be read in `frame.attrs['errors']`, so a caller
can tell "no positions" from "could not ask" (reconciliation relies on it).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from . import frames, runtime
from .adapters import Adapter, Health, load_adapter_class
from .config import ConnectionConfig, Settings, load_settings
from .errors import AdapterError, ConnectionDown, UnknownConnection
from .fx import FxRates

if TYPE_CHECKING:
    import pandas as pd

    from .execution.sharedlimit import RateLimitStore

__all__ = ["BrokerageService", "get_brokerage_service", "reset_brokerage_service"]

log = logging.getLogger("brokerkit.service")
T = TypeVar("T")

#: Seconds a single call to one connection may take before it is reported as degraded.
CALL_TIMEOUT = 10.0
#: Latency above which a connection that answered is shown as degraded.
SLOW_MS = 3000.0
#: Seconds to wait before trying to reconnect a connection that is down.
RECONNECT_BACKOFF = (1.0, 2.0, 5.0, 15.0, 30.0)


@dataclass
class _Entry:
    config: ConnectionConfig
    adapter: Adapter | None
    health: Health
    institution: str
    failures: int = 0
    next_attempt: float = 0.0
    lock: asyncio.Lock | None = None
    #: the last submit fault or rate-limit pushback, until a submit is answered again: the
    #: connection shows degraded with it whatever its reads say
    trading_error: str | None = None
    #: the adapter's {account: type}, read once (None: not read yet)
    account_types: dict[str, str] | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def _describe(exc: BaseException) -> str:
    """An error as one line for a connection's health (without the connection's name)."""
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timed out"
    text = exc.message if isinstance(exc, AdapterError) else str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:297] + "..."


class BrokerageService(runtime.Bridged):
    """Every configured connection, its health, and consolidated frames."""

    def __init__(self, settings: Settings | None = None, *, call_timeout: float = CALL_TIMEOUT
                 ) -> None:
        from .profile import apply_profile

        self.settings = apply_profile(settings if settings is not None else load_settings())
        self.call_timeout = call_timeout
        self.base_currency = self.settings.base_currency
        #: True once `close()` was called (background work stops connecting)
        self.closed = False
        #: rate limits per broker credential, shared through the book with every process
        self.rate_limits: RateLimitStore | None = None
        if self.settings.book_url:
            from .execution.sharedlimit import RateLimitStore

            self.rate_limits = RateLimitStore(self.settings.book_url)
        self._entries: dict[str, _Entry] = {}
        for name, cfg in self.settings.connections.items():
            if cfg.enabled:
                self._entries[name] = self._make_entry(cfg)
        self.fx = FxRates(self.settings.fx_rates)
        self._unsubscribe: Callable[[], None] | None = None
        if any(e.config.secrets for e in self._entries.values()):
            from .secrets import get_secret_store

            self._unsubscribe = get_secret_store().on_rotate(self._on_secret_rotated)

    def __repr__(self) -> str:
        states = ", ".join(f"{n}={e.health.status}" for n, e in self._entries.items())
        return f"<BrokerageService base={self.base_currency} {states}>"

    # -- construction ---------------------------------------------------------------------
    def _make_entry(self, cfg: ConnectionConfig) -> _Entry:
        health = Health()
        try:
            cls = load_adapter_class(cfg.type)
        except ImportError as exc:
            missing = exc.name or ""
            health.status, health.last_error = "down", (
                f"connection type {cfg.type!r} is not available in this brokerkit version"
                if missing.startswith("brokerkit") else
                f"the SDK for type {cfg.type!r} is not installed ({missing}); "
                f"pip install 'brokerkit[{cfg.type}]'")
            return _Entry(cfg, None, health, cfg.institution or cfg.type)
        institution = cfg.institution or cls.institution or cfg.type
        try:
            adapter = cls(cfg, self._resolve_secrets(cfg))
        except Exception as exc:  # a bad option or a missing secret: shown, not raised
            health.status, health.last_error = "down", _describe(exc)
            return _Entry(cfg, None, health, institution)
        adapter.health = health
        adapter.rate_limits = self.rate_limits
        return _Entry(cfg, adapter, health, institution)

    def _resolve_secrets(self, cfg: ConnectionConfig) -> dict[str, Any]:
        """The connection's secrets by option: the profile's own first, then the store."""
        if not cfg.secrets:
            return {}
        own = self.settings.profile_secrets
        found = {opt: own[name] for opt, name in cfg.secrets.items() if name in own}
        rest = {opt: name for opt, name in cfg.secrets.items() if opt not in found}
        if rest:
            from .secrets import get_secret_store

            found.update(get_secret_store().resolve(rest))
        return found

    # -- access ---------------------------------------------------------------------------
    @property
    def connections(self) -> list[str]:
        return list(self._entries)

    def adapter(self, name: str) -> Adapter:
        """The adapter of connection `name` (raises if unknown or unavailable)."""
        entry = self._entries.get(name)
        if entry is None:
            raise UnknownConnection(name, self.connections)
        if entry.adapter is None:
            raise ConnectionDown(name, entry.health.last_error or "not available")
        return entry.adapter

    async def connected_adapter_async(self, name: str) -> Adapter:
        """The adapter of connection `name`, connecting it first if needed (raises
        `ConnectionDown` when it cannot)."""
        entry = self._entries.get(name)
        if entry is None:
            raise UnknownConnection(name, self.connections)
        return await self._ensure_connected(entry)

    def connected_adapter(self, name: str) -> Adapter:
        return runtime.run(self.connected_adapter_async(name))

    def health(self, name: str) -> Health:
        entry = self._entries.get(name)
        if entry is None:
            raise UnknownConnection(name, self.connections)
        return entry.health

    def institution(self, name: str) -> str:
        return self._entries[name].institution

    def note_trading(self, name: str, error: str | None) -> None:
        """What the connection's last submit met (the execution service tells it): `error`
        (a submit fault: a timeout, a dropped connection, a 5xx; or the broker's rate limit
        pushing back) marks a connected connection degraded with it, in `get_status()` too,
        until a later submit is answered (`error` None), which clears it."""
        entry = self._entries.get(name)
        if entry is None:
            return
        if error is None:
            if entry.trading_error is not None:
                entry.trading_error = None
                if entry.health.status == "degraded":
                    self._mark(entry, "connected")
            return
        entry.trading_error = error
        if entry.health.status in ("connected", "degraded"):
            self._mark(entry, "degraded", error=error)

    # -- lifecycle ------------------------------------------------------------------------
    async def _ensure_connected(self, entry: _Entry) -> Adapter:
        if entry.adapter is None:
            raise ConnectionDown(entry.config.name, entry.health.last_error or "not available")
        if entry.health.status in ("connected", "degraded"):
            return entry.adapter
        if entry.lock is None:
            entry.lock = asyncio.Lock()
        async with entry.lock:
            if entry.health.status in ("connected", "degraded"):
                return entry.adapter
            if time.monotonic() < entry.next_attempt:
                raise ConnectionDown(entry.config.name, entry.health.last_error or "down")
            t0 = time.perf_counter()
            try:
                await asyncio.wait_for(entry.adapter.connect_async(), self.call_timeout)
            except Exception as exc:
                why = _describe(exc)
                why = why if why.startswith("connect failed") else f"connect failed: {why}"
                self._mark(entry, "down", error=why)
                delay = RECONNECT_BACKOFF[min(entry.failures, len(RECONNECT_BACKOFF) - 1)]
                entry.failures += 1
                entry.next_attempt = time.monotonic() + delay
                log.warning("connection %s is down: %s", entry.config.name,
                            entry.health.last_error)
                raise ConnectionDown(entry.config.name, why) from exc
            entry.failures = 0
            self._mark(entry, "connected", latency_ms=(time.perf_counter() - t0) * 1000)
            return entry.adapter

    def _mark(self, entry: _Entry, status: str, *, latency_ms: float | None = None,
              error: str | None = None) -> None:
        h = entry.health
        if status == "connected" and entry.trading_error is not None:
            status, error = "degraded", entry.trading_error  # reads work, orders do not
        h.status = status
        if latency_ms is not None:
            h.latency_ms = round(latency_ms, 2)
        if error is not None:
            h.last_error = error
        h.checked_at = _now()

    async def connect_async(self) -> dict[str, str]:
        """Connect every connection concurrently; returns name → status. Never raises."""
        self.closed = False
        await asyncio.gather(*(self._try_connect(e) for e in self._entries.values()))
        return {n: e.health.status for n, e in self._entries.items()}

    async def _try_connect(self, entry: _Entry) -> None:
        try:
            await self._ensure_connected(entry)
        except ConnectionDown:
            pass

    def connect(self) -> dict[str, str]:
        return runtime.run(self.connect_async())

    async def reconnect_async(self, name: str) -> str:
        """Close and reconnect one connection (after a secret rotation, or by hand)."""
        entry = self._entries.get(name)
        if entry is None:
            raise UnknownConnection(name, self.connections)
        if entry.adapter is not None:
            try:
                await asyncio.wait_for(entry.adapter.close_async(), self.call_timeout)
            except Exception as exc:
                log.warning("closing %s failed: %s", name, _describe(exc))
        fresh = self._make_entry(entry.config)
        self._entries[name] = fresh
        await self._try_connect(fresh)
        return fresh.health.status

    def reconnect(self, name: str) -> str:
        return runtime.run(self.reconnect_async(name))

    def _on_secret_rotated(self, secret_name: str) -> None:
        users = [n for n, e in self._entries.items() if secret_name in e.config.secrets.values()]
        for name in users:
            log.info("secret %s rotated: reconnecting %s", secret_name, name)
            runtime.spawn(self.reconnect_async(name))

    async def close_async(self) -> None:
        async def _close(e: _Entry) -> None:
            if e.adapter is not None and e.health.status != "disconnected":
                try:
                    await asyncio.wait_for(e.adapter.close_async(), self.call_timeout)
                finally:
                    e.health.status = "disconnected"

        self.closed = True
        await asyncio.gather(*(_close(e) for e in self._entries.values()),
                             return_exceptions=True)
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def close(self) -> None:
        runtime.run(self.close_async())

    # -- calls to every connection --------------------------------------------------------
    async def _call(self, entry: _Entry, fn: Callable[[Adapter], Awaitable[T]]) -> T:
        """One call to one connection with a timeout, recording health and latency."""
        adapter = await self._ensure_connected(entry)
        t0 = time.perf_counter()
        try:
            result = await asyncio.wait_for(fn(adapter), self.call_timeout)
        except ConnectionDown as exc:
            self._mark(entry, "down", error=_describe(exc))
            raise
        except Exception as exc:
            self._mark(entry, "degraded", error=_describe(exc),
                       latency_ms=(time.perf_counter() - t0) * 1000)
            raise
        ms = (time.perf_counter() - t0) * 1000
        if ms > SLOW_MS:
            self._mark(entry, "degraded", latency_ms=ms, error=f"slow: {ms:.0f} ms")
        else:
            self._mark(entry, "connected", latency_ms=ms)
        return result

    async def _gather(self, fn: Callable[[Adapter], Awaitable[pd.DataFrame]],
                      schema: frames.Schema) -> tuple[pd.DataFrame, dict[str, str]]:
        entries = list(self._entries.values())
        results = await asyncio.gather(*(self._call(e, fn) for e in entries),
                                       return_exceptions=True)
        parts: list[pd.DataFrame] = []
        errors: dict[str, str] = {}
        for entry, res in zip(entries, results, strict=True):
            if isinstance(res, BaseException):
                if not isinstance(res, Exception):
                    raise res
                errors[entry.config.name] = _describe(res)
            else:
                parts.append(res)
        df = frames.concat(schema, parts)
        df.attrs["errors"] = errors
        return df, errors

    # -- consolidated frames --------------------------------------------------------------
    async def balances_async(self) -> pd.DataFrame:
        """Balances of every account, one row per account and currency, with
        `cash_base`, `buying_power_base` and `equity_base` in the base currency, the
        `account_type` and the account's consolidated buying power
        (`buying_power_consolidated_base`, see the module docstring)."""
        (df, errors), types = await asyncio.gather(
            self._gather(lambda a: a.balances_async(), frames.BALANCES), self._all_types())
        df = self._with_base(df, ("cash", "buying_power", "equity"))
        df = self._consolidated(df, types)
        df.attrs["errors"] = errors
        return df

    async def _types(self, entry: _Entry) -> dict[str, str]:
        """The connection's {account: type}, kept once the broker says; {} until then."""
        if entry.account_types is None:
            adapter = entry.adapter
            caps = adapter.capabilities.asset_classes if adapter is not None else frozenset()
            if caps and all(c.value == "crypto" for c in caps):
                entry.account_types = {a: "crypto" for a in (adapter.accounts if adapter
                                                             else [])} or {"*": "crypto"}
            else:
                try:
                    got = await self._call(entry, lambda a: a.account_types_async())
                except Exception:
                    return {}
                if not got:
                    return {}  # not said yet (asked again next time)
                entry.account_types = dict(got)
        return entry.account_types

    async def _all_types(self) -> dict[str, dict[str, str]]:
        """{connection: {account: type}} of every connection, asked concurrently."""
        entries = list(self._entries.values())
        got = await asyncio.gather(*(self._types(e) for e in entries))
        return {e.config.name: t for e, t in zip(entries, got, strict=True)}

    def _consolidated(self, df: pd.DataFrame, types: dict[str, dict[str, str]]
                      ) -> pd.DataFrame:
        """`account_type` and `buying_power_consolidated_base` per account (see the module
        docstring): the account's one figure on its first row, 0.0 on its others."""
        import pandas as pd

        df = df.copy()
        df["account_type"] = pd.Series(dtype=object, index=df.index)
        df["buying_power_consolidated_base"] = 0.0
        if df.empty:
            return df
        to_base = self.fx.to_base
        settled = to_base(df["settled_cash"].fillna(0.0), df["currency"], self.base_currency)
        init = to_base(df["margin_init"], df["currency"], self.base_currency)
        for (conn, acct), idx in df.groupby(["connection", "account"], sort=False).groups.items():
            given = types.get(conn, {})
            kind = given.get(acct) or given.get("*")
            if kind is None:
                kind = "margin" if (init[idx].fillna(0.0) > 0).any() else "cash"
            if kind in ("cash", "crypto"):
                figure = float(settled[idx].sum())
            else:
                excess = float(df.loc[idx, "equity_base"].fillna(0.0).sum()
                               - init[idx].fillna(0.0).sum())
                figure = excess if kind == "portfolio_margin" else 2 * excess
            df.loc[idx, "account_type"] = kind
            df.loc[idx[0], "buying_power_consolidated_base"] = max(0.0, figure)
        return df

    async def positions_async(self) -> pd.DataFrame:
        """Positions across every connection, with `market_value_base`."""
        df, errors = await self._gather(lambda a: a.positions_async(), frames.POSITIONS)
        df = self._with_base(df, ("market_value", "unrealized_pnl"))
        df.attrs["errors"] = errors
        return df

    async def orders_async(self) -> pd.DataFrame:
        df, _ = await self._gather(lambda a: a.orders_async(), frames.ORDERS)
        return df

    async def fills_async(self) -> pd.DataFrame:
        df, _ = await self._gather(lambda a: a.fills_async(), frames.FILLS)
        return df

    def balances(self) -> pd.DataFrame:
        return runtime.run(self.balances_async())

    def positions(self) -> pd.DataFrame:
        return runtime.run(self.positions_async())

    def orders(self) -> pd.DataFrame:
        return runtime.run(self.orders_async())

    def fills(self) -> pd.DataFrame:
        return runtime.run(self.fills_async())

    def _with_base(self, df: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
        df = df.copy()
        for col in columns:
            df[f"{col}_base"] = self.fx.to_base(df[col], df["currency"], self.base_currency)
        df["base_currency"] = self.base_currency
        return df

    # -- status ---------------------------------------------------------------------------
    async def get_status_async(self) -> dict[str, Any]:
        """Consolidated status: a summary with total buying power in the base currency (the
        sum of the accounts' consolidated figures, see the module docstring) and connection
        counts, and one entry per connection with its health, its consolidated
        `buying_power`, its own `buying_power_native` and its `account_types`."""
        entries = list(self._entries.values())
        results, all_types = await asyncio.gather(
            asyncio.gather(*(self._call(e, lambda a: a.balances_async()) for e in entries),
                           return_exceptions=True), self._all_types())
        rows: list[dict[str, Any]] = []
        total = 0.0
        for entry, res in zip(entries, results, strict=True):
            if isinstance(res, BaseException) and not isinstance(res, Exception):
                raise res
            bp: float | None = None
            native: float | None = None
            types: dict[str, str] = {}
            accounts = entry.adapter.accounts if entry.adapter is not None else []
            if not isinstance(res, BaseException):
                try:
                    native = float(self.fx.to_base(res["buying_power"], res["currency"],
                                                   self.base_currency).sum())
                    one = self._consolidated(self._with_base(res, ("equity",)), all_types)
                    bp = float(one["buying_power_consolidated_base"].sum())
                    types = {str(a): str(t) for a, t in
                             zip(one["account"], one["account_type"], strict=True)}
                except Exception as exc:  # a missing FX rate: show it on the connection
                    self._mark(entry, "degraded", error=_describe(exc))
                accounts = sorted(set(res["account"])) or accounts
                total += bp or 0.0
            h = entry.health
            rows.append({
                "name": entry.config.name,
                "institution": entry.institution,
                "type": entry.config.type,
                "status": h.status,
                "latency_ms": h.latency_ms,
                "accounts": list(accounts),
                "buying_power": None if bp is None else round(bp, 2),
                "buying_power_native": None if native is None else round(native, 2),
                "account_types": types,
                "currency": self.base_currency,
                "trading": bool(entry.adapter is not None
                                and entry.adapter.capabilities.trading
                                and not entry.config.read_only),
                "last_error": h.last_error if h.status != "connected" else None,
                "checked_at": h.checked_at.isoformat() if h.checked_at else None,
            })
        counts = {s: sum(r["status"] == s for r in rows)
                  for s in ("connected", "degraded", "down")}
        summary = {
            "base_currency": self.base_currency,
            "total_buying_power": round(total, 2),
            "connections": len(rows),
            **counts,
            "embedded_sandbox": self.settings.embedded,
            "as_of": _now().isoformat(),
        }
        return {"summary": summary, "connections": rows}

    def get_status(self) -> dict[str, Any]:
        return runtime.run(self.get_status_async())


_service: BrokerageService | None = None
_service_lock = threading.Lock()


def get_brokerage_service(settings: Settings | None = None) -> BrokerageService:
    """The process-wide `BrokerageService`, built on first call from configuration.

    Connections connect lazily on first use; `get_status()` shows each one's health.
    """
    global _service
    with _service_lock:
        if _service is None:
            _service = BrokerageService(settings)
        return _service


def reset_brokerage_service() -> None:
    """Close and forget the process-wide service (tests, or after changing configuration)."""
    global _service
    with _service_lock:
        svc, _service = _service, None
    if svc is not None and not runtime.in_runtime():
        try:
            svc.close()
        except Exception as exc:  # closing must not hide the reset
            log.warning("closing the brokerage service failed: %s", _describe(exc))
