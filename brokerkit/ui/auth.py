"""Who may use the dashboard, how they sign in, and what each role may do.

Roles: `viewer` (sees everything, acts on nothing), `trader` (places orders, halts, sets
reduce-only), `admin` (also resumes trading). `can(role, action)` is the one rule; the served
app decides it globally (before a session exists: unknown users get HTTP 403) and every order
and kill-switch handler checks it again through `Access.require` (a refusal is audited).

Passwords are never stored: the configuration holds argon2id hashes made by `hash_password`
(argon2-cffi; ``python -m brokerkit.ui.auth`` prints one for a password typed at a prompt).
Hashes of the earlier ``scrypt$`` format still verify, and are replaced by an argon2id hash in
the configuration file at the user's next sign-in. The configuration, a `[serve]` table::

    [serve]
    cookie_secret = "dashboard_cookie"     # name of a secret in the store (optional)
    [serve.users.ana]
    role = "admin"
    password_hash = "$argon2id$v=19$m=65536,t=3,p=4$...$..."

Signing in (`auth_provider`): after `SignInThrottle.FREE_FAILURES` wrong passwords for one user
name, or from one address, further attempts are refused without checking the password for a
delay that doubles with each failure (the same answer for names that exist and names that do
not). Each sign-in opens a server-side session (`SignInSessions`) named by a signed cookie;
signing out closes it, so a copied cookie no longer works. Every cookie is HttpOnly,
SameSite=Lax, and Secure when the request came over https.

Sign-in through an OAuth provider instead (GitHub, Google, Azure AD, Okta, any OpenID Connect
provider...) is `brokerkit.ui.oauth`; `load_serve_auth(table)` reads either from `[serve]`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ..errors import BrokerkitError, ConfigError

if TYPE_CHECKING:
    from .oauth import OAuthConfig

__all__ = [
    "ACTIONS",
    "ROLES",
    "SESSION_COOKIE",
    "Access",
    "AuthConfig",
    "NotAuthorized",
    "ServeAuth",
    "SignInSessions",
    "SignInThrottle",
    "User",
    "auth_provider",
    "can",
    "hardened_provider",
    "hash_password",
    "load_serve_auth",
    "needs_rehash",
    "verify_password",
]

log = logging.getLogger(__name__)

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

#: The cookie naming a sign-in's server-side session (signed with the cookie secret).
SESSION_COOKIE = "brokerkit_session"


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


# -- password hashes ----------------------------------------------------------------------------

#: argon2id with argon2-cffi's default parameters (RFC 9106's low-memory profile).
_HASHER = PasswordHasher()
_LEGACY = "scrypt$"


def hash_password(password: str) -> str:
    """An argon2id hash of `password` (PHC string ``$argon2id$v=19$m=...,t=...,p=...$...``)."""
    if not isinstance(password, str) or not password:
        raise ValueError("a password must be non-empty text")
    return _HASHER.hash(password)


def _verify_scrypt(password: str, stored: str) -> bool:
    """The earlier format, ``scrypt$N$r$p$<salt>$<hash>`` (base64 parts): verify only."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n),
                             r=int(r), p=int(p), dklen=len(expected),
                             maxmem=256 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def verify_password(password: str, stored: str) -> bool:
    """True when `password` matches the hash `stored` (argon2, or the earlier scrypt$)."""
    if not isinstance(password, str) or not isinstance(stored, str):
        return False
    if stored.startswith(_LEGACY):
        return _verify_scrypt(password, stored)
    try:
        return _HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    """True when `stored` is of the earlier scrypt$ format or of weaker argon2 parameters."""
    if stored.startswith(_LEGACY):
        return True
    try:
        return _HASHER.check_needs_rehash(stored)
    except (InvalidHashError, ValueError):
        return True


def _is_password_hash(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    if value.startswith(_LEGACY):
        return value.count("$") == 5
    return value.startswith(("$argon2id$", "$argon2i$", "$argon2d$")) and value.count("$") == 5


_DUMMY_HASH: str | None = None


def _dummy_hash() -> str:
    """A hash to check unknown names against, so that they cost what known ones do."""
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
    return _DUMMY_HASH


def _replace_hash_in_file(path: Path, old: str, new: str) -> bool:
    """Replace the one occurrence of `old` in the file at `path` by `new` (atomically, keeping
    everything else, comments included); False (file untouched) unless there is exactly one."""
    text = path.read_text(encoding="utf-8")
    if text.count(old) != 1:
        return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text.replace(old, new), encoding="utf-8")
    try:
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return True


# -- sign-in lockout and server-side sessions ---------------------------------------------------

