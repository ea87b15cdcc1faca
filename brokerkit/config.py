"""Settings: `brokerkit.toml` plus the environment, turned into typed, checked values.

The file is found through `BROKERKIT_CONFIG`, then `./brokerkit.toml`, then the user config
directory (`platformdirs.user_config_dir("brokerkit")/brokerkit.toml`). No file at all means
the embedded default: the sandbox and its demo connections. `BROKERKIT_DATABASE_URL` overrides
the book URL. A bad file raises `ConfigError` naming the file, the key and what was expected::

    base_currency = "USD"

    [book]
    url = "postgresql+psycopg://brokerkit@db/brokerkit"

    [connections.alpaca]
    type = "alpaca"
    options = { paper = true }
    secrets = { api_key = "alpaca_key", secret_key = "alpaca_secret" }   # names in the store

    [fx.rates]
    EURUSD = 1.08

    [risk]      # read by brokerkit.execution
    [routing]   # read by brokerkit.execution
    [serve]     # read by brokerkit.serve: users, roles, password hashes
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .model import ACCOUNT_KINDS, AccountProfile, AssetClass
from .venues.currencies import EXCHANGE_CURRENCIES, is_currency

__all__ = [
    "COMMON_OPTIONS",
    "CONNECTION_TYPES",
    "ConnectionConfig",
    "Settings",
    "default_book_url",
    "find_config",
    "load_settings",
    "sandbox_home",
    "user_config_dir",
    "user_data_dir",
]

#: Connection types and the adapter classes they name (imported only when used).
CONNECTION_TYPES: dict[str, str] = {
    "paper": "brokerkit.adapters.paper:PaperAdapter",
    "alpaca": "brokerkit.adapters.alpaca:AlpacaAdapter",
    "ibkr": "brokerkit.adapters.ibkr:IBKRAdapter",
    "crypto": "brokerkit.adapters.crypto:CryptoAdapter",
    "tradestation": "brokerkit.adapters.tradestation:TradeStationAdapter",
    "statements": "brokerkit.adapters.statements:StatementsAdapter",
}

#: Connection options every adapter accepts, read by brokerkit itself rather than the adapter:
#: `rate_limit` overrides the client-side rate-limit preset (`execution.ratelimit`).
COMMON_OPTIONS = frozenset({"rate_limit"})

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_CCY = re.compile(r"[A-Z]{3}")


def user_config_dir() -> Path:
    from platformdirs import user_config_dir as ucd

    return Path(os.environ.get("BROKERKIT_CONFIG_DIR") or ucd("brokerkit", appauthor=False))


def user_data_dir() -> Path:
    from platformdirs import user_data_dir as udd

    return Path(os.environ.get("BROKERKIT_DATA_DIR") or udd("brokerkit", appauthor=False))


def sandbox_home() -> Path:
    """Where the user's sandbox service keeps its run file and state."""
    return user_data_dir() / "sandbox"


def default_book_url() -> str:
    return f"sqlite:///{user_data_dir() / 'book.db'}"


@dataclass(frozen=True)
class ConnectionConfig:
    """One configured connection: its adapter type, options, and secret references.

    `secrets` maps an adapter option (e.g. `api_key`) to the *name* of a secret in the store,
    never to the value itself. `account_profiles` say what an account may hold, for routing
    (`accounts = ["U1", { id = "U2", kind = "margin", currencies = ["EUR"],
    markets = ["XETRA"], asset_classes = ["equity"] }]`).
    """

    name: str
    type: str
    institution: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)
    accounts: tuple[str, ...] = ()
    read_only: bool = False
    enabled: bool = True
    account_profiles: Mapping[str, AccountProfile] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # built in code as well as from a file: a value where a secret's name belongs must
        # not live on in this object's repr, `status` or the dashboard
        for opt, ref in self.secrets.items():
            _secret_ref(_Reader(None), f"connections.{self.name}.secrets.{opt}", ref)

    def option(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)


