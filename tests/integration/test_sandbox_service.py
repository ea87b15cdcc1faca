"""The sandbox as one local service per user, driven as users drive it: several real processes
(scripts, the CLI) with nothing configured, sharing one sandbox and one book."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from brokerkit.sandbox import service

BIN = [sys.executable, "-m", "brokerkit.cli"]


def home() -> Path:
    return Path(os.environ["BROKERKIT_DATA_DIR"]) / "sandbox"


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BIN, *args], capture_output=True, text=True, timeout=timeout)


def script(code: str, timeout: float = 90) -> str:
    """Run `code` in a fresh Python process (nothing configured); returns its stdout."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


PLACE = """
    from brokerkit import get_execution_service
    r = get_execution_service().place_order({"symbol": "%s", "side": "buy", "quantity": %s,
                                              "order_type": "%s", "limit_price": %s})
    print(r["status"], r["order_id"], r.client_order_id)
"""


def place(symbol: str, qty: int, order_type: str = "market", limit: float | None = None
          ) -> list[str]:
    return script(PLACE % (symbol, qty, order_type, limit)).split()


def test_two_processes_starting_the_sandbox_at_once_share_one():
    with ThreadPoolExecutor(3) as pool:
        outs = list(pool.map(lambda _: cli("sandbox", "start", "--json"), range(3)))
    assert all(o.returncode == 0 for o in outs), [o.stderr for o in outs]
    pids = {json.loads(o.stdout)["pid"] for o in outs}
    assert len(pids) == 1
    assert service.running(home())["pid"] == pids.pop()


def test_an_order_from_one_process_is_seen_at_the_broker_and_in_the_book_from_another():
    status, order_id, coid = place("NVDA", 7)
    assert status == "FILLED"
    out = script(f"""
        from brokerkit import get_brokerage_service, get_execution_service
        orders = get_brokerage_service().connected_adapter("paper-us").orders()
        print(sorted(orders.loc[orders.order_id == "{order_id}", "status"]))
        row = get_execution_service().book.get_order("{coid}")
        print(row["status"], row["broker_order_id"])
    """)
    broker_line, book_line = out.splitlines()[-2:]
    assert broker_line == "['FILLED']"
    assert book_line == f"FILLED {order_id}"


def test_the_sandbox_outlives_the_process_that_started_it_and_a_restart_keeps_its_orders():
    _, order_id, _ = place("AAPL", 1, "limit", 1.0)  # rests: far under the market
    first = service.running(home())
    assert first is not None  # the script that started it has exited; the sandbox has not
    assert cli("sandbox", "stop").returncode == 0
    assert service.running(home()) is None
    out = script(f"""
        from brokerkit import get_brokerage_service
        orders = get_brokerage_service().connected_adapter("paper-us").orders()
        print(list(orders.loc[orders.order_id == "{order_id}", "status"]))
    """)
    assert out.splitlines()[-1] == "['ACCEPTED']"
    assert service.running(home())["pid"] != first["pid"]  # a new process, the same broker


def test_reset_forgets_orders_and_fills():
    assert place("MSFT", 2)[0] == "FILLED"
    reset = cli("sandbox", "reset", "--json")
    assert reset.returncode == 0 and json.loads(reset.stdout)["was_running"] is True
    out = script("""
        from brokerkit import get_brokerage_service
        print(len(get_brokerage_service().connected_adapter("paper-us").orders()))
    """)
    assert out.splitlines()[-1] == "0"


