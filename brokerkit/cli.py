"""The `brokerkit` command.

    brokerkit status [--json]        consolidated status of every connection
    brokerkit balances [--json]      balances across institutions (base-currency columns added)
    brokerkit positions [--json]     positions across institutions
    brokerkit secrets set NAME       store a secret (value read from stdin or a hidden prompt)
    brokerkit secrets list [--json]  secret names and where they live, never values
    brokerkit secrets rotate NAME    replace a secret's value; connections using it reconnect
    brokerkit secrets delete NAME
    brokerkit halt --reason TEXT     stop all new orders; cancel every open order at every
                                     connection (connecting them first), one line each
    brokerkit reduce-only --reason T only orders that reduce a position pass; open orders
                                     that would grow or flip a position are cancelled
    brokerkit resume --reason TEXT   back to ACTIVE
    brokerkit state [--json]         the trading state in force and its recent history
    brokerkit reconcile [--json]     book against brokers; exit 1 on unexplained breaks
    brokerkit reconcile --adopt CONN --reason T   open the book from a broker's positions
    brokerkit reconcile --sync RUN --reason T     adopt the broker's view for a run's breaks
    brokerkit sandbox [--json]       serve the user's sandbox in the foreground until interrupted
    brokerkit sandbox start|stop|status|reset [--json] [--port P]
                                     the sandbox as a background service (one per user)
    brokerkit serve [--host H] [--port P] [--show]   the dashboard (Panel), 127.0.0.1 by default

Exit status: 0 on success, 1 when a command ran but found a problem (a connection down), 2 on
bad usage or configuration, 3 when `halt` or `reduce-only` changed the state (HALTED,
REDUCING) but some open order may still be working: a connection could not be reached or
listed, or a cancel failed (the lines starting with `!` name the connection and why).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from .errors import BrokerkitError, ConfigError

__all__ = ["main"]


def _print_json(obj: Any, out: IO[str]) -> None:
    out.write(json.dumps(obj, default=str) + "\n")


def _frame_json(df: Any) -> list[dict[str, Any]]:
    return json.loads(df.to_json(orient="records", date_format="iso"))


def _table(df: Any, columns: Sequence[str], out: IO[str]) -> None:
    import pandas as pd

    if df.empty:
        out.write("(none)\n")
        return
    view = df[list(columns)].copy()
    with pd.option_context("display.max_rows", 500, "display.width", 200,
                           "display.float_format", "{:,.2f}".format):
        out.write(view.to_string(index=False) + "\n")


def _errors_note(df: Any, out: IO[str]) -> int:
    errors = df.attrs.get("errors") or {}
    for name, err in errors.items():
        out.write(f"! {name}: {err}\n")
    return 1 if errors else 0


# -- commands ------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace, out: IO[str]) -> int:
    from .service import get_brokerage_service

    status = get_brokerage_service().get_status()
    book_error = _book_error()
    if args.json:
        _print_json({**status, "book": {"ok": book_error is None, "error": book_error}}, out)
    else:
        s = status["summary"]
        out.write(f"Total buying power: {s['total_buying_power']:,.2f} {s['base_currency']}   "
                  f"connections: {s['connected']} connected, {s['degraded']} degraded, "
                  f"{s['down']} down" + ("   (embedded sandbox)" if s["embedded_sandbox"] else "")
                  + "\n\n")
        import pandas as pd

        rows = pd.DataFrame(status["connections"])
        rows["accounts"] = rows["accounts"].map(", ".join)
        rows["last_error"] = rows["last_error"].fillna("")
        _table(rows, ["name", "institution", "status", "latency_ms", "accounts", "buying_power",
                      "last_error"], out)
    if book_error is not None:
        sys.stderr.write(f"brokerkit: {book_error}\n")
        return 1
    return 0 if all(c["status"] != "down" for c in status["connections"]) else 1


def _book_error() -> str | None:
    """Why the configured book cannot be used (`BookUnavailable`'s message), or None."""
    from .book import open_book
    from .config import load_settings
    from .errors import BookUnavailable

    try:
        open_book(load_settings().book_url).get_trading_state()
    except BookUnavailable as exc:
        return str(exc)
    return None


def cmd_balances(args: argparse.Namespace, out: IO[str]) -> int:
    from .service import get_brokerage_service

    df = get_brokerage_service().balances()
    if args.json:
        _print_json(_frame_json(df), out)
        return 1 if df.attrs.get("errors") else 0
    _table(df, ["connection", "account", "currency", "cash", "buying_power", "equity",
                "buying_power_base"], out)
    return _errors_note(df, out)


def cmd_positions(args: argparse.Namespace, out: IO[str]) -> int:
    from .service import get_brokerage_service

    df = get_brokerage_service().positions()
    if args.json:
        _print_json(_frame_json(df), out)
        return 1 if df.attrs.get("errors") else 0
    _table(df, ["connection", "account", "instrument", "quantity", "avg_cost", "market_price",
                "market_value", "currency", "market_value_base"], out)
    return _errors_note(df, out)


def _read_value(prompt: str) -> str:
    if sys.stdin is not None and not sys.stdin.isatty():
        value = sys.stdin.readline().rstrip("\r\n")
    else:
        import getpass

        value = getpass.getpass(prompt)
    if not value:
        raise BrokerkitError("no value given (pipe it on stdin or type it at the prompt)")
    return value


def cmd_secrets(args: argparse.Namespace, out: IO[str]) -> int:
    from .secrets import get_secret_store

    store = get_secret_store()
    if args.secrets_cmd == "set":
        where = store.set(args.name, _read_value(f"value for {args.name}: "), store=args.store)
        out.write(f"stored {args.name} in {where}\n")
    elif args.secrets_cmd == "rotate":
        where = store.rotate(args.name, _read_value(f"new value for {args.name}: "))
        out.write(f"rotated {args.name} in {where}\n")
    elif args.secrets_cmd == "delete":
        store.delete(args.name)
        out.write(f"deleted {args.name}\n")
    else:
        infos = store.list()
        if args.json:
            _print_json([{"name": i.name, "store": i.store} for i in infos], out)
        elif not infos:
            out.write("(no secrets)\n")
        else:
            width = max(len(i.name) for i in infos)
            for i in infos:
                out.write(f"{i.name:<{width}}  {i.store}\n")
    return 0


def _killswitch() -> Any:
    from .book import open_book
    from .config import load_settings
    from .execution.killswitch import KillSwitch

    return KillSwitch(open_book(load_settings().book_url))


def _report_state(view: Any, out: IO[str], as_json: bool) -> None:
    if as_json:
        _print_json(view.to_dict(), out)
        return
    note = " (forced by SYSTEM_HALTED)" if view.forced_by_env else ""
    when = f" at {view.changed_at:%Y-%m-%d %H:%M:%S %Z}" if view.changed_at else ""
    out.write(f"{view.state}{note}: {view.reason or '-'} (by {view.actor or '-'}{when})\n")


def cmd_state(args: argparse.Namespace, out: IO[str]) -> int:
    ks = _killswitch()
    view = ks.state()
    if args.json:
        history = ks.book.trading_state_history().tail(args.history)
        _print_json({**view.to_dict(), "history": _frame_json(history)}, out)
    else:
        _report_state(view, out, False)
    return 0


#: Exit status of `halt` and `reduce-only` when the state changed but some open order may
#: still be working: a connection could not be reached or listed, or a cancel failed.
EXIT_INCOMPLETE = 3


def _cancelling_killswitch(cancel_open: bool) -> Any:
    ks = _killswitch()
    if cancel_open:
        from .service import get_brokerage_service

        ks.brokerage = get_brokerage_service()
    return ks


def _report_cancels(report: Any, out: IO[str], as_json: bool) -> int:
    """The state, then one line per connection; the exit status (0, or EXIT_INCOMPLETE)."""
    if as_json:
        _print_json(report.to_dict(), out)
    else:
        _report_state(report.state, out, False)
        for c in report.connections.values():
            if c.skipped:
                out.write(f"  {c.connection}: skipped ({c.skipped})\n")
                continue
            if c.error is not None:
                out.write(f"! {c.connection}: could not cancel its open orders: {c.error}\n")
                continue
            kept = f", kept {len(c.kept)} reducing order(s)" if c.kept else ""
            ids = ", ".join(o["order_id"] for o in c.canceled[:5]) + \
                (" ..." if len(c.canceled) > 5 else "")
            out.write(f"  {c.connection}: cancelled {len(c.canceled)} open order(s)"
                      f"{f' ({ids})' if ids else ''}{kept}\n")
            for order_id, why in c.failed.items():
                out.write(f"! {c.connection}: order {order_id} is still open: {why}\n")
    return 0 if report.complete else EXIT_INCOMPLETE


def cmd_halt(args: argparse.Namespace, out: IO[str]) -> int:
    report = _cancelling_killswitch(args.cancel_open).halt(args.reason,
                                                           cancel_open=args.cancel_open)
    return _report_cancels(report, out, args.json)


def cmd_reduce_only(args: argparse.Namespace, out: IO[str]) -> int:
    report = _cancelling_killswitch(args.cancel_open).reduce_only(
        args.reason, cancel_open=args.cancel_open)
    return _report_cancels(report, out, args.json)


def cmd_resume(args: argparse.Namespace, out: IO[str]) -> int:
    view = _killswitch().resume(args.reason).state
    _report_state(view, out, args.json)
    if view.forced_by_env:
        sys.stderr.write("brokerkit: SYSTEM_HALTED is set in this environment: trading stays "
                         "halted here until it is unset\n")
    return 0


def cmd_reconcile(args: argparse.Namespace, out: IO[str]) -> int:
    from .errors import UnknownConnection
    from .post_trade.runs import Reconciler

    if args.adopt and args.sync:
        raise BrokerkitError("give --adopt or --sync, not both")
    if (args.adopt or args.sync) and not args.reason:
        raise BrokerkitError("--reason is required to change the book")
    rec = Reconciler()
    known = rec.brokerage.connections
    for name in [*(args.connection or ()), *([args.adopt] if args.adopt else [])]:
        if name not in known:
            raise UnknownConnection(name, known)
    if args.sync and rec.book.reconciliation_rows(args.sync).empty:
        runs = rec.book.reconciliation_runs(limit=3)["run_id"].tolist()
        raise BrokerkitError(f"no reconciliation run {args.sync!r} (or it has no rows); "
                             f"latest runs: {', '.join(runs) or 'none yet'}")
    if args.adopt or args.sync:
        n = rec.adopt(args.adopt, reason=args.reason) if args.adopt \
            else rec.sync(args.sync, reason=args.reason)
        out.write(f"corrected {n} book position(s)\n")
        return 0
    run = rec.run(args.connection or None)
    if args.json:
        _print_json(run.to_dict(), out)
    else:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(run.counts.items())) or "no positions"
        out.write(f"run {run.run_id}: {counts}\n")
        for name, err in run.failed.items():
            out.write(f"! {name}: not read ({err}): its rows are UNKNOWN\n")
        if run.unexplained:
            _table(run.breaks, ["connection", "account", "instrument", "book_quantity",
                                "broker_quantity", "quantity_diff", "status", "explanation"],
                   out)
    return 1 if run.unexplained or run.failed else 0


