"""Who may serve, log in and act: password hashes, roles, and the refusal to bind without auth
(no browser needed)."""

from __future__ import annotations

import argparse
import base64
import hashlib
import io

import pytest

from brokerkit.errors import ConfigError
from brokerkit.serve import cmd_serve, is_loopback, serve
from brokerkit.ui.auth import (
    Access,
    AuthConfig,
    NotAuthorized,
    SignInSessions,
    SignInThrottle,
    User,
    can,
    hash_password,
    needs_rehash,
    verify_password,
)


def _legacy_scrypt_hash(password: str) -> str:
    """A hash in the format brokerkit wrote before argon2 (scrypt$N$r$p$salt$hash, base64),
    built here with hashlib alone."""
    salt = b"legacy-salt-0001"
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return f"scrypt${2**14}$8$1${base64.b64encode(salt).decode()}$" \
           f"{base64.b64encode(digest).decode()}"


def test_password_hash_is_argon2id_and_verifies_only_the_same_password():
    """argon2id through argon2-cffi (https://argon2-cffi.readthedocs.io/, RFC 9106)."""
    stored = hash_password("correct horse")
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert verify_password("correct horse", stored)
    assert not verify_password("correct horsE", stored)
    assert not verify_password("correct horse", "scrypt$garbage")
    assert not verify_password("correct horse", "$argon2id$garbage")
    assert hash_password("correct horse") != stored  # salted
    assert not needs_rehash(stored)
    with pytest.raises(ValueError, match="non-empty"):
        hash_password("")


def test_scrypt_hashes_still_verify_and_are_rehashed_in_the_config_file_on_sign_in(tmp_path):
    legacy = _legacy_scrypt_hash("pw-ana")
    assert verify_password("pw-ana", legacy) and not verify_password("pw-anA", legacy)
    assert needs_rehash(legacy)
    cfg = tmp_path / "brokerkit.toml"
    cfg.write_text(f'# users\n[serve.users.ana]\nrole = "admin"  # keep me\n'
                   f'password_hash = "{legacy}"\n', encoding="utf-8")
    import tomllib

    table = tomllib.loads(cfg.read_text())["serve"]
    auth = AuthConfig.from_mapping(table, source=cfg)
    assert auth is not None
    assert auth.authenticate("ana", "wrong") is None
    assert legacy in cfg.read_text()  # a failed sign-in changes nothing
    user = auth.authenticate("ana", "pw-ana")
    assert user is not None and user.password_hash.startswith("$argon2id$")
    text = cfg.read_text()
    assert legacy not in text and user.password_hash in text
    assert "# keep me" in text and text.startswith("# users")  # the rest of the file kept
    again = AuthConfig.from_mapping(tomllib.loads(text)["serve"], source=cfg)
    assert again is not None and again.authenticate("ana", "pw-ana") is not None


def test_five_failed_sign_ins_lock_a_name_and_an_address_with_doubling_backoff():
    now = [1000.0]
    throttle = SignInThrottle(clock=lambda: now[0])
    for _ in range(SignInThrottle.FREE_FAILURES - 1):
        throttle.failed("ana", "10.0.0.9")
        assert throttle.retry_after("ana", "10.0.0.9") == 0
    throttle.failed("ana", "10.0.0.9")  # the 5th failure: 1 s
    assert throttle.retry_after("ana") == 1.0
    assert throttle.retry_after("bob", "10.0.0.9") == 1.0  # the address too
    assert throttle.retry_after("bob", "10.0.0.7") == 0
    now[0] += 1.0
    throttle.failed("ana", "10.0.0.9")
    assert throttle.retry_after("ana") == 2.0
    for _ in range(20):
        throttle.failed("ana")
    assert throttle.retry_after("ana") == SignInThrottle.MAX_DELAY
    throttle.succeeded("ana")
    assert throttle.retry_after("ana") == 0
    assert throttle.retry_after("x", "10.0.0.9") > 0  # the address stays locked


def test_sign_in_sessions_close_on_sign_out_and_expire():
    now = [0.0]
    sessions = SignInSessions(max_age_days=1, clock=lambda: now[0])
    sid = sessions.open("ana")
    assert sessions.user_of(sid) == "ana" and sessions.user_of(sid.encode()) == "ana"
    assert sessions.user_of("forged") is None and sessions.user_of(None) is None
    assert sessions.close(sid) and sessions.user_of(sid) is None
    assert not sessions.close(sid)
    other = sessions.open("bob")
    now[0] += 86401
    assert sessions.user_of(other) is None and len(sessions) == 0


def test_only_admins_resume_and_viewers_act_on_nothing():
    assert [r for r in ("viewer", "trader", "admin") if can(r, "resume")] == ["admin"]
    assert [r for r in ("viewer", "trader", "admin") if can(r, "halt")] == ["trader", "admin"]
    assert [r for r in ("viewer", "trader", "admin") if can(r, "trade")] == ["trader", "admin"]
    assert not can("viewer", "reduce_only")
    assert not can("root", "view")


def test_access_require_rechecks_the_role_at_the_time_of_the_action():
    roles = {"tom": "trader"}
    access = Access("tom", "trader", recheck=lambda: roles.get("tom"))
    assert access.require("trade") == "tom"
    with pytest.raises(NotAuthorized, match="'tom' \\(trader\\) may not resume"):
        access.require("resume")
    del roles["tom"]  # removed from the configuration while the session is open
    with pytest.raises(NotAuthorized, match="unknown"):
        access.require("trade")


def test_a_refused_action_is_reported_with_the_user_before_it_raises():
    seen: list[tuple[str, str]] = []
    access = Access("vera", "viewer", on_refused=lambda action, msg: seen.append((action, msg)))
    with pytest.raises(NotAuthorized):
        access.require("halt")
    assert seen == [("halt", "'vera' (viewer) may not halt: only admin, trader may")]
    assert access.require("view") == "vera" and len(seen) == 1


def test_auth_config_reads_users_and_rejects_plaintext_passwords():
    good = hash_password("pw")
    auth = AuthConfig.from_mapping({"users": {"ana": {"role": "admin", "password_hash": good}}})
    assert auth is not None and auth.role_of("ana") == "admin"
    assert auth.authenticate("ana", "pw") == User("ana", "admin", good)
    assert auth.authenticate("ana", "nope") is None
    assert auth.authenticate("bob", "pw") is None
    assert auth.authorize({"user": "ana"}) and not auth.authorize({"user": "bob"})
    assert "pw" not in repr(auth) and good not in repr(auth)
    with pytest.raises(ConfigError, match=r"serve.users.ana.password_hash"):
        AuthConfig.from_mapping({"users": {"ana": {"role": "admin", "password_hash": "pw"}}})
    with pytest.raises(ConfigError, match=r"serve.users.ana.role.*'boss'"):
        AuthConfig.from_mapping({"users": {"ana": {"role": "boss", "password_hash": good}}})
    assert AuthConfig.from_mapping({}) is None


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_addresses_are_recognised(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "dashboard.example.com"])
def test_serving_beyond_loopback_without_auth_is_refused(host):
    with pytest.raises(ConfigError, match=f"refusing to serve the dashboard on '{host}'"):
        serve(host, 5006, use_config=False)
    out = io.StringIO()
    with pytest.raises(ConfigError, match="without authentication"):
        cmd_serve(argparse.Namespace(host=host, port=5006, show=False), out)
    assert out.getvalue() == ""  # refused before announcing anything
