"""The embedded profile: what brokerkit connects to when nothing is configured.

It is a configuration like any other, not a code path: connections whose URLs point at the
user's sandbox service (started on demand, or joined when it runs: `brokerkit.sandbox.service`),
the routing its demo accounts need, a book opened from the sandbox's opening positions, the
sandbox's FX rates, and its demo credentials as the profile's own secrets. Adapters and
services see ordinary `Settings`; nothing downstream asks whether it is a sandbox.

`[sandbox]` in `brokerkit.toml` (port, seed, clock) says how the service is started;
`BROKERKIT_DATA_DIR` decides whose it is (each data directory has its own sandbox and book,
which is how notebooks and tests get a scratch profile).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import re
import shutil
import urllib.request
from collections.abc import Mapping
from typing import Any

from .config import ConnectionConfig, Settings, sandbox_home, user_data_dir
from .sandbox.demo import Sandbox
from .secrets import Secret

__all__ = ["EMBEDDED", "apply_profile", "embedded_settings", "use_scratch_profile"]

EMBEDDED = "embedded"

_FX_TIMEOUT = 5.0


def apply_profile(settings: Settings) -> Settings:
    """`settings` as they are when they configure connections, else the embedded profile."""
    if settings.connections or settings.profile:
        return settings
    return embedded_settings(settings)


def embedded_settings(settings: Settings) -> Settings:
    """`settings` completed with the user's sandbox service (started if it is not running)."""
    from .sandbox.service import ensure_running

    opts = settings.sandbox
    info = ensure_running(sandbox_home(), port=opts.get("port") or None,
                          seed=opts.get("seed", 0), clock=opts.get("clock", "always-open"))
    connections, secrets = _connections(info)
    return dataclasses.replace(
        settings, profile=EMBEDDED, connections=connections, profile_secrets=secrets,
        routing=settings.routing or dict(info.get("routing", {})),
        book_open_from_brokers=True,
        fx_rates={**_fx_rates(info, settings.base_currency), **settings.fx_rates})


def _connections(info: Mapping[str, Any]) -> tuple[dict[str, ConnectionConfig],
                                                   dict[str, Secret]]:
    servers = info["servers"]
    conns = {c["name"]: ConnectionConfig(
                 name=c["name"], type="paper", institution=c["institution"],
                 options={"url": servers["paper"]["url"]}, accounts=tuple(c["accounts"]))
             for c in info.get("connections", ())}
    alpaca = servers["alpaca"]
    conns["alpaca-paper"] = ConnectionConfig(
        name="alpaca-paper", type="alpaca", institution="Alpaca (sandbox)",
        options={"paper": True, "url": alpaca["url"], "data_url": alpaca["data_url"]},
        secrets={"api_key": "sandbox_alpaca_key_id", "secret_key": "sandbox_alpaca_secret"})
    tws = servers["tws"]
    conns["ibkr-paper"] = ConnectionConfig(
        name="ibkr-paper", type="ibkr", institution="Interactive Brokers (sandbox)",
        options={"host": tws["host"], "port": int(tws["port"])})
    creds = alpaca["credentials"]
    secrets = {"sandbox_alpaca_key_id": Secret(creds["key_id"], "sandbox_alpaca_key_id"),
               "sandbox_alpaca_secret": Secret(creds["secret_key"], "sandbox_alpaca_secret")}
    return conns, secrets


def _fx_rates(info: Mapping[str, Any], base: str) -> dict[str, float]:
    """The sandbox market's rates to `base` from each currency its demo accounts hold."""
    pairs = ",".join(sorted(f"{c}/{base}" for c in info.get("currencies", ()) if c != base))
    if not pairs:
        return {}
    url = f"{info['servers']['control']['url']}/v1/fx?pairs={pairs}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
    with opener.open(url, timeout=_FX_TIMEOUT) as resp:
        return {k: float(v) for k, v in json.load(resp)["rates"].items()}


_scratch = contextlib.ExitStack()
_SCRATCH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


def use_scratch_profile(name: str) -> Sandbox:
    """Run the rest of this process (and the processes it starts) on a scratch profile of
    its own: an empty configuration, a fresh book, and a fresh sandbox served by this
    process (it stops with it), all under `<user data dir>/scratch/<name>`, emptied on every
    call. The user's real configuration, book, trading state and sandbox are never touched.
    Tutorials and drills call it first. Returns the scratch sandbox, whose brokers a tutorial
    may change directly (a position corrected at the broker, say)."""
    if not isinstance(name, str) or not _SCRATCH_NAME.fullmatch(name):
        raise ValueError(f"a scratch profile's name is letters, digits, '_', '.', '-'; "
                         f"got {name!r}")
    from . import execution, service
    from .sandbox import service as sandbox_service

    root = user_data_dir() / "scratch" / name
    _scratch.close()  # a scratch profile this process already used
    sandbox_service.stop(root / "sandbox")
    shutil.rmtree(root, ignore_errors=True)
    (root / "config").mkdir(parents=True)
    (root / "brokerkit.toml").write_text("# a scratch profile: nothing configured\n")
    os.environ.update(BROKERKIT_DATA_DIR=str(root), BROKERKIT_CONFIG_DIR=str(root / "config"),
                      BROKERKIT_CONFIG=str(root / "brokerkit.toml"))
    for var in ("BROKERKIT_DATABASE_URL", "SYSTEM_HALTED"):
        os.environ.pop(var, None)
    execution.reset_execution_service()
    service.reset_brokerage_service()
    sandbox = Sandbox()
    _scratch.enter_context(sandbox_service.hosted(root / "sandbox", sandbox))
    return sandbox


atexit.register(_scratch.close)
