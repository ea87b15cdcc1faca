"""JupyterLab (or Notebook 7) as a separate process on 127.0.0.1, for the browser tests of
tests/jupyter and benchmarks/jupyter_bench.py: a token, a root directory holding copies of
`notebooks/` with their stored outputs cleared, and a HOME, Jupyter and brokerkit directories of
its own (a fresh BROKERKIT_DATA_DIR: the notebooks run on the embedded sandbox)."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["NOTEBOOKS", "JupyterServer", "copy_notebooks", "free_port"]

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

#: JupyterLab's "official Jupyter news" prompt: off, so nothing offers to fetch from outside.
_PAGE_CONFIG = {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def copy_notebooks(root: Path) -> list[str]:
    """Copy `notebooks/` into `root` with every output and execution count cleared (what
    renders after Run All is then this run's, never a stored output); return the notebooks'
    paths relative to `root`."""
    names = []
    for src in sorted(NOTEBOOKS.rglob("*.ipynb")):
        if ".ipynb_checkpoints" in src.parts:
            continue
        rel = src.relative_to(NOTEBOOKS)
        nb = json.loads(src.read_text(encoding="utf-8"))
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                cell["outputs"], cell["execution_count"] = [], None
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(json.dumps(nb, indent=1), encoding="utf-8")
        names.append(rel.as_posix())
    return names


class JupyterServer:
    """`python -m jupyterlab` (`app="jupyterlab"`) or `python -m notebook` (Notebook 7) on
    127.0.0.1:`port` with a random token, serving `root`; everything the user's machine would
    hold (HOME, Jupyter's config and runtime, brokerkit's config and data) under `home`."""

    def __init__(self, root: Path, home: Path, *, app: str = "jupyterlab",
                 port: int | None = None) -> None:
        self.root, self.home, self.app = root, home, app
        self.port = port or free_port()
        self.token = secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        self.data_dir = home / "data"
        (home / ".jupyter" / "labconfig").mkdir(parents=True, exist_ok=True)
        (home / ".jupyter" / "labconfig" / "page_config.json").write_text(
            json.dumps(_PAGE_CONFIG), encoding="utf-8")
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("BROKERKIT_CONFIG", "BROKERKIT_DATABASE_URL", "SYSTEM_HALTED")
                    and not k.startswith(("JUPYTER_", "JPY_"))}
        self.env.update(HOME=str(home), BROKERKIT_DATA_DIR=str(self.data_dir),
                        BROKERKIT_CONFIG_DIR=str(home / "config"),
                        JUPYTER_CONFIG_DIR=str(home / ".jupyter"),
                        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
                        NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        self.log = home / f"{app}.log"
        self.notebooks = copy_notebooks(root) if not any(root.rglob("*.ipynb")) else \
            sorted(p.relative_to(root).as_posix() for p in root.rglob("*.ipynb"))
        self._out: Any = None
        self.proc: subprocess.Popen[str] | None = None

    def url(self, path: str) -> str:
        """The URL of `path` ("lab/tree/x.ipynb", "api/sessions"...) with the token."""
        sep = "&" if "?" in path else "?"
        return f"{self.base}/{path.lstrip('/')}{sep}token={self.token}"

    def start(self, timeout: float = 120.0) -> JupyterServer:
        self._out = open(self.log, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.app, "--no-browser", "--ip=127.0.0.1",
             f"--port={self.port}", "--ServerApp.port_retries=0",
             f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
             "--allow-root"],
            env=self.env, stdout=self._out, stderr=subprocess.STDOUT, text=True,
            cwd=self.root)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.app} exited with {self.proc.returncode}:\n"
                                   + self.output())
            try:
                with urllib.request.urlopen(self.url("api/status"), timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.app} did not come up:\n{self.output()}") from None
            time.sleep(0.2)

    def output(self) -> str:
        if self._out is not None:
            self._out.flush()
        return self.log.read_text(encoding="utf-8") if self.log.exists() else ""

    def api(self, path: str, method: str = "GET") -> Any:
        req = urllib.request.Request(self.url(f"api/{path}"), method=method)
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """End every session (and its kernel): a notebook done with frees the cores."""
        for session in self.api("sessions"):
            self.api(f"sessions/{session['id']}", method="DELETE")

    def profile_env(self, scratch: str | None = None) -> dict[str, str]:
        """The environment of a process acting on this server's brokerkit profile, or on the
        scratch profile `scratch` a notebook made (`bk.use_scratch_profile(scratch)`)."""
        env = dict(self.env)
        if scratch is not None:
            root = self.data_dir / "scratch" / scratch
            env.update(BROKERKIT_DATA_DIR=str(root), BROKERKIT_CONFIG_DIR=str(root / "config"),
                       BROKERKIT_CONFIG=str(root / "brokerkit.toml"))
        return env

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # Jupyter stops its kernels, then itself
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._out is not None:
            self._out.close()
            self._out = None
        # a notebook on the user's profile (the end-of-day runbook) started the sandbox
        # service of this data dir: it outlives processes by design, so stop it here
        from brokerkit.sandbox import service

        service.stop(self.data_dir / "sandbox")

    def __enter__(self) -> JupyterServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

