"""One hierarchy of errors, so callers catch by meaning.

Every error carries a message that names the value at fault (the file, the key, the field,
the connection), built from keyword arguments as exchange_calendars does.
"""

from __future__ import annotations

__all__ = [
    "AdapterError",
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