class SignInThrottle:
    """Failed sign-ins counted per user name and per address, with exponential backoff.

    The first `FREE_FAILURES` failures cost nothing; each later one locks that name (and that
    address) for ``BASE_DELAY * 2**(failures - FREE_FAILURES)`` seconds, at most `MAX_DELAY`.
    While locked, an attempt is refused before its password is checked, and counts as a
    failure (hammering lengthens the wait). Names that exist and names that do not are
    counted alike. A success clears the name's count (not the
    address's: one good password does not excuse an address that guessed at others)."""

    FREE_FAILURES = 5
    BASE_DELAY = 1.0
    MAX_DELAY = 900.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._fails: dict[str, tuple[int, float]] = {}  # key -> (failures, locked until)

    def _delay(self, failures: int) -> float:
        over = failures - self.FREE_FAILURES
        if over < 0:
            return 0.0
        return min(self.MAX_DELAY, self.BASE_DELAY * 2.0 ** over)

    @staticmethod
    def _keys(user: str, address: str | None) -> list[str]:
        keys = ["user:" + user.strip().casefold()]
        if address:
            keys.append("addr:" + address)
        return keys

    def retry_after(self, user: str, address: str | None = None) -> float:
        """Seconds before `user` (from `address`) may try again; 0 when they may now."""
        now = self._clock()
        with self._lock:
            waits = [self._fails.get(k, (0, 0.0))[1] - now for k in self._keys(user, address)]
        return max(0.0, *waits)

    def failed(self, user: str, address: str | None = None) -> None:
        """Count a failed sign-in of `user` from `address`."""
        now = self._clock()
        with self._lock:
            for key in self._keys(user, address):
                n = self._fails.get(key, (0, 0.0))[0] + 1
                self._fails[key] = (n, now + self._delay(n))

    def succeeded(self, user: str) -> None:
        """`user` signed in: their name's count starts again."""
        with self._lock:
            self._fails.pop(self._keys(user, None)[0], None)


class SignInSessions:
    """The sign-ins open on this server: session id -> user, until signed out or expired."""

    def __init__(self, max_age_days: float = 1.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.max_age = max_age_days * 86400.0
        self._clock = clock
        self._lock = threading.Lock()
        self._open: dict[str, tuple[str, float]] = {}  # sid -> (user, expires at)

    def open(self, user: str) -> str:
        """A new session for `user`; returns its id (random, 256 bits)."""
        sid = secrets.token_urlsafe(32)
        with self._lock:
            now = self._clock()
            self._open = {k: v for k, v in self._open.items() if v[1] > now}
            self._open[sid] = (user, now + self.max_age)
        return sid

    def user_of(self, sid: str | bytes | None) -> str | None:
        """The user of the open session `sid`, or None (unknown, signed out or expired)."""
        if isinstance(sid, bytes):
            sid = sid.decode("ascii", "replace")
        if not sid:
            return None
        with self._lock:
            entry = self._open.get(sid)
        if entry is None or entry[1] <= self._clock():
            return None
        return entry[0]

    def close(self, sid: str | bytes | None) -> bool:
        """Sign session `sid` out; True when it was open."""
        if isinstance(sid, bytes):
            sid = sid.decode("ascii", "replace")
        with self._lock:
            return self._open.pop(sid or "", None) is not None

    def __len__(self) -> int:
        now = self._clock()
        with self._lock:
            return sum(1 for _, exp in self._open.values() if exp > now)


def _session_id_of_request() -> str | None:
    """The server-side session id in the cookies of the request that opened this session."""
    import panel as pn
    from tornado.web import decode_signed_value

    raw = pn.state.cookies.get(SESSION_COOKIE)
    secret = pn.config.cookie_secret
    if not raw or not secret:
        return None
    value = decode_signed_value(secret, SESSION_COOKIE, raw)
    return value.decode("ascii", "replace") if value else None


@dataclass(frozen=True)
class User:
    """A dashboard user: a role and a password hash (never the password)."""

    name: str
    role: str
    password_hash: str = field(repr=False)


@dataclass(frozen=True)
class AuthConfig:
    """The users allowed in, the secret that signs their cookies, their lockout counts and
    open sessions. `source` is the configuration file whose hashes are upgraded at sign-in."""

    users: Mapping[str, User]
    cookie_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    source: Path | None = None
    throttle: SignInThrottle = field(default_factory=SignInThrottle, repr=False,
                                     compare=False)
    sessions: SignInSessions = field(default_factory=SignInSessions, repr=False,
                                     compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "users", dict(self.users))  # hashes are upgraded in place

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, where: str = "serve",
                     source: Path | None = None) -> AuthConfig | None:
        """Read a `[serve]` table (see the module doc); None when it defines no users.
        `cookie_secret` names a secret in the store; `source` is the file it came from."""
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
            if not _is_password_hash(pw):
                raise ConfigError("is not a password hash", key=f"{key}.password_hash",
                                  expected="the output of python -m brokerkit.ui.auth")
            users[name] = User(name, role, pw)
        if not users:
            return None
        ref = data.get("cookie_secret")
        if ref is None:
            return cls(users, source=source)
        if not isinstance(ref, str):
            raise ConfigError(f"is {ref!r}", key=f"{where}.cookie_secret",
                              expected="the name of a secret in the store")
        from ..secrets import get_secret_store

        secret = get_secret_store().resolve({"cookie_secret": ref})["cookie_secret"]
        return cls(users, secret.reveal(), source=source)

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if `password` is theirs, else None (unknown names cost the same time).
        A hash of the earlier scrypt$ format is replaced by an argon2id one, here and in
        `source`."""
        user = self.users.get(name)
        if user is None:
            verify_password(password, _dummy_hash())
            return None
        if not verify_password(password, user.password_hash):
            return None
        if needs_rehash(user.password_hash):
            self._rehash(user, password)
        return self.users[name]

    def _rehash(self, user: User, password: str) -> None:
        new = User(user.name, user.role, hash_password(password))
        self.users[user.name] = new  # type: ignore[index]
        if self.source is None:
            return
        try:
            stored = _replace_hash_in_file(self.source, user.password_hash, new.password_hash)
        except OSError as exc:
            log.warning("could not upgrade the password hash of %r in %s: %s", user.name,
                        self.source, exc)
            return
        if stored:
            log.info("upgraded the password hash of %r to argon2id in %s", user.name,
                     self.source)
        else:
            log.warning("could not upgrade the password hash of %r: %s does not hold it once",
                        user.name, self.source)

    def role_of(self, name: str | None) -> str | None:
        """The role of user `name`, or None for someone not in the configuration."""
        user = self.users.get(name or "")
        return user.role if user is not None else None

    def authorize(self, user_info: Mapping[str, Any] | None, *_: Any) -> bool:
        """Panel's `authorize_callback`: only configured users get a session."""
        return self.role_of((user_info or {}).get("user")) is not None

    def session_access(self) -> Access | None:
        """The `Access` of the session being created (None: not a configured user, or not
        signed in on this server). Its role is re-read before every action, and is gone once
        the user signs out."""
        import panel as pn

        user = pn.state.user or ""
        sid = _session_id_of_request()
        if self.role_of(user) is None or self.sessions.user_of(sid) != user:
            return None

        def recheck() -> str | None:
            return self.role_of(user) if self.sessions.user_of(sid) == user else None

        return Access(user=user, role=self.role_of(user) or "", recheck=recheck)

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


