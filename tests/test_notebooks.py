"""The notebooks are executable docs: run as a user runs them, `pytest --nbval-lax notebooks`
in one go, each top to bottom against the sandbox, with the cells marked
`# NBVAL_CHECK_OUTPUT` printing what they printed when written.

nbval items are not reached by pytest fixtures (a notebook's kernel is another process), so the
run is a pytest process of its own, in the environment tests/conftest.py isolates (the test's
own config and data directories: the "user" here). The same command by hand:

    .venv/bin/python -m pytest -p no:cacheprovider --nbval-lax --nbval-current-env notebooks/
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "brokerkit.cli"]


def run_notebooks() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
         "--nbval-current-env", "--nbval-cell-timeout=120", "-o", "addopts=", "-o",
         "timeout=600", "notebooks"],
        cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore"}, capture_output=True,
        text=True, timeout=900)


@pytest.mark.timeout(1200)  # every notebook twice, in subprocesses, on a loaded machine
def test_the_notebooks_run_in_one_go_twice_after_use_and_leave_the_users_state_alone():
    # the user has used the sandbox: an order placed, and a real halt in force
    placed = subprocess.run(
        [sys.executable, "-c", "from brokerkit import get_execution_service as g; "
         "print(g().place_order(symbol='MSFT', side='buy', quantity=2)['status'])"],
        capture_output=True, text=True, timeout=120)
    assert placed.stdout.split()[-1:] == ["FILLED"], placed.stderr[-3000:]
    assert subprocess.run([*CLI, "halt", "--reason", "the user's halt"],
                          capture_output=True, timeout=120).returncode == 0

    for attempt in ("first", "second"):
        proc = run_notebooks()
        assert proc.returncode == 0, (attempt, proc.stdout[-6000:] + proc.stderr[-2000:])
        assert " passed" in proc.stdout and " failed" not in proc.stdout

    state = json.loads(subprocess.run([*CLI, "state", "--json"], capture_output=True,
                                      text=True, timeout=120).stdout)
    assert (state["state"], state["reason"]) == ("HALTED", "the user's halt")
    recon = subprocess.run([*CLI, "reconcile", "--json"], capture_output=True, text=True,
                           timeout=120)
    assert recon.returncode == 0, recon.stdout[-3000:] + recon.stderr[-2000:]