def cmd_sandbox(args: argparse.Namespace, out: IO[str]) -> int:
    from .config import load_settings, sandbox_home
    from .sandbox import service

    home = Path(args.home) if args.home else sandbox_home()
    opts = load_settings().sandbox  # [sandbox]: the options' defaults
    port, seed = args.port or opts.get("port"), opts.get("seed", 0) if args.seed is None \
        else args.seed
    clock = args.clock or opts.get("clock", "always-open")
    if args.action is None:  # the service itself, in the foreground
        def ready(info: dict[str, Any]) -> None:
            if args.json:
                _print_json(info, out)
            else:
                for name, s in info["servers"].items():
                    out.write(f"{name:<12} {s.get('url')}\n")
                out.write(f"serving the sandbox of {home} until interrupted (Ctrl-C)\n")
            out.flush()

        return service.serve(home, host=args.host, port=port, seed=seed, clock=clock,
                             alpaca_rate_limit=args.alpaca_rate_limit or None, ready=ready)
    if args.action == "start":
        info = service.ensure_running(home, port=port, seed=seed, clock=clock)
        report: dict[str, Any] = {"running": True, **info}
    elif args.action == "stop":
        report = {"running": False, "stopped": service.stop(home) is not None}
    elif args.action == "reset":
        report = {"running": False, "reset": True, "was_running": service.reset(home)}
    else:
        report = service.status(home)
    if args.json:
        _print_json(report, out)
    elif report.get("running"):
        out.write(f"sandbox running (pid {report['pid']}, clock {report['clock']}, "
                  f"home {home})\n")
        for name, s in report["servers"].items():
            out.write(f"  {name:<10} {s.get('url')}\n")
    else:
        what = {"stop": "stopped" if report.get("stopped") else "was not running",
                "reset": "state forgotten" + (" (it was stopped)" if report.get("was_running")
                                              else "")}.get(args.action, "not running")
        out.write(f"sandbox {what} (home {home})\n")
    return 0