def load_serve_auth(data: Mapping[str, Any], *, where: str = "serve",
                    source: Path | None = None) -> ServeAuth | None:
    """The sign-in a `[serve]` table configures: hashed-password users (`AuthConfig`), an
    OAuth provider (`brokerkit.ui.oauth.OAuthConfig`), or None. Raises `ConfigError` naming
    the key at fault: an unknown key, both kinds at once, a missing secret. `source` is the
    configuration file (where upgraded password hashes are written)."""
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
    return AuthConfig.from_mapping(data, where=where, source=source)


@dataclass
class Access:
    """The acting user of a session and their role; `require` re-checks before every action.

    `recheck`, when given, returns the role the user has *now* (None: not allowed any more,
    e.g. removed from the configuration or signed out); served apps pass one. `on_refused`,
    when given, is called with the action before `NotAuthorized` is raised (served apps
    audit it)."""

    user: str
    role: str
    recheck: Callable[[], str | None] | None = None
    on_refused: Callable[[str, str], None] | None = field(default=None, repr=False)

    def can(self, action: str) -> bool:
        """True when this user may do `action` (as decided when the session started)."""
        return can(self.role, action)

    def require(self, action: str) -> str:
        """The acting user's name if they may do `action` now; raises `NotAuthorized`."""
        role = self.recheck() if self.recheck is not None else self.role
        if role is None or not can(role, action):
            exc = NotAuthorized(self.user, role or "unknown", action)
            if self.on_refused is not None:
                try:
                    self.on_refused(action, str(exc))
                except Exception:  # an audit failure must not turn a refusal into a pass
                    log.exception("could not audit the refused %s of %r", action, self.user)
            raise exc
        return self.user


# -- Panel's sign-in, hardened ------------------------------------------------------------------

def _client_address(handler: Any) -> str | None:
    return getattr(handler.request, "remote_ip", None)


