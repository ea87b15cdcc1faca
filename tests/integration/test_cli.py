"""The `brokerkit` command, run as a user would: a fresh process, nothing configured."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

BIN = [sys.executable, "-m", "brokerkit.cli"]


def run(*args: str, input: str | None = None, env: dict | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BIN, *args], capture_output=True, text=True, input=input,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def test_status_json_on_a_fresh_machine_lists_connected_demo_connections():
    out = run("status", "--json")
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout.splitlines()[0])
    assert status["summary"]["total_buying_power"] > 0
    assert len(status["connections"]) >= 2
    assert {c["status"] for c in status["connections"]} == {"connected"}


def test_readable_tables_for_status_balances_positions():
    status = run("status")
    assert status.returncode == 0 and "Total buying power" in status.stdout
    balances = run("balances")
    assert balances.returncode == 0 and "buying_power" in balances.stdout
    positions = run("positions", "--json")
    assert positions.returncode == 0
    rows = json.loads(positions.stdout)
    assert rows and {"instrument", "quantity", "market_value_base"} <= set(rows[0])


def test_bad_config_exits_2_naming_file_and_key(tmp_path):
    cfg = tmp_path / "brokerkit.toml"
    cfg.write_text('[connections.a]\ntype = "alpacca"\n')
    out = run("status", env={"BROKERKIT_CONFIG": str(cfg)})
    assert out.returncode == 2
    assert str(cfg) in out.stderr and "connections.a.type" in out.stderr


def test_secrets_set_list_rotate_never_print_the_value(tmp_path):
    canary = "canary-7f3c9e51-value"
    set_ = run("secrets", "set", "alpaca_key", "--store", "file", input=canary + "\n")
    assert set_.returncode == 0, set_.stderr
    listed = run("secrets", "list", "--json")
    assert {"name": "alpaca_key", "store": "file"} in json.loads(listed.stdout)
    rotated = run("secrets", "rotate", "alpaca_key", input=canary + "-2\n")
    assert rotated.returncode == 0, rotated.stderr
    for out in (set_, listed, rotated, run("secrets", "list")):
        assert canary not in out.stdout and canary not in out.stderr
    cfg_dir = Path(os.environ["BROKERKIT_CONFIG_DIR"])
    assert any(cfg_dir.iterdir())


def test_sandbox_json_prints_servers_on_its_first_line_and_serves():
    proc = subprocess.Popen([*BIN, "sandbox", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        info = json.loads(line)
        assert info["servers"], info
        import urllib.request

        control = info["servers"]["control"]
        assert control["url"].startswith("http://127.0.0.1:")
        with urllib.request.urlopen(control["url"] + "/health", timeout=5) as resp:
            assert resp.status == 200
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0


# -- malformed input: one clear line, the right exit status, no traceback (issue 16) ---------


def _config(tmp_path: Path, text: str) -> dict[str, str]:
    cfg = tmp_path / "brokerkit.toml"
    cfg.write_text(text)
    return {"BROKERKIT_CONFIG": str(cfg)}


# a paper connection nobody serves: these commands must refuse before connecting anywhere
UNSERVED = '[connections.paper-us]\ntype = "paper"\noptions = { url = "http://127.0.0.1:9" }\n'


def _clean(out: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in out.stderr + out.stdout, out.stderr


@pytest.mark.parametrize("command", [["halt"], ["reduce-only"], ["resume"]])
@pytest.mark.parametrize("reason", ["", "   "])
def test_an_empty_reason_is_refused(command, reason):
    out = run(*command, "--reason", reason)
    assert out.returncode == 2 and "--reason" in out.stderr and "empty reason" in out.stderr
    _clean(out)


def test_reconcile_of_an_unknown_connection_exits_2_naming_it(tmp_path):
    out = run("reconcile", "--connection", "nope", env=_config(tmp_path, UNSERVED))
    assert out.returncode == 2
    assert "no connection named 'nope'" in out.stderr and "paper-us" in out.stderr
    _clean(out)


def test_reconcile_sync_of_an_unknown_run_exits_2_naming_it(tmp_path):
    out = run("reconcile", "--sync", "no-such-run", "--reason", "fix",
              env=_config(tmp_path, UNSERVED))
    assert out.returncode == 2 and "no reconciliation run 'no-such-run'" in out.stderr
    _clean(out)


@pytest.mark.parametrize("command", [["status"], ["halt", "--reason", "x"], ["state"],
                                     ["reconcile"], ["serve", "--port", "0"]])
@pytest.mark.parametrize(("text", "where"), [
    ("[risk]\nmax_order_quantity = -5\n", "[risk.max_order_quantity]"),
    ("[routing]\nequity = 5\n", "[routing.equity]"),
    ("[sandbox]\nprot = 7000\n", "[sandbox.prot]"),
])
def test_every_command_refuses_a_bad_config_at_start(tmp_path, command, text, where):
    env = _config(tmp_path, text)
    out = run(*command, env=env, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert env["BROKERKIT_CONFIG"] in out.stderr and where in out.stderr
    assert "dashboard at" not in out.stdout
    _clean(out)


def test_a_non_utf8_config_names_the_file_and_the_byte(tmp_path):
    cfg = tmp_path / "brokerkit.toml"
    cfg.write_bytes(b'base_currency = "USD"\n# caf\xe9\n')
    out = run("status", env={"BROKERKIT_CONFIG": str(cfg)})
    assert out.returncode == 2 and str(cfg) in out.stderr
    assert "not UTF-8" in out.stderr and "offset 27" in out.stderr
    _clean(out)


def test_serve_on_a_port_in_use_says_so_before_printing_a_url():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        out = run("serve", "--port", str(port), timeout=60)
    assert out.returncode == 2
    assert f"127.0.0.1:{port} is already in use" in out.stderr
    assert "http://" not in out.stdout
    _clean(out)
