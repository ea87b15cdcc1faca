"""Secrets: a redacted `Secret` value, a chain of stores, rotation, and log redaction.

A connection's configuration names its secrets (`secrets = { api_key = "alpaca_key" }`); the
values live in one of three stores, searched in order by `get_secret_store()`:

- `EnvStore`: `BROKERKIT_SECRET_ALPACA_KEY` holds secret `alpaca_key` (read-only);
- `KeyringStore`: the OS keyring (service "brokerkit"), when the optional `keyring` package
  has a real backend; skipped otherwise;
- `FileStore`: `secrets.toml` in the user config directory, mode 0600, written atomically.

A `Secret` prints as `****` everywhere (repr, str, f-strings, logging, containers), refuses
pickling and JSON, compares in constant time, and gives its value only through `reveal()`.
Every revealed value is also remembered (bounded) by the log redaction installed on import,
so a value logged by mistake comes out as `****`::

    store = get_secret_store()
    store.set("alpaca_key", "PK...")            # -> "keyring" or "file"
    key = store.get("alpaca_key")               # Secret('alpaca_key', '****')
    client = TradingClient(key.reveal(), ...)   # reveal only where the SDK needs it
    store.on_rotate(reconnect_users_of)         # called with the name after each rotation
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import re
import stat
import tempfile
import threading
import tomllib
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NoReturn

from .errors import BrokerkitError, SecretNotFound

__all__ = [
    "ENV_PREFIX",
    "KEYRING_SERVICE",
    "REDACTED",
    "EnvStore",
    "FileStore",
    "InsecureSecretsFile",
    "InvalidSecretName",
    "KeyringStore",
    "ReadOnlySecretStore",
    "RedactingFilter",
    "Secret",
    "SecretChain",
    "SecretInfo",
    "SecretStore",
    "SecretStoreError",
    "SecretStoreUnavailable",
    "SecretValueAsName",
    "get_secret_store",
    "install_log_redaction",
    "looks_like_secret_value",
    "redact",
    "reset_secret_store",
    "validate_secret_name",
]

log = logging.getLogger(__name__)

#: What a secret value is replaced by wherever it would be shown.
REDACTED = "****"
#: Environment variables with this prefix are secrets: `BROKERKIT_SECRET_ALPACA_KEY`.
ENV_PREFIX = "BROKERKIT_SECRET_"
#: The keyring service name under which brokerkit keeps its secrets.
KEYRING_SERVICE = "brokerkit"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_NAME_RULE = "letters, digits, '_', '.', '-', starting with a letter or digit, at most 64"


# -- errors --------------------------------------------------------------------------------


class SecretStoreError(BrokerkitError):
    """A secret store cannot do what was asked; the message says which store and why."""


class InvalidSecretName(SecretStoreError, ValueError):
    """A secret name breaks the naming rule (the name is not echoed: it may be a value)."""

    def __init__(self, name: object) -> None:
        if isinstance(name, str):
            bad = sorted({c for c in name if not re.fullmatch(r"[A-Za-z0-9_.\-]", c)})
            what = f"{len(name)} characters" + (
                f", contains {', '.join(map(repr, bad))}" if bad else "")
        else:
            what = f"a {type(name).__name__}, not a str"
        super().__init__(f"bad secret name ({what}): use {_NAME_RULE} "
                         "(did you pass the value instead of the name?)")


class ReadOnlySecretStore(SecretStoreError):
    """A write (set, rotate, delete) was aimed at a store that cannot be written."""


class SecretStoreUnavailable(SecretStoreError):
    """A write was aimed at a store that is not usable here (e.g. no keyring backend)."""


class InsecureSecretsFile(SecretStoreError):
    """The secrets file may be read by other users: brokerkit refuses to read it."""

    def __init__(self, path: Path, mode: int) -> None:
        self.path = path
        super().__init__(f"{path}: refusing to read a secrets file that other users can access "
                         f"(mode {stat.S_IMODE(mode):04o}); fix it with `chmod 600 {path}`")


class SecretValueAsName(InvalidSecretName):
    """A secret's value was given where its name belongs (the value is never echoed)."""

    def __init__(self, name: object, where: str = "") -> None:
        self.where = where
        length = len(name) if isinstance(name, str) else 0
        SecretStoreError.__init__(
            self, f"{where + ': ' if where else ''}a secret name is expected, but this looks "
                  f"like a secret's value ({length} characters, not repeated here): store the "
                  f"value with `brokerkit secrets set NAME` and give NAME here")


#: A name longer than this without a separator ('_', '.', '-') that mixes letters and
#: digits reads as a generated credential (an API key id or secret), not a name a person chose.
_VALUE_LIKE_LENGTH = 16


def looks_like_secret_value(text: str) -> bool:
    """True when `text`, offered as a secret's name, reads as a credential instead: it holds a
    run of at least 16 letters and digits, mixed, between separators (a key id like
    `PKX1Y2Z3...`, a base64 secret). Names people choose (`alpaca_key`, `ibkr.gw-pass`,
    `sandbox_alpaca_key_id`) never do."""
    for piece in re.split(r"[^A-Za-z0-9]", text):
        if (len(piece) >= _VALUE_LIKE_LENGTH and re.search(r"[0-9]", piece)
                and re.search(r"[A-Za-z]", piece)):
            return True
    return False


def validate_secret_name(name: object, where: str = "") -> str:
    """The name itself when it follows the naming rule; raises `InvalidSecretName` otherwise,
    and `SecretValueAsName` for a value given as a name (`where` says which field held it).
    Neither repeats the text."""
    if isinstance(name, str) and looks_like_secret_value(name):
        raise SecretValueAsName(name, where)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidSecretName(name)
    return name


# -- log redaction -------------------------------------------------------------------------


class _Revealed:
    """A bounded, most-recently-revealed-last set of secret values to scrub from logs."""

    #: Shorter values are not scrubbed: redacting every "ab" would garble every log line.
    min_length = 4

    def __init__(self, maxsize: int = 256) -> None:
        self.maxsize = maxsize
        self._values: OrderedDict[str, None] = OrderedDict()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self._values)

    def add(self, value: str) -> None:
        if len(value) < self.min_length:
            return
        with self._lock:
            if value in self._values:
                self._values.move_to_end(value)
                return
            self._values[value] = None
            while len(self._values) > self.maxsize:
                self._values.popitem(last=False)
            self._pattern = None

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._pattern = None

    def pattern(self) -> re.Pattern[str] | None:
        pattern = self._pattern
        if pattern is None and self._values:
            with self._lock:
                longest_first = sorted(self._values, key=len, reverse=True)
                pattern = self._pattern = re.compile("|".join(map(re.escape, longest_first)))
        return pattern


_REVEALED = _Revealed()


def redact(text: str) -> str:
    """`text` with every secret value revealed so far replaced by `****`."""
    pattern = _REVEALED.pattern()
    return pattern.sub(REDACTED, text) if pattern is not None else text


def _redact_record(record: logging.LogRecord) -> None:
    """Scrub revealed secret values from a record's message, exception and stack text."""
    pattern = _REVEALED.pattern()
    if pattern is None:
        return
    try:
        message = record.getMessage()
    except Exception:  # bad args: the handler will report them, so scrub them one by one
        if isinstance(record.msg, str):
            record.msg = pattern.sub(REDACTED, record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(pattern.sub(REDACTED, a) if isinstance(a, str) else a
                                for a in record.args)
    else:
        if pattern.search(message):
            record.msg, record.args = pattern.sub(REDACTED, message), None
            if hasattr(record, "message"):
                record.message = record.msg
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if pattern.search(text):
            record.exc_text = pattern.sub(REDACTED, text)
    elif record.exc_text and pattern.search(record.exc_text):
        record.exc_text = pattern.sub(REDACTED, record.exc_text)
    if record.stack_info and pattern.search(record.stack_info):
        record.stack_info = pattern.sub(REDACTED, record.stack_info)


class RedactingFilter(logging.Filter):
    """Replaces every revealed secret value in a record's message, args and traceback by
    `****`. Never drops a record: `filter` always returns True."""

    def filter(self, record: logging.LogRecord) -> bool:
        _redact_record(record)
        return True


_FILTER = RedactingFilter()
_INSTALL_LOCK = threading.Lock()


def install_log_redaction(logger: logging.Logger | None = None) -> RedactingFilter:
    """Attach the redacting filter to `logger` (default: `brokerkit`) and its handlers, and to
    the root logger's handlers; scrub every new log record at creation too. Idempotent.

    Returns the filter, for handlers created later (`handler.addFilter(...)`).
    """
    with _INSTALL_LOCK:
        target = logger or logging.getLogger("brokerkit")
        for obj in (target, *target.handlers, *logging.getLogger().handlers):
            if not any(isinstance(f, RedactingFilter) for f in obj.filters):
                obj.addFilter(_FILTER)
        # Handlers added after this call, and records of child loggers (which logger filters
        # never see), are covered by scrubbing each record as it is made.
        previous = logging.getLogRecordFactory()
        if not getattr(previous, "_brokerkit_redacting", False):
            def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
                record = previous(*args, **kwargs)
                if _REVEALED:
                    _redact_record(record)
                return record

            factory._brokerkit_redacting = True  # type: ignore[attr-defined]
            logging.setLogRecordFactory(factory)
    return _FILTER


# -- the Secret value ----------------------------------------------------------------------


class Secret:
    """A secret value that never shows itself: repr, str and format give `****`.

    `reveal()` is the only way to the value (and registers it for log redaction). Equality
    with another Secret is constant-time; a Secret is unhashable and cannot be pickled or
    JSON-encoded, so it cannot slip into a cache key, a queue or a file by accident.
    """

    __slots__ = ("__weakref__", "_name", "_value")

    _name: str
    _value: str

    def __init__(self, value: str, name: str = "") -> None:
        if not isinstance(value, str):
            raise TypeError(f"Secret value must be a str, not {type(value).__name__}")
        if not isinstance(name, str):
            raise TypeError(f"Secret name must be a str, not {type(name).__name__}")
        object.__setattr__(self, "_value", value)
        object.__setattr__(self, "_name", name)

    @property
    def name(self) -> str:
        """The secret's name in the store ("" when anonymous)."""
        return self._name

    def reveal(self) -> str:
        """The value itself. Hand it straight to the SDK that needs it; never log or store it."""
        _REVEALED.add(self._value)
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self._name!r}, {REDACTED!r})" if self._name else f"Secret({REDACTED!r})"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, spec: str) -> str:
        try:
            return format(REDACTED, spec)
        except (TypeError, ValueError):  # a numeric spec: still nothing but the mask
            return REDACTED

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    __hash__ = None  # type: ignore[assignment]  # a hash of the value would leak it

    def __bool__(self) -> bool:
        return bool(self._value)

    def __setattr__(self, key: str, value: object) -> NoReturn:
        raise AttributeError("Secret is immutable")

    def __delattr__(self, key: str) -> NoReturn:
        raise AttributeError("Secret is immutable")

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError(f"{self!r} cannot be pickled: pass the secret's name and resolve it "
                        "with get_secret_store().get(name) where it is needed")


@dataclass(frozen=True)
class SecretInfo:
    """Where a secret lives: its `name`, the `store` holding it, and whether an earlier store
    in the chain holds the same name (`shadowed`, so this copy is not the one in force)."""

    name: str
    store: str
    shadowed: bool = False


# -- stores --------------------------------------------------------------------------------


class SecretStore:
    """One place secrets live. Subclasses set `name` and `writable` and implement the
    methods; `get` returns None for a secret the store does not hold."""

    name: ClassVar[str] = ""
    writable: ClassVar[bool] = True

    def unavailable_reason(self) -> str | None:
        """Why the store cannot be used here, or None when it can."""
        return None

    @property
    def available(self) -> bool:
        """True when the store can be used on this machine."""
        return self.unavailable_reason() is None

    def get(self, name: str) -> str | None:
        """The value of `name`, or None when this store does not hold it."""
        raise NotImplementedError

    def names(self) -> list[str]:
        """The names of every secret held here, sorted."""
        raise NotImplementedError

    def set(self, name: str, value: str) -> None:
        """Store (or replace) the value of `name`."""
        raise NotImplementedError

    def delete(self, name: str) -> bool:
        """Remove `name`; True if it was there."""
        raise NotImplementedError

    def __repr__(self) -> str:
        reason = self.unavailable_reason()
        return f"<{type(self).__name__}{' unavailable: ' + reason if reason else ''}>"


