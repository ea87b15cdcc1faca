"""One hierarchy of errors, so callers catch by meaning.

Every error carries a message that names the value at fault (the file, the key, the field,
the connection), built from keyword arguments as exchange_calendars does.
"""

from __future__ import annotations

__all__ = [
    "AdapterError",
    "BookUnavailable",
    "BrokerkitError",
    "ConfigError",
    "ConnectionDown",
    "InvalidIntent",
    "SchemaError",
    "SecretNotFound",
    "SubmitUncertain",
    "UnknownConnection",
]


class BrokerkitError(Exception):
    """Base class of every error brokerkit raises on purpose."""


class ConfigError(BrokerkitError):
    """A configuration file or value is wrong: names the file, the key and what was expected."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None,
                 expected: str | None = None) -> None:
        self.file, self.key, self.expected = file, key, expected
        where = f"{file}: " if file else ""
        at = f"[{key}] " if key else ""
        want = f" (expected {expected})" if expected else ""
        super().__init__(f"{where}{at}{message}{want}")


class SecretNotFound(BrokerkitError, KeyError):
    """A secret reference names a secret that no store holds."""

    def __init__(self, name: str, stores: list[str]) -> None:
        self.name = name
        super().__init__(f"secret {name!r} not found in any store ({', '.join(stores)}); "
                         f"set it with `brokerkit secrets set {name}`")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class SchemaError(BrokerkitError, ValueError):
    """A DataFrame does not match its canonical schema."""


class InvalidIntent(BrokerkitError, ValueError):
    """An order intent is malformed: names the field at fault."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class UnknownConnection(BrokerkitError, KeyError):
    """No connection of that name is configured."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        super().__init__(f"no connection named {name!r}; known: {', '.join(known) or 'none'}")

    def __str__(self) -> str:
        return str(self.args[0])


class AdapterError(BrokerkitError):
    """A broker call failed; `connection` names the connection."""

    def __init__(self, connection: str, message: str) -> None:
        self.connection = connection
        prefix = f"{connection}: "
        while message.startswith(prefix):  # wrapping an error of the same connection
            message = message[len(prefix):]
        self.message = message
        super().__init__(f"{prefix}{message}")


class ConnectionDown(AdapterError):
    """The connection to the broker is not established or was lost."""


class SubmitUncertain(AdapterError):
    """A submit timed out or lost its connection: whether the broker has the order is unknown.

    Never retry blindly: look the order up by its client order id.
    """

    def __init__(self, connection: str, client_order_id: str, message: str) -> None:
        self.client_order_id = client_order_id
        super().__init__(connection, f"submit of {client_order_id} uncertain: {message}")


def _redacted(url: object) -> str:
    """`url` as text with its password hidden (a text that is not a URL is not repeated)."""
    render = getattr(url, "render_as_string", None)
    if render is None:
        try:
            import sqlalchemy as sa

            render = sa.make_url(str(url)).render_as_string
        except Exception:
            return "(the configured book URL)"
    return str(render(hide_password=True))


class BookUnavailable(BrokerkitError):
    """The book's database cannot be used now; nothing of the call was done, except that a
    write whose connection was lost half-way may have committed (look before doing it again).

    `problem` says what failed: `cannot_open` (the file or its directory cannot be opened or
    created), `read_only`, `corrupt` (not a database, or damaged), `unreachable` (no server
    answers, or it refused the login), `lost` (the connection dropped mid-call), `busy` (the
    write lock was held too long), `not_migrated` (the schema is missing or newer than this
    brokerkit), `error` (any other database error). The message names the database (its
    password hidden), what failed, the database's own words (`detail`) and what to do.
    """

    #: What failed, as the message says it.
    PROBLEMS = {
        "cannot_open": "cannot be opened",
        "read_only": "is read-only",
        "corrupt": "is corrupt or not a database",
        "unreachable": "cannot be reached",
        "lost": "lost its connection",
        "busy": "is busy",
        "not_migrated": "does not hold this brokerkit's schema",
        "error": "failed",
    }
    #: What to do, by problem.
    REMEDIES = {
        "cannot_open": "check that its directory exists and this user may write there, or "
                       "point BROKERKIT_DATABASE_URL ([book] url) at a writable place",
        "read_only": "give this user write access to the file and its directory (SQLite "
                     "writes a -wal and a -shm file beside it), or point "
                     "BROKERKIT_DATABASE_URL ([book] url) at a writable book",
        "corrupt": "restore it from a backup, or move the file aside so that a new book is "
                   "created there (then reconcile it against the brokers)",
        "unreachable": "check that the database server is running and that the URL's host, "
                       "port, user and password are right, then try again",
        "lost": "try again once the database is back; a write may or may not have been made, "
                "so look at the journal (or reconcile) before repeating it",
        "busy": "another process held its write lock too long; try again",
        "not_migrated": "open it with the brokerkit that wrote it, or run `alembic upgrade "
                        "head` for this one",
        "error": "check the database and try again",
    }

    def __init__(self, url: object, problem: str, *, detail: str | None = None,
                 remedy: str | None = None) -> None:
        if problem not in self.PROBLEMS:
            raise ValueError(f"BookUnavailable problem {problem!r} is not one of "
                             f"{', '.join(self.PROBLEMS)}")
        self.database = _redacted(url)
        self.problem = problem
        self.detail = detail
        self.remedy = remedy or self.REMEDIES[problem]
        said = f" ({detail})" if detail else ""
        super().__init__(f"the book {self.database} {self.PROBLEMS[problem]}{said}: "
                         f"{self.remedy}")
