"""Sign-in through an OAuth 2 / OpenID Connect provider (Panel's OAuth support), roles by user.

`OAuthConfig.from_mapping(table)` reads the `[serve]` table below; `brokerkit serve` hands
`serve_kwargs()` to Panel (which runs the whole authorization-code flow: /login redirects to
the provider, the code comes back to the redirect URI, Panel exchanges it at the token endpoint
and reads the user from the id token or the userinfo endpoint), decides every request with
`authorize` before a session exists (a signed-in user with no role gets HTTP 403), and gives
each session an `Access` with the user's role (`session_access`), re-checked before every
order and kill-switch action.

Every credential is the *name* of a secret in brokerkit's store (`brokerkit secrets set NAME`),
never a value in the file; values are revealed only to hand them to Panel, and never logged or
rendered::

    [serve]
    oauth_provider = "generic"        # or github, google, azure, azurev2, okta, gitlab, auth0,
                                      #   bitbucket, auth_code (PKCE, no client secret)
    oauth_key = "dash_oauth_key"      # the client id          } names of secrets
    oauth_secret = "dash_oauth_secret"  # the client secret    } in the store
    oauth_encryption_key = "dash_oauth_encryption"  # Fernet key: `panel oauth-secret` makes one
    cookie_secret = "dash_cookie"     # signs the login cookies; the same in every process
    oauth_redirect_uri = "https://dash.example.com/login"   # optional (default: this host)
    oauth_jwt_user = "email"          # optional: the claim that names the user
    default_role = "viewer"           # optional: role of any other signed-in user (else 403)

    [serve.oauth_extra_params]        # provider specific, passed to Panel unchanged
    AUTHORIZE_URL = "https://idp.example.com/authorize"   # generic: the provider's endpoints
    TOKEN_URL = "https://idp.example.com/token"
    USER_URL = "https://idp.example.com/userinfo"
    # tenant = "..." (azure), url = "..." and server = "..." (okta), subdomain = "..." (auth0)

    [serve.roles]                     # user name or e-mail -> viewer / trader / admin
    "ana@example.com" = "admin"
    "octocat" = "trader"
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, SecretNotFound
from .auth import SignInSessions

if TYPE_CHECKING:
    from ..secrets import Secret
    from .auth import Access

__all__ = ["OAUTH_KEYS", "OAUTH_PROVIDERS", "OAuthConfig", "user_names"]

#: Panel's OAuth providers that brokerkit accepts (`pam` is not OAuth; basic auth is `users`).
OAUTH_PROVIDERS = ("auth0", "auth_code", "azure", "azurev2", "bitbucket", "generic", "github",
                   "gitlab", "google", "okta", "password")
#: Providers that need no client secret (PKCE).
_NO_CLIENT_SECRET = frozenset({"auth_code"})
#: The `[serve]` keys that configure OAuth.
OAUTH_KEYS = frozenset({"oauth_provider", "oauth_key", "oauth_secret", "oauth_encryption_key",
                        "oauth_redirect_uri", "oauth_extra_params", "oauth_jwt_user",
                        "oauth_expiry_days", "roles", "default_role"})
#: Claims of the signed-in user's info that may name them in `[serve.roles]`, after the user
#: name Panel gives the session (`pn.state.user`).
_NAME_CLAIMS = ("email", "preferred_username", "login", "upn", "username", "user")


def user_names(user: str | None, user_info: Mapping[str, Any] | None) -> list[str]:
    """The names a signed-in user may be known by in `[serve.roles]`: the session's user
    name, then their e-mail and other name claims (case-folded, without repeats)."""
    names = [user] + [(user_info or {}).get(c) for c in _NAME_CLAIMS]
    out: list[str] = []
    for n in names:
        if isinstance(n, str) and n.strip() and n.strip().casefold() not in out:
            out.append(n.strip().casefold())
    return out


def _secret(table: Mapping[str, Any], key: str, where: str, what: str) -> Secret:
    """The secret named by `table[key]` (a ConfigError naming `where.key` if missing)."""
    from ..secrets import InvalidSecretName, get_secret_store

    ref = table.get(key)
    full = f"{where}.{key}"
    if ref is None:
        raise ConfigError(f"is missing: {what}", key=full,
                          expected="the name of a secret in the store "
                                   "(brokerkit secrets set NAME)")
    try:
        return get_secret_store().get(ref)
    except InvalidSecretName:
        raise ConfigError("must name a secret in the store, not hold its value", key=full,
                          expected="a secret name like 'dash_oauth_secret'") from None
    except SecretNotFound as exc:
        raise ConfigError(str(exc), key=full) from None


@dataclass(frozen=True)
class OAuthConfig:
    """Sign-in through `provider`, and the role of each signed-in user."""

    provider: str
    key: Secret = field(repr=False)
    secret: Secret | None = field(repr=False)
    encryption_key: Secret = field(repr=False)
    cookie_secret: Secret = field(repr=False)
    roles: Mapping[str, str] = field(default_factory=dict)
    default_role: str | None = None
    redirect_uri: str | None = None
    extra_params: Mapping[str, Any] = field(default_factory=dict)
    jwt_user: str | None = None
    expiry_days: float | None = None
    sessions: SignInSessions = field(default_factory=SignInSessions, repr=False,
                                     compare=False)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *,
                     where: str = "serve") -> OAuthConfig | None:
        """Read a `[serve]` table (see the module doc); None when it names no provider.
        Raises `ConfigError` naming the key at fault (a missing key, secret or cookie secret
        included), so a misconfigured server stops before it starts."""
        from .auth import ROLES

        provider = data.get("oauth_provider")
        if provider is None:
            stray = sorted(OAUTH_KEYS & set(data))
            if stray:
                raise ConfigError(f"is set but {where}.oauth_provider is not",
                                  key=f"{where}.{stray[0]}",
                                  expected="oauth_provider naming one of "
                                           + ", ".join(OAUTH_PROVIDERS))
            return None
        if provider not in OAUTH_PROVIDERS:
            raise ConfigError(f"is {provider!r}", key=f"{where}.oauth_provider",
                              expected="one of " + ", ".join(OAUTH_PROVIDERS))
        key = _secret(data, "oauth_key", where, f"the {provider} client id")
        secret = None
        if provider not in _NO_CLIENT_SECRET:
            secret = _secret(data, "oauth_secret", where, f"the {provider} client secret")
        cookie = _secret(data, "cookie_secret", where,
                         "OAuth sign-in needs a cookie secret to sign its cookies")
        enc = _secret(data, "oauth_encryption_key", where,
                      "OAuth sign-in encrypts the tokens it keeps in cookies "
                      "(make a key with `panel oauth-secret`)")
        try:
            raw = base64.urlsafe_b64decode(enc.reveal().encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ConfigError("names a secret that is not a Fernet key",
                              key=f"{where}.oauth_encryption_key",
                              expected="32 url-safe base64-encoded bytes "
                                       "(`panel oauth-secret` makes one)")

        raw_roles = data.get("roles", {})
        if not isinstance(raw_roles, Mapping):
            raise ConfigError("is not a table", key=f"{where}.roles",
                              expected="user name or e-mail = role")
        roles: dict[str, str] = {}
        for name, role in raw_roles.items():
            if role not in ROLES:
                raise ConfigError(f"is {role!r}", key=f"{where}.roles.{name}",
                                  expected="one of " + ", ".join(ROLES))
            folded = name.strip().casefold()
            if folded in roles:
                raise ConfigError("names a user twice (names are not case-sensitive)",
                                  key=f"{where}.roles.{name}")
            roles[folded] = role
        default = data.get("default_role")
        if default is not None and default not in ROLES:
            raise ConfigError(f"is {default!r}", key=f"{where}.default_role",
                              expected="one of " + ", ".join(ROLES))
        if not roles and default is None:
            raise ConfigError("gives no one a role: every sign-in would be refused",
                              key=f"{where}.roles",
                              expected=f"[{where}.roles] entries or {where}.default_role")

        redirect = data.get("oauth_redirect_uri")
        if redirect is not None and not (isinstance(redirect, str)
                                         and redirect.startswith(("http://", "https://"))):
            raise ConfigError(f"is {redirect!r}", key=f"{where}.oauth_redirect_uri",
                              expected="the http(s) URL of this server's /login")
        extra = data.get("oauth_extra_params", {})
        if not isinstance(extra, Mapping):
            raise ConfigError("is not a table", key=f"{where}.oauth_extra_params",
                              expected="provider parameters, e.g. AUTHORIZE_URL, tenant")
        if provider == "generic":
            for url_key in ("AUTHORIZE_URL", "TOKEN_URL"):
                if not extra.get(url_key) and not _env(f"PANEL_OAUTH_{url_key}"):
                    raise ConfigError("is missing: the generic provider needs the provider's "
                                      "endpoints", key=f"{where}.oauth_extra_params.{url_key}",
                                      expected="a URL (or PANEL_OAUTH_" + url_key + ")")
        jwt_user = data.get("oauth_jwt_user")
        if jwt_user is not None and not isinstance(jwt_user, str):
            raise ConfigError(f"is {jwt_user!r}", key=f"{where}.oauth_jwt_user",
                              expected="the name of a claim, e.g. 'email'")
        expiry = data.get("oauth_expiry_days")
        if expiry is not None and (isinstance(expiry, bool)
                                   or not isinstance(expiry, int | float) or expiry <= 0):
            raise ConfigError(f"is {expiry!r}", key=f"{where}.oauth_expiry_days",
                              expected="a positive number of days")
        return cls(provider=provider, key=key, secret=secret, encryption_key=enc,
                   cookie_secret=cookie, roles=roles, default_role=default,
                   redirect_uri=redirect, extra_params=dict(extra), jwt_user=jwt_user,
                   expiry_days=float(expiry) if expiry is not None else None)

    # -- who is who --------------------------------------------------------------------------
    def role_of(self, user: str | None, user_info: Mapping[str, Any] | None = None
                ) -> str | None:
        """The role of a signed-in user (by user name, then e-mail and other name claims),
        else `default_role`; None (turned away) for no user or a guest."""
        names = user_names(user, user_info)
        if not names or names == ["guest"]:
            return None
        for name in names:
            if name in self.roles:
                return self.roles[name]
        return self.default_role

    def _current(self, user_info: Mapping[str, Any] | None = None
                 ) -> tuple[str, Mapping[str, Any]]:
        import panel as pn

        info = user_info if user_info is not None else (pn.state.user_info or {})
        user = pn.state.user or (info.get(self.jwt_user) if self.jwt_user else None) or ""
        return str(user), info

    def authorize(self, user_info: Mapping[str, Any] | None, path: str | None = None) -> bool:
        """Panel's `authorize_callback`: only users with a role get a session."""
        user, info = self._current(user_info)
        return self.role_of(user, info) is not None

    def session_access(self) -> Access | None:
        """The `Access` of the session being created (None: no role, turned away, or not
        signed in on this server). Its role is re-read before every action, and is gone
        once the user signs out."""
        from .auth import Access, _session_id_of_request

        user, info = self._current()
        role = self.role_of(user, info)
        sid = _session_id_of_request()
        if role is None or self.sessions.user_of(sid) != user:
            return None
        frozen = dict(info)

        def recheck() -> str | None:
            return self.role_of(user, frozen) if self.sessions.user_of(sid) == user else None

        return Access(user=user, role=role, recheck=recheck)

    # -- Panel ---------------------------------------------------------------------------------
    @property
    def login_note(self) -> str:
        """How people sign in, for the `brokerkit serve` banner."""
        return f"sign-in through {self.provider} OAuth"

    def serve_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of `pn.serve` that turn this sign-in on; also installs the
        token encryption, which `pn.serve` does not do by itself."""
        import panel as pn

        try:
            from cryptography.fernet import Fernet
        except ImportError:  # pragma: no cover - cryptography comes with the extras
            raise ConfigError("OAuth sign-in needs the cryptography package "
                              "(pip install cryptography)",
                              key="serve.oauth_encryption_key") from None
        enc = self.encryption_key.reveal().encode("ascii")
        pn.config.oauth_encryption_key = enc
        pn.state.encryption = Fernet(enc)
        if self.expiry_days is not None:
            pn.config.oauth_expiry = self.expiry_days
        from panel.auth import OAuthProvider

        from .auth import hardened_provider

        # Panel builds its provider from config.oauth_provider; brokerkit builds it here, so
        # that sign-in opens a server-side session and its cookies are hardened.
        pn.config.oauth_provider = self.provider
        kwargs: dict[str, Any] = {
            "auth_provider": hardened_provider(OAuthProvider(), self.sessions),
            "oauth_key": self.key.reveal(),
            "oauth_secret": self.secret.reveal() if self.secret is not None else None,
            "oauth_redirect_uri": self.redirect_uri,
            "oauth_extra_params": dict(self.extra_params),
            "oauth_jwt_user": self.jwt_user,
            "oauth_refresh_tokens": False,
            "oauth_optional": False,
            "cookie_secret": self.cookie_secret.reveal(),
        }
        return kwargs


def _env(name: str) -> str | None:
    import os

    return os.environ.get(name) or None