class EnvStore(SecretStore):
    """Secrets from the environment: `alpaca_key` is `BROKERKIT_SECRET_ALPACA_KEY` (the name
    upper-cased, anything but letters and digits turned into `_`). Read-only."""

    name = "env"
    writable = False

    @staticmethod
    def variable(name: str) -> str:
        """The environment variable that holds secret `name`."""
        return ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", name).upper()

    def get(self, name: str) -> str | None:
        return os.environ.get(self.variable(name)) or None

    def names(self) -> list[str]:
        # a variable named after a value (`BROKERKIT_SECRET_PK1A2B...`) is not listed: its
        # name would show the value in `secrets list`
        return sorted(var[len(ENV_PREFIX):].lower() for var, value in os.environ.items()
                      if var.startswith(ENV_PREFIX) and value
                      and re.fullmatch(r"[A-Z0-9][A-Z0-9_]*", var[len(ENV_PREFIX):])
                      and not looks_like_secret_value(var[len(ENV_PREFIX):]))

    def set(self, name: str, value: str) -> NoReturn:
        raise ReadOnlySecretStore(
            f"the env store is read-only: set the environment variable {self.variable(name)} "
            f"instead, or store {name!r} in the keyring or file store")

    def delete(self, name: str) -> NoReturn:
        raise ReadOnlySecretStore(
            f"secret {name!r} comes from the environment: unset {self.variable(name)} to remove it")


class KeyringStore(SecretStore):
    """Secrets in the OS keyring (service "brokerkit") through the optional `keyring` package.

    Usable only with a real backend (not keyring's `fail` or `null` ones, as on a headless
    machine). The keyring cannot list its entries, so the store keeps an index of names.
    """

    name = "keyring"
    _INDEX = "__brokerkit_index__"  # not a valid secret name: cannot collide with one

    def __init__(self, service: str = KEYRING_SERVICE) -> None:
        self.service = service

    def _backend(self) -> Any:
        import keyring  # optional and slow to import: only when a keyring is asked for

        return keyring.get_keyring()

    def unavailable_reason(self) -> str | None:
        try:
            backend = self._backend()
        except ImportError:
            return "the keyring package is not installed (pip install 'brokerkit[keyring]')"
        except Exception as exc:  # a broken keyring configuration
            return f"keyring failed to load a backend: {exc}"
        from keyring.backends import chainer, fail, null

        kind = f"{type(backend).__module__}.{type(backend).__qualname__}"
        if isinstance(backend, fail.Keyring | null.Keyring) or (
                isinstance(backend, chainer.ChainerBackend) and not backend.backends):
            return f"no usable keyring backend ({kind}), as on a headless machine"
        return None

    def get(self, name: str) -> str | None:
        return self._backend().get_password(self.service, name)

    def names(self) -> list[str]:
        raw = self._backend().get_password(self.service, self._INDEX) or ""
        return sorted({n for n in raw.split(",") if _NAME.fullmatch(n)})

    def _write_index(self, names: set[str]) -> None:
        backend = self._backend()
        if names:
            backend.set_password(self.service, self._INDEX, ",".join(sorted(names)))
        else:
            with contextlib.suppress(Exception):
                backend.delete_password(self.service, self._INDEX)

    def set(self, name: str, value: str) -> None:
        self._backend().set_password(self.service, name, value)
        self._write_index({*self.names(), name})

    def delete(self, name: str) -> bool:
        from keyring.errors import PasswordDeleteError

        try:
            self._backend().delete_password(self.service, name)
            found = True
        except PasswordDeleteError:
            found = False
        self._write_index(set(self.names()) - {name})
        return found


