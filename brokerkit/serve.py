"""`brokerkit serve`: the dashboard on a Panel server, one fresh app per browser session.

It binds 127.0.0.1 by default. Binding any other address needs authentication configured (the
`[serve]` table: users with roles and scrypt password hashes, see `brokerkit.ui.auth`, or an
OAuth provider with a role per user, see `brokerkit.ui.oauth`); without it `serve` refuses,
naming the address. A misconfigured sign-in (a provider without its key or secret, no cookie
secret) stops `serve` before it starts, naming the key. With sign-in configured, people without
a role are turned away before a session exists (HTTP 403), each session gets its user's role,
and every order or kill-switch action checks the role again. With nothing configured at all,
the dashboard runs on the embedded sandbox, like every other brokerkit command.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from .execution.service import ExecutionService
    from .service import BrokerageService
    from .ui.auth import ServeAuth

__all__ = ["add_arguments", "cmd_serve", "free_port", "is_loopback", "load_auth", "main", "serve"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5006


def is_loopback(host: str) -> bool:
    """True when `host` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def load_auth(settings: Any = None) -> ServeAuth | None:
    """The authentication configured in the `[serve]` table (password users or an OAuth
    provider), or None."""
    from .ui.auth import load_serve_auth

    if settings is None:
        from .config import load_settings

        settings = load_settings()
    table = getattr(settings, "serve", None) or {}
    if not isinstance(table, Mapping):
        raise ConfigError("is not a table", key="serve")
    return load_serve_auth(table)


def _origins(host: str, port: int) -> list[str]:
    names = {host, "localhost", "127.0.0.1"} if is_loopback(host) else {host}
    return sorted(f"{n}:{port}" for n in names)


def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, show: bool = False,
          auth: ServeAuth | None = None, use_config: bool = True, threaded: bool = False,
          brokerage: BrokerageService | None = None, execution: ExecutionService | None = None,
          **panel_kwargs: Any) -> Any:
    """Serve the dashboard; returns the server (blocks until stopped unless `threaded`).

    `auth` defaults to the configuration's (`use_config=False` skips reading it). Binding a
    non-loopback `host` without authentication raises `ConfigError`. `port=0` picks a free
    port. `brokerage` and `execution` default to the process-wide services (a benchmark
    passes stand-ins)."""
    import panel as pn

    from .ui.app import create_app
    from .ui.auth import Access

    if auth is None and use_config:
        auth = load_auth()
    _refuse_unless_safe(host, auth)
    port = port or free_port(host)

    def session() -> Any:
        if auth is None:
            access: Access | None = Access(user=_local_user(), role="admin")
        else:
            access = auth.session_access()
            if access is None:  # authorize_callback already refused; never reached in practice
                return pn.pane.Markdown("Not authorized.")
        return create_app(access=access, brokerage=brokerage,
                          execution=execution).template()

    _skip_unused_mathjax()
    kwargs: dict[str, Any] = {"address": host, "port": port, "show": show,
                              "threaded": threaded, "title": "brokerkit",
                              "websocket_origin": _origins(host, port), "liveness": True,
                              **panel_kwargs}
    if auth is not None:
        pn.config.authorize_callback = auth.authorize  # global: checked before any session
        kwargs.update(auth.serve_kwargs())
    return pn.serve(session, **kwargs)


def _skip_unused_mathjax() -> None:
    """Send no MathJax bundle unless the `mathjax` extension is loaded.

    Panel's server adds bokeh-mathjax (1.8 MB of JavaScript, the largest file of the page) to
    every page that holds a Markdown or HTML pane, in case it shows LaTeX; brokerkit's panes
    never do. Panel's notebook output already decides this way (MathJax only with
    `pn.extension('mathjax')`); this makes the server do the same. Idempotent."""
    try:
        import panel.io.server as server
        from panel.config import panel_extension
    except ImportError:  # pragma: no cover
        return
    original = server.bundle_resources
    if getattr(original, "_brokerkit", False):
        return

    def bundle_resources(roots: Any, resources: Any, *args: Any, **kwargs: Any) -> Any:
        if not args:
            kwargs.setdefault("enable_mathjax",
                              "mathjax" in panel_extension._loaded_extensions)
        return original(roots, resources, *args, **kwargs)

    bundle_resources._brokerkit = True  # type: ignore[attr-defined]
    server.bundle_resources = bundle_resources


def _local_user() -> str:
    from .book.actor import current_actor

    return current_actor()


def _refuse_unless_safe(host: str, auth: ServeAuth | None) -> None:
    if not is_loopback(host) and auth is None:
        raise ConfigError(
            f"refusing to serve the dashboard on {host!r} without authentication: anyone who "
            "can reach it could place orders. Bind 127.0.0.1, or configure users or an OAuth "
            "provider in a [serve] table (see brokerkit.ui.auth, brokerkit.ui.oauth)",
            key="serve")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `brokerkit serve`, added to `parser`."""
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to bind (default {DEFAULT_HOST}; any other needs "
                             "users or an OAuth provider configured in [serve])")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--show", action="store_true", help="open it in a browser")


def cmd_serve(args: argparse.Namespace, out: IO[str]) -> int:
    """`brokerkit serve [--host H] [--port P] [--show]`: serve until interrupted."""
    auth = load_auth()
    _refuse_unless_safe(args.host, auth)
    port = args.port or free_port(args.host)
    shown = "localhost" if is_loopback(args.host) else args.host
    out.write(f"brokerkit dashboard at http://{shown}:{port}/"
              + (f"  ({auth.login_note})" if auth else "") + "\n")
    out.flush()
    serve(args.host, port, show=args.show, auth=auth, use_config=False)  # until Ctrl-C
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m brokerkit.serve`: the same as `brokerkit serve`."""
    import sys

    parser = argparse.ArgumentParser(prog="brokerkit serve", description=__doc__.split("\n")[0])
    add_arguments(parser)
    try:
        return cmd_serve(parser.parse_args(argv), sys.stdout)
    except ConfigError as exc:
        sys.stderr.write(f"brokerkit: configuration error: {exc}\n")
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
