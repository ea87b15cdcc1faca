"""The notebooks are executable docs: each runs top to bottom against the embedded sandbox under
`pytest --nbval-lax`, and the cells marked `# NBVAL_CHECK_OUTPUT` print what they printed when
written.

nbval items are not reached by pytest fixtures (a notebook's kernel is another process), so
each notebook runs in its own pytest process with the environment that isolates it: a fresh
SQLite book in `BROKERKIT_DATABASE_URL` and the test's own config and data directories (set by
tests/conftest.py). The same command by hand:

    BROKERKIT_DATABASE_URL=sqlite:////tmp/nb.db .venv/bin/python -m pytest -p no:cacheprovider \\
        --nbval-lax --nbval-current-env notebooks/
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").rglob("*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_runs_top_to_bottom_with_checked_outputs(notebook: Path, tmp_path: Path):
    env = {**os.environ, "BROKERKIT_DATABASE_URL": f"sqlite:///{tmp_path / 'book.db'}",
           "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
         "--nbval-current-env", "--nbval-cell-timeout=120", "-o", "addopts=", "-o",
         "timeout=300", str(notebook)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout
