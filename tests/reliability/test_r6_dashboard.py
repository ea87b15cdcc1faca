"""R6, the dashboard (issue 16): tried as an attacker would, on every way of serving it.

- Every entry point (`brokerkit serve`, `panel serve dashboards/app.py` with any address,
  `pn.serve` of the app) refuses a non-loopback address without sign-in: nothing of the app
  is served, so nothing anonymous is ever recorded as the server's operating-system user.
- Sign-in: 30 wrong passwords lock the name (and the address) out, the same for a name that
  does not exist; a cookie copied before sign-out no longer works after it; cookies are
  HttpOnly, SameSite=Lax, and Secure behind https.
- A viewer cannot trade, halt, resume or sync by any route, including Bokeh messages sent
  straight to the server over the session's websocket; every refusal is audited with the user.

Each test prints its figures (tried, refused) and is bounded: subprocesses and waits have
ceilings, attempts are counted.
"""

from __future__ import annotations

import http.client
import importlib.util
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest

from brokerkit.errors import ConfigError
from brokerkit.serve import free_port
from brokerkit.ui.auth import AuthConfig, SignInThrottle, hash_password

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {"vera": "vera-pw-1", "tom": "tom-pw-2", "ana": "ana-pw-3"}
ROLES = {"vera": "viewer", "tom": "trader", "ana": "admin"}
REFUSED = "app-refused"


