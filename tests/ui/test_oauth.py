"""Sign-in through Panel's OAuth providers: the `[serve]` configuration, its refusals, the role
of each signed-in user, and a real sign-in in the browser against a local OpenID Connect
provider (`oidc_provider.py`) with `brokerkit serve` running as its own process."""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from oidc_provider import OIDCProvider
from playwright.sync_api import expect
from serveproc import ServeProcess

from brokerkit.errors import ConfigError
from brokerkit.serve import cmd_serve, free_port, serve
from brokerkit.ui.auth import AuthConfig, hash_password, load_serve_auth
from brokerkit.ui.oauth import OAuthConfig, user_names

TIMEOUT_MS = 30_000
CLIENT_ID = "brokerkit-dashboard"
CLIENT_SECRET = "s3cret-client-Zq81x"  # a test value, checked never to leak
COOKIE_SECRET = "cookie-secret-7fK2p"
SECRETS = {"dash_oauth_key": CLIENT_ID, "dash_oauth_secret": CLIENT_SECRET,
           "dash_cookie": COOKIE_SECRET}


@pytest.fixture
def enc_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def oauth_secrets(monkeypatch: pytest.MonkeyPatch, enc_key: str) -> dict[str, str]:
    """The client id, client secret, cookie secret and encryption key in the env store."""
    values = {**SECRETS, "dash_oauth_encryption": enc_key}
    for name, value in values.items():
        monkeypatch.setenv(f"BROKERKIT_SECRET_{name.upper()}", value)
    return values


def _table(**overrides: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "oauth_provider": "github", "oauth_key": "dash_oauth_key",
        "oauth_secret": "dash_oauth_secret", "cookie_secret": "dash_cookie",
        "oauth_encryption_key": "dash_oauth_encryption",
        "roles": {"Ana@Example.com": "admin", "octocat": "trader"}}
    for key, value in overrides.items():
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    return table


# -- configuration ----------------------------------------------------------------------------

def test_oauth_config_reads_provider_and_secrets_from_the_store(oauth_secrets):
    auth = load_serve_auth(_table(oauth_redirect_uri="https://dash.example.com/login",
                                  oauth_extra_params={"scope": "read:user"}))
    assert isinstance(auth, OAuthConfig)
    assert auth.provider == "github" and auth.redirect_uri == "https://dash.example.com/login"
    for value in oauth_secrets.values():  # nothing secret in its repr
        assert value not in repr(auth)
    assert auth.login_note == "sign-in through github OAuth"


@pytest.mark.parametrize(("missing", "key"), [
    ("oauth_key", "serve.oauth_key"),
    ("oauth_secret", "serve.oauth_secret"),
    ("cookie_secret", "serve.cookie_secret"),
    ("oauth_encryption_key", "serve.oauth_encryption_key"),
])
def test_provider_without_a_credential_is_refused_naming_the_key(oauth_secrets, missing, key):
    with pytest.raises(ConfigError, match=re.escape(f"[{key}] is missing")) as info:
        load_serve_auth(_table(**{missing: None}))
    assert info.value.key == key


def test_a_secret_named_but_absent_from_the_store_is_refused_naming_the_key(oauth_secrets):
    with pytest.raises(ConfigError, match=r"\[serve.oauth_secret\] secret 'nope' not found"):
        load_serve_auth(_table(oauth_secret="nope"))