def test_a_sandbox_killed_without_warning_is_replaced_on_next_use():
    info = service.ensure_running(home())
    os.kill(info["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while service.running(home()) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert service.running(home()) is None  # the stale run file proves nothing
    again = service.ensure_running(home())
    assert again["pid"] != info["pid"]


def test_status_json_says_not_running_and_stop_is_harmless_when_none_runs():
    st = cli("sandbox", "status", "--json")
    assert st.returncode == 0 and json.loads(st.stdout)["running"] is False
    assert cli("sandbox", "stop").returncode == 0


def test_a_second_foreground_sandbox_of_the_same_home_is_refused_naming_the_first():
    info = service.ensure_running(home())
    second = cli("sandbox", "--json", timeout=30)
    assert second.returncode != 0
    assert f"pid {info['pid']}" in second.stderr and "brokerkit sandbox stop" in second.stderr


def free_port_run(n: int) -> int:
    """A port p such that p .. p + n - 1 are all free now."""
    import socket

    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n > 65535:
            continue
        socks = []
        try:
            for p in range(base, base + n):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise AssertionError("no run of free ports found")


def test_the_sandbox_port_option_puts_the_servers_on_consecutive_ports():
    base = free_port_run(4)
    out = cli("sandbox", "start", "--port", str(base), "--json")
    assert out.returncode == 0, out.stderr
    servers = json.loads(out.stdout)["servers"]
    assert [servers[n]["port"] for n in ("control", "paper", "alpaca", "tws")] == \
        [base, base + 1, base + 2, base + 3]


def test_a_port_in_use_is_an_error_naming_it_not_a_traceback():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = cli("sandbox", "--port", str(port), timeout=30)
    assert out.returncode != 0
    assert "cannot listen" in out.stderr and str(port) in out.stderr
    assert "Traceback" not in out.stderr


def test_a_scratch_profile_never_touches_the_users_trading_state_or_sandbox():
    place("AAPL", 1, "limit", 1.0)  # the user's own sandbox and book, with a resting order
    assert cli("halt", "--reason", "the user's real halt").returncode == 0
    user_sandbox = service.running(home())
    out = script("""
        import os
        import brokerkit as bk
        sandbox = bk.use_scratch_profile("drill")
        sandbox = bk.use_scratch_profile("drill-2")  # a second one: beside it, not inside it
        ex = bk.get_execution_service()
        print(ex.killswitch.state().state, ex.place_order(
            {"symbol": "NVDA", "side": "buy", "quantity": 1})["status"])
        print(len(sandbox.broker("paper").orders()), os.environ["BROKERKIT_DATA_DIR"])
    """)
    state_line, sandbox_line = out.splitlines()[-2:]
    assert state_line == "ACTIVE FILLED"
    count, data_dir = sandbox_line.split()
    assert count == "1"  # the scratch sandbox holds the scratch order alone
    assert data_dir == str(Path(os.environ["BROKERKIT_DATA_DIR"]) / "scratch" / "drill-2")
    state = json.loads(cli("state", "--json").stdout)
    assert state["state"] == "HALTED" and state["reason"] == "the user's real halt"
    assert service.running(home())["pid"] == user_sandbox["pid"]  # never stopped nor replaced


def test_a_restart_keeps_resting_orders_and_fills_at_every_broker_of_the_sandbox():
    placed = script("""
        from brokerkit import get_execution_service
        ex = get_execution_service()
        for conn in ("paper-us", "alpaca-paper", "ibkr-paper"):
            rest = ex.place_order(symbol="AAPL", side="buy", quantity=1, order_type="limit",
                                  limit_price=1, connection=conn)
            fill = ex.place_order(symbol="MSFT", side="buy", quantity=1, connection=conn)
            print(conn, rest["status"], rest["order_id"], fill["status"], fill["order_id"])
    """).splitlines()[-3:]
    assert cli("sandbox", "stop").returncode == 0
    seen = script("""
        from brokerkit import get_brokerage_service
        svc = get_brokerage_service()
        for conn in ("paper-us", "alpaca-paper", "ibkr-paper"):
            a = svc.connected_adapter(conn)
            print(conn, sorted(map(str, a.open_orders()["order_id"])),
                  sorted(map(str, a.fills()["order_id"])))
    """).splitlines()[-3:]
    for before, after in zip(placed, seen, strict=True):
        conn, rest, rest_id, fill, fill_id = before.split()
        assert (rest, fill) == ("ACCEPTED", "FILLED"), before
        assert after.startswith(conn) and repr(rest_id) in after and repr(fill_id) in after, \
            (before, after)