def _ui_fixtures() -> Any:
    """tests/ui/conftest.py (Debian Chromium for Playwright, the in-process server's
    helpers), loaded under its own name so that this module reuses it."""
    spec = importlib.util.spec_from_file_location("_brokerkit_ui_conftest",
                                                  ROOT / "tests" / "ui" / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_ui = _ui_fixtures()
browser_type_launch_args = _ui.browser_type_launch_args
browser_context_args = _ui.browser_context_args


# -- helpers -------------------------------------------------------------------------------------

def _get(port: int, path: str = "/", headers: dict[str, str] | None = None,
         timeout: float = 60.0) -> tuple[int, dict[str, str], list[str], str]:
    """GET `path` on 127.0.0.1:`port` without following redirects: status, headers,
    Set-Cookie lines, body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        body = r.read().decode("utf-8", "replace")
        return r.status, dict(r.getheaders()), r.headers.get_all("Set-Cookie") or [], body
    finally:
        conn.close()


def _post_login(port: int, user: str, password: str, headers: dict[str, str] | None = None
                ) -> tuple[int, str, list[str]]:
    """POST the sign-in form: status, Location, Set-Cookie lines."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        body = urllib.parse.urlencode({"username": user, "password": password})
        conn.request("POST", "/login", body=body, headers={
            "Content-Type": "application/x-www-form-urlencoded", **(headers or {})})
        r = conn.getresponse()
        r.read()
        return r.status, r.getheader("Location") or "", r.headers.get_all("Set-Cookie") or []
    finally:
        conn.close()


def _cookie_header(set_cookies: list[str]) -> str:
    jar: SimpleCookie = SimpleCookie()
    for line in set_cookies:
        jar.load(line)
    return "; ".join(f"{k}={m.value}" for k, m in jar.items() if m.value)


def _wait_port(port: int, proc: subprocess.Popen[str] | None = None,
               timeout: float = 120.0) -> None:
    """Wait until something answers HTTP on `port` (a ceiling, not a sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode}")
        try:
            _get(port, "/liveness", timeout=5)
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing answered on port {port}"
            time.sleep(0.2)


def _session_models(port: int, path: str = "/") -> list[Any]:
    """Open a session on an in-process server as a browser does (GET the page: Bokeh
    creates the session and runs the app then) and return the models of its document:
    everything the server would send to whoever asked."""
    import panel as pn

    status, _, _, _ = _get(port, path)
    assert status == 200, status
    server = next(s for s, _, _ in list(pn.state._servers.values()) if s.port == port)
    sessions = list(server._tornado._applications[path].sessions)
    assert len(sessions) == 1, len(sessions)
    return list(sessions[0].document.models)


def _logged(log: Path, text: str, timeout: float = 60.0) -> bool:
    """True once `text` is in the server's log (waits up to `timeout`: it writes it after
    answering the page)."""
    deadline = time.monotonic() + timeout
    while text not in log.read_text(encoding="utf-8"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _classes(models: list[Any]) -> set[str]:
    return {c for m in models for c in (getattr(m, "css_classes", None) or [])}


def _refused_models(models: list[Any]) -> bool:
    """The document of a refused session: the reason, and no part of the app."""
    names = {type(m).__name__ for m in models}
    return REFUSED in _classes(models) and "Tabs" not in names


def _admitted_models(models: list[Any]) -> bool:
    names = {type(m).__name__ for m in models}
    return "Tabs" in names and REFUSED not in _classes(models)


@pytest.fixture
def isolated_services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      embedded_sandbox: Any) -> Iterator[str]:
    """A fresh book and fresh process-wide services (the app of an admitted session uses
    them); every Panel server started by the test is stopped afterwards."""
    import panel as pn

    from brokerkit.book import close_books

    book_url = f"sqlite:///{tmp_path / 'book.db'}"
    monkeypatch.setenv("BROKERKIT_DATABASE_URL", book_url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    _ui._reset_services()
    embedded_sandbox.market.clock.freeze()
    yield book_url
    pn.state.reset()
    pn.config.authorize_callback = None
    _ui._reset_services()
    close_books(book_url)


def _pn_serve(app: Any, address: str | None) -> int:
    import panel as pn

    port = free_port()
    pn.serve(app, port=port, address=address, threaded=True, show=False, liveness=True,
             websocket_origin=[f"localhost:{port}", f"127.0.0.1:{port}"])
    _wait_port(port, timeout=60)
    return port


def _panel_serve(args: list[str], log: Path) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    out = open(log, "w", encoding="utf-8")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "panel", "serve", str(ROOT / "dashboards" / "app.py"),
         "--port", str(port), "--liveness", *args],
        stdout=out, stderr=subprocess.STDOUT, text=True, cwd=str(ROOT),
        env={**os.environ, "NO_PROXY": "127.0.0.1,localhost"})
    proc._log = out  # type: ignore[attr-defined]
    return proc, port


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    proc._log.close()  # type: ignore[attr-defined]


# -- every entry point ---------------------------------------------------------------------------

def test_r6_every_entry_point_refuses_a_non_loopback_address_without_sign_in(
        isolated_services: str, tmp_path: Path, figures: Callable[..., str]) -> None:
    """`panel serve` binds every address unless told otherwise (Bokeh's `--address`
    default, https://docs.bokeh.org/en/latest/docs/reference/command/subcommands/serve.html),
    so its default is refused too; 127.0.0.1 is local mode and served."""
    from brokerkit.ui.app import create_app

    tried, refused, outcomes = 0, 0, {}

    def record(name: str, was_refused: bool) -> None:
        nonlocal tried, refused
        tried += 1
        refused += was_refused
        outcomes[name] = "refused" if was_refused else "SERVED"

    # brokerkit serve: refused before it binds or prints anything
    done = subprocess.run([sys.executable, "-m", "brokerkit.cli", "serve", "--host", "0.0.0.0",
                           "--port", "0"], capture_output=True, text=True, timeout=120,
                          env={**os.environ})
    record("brokerkit serve --host 0.0.0.0",
           done.returncode == 2 and "refusing to serve the dashboard on '0.0.0.0'"
           in done.stderr and "dashboard at" not in done.stdout)

    # pn.serve of the app, the factory and an object built outside any session
    for name, app, address in [("pn.serve(create_app, address='0.0.0.0')", create_app,
                                "0.0.0.0"),
                               ("pn.serve(create_app) (Bokeh's default: every address)",
                                create_app, None),
                               ("pn.serve(create_app(), address='0.0.0.0')", create_app(),
                                "0.0.0.0")]:
        port = _pn_serve(app, address)
        record(name, _refused_models(_session_models(port)))

    # panel serve dashboards/app.py, with and without --address
    procs = [(f"panel serve dashboards/app.py {' '.join(args)}".strip(), *_panel_serve(
        args, tmp_path / f"panel{i}.log")) for i, args in enumerate(
        [["--address", "0.0.0.0"], [], ["--address", "127.0.0.1"]])]
    try:
        for _name, proc, port in procs:
            _wait_port(port, proc)
        # another process: its page's session runs the app script, which logs the refusal
        # (`create_app` logs it only when it returns the refusal page instead of the app)
        for i, (name, _proc, port) in enumerate(procs):
            status, _, _, _ = _get(port, "/app")
            assert status == 200
            if i < 2:
                record(name, _logged(tmp_path / f"panel{i}.log", "refusing to serve the "
                                     "dashboard on 'all addresses'"))
        # local mode is served (nothing refused) ... but not a request a proxy forwarded
        local_name, _, local_port = procs[2]
        local_ok = "refusing" not in (tmp_path / "panel2.log").read_text()
        _get(local_port, "/app", {"X-Forwarded-For": "203.0.113.9"})
        record(local_name + " via a proxy",
               _logged(tmp_path / "panel2.log", "through a proxy (X-Forwarded-For)"))
    finally:
        for _, proc, _ in procs:
            _stop(proc)

    port = _pn_serve(create_app, "127.0.0.1")
    local_pn_ok = _admitted_models(_session_models(port))

    figures("R6 entry points", tried=tried, refused=refused,
            local_mode_served=int(local_ok) + int(local_pn_ok), **{
                k.replace(" ", "_"): v for k, v in outcomes.items() if v != "refused"})
    assert refused == tried, outcomes
    assert local_ok and local_pn_ok  # the documented local mode still works


# -- sign-in: lockout, sign-out, cookies ---------------------------------------------------------

@pytest.fixture
def signed_server(isolated_services: str) -> Iterator[tuple[int, AuthConfig, list[float]]]:
    """`brokerkit serve` in this process with password users, behind a (pretend) https
    proxy (`use_xheaders`: X-Forwarded-Proto says https); its lockout clock is held still,
    so a backoff never runs out during the test."""
    from brokerkit.serve import serve

    now = [0.0]
    users = {name: {"role": ROLES[name], "password_hash": hash_password(pw)}
             for name, pw in PASSWORDS.items()}
    auth = AuthConfig.from_mapping({"users": users})
    assert auth is not None
    object.__setattr__(auth, "throttle", SignInThrottle(clock=lambda: now[0]))
    port = free_port()
    serve("127.0.0.1", port, auth=auth, use_config=False, threaded=True, use_xheaders=True)
    _wait_port(port, timeout=60)
    yield port, auth, now


def test_r6_thirty_wrong_passwords_lock_out_the_name_and_the_address_alike(
        signed_server: tuple[int, AuthConfig, list[float]],
        figures: Callable[..., str]) -> None:
    port, auth, now = signed_server
    answers: dict[str, list[str]] = {}
    for name, address in (("ana", "198.51.100.1"), ("nobody", "198.51.100.2")):
        got = []
        for i in range(30):
            status, location, cookies = _post_login(port, name, f"guess-{i}",
                                                    {"X-Forwarded-For": address})
            assert status == 302 and not cookies, (status, cookies)
            got.append(urllib.parse.unquote_plus(location.split("error=")[-1]))
        answers[name] = got
    # the right password, while locked out, is refused without being checked
    status, location, cookies = _post_login(port, "ana", PASSWORDS["ana"],
                                            {"X-Forwarded-For": "198.51.100.3"})
    locked_refused = "Too many" in urllib.parse.unquote_plus(location) and not cookies
    # another address is locked out of "ana" too (per user), and 198.51.100.1 of any name
    status, location_b, _ = _post_login(port, "tom", PASSWORDS["tom"],
                                        {"X-Forwarded-For": "198.51.100.1"})
    free = SignInThrottle.FREE_FAILURES
    checked = {n: sum("Invalid" in a for a in got) for n, got in answers.items()}
    locked = {n: sum("Too many" in a for a in got) for n, got in answers.items()}
    figures("R6 lockout", tried=60, checked=sum(checked.values()),
            refused_locked=sum(locked.values()), right_password_while_locked_refused=
            int(locked_refused), retry_after_s=auth.throttle.retry_after("ana"))
    assert checked == {"ana": free, "nobody": free}  # the same for a name that does not exist
    assert locked == {"ana": 30 - free, "nobody": 30 - free}
    assert answers["ana"] == answers["nobody"]
    assert locked_refused and "Too many" in urllib.parse.unquote_plus(location_b)
    assert auth.throttle.retry_after("ana") == SignInThrottle.MAX_DELAY
    now[0] += SignInThrottle.MAX_DELAY + 1  # once the backoff runs out, the user gets in
    status, _, cookies = _post_login(port, "ana", PASSWORDS["ana"],
                                     {"X-Forwarded-For": "198.51.100.4"})
    assert status == 302 and any(c.startswith("user=") for c in cookies)


def test_r6_a_cookie_copied_before_sign_out_no_longer_works_after_it(
        signed_server: tuple[int, AuthConfig, list[float]],
        figures: Callable[..., str]) -> None:
    port, auth, _ = signed_server
    https = {"X-Forwarded-Proto": "https"}
    _, _, login_cookies = _post_login(port, "tom", PASSWORDS["tom"], https)
    copied = _cookie_header(login_cookies)
    status_in, _, _, _ = _get(port, "/", {"Cookie": copied})
    assert status_in == 200  # signed in: the page, not a redirect to /login
    assert len(auth.sessions) == 1

    # every cookie set at sign-in: HttpOnly, SameSite=Lax, Secure (https behind the proxy)
    attrs = [line.lower() for line in login_cookies]
    hardened = [a for a in attrs if "httponly" in a and "samesite=lax" in a and "secure" in a]
    _, _, plain_cookies = _post_login(port, "vera", PASSWORDS["vera"])  # plain http
    no_secure_over_http = all("secure" not in c.lower() and "samesite=lax" in c.lower()
                              for c in plain_cookies)

    status_out, _, _, _ = _get(port, "/logout", {"Cookie": copied, **https})
    replays = [_get(port, path, {"Cookie": copied}) for path in ("/", "/", "/?x=1")]
    refused = sum(status == 302 and "/login" in headers.get("Location", "")
                  for status, headers, _, _ in replays)
    figures("R6 sign-out", cookies_set=len(attrs), hardened=len(hardened),
            replays_tried=len(replays), replays_refused=refused)
    assert {c.split("=")[0] for c in attrs} >= {"user", "id_token", "brokerkit_session"}
    assert len(hardened) == len(attrs) and no_secure_over_http
    assert status_out == 200 and refused == len(replays)


# -- roles, by every route -----------------------------------------------------------------------

#: Triggers a Bokeh ButtonClick on every model with css class `cls`, from the page's own
#: document: exactly the message the websocket carries when a button is clicked, sent for
#: buttons the viewer is never shown.
_CLICK = """(cls) => {
  const E = Bokeh.require('core/bokeh_events').ButtonClick;
  const models = [...Bokeh.documents[0].all_models]
      .filter(m => (m.css_classes || []).includes(cls));
  for (const m of models) m.trigger_event(new E());
  return models.length;
}"""
_SET_VALUE = """([cls, value]) => {
  const models = [...Bokeh.documents[0].all_models]
      .filter(m => (m.css_classes || []).includes(cls) && 'value' in m);
  for (const m of models) m.value = value;
  return models.length;
}"""


def _sign_in_page(browser: Any, url: str, user: str) -> Any:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(_ui.TIMEOUT_MS)
    page.goto(url)
    page.locator("input[name='username']").fill(user)
    page.locator("input[name='password']").fill(PASSWORDS[user])
    page.locator("input[name='password']").press("Enter")
    page.locator(".app-user").wait_for()
    return page


@pytest.mark.ui
def test_r6_viewer_cannot_trade_halt_resume_or_sync_even_by_direct_messages(
        browser: Any, isolated_services: str, figures: Callable[..., str],
        wait_until: Callable[..., None]) -> None:
    """A viewer's session has no ticket and no resume at all; the halt, reduce-only and
    reconciliation buttons it does hold (hidden) refuse on the server, audited with the
    user."""
    from playwright.sync_api import expect

    from brokerkit.execution.service import get_execution_service
    from brokerkit.serve import serve

    users = {name: {"role": ROLES[name], "password_hash": hash_password(pw)}
             for name, pw in PASSWORDS.items()}
    auth = AuthConfig.from_mapping({"users": users})
    port = free_port()
    serve("127.0.0.1", port, auth=auth, use_config=False, threaded=True)
    _wait_port(port, timeout=60)
    url = f"http://localhost:{port}/"

    vera = _sign_in_page(browser, url, "vera")
    expect(vera.locator(".app-user")).to_contain_text("vera (viewer)")
    # the tabs build their pages when opened (and only the open one is in the document)
    vera.locator(".bk-tab", has_text="Trade").click()
    expect(vera.locator(".trading-state")).to_have_text("ACTIVE")
    absent = {cls: vera.evaluate(_CLICK, cls) for cls in
              ("btn-preview", "btn-place", "btn-confirm", "ks-resume")}
    vera.evaluate(_SET_VALUE, ["ks-reason", "viewer says halt"])
    sent = {cls: vera.evaluate(_CLICK, cls) for cls in ("ks-halt", "ks-reduce")}
    vera.locator(".bk-tab", has_text="Reconciliation").click()
    expect(vera.locator(".recon-summary")).to_be_attached()
    vera.evaluate(_SET_VALUE, ["recon-reason", "viewer says sync"])
    sent |= {cls: vera.evaluate(_CLICK, cls) for cls in
             ("btn-recon-run", "btn-recon-sync", "btn-recon-confirm")}
    book = get_execution_service().book

    def refusals() -> Any:
        audit = book.audit_frame()
        return audit[audit["action"].str.startswith("refused_")]

    wait_until(lambda: len(refusals()) >= 4, 60, "the refused actions in the audit log")
    rows = refusals()
    state = book.get_trading_state()
    runs = book.reconciliation_runs(10)
    orders = book.orders_frame()
    figures("R6 viewer", tried=sum(sent.values()) + sum(absent.values()),
            models_absent=sum(1 for n in absent.values() if n == 0),
            refused_audited=len(rows), state=state.state, recon_runs=len(runs))
    assert absent == {"btn-preview": 0, "btn-place": 0, "btn-confirm": 0, "ks-resume": 0}
    assert sent["ks-halt"] == 1 and sent["ks-reduce"] == 1 and sent["btn-recon-run"] == 1
    assert state.state == "ACTIVE" and len(runs) == 0
    assert len(orders) == 0
    assert set(rows["actor"]) == {"vera"}
    assert {"refused_halt", "refused_reduce_only", "refused_reconcile"} <= set(rows["action"])

    # the trader's session holds no resume either, and their halt is recorded as them
    tom = _sign_in_page(browser, url, "tom")
    tom.locator(".bk-tab", has_text="Trade").click()
    expect(tom.locator(".trading-state")).to_have_text("ACTIVE")
    assert tom.evaluate(_CLICK, "ks-resume") == 0
    tom.evaluate(_SET_VALUE, ["ks-reason", "trader halts"])
    tom.evaluate(_CLICK, "ks-halt")
    wait_until(lambda: book.get_trading_state().state == "HALTED", 60, "the trader's halt")
    halted = book.get_trading_state()
    assert halted.actor == "tom" and halted.reason == "trader halts"


def test_r6_a_session_without_sign_in_is_refused_unless_local(
        figures: Callable[..., str]) -> None:
    """`session_access` outside any server: refused (its addresses cannot be read), never
    the operating-system user."""
    from brokerkit.serve import session_access

    with pytest.raises(ConfigError, match="without sign-in"):
        session_access(None)
    figures("R6 no server", tried=1, refused=1)
