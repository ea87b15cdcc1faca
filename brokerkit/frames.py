"""The canonical DataFrame schemas: one definition of every column every adapter returns.

Each schema is a tuple of `Column(name, kind, doc)`. `make(schema, rows)` builds a frame with
the right columns and dtypes from records (dicts); `empty(schema)` is the typed empty frame;
`validate(schema, df)` raises `SchemaError` naming every column at fault.

Kinds and their dtypes: `str` (object or string), `float` (float64, money and quantities),
`bool`, `time` (tz-aware UTC timestamps), `date` (naive datetime64 at midnight, for trade and
settle dates, so calendars can be applied to whole columns at once).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from .errors import SchemaError

__all__ = [
    "BALANCES",
    "CORPORATE_ACTIONS",
    "CURRENCY_EXPOSURE",
    "FILLS",
    "INSTRUMENTS",
    "MARGIN",
    "ORDERS",
    "POSITIONS",
    "POSITION_SUMMARY",
    "QUOTES",
    "SCHEMAS",
    "WHAT_IF",
    "Column",
    "Schema",
    "concat",
    "empty",
    "make",
    "validate",
]

Kind = Literal["str", "float", "bool", "time", "date"]


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    kind: Kind
    doc: str


@dataclass(frozen=True)
class Schema:
    name: str
    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.columns)


def _schema(name: str, *cols: tuple[str, Kind, str]) -> Schema:
    return Schema(name, tuple(Column(*c) for c in cols))


_WHO = (("connection", "str", "configured connection name"),)

BALANCES = _schema(
    "balances",
    *_WHO,
    ("institution", "str", "broker or bank, e.g. 'Alpaca', 'Interactive Brokers'"),
    ("account", "str", "account id at the institution"),
    ("currency", "str", "ISO currency of the row's amounts"),
    ("cash", "float", "cash balance, settled and unsettled"),
    ("settled_cash", "float", "cash that has settled and can be withdrawn or reused"),
    ("buying_power", "float", "what the broker lets the account buy now"),
    ("equity", "float", "cash plus market value of positions (net liquidation)"),
    ("margin_init", "float", "initial margin requirement (0 for cash accounts)"),
    ("margin_maint", "float", "maintenance margin requirement (0 for cash accounts)"),
    ("as_of", "time", "when the broker reported it (UTC)"),
)

POSITIONS = _schema(
    "positions",
    *_WHO,
    ("institution", "str", "broker or bank"),
    ("account", "str", "account id"),
    ("instrument", "str", "canonical instrument key, e.g. STK:AAPL"),
    ("symbol", "str", "the broker's symbol"),
    ("asset_class", "str", "equity, etf, option, future, fx, crypto, bond, fund"),
    ("quantity", "float", "signed quantity: negative is short"),
    ("avg_cost", "float", "average cost per unit, in currency"),
    ("market_price", "float", "last price per unit"),
    ("market_value", "float", "quantity x price x multiplier, in currency"),
    ("currency", "str", "currency of prices and values"),
    ("unrealized_pnl", "float", "market value minus cost"),
    ("as_of", "time", "snapshot time (UTC)"),
    ("exchange", "str", "listing exchange or venue, when the broker says"),
    ("multiplier", "float", "contract multiplier (1 for cash instruments; NaN if unknown)"),
    ("expiry", "date", "expiry of options and futures (NaT otherwise)"),
    ("strike", "float", "option strike (NaN otherwise)"),
    ("right", "str", "option right, C or P (None otherwise)"),
)

ORDERS = _schema(
    "orders",
    *_WHO,
    ("account", "str", "account id"),
    ("order_id", "str", "the broker's order id"),
    ("client_order_id", "str", "brokerkit's idempotency key"),
    ("instrument", "str", "canonical instrument key"),
    ("symbol", "str", "the broker's symbol"),
    ("asset_class", "str", "asset class"),
    ("side", "str", "buy or sell"),
    ("order_type", "str", "market, limit, stop, stop_limit, trailing_stop"),
    ("quantity", "float", "ordered quantity (NaN for notional orders)"),
    ("notional", "float", "ordered amount in currency (NaN for quantity orders)"),
    ("limit_price", "float", "limit price or NaN"),
    ("stop_price", "float", "stop price or NaN"),
    ("time_in_force", "str", "day, gtc, ioc, fok, opg, cls"),
    ("status", "str", "PENDING, ACCEPTED, PARTIALLY_FILLED, FILLED, CANCELED, REJECTED, EXPIRED"),
    ("filled_quantity", "float", "quantity filled so far"),
    ("avg_fill_price", "float", "average fill price or NaN"),
    ("submitted_at", "time", "when the broker accepted it (UTC)"),
    ("updated_at", "time", "last status change (UTC)"),
)

FILLS = _schema(
    "fills",
    *_WHO,
    ("account", "str", "account id"),
    ("fill_id", "str", "the broker's execution id, unique per connection"),
    ("order_id", "str", "the broker's order id"),
    ("client_order_id", "str", "brokerkit's idempotency key"),
    ("instrument", "str", "canonical instrument key"),
    ("symbol", "str", "the broker's symbol"),
    ("asset_class", "str", "asset class"),
    ("side", "str", "buy or sell"),
    ("quantity", "float", "filled quantity (positive)"),
    ("price", "float", "fill price"),
    ("fee", "float", "commission and fees"),
    ("fee_currency", "str", "currency of the fee"),
    ("currency", "str", "currency of the price"),
    ("executed_at", "time", "execution time (UTC)"),
    ("trade_date", "date", "trade date in the market's time zone"),
    ("settle_date", "date", "contractual settlement date (NaT until computed)"),
)

QUOTES = _schema(
    "quotes",
    *_WHO,
    ("instrument", "str", "canonical instrument key"),
    ("symbol", "str", "the broker's symbol"),
    ("bid", "float", "best bid"),
    ("ask", "float", "best ask"),
    ("last", "float", "last trade price"),
    ("currency", "str", "quote currency"),
    ("as_of", "time", "quote time (UTC)"),
)

INSTRUMENTS = _schema(
    "instruments",
    *_WHO,
    ("instrument", "str", "canonical instrument key"),
    ("symbol", "str", "the broker's symbol"),
    ("asset_class", "str", "asset class"),
    ("currency", "str", "trading currency"),
    ("exchange", "str", "primary exchange or venue"),
    ("tradable", "bool", "the broker accepts orders for it"),
    ("fractionable", "bool", "fractional quantities are accepted"),
    ("shortable", "bool", "short sales are accepted"),
    ("min_quantity", "float", "smallest order quantity"),
    ("price_increment", "float", "tick size"),
    ("multiplier", "float", "contract multiplier (1 for cash instruments)"),
)

#: Corporate actions a broker has applied to an account's positions (`Adapter.
#: corporate_actions`), the `corporate_actions` input of `post_trade.reconcile`: one row per
#: action and account whose position it changed. Where brokers report them: Alpaca at
#: `GET /v1/corporate-actions` of its market-data API (forward and reverse splits with
#: `new_rate` / `old_rate` and `ex_date`; alpaca-py `CorporateActionsClient`) and as account
#: activities (`GET /v2/account/activities`, types SPLIT, REORG, SPIN...); IBKR through its
#: statements (Flex query "Corporate Actions"), not the TWS API; the sandbox's paper broker
#: at `GET /v1/brokers/{broker}/corporate_actions`.
CORPORATE_ACTIONS = _schema(
    "corporate_actions",
    *_WHO,
    ("account", "str", "account id ('' when the source has none)"),
    ("instrument", "str", "canonical instrument key of the position it changes"),
    ("ratio", "float", "new quantity per old (a 4-for-1 split: 4; a 1-for-10 reverse: 0.1)"),
    ("kind", "str", "optional: split, reverse_split, stock_dividend..."),
    ("action_id", "str", "optional: the broker's id, named in the explanation"),
    ("symbol", "str", "the broker's symbol"),
    ("effective_date", "date", "the ex-date: the first session traded split-adjusted"),
)

# -- margin analytics (brokers that compute margin: IBKR) -----------------------------------

MARGIN = _schema(
    "margin",
    *_WHO,
    ("account", "str", "account id"),
    ("currency", "str", "the account's base currency: every amount of the row is in it"),
    ("net_liquidation", "float", "net liquidation value"),
    ("equity_with_loan", "float", "equity with loan value (what margin is measured against)"),
    ("initial_margin", "float", "initial margin requirement now"),
    ("maintenance_margin", "float", "maintenance margin requirement now"),
    ("available_funds", "float", "equity with loan minus initial margin"),
    ("excess_liquidity", "float", "equity with loan minus maintenance margin"),
    ("cushion", "float", "excess liquidity as a fraction of net liquidation"),
    ("buying_power", "float", "what the broker lets the account buy now"),
    ("look_ahead_initial_margin", "float", "initial margin at the next margin change"),
    ("look_ahead_maintenance_margin", "float", "maintenance margin at the next change"),
    ("look_ahead_available_funds", "float", "available funds at the next change"),
    ("look_ahead_excess_liquidity", "float", "excess liquidity at the next change"),
    ("as_of", "time", "when the broker reported it (UTC)"),
)

WHAT_IF = _schema(
    "what_if",
    *_WHO,
    ("account", "str", "account id"),
    ("instrument", "str", "canonical instrument key"),
    ("side", "str", "buy or sell"),
    ("quantity", "float", "order quantity"),
    ("currency", "str", "currency of the margin amounts (the account's base)"),
    ("initial_margin_before", "float", "initial margin before the order"),
    ("initial_margin_change", "float", "change of initial margin the order would make"),
    ("initial_margin_after", "float", "initial margin after the order"),
    ("maintenance_margin_before", "float", "maintenance margin before the order"),
    ("maintenance_margin_change", "float", "change of maintenance margin"),
    ("maintenance_margin_after", "float", "maintenance margin after the order"),
    ("equity_with_loan_before", "float", "equity with loan before the order"),
    ("equity_with_loan_change", "float", "change of equity with loan"),
    ("equity_with_loan_after", "float", "equity with loan after the order"),
    ("commission", "float", "estimated commission (NaN if the broker gave none)"),
    ("commission_currency", "str", "currency of the commission"),
    ("warning", "str", "the broker's warning text, if any"),
)

CURRENCY_EXPOSURE = _schema(
    "currency_exposure",
    *_WHO,
    ("account", "str", "account id"),
    ("currency", "str", "currency of the row's amounts"),
    ("cash", "float", "cash balance in the currency"),
    ("market_value", "float", "market value of positions priced in the currency (futures "
                              "and FX pairs excluded: their exposure is in cash and P&L)"),
    ("net_exposure", "float", "cash plus market value"),
    ("fx_rate", "float", "units of base currency per unit of the currency"),
    ("base_currency", "str", "the account's base currency"),
    ("net_exposure_base", "float", "net exposure in the base currency"),
    ("as_of", "time", "when the broker reported it (UTC)"),
)

POSITION_SUMMARY = _schema(
    "position_summary",
    *_WHO,
    ("asset_class", "str", "asset class"),
    ("currency", "str", "currency of the positions"),
    ("exchange", "str", "listing exchange"),
    ("positions", "float", "number of positions"),
    ("long_value", "float", "market value of long positions, in currency"),
    ("short_value", "float", "market value of short positions (negative), in currency"),
    ("net_value", "float", "long plus short value, in currency"),
    ("gross_value", "float", "long minus short value, in currency"),
    ("base_currency", "str", "the base currency of the *_base columns"),
    ("net_value_base", "float", "net value in the base currency"),
    ("gross_value_base", "float", "gross value in the base currency"),
    ("unrealized_pnl_base", "float", "unrealized P&L in the base currency"),
)

SCHEMAS: dict[str, Schema] = {
    s.name: s for s in (BALANCES, POSITIONS, ORDERS, FILLS, QUOTES, INSTRUMENTS, MARGIN,
                        WHAT_IF, CURRENCY_EXPOSURE, POSITION_SUMMARY, CORPORATE_ACTIONS)
}

_DTYPES: dict[str, Any] = {
    "str": object,
    "float": "float64",
    "bool": "bool",
    "time": "datetime64[ns, UTC]",
    "date": "datetime64[ns]",
}


def _coerce(s: pd.Series, kind: Kind) -> pd.Series:
    if kind == "str":
        return s.astype(object).where(s.notna(), None)
    if kind == "float":
        return pd.to_numeric(s, errors="raise").astype("float64")
    if kind == "bool":
        return s.fillna(False).astype(bool)
    if kind == "time":
        return pd.to_datetime(s, utc=True).astype(_DTYPES["time"])
    out = pd.to_datetime(s)
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_localize(None)
    return out.dt.normalize().astype(_DTYPES["date"])


def make(schema: Schema | str, rows: Iterable[Mapping[str, Any]] | pd.DataFrame = (),
         **constants: Any) -> pd.DataFrame:
    """A frame of `schema` from records or a frame; missing columns are NaN/None, extra keys
    are dropped, `constants` fill a column for every row (e.g. `connection='paper'`)."""
    sch = SCHEMAS[schema] if isinstance(schema, str) else schema
    if isinstance(rows, pd.DataFrame):
        df = rows.copy()
        for name, value in constants.items():
            df[name] = value
        n = len(df)
        out = {}
        for col in sch.columns:
            s = df[col.name] if col.name in df else pd.Series([None] * n, index=df.index,
                                                            dtype=object)
            out[col.name] = _coerce(s, col.kind).array
        return pd.DataFrame(out, columns=sch.names)
    records = rows if isinstance(rows, list | tuple) else list(rows)
    n = len(records)
    data: dict[str, Any] = {}
    for col in sch.columns:
        if col.name in constants:
            data[col.name] = _constant(constants[col.name], col.kind, n)
        else:
            data[col.name] = _column([r.get(col.name) for r in records], col.kind)
    return pd.DataFrame(data, columns=sch.names)


def _constant(value: Any, kind: Kind, n: int) -> Any:
    if kind in ("time", "date"):
        return _column([value] * n, kind)
    if kind == "float":
        return np.full(n, np.nan if value is None else float(value), dtype="float64")
    if kind == "bool":
        return np.full(n, bool(value), dtype=bool)
    out = np.empty(n, dtype=object)
    out[:] = [value] * n if n else []
    return out


def _column(values: list[Any], kind: Kind) -> Any:
    """One column from Python values, straight to its final dtype (the hot path of every
    adapter: no per-cell pandas inference)."""
    if kind == "str":
        out = np.empty(len(values), dtype=object)
        out[:] = [None if v is None or v != v else v for v in values] if values else []
        return out
    if kind == "float":
        return np.array([np.nan if v is None else float(v) for v in values], dtype="float64")
    if kind == "bool":
        return np.array([bool(v) if v is not None and v == v else False for v in values],
                        dtype=bool)
    return _coerce(pd.Series(values, dtype=object), kind).array


def empty(schema: Schema | str) -> pd.DataFrame:
    """The typed empty frame of `schema`."""
    return make(schema, [])


def concat(schema: Schema | str, frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Stack frames of one schema; the result is typed even when every frame is empty."""
    parts = [f for f in frames if len(f)]
    if not parts:
        return empty(schema)
    return make(schema, pd.concat(parts, ignore_index=True))