def _hardened(handler_cls: type, sessions: SignInSessions) -> type:
    """`handler_cls` (a tornado handler of Panel's sign-in or sign-out) whose cookies are all
    HttpOnly, SameSite=Lax and, over https, Secure; whose setting of the signed-in user also
    opens a server-side session, named by the `SESSION_COOKIE`."""
    if getattr(handler_cls, "_brokerkit_sessions", None) is sessions:
        return handler_cls

    class Hardened(handler_cls):  # type: ignore[misc, valid-type]
        _brokerkit_sessions = sessions

        def set_cookie(self, name: str, value: str | bytes, *args: Any, **kwargs: Any) -> None:
            kwargs["httponly"] = True
            kwargs["samesite"] = "Lax"
            if self.request.protocol == "https":
                kwargs["secure"] = True
            super().set_cookie(name, value, *args, **kwargs)

        def set_secure_cookie(self, name: str, value: str | bytes, *args: Any,
                              **kwargs: Any) -> None:
            super().set_secure_cookie(name, value, *args, **kwargs)
            if name == "user" and value:
                user = value.decode("utf-8") if isinstance(value, bytes) else str(value)
                super().set_secure_cookie(SESSION_COOKIE, sessions.open(user), *args,
                                          **kwargs)

        set_signed_cookie = set_secure_cookie

    Hardened.__name__ = Hardened.__qualname__ = f"Hardened{handler_cls.__name__}"
    return Hardened


def hardened_provider(provider: Any, sessions: SignInSessions) -> Any:
    """Panel's auth `provider` (basic or OAuth), with cookie attributes set on sign-in and
    sign-out (see `_hardened`), a user recognised only while their server-side session is
    open, and sign-out closing that session."""
    base = type(provider)

    def session_open(handler: Any, user: Any) -> Any:
        if not user or user == "guest":
            return None
        name = user.decode("utf-8") if isinstance(user, bytes) else str(user)
        sid = handler.get_secure_cookie(SESSION_COOKIE)
        return user if sessions.user_of(sid) == name else None

    class Provider(base):  # type: ignore[misc, valid-type]
        @property
        def login_handler(self) -> type:
            return _hardened(super().login_handler, sessions)

        @property
        def logout_handler(self) -> type:
            parent = _hardened(super().logout_handler, sessions)

            class SignOut(parent):  # type: ignore[misc, valid-type]
                def get(self, *args: Any, **kwargs: Any) -> Any:
                    sessions.close(self.get_secure_cookie(SESSION_COOKIE))
                    self.clear_cookie(SESSION_COOKIE)
                    return super().get(*args, **kwargs)

            return SignOut

        @property
        def get_user(self) -> Any:
            inner = super().get_user
            if inner is None:
                return None
            return lambda handler: session_open(handler, inner(handler))

        @property
        def get_user_async(self) -> Any:
            inner = super().get_user_async
            if inner is None:
                return None

            async def get_user(handler: Any) -> Any:
                return session_open(handler, await inner(handler))

            return get_user

    provider.__class__ = Provider
    return provider


def auth_provider(auth: AuthConfig) -> Any:
    """A Panel basic-auth provider whose login page checks passwords against `auth`'s hashes
    (Panel's own compares plaintext), refuses locked-out names and addresses
    (`auth.throttle`), and opens a server-side session per sign-in (`auth.sessions`)."""
    from panel.auth import BasicAuthProvider, BasicLoginHandler, _validate_next_url
    from panel.io.state import state
    from tornado.escape import url_escape

    class HashedLoginHandler(BasicLoginHandler):  # type: ignore[misc]
        def post(self) -> None:
            username = self.get_argument("username", "")
            address = _client_address(self)
            wait = auth.throttle.retry_after(username, address)
            if wait > 0:  # the same for names that exist and names that do not
                auth.throttle.failed(username, address)  # hammering lengthens the wait
                log.warning("sign-in refused, locked out for %.0f s: user %r from %s", wait,
                            username, address)
                self._refuse("Too many failed sign-ins. Try again later.")
                return
            if auth.authenticate(username, self.get_argument("password", "")) is None:
                auth.throttle.failed(username, address)
                log.warning("failed sign-in: user %r from %s", username, address)
                self._refuse("Invalid username or password!")
                return
            auth.throttle.succeeded(username)
            self.set_current_user(username)
            self.redirect(_validate_next_url(self.get_cookie("next_url", state.base_url)))

        def _refuse(self, message: str) -> None:
            self.redirect(self.request.path + "?error=" + url_escape(message))

    class HashedAuthProvider(BasicAuthProvider):  # type: ignore[misc]
        @property
        def login_handler(self) -> type:
            HashedLoginHandler._login_endpoint = self._login_endpoint
            HashedLoginHandler._login_template = self._login_template
            return HashedLoginHandler

    return hardened_provider(HashedAuthProvider(), auth.sessions)


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