class FileStore(SecretStore):
    """Secrets in `secrets.toml` under the user config directory (or `path`).

    The file is created with mode 0600 and replaced atomically on every write; a file that
    group or others may read is refused with the `chmod` that fixes it. Format::

        "alpaca_key" = "PK..."
    """

    name = "file"
    FILENAME = "secrets.toml"
    #: Seconds a write waits for another process's lock before giving up, naming the lock.
    LOCK_TIMEOUT = 30.0

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self._path = Path(path) if path is not None else None
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        """The file (by default looked up at each call, following `BROKERKIT_CONFIG_DIR`)."""
        if self._path is not None:
            return self._path
        from .config import user_config_dir

        return user_config_dir() / self.FILENAME

    def __repr__(self) -> str:
        return f"<FileStore {self.path}>"

    def _read(self, path: Path) -> dict[str, str]:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise SecretStoreError(f"{path}: cannot open the secrets file: {exc.strerror}"
                                   ) from None
        with open(fd, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if os.name == "posix" and mode & 0o077:
                raise InsecureSecretsFile(path, mode)
            raw = f.read()
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            # the parser's message gives a position, never the text around it
            reason = exc.reason if isinstance(exc, UnicodeDecodeError) else str(exc)
            raise SecretStoreError(f"{path}: not a valid secrets file ({reason})") from None
        for key, value in data.items():
            if not isinstance(value, str):
                raise SecretStoreError(f"{path}: [{key}] must be a string value "
                                       f"(found a {type(value).__name__})")
        return data

    def _write(self, path: Path, data: Mapping[str, str]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        body = "# brokerkit secrets: keep this file private (mode 0600)\n" + "".join(
            f"{_toml_string(k)} = {_toml_string(v)}\n" for k, v in sorted(data.items()))
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".secrets-", suffix=".tmp")
        try:  # mkstemp creates the file 0600, before a byte is written
            with open(fd, "w", encoding="utf-8") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    @contextlib.contextmanager
    def _locked(self) -> Iterator[Path]:
        """Hold the store's lock, across threads and processes, for a read-modify-write.

        The lock is `.secrets.lock` beside the file, taken through the `filelock` library
        (fcntl/msvcrt locks, which the OS releases when a holder dies)."""
        from filelock import FileLock, Timeout

        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = FileLock(path.parent / ".secrets.lock", timeout=self.LOCK_TIMEOUT, mode=0o600,
                        thread_local=False)
        with self._lock:
            try:
                lock.acquire()
            except Timeout:
                raise SecretStoreError(
                    f"{path}: another process has held the secrets file's lock for "
                    f"{self.LOCK_TIMEOUT:g} s ({lock.lock_file}); try again") from None
            try:
                yield path
            finally:
                lock.release()

    def get(self, name: str) -> str | None:
        return self._read(self.path).get(name)

    def names(self) -> list[str]:
        return sorted(self._read(self.path))

    def set(self, name: str, value: str) -> None:
        with self._locked() as path:
            data = self._read(path)
            data[name] = value
            self._write(path, data)

    def delete(self, name: str) -> bool:
        with self._locked() as path:
            data = self._read(path)
            if data.pop(name, None) is None:
                return False
            self._write(path, data)
            return True


def _toml_string(text: str) -> str:
    """`text` as a TOML basic string (control characters escaped)."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


# -- the chain -----------------------------------------------------------------------------


@contextlib.contextmanager
def _write_errors(store: SecretStore, action: str, name: str) -> Iterator[None]:
    """Turn a store's own failure (a locked keyring, a read-only disk) into SecretStoreError."""
    try:
        yield
    except SecretStoreError:
        raise
    except Exception as exc:
        raise SecretStoreError(f"the {store.name} store failed to {action} secret {name!r}: "
                               f"{type(exc).__name__}: {exc}") from exc


class SecretChain:
    """Stores searched in order: the first that holds a name supplies its value.

    Unavailable stores are skipped when reading; writing to one says why it cannot be used.
    """

    def __init__(self, stores: Sequence[SecretStore]) -> None:
        self.stores: tuple[SecretStore, ...] = tuple(stores)
        self._callbacks: list[Callable[[str], None]] = []
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"<SecretChain {', '.join(self._labels())}>"

    def _labels(self) -> list[str]:
        return [s.name + ("" if s.available else " (unavailable)") for s in self.stores]

    def _readable(self) -> Iterator[SecretStore]:
        for store in self.stores:
            if store.available:
                yield store

    def _lookup(self, store: SecretStore, name: str) -> str | None:
        try:
            return store.get(name)
        except SecretStoreError:
            raise
        except Exception as exc:  # e.g. a locked keyring: fall through to the next store
            log.warning("secret store %s failed to read %s: %s", store.name, name, exc)
            return None

    def store(self, name: str) -> SecretStore:
        """The store called `name` ("env", "keyring", "file")."""
        for store in self.stores:
            if store.name == name:
                return store
        raise SecretStoreError(f"no secret store named {name!r}; stores: "
                               + ", ".join(s.name for s in self.stores))

    def get(self, name: str) -> Secret:
        """The secret `name` from the first store holding it; raises `SecretNotFound`."""
        validate_secret_name(name)
        for store in self._readable():
            value = self._lookup(store, name)
            if value is not None:
                return Secret(value, name)
        raise SecretNotFound(name, self._labels())

    def find(self, name: str) -> str | None:
        """The name of the store that supplies `name`, or None."""
        validate_secret_name(name)
        for store in self._readable():
            if self._lookup(store, name) is not None:
                return store.name
        return None

    def _writable(self, store_name: str | None) -> SecretStore:
        if store_name is None:
            keyring = next((s for s in self.stores if s.name == "keyring"), None)
            if keyring is not None and keyring.available:
                return keyring
            store_name = "file"
        store = self.store(store_name)
        reason = store.unavailable_reason()
        if reason is not None:
            others = [s.name for s in self.stores if s.writable and s.available]
            raise SecretStoreUnavailable(
                f"the {store.name} store is not available: {reason}"
                + (f"; use the {others[0]} store instead (--store {others[0]})" if others else ""))
        return store

    def set(self, name: str, value: str | Secret, store: str | None = None) -> str:
        """Store `value` as secret `name` in `store` (default: the keyring if available, else
        the file). Returns the name of the store written."""
        validate_secret_name(name)
        text = value.reveal() if isinstance(value, Secret) else value
        if not isinstance(text, str) or not text:
            raise SecretStoreError(f"secret {name!r} needs a non-empty string value")
        with self._lock:
            target = self._writable(store)
            with _write_errors(target, "store", name):
                target.set(name, text)
            shadow = self._shadowing(name, target)
        if shadow is not None:
            log.warning("secret %s stored in %s, but the %s store also holds it and comes first: "
                        "that value stays in force", name, target.name, shadow)
        return target.name

    def _shadowing(self, name: str, target: SecretStore) -> str | None:
        for store in self._readable():
            if store is target:
                return None
            if self._lookup(store, name) is not None:
                return store.name
        return None

    def list(self) -> list[SecretInfo]:
        """Every secret name and the store holding it (a name in two stores appears twice,
        the later one `shadowed`). Never values. Sorted by name, then chain order."""
        infos: list[SecretInfo] = []
        for store in self._readable():
            try:
                names = store.names()
            except SecretStoreError:
                raise
            except Exception as exc:
                log.warning("secret store %s failed to list: %s", store.name, exc)
                continue
            infos += [SecretInfo(n, store.name, self._shadowing(n, store) is not None)
                      for n in names]
        order = {s.name: i for i, s in enumerate(self.stores)}
        return sorted(infos, key=lambda i: (i.name, order[i.store]))

    def rotate(self, name: str, new_value: str | Secret) -> str:
        """Replace the value of `name` in the store that supplies it, then tell every
        `on_rotate` subscriber. Returns the store's name."""
        validate_secret_name(name)
        with self._lock:
            where = self.find(name)
            if where is None:
                raise SecretNotFound(name, self._labels())
            if where == EnvStore.name:
                raise ReadOnlySecretStore(
                    f"secret {name!r} comes from the environment variable "
                    f"{EnvStore.variable(name)} and cannot be rotated here: change that "
                    "variable and restart, or unset it and rotate the stored value")
            self.set(name, new_value, store=where)
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback(name)
            except Exception:
                log.exception("a subscriber failed after rotating secret %s", name)
        return where

    def delete(self, name: str, store: str | None = None) -> list[str]:
        """Remove `name` from `store`, or from every writable store holding it. Returns the
        stores it was removed from; raises if it is only in the environment or nowhere."""
        validate_secret_name(name)
        with self._lock:
            if store is not None:
                target = self._writable(store)
                with _write_errors(target, "delete", name):
                    found = target.delete(name)
                if not found:
                    raise SecretNotFound(name, [target.name])
                return [target.name]
            removed: list[str] = []
            for candidate in self._readable():
                if candidate.writable:
                    with _write_errors(candidate, "delete", name):
                        if candidate.delete(name):
                            removed.append(candidate.name)
            still = self.find(name)
        if still == EnvStore.name:
            if not removed:
                EnvStore().delete(name)  # raises, saying which variable to unset
            log.warning("secret %s deleted from %s but still set in the environment (%s)",
                        name, ", ".join(removed), EnvStore.variable(name))
        elif not removed:
            raise SecretNotFound(name, self._labels())
        return removed

    def on_rotate(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call `callback(name)` after each rotation; returns a function that unsubscribes."""
        with self._lock:
            self._callbacks.append(callback)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return unsubscribe

    def resolve(self, refs: Mapping[str, str]) -> dict[str, Secret]:
        """A connection's `{option: secret_name}` turned into `{option: Secret}`."""
        return {option: self.get(ref) for option, ref in refs.items()}


_STORE: SecretChain | None = None
_STORE_LOCK = threading.Lock()


def get_secret_store() -> SecretChain:
    """The process-wide chain: environment, then keyring, then file."""
    global _STORE
    with _STORE_LOCK:
        if _STORE is None:
            _STORE = SecretChain([EnvStore(), KeyringStore(), FileStore()])
        return _STORE


def reset_secret_store() -> None:
    """Forget the process-wide chain (and its subscribers); the next call builds a new one."""
    global _STORE
    with _STORE_LOCK:
        _STORE = None


install_log_redaction()
