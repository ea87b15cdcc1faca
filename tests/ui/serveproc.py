"""`brokerkit serve` as a separate process on a free port, for tests of what only a real server
process shows: sign-in configured from `brokerkit.toml` and the secret store, several processes
sharing one book."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["ServeProcess"]


class ServeProcess:
    """`python -m brokerkit.cli serve --port PORT` with `env` added to the environment; its
    output (stdout and stderr) goes to `log` and is readable with `output()`."""

    def __init__(self, port: int, env: Mapping[str, str], log: Path,
                 args: tuple[str, ...] = ()) -> None:
        self.port = port
        self.url = f"http://localhost:{port}/"
        self.log = log
        self._out = open(log, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "brokerkit.cli", "serve", "--port", str(port), *args],
            env={**os.environ, **env}, stdout=self._out, stderr=subprocess.STDOUT, text=True)

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(encoding="utf-8")

    def wait_alive(self, timeout: float = 90.0) -> ServeProcess:
        """Wait until /liveness answers; raises with the server's output if it exits."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"brokerkit serve exited with {self.proc.returncode}:\n"
                                   + self.output())
            try:
                with urllib.request.urlopen(f"{self.url}liveness", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("brokerkit serve did not come up:\n"
                                       + self.output()) from None
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._out.close()

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
