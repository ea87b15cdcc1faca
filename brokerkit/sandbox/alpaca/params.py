"""Request parameters read as Alpaca reads them; bad values answer 422 naming the field."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from aiohttp import web

from ...errors import InvalidIntent
from ...model import to_decimal
from ..http import iso_time
from .errors import unprocessable

__all__ = ["decimal_param", "int_param", "time_param"]


def decimal_param(data: Mapping[str, Any], name: str) -> Decimal | None:
    """A positive decimal field of a JSON body, None when absent."""
    value = data.get(name)
    if value is None:
        return None
    try:
        d = to_decimal(value, name)
    except InvalidIntent:
        raise unprocessable(f"invalid {name}: {value!r}") from None
    if d <= 0:
        raise unprocessable(f"{name} must be > 0")
    return d


def time_param(request: web.Request, name: str) -> datetime | None:
    """An ISO-8601 query parameter (UTC when it has no offset), None when absent."""
    return iso_time(request, name, unprocessable)


def int_param(request: web.Request, name: str, default: int, maximum: int) -> int:
    """A positive integer query parameter, capped at `maximum`."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        n = int(raw)
    except ValueError:
        raise unprocessable(f"invalid {name}: {raw!r}") from None
    if n < 1:
        raise unprocessable(f"{name} must be >= 1")
    return min(n, maximum)
