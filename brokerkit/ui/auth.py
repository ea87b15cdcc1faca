"""Who may use the dashboard, and what each role may do.

Roles: `viewer` (sees everything, acts on nothing), `trader` (places orders, halts, sets
reduce-only), `admin` (also resumes trading). `can(role, action)` is the one rule; the served
app decides it globally (before a session exists: unknown users get HTTP 403) and every order
and kill-switch handler checks it again through `Access.require`.

Passwords are never stored: the configuration holds scrypt hashes made by `hash_password`
(``python -m brokerkit.ui.auth`` prints one for a password typed at a prompt), and logins are
checked by `auth_provider(config)`, a Panel basic-auth provider that compares hashes in constant
time. The configuration, a `[serve]` table::

    [serve]
    cookie_secret = "dashboard_cookie"     # name of a secret in the store (optional)
    [serve.users.ana]
    role = "admin"
    password_hash = "scrypt$16384$8$1$...$..."

Sign-in through an OAuth provider instead (GitHub, Google, Azure AD, Okta, any OpenID Connect
provider...) is `brokerkit.ui.oauth`; `load_serve_auth(table)` reads either from `[serve]`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from ..errors import BrokerkitError, ConfigError

if TYPE_CHECKING:
    from .oauth import OAuthConfig

__all__ = [
    "ACTIONS",
    "ROLES",
    "Access",
    "AuthConfig",
    "NotAuthorized",
    "ServeAuth",
    "User",
    "auth_provider",
    "can",
    "hash_password",
    "load_serve_auth",
    "verify_password",
]

ROLES = ("viewer", "trader", "admin")
#: action -> the roles allowed to do it.
ACTIONS: Mapping[str, frozenset[str]] = {
    "view": frozenset(ROLES),
    "trade": frozenset({"trader", "admin"}),
    "halt": frozenset({"trader", "admin"}),
    "reduce_only": frozenset({"trader", "admin"}),
    "resume": frozenset({"admin"}),
    "reconcile": frozenset({"trader", "admin"}),  # run a reconciliation, sync the book
}

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


class NotAuthorized(BrokerkitError):
    """The acting user's role does not allow the action."""

    def __init__(self, user: str, role: str, action: str) -> None:
        self.user, self.role, self.action = user, role, action
        allowed = ", ".join(sorted(ACTIONS.get(action, ()))) or "nobody"
        super().__init__(f"{user!r} ({role}) may not {action.replace('_', ' ')}: "
                         f"only {allowed} may")


def can(role: str, action: str) -> bool:
    """True when `role` may do `action` (unknown roles and actions may do nothing)."""
    return role in ACTIONS.get(action, frozenset())


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """An scrypt hash of `password`, as ``scrypt$N$r$p$<salt>$<hash>`` (base64 parts)."""
    if not password:
        raise ValueError("a password must not be empty")
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R,
                            p=_SCRYPT_P, dklen=32)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True when `password` matches the hash `stored` (made by `hash_password`)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n),
                             r=int(r), p=int(p), dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


@dataclass(frozen=True)
class User:
    """A dashboard user: a role and a password hash (never the password)."""

    name: str
    role: str
    password_hash: str = field(repr=False)


