"""Who may serve, log in and act: password hashes, roles, and the refusal to bind without auth
(no browser needed)."""

from __future__ import annotations

import argparse
import io

import pytest

from brokerkit.errors import ConfigError
from brokerkit.serve import cmd_serve, is_loopback, serve
from brokerkit.ui.auth import (
    Access,
    AuthConfig,
    NotAuthorized,
    User,
    can,
    hash_password,
    verify_password,
)


def test_password_hash_verifies_only_the_same_password():
    stored = hash_password("correct horse")
    assert "correct horse" not in stored
    assert verify_password("correct horse", stored)
    assert not verify_password("correct horsE", stored)
    assert not verify_password("correct horse", "scrypt$garbage")
    assert hash_password("correct horse") != stored  # salted


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