@dataclass(frozen=True)
class Settings:
    """Everything brokerkit reads from configuration."""

    source: Path | None = None
    base_currency: str = "USD"
    book_url: str = ""
    #: Open a fresh book from the brokers' positions at first use (an audited adoption), so the
    #: first reconciliation is clean: `[book] open_from_brokers = true`. The embedded profile
    #: sets it, since its brokers start with the sandbox's opening positions.
    book_open_from_brokers: bool = False
    connections: Mapping[str, ConnectionConfig] = field(default_factory=dict)
    fx_rates: Mapping[str, float] = field(default_factory=dict)
    risk: Mapping[str, Any] = field(default_factory=dict)
    routing: Mapping[str, Any] = field(default_factory=dict)
    #: `[sandbox]`: how the embedded profile starts the user's sandbox (port, seed, clock)
    sandbox: Mapping[str, Any] = field(default_factory=dict)
    serve: Mapping[str, Any] = field(default_factory=dict)
    #: The profile these settings came from: "" (a configuration file) or "embedded" (no
    #: connections configured: the user's sandbox service, `brokerkit.profile`).
    profile: str = ""
    #: Secrets the profile itself provides (the sandbox's demo credentials), by name.
    profile_secrets: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def embedded(self) -> bool:
        """True when nothing is configured: brokerkit runs on its embedded sandbox."""
        return self.profile == "embedded" or not self.connections


def find_config() -> Path | None:
    """The config file in force, or None: `BROKERKIT_CONFIG`, `./brokerkit.toml`, user dir."""
    env = os.environ.get("BROKERKIT_CONFIG")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ConfigError("BROKERKIT_CONFIG names a file that does not exist",
                              file=str(path))
        return path
    for candidate in (Path.cwd() / "brokerkit.toml", user_config_dir() / "brokerkit.toml"):
        if candidate.is_file():
            return candidate
    return None


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read and check the configuration (the file found by `find_config` unless given)."""
    file = Path(path) if path is not None else find_config()
    data: dict[str, Any] = {}
    if file is not None:
        try:
            data = tomllib.loads(_text_of(file))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not valid TOML: {exc}", file=str(file)) from None
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror or exc}", file=str(file)) from None
    return _parse(data, str(file) if file else None, file)


def _text_of(file: Path) -> str:
    """The file's text; a ConfigError naming the file, line, column and byte offset of the
    first byte that is not UTF-8 (TOML files are UTF-8: https://toml.io/en/v1.0.0#spec)."""
    raw = file.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(f"not UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start} "
                          f"(line {line}, column {column}) {exc.reason}; TOML files must be "
                          f"UTF-8 (save it as UTF-8)", file=str(file)) from None


class _Reader:
    def __init__(self, file: str | None) -> None:
        self.file = file

    def fail(self, key: str, message: str, expected: str | None = None) -> ConfigError:
        return ConfigError(message, file=self.file or "<settings>", key=key, expected=expected)

    def table(self, data: Mapping[str, Any], key: str) -> dict[str, Any]:
        value = data.get(key.rsplit(".", 1)[-1], {})
        if not isinstance(value, Mapping):
            raise self.fail(key, f"is {type(value).__name__}", "a table")
        return dict(value)

    def known(self, data: Mapping[str, Any], prefix: str, allowed: set[str]) -> None:
        for k in data:
            if k not in allowed:
                where = f"{prefix}.{k}" if prefix else k
                raise self.fail(where, "unknown key", "one of " + ", ".join(sorted(allowed)))

    def typed(self, data: Mapping[str, Any], key: str, kind: type | tuple[type, ...],
              default: Any, expected: str) -> Any:
        value = data.get(key.rsplit(".", 1)[-1], default)
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        if not ok:
            raise self.fail(key, f"is {value!r}", expected)
        return value


_TOP = {"base_currency", "book", "connections", "fx", "risk", "routing", "sandbox", "serve"}
_CONN = {"type", "institution", "options", "secrets", "accounts", "read_only", "enabled"}


_ACCOUNT_KEYS = {"id", "kind", "currencies", "markets", "asset_classes"}
_ACCOUNTS_EXPECTED = "a list of account ids or { id = ..., kind, currencies, markets, " \
                     "asset_classes } tables"


def _accounts(r: _Reader, body: Mapping[str, Any], key: str
              ) -> tuple[tuple[str, ...], dict[str, AccountProfile]]:
    """A connection's `accounts`: ids, and the profiles of those given as tables."""
    raw = r.typed(body, key, list, [], _ACCOUNTS_EXPECTED)
    ids: list[str] = []
    profiles: dict[str, AccountProfile] = {}
    for n, item in enumerate(raw):
        where = f"{key}[{n}]"
        if isinstance(item, str):
            ids.append(item)
            continue
        if not isinstance(item, Mapping):
            raise r.fail(where, f"is {item!r}", _ACCOUNTS_EXPECTED)
        r.known(item, where, _ACCOUNT_KEYS)
        account = item.get("id")
        if not isinstance(account, str) or not account:
            raise r.fail(f"{where}.id", f"is {account!r}", "an account id")
        kind = item.get("kind")
        if kind is not None and kind not in ACCOUNT_KINDS:
            raise r.fail(f"{where}.kind", f"is {kind!r}", "one of " + ", ".join(ACCOUNT_KINDS))
        lists: dict[str, list[str]] = {}
        for name in ("currencies", "markets", "asset_classes"):
            value = item.get(name, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise r.fail(f"{where}.{name}", f"is {value!r}", "a list of strings")
            lists[name] = value
        for ccy in lists["currencies"]:
            if not is_currency(ccy):
                raise r.fail(f"{where}.currencies", f"holds {ccy!r}, not an ISO 4217 "
                             f"currency code", "codes like 'USD', 'EUR'")
        for market in lists["markets"]:
            if market.upper() not in EXCHANGE_CURRENCIES:
                raise r.fail(f"{where}.markets", f"holds unknown exchange {market!r}",
                             "exchanges among " + ", ".join(sorted(EXCHANGE_CURRENCIES)))
        for ac in lists["asset_classes"]:
            try:
                AssetClass.parse(ac)
            except Exception:
                raise r.fail(f"{where}.asset_classes", f"holds {ac!r}",
                             "asset classes among " + ", ".join(a.value for a in AssetClass)
                             ) from None
        if account in profiles:
            raise r.fail(f"{where}.id", f"repeats account {account!r}", "each account once")
        ids.append(account)
        profiles[account] = AccountProfile(
            account, kind, frozenset(lists["currencies"]), frozenset(lists["markets"]),
            frozenset(AssetClass.parse(a) for a in lists["asset_classes"]))
    return tuple(ids), profiles


#: Options that hold credentials: their values belong in the secret store, named in `secrets`.
_SECRET_OPTION = re.compile(r"(^|_)(key|secret|password|passwd|token|credentials?)$",
                            re.IGNORECASE)


def _secret_ref(r: _Reader, key: str, ref: Any) -> None:
    """`ref` must name a secret; a value typed where the name belongs is refused, naming the
    key and never the value (it would reach `status`, `--json`, reprs and logs)."""
    from .secrets import SecretStoreError, validate_secret_name

    try:
        validate_secret_name(ref)
    except SecretStoreError:
        raise r.fail(key, "must name a secret in the store, not hold its value (not repeated "
                     "here)", "a secret name like 'alpaca_key' (store the value with "
                     "`brokerkit secrets set NAME`)") from None


def _check_execution_tables(settings: Settings) -> None:
    """`[risk]` and `[routing]` parsed as the order pipeline will parse them, so that a bad
    value stops every command at start rather than the first order. Connection names are
    checked when connections are configured (the embedded profile names its own later)."""
    from .execution.limits import parse_risk
    from .execution.routing import parse_routing

    file = str(settings.source) if settings.source else None
    known = settings.connections or None
    parse_risk(settings.risk, file, known_connections=known)
    parse_routing(settings.routing, file, known_connections=known)


def _parse(data: Mapping[str, Any], file: str | None, path: Path | None) -> Settings:
    r = _Reader(file)
    r.known(data, "", _TOP)
    base = r.typed(data, "base_currency", str, "USD",
                   "a 3-letter ISO 4217 currency code like 'USD'")
    if not _CCY.fullmatch(base) or not is_currency(base):
        raise r.fail("base_currency", f"is {base!r}, not an ISO 4217 currency code",
                     "a 3-letter ISO 4217 currency code like 'USD', 'EUR' or 'JPY'")

    book = r.table(data, "book")
    r.known(book, "book", {"url", "open_from_brokers"})
    book_url = r.typed(book, "book.url", str, "", "a SQLAlchemy URL string")
    open_from_brokers = r.typed(book, "book.open_from_brokers", bool, False, "true or false")
    book_url = os.environ.get("BROKERKIT_DATABASE_URL") or book_url or default_book_url()

    conns: dict[str, ConnectionConfig] = {}
    raw_conns = r.table(data, "connections")
    for name, body in raw_conns.items():
        key = f"connections.{name}"
        if not _NAME.fullmatch(name):
            raise r.fail(key, "bad connection name", "letters, digits, '_', '.', '-'")
        if not isinstance(body, Mapping):
            raise r.fail(key, f"is {type(body).__name__}", "a table")
        r.known(body, key, _CONN)
        ctype = body.get("type")
        if ctype not in CONNECTION_TYPES:
            raise r.fail(f"{key}.type", f"is {ctype!r}", "one of " + ", ".join(CONNECTION_TYPES))
        options = r.table(body, f"{key}.options")
        secrets = r.table(body, f"{key}.secrets")
        for opt, ref in secrets.items():
            _secret_ref(r, f"{key}.secrets.{opt}", ref)
        for opt, value in options.items():
            if _SECRET_OPTION.search(str(opt)) and value not in (None, "", False):
                raise r.fail(f"{key}.options.{opt}", "holds a credential in plain text (not "
                             "repeated here)", f"no credential among the options: store it "
                             f"with `brokerkit secrets set NAME` and write "
                             f"secrets = {{ {opt} = \"NAME\" }}")
        accounts, profiles = _accounts(r, body, f"{key}.accounts")
        conns[name] = ConnectionConfig(
            name=name, type=ctype,
            institution=r.typed(body, f"{key}.institution", str, "", "a string"),
            options=options, secrets=secrets, accounts=accounts, account_profiles=profiles,
            read_only=r.typed(body, f"{key}.read_only", bool, False, "true or false"),
            enabled=r.typed(body, f"{key}.enabled", bool, True, "true or false"),
        )

    fx = r.table(data, "fx")
    r.known(fx, "fx", {"rates"})
    rates_raw = r.table(fx, "fx.rates")
    rates: dict[str, float] = {}
    for pair, value in rates_raw.items():
        if not re.fullmatch(r"[A-Z]{6}", pair):
            raise r.fail(f"fx.rates.{pair}", "bad currency pair", "like EURUSD = 1.08")
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise r.fail(f"fx.rates.{pair}", f"is {value!r}", "a positive number")
        rates[pair] = float(value)

    sandbox = r.table(data, "sandbox")
    r.known(sandbox, "sandbox", {"port", "seed", "clock"})
    port = r.typed(sandbox, "sandbox.port", int, 0, "a TCP port number")
    if port and not 0 < port < 65530:
        raise r.fail("sandbox.port", f"is {port!r}", "a TCP port number")
    r.typed(sandbox, "sandbox.seed", int, 0, "an integer")
    clock = r.typed(sandbox, "sandbox.clock", str, "always-open", "'always-open' or 'exchange'")
    if clock not in ("always-open", "exchange"):
        raise r.fail("sandbox.clock", f"is {clock!r}", "'always-open' or 'exchange'")

    settings = Settings(
        source=path, base_currency=base, book_url=book_url,
        book_open_from_brokers=open_from_brokers, connections=conns, fx_rates=rates,
        risk=r.table(data, "risk"), routing=r.table(data, "routing"),
        sandbox=sandbox, serve=r.table(data, "serve"),
    )
    _check_execution_tables(settings)
    return settings
