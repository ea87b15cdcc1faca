"""Book against broker: one row per position on either side, with a class and a reason.

`reconcile(book, broker, ...)` joins the book's positions and a broker's snapshot on
(connection, account, instrument) and classes every key found on either side. Instrument keys
are joined in one spelling of a share class (`venues.symbols.instrument_key`: `STK:BRK B`,
`STK:BRK/B`, `STK:BRK-B` and `STK:BRK.B` are one key, reported as `STK:BRK.B`).

==================  ===================================================================
status              meaning
==================  ===================================================================
MATCH               both sides agree within the asset class's tolerance
QUANTITY_BREAK      both hold it, in different quantities
MISSING_AT_BROKER   the book holds it, the broker does not
UNKNOWN_TO_BOOK     the broker holds it, the book does not
EXPLAINED           the difference is closed exactly (within tolerance) by what one side
                    knows and the other does not yet: fills the book recorded after the
                    broker's snapshot (`fills_after`), the executed part of orders still
                    open at the broker (`open_orders`), fills the broker reports that the
                    book has not recorded, completed orders' included (`broker_fills`), and
                    corporate actions the broker applied that the book has not
                    (`corporate_actions`: a split of ratio r explains book x (r - 1), and
                    keeps the cost basis); the explanation names them
CURRENCY_BREAK      both hold it, but the book and the broker give the instrument different
                    currencies: quantities in different currencies are not compared (and
                    value_diff is NaN); the explanation names both. Its own class rather
                    than a flagged QUANTITY_BREAK, so that matching quantities cannot hide
                    it and a sync never adopts it as a quantity
UNKNOWN             the connection could not be read (`failed`): nothing is known, never
                    "flat", and the explanation carries the error
==================  ===================================================================

Tolerances (`Tolerance`) are by quantity (absolute, relative) and by value: a difference
whose value (quantity x price x multiplier, in the row's currency) is within `value` agrees
too. The multiplier of a row is, in order: `prices`' multiplier column, the broker's
`multiplier`, the one implied by its market value, else `DEFAULT_MULTIPLIERS` by asset class
(a standard US option is on 100 shares; a future's is unknown: NaN, never 1).

A fill or open order that would *not* close the gap explains nothing: the row stays a break
and its explanation lists what was considered. The output schema is `RECONCILIATION` (column
names in `COLUMNS`); string columns (explanation included) are categoricals, so a
million-row result stays small.

Everything is vectorized. Hashing the key strings is most of the cost, so each key column of
each input is factorized once (only the first value of each run when the values come in runs,
as a book ordered by its key does), and nothing else is hashed: the three codes are packed into
one int64 per row by shifts, keys are numbered with a lookup table over that packed space (a
sorted search when it is sparse), quantities are summed with `bincount`, tolerances and classes
computed only for the keys that differ, and symbol, asset class and currency read once per
(connection, instrument). Explanation text is built with column operations and a grouped join
over the few rows that carry one. `reconcile_reference` does the same job row by row in plain
Python (dicts keyed by tuples, and loops) and returns the same values: the yardstick of
`tests/unit/test_reconcile_equivalence.py` and of `benchmarks/reconcile_bench.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import SchemaError
from ..frames import CORPORATE_ACTIONS, Column, Schema
from ..venues.symbols import instrument_key

__all__ = ["COLUMNS", "CORPORATE_ACTIONS", "DEFAULT_MULTIPLIERS", "DEFAULT_TOLERANCES",
           "RECONCILIATION", "STATUSES", "UNEXPLAINED", "Tolerance", "reconcile"]

KEY = ["connection", "account", "instrument"]
_DESCRIPTIVE = ["symbol", "asset_class", "currency"]

#: The output of `reconcile`, one row per (connection, account, instrument) on either side.
#: Kinds: 'str' columns are pandas categoricals; quantities are float64 (NaN = no value).
RECONCILIATION = Schema("reconciliation", tuple(Column(*c) for c in (
    ("connection", "str", "configured connection name"),
    ("account", "str", "account id ('' when the source has none)"),
    ("instrument", "str", "canonical instrument key, the join key across brokers"),
    ("symbol", "str", "symbol (the book's, else the broker's)"),
    ("asset_class", "str", "asset class; chooses the tolerance"),
    ("currency", "str", "currency of price and value_diff"),
    ("book_quantity", "float", "the book's quantity; NaN when the book has no row"),
    ("broker_quantity", "float", "the broker's quantity; NaN when absent or UNKNOWN"),
    ("quantity_diff", "float", "broker minus book (a missing side counts 0); NaN if UNKNOWN"),
    ("price", "float", "price per unit: `prices` if given, else the broker's market price"),
    ("value_diff", "float", "quantity_diff x price x multiplier, in currency; NaN if unknown"),
    ("status", "str", "one of STATUSES"),
    ("explanation", "str", "why: the fills or orders that explain it, or the read error"),
)))
#: The output columns, in order.
COLUMNS = RECONCILIATION.names
STATUSES = ("MATCH", "QUANTITY_BREAK", "MISSING_AT_BROKER", "UNKNOWN_TO_BOOK", "EXPLAINED",
            "UNKNOWN", "CURRENCY_BREAK")
#: Rows that need a person.
UNEXPLAINED = frozenset({"QUANTITY_BREAK", "MISSING_AT_BROKER", "UNKNOWN_TO_BOOK", "UNKNOWN",
                         "CURRENCY_BREAK"})

#: A multiplier by asset class for rows no input gives one: a standard US equity option is
#: on 100 shares (source: OCC, "Characteristics and Risks of Standardized Options", and
#: Cboe's contract specifications: "1 contract = 100 shares"); a future's depends on the
#: contract (ES 50, NQ 20, CL 1,000: CME contract specifications), so it is NaN, never 1.
DEFAULT_MULTIPLIERS: Mapping[str, float] = {"option": 100.0, "future": float("nan")}


@dataclass(frozen=True, slots=True)
class Tolerance:
    """Quantities agree when |broker - book| <= max(absolute, relative x max(|book|, |broker|)),
    or when the difference's value, |broker - book| x price x multiplier, is <= `value` (in
    the row's currency; 0: no value tolerance, and an unpriced row has none)."""

    absolute: float = 0.0
    relative: float = 0.0
    value: float = 0.0

    def __post_init__(self) -> None:
        for name in ("absolute", "relative", "value"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not v >= 0 \
                    or v == float("inf"):
                raise ValueError(f"tolerance {name} must be a finite number >= 0, got {v!r}")


#: Tolerances by asset class: fractional shares and crypto dust are real, float noise is
#: not; contracts (options, futures) are whole. Override any of them with `tolerances=`.
DEFAULT_TOLERANCES: Mapping[str, Tolerance] = {
    "equity": Tolerance(1e-6), "etf": Tolerance(1e-6), "fund": Tolerance(1e-6),
    "bond": Tolerance(1e-6), "crypto": Tolerance(1e-8), "fx": Tolerance(0.01),
    "option": Tolerance(0.0), "future": Tolerance(0.0),
}
#: For rows whose asset class is missing or not listed.
FALLBACK_TOLERANCE = Tolerance(1e-9)


def _tolerances(overrides: Mapping[str, Any] | None) -> dict[str, Tolerance]:
    """Defaults merged with overrides (a number is an absolute tolerance)."""
    out = dict(DEFAULT_TOLERANCES)
    for asset_class, tol in (overrides or {}).items():
        if isinstance(tol, Tolerance):
            out[asset_class] = tol
        elif isinstance(tol, int | float) and not isinstance(tol, bool):
            out[asset_class] = Tolerance(float(tol))
        else:
            raise TypeError(f"tolerance for {asset_class!r} must be a number or a Tolerance, "
                            f"got {tol!r}")
    return out


# -- inputs ----------------------------------------------------------------------------------

def _require(df: pd.DataFrame, what: str, columns: list[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SchemaError(f"{what} frame is missing columns {missing} "
                          f"(it has {list(df.columns)})")


def _floats(df: pd.DataFrame, column: str, what: str) -> np.ndarray:
    try:
        return pd.to_numeric(df[column], errors="raise").astype("float64").to_numpy()
    except (TypeError, ValueError) as e:
        raise SchemaError(f"{what} frame: column {column!r} must be numeric ({e})") from None


def _objects(df: pd.DataFrame, column: str) -> np.ndarray:
    if column not in df.columns:
        return np.full(len(df), None, dtype=object)
    return df[column].to_numpy(dtype=object)  # missing values stay NaN/None


def _utc(values: Any) -> np.ndarray:
    """Timestamps as UTC datetime64[ns] (naive values are taken as UTC)."""
    out = pd.to_datetime(pd.Series(values), utc=True)
    return out.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")


def _signs(df: pd.DataFrame, what: str) -> np.ndarray:
    side = df["side"].astype(str).str.lower().to_numpy()
    bad = ~np.isin(side, ["buy", "sell"])
    if bad.any():
        raise SchemaError(f"{what} frame: side must be 'buy' or 'sell', got "
                          f"{sorted(set(side[bad]))}")
    return np.where(side == "buy", 1.0, -1.0)


# -- integer keys ----------------------------------------------------------------------------

#: A key space of up to this many slots per input row (plus `_DENSE_MIN`) is numbered with a
#: lookup table (no hashing, no sorting); a larger one through the sorted keys present.
_DENSE = 2
_DENSE_MIN = 1024


def _dense(span: int, rows: int) -> bool:
    return span <= _DENSE * rows + _DENSE_MIN


def _codes(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Codes (-1 where missing) and uniques of one column, every value hashed at most once:
    a categorical's own codes; object and Python-backed string columns through their object
    array as it is (no copy), run-length first when the values come in runs (a book ordered
    by its key, a broker's positions account by account); other dtypes by `pd.factorize`."""
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return (column.cat.codes.to_numpy(dtype=np.int64),
                np.asarray(dtype.categories, dtype=object))
    if pd.api.types.is_object_dtype(dtype) or (isinstance(dtype, pd.StringDtype)
                                               and dtype.storage == "python"):
        values = column.to_numpy(dtype=object)
        codes, uniques = _run_codes(values)
    else:
        codes, uniques = pd.factorize(column)
    return codes.astype(np.int64, copy=False), np.asarray(uniques, dtype=object)


#: Runs are looked for when a column has this many rows, by probing its first `_PROBE` ones.
_RUNS_MIN, _PROBE, _RUN_LENGTH = 8192, 4096, 16


def _run_codes(values: np.ndarray) -> tuple[np.ndarray, Any]:
    """`pd.factorize` of an object array; when its first rows come in runs of equal values
    (16 long on average), only the first value of each run is hashed: comparing neighbours
    costs a fraction of hashing every value."""
    if len(values) >= _RUNS_MIN:
        head = values[:_PROBE]
        try:
            changes = np.not_equal(head[1:], head[:-1])
            if np.count_nonzero(changes) * _RUN_LENGTH <= _PROBE:
                starts = np.empty(len(values), dtype=bool)
                starts[0] = True
                np.not_equal(values[1:], values[:-1], out=starts[1:])
                at = np.flatnonzero(starts)  # a missing value (NaN != NaN) starts a run
                codes, uniques = pd.factorize(values[at])
                return np.repeat(codes, np.diff(at, append=len(values))), uniques
        except (TypeError, ValueError):  # values that do not compare to a bool (pd.NA)
            pass
    return pd.factorize(values)


def _shared_codes(columns: list[pd.Series], name: str, blank: str | None
                  ) -> tuple[list[np.ndarray], np.ndarray]:
    """One key column of every source as codes into one set of uniques, numbered in order of
    first appearance (source by source). Each source is factorized on its own and only the
    uniques are merged: no million-row column is concatenated or hashed twice. A missing
    value becomes `blank`, or is an error naming the column when `blank` is None."""
    parts = [_codes(c) for c in columns]
    missing = [int(np.count_nonzero(codes < 0)) for codes, _ in parts]
    if sum(missing) and blank is None:
        raise SchemaError(f"{sum(missing)} rows have no {name!r}")
    tail = [np.array([blank], dtype=object)] if sum(missing) else []
    merged, uniques = pd.factorize(np.concatenate([u for _, u in parts] + tail))
    merged = merged.astype(np.int64, copy=False)
    out: list[np.ndarray] = []
    at = 0
    for (codes, u), n_missing in zip(parts, missing, strict=True):
        lookup = merged[at:at + len(u)]
        at += len(u)
        if n_missing:
            out.append(np.append(lookup, merged[-1])[codes])  # code -1 reads the blank's
        elif np.array_equal(lookup, np.arange(len(lookup))):
            out.append(codes)  # already numbered so (always the first source)
        else:
            out.append(lookup[codes])
    return out, np.asarray(uniques, dtype=object)


def _canonical(codes: list[np.ndarray], uniques: np.ndarray
               ) -> tuple[list[np.ndarray], np.ndarray]:
    """Instrument codes and uniques with each key in its one spelling
    (`venues.symbols.instrument_key`): spellings of one share class share a code. Only the
    uniques are looked at; the codes are renumbered only when two spellings met."""
    spelled = np.array([instrument_key(u) for u in uniques], dtype=object)
    if not len(spelled) or all(a is b or a == b for a, b in zip(spelled, uniques,
                                                                 strict=True)):
        return codes, uniques
    merged, canonical = pd.factorize(spelled)
    merged = merged.astype(np.int64, copy=False)
    return [merged[c] for c in codes], np.asarray(canonical, dtype=object)


def _bits(n: int) -> int:
    """Bits that hold the codes 0..n-1: keys are combined by shifts, split by masks."""
    return max(n - 1, 0).bit_length()


def _code_dtype(n: int) -> type[np.signedinteger[Any]]:
    """The smallest signed integer dtype for categorical codes of n categories (what
    `Categorical.from_codes` would convert them to)."""
    for dtype in (np.int8, np.int16, np.int32):
        if n < np.iinfo(dtype).max:
            return dtype
    return np.int64


class _Ranks:
    """Dense ids 0..n-1 of the distinct values of some non-negative int64 keys below `span`,
    in sorted order of the keys, and which key arrays hold each (`held[i]`): a lookup table
    when the span is small for the number of keys, else the sorted distinct keys, searched."""

    def __init__(self, keys: list[np.ndarray], span: int) -> None:
        self._seen: np.ndarray | None = None
        self._table: np.ndarray | None = None
        if _dense(span, sum(len(k) for k in keys)):
            each = []
            for k in keys:
                on = np.zeros(span, dtype=bool)
                on[k] = True
                each.append(on)
            seen = np.logical_or.reduce(each) if len(each) > 1 else each[0]
            self.values = np.flatnonzero(seen)
            self.held = [on[self.values] for on in each]
            self._table = np.cumsum(seen, dtype=np.int64)
            self._table -= 1
            self._seen = seen
        else:
            self.values = np.unique(np.concatenate(keys))
            self.held = [_present(self.ids(k), len(self.values)) for k in keys]

    def __len__(self) -> int:
        return len(self.values)

    def ids(self, keys: np.ndarray) -> np.ndarray:
        """The ids of keys that were given to the constructor."""
        if self._table is not None:
            return self._table[keys]
        return np.searchsorted(self.values, keys)

    def find(self, keys: np.ndarray) -> np.ndarray:
        """The ids of any keys: -1 for a key (negative ones included) that was not given."""
        if self._table is not None and self._seen is not None:
            at = np.where((keys >= 0) & (keys < len(self._table)), keys, 0)
            return np.where((keys >= 0) & self._seen[at], self._table[at], -1)
        at = np.minimum(np.searchsorted(self.values, keys), max(len(self.values) - 1, 0))
        found = self.values[at] == keys if len(self.values) else np.zeros(len(keys), bool)
        return np.where(found, at, -1)


@dataclass(frozen=True, slots=True)
class _Keys:
    """The (connection, account, instrument) keys held by book or broker, numbered 0..n-1 in
    order of their codes."""

    ids: list[np.ndarray]  # per source, each row's key (-1: a fill's or order's key that
    #                        neither book nor broker holds)
    has_book: np.ndarray
    has_broker: np.ndarray
    connection: np.ndarray  # per key, the code of its connection, account, instrument
    account: np.ndarray
    instrument: np.ndarray
    uniques: list[np.ndarray]  # per key column
    codes: list[list[np.ndarray]]  # per key column, per source: each row's code

    def __len__(self) -> int:
        return len(self.connection)


def _keys(sources: list[pd.DataFrame]) -> _Keys:
    """Number the keys of `sources` (book, broker, then fills and orders). The key columns
    of every source are factorized once; the codes are packed into one int64 per row by
    shifts (connection | account | instrument), and book and broker keys ranked with a table
    when the key space allows (a sparse one is first narrowed to the (connection, account)
    pairs that hold positions: accounts mostly belong to one connection)."""
    codes, uniques = [], []
    for col in KEY:
        c, u = _shared_codes([s[col] for s in sources], col, "" if col == "account" else None)
        if col == "instrument":
            c, u = _canonical(c, u)
        codes.append(c)
        uniques.append(u)
    n_conn = max(len(uniques[0]), 1)
    bits_acct, bits_inst = _bits(len(uniques[1])), _bits(len(uniques[2]))
    holders = []
    for c, a in zip(codes[0], codes[1], strict=True):
        h = c << bits_acct
        h |= a
        holders.append(h)
    rows = len(holders[0]) + len(holders[1])
    pairs = None
    span = n_conn << (bits_acct + bits_inst)
    if not _dense(span, rows):
        pairs = _Ranks(holders[:2], n_conn << bits_acct)
        holders = [pairs.ids(h) for h in holders[:2]] + [pairs.find(h) for h in holders[2:]]
        span = len(pairs) << bits_inst
    for h, i in zip(holders, codes[2], strict=True):
        absent = h < 0
        h <<= bits_inst
        h |= i
        h[absent] = -1
    ranks = _Ranks(holders[:2], span)
    ids = [ranks.ids(k) for k in holders[:2]] + [ranks.find(k) for k in holders[2:]]
    instrument = ranks.values & ((1 << bits_inst) - 1)
    holder = ranks.values >> bits_inst
    if pairs is not None:
        holder = pairs.values[holder]
    return _Keys(ids, *ranks.held, holder >> bits_acct, holder & ((1 << bits_acct) - 1),
                 instrument, uniques, codes)


def _first(ids: np.ndarray, n: int) -> np.ndarray:
    """Index of the first row of each id (-1 where an id has no row)."""
    first = np.full(n, len(ids), dtype=np.int64)
    np.minimum.at(first, ids, np.arange(len(ids)))
    first[first == len(ids)] = -1
    return first


def _present(ids: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[ids] = True
    return out


def _no_nan(values: np.ndarray) -> np.ndarray:
    """NaN as 0, other values as they are; no copy when there is no NaN (a finite sum
    proves it without a mask)."""
    if np.isfinite(values.sum()):
        return values
    return np.where(np.isnan(values), 0.0, values)


def _sums(ids: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Float sums of `values` per id (0..n-1); NaN counts 0 (other values as they are)."""
    return np.bincount(ids, _no_nan(values), n).astype(np.float64, copy=False)


def _categorical(codes: np.ndarray, uniques: np.ndarray) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, categories=pd.Index(uniques, dtype=object),
                                     validate=False)


def _descriptive(book: pd.DataFrame, broker: pd.DataFrame, keys: _Keys
                 ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray | None]:
    """Codes (per key) and uniques of symbol, asset_class and currency: each taken per
    (connection, instrument) from its first book row, else its first broker row, so that
    one value per pair is read, never a million-row string column. Third: per key, the
    text of a currency break ('' for none; None when no key has one): the pair's first book
    row and first broker row name different currencies, and the key is held on both
    sides."""
    bits = _bits(len(keys.uniques[2]))
    span = max(len(keys.uniques[0]), 1) << bits
    both = keys.has_book & keys.has_broker
    compare = both.any() and "currency" in book.columns and "currency" in broker.columns
    on_broker = compare or not keys.has_book.all()  # else every pair has a book row
    rows = []
    for s in (0, 1) if on_broker else (0,):
        r = keys.codes[0][s] << bits
        r |= keys.codes[2][s]
        rows.append(r)
    ranks = None if _dense(span, sum(len(r) for r in rows)) else _Ranks(rows, span)
    if ranks is not None:
        rows, span = [ranks.ids(r) for r in rows], len(ranks)
    first = [_first(r, span) for r in rows]
    sources = [(book, first[0] >= 0, first[0])]
    if on_broker:
        sources.append((broker, (first[0] < 0) & (first[1] >= 0), first[1]))
    present = np.logical_or.reduce([where for _, where, _ in sources])
    per_key = None

    def key_pairs() -> np.ndarray:
        nonlocal per_key
        if per_key is None:
            per_key = keys.connection << bits
            per_key |= keys.instrument
            if ranks is not None:
                per_key = ranks.ids(per_key)
        return per_key

    codes, uniques = {}, {}
    for col in _DESCRIPTIVE:
        per_pair = np.full(span, None, dtype=object)
        for frame, where, row in sources:
            if col in frame.columns and where.any():
                per_pair[where] = frame[col].take(row[where]).to_numpy(dtype=object)
        c, u = pd.factorize(per_pair)
        c = c.astype(_code_dtype(len(u)))
        uniques[col] = np.asarray(u, dtype=object)
        held = c[present]
        if not len(held) or (held == held[0]).all():  # one value for all: no lookup
            codes[col] = np.full(len(keys), held[0] if len(held) else -1, dtype=c.dtype)
            continue
        codes[col] = c[key_pairs()]
    breaks = None
    if compare:
        on_both = (first[0] >= 0) & (first[1] >= 0)
        pairs = np.flatnonzero(on_both)
        ccy = [frame["currency"].take(row[pairs]).to_numpy(dtype=object)
               for frame, row in ((book, first[0]), (broker, first[1]))]
        differ = np.array([isinstance(x, str) and isinstance(y, str) and x != y
                           for x, y in zip(*ccy, strict=True)], dtype=bool)
        if differ.any():
            text = np.full(span, "", dtype=object)
            text[pairs[differ]] = ("currency differs: book " + ccy[0][differ].astype(str)
                                   + ", broker " + ccy[1][differ].astype(str))
            breaks = np.where(both, text[key_pairs()], "")
    return codes, uniques, breaks


# -- prices ----------------------------------------------------------------------------------

def _price_table(prices: Any) -> pd.DataFrame:
    """`prices` as a frame indexed by instrument with price and multiplier columns."""
    if isinstance(prices, pd.DataFrame):
        _require(prices, "prices", ["instrument"])
        col = next((c for c in ("price", "last", "market_price") if c in prices.columns), None)
        if col is None:
            raise SchemaError("prices frame needs a 'price', 'last' or 'market_price' column")
        out = pd.DataFrame({"price": pd.to_numeric(prices[col]).astype("float64").to_numpy(),
                            "multiplier": pd.to_numeric(prices["multiplier"]).to_numpy(
                                dtype="float64") if "multiplier" in prices.columns
                            else np.nan}, index=prices["instrument"].to_numpy(dtype=object))
    else:
        s = pd.Series(prices, dtype="float64")
        out = pd.DataFrame({"price": s.to_numpy(), "multiplier": np.nan},
                           index=s.index.to_numpy(dtype=object))
    out.index = pd.Index([instrument_key(k) for k in out.index], dtype=object)
    return out[~out.index.duplicated(keep="last")]


# -- the vectorized reconciliation -----------------------------------------------------------

def reconcile(book: pd.DataFrame, broker: pd.DataFrame, *,
              open_orders: pd.DataFrame | None = None, fills_after: pd.DataFrame | None = None,
              broker_fills: pd.DataFrame | None = None,
              corporate_actions: pd.DataFrame | None = None,
              failed: Mapping[str, str] | None = None,
              tolerances: Mapping[str, Tolerance | float] | None = None,
              prices: pd.DataFrame | pd.Series | Mapping[str, float] | None = None
              ) -> pd.DataFrame:
    """Class every position of `book` and `broker`; returns a `RECONCILIATION` frame.

    - `book`: connection, account, instrument, quantity (symbol, asset_class, currency used
      when present); `broker`: a POSITIONS frame (market_price, market_value, multiplier,
      as_of used when present). Quantities of repeated keys are summed. Key columns may be
      object, string or categorical; instrument keys are compared in one share-class
      spelling (`venues.symbols.instrument_key`).
    - `fills_after`: FILLS the book recorded that the broker snapshot may not include; those
      executed after the snapshot's `as_of` (the key's, else the account's earliest, else
      taken as given) explain a difference of minus their signed quantity.
    - `open_orders`: ORDERS still working at the broker; their `filled_quantity`, executed
      at the broker but not yet in the book, explains a difference of plus its signed size.
    - `broker_fills`: FILLS the broker reports that the book has not recorded (a completed
      order's too); those executed at or before the snapshot (or at an unknown time)
      explain a difference of plus their signed quantity, and are named.
    - `corporate_actions`: `CORPORATE_ACTIONS` rows the broker has applied and the book has
      not; ratios of one key multiply, and explain book quantity x (ratio - 1).
    - `failed`: {connection: error} for connections that could not be read: all their rows
      are UNKNOWN, never MISSING_AT_BROKER.
    - `tolerances`: {asset_class: Tolerance or absolute number} over `DEFAULT_TOLERANCES`.
    - `prices`: {instrument: price}, a Series, or a frame (instrument, price|last,
      optional multiplier) used for price and value_diff ahead of the broker's prices.

    Symbol, asset class and currency of a key come from the first book row of its
    (connection, instrument), else the first broker row. Rows come ordered by connection,
    account and instrument, each in order of first appearance (book first).
    """
    _require(book, "book", [*KEY, "quantity"])
    _require(broker, "broker", [*KEY, "quantity"])
    failed = dict(failed or {})
    tol_map = _tolerances(tolerances)
    if not len(book) and not len(broker):
        return _empty()
    fills = fills_after if fills_after is not None and len(fills_after) else None
    if fills is not None:
        _require(fills, "fills_after", [*KEY, "side", "quantity"])
    orders = None
    if open_orders is not None and len(open_orders):
        _require(open_orders, "open_orders", [*KEY, "side", "filled_quantity"])
        executed = pd.to_numeric(open_orders["filled_quantity"]).fillna(0.0) > 0
        orders = open_orders[executed.to_numpy()] if executed.any() else None
    at_broker = broker_fills if broker_fills is not None and len(broker_fills) else None
    if at_broker is not None:
        _require(at_broker, "broker_fills", [*KEY, "side", "quantity"])
    actions = corporate_actions if corporate_actions is not None and len(corporate_actions) \
        else None
    ratios = None
    if actions is not None:
        _require(actions, "corporate_actions", [*KEY, "ratio"])
        ratios = _floats(actions, "ratio", "corporate_actions")
        bad = ~(ratios > 0) | np.isinf(ratios)
        if bad.any():
            raise SchemaError(f"corporate_actions frame: ratio must be a positive number "
                              f"(new quantity per old), got {sorted(set(ratios[bad]))}")

    # Every key column of every source factorized once; keys numbered on book and broker.
    extra = [x for x in (fills, orders, at_broker, actions) if x is not None]
    keys = _keys([book, broker, *extra])
    n = len(keys)
    gb, gr = keys.ids[0], keys.ids[1]
    book_q = _sums(gb, _floats(book, "quantity", "book"), n)
    broker_qty = _floats(broker, "quantity", "broker")
    broker_q = _sums(gr, broker_qty, n)
    diff = broker_q - book_q

    # What each key's candidates would explain, and their notes.
    explained = np.zeros(n)
    has_candidates = np.zeros(n, dtype=bool)
    notes: list[pd.Series] = []
    at = 2
    if fills is not None:
        gf = keys.ids[at]
        snapshot = _snapshots(broker, keys, at)
        at += 1
        executed_at, signed = _executions(fills, "fills_after")
        use = (gf >= 0) & (np.isnat(snapshot) | np.isnat(executed_at)
                           | (executed_at > snapshot))
        explained -= _sums(gf[use], signed[use], n)
        has_candidates[gf[use]] = True
        if use.any():
            notes.append(_fill_notes(fills[use], gf[use], executed_at[use], snapshot[use]))
    if orders is not None:
        go = keys.ids[at]
        at += 1
        signed = _signs(orders, "open_orders") * _floats(orders, "filled_quantity",
                                                         "open_orders")
        use = go >= 0
        explained += _sums(go[use], signed[use], n)
        has_candidates[go[use]] = True
        if use.any():
            notes.append(_order_notes(orders[use], go[use]))
    if at_broker is not None:
        gx = keys.ids[at]
        snapshot = _snapshots(broker, keys, at)
        at += 1
        executed_at, signed = _executions(at_broker, "broker_fills")
        use = (gx >= 0) & (np.isnat(snapshot) | np.isnat(executed_at)
                           | (executed_at <= snapshot))
        explained += _sums(gx[use], signed[use], n)
        has_candidates[gx[use]] = True
        if use.any():
            notes.append(_broker_fill_notes(at_broker[use], gx[use], executed_at[use],
                                            snapshot[use]))
    if actions is not None and ratios is not None:
        ga = keys.ids[at]
        use = ga >= 0
        factor = np.ones(n)
        np.multiply.at(factor, ga[use], ratios[use])
        acted = np.unique(ga[use])
        explained[acted] += book_q[acted] * (factor[acted] - 1.0)
        has_candidates[acted] = True
        if use.any():
            notes.append(_action_notes(actions[use], ga[use], ratios[use]))

    desc_codes, desc_uniques, currency_text = _descriptive(book, broker, keys)
    # Per asset class (code -1, no class, reads the last entry), looked up by code.
    classes = [*desc_uniques["asset_class"], None]
    class_code = desc_codes["asset_class"]
    class_tol = [tol_map.get(c, FALLBACK_TOLERANCE) if isinstance(c, str)
                 else FALLBACK_TOLERANCE for c in classes]
    class_abs = np.array([t.absolute for t in class_tol])
    class_rel = np.array([t.relative for t in class_tol])
    class_value = np.array([t.value for t in class_tol])
    class_multiplier = np.array([DEFAULT_MULTIPLIERS.get(c, 1.0) if isinstance(c, str)
                                 else 1.0 for c in classes])

    unique = np.count_nonzero(keys.has_broker) == len(gr)  # (the usual) one row per key
    price, multiplier = _prices(broker, gr, unique, broker_qty, broker_q, n)
    if prices is not None:
        table = _price_table(prices).reindex(pd.Index(keys.uniques[2], dtype=object))
        given = table["price"].to_numpy()[keys.instrument]
        price = np.where(np.isnan(given), price, given)
        given = table["multiplier"].to_numpy()[keys.instrument]
        multiplier = np.where(np.isnan(given), multiplier, given)
    unpriced = np.flatnonzero(np.isnan(multiplier))  # no multiplier: by asset class
    multiplier[unpriced] = class_multiplier[class_code[unpriced]]
    value_diff = diff * price
    value_diff *= multiplier

    # Classes: MATCH unless the sides differ beyond the tolerance, which is computed only for
    # the keys that differ at all; then the class of each of the (few) breaks.
    status = np.zeros(n, dtype=np.int8)
    differs = np.flatnonzero(diff)
    code = class_code[differs]
    scale = np.maximum(np.abs(book_q[differs]), np.abs(broker_q[differs]))
    tol = np.maximum(class_abs[code], class_rel[code] * scale)
    value_tol = class_value[code]
    unit = price[differs] * multiplier[differs]
    with np.errstate(invalid="ignore"):
        off = ~((np.abs(diff[differs]) <= tol)
                | ((value_tol > 0) & (np.abs(diff[differs] * unit) <= value_tol)))
    breaks, tol, value_tol, unit = differs[off], tol[off], value_tol[off], unit[off]
    gap = diff[breaks] - explained[breaks]
    with np.errstate(invalid="ignore"):
        closed = (np.abs(gap) <= tol) | ((value_tol > 0) & (np.abs(gap * unit) <= value_tol))
    status[breaks] = np.where(
        has_candidates[breaks] & closed, 4,
        np.where(~keys.has_book[breaks], 3, np.where(~keys.has_broker[breaks], 2, 1)))
    mismatched = np.flatnonzero(currency_text != "") if currency_text is not None \
        else np.zeros(0, dtype=np.int64)
    status[mismatched] = 6
    unreadable = np.isin(keys.uniques[0], list(failed)) if failed else None
    unknown = np.flatnonzero(unreadable[keys.connection]) \
        if unreadable is not None and unreadable.any() else np.zeros(0, dtype=np.int64)
    status[unknown] = 5

    # Explanations: '' but for the keys with notes, currency breaks and the UNKNOWN ones.
    noted: list[np.ndarray] = []
    texts: list[np.ndarray] = []
    if notes:
        by_key = pd.concat(notes).groupby(level=0, sort=False).agg("; ".join)
        at_key = by_key.index.to_numpy(dtype=np.int64)
        st = status[at_key]
        keep = (st != 5) & (st != 6)
        noted.append(at_key[keep])
        texts.append(np.where(st == 4, by_key.to_numpy(dtype=object),
                              np.where(st != 0, "not closed by " + by_key.to_numpy(
                                  dtype=object), ""))[keep])
    mismatched = mismatched[status[mismatched] == 6]
    if len(mismatched):
        noted.append(mismatched)
        assert currency_text is not None
        texts.append(currency_text[mismatched])
    if len(unknown):
        text = np.array([f"{c} could not be read ({failed.get(c)}): its positions are "
                         f"unknown, not flat" for c in keys.uniques[0]], dtype=object)
        noted.append(unknown)
        texts.append(text[keys.connection[unknown]])
    labels, phrases = pd.factorize(np.concatenate([np.array([""], dtype=object), *texts]))
    explanation = np.zeros(n, dtype=_code_dtype(len(phrases)))
    if noted:
        explanation[np.concatenate(noted)] = labels[1:]

    book_q[~keys.has_book] = np.nan
    broker_q[~keys.has_broker] = np.nan
    broker_q[unknown] = diff[unknown] = value_diff[unknown] = np.nan
    value_diff[mismatched] = np.nan
    columns = {
        "connection": _categorical(keys.connection, keys.uniques[0]),
        "account": _categorical(keys.account, keys.uniques[1]),
        "instrument": _categorical(keys.instrument, keys.uniques[2]),
        **{col: _categorical(desc_codes[col], desc_uniques[col]) for col in _DESCRIPTIVE},
        "book_quantity": book_q, "broker_quantity": broker_q, "quantity_diff": diff,
        "price": price, "value_diff": value_diff,
        "status": pd.Categorical.from_codes(status, categories=list(STATUSES)),
        "explanation": _categorical(explanation, np.asarray(phrases, dtype=object)),
    }
    # The arrays are this call's own: no copy, and no consolidation into one float block.
    return pd.DataFrame(columns, columns=COLUMNS, copy=False)


def _executions(fills: pd.DataFrame, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(when, signed quantity) of each fill of the `what` argument (a missing quantity
    counts 0)."""
    signed = _signs(fills, what) * np.nan_to_num(_floats(fills, "quantity", what), nan=0.0,
                                                 posinf=np.inf, neginf=-np.inf)
    return _executed_at(fills), signed


def _executed_at(fills: pd.DataFrame) -> np.ndarray:
    if "executed_at" in fills.columns:
        return _utc(fills["executed_at"])
    return np.full(len(fills), np.datetime64("NaT"), dtype="datetime64[ns]")


def _empty() -> pd.DataFrame:
    """The typed empty `RECONCILIATION` frame."""
    out = pd.DataFrame({c.name: pd.Categorical([]) if c.kind == "str" else
                        np.array([], dtype="float64") for c in RECONCILIATION}, columns=COLUMNS)
    out["status"] = pd.Categorical([], categories=list(STATUSES))
    return out


def _snapshots(broker: pd.DataFrame, keys: _Keys, source: int) -> np.ndarray:
    """The broker snapshot time each fill of `source` is compared with: its key's as_of
    (of the key's first broker row), else the earliest of its (connection, account), else
    NaT (unknown)."""
    gf = keys.ids[source]
    out = np.full(len(gf), np.datetime64("NaT"), dtype="datetime64[ns]")
    if "as_of" not in broker.columns or not len(broker):
        return out
    first = _first(keys.ids[1], len(keys))
    row = np.where(gf >= 0, first[np.maximum(gf, 0)], -1)
    has = row >= 0
    if has.any():
        out[has] = _utc(broker["as_of"].take(row[has]))
    if not has.all():
        n_acct = max(len(keys.uniques[1]), 1)
        pair = [keys.codes[0][s] * n_acct + keys.codes[1][s] for s in (1, source)]
        earliest = pd.Series(_utc(broker["as_of"])).groupby(pair[0]).min()
        out[~has] = earliest.reindex(pair[1][~has]).to_numpy(dtype="datetime64[ns]")
    return out


def _prices(broker: pd.DataFrame, gr: np.ndarray, unique: bool, quantity: np.ndarray,
            broker_q: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per key: the broker's market price (of the key's first row), and the multiplier
    implied by its market value (NaN when not known). `unique`: no key has two broker rows,
    so each row's values (`quantity`: the broker's) are the key's, placed without a lookup
    or a sum."""
    price, multiplier = np.full(n, np.nan), np.full(n, np.nan)
    if "market_price" not in broker.columns:
        return price, multiplier
    mp = _floats(broker, "market_price", "broker")
    if unique:
        price[gr] = mp
    else:
        price = np.append(mp, np.nan)[_first(gr, n)]
    if "market_value" not in broker.columns:
        return price, _stated(broker, gr, unique, multiplier, n)
    mv = _floats(broker, "market_value", "broker")
    with np.errstate(divide="ignore", invalid="ignore"):
        if unique:
            implied = mv / (quantity * mp)
        else:
            implied = _sums(gr, mv, n)
            implied /= broker_q * price
    ok = np.isfinite(implied) & (implied > 0)
    if unique:
        multiplier[gr[ok]] = implied[ok]
    else:
        multiplier[ok] = implied[ok]
    return price, _stated(broker, gr, unique, multiplier, n)


def _stated(broker: pd.DataFrame, gr: np.ndarray, unique: bool, implied: np.ndarray, n: int
            ) -> np.ndarray:
    """The multiplier the broker states (its `multiplier` column, of the key's first row)
    where it is a positive finite number, else `implied`."""
    if "multiplier" not in broker.columns:
        return implied
    stated = _floats(broker, "multiplier", "broker")
    if not np.isfinite(stated).any():  # stated nowhere (NaN in every row)
        return implied
    if unique:
        per_key = np.full(n, np.nan)
        per_key[gr] = stated
    else:
        per_key = np.append(stated, np.nan)[_first(gr, n)]
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(per_key) & (per_key > 0)
    return np.where(ok, per_key, implied)


def _fmt(values: pd.Series) -> pd.Series:
    """Numbers as short text ('10', '101.25'), NaN as '?'."""
    return values.map(lambda v: "?" if v != v else f"{v:g}")


def _times(times: np.ndarray, ref: np.ndarray) -> pd.Series:
    """HH:MM:SS, with the date when it is not `ref`'s date (or `ref` is unknown)."""
    t = pd.Series(pd.to_datetime(times))
    same_day = t.dt.normalize().to_numpy() == pd.Series(pd.to_datetime(ref)).dt.normalize()\
        .to_numpy()
    return pd.Series(np.where(same_day, t.dt.strftime("%H:%M:%S"),
                              t.dt.strftime("%Y-%m-%d %H:%M:%S")), dtype=object)\
        .fillna("an unknown time")


def _fill_terms(fills: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per fill, its id and its terms: ('F1', 'buy 10 @ 101.2')."""
    fill_id = pd.Series(_objects(fills, "fill_id"), dtype=object).fillna("?").astype(str)
    side = fills["side"].astype(str).str.lower().reset_index(drop=True)
    qty = _fmt(fills["quantity"].astype("float64").reset_index(drop=True))
    px = _fmt(fills["price"].astype("float64").reset_index(drop=True)) \
        if "price" in fills.columns else pd.Series("?", index=qty.index)
    return fill_id, side + " " + qty + " @ " + px


def _fill_notes(fills: pd.DataFrame, keys: np.ndarray, executed_at: np.ndarray,
                snapshot: np.ndarray) -> pd.Series:
    """'fill F1 (buy 10 @ 101.2) at 14:03:05 after broker snapshot 14:03:00', per fill."""
    fill_id, terms = _fill_terms(fills)
    snap = pd.Series(pd.to_datetime(snapshot)).dt.strftime("%H:%M:%S").fillna("(time unknown)")
    text = ("fill " + fill_id + " (" + terms + ") at " + _times(executed_at, snapshot)
            + " after broker snapshot " + snap)
    return pd.Series(text.to_numpy(dtype=object), index=keys)


def _order_notes(orders: pd.DataFrame, keys: np.ndarray) -> pd.Series:
    """'open order O9 (sell 10, 4 filled @ 101) executed at the broker, not yet in the book'."""
    order_id = pd.Series(_objects(orders, "order_id"), dtype=object).fillna("?").astype(str)
    side = orders["side"].astype(str).str.lower().reset_index(drop=True)
    qty = _fmt(pd.to_numeric(orders["quantity"]).astype("float64").reset_index(drop=True)) \
        if "quantity" in orders.columns else pd.Series("?", index=side.index)
    filled = _fmt(orders["filled_quantity"].astype("float64").reset_index(drop=True))
    avg = orders["avg_fill_price"].astype("float64").reset_index(drop=True) \
        if "avg_fill_price" in orders.columns else pd.Series(np.nan, index=side.index)
    at = pd.Series(np.where(avg.notna(), " @ " + _fmt(avg), ""), dtype=object)
    text = ("open order " + order_id + " (" + side + " " + qty + ", " + filled + " filled"
            + at + ") executed at the broker, not yet in the book")
    return pd.Series(text.to_numpy(dtype=object), index=keys)


def _broker_fill_notes(fills: pd.DataFrame, keys: np.ndarray, executed_at: np.ndarray,
                       snapshot: np.ndarray) -> pd.Series:
    """'broker fill F9 (buy 5 @ 101.2) of order O7 at 14:02:55, not yet in the book'."""
    fill_id, terms = _fill_terms(fills)
    order_id = pd.Series(_objects(fills, "order_id"), dtype=object)
    of = pd.Series(np.where(order_id.notna(), " of order " + order_id.fillna("").astype(str),
                            ""), dtype=object)
    text = ("broker fill " + fill_id + " (" + terms + ")" + of
            + " at " + _times(executed_at, snapshot) + ", not yet in the book")
    return pd.Series(text.to_numpy(dtype=object), index=keys)


def _action_notes(actions: pd.DataFrame, keys: np.ndarray, ratios: np.ndarray) -> pd.Series:
    """'corporate action CA1 (split x4) reported by the broker, not yet in the book; cost
    basis kept'."""
    action_id = pd.Series(_objects(actions, "action_id"), dtype=object).fillna("?")\
        .astype(str)
    kind = pd.Series(_objects(actions, "kind"), dtype=object)
    kind = pd.Series(np.where(kind.notna(), kind.fillna("").astype(str) + " ", ""),
                     dtype=object)
    text = ("corporate action " + action_id + " (" + kind + "x" + _fmt(pd.Series(ratios))
            + ") reported by the broker, not yet in the book; cost basis kept")
    return pd.Series(text.to_numpy(dtype=object), index=keys)
