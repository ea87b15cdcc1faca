"""The embedded profile: what brokerkit connects to when nothing is configured.

It is a configuration like any other, not a code path: connections whose URLs point at the
user's sandbox service (started on demand, or joined when it runs: `brokerkit.sandbox.service`),
the routing its demo accounts need, a book opened from the sandbox's opening positions, the
sandbox's FX rates, and its demo credentials as the profile's own secrets. Adapters and
services see ordinary `Settings`; nothing downstream asks whether it is a sandbox.

`[sandbox]` in `brokerkit.toml` (port, seed, clock) says how the service is started;
`BROKERKIT_DATA_DIR` decides whose it is (each data directory has its own sandbox and book,
which is how tests and `brokerkit.scratch` get a profile of their own).
"""

from __future__ import annotations

import dataclasses
import json
import urllib.request
from collections.abc import Mapping
from typing import Any

from .config import ConnectionConfig, Settings, sandbox_home
from .model import AccountProfile
from .secrets import Secret

__all__ = ["EMBEDDED", "apply_profile", "embedded_settings"]

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
                 options={"url": servers["paper"]["url"]}, accounts=tuple(c["accounts"]),
                 account_profiles={a: AccountProfile(a, p.get("kind"), p.get("currencies", ()),
                                                     p.get("markets", ()),
                                                     p.get("asset_classes", ()))
                                   for a, p in c.get("profiles", {}).items()})
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