@dataclass(frozen=True)
class AuthConfig:
    """The users allowed in, and the secret that signs their login cookies."""

    users: Mapping[str, User]
    cookie_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, where: str = "serve") -> AuthConfig | None:
        """Read a `[serve]` table (see the module doc); None when it defines no users.
        `cookie_secret` names a secret in the store."""
        users: dict[str, User] = {}
        raw = data.get("users", {})
        if not isinstance(raw, Mapping):
            raise ConfigError("is not a table", key=f"{where}.users",
                              expected="a table of users")
        for name, body in raw.items():
            key = f"{where}.users.{name}"
            if not isinstance(body, Mapping):
                raise ConfigError("is not a table", key=key, expected="role and password_hash")
            role, pw = body.get("role"), body.get("password_hash")
            if role not in ROLES:
                raise ConfigError(f"is {role!r}", key=f"{key}.role",
                                  expected="one of " + ", ".join(ROLES))
            if not isinstance(pw, str) or not pw.startswith("scrypt$") or pw.count("$") != 5:
                raise ConfigError("is not a password hash", key=f"{key}.password_hash",
                                  expected="the output of python -m brokerkit.ui.auth")
            users[name] = User(name, role, pw)
        if not users:
            return None
        ref = data.get("cookie_secret")
        if ref is None:
            return cls(users)
        if not isinstance(ref, str):
            raise ConfigError(f"is {ref!r}", key=f"{where}.cookie_secret",
                              expected="the name of a secret in the store")
        from ..secrets import get_secret_store

        secret = get_secret_store().resolve({"cookie_secret": ref})["cookie_secret"]
        return cls(users, secret.reveal())

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if `password` is theirs, else None (unknown names cost the same time)."""
        user = self.users.get(name)
        if user is None:
            verify_password(password, hash_password("x", salt=b"0" * 16))
            return None
        return user if verify_password(password, user.password_hash) else None

    def role_of(self, name: str | None) -> str | None:
        """The role of user `name`, or None for someone not in the configuration."""
        user = self.users.get(name or "")
        return user.role if user is not None else None

    def authorize(self, user_info: Mapping[str, Any] | None, *_: Any) -> bool:
        """Panel's `authorize_callback`: only configured users get a session."""
        return self.role_of((user_info or {}).get("user")) is not None

    def session_access(self) -> Access | None:
        """The `Access` of the session being created (None: not a configured user)."""
        import panel as pn

        user = pn.state.user or ""
        role = self.role_of(user)
        if role is None:
            return None
        return Access(user=user, role=role, recheck=lambda: self.role_of(user))

    @property
    def login_note(self) -> str:
        """How people sign in, for the `brokerkit serve` banner."""
        return "login required"

    def serve_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of `pn.serve` that turn this login on."""
        return {"auth_provider": auth_provider(self), "cookie_secret": self.cookie_secret}


#: Either way of signing in to a served dashboard: both offer `authorize` (Panel's global
#: `authorize_callback`), `session_access()`, `serve_kwargs()` and `login_note`.
ServeAuth: TypeAlias = "AuthConfig | OAuthConfig"

#: The keys of the `[serve]` table.
_SERVE_KEYS = frozenset({"users", "cookie_secret"})


def load_serve_auth(data: Mapping[str, Any], *, where: str = "serve") -> ServeAuth | None:
    """The sign-in a `[serve]` table configures: hashed-password users (`AuthConfig`), an
    OAuth provider (`brokerkit.ui.oauth.OAuthConfig`), or None. Raises `ConfigError` naming
    the key at fault: an unknown key, both kinds at once, a missing secret."""
    from .oauth import OAUTH_KEYS, OAuthConfig

    for key in data:
        if key not in _SERVE_KEYS | OAUTH_KEYS:
            raise ConfigError("unknown key", key=f"{where}.{key}",
                              expected="one of " + ", ".join(sorted(_SERVE_KEYS | OAUTH_KEYS)))
    if data.get("users") and data.get("oauth_provider") is not None:
        raise ConfigError("and users are both set: a server signs people in one way",
                          key=f"{where}.oauth_provider",
                          expected=f"either [{where}.users.NAME] or {where}.oauth_provider")
    oauth = OAuthConfig.from_mapping(data, where=where)
    if oauth is not None:
        return oauth
    return AuthConfig.from_mapping(data, where=where)


@dataclass
class Access:
    """The acting user of a session and their role; `require` re-checks before every action.

    `recheck`, when given, returns the role the user has *now* (None: not allowed any more);
    served apps pass one, so a role removed from the configuration stops the next action."""

    user: str
    role: str
    recheck: Callable[[], str | None] | None = None

    def can(self, action: str) -> bool:
        """True when this user may do `action` (as decided when the session started)."""
        return can(self.role, action)

    def require(self, action: str) -> str:
        """The acting user's name if they may do `action` now; raises `NotAuthorized`."""
        role = self.recheck() if self.recheck is not None else self.role
        if role is None or not can(role, action):
            raise NotAuthorized(self.user, role or "unknown", action)
        return self.user


def auth_provider(auth: AuthConfig) -> Any:
    """A Panel basic-auth provider whose login page checks passwords against `auth`'s hashes
    (Panel's own compares plaintext)."""
    from panel.auth import BasicAuthProvider, BasicLoginHandler

    class HashedLoginHandler(BasicLoginHandler):  # type: ignore[misc]
        def _validate(self, username: str, password: str) -> bool:
            return auth.authenticate(username, password) is not None

    class HashedAuthProvider(BasicAuthProvider):  # type: ignore[misc]
        @property
        def login_handler(self) -> type:
            HashedLoginHandler._login_endpoint = self._login_endpoint
            HashedLoginHandler._login_template = self._login_template
            return HashedLoginHandler

    return HashedAuthProvider()


def main() -> int:  # pragma: no cover - interactive
    """Print the hash of a password typed at a prompt (for `[serve.users.NAME]`)."""
    import getpass

    pw = getpass.getpass("password: ")
    if pw != getpass.getpass("again: "):
        sys.stderr.write("the passwords differ\n")
        return 1
    print(hash_password(pw))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
