"""The kill switch across real processes: a sandbox in one process, resting orders placed by a
second that exits, and `brokerkit halt` / `reduce-only` run in a third, fresh process, on
SQLite and PostgreSQL books. What was cancelled is checked at the broker through the broker's
own SDK (alpaca-py, ib_async) or API (the paper broker's REST API), never through brokerkit.

Each connection type is one entry of `BROKERS`: its `brokerkit.toml` table, how another tool
places resting orders there, and how the broker lists its open orders.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from brokerkit.cli import EXIT_INCOMPLETE  # 3: HALTED, but something may still be open

BIN = [sys.executable, "-m", "brokerkit.cli"]
KEY_ENV = {"BROKERKIT_SECRET_KS_ALPACA_KEY": "api_key",
           "BROKERKIT_SECRET_KS_ALPACA_SECRET": "secret_key"}


# -- the brokers ------------------------------------------------------------------------------


def _script(code: str, *args: Any, timeout: float = 120) -> Any:
    """Run `code` in a fresh Python process (`sys.argv[1:]` = args as JSON) and return the
    JSON it prints last."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code),
                          *(json.dumps(a) for a in args)],
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


_ALPACA_PLACE = """
    import json, sys
    from concurrent.futures import ThreadPoolExecutor
    from alpaca.trading.client import TradingClient
    from alpaca.trading.requests import LimitOrderRequest
    srv, n, side = (json.loads(a) for a in sys.argv[1:])
    creds = srv["credentials"]

    def place(chunk):
        c = TradingClient(creds["key_id"], creds["secret_key"], paper=True,
                          url_override=srv["url"])
        req = dict(symbol="AAPL", qty=1, side=side, time_in_force="day",
                   limit_price=1.0 if side == "buy" else 100000.0)
        return [str(c.submit_order(LimitOrderRequest(**req)).id) for _ in range(chunk)]

    chunks = [n // 8 + (i < n % 8) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:  # in submission order within each chunk
        ids = [i for part in pool.map(place, [c for c in chunks if c]) for i in part]
    print(json.dumps(ids))
"""

_ALPACA_OPEN = """
    import json, sys
    from alpaca.trading.client import TradingClient
    from alpaca.trading.enums import QueryOrderStatus
    from alpaca.trading.requests import GetOrdersRequest
    srv, = (json.loads(a) for a in sys.argv[1:])
    creds = srv["credentials"]
    c = TradingClient(creds["key_id"], creds["secret_key"], paper=True, url_override=srv["url"])
    got = c.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=500))
    print(json.dumps([str(o.id) for o in got]))
"""

# client id 77: not the one brokerkit picks, so the halt meets another client's orders
_IBKR_PLACE = """
    import json, sys
    from ib_async import IB, LimitOrder, Stock
    srv, n, side = (json.loads(a) for a in sys.argv[1:])
    ib = IB()
    ib.connect(srv["host"], srv["port"], clientId=77, timeout=10)
    price = 1.0 if side == "buy" else 100000.0
    trades = [ib.placeOrder(Stock("AAPL", "SMART", "USD"),
                            LimitOrder(side.upper(), 1, price, tif="DAY")) for _ in range(n)]
    for _ in range(100):
        if all(t.order.permId and t.orderStatus.status == "Submitted" for t in trades):
            break
        ib.sleep(0.1)
    assert all(t.orderStatus.status == "Submitted" for t in trades), [t.log for t in trades]
    print(json.dumps([str(t.order.permId) for t in trades]))
    ib.disconnect()
"""

_IBKR_OPEN = """
    import json, sys
    from ib_async import IB
    srv, = (json.loads(a) for a in sys.argv[1:])
    ib = IB()
    ib.connect(srv["host"], srv["port"], clientId=78, timeout=10)
    trades = ib.reqAllOpenOrders()
    print(json.dumps([str(t.order.permId) for t in trades if not t.isDone()]))
    ib.disconnect()
"""


