"""TWS wire codec: 4-byte big-endian length frames of NUL-terminated ASCII fields.

`frame(fields)` encodes one server→client message; `FrameBuffer` splits the client's byte
stream into messages (the first one is the `API\\0` + `v157..178` hello); `fmt` renders a
Python value the way TWS does (bools "0"/"1", unset doubles as TWS's long text); `Fields`
is a sequential reader for client→server messages that mirrors ib_async's encoders.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterable, Sequence
from decimal import Decimal

__all__ = [
    "MAX_MESSAGE",
    "UNSET_DOUBLE",
    "UNSET_DOUBLE_TEXT",
    "UNSET_INTEGER",
    "FieldError",
    "Fields",
    "FrameBuffer",
    "Hello",
    "fmt",
    "frame",
    "num",
    "parse_hello",
]

UNSET_INTEGER = 2**31 - 1
UNSET_DOUBLE = 1.7976931348623157e308
UNSET_DOUBLE_TEXT = "1.7976931348623157E308"
MAX_MESSAGE = 0xFFFFFF
_HELLO = re.compile(r"v(\d+)(?:\.\.(\d+))?(?: (.*))?$")


class FieldError(ValueError):
    """A client message that does not have the fields its id promises."""


def num(value: float | Decimal | int) -> str:
    """A number as short decimal text, never in exponent form for ordinary magnitudes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    f = float(value)
    if f == UNSET_DOUBLE:
        return UNSET_DOUBLE_TEXT
    if not math.isfinite(f):
        return UNSET_DOUBLE_TEXT
    text = repr(round(f, 10))
    if "e" in text or "E" in text:
        text = format(Decimal(repr(f)), "f")
    return text


def fmt(value: object) -> str:
    """One field's wire text: None → "", bool → "1"/"0", numbers via `num`, else `str`."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float | Decimal):
        return num(value)
    return str(value)


def frame(fields: Iterable[object]) -> bytes:
    """One message: the length prefix, then every field NUL-terminated."""
    payload = "".join(fmt(f) + "\0" for f in fields).encode("ascii", "backslashreplace")
    return struct.pack(">I", len(payload)) + payload


class Hello:
    """The client's version range and connect options."""

    def __init__(self, min_version: int, max_version: int, options: str) -> None:
        self.min_version, self.max_version, self.options = min_version, max_version, options

    def __repr__(self) -> str:
        return f"<Hello v{self.min_version}..{self.max_version} {self.options!r}>"


def parse_hello(text: str) -> Hello:
    """Parse `v157..178[ options]` (raises `FieldError`)."""
    m = _HELLO.match(text.strip("\0"))
    if not m:
        raise FieldError(f"bad API hello {text!r}")
    lo = int(m.group(1))
    hi = int(m.group(2) or lo)
    return Hello(lo, hi, m.group(3) or "")


class FrameBuffer:
    """Buffers bytes from the client; `messages()` yields complete frames' payloads.

    Until the hello has been read, the stream must start with `API\\0`; the hello frame is
    returned as a one-element list with its text (it has no NUL terminator).
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.greeted = False

    def feed(self, data: bytes) -> None:
        self._buf += data

    def messages(self) -> list[list[str]]:
        out: list[list[str]] = []
        if not self.greeted:
            if len(self._buf) < 4:
                return out
            if bytes(self._buf[:4]) != b"API\0":
                raise FieldError(f"bad API prefix {bytes(self._buf[:4])!r}")
        while True:
            start = 0 if self.greeted else 4
            if len(self._buf) < start + 4:
                return out
            (size,) = struct.unpack(">I", self._buf[start:start + 4])
            if size > MAX_MESSAGE:
                raise FieldError(f"message of {size} bytes is too long")
            end = start + 4 + size
            if len(self._buf) < end:
                return out
            payload = bytes(self._buf[start + 4:end]).decode("utf-8", "backslashreplace")
            del self._buf[:end]
            if not self.greeted:
                self.greeted = True
                out.append([payload])
            else:
                out.append(payload.split("\0")[:-1] if payload.endswith("\0")
                           else payload.split("\0"))


class Fields:
    """Sequential reader over one client message's fields (after its id)."""

    def __init__(self, fields: Sequence[str]) -> None:
        self._f = list(fields)
        self._i = 0

    @property
    def remaining(self) -> list[str]:
        return self._f[self._i:]

    def str(self) -> str:
        if self._i >= len(self._f):
            raise FieldError(f"message ended after {len(self._f)} fields")
        v = self._f[self._i]
        self._i += 1
        return v

    def opt_str(self) -> str:
        """The next field, or "" when the message has ended (optional trailing fields)."""
        return self.str() if self._i < len(self._f) else ""

    def int(self, default: int = 0) -> int:
        v = self.str()
        if v == "":
            return default
        try:
            return int(float(v))
        except ValueError:
            raise FieldError(f"field {self._i - 1} is not an integer: {v!r}") from None

    def float(self) -> float | None:
        """A double; None when unset ("" or TWS's unset text)."""
        v = self.str()
        if v == "":
            return None
        if v == "Infinite":
            return math.inf
        try:
            f = float(v)
        except ValueError:
            raise FieldError(f"field {self._i - 1} is not a number: {v!r}") from None
        return None if f >= UNSET_DOUBLE else f

    def bool(self) -> bool:
        return self.int() != 0

    def skip(self, n: int = 1) -> None:
        for _ in range(n):
            self.str()
