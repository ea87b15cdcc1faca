"""Shared fixtures of the reliability suite (R1-R6, issue 16). Each test is bounded in count
and time and prints its figures (`figures`), so a regression reads at a glance in CI's log.

R1-R3 (execution under faults, crashes and halts): `servers` runs every sandbox server in this
process on real loopback sockets (paper, Alpaca, TWS), `trading` describes the three trading
connections to them (as `ConnectionConfig`s for an in-process service, as a `brokerkit.toml`
table for another process) and `broker_of` is the sandbox broker behind each one, whose own
records (orders, fills) the tests compare with the book.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from brokerkit.config import ConnectionConfig
from brokerkit.sandbox import PaperBroker, Sandbox
from brokerkit.sandbox.market import Fill, Order
from brokerkit.secrets import EnvStore

#: The connection types with a sandbox server (tests parametrize over the same three), and
#: the sandbox broker behind each.
TRADING = ("paper", "alpaca", "ibkr")
_BROKER = {"paper": "paper", "alpaca": "alpaca", "ibkr": "ibkr"}
_ACCOUNT = {"paper": "DEMO-MARGIN-1"}
_SECRETS = {"api_key": "rel_alpaca_key", "secret_key": "rel_alpaca_secret"}


def _figures(test: str, **values: Any) -> str:
    line = f"{test}: " + " ".join(f"{k}={v}" for k, v in values.items())
    print(line, flush=True)
    return line


def _wait_until(check: Callable[[], bool], timeout: float, what: str,
                every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} (after {timeout:g} s)"
        time.sleep(every)


@pytest.fixture
def figures() -> Callable[..., str]:
    """`figures("R3 paper", tried=60, failed=0, ...)` prints one line of a test's figures
    (shown by pytest's `-rA`/`-s`, and in the report of a failed test); returns it."""
    return _figures


@pytest.fixture
def wait_until() -> Callable[..., None]:
    """`wait_until(check, timeout, what)` polls `check` until it holds, failing with `what`
    after `timeout` seconds (a ceiling, generous on a busy machine; never a fixed sleep)."""
    return _wait_until


@dataclass(frozen=True)
class Trading:
    """The trading connections to `servers`: one per type in TRADING, named after it."""

    servers: dict[str, dict[str, Any]]
    #: risk settings that let a burst through: the suite tests the submit, not the limits
    risk = {"duplicate_window_seconds": 0, "max_orders_per_second": 10_000}

    def options(self, kind: str, **extra: Any) -> dict[str, Any]:
        s = self.servers
        base: dict[str, Any] = {
            "paper": {"url": s["paper"]["url"], "broker": _BROKER["paper"]},
            "alpaca": {"url": s["alpaca"]["url"], "rate_limit": False},
            "ibkr": {"host": s["tws"]["host"], "port": s["tws"]["port"]},
        }[kind]
        return {**base, **extra}

    def config(self, kind: str, **extra: Any) -> ConnectionConfig:
        """The `ConnectionConfig` of connection `kind` (`extra`: more options)."""
        accounts = (_ACCOUNT[kind],) if kind in _ACCOUNT else ()
        return ConnectionConfig(kind, kind, options=self.options(kind, **extra),
                                accounts=accounts,
                                secrets=_SECRETS if kind == "alpaca" else {})

    def toml(self, kinds: tuple[str, ...] = TRADING, extra: str = "") -> str:
        """A `brokerkit.toml` with one table per connection of `kinds`, then `extra`."""
        out = []
        for kind in kinds:
            opts = ", ".join(f"{k} = {_toml(v)}" for k, v in self.options(kind).items())
            out.append(f"[connections.{kind}]\ntype = \"{kind}\"\noptions = {{ {opts} }}")
            if kind in _ACCOUNT:
                out.append(f"accounts = [\"{_ACCOUNT[kind]}\"]")
            if kind == "alpaca":
                out.append("secrets = { " + ", ".join(f'{k} = "{v}"' for k, v in
                                                     _SECRETS.items()) + " }")
        return "\n".join([*out, extra, ""])

    def env(self) -> dict[str, str]:
        """The environment variables that hold the Alpaca server's demo keys."""
        creds = self.servers["alpaca"]["credentials"]
        return {EnvStore.variable(_SECRETS["api_key"]): creds["key_id"],
                EnvStore.variable(_SECRETS["secret_key"]): creds["secret_key"]}


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


@pytest.fixture
def servers(fresh_sandbox: Sandbox) -> Iterator[dict[str, dict[str, Any]]]:
    """Every server of `fresh_sandbox`, in this process on loopback sockets (Alpaca's
    request limit off: the suite injects its own 429s)."""
    yield fresh_sandbox.start_servers(alpaca_rate_limit=None)
    fresh_sandbox.stop_servers()


@pytest.fixture
def trading(servers: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> Trading:
    """The trading connections to `servers`; the Alpaca keys are in this process's
    environment (and in `trading.env()` for other processes)."""
    t = Trading(servers)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for var, value in t.env().items():
        monkeypatch.setenv(var, value)
    return t


@dataclass(frozen=True)
class Records:
    """What the sandbox broker behind one connection holds, by the client order id brokerkit
    sent: Alpaca and the paper broker keep it as the order's client order id, TWS in the
    order's `orderRef` (its paper broker sees `TWS-<permId>`)."""

    broker: PaperBroker
    tws: Any = None  # the TWS state over `broker` (ibkr), else None

    def _coid(self, paper_coid: str) -> str:
        if self.tws is None or not paper_coid.startswith("TWS-"):
            return paper_coid
        perm = int(paper_coid.split("-")[1])
        return self.tws.orders[perm].order_ref

    def orders(self) -> list[tuple[str, Order]]:
        """Every order at the broker, oldest first, with brokerkit's client order id."""
        return [(self._coid(o.client_order_id), o) for o in self.broker.orders()]

    def fills(self) -> list[tuple[str, Fill]]:
        """Every fill at the broker with its order's client order id (brokerkit's)."""
        return [(self._coid(f.client_order_id), f) for f in self.broker.fills()]

    def find(self, coid: str) -> Order | None:
        return next((o for c, o in self.orders() if c == coid), None)


@pytest.fixture
def broker_of(fresh_sandbox: Sandbox) -> Callable[[str], PaperBroker]:
    """`broker_of(kind)`: the sandbox broker behind connection type `kind` (its `faults`)."""
    return lambda kind: fresh_sandbox.broker(_BROKER[kind])


@pytest.fixture
def records_of(fresh_sandbox: Sandbox) -> Callable[[str], Records]:
    """`records_of(kind)`: the orders and fills of the broker behind connection type `kind`,
    by brokerkit's client order id."""
    from brokerkit.sandbox.tws.state import tws_broker

    def records(kind: str) -> Records:
        broker = fresh_sandbox.broker(_BROKER[kind])
        return Records(broker, tws_broker(fresh_sandbox, _BROKER[kind])
                       if kind == "ibkr" else None)

    return records


@pytest.fixture
def process_env(trading: Trading) -> Callable[..., dict[str, str]]:
    """`process_env(config_path, book_url)`: the environment of another process using
    `config_path` and the book at `book_url`."""
    def env(config: os.PathLike[str] | str, book_url: str) -> dict[str, str]:
        return {**os.environ, **trading.env(), "BROKERKIT_CONFIG": str(config),
                "BROKERKIT_DATABASE_URL": book_url, "NO_PROXY": "127.0.0.1,localhost"}

    return env