# the paper broker's own REST API, spoken by a plain HTTP client (another tool, not brokerkit)
_PAPER_PLACE = """
    import json, sys, urllib.request, uuid
    srv, n, side = (json.loads(a) for a in sys.argv[1:])
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    ids = []
    for _ in range(n):
        body = {"account": "DEMO-MARGIN-1", "symbol": "AAPL", "side": side, "quantity": "1",
                "order_type": "limit", "time_in_force": "day",
                "limit_price": "1" if side == "buy" else "100000",
                "client_order_id": f"other-tool-{uuid.uuid4().hex[:12]}"}
        req = urllib.request.Request(srv["url"] + "/v1/brokers/paper/orders",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with opener.open(req, timeout=10) as resp:
            order = json.load(resp)["order"]
        assert order["status"] == "ACCEPTED", order
        ids.append(order["order_id"])
    print(json.dumps(ids))
"""

_PAPER_OPEN = """
    import json, sys, urllib.request
    srv, = (json.loads(a) for a in sys.argv[1:])
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    ids, after = [], ""
    while True:
        url = srv["url"] + "/v1/brokers/paper/orders?status=open&limit=1000" + after
        with opener.open(url, timeout=10) as resp:
            page = json.load(resp)
        ids += [o["order_id"] for o in page["orders"]]
        if not page["next"]:
            break
        after = "&after=" + page["next"]
    print(json.dumps(ids))
"""


@dataclass(frozen=True)
class Broker:
    """One connection type under test, driven through its own SDK."""

    server: str  # the sandbox server's name in `brokerkit sandbox --json`
    table: Callable[[dict[str, Any]], str]  # the connection's options and secrets (TOML)
    place_code: str  # places N resting limit orders (side buy|sell), prints their ids
    open_code: str  # prints the ids of the broker's open orders

    def place(self, srv: dict[str, Any], n: int, side: str = "buy") -> list[str]:
        return _script(self.place_code, srv, n, side)

    def open_ids(self, srv: dict[str, Any]) -> set[str]:
        return set(_script(self.open_code, srv))


BROKERS: dict[str, Broker] = {
    "alpaca": Broker("alpaca", lambda s: (
        f'options = {{ url = "{s["url"]}", rate_limit = false, request_limit = false }}\n'
        f'secrets = {{ api_key = "ks_alpaca_key", secret_key = "ks_alpaca_secret" }}'),
        _ALPACA_PLACE, _ALPACA_OPEN),
    "ibkr": Broker("tws", lambda s: f'options = {{ host = "{s["host"]}", port = {s["port"]} }}',
                   _IBKR_PLACE, _IBKR_OPEN),
    "paper": Broker("paper", lambda s: f'options = {{ url = "{s["url"]}" }}',
                    _PAPER_PLACE, _PAPER_OPEN),
}


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def servers() -> Iterator[dict[str, Any]]:
    """`brokerkit sandbox --json` in its own process: its servers (addresses, demo keys)."""
    proc = subprocess.Popen([*BIN, "sandbox", "--json", "--alpaca-rate-limit", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line, proc.stderr.read() if proc.stderr else "no output"
        yield json.loads(line)["servers"]
    finally:
        proc.terminate()
        proc.wait(20)


def _configure(tmp_path: Path, servers: dict[str, Any], book_url: str,
               extra: str = "") -> dict[str, str]:
    """A brokerkit.toml with one connection per entry of BROKERS pointing at the sandbox; the
    environment a fresh process needs to use it and the book."""
    tables = [f'[connections.{t}]\ntype = "{t}"\n{b.table(servers[b.server])}\n'
              for t, b in BROKERS.items()]
    cfg = tmp_path / "brokerkit.toml"
    cfg.write_text("\n".join([*tables, extra]))
    creds = servers["alpaca"]["credentials"]
    values = {"api_key": creds["key_id"], "secret_key": creds["secret_key"]}
    return {**os.environ, "BROKERKIT_CONFIG": str(cfg), "BROKERKIT_DATABASE_URL": book_url,
            **{var: values[key] for var, key in KEY_ENV.items()}}


def _brokerkit(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any], str]:
    out = subprocess.run([*BIN, *args], capture_output=True, text=True, env=env, timeout=180)
    lines = out.stdout.strip().splitlines()
    assert lines, out.stderr[-3000:]
    return out.returncode, json.loads(lines[-1]), out.stderr


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["connection"]: c for c in report["connections"]}


# -- halt ---------------------------------------------------------------------------------------