def _kind_ok(s: pd.Series, kind: Kind) -> bool:
    t = pd.api.types
    if kind == "str":
        return t.is_object_dtype(s) or t.is_string_dtype(s)
    if kind == "float":
        return t.is_float_dtype(s)
    if kind == "bool":
        return t.is_bool_dtype(s)
    if kind == "time":
        return isinstance(s.dtype, pd.DatetimeTZDtype) and str(s.dtype.tz) == "UTC"
    return t.is_datetime64_dtype(s) and not isinstance(s.dtype, pd.DatetimeTZDtype)


def validate(schema: Schema | str, df: pd.DataFrame) -> pd.DataFrame:
    """Check that `df` has exactly the schema's columns, in order, with their dtypes.

    Returns `df` so it can be chained; raises `SchemaError` listing every problem.
    """
    sch = SCHEMAS[schema] if isinstance(schema, str) else schema
    problems: list[str] = []
    if list(df.columns) != sch.names:
        missing = [c for c in sch.names if c not in df.columns]
        extra = [c for c in df.columns if c not in sch.names]
        if missing:
            problems.append(f"missing columns {missing}")
        if extra:
            problems.append(f"unexpected columns {extra}")
        if not missing and not extra:
            problems.append(f"columns out of order: {list(df.columns)}")
    for col in sch.columns:
        if col.name in df.columns and not _kind_ok(df[col.name], col.kind):
            problems.append(f"column {col.name!r} has dtype {df[col.name].dtype}, "
                            f"expected {col.kind}")
    if problems:
        raise SchemaError(f"{sch.name} frame: " + "; ".join(problems))
    return df
