"""`brokerkit serve`: the dashboard on a Panel server, one fresh app per browser session.

It binds 127.0.0.1 by default. Binding any other address needs authentication configured (the
`[serve]` table: users with roles and argon2 password hashes, see `brokerkit.ui.auth`, or an
OAuth provider with a role per user, see `brokerkit.ui.oauth`); without it `serve` refuses,
naming the address. A misconfigured sign-in (a provider without its key or secret, no cookie
secret) stops `serve` before it starts, naming the key. With sign-in configured, people without
a role are turned away before a session exists (HTTP 403), each session gets its user's role,
and every order or kill-switch action checks the role again. With nothing configured at all,
the dashboard runs on the embedded sandbox, like every other brokerkit command.

Every way of serving the app asks `session_access` who each new session is: `brokerkit
serve`, `panel serve dashboards/app.py` and `pn.serve(create_app)` alike. Without brokerkit's
sign-in, a session is served only in local mode (the operating-system user, as admin): when the
server listens on loopback addresses only, the browser is on this machine, and no proxy
forwarded the request. Anything else gets a page saying why, and nothing of the app.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import logging
import socket
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from .execution.service import ExecutionService
    from .service import BrokerageService
    from .ui.auth import Access, ServeAuth

__all__ = ["add_arguments", "cmd_serve", "free_port", "is_loopback", "listening_addresses",
           "load_auth", "main", "serve", "served_access", "session_access"]

log = logging.getLogger(__name__)

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
    return load_serve_auth(table, source=getattr(settings, "source", None))


#: Headers a reverse proxy adds: a request carrying one did not come from this machine's
#: browser, whatever its socket says.
_PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Real-Ip")


def listening_addresses() -> list[str] | None:
    """The addresses the server running the current session listens on (its tornado
    sockets on this thread's IOLoop), or None when they cannot be read."""
    try:
        from tornado.ioloop import IOLoop

        handlers = getattr(IOLoop.current(), "handlers", None)
    except RuntimeError:
        return None
    if not isinstance(handlers, Mapping):
        return None
    found: list[str] = []
    for obj, _callback in list(handlers.values()):
        if not isinstance(obj, socket.socket):
            continue
        try:
            if obj.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                found.append(str(obj.getsockname()[0]))
        except OSError:
            continue
    return found or None


def _why_not_local() -> str | None:
    """Why the session being created is not local mode (None: it is)."""
    import panel as pn

    addresses = listening_addresses()
    if addresses is None:
        return "on a server whose addresses could not be read"
    wide = [a for a in addresses if not is_loopback(a)]
    if wide:
        shown = "all addresses" if any(a in ("0.0.0.0", "::") for a in wide) else wide[0]
        return f"on {shown!r} ({', '.join(sorted(set(addresses)))})"
    request = pn.state.curdoc.session_context.request if pn.state.curdoc \
        and pn.state.curdoc.session_context else None
    remote = getattr(request, "remote_ip", None) if request is not None else None
    if not remote or not is_loopback(str(remote)):
        return f"to {remote or 'an unknown client'!s}"
    headers = {k.casefold() for k in (pn.state.headers or {})}
    proxied = [h for h in _PROXY_HEADERS if h.casefold() in headers]
    if proxied:
        return f"through a proxy ({proxied[0]})"
    if pn.state.user is not None:
        return (f"to {pn.state.user!r}, signed in by Panel's own sign-in (brokerkit's sign-in "
                "checks hashed passwords, locks out guessing and closes sessions at sign-out)")
    return None


def session_access(auth: ServeAuth | None) -> Access:
    """Who the session being created is, or `ConfigError` saying why it is refused.

    With `auth` (the server runs brokerkit's sign-in): the signed-in user with their role, if
    they have one and their sign-in is open on this server. Without: local mode only (see the
    module doc), as the operating-system user with the admin role."""
    from .ui.auth import Access

    if auth is not None:
        access = auth.session_access()
        if access is None:
            raise ConfigError("refusing this session: not signed in on this server, or no role "
                              "configured for the user", key="serve")
        return access
    why = _why_not_local()
    if why is not None:
        raise ConfigError(
            f"refusing to serve the dashboard {why} without sign-in: anyone who can reach it "
            "could place orders. Serve it on 127.0.0.1 only (panel serve ... --address "
            "127.0.0.1), or configure users or an OAuth provider in a [serve] table and run "
            "`brokerkit serve --host ...` (see brokerkit.ui.auth, brokerkit.ui.oauth)",
            key="serve")
    return Access(user=_local_user(), role="admin")


def served_access() -> Access:
    """`session_access` for a server that brokerkit did not start (`panel serve
    dashboards/app.py`, `pn.serve(create_app)`): it runs no brokerkit sign-in, so it serves
    local mode only, and nothing at all when the configuration asks for sign-in."""
    try:
        configured = load_auth()
    except ConfigError as exc:
        raise ConfigError(f"refusing this session: the sign-in configuration is wrong: {exc}",
                          key="serve") from None
    if configured is not None:
        raise ConfigError(
            f"refusing this session: sign-in is configured ({configured.login_note}) but this "
            "server does not run it; serve the dashboard with `brokerkit serve`", key="serve")
    return session_access(None)


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

    if auth is None and use_config:
        auth = load_auth()
    _refuse_unless_safe(host, auth)
    port = port or free_port(host)

    def session() -> Any:
        from .ui.app import refused_app

        try:
            access = session_access(auth)
        except ConfigError as exc:
            log.error("%s", exc)
            return refused_app(str(exc)).template()
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


def _refuse_unless_free(host: str, port: int) -> None:
    """A ConfigError naming the address when nothing can listen on `host`:`port` (another
    server holds it, or the address is not this machine's), before any URL is printed."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family) as s:
            # as the server will bind (Tornado sets SO_REUSEADDR): a port in TIME_WAIT is free
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as exc:
        why = "is already in use by another program" if exc.errno == errno.EADDRINUSE \
            else f"cannot be bound ({exc.strerror or exc})"
        raise ConfigError(f"{host}:{port} {why}: stop that program, or pick another port with "
                          f"--port (0 picks a free one)") from None


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
    _refuse_unless_free(args.host, port)
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