def test_halt_from_a_fresh_process_cancels_every_resting_order_placed_by_another(
        tmp_path, servers, book_url):
    env = _configure(tmp_path, servers, book_url)
    placed = {t: b.place(servers[b.server], 3) for t, b in BROKERS.items()}
    for t, b in BROKERS.items():
        assert set(placed[t]) <= b.open_ids(servers[b.server]), t

    rc, report, err = _brokerkit(env, "halt", "--reason", "x", "--json")

    assert rc == 0, (report, err)
    assert report["state"] == "HALTED" and report["complete"] is True
    conns = _by_name(report)
    for t, b in BROKERS.items():
        assert conns[t]["error"] is None and conns[t]["failed"] == {}, conns[t]
        assert set(placed[t]) <= {o["order_id"] for o in conns[t]["canceled"]}, t
        assert not set(placed[t]) & b.open_ids(servers[b.server]), t
    rc, state, _ = _brokerkit(env, "state", "--json")
    assert state["state"] == "HALTED" and state["reason"] == "x"


def test_halt_with_a_connection_unreachable_exits_3_halted_and_names_it(
        tmp_path, servers, book_url):
    down = f'[connections.ibkr-down]\ntype = "ibkr"\n' \
           f'options = {{ host = "127.0.0.1", port = {_closed_port()} }}\n'
    env = _configure(tmp_path, servers, book_url, extra=down)
    placed = {t: b.place(servers[b.server], 2) for t, b in BROKERS.items()}

    rc, report, err = _brokerkit(env, "halt", "--reason", "x", "--json")

    assert rc == EXIT_INCOMPLETE, (report, err)
    assert report["state"] == "HALTED" and report["complete"] is False
    conns = _by_name(report)
    assert conns["ibkr-down"]["error"] and conns["ibkr-down"]["complete"] is False
    for t, b in BROKERS.items():  # the reachable ones are cancelled all the same
        assert conns[t]["complete"] is True, conns[t]
        assert not set(placed[t]) & b.open_ids(servers[b.server]), t
    out = subprocess.run([*BIN, "halt", "--reason", "again"], capture_output=True, text=True,
                         env=env, timeout=180)
    assert out.returncode == EXIT_INCOMPLETE
    assert any(line.startswith("! ibkr-down:") for line in out.stdout.splitlines()), out.stdout


def test_halt_cancels_alpaca_open_orders_beyond_the_latest_500(tmp_path, servers):
    env = _configure(tmp_path, servers, f"sqlite:///{tmp_path / 'book.db'}")
    alpaca = BROKERS["alpaca"]
    oldest = alpaca.place(servers["alpaca"], 3)
    newer = alpaca.place(servers["alpaca"], 500)
    listed = alpaca.open_ids(servers["alpaca"])  # one page: the newest 500
    assert not set(oldest) & listed and len(listed) == 500

    rc, report, err = _brokerkit(env, "halt", "--reason", "x", "--json")

    assert rc == 0, (report, err)
    cancelled = {o["order_id"] for o in _by_name(report)["alpaca"]["canceled"]}
    assert set(oldest) | set(newer) <= cancelled
    assert alpaca.open_ids(servers["alpaca"]) == set()


# -- reduce-only ----------------------------------------------------------------------------------


def test_reduce_only_cancels_orders_that_grow_a_position_and_keeps_reducing_ones(
        tmp_path, servers, book_url):
    env = _configure(tmp_path, servers, book_url)
    alpaca = BROKERS["alpaca"]
    srv = servers["alpaca"]
    held = _script("""
        import json, sys
        from alpaca.trading.client import TradingClient
        srv, = (json.loads(a) for a in sys.argv[1:])
        c = TradingClient(srv["credentials"]["key_id"], srv["credentials"]["secret_key"],
                          paper=True, url_override=srv["url"])
        print(json.dumps(float(c.get_open_position("AAPL").qty)))
    """, srv)
    assert held >= 1, "the sandbox's Alpaca account opens with a long AAPL position"
    buys = alpaca.place(srv, 2, "buy")  # would add to the long position
    sell = alpaca.place(srv, 1, "sell")  # 1 of a long position: reduces it

    rc, report, err = _brokerkit(env, "reduce-only", "--reason", "de-risk", "--json")

    assert rc == 0, (report, err)
    assert report["state"] == "REDUCING"
    conn = _by_name(report)["alpaca"]
    assert {o["order_id"] for o in conn["canceled"]} == set(buys)
    assert conn["kept"] == sell
    assert alpaca.open_ids(srv) == set(sell)
