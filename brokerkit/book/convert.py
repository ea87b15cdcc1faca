"""Values on their way into the book and out of it: rows checked and converted to the
columns' types (Decimal money, UTC datetimes, JSON text), and query results as DataFrames with
analysis dtypes. Every error names the row and the column at fault."""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, is_dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import pandas as pd
import sqlalchemy as sa

from ..errors import SchemaError
from . import tables as t


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (
        isinstance(v, float | Decimal) and v != v)  # NaN is the only value unequal to itself


def _to_decimal(v: Any) -> Decimal | None:
    if v is None:
        return None
    if type(v) is Decimal:  # the journal's usual value: checked without the generic path
        if v.is_finite():
            return v
        if v.is_nan():
            return None
        raise ValueError("not a finite number")
    if _missing(v):
        return None
    if isinstance(v, bool):
        raise TypeError("a bool is not a quantity")
    if isinstance(v, Decimal):
        out = v
    elif isinstance(v, numbers.Integral):
        out = Decimal(int(v))
    elif isinstance(v, numbers.Real):
        out = Decimal(repr(float(v)))
    elif isinstance(v, str):
        out = Decimal(v.strip())
    else:
        raise TypeError(f"expected a number, got {type(v).__name__}")
    if not out.is_finite():
        raise ValueError("not a finite number")
    return out


def _to_time(v: Any) -> datetime | None:
    if v is None:
        return None
    if type(v) is datetime and v.tzinfo is UTC:
        return v
    if _missing(v):
        return None
    if isinstance(v, str):
        v = pd.Timestamp(v)
    if isinstance(v, pd.Timestamp):
        v = v.to_pydatetime()
    if not isinstance(v, datetime):
        raise TypeError(f"expected a datetime, got {type(v).__name__}")
    return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)


def _to_date(v: Any) -> date | None:
    if _missing(v):
        return None
    if isinstance(v, str):
        v = pd.Timestamp(v)
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    raise TypeError(f"expected a date, got {type(v).__name__}")


def _to_str(v: Any) -> str | None:
    if v is None or type(v) is str:
        return v
    if _missing(v):
        return None
    return v.value if isinstance(v, Enum) else str(v)


def _json_default(v: Any) -> Any:
    if isinstance(v, Enum):
        return v.value
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, datetime | date):
        return v.isoformat()
    if is_dataclass(v) and not isinstance(v, type):
        return asdict(v)
    if isinstance(v, Mapping):
        return dict(v)
    if isinstance(v, set | frozenset | tuple):
        return list(v)
    return str(v)


def _to_json(v: Any) -> str | None:
    if v is None or isinstance(v, str):
        return v
    if is_dataclass(v) and not isinstance(v, type):
        v = asdict(v)
    return json.dumps(v, default=_json_default, sort_keys=True)


def _from_json(v: str | None) -> Any:
    if v is None:
        return None
    try:
        return json.loads(v)
    except ValueError:
        return v


_JSON_COLUMNS = frozenset({"intent", "violations", "details"})


def _converters(table: sa.Table) -> dict[str, Callable[[Any], Any]]:
    out: dict[str, Callable[[Any], Any]] = {}
    for col in table.columns:
        if col.name in _JSON_COLUMNS:
            out[col.name] = _to_json
        elif isinstance(col.type, sa.Numeric):
            out[col.name] = _to_decimal
        elif isinstance(col.type, t.UtcDateTime):
            out[col.name] = _to_time
        elif isinstance(col.type, sa.Date):
            out[col.name] = _to_date
        elif isinstance(col.type, sa.Integer):
            out[col.name] = lambda v: None if _missing(v) else int(v)
        else:
            out[col.name] = _to_str
    return out


_CONVERT = {table.name: _converters(table) for table in t.metadata.sorted_tables}


def _clean(table: sa.Table, row: Mapping[str, Any], what: str) -> dict[str, Any]:
    """`row`'s values for `table`'s columns (others ignored), converted; errors name the value."""
    convert = _CONVERT[table.name]
    out: dict[str, Any] = {}
    for name, value in row.items():
        fn = convert.get(name)
        if fn is None:
            continue
        try:
            out[name] = fn(value)
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise SchemaError(f"{what}: column {name!r} cannot hold {value!r} ({exc})") from None
    return out


def _require(values: Mapping[str, Any], names: Iterable[str], what: str) -> None:
    for name in names:
        if values.get(name) in (None, ""):
            raise SchemaError(f"{what}: {name!r} is required, got {values.get(name)!r}")


def _records(data: pd.DataFrame | Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    if isinstance(data, pd.DataFrame):
        return data.to_dict("records")  # type: ignore[return-value]
    if isinstance(data, Mapping):
        raise TypeError("expected a DataFrame or an iterable of rows, got a single mapping")
    return list(data)


def _frame(columns: Iterable[sa.Column[Any]], rows: Iterable[Any]) -> pd.DataFrame:
    """A DataFrame of `rows` with analysis dtypes: float64 money, UTC times, naive dates."""
    cols = list(columns)
    data = [tuple(r) for r in rows]
    out: dict[str, pd.Series] = {}
    for i, col in enumerate(cols):
        values = [r[i] for r in data]
        if isinstance(col.type, sa.Numeric):
            out[col.name] = pd.Series([math.nan if v is None else float(v) for v in values],
                                      dtype="float64")
        elif isinstance(col.type, t.UtcDateTime):
            out[col.name] = pd.Series(pd.to_datetime(values, utc=True),
                                      dtype="datetime64[ns, UTC]")
        elif isinstance(col.type, sa.Date):
            out[col.name] = pd.Series(pd.to_datetime(values), dtype="datetime64[ns]")
        elif isinstance(col.type, sa.Integer):
            out[col.name] = pd.Series(values, dtype="Int64")
        else:
            out[col.name] = pd.Series(values, dtype=object)
    return pd.DataFrame(out, columns=[c.name for c in cols])


def _status(value: Any) -> str:
    text = str(value.value if isinstance(value, Enum) else value).strip().upper()
    text = {"CANCELLED": "CANCELED"}.get(text, text)
    if text not in t.JOURNAL_STATUSES:
        raise SchemaError(f"order status {value!r} is not one of: "
                          f"{', '.join(t.JOURNAL_STATUSES)}")
    return text


def _state_name(value: Any) -> str:
    text = str(value.value if isinstance(value, Enum) else value).strip().upper()
    if text not in t.TRADING_STATES:
        raise ValueError(f"trading state {value!r} is not one of: {', '.join(t.TRADING_STATES)}")
    return text


def _now() -> datetime:
    return datetime.now(UTC)