# -- parser --------------------------------------------------------------------------------


def _reason(text: str) -> str:
    """A `--reason`: recorded with who and when, so it must say something."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must say why (it is recorded with who and when); "
                                         "got an empty reason")
    return text.strip()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="brokerkit", description="See and act on accounts at "
                                "many brokers. With no configuration, runs on the sandbox.")
    p.add_argument("--version", action="version", version=f"brokerkit {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name, helptext in (("status", "consolidated status of every connection"),
                           ("balances", "balances across institutions"),
                           ("positions", "positions across institutions")):
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument("--json", action="store_true", help="one JSON document, for scripts")

    sp = sub.add_parser("secrets", help="manage stored secrets (values are never printed)")
    ssub = sp.add_subparsers(dest="secrets_cmd", required=True, metavar="ACTION")
    s_set = ssub.add_parser("set", help="store a secret; the value is read from stdin/prompt")
    s_set.add_argument("name")
    s_set.add_argument("--store", choices=["keyring", "file"], default=None,
                       help="where to keep it (default: keyring if available, else file)")
    s_list = ssub.add_parser("list", help="names and where they live")
    s_list.add_argument("--json", action="store_true")
    ssub.add_parser("rotate", help="replace a secret's value").add_argument("name")
    ssub.add_parser("delete", help="remove a secret").add_argument("name")

    sp = sub.add_parser("halt", help="stop all new orders everywhere (the kill switch)")
    sp.add_argument("--reason", required=True, type=_reason,
                    help="why: recorded with who and when")
    sp.add_argument("--no-cancel-open", dest="cancel_open", action="store_false",
                    help="leave open orders working (default: cancel them)")
    sp.add_argument("--json", action="store_true")
    sp = sub.add_parser("reduce-only", help="only orders that reduce a position pass")
    sp.add_argument("--reason", required=True, type=_reason)
    sp.add_argument("--no-cancel-open", dest="cancel_open", action="store_false",
                    help="leave open orders that would grow a position working (default: "
                         "cancel them)")
    sp.add_argument("--json", action="store_true")
    sp = sub.add_parser("resume", help="back to ACTIVE trading")
    sp.add_argument("--reason", required=True, type=_reason)
    sp.add_argument("--json", action="store_true")
    sp = sub.add_parser("state", help="the trading state in force")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--history", type=int, default=20, help="history rows in --json")

    sp = sub.add_parser("reconcile", help="book positions against every broker's")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--connection", action="append", help="only this connection (repeatable)")
    sp.add_argument("--adopt", metavar="CONNECTION",
                    help="open the book of CONNECTION from the broker's positions")
    sp.add_argument("--sync", metavar="RUN_ID",
                    help="adopt the broker's view for the unexplained breaks of a run")
    sp.add_argument("--reason", type=_reason,
                    help="why the book changes (recorded in the audit log)")

    sp = sub.add_parser("serve", help="serve the dashboard (Panel) on 127.0.0.1")
    from .serve import add_arguments as serve_arguments

    serve_arguments(sp)

    sp = sub.add_parser("sandbox", help="the local sandbox brokers: serve, start, stop, status, "
                                        "reset")
    sp.add_argument("action", nargs="?", choices=("start", "stop", "status", "reset"),
                    help="start: in the background unless running; stop; status; reset: forget "
                         "its orders and fills. Without one: serve in the foreground")
    sp.add_argument("--json", action="store_true",
                    help="print one JSON object (servers, addresses, demo credentials) first")
    sp.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sp.add_argument("--port", type=int, default=None,
                    help="the control server's port; the others follow it (default: free ports)")
    sp.add_argument("--seed", type=int, default=None, help="the market's seed (default 0)")
    sp.add_argument("--clock", choices=("always-open", "exchange"), default=None,
                    help="always-open (default) or exchange: real sessions and holidays")
    sp.add_argument("--home", help="the sandbox's directory (default: <user data dir>/sandbox)")
    sp.add_argument("--alpaca-rate-limit", type=int, default=200, metavar="N",
                    help="the Alpaca server's requests per minute (0: no limit; default 200)")
    return p


def _version() -> str:
    from . import __version__

    return __version__


def cmd_serve(args: argparse.Namespace, out: IO[str]) -> int:
    from .serve import cmd_serve as serve

    return serve(args, out)


COMMANDS: dict[str, Callable[[argparse.Namespace, IO[str]], int]] = {
    "status": cmd_status,
    "balances": cmd_balances,
    "positions": cmd_positions,
    "secrets": cmd_secrets,
    "sandbox": cmd_sandbox,
    "halt": cmd_halt,
    "reduce-only": cmd_reduce_only,
    "resume": cmd_resume,
    "state": cmd_state,
    "reconcile": cmd_reconcile,
    "serve": cmd_serve,
}


#: Commands that act on the configuration (every one but `secrets`, which manages the store
#: the configuration names and must work while the file is being fixed).
_READS_CONFIG = frozenset(COMMANDS) - {"secrets"}


def main(argv: Sequence[str] | None = None, out: IO[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    out = out or sys.stdout
    try:
        if args.command in _READS_CONFIG:
            from .config import load_settings

            load_settings()  # checked once, at start: a bad file stops before anything runs
        return COMMANDS[args.command](args, out)
    except ConfigError as exc:
        sys.stderr.write(f"brokerkit: configuration error: {exc}\n")
        return 2
    except BrokerkitError as exc:
        sys.stderr.write(f"brokerkit: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