@pytest.mark.parametrize(("overrides", "pattern"), [
    ({"oauth_provider": "myspace"}, r"\[serve.oauth_provider\] is 'myspace'"),
    ({"oauth_encryption_key": "dash_cookie"}, r"\[serve.oauth_encryption_key\] names a secret "
                                              r"that is not a Fernet key"),
    ({"roles": {"ana": "boss"}}, r"\[serve.roles.ana\] is 'boss'"),
    ({"default_role": "root"}, r"\[serve.default_role\] is 'root'"),
    ({"roles": None}, r"\[serve.roles\] gives no one a role"),
    ({"oauth_secret": "s3cret-literal-value!"}, r"\[serve.oauth_secret\] must name a secret"),
    ({"oauth_provider": "generic"}, r"\[serve.oauth_extra_params.AUTHORIZE_URL\] is missing"),
    ({"oauth_sceret": "x"}, r"\[serve.oauth_sceret\] unknown key"),
    ({"users": {"ana": {"role": "admin", "password_hash": hash_password("pw")}}},
     r"\[serve.oauth_provider\] and users are both set"),
])
def test_misconfigured_oauth_is_refused_naming_the_key(oauth_secrets, overrides, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_serve_auth(_table(**overrides))


def test_oauth_settings_without_a_provider_are_refused(oauth_secrets):
    with pytest.raises(ConfigError, match=r"\[serve.oauth_key\] is set but "
                                          r"serve.oauth_provider is not"):
        load_serve_auth({"oauth_key": "dash_oauth_key", "cookie_secret": "dash_cookie"})
    with pytest.raises(ConfigError, match=r"\[serve.roles\] is set but"):
        load_serve_auth({"roles": {"ana": "admin"}})


def test_roles_follow_the_user_name_or_email_then_the_default(oauth_secrets):
    auth = load_serve_auth(_table())
    assert isinstance(auth, OAuthConfig)
    assert auth.role_of("octocat") == "trader"
    assert auth.role_of("ana@example.COM") == "admin"  # e-mails are not case-sensitive
    assert auth.role_of("123456", {"email": "ana@example.com"}) == "admin"  # by a claim
    assert auth.role_of("mallory", {"email": "mallory@example.com"}) is None
    assert auth.role_of("guest") is None and auth.role_of(None) is None
    assert not auth.authorize({"email": "mallory@example.com"})
    lenient = load_serve_auth(_table(default_role="viewer"))
    assert isinstance(lenient, OAuthConfig)
    assert lenient.role_of("mallory") == "viewer" and lenient.role_of("octocat") == "trader"
    assert lenient.role_of("guest") is None
    assert user_names("Ana", {"email": "ANA@x.org", "login": "ana"}) == ["ana", "ana@x.org"]


def test_basic_users_still_load_as_before():
    auth = load_serve_auth({"users": {"ana": {"role": "admin",
                                              "password_hash": hash_password("pw")}}})
    assert isinstance(auth, AuthConfig) and auth.role_of("ana") == "admin"
    assert load_serve_auth({}) is None


def test_misconfigured_oauth_stops_serve_before_it_starts(oauth_secrets, tmp_path,
                                                          monkeypatch):
    """Refusals happen before a server starts: the misconfigured one names its key and
    announces nothing; a sound one counts as authentication for a non-loopback address."""
    from brokerkit.serve import _refuse_unless_safe

    _refuse_unless_safe("0.0.0.0", load_serve_auth(_table()))  # accepted: no raise
    cfg = tmp_path / "brokerkit.toml"
    cfg.write_text('[serve]\noauth_provider = "google"\noauth_key = "dash_oauth_key"\n'
                   'oauth_secret = "dash_oauth_secret"\n'
                   'oauth_encryption_key = "dash_oauth_encryption"\n'
                   'default_role = "viewer"\n')
    monkeypatch.setenv("BROKERKIT_CONFIG", str(cfg))
    out = io.StringIO()
    with pytest.raises(ConfigError, match=r"\[serve.cookie_secret\] is missing"):
        cmd_serve(argparse.Namespace(host="0.0.0.0", port=0, show=False), out)
    assert out.getvalue() == ""
    with pytest.raises(ConfigError, match=r"\[serve.cookie_secret\] is missing"):
        serve("127.0.0.1", 0)


def test_brokerkit_serve_exits_at_startup_naming_the_missing_key(oauth_secrets, tmp_path):
    cfg = tmp_path / "brokerkit.toml"
    cfg.write_text('[serve]\noauth_provider = "azure"\noauth_key = "dash_oauth_key"\n'
                   'cookie_secret = "dash_cookie"\n'
                   'oauth_encryption_key = "dash_oauth_encryption"\ndefault_role = "viewer"\n')
    env = {"BROKERKIT_CONFIG": str(cfg)}
    done = subprocess.run([sys.executable, "-m", "brokerkit.cli", "serve", "--port", "0"],
                          env={**_environ(), **env}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, done.stderr
    assert "[serve.oauth_secret] is missing: the azure client secret" in done.stderr
    assert "dashboard at" not in done.stdout
    assert CLIENT_SECRET not in done.stderr + done.stdout


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


# -- a real sign-in ----------------------------------------------------------------------------

def _write_config(path: Path, provider: OIDCProvider, port: int) -> None:
    params = "\n".join(f'{k} = "{v}"' for k, v in provider.extra_params().items())
    path.write_text(f"""
[serve]
oauth_provider = "generic"
oauth_key = "dash_oauth_key"
oauth_secret = "dash_oauth_secret"
oauth_encryption_key = "dash_oauth_encryption"
cookie_secret = "dash_cookie"
oauth_redirect_uri = "http://localhost:{port}/login"

[serve.oauth_extra_params]
{params}

[serve.roles]
"vera@example.com" = "viewer"
"tom@example.com" = "trader"
""", encoding="utf-8")


def _sign_in(browser: Any, url: str, email: str) -> Any:
    """A fresh browser context (no cookies) signed in as `email`; returns its page."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    expect(page.locator("#email")).to_be_visible()  # the provider's form, via /login
    assert page.url.startswith("http://127.0.0.1:")
    page.locator("#email").fill(email)
    page.locator("#signin").click()
    return page


@pytest.mark.ui
def test_oauth_sign_in_maps_roles_viewer_sees_no_ticket_trader_does(
        browser, oauth_secrets, tmp_path):
    with OIDCProvider(CLIENT_ID, CLIENT_SECRET) as idp:
        port = free_port()
        cfg = tmp_path / "brokerkit.toml"
        _write_config(cfg, idp, port)
        env = {"BROKERKIT_CONFIG": str(cfg),
               "BROKERKIT_DATABASE_URL": f"sqlite:///{tmp_path / 'book.db'}"}
        with ServeProcess(port, env, tmp_path / "serve.log") as server:
            server.wait_alive()
            assert "(sign-in through generic OAuth)" in server.output()

            vera = _sign_in(browser, server.url, "vera@example.com")
            expect(vera.locator(".app-user")).to_contain_text("vera@example.com (viewer)",
                                                              timeout=TIMEOUT_MS)
            vera.locator(".bk-tab", has_text="Trade").click()
            expect(vera.locator(".trading-state")).to_have_text("ACTIVE", timeout=TIMEOUT_MS)
            expect(vera.locator(".blotter-orders")).to_be_visible()
            expect(vera.locator(".btn-preview")).to_have_count(0)
            expect(vera.locator(".ks-halt")).to_be_hidden()
            pages = [vera.content()]

            tom = _sign_in(browser, server.url, "tom@example.com")
            expect(tom.locator(".app-user")).to_contain_text("tom@example.com (trader)",
                                                             timeout=TIMEOUT_MS)
            tom.locator(".bk-tab", has_text="Trade").click()
            expect(tom.locator(".btn-preview")).to_be_visible(timeout=TIMEOUT_MS)
            expect(tom.locator(".ks-halt")).to_be_visible()
            expect(tom.locator(".ks-resume")).to_have_count(0)  # only admins resume
            pages.append(tom.content())

            eve = _sign_in(browser, server.url, "eve@example.com")  # signed in, no role
            expect(eve.get_by_role("heading", name=re.compile(
                "Access denied! User 'eve@example.com' is not authorized"))).to_be_visible()
            expect(eve.locator(".app-user")).to_have_count(0)
            pages.append(eve.content())
            log = server.output()

        # the whole flow went through the provider, and the client secret only to it
        kinds = [kind for kind, _ in idp.requests]
        assert kinds.count("token") == 3 and kinds.count("userinfo") == 3
        tokens = [req for kind, req in idp.requests if kind == "token"]
        assert all(t["client_secret"] == CLIENT_SECRET for t in tokens)
        assert all(t["redirect_uri"] == f"http://localhost:{port}/login" for t in tokens)
        for secret in (CLIENT_SECRET, COOKIE_SECRET, oauth_secrets["dash_oauth_encryption"]):
            assert secret not in log
            assert all(secret not in html for html in pages)
