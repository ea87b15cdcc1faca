"""Book against broker: one row per position on either side, with a class and a reason.

`reconcile(book, broker, ...)` joins the book's positions and a broker's snapshot on
(connection, account, instrument) and classes every key found on either side:

==================  ===================================================================
status              meaning
==================  ===================================================================
MATCH               both sides agree within the asset class's tolerance
QUANTITY_BREAK      both hold it, in different quantities
MISSING_AT_BROKER   the book holds it, the broker does not
UNKNOWN_TO_BOOK     the broker holds it, the book does not
EXPLAINED           the difference is closed exactly (within tolerance) by fills the book
                    recorded after the broker's snapshot (`fills_after`) and by the executed
                    part of orders still open at the broker that the book has not recorded
                    yet (`open_orders`); the explanation names them
UNKNOWN             the connection could not be read (`failed`): nothing is known, never
                    "flat", and the explanation carries the error
==================  ===================================================================

A fill or open order that would *not* close the gap explains nothing: the row stays a break
and its explanation lists what was considered. The output schema is `RECONCILIATION` (column
names in `COLUMNS`); string columns are categoricals, so a million-row result stays small.

Everything is vectorized: the key columns of every input are factorized once into integer
group ids, quantities are summed with `bincount`, classes chosen with one `numpy.select`;
explanation text is built with column operations and a grouped join over the few rows that
carry one. `reconcile_reference` does the same job row by row in plain Python (dicts and
loops): the yardstick of the property test and of `benchmarks/reconcile_bench.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import SchemaError
from ..frames import Column, Schema

__all__ = ["COLUMNS", "DEFAULT_TOLERANCES", "RECONCILIATION", "STATUSES", "UNEXPLAINED",
           "Tolerance", "reconcile", "reconcile_reference"]

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
            "UNKNOWN")
#: Rows that need a person.
UNEXPLAINED = frozenset({"QUANTITY_BREAK", "MISSING_AT_BROKER", "UNKNOWN_TO_BOOK", "UNKNOWN"})


@dataclass(frozen=True, slots=True)
class Tolerance:
    """Quantities agree when |broker - book| <= max(absolute, relative x max(|book|, |broker|))."""

    absolute: float = 0.0
    relative: float = 0.0

    def __post_init__(self) -> None:
        if not (self.absolute >= 0 and self.relative >= 0):
            raise ValueError(f"tolerance must be >= 0, got absolute={self.absolute!r}, "
                             f"relative={self.relative!r}")


#: Tolerances by asset class: fractional shares and crypto dust are real, float noise is
#: not; contracts (options, futures) are whole. Override any of them with `tolerances=`.
DEFAULT_TOLERANCES: Mapping[str, Tolerance] = {
    "equity": Tolerance(1e-6), "etf": Tolerance(1e-6), "fund": Tolerance(1e-6),
    "bond": Tolerance(1e-6), "crypto": Tolerance(1e-8), "fx": Tolerance(0.01),
    "option": Tolerance(0.0), "future": Tolerance(0.0),
}
#: For rows whose asset class is missing or not listed.
FALLBACK_TOLERANCE = Tolerance(1e-9)
_DERIVATIVES = frozenset({"option", "future"})  # no multiplier assumed for these


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

def _factorize(values: np.ndarray, column: str, blank: str | None) -> tuple[np.ndarray, Any]:
    """Codes and uniques of one key column; a missing value becomes `blank`, or is an error
    naming the column when `blank` is None."""
    codes, uniques = pd.factorize(values)
    missing = codes < 0
    if missing.any():
        if blank is None:
            raise SchemaError(f"{int(missing.sum())} rows have no {column!r}")
        hit = np.flatnonzero(uniques == blank)
        if len(hit):
            codes[missing] = hit[0]
        else:
            codes[missing] = len(uniques)
            uniques = np.append(np.asarray(uniques, dtype=object), blank)
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)


def _group(codes: list[np.ndarray], sizes: list[int]) -> tuple[np.ndarray, int]:
    """Dense ids (0..n-1, in sorted order of the code tuples) of each row's tuple of codes."""
    n_rows = len(codes[0])
    combined, span = np.zeros(n_rows, dtype=np.int64), 1
    for c, size in zip(codes, sizes, strict=True):
        if span * max(size, 1) >= 2**62:  # keep the mixed-radix number in int64
            combined, uniq = pd.factorize(combined, sort=True)
            span = len(uniq)
        combined, span = combined * max(size, 1) + c, span * max(size, 1)
    if span <= 4 * n_rows + 1024:  # small key space: a dense table, no hashing
        seen = np.zeros(span, dtype=bool)
        seen[combined] = True
        rank = np.cumsum(seen) - 1
        return rank[combined], int(rank[-1] + 1) if n_rows else 0
    ids, uniq = pd.factorize(combined, sort=True)
    return ids.astype(np.int64), len(uniq)


def _first(ids: np.ndarray, n: int) -> np.ndarray:
    """Index of the first row of each id (-1 where an id has no row)."""
    first = np.full(n, -1, dtype=np.int64)
    first[ids[::-1]] = np.arange(len(ids) - 1, -1, -1)
    return first


def _categorical(codes: np.ndarray, uniques: np.ndarray) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, categories=pd.Index(uniques, dtype=object),
                                     validate=False)


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
    return out[~out.index.duplicated(keep="last")]


# -- the vectorized reconciliation -----------------------------------------------------------

def reconcile(book: pd.DataFrame, broker: pd.DataFrame, *,
              open_orders: pd.DataFrame | None = None, fills_after: pd.DataFrame | None = None,
              failed: Mapping[str, str] | None = None,
              tolerances: Mapping[str, Tolerance | float] | None = None,
              prices: pd.DataFrame | pd.Series | Mapping[str, float] | None = None
              ) -> pd.DataFrame:
    """Class every position of `book` and `broker`; returns a `RECONCILIATION` frame.

    - `book`: connection, account, instrument, quantity (symbol, asset_class, currency used
      when present); `broker`: a POSITIONS frame (market_price, market_value, as_of used when
      present). Quantities of repeated keys are summed.
    - `fills_after`: FILLS the book recorded that the broker snapshot may not include; those
      executed after the snapshot's `as_of` (the key's, else the account's earliest, else
      taken as given) explain a difference of minus their signed quantity.
    - `open_orders`: ORDERS still working at the broker; their `filled_quantity`, executed
      at the broker but not yet in the book, explains a difference of plus its signed size.
    - `failed`: {connection: error} for connections that could not be read: all their rows
      are UNKNOWN, never MISSING_AT_BROKER.
    - `tolerances`: {asset_class: Tolerance or absolute number} over `DEFAULT_TOLERANCES`.
    - `prices`: {instrument: price}, a Series, or a frame (instrument, price|last,
      optional multiplier) used for price and value_diff ahead of the broker's prices.

    Rows come ordered by connection, account and instrument, each in order of first
    appearance (book first).
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

    # One factorization of every source's keys: book, broker, then fills and orders.
    sources = [book, broker, *(x for x in (fills, orders) if x is not None)]
    lengths = np.cumsum([0, *(len(s) for s in sources)])
    key_codes, key_uniques = [], []
    for col in KEY:
        values = np.concatenate([_objects(s, col) for s in sources])
        c, u = _factorize(values, col, "" if col == "account" else None)
        key_codes.append(c)
        key_uniques.append(u)
    ids, n_all = _group(key_codes, [len(u) for u in key_uniques])
    gb, gr = ids[lengths[0]:lengths[1]], ids[lengths[1]:lengths[2]]

    has_book = np.bincount(gb, minlength=n_all) > 0
    has_broker = np.bincount(gr, minlength=n_all) > 0
    keep = has_book | has_broker  # keys only fills or orders mention are flat on both sides
    book_q = np.bincount(gb, np.nan_to_num(_floats(book, "quantity", "book")), n_all)
    broker_qty = _floats(broker, "quantity", "broker")
    broker_q = np.bincount(gr, np.nan_to_num(broker_qty), n_all)
    diff = broker_q - book_q

    # Fills and orders: the quantity each key's candidates would explain, and their notes.
    explained = np.zeros(n_all)
    has_candidates = np.zeros(n_all, dtype=bool)
    first_broker = _first(gr, n_all)
    notes: list[pd.Series] = []
    at = lengths[2]
    if fills is not None:
        gf = ids[at:at + len(fills)]
        at += len(fills)
        snapshot = _snapshots(broker, key_codes, lengths, first_broker, gf)
        executed_at = _utc(fills["executed_at"]) if "executed_at" in fills.columns \
            else np.full(len(fills), np.datetime64("NaT"), dtype="datetime64[ns]")
        after = np.isnat(snapshot) | np.isnat(executed_at) | (executed_at > snapshot)
        signed = _signs(fills, "fills_after") * np.nan_to_num(
            _floats(fills, "quantity", "fills_after"))
        explained -= np.bincount(gf[after], signed[after], n_all)
        has_candidates[gf[after]] = True
        notes.append(_fill_notes(fills[after], gf[after], executed_at[after], snapshot[after]))
    if orders is not None:
        go = ids[at:at + len(orders)]
        signed = _signs(orders, "open_orders") * _floats(orders, "filled_quantity",
                                                         "open_orders")
        explained += np.bincount(go, signed, n_all)
        has_candidates[go] = True
        notes.append(_order_notes(orders, go))

    # Descriptive columns: per (connection, instrument), from its first row, book first.
    first_row = _first(ids, n_all)
    pairs, n_pairs = _group([key_codes[0][:lengths[2]], key_codes[2][:lengths[2]]],
                            [len(key_uniques[0]), len(key_uniques[2])])
    first_of_pair = _first(pairs, n_pairs)
    pair_of_key = pairs[np.minimum(first_row, lengths[2] - 1)]  # kept keys: a side's row
    from_book = first_of_pair < lengths[1]
    desc_codes, desc_uniques = {}, {}
    for col in _DESCRIPTIVE:
        per_pair = np.empty(n_pairs, dtype=object)
        per_pair[from_book] = _objects(book, col)[first_of_pair[from_book]]
        per_pair[~from_book] = _objects(broker, col)[first_of_pair[~from_book] - lengths[1]]
        c, u = pd.factorize(per_pair)
        desc_codes[col], desc_uniques[col] = c[pair_of_key], np.asarray(u, dtype=object)
    # Per asset class (the last entry stands for "none"), looked up by code.
    classes = [*desc_uniques["asset_class"], None]
    class_code = desc_codes["asset_class"]
    class_tol = [tol_map.get(c, FALLBACK_TOLERANCE) if isinstance(c, str)
                 else FALLBACK_TOLERANCE for c in classes]
    class_abs = np.array([t.absolute for t in class_tol])
    class_rel = np.array([t.relative for t in class_tol])
    class_derivative = np.array([c in _DERIVATIVES for c in classes])

    # Tolerances matter only where the sides differ at all.
    tol = np.zeros(n_all)
    differs = np.flatnonzero(diff != 0)
    if len(differs):
        code = class_code[differs]
        scale = np.maximum(np.abs(book_q[differs]), np.abs(broker_q[differs]))
        tol[differs] = np.maximum(class_abs[code], class_rel[code] * scale)

    failed_codes = np.flatnonzero(np.isin(key_uniques[0], list(failed)))
    conn_of_key = key_codes[0][first_row]
    unknown = np.isin(conn_of_key, failed_codes)
    status_codes = np.select(
        [unknown, np.abs(diff) <= tol,
         has_candidates & (np.abs(diff - explained) <= tol), ~has_book, ~has_broker],
        [5, 0, 4, 3, 2], default=1)

    price, multiplier = _prices(broker, broker_qty, gr, first_broker, broker_q, n_all)
    if prices is not None:
        table = _price_table(prices)
        inst = key_uniques[2][key_codes[2][first_row]]
        given = table.reindex(pd.Index(inst, dtype=object))
        price = np.where(given["price"].notna(), given["price"].to_numpy(), price)
        multiplier = np.where(given["multiplier"].notna(), given["multiplier"].to_numpy(),
                              multiplier)
    multiplier = np.where(np.isnan(multiplier) & ~class_derivative[class_code], 1.0,
                          multiplier)

    explanation = np.full(n_all, "", dtype=object)
    if notes:
        by_key = pd.concat(notes).groupby(level=0, sort=False).agg("; ".join)
        keys = by_key.index.to_numpy()
        st = status_codes[keys]
        explanation[keys] = np.where(
            st == 4, by_key.to_numpy(),
            np.where(st != 0, "not closed by " + by_key.to_numpy(), ""))
    if unknown.any():
        text = np.array([f"{c} could not be read ({failed.get(c)}): its positions are "
                         f"unknown, not flat" for c in key_uniques[0]], dtype=object)
        explanation[unknown] = text[conn_of_key[unknown]]

    rows = np.flatnonzero(keep)
    some = first_row[rows]
    unknown_kept = unknown[rows]
    out = pd.DataFrame({
        **{col: _categorical(key_codes[i][some], key_uniques[i]) for i, col in enumerate(KEY)},
        **{col: _categorical(desc_codes[col][rows], desc_uniques[col]) for col in _DESCRIPTIVE},
        "book_quantity": np.where(has_book[rows], book_q[rows], np.nan),
        "broker_quantity": np.where(has_broker[rows] & ~unknown_kept, broker_q[rows], np.nan),
        "quantity_diff": np.where(unknown_kept, np.nan, diff[rows]),
        "price": price[rows],
        "value_diff": np.where(unknown_kept, np.nan,
                               diff[rows] * price[rows] * multiplier[rows]),
        "status": pd.Categorical.from_codes(status_codes[rows], categories=list(STATUSES)),
        "explanation": explanation[rows],
    }, columns=COLUMNS)
    return out


def _empty() -> pd.DataFrame:
    """The typed empty `RECONCILIATION` frame."""
    out = pd.DataFrame({c.name: pd.Categorical([]) if c.kind == "str" else
                        np.array([], dtype="float64") for c in RECONCILIATION}, columns=COLUMNS)
    out["status"] = pd.Categorical([], categories=list(STATUSES))
    out["explanation"] = np.array([], dtype=object)
    return out


def _snapshots(broker: pd.DataFrame, key_codes: list[np.ndarray], lengths: np.ndarray,
               first_broker: np.ndarray, gf: np.ndarray) -> np.ndarray:
    """The broker snapshot time each fill is compared with: its key's as_of, else the
    earliest of its (connection, account), else NaT (unknown)."""
    out = np.full(len(gf), np.datetime64("NaT"), dtype="datetime64[ns]")
    if "as_of" not in broker.columns or not len(broker):
        return out
    as_of = _utc(broker["as_of"])
    row = first_broker[gf]
    has = row >= 0
    out[has] = as_of[row[has]]
    sl_broker, sl_fills = slice(lengths[1], lengths[2]), slice(lengths[2], lengths[2] + len(gf))
    pair_broker = pd.MultiIndex.from_arrays([key_codes[0][sl_broker], key_codes[1][sl_broker]])
    earliest = pd.Series(as_of).groupby(pair_broker).min()
    pair_fills = pd.MultiIndex.from_arrays([key_codes[0][sl_fills], key_codes[1][sl_fills]])
    fallback = earliest.reindex(pair_fills).to_numpy(dtype="datetime64[ns]")
    return np.where(has, out, fallback)


def _prices(broker: pd.DataFrame, qty: np.ndarray, gr: np.ndarray, first_broker: np.ndarray,
            broker_q: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per key: the broker's market price, and the multiplier implied by its market value
    (NaN when not known)."""
    price = np.full(n, np.nan)
    multiplier = np.full(n, np.nan)
    if "market_price" not in broker.columns:
        return price, multiplier
    mp = _floats(broker, "market_price", "broker")
    has = first_broker >= 0
    price[has] = mp[first_broker[has]]
    if "market_value" in broker.columns:
        mv = np.bincount(gr, np.nan_to_num(_floats(broker, "market_value", "broker")), n)
        with np.errstate(divide="ignore", invalid="ignore"):
            implied = mv / (broker_q * price)
        multiplier = np.where(np.isfinite(implied) & (implied > 0), implied, np.nan)
    return price, multiplier


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


def _fill_notes(fills: pd.DataFrame, keys: np.ndarray, executed_at: np.ndarray,
                snapshot: np.ndarray) -> pd.Series:
    """'fill F1 (buy 10 @ 101.2) at 14:03:05 after broker snapshot 14:03:00', per fill."""
    fill_id = pd.Series(_objects(fills, "fill_id"), dtype=object).fillna("?").astype(str)
    side = fills["side"].astype(str).str.lower().reset_index(drop=True)
    qty = _fmt(fills["quantity"].astype("float64").reset_index(drop=True))
    px = _fmt(fills["price"].astype("float64").reset_index(drop=True)) \
        if "price" in fills.columns else pd.Series("?", index=qty.index)
    snap = pd.Series(pd.to_datetime(snapshot)).dt.strftime("%H:%M:%S").fillna("(time unknown)")
    text = ("fill " + fill_id + " (" + side + " " + qty + " @ " + px + ") at "
            + _times(executed_at, snapshot) + " after broker snapshot " + snap)
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


# -- the row-by-row reference ----------------------------------------------------------------

def reconcile_reference(book: pd.DataFrame, broker: pd.DataFrame, *,
                        open_orders: pd.DataFrame | None = None,
                        fills_after: pd.DataFrame | None = None,
                        failed: Mapping[str, str] | None = None,
                        tolerances: Mapping[str, Tolerance | float] | None = None
                        ) -> pd.DataFrame:
    """The same reconciliation row by row in plain Python (dicts and loops); returns a frame
    with `COLUMNS` (explanations name the same fills and orders, less finely worded).
    The yardstick for `reconcile` in tests and benchmarks; not for production use."""
    failed = dict(failed or {})
    tol_map = _tolerances(tolerances)

    def key(row: Any) -> tuple[str, str, str]:
        account = row.account if isinstance(row.account, str) else ""
        return (row.connection, account, row.instrument)

    sides: list[dict[tuple, dict[str, Any]]] = [{}, {}]
    for held, frame in zip(sides, (book, broker), strict=True):
        for row in frame.itertuples(index=False):
            entry = held.get(key(row))
            if entry is None:
                entry = held[key(row)] = {
                    "quantity": 0.0, "symbol": getattr(row, "symbol", None),
                    "asset_class": getattr(row, "asset_class", None),
                    "currency": getattr(row, "currency", None),
                    "price": getattr(row, "market_price", float("nan")),
                    "value": 0.0, "as_of": getattr(row, "as_of", None)}
            q = float(row.quantity)
            entry["quantity"] += 0.0 if q != q else q
            mv = float(getattr(row, "market_value", 0.0))
            entry["value"] += 0.0 if mv != mv else mv
    held_book, held_broker = sides
    earliest: dict[tuple[str, str], Any] = {}
    for (conn, acct, _), entry in held_broker.items():
        if entry["as_of"] is not None and entry["as_of"] == entry["as_of"]:
            prev = earliest.get((conn, acct))
            earliest[(conn, acct)] = entry["as_of"] if prev is None else min(prev,
                                                                             entry["as_of"])
    explained: dict[tuple, float] = {}
    why: dict[tuple, list[str]] = {}
    for row in (fills_after.itertuples(index=False) if fills_after is not None else ()):
        k = key(row)
        snap = (held_broker.get(k) or {}).get("as_of") or earliest.get(k[:2])
        when = getattr(row, "executed_at", None)
        if snap is not None and when is not None and when <= snap:
            continue  # already in the broker's snapshot
        sign = 1.0 if str(row.side).lower() == "buy" else -1.0
        explained[k] = explained.get(k, 0.0) - sign * float(row.quantity)
        why.setdefault(k, []).append(f"fill {row.fill_id}")
    for row in (open_orders.itertuples(index=False) if open_orders is not None else ()):
        filled = float(row.filled_quantity)
        if not filled > 0:
            continue
        k = key(row)
        sign = 1.0 if str(row.side).lower() == "buy" else -1.0
        explained[k] = explained.get(k, 0.0) + sign * filled
        why.setdefault(k, []).append(f"open order {row.order_id}")

    out = []
    for k in {**held_book, **held_broker}:
        b, s = held_book.get(k), held_broker.get(k)
        d = b or s
        assert d is not None
        book_q = b["quantity"] if b else None
        broker_q = s["quantity"] if s else None
        diff = (broker_q or 0.0) - (book_q or 0.0)
        t = tol_map.get(d["asset_class"], FALLBACK_TOLERANCE)
        tol = max(t.absolute, t.relative * max(abs(book_q or 0.0), abs(broker_q or 0.0))) \
            if diff != 0 else 0.0
        if k[0] in failed:
            status, text = "UNKNOWN", f"{k[0]} could not be read ({failed[k[0]]})"
        elif abs(diff) <= tol:
            status, text = "MATCH", ""
        elif k in explained and abs(diff - explained[k]) <= tol:
            status, text = "EXPLAINED", "; ".join(why[k])
        else:
            status = "UNKNOWN_TO_BOOK" if b is None else "MISSING_AT_BROKER" if s is None \
                else "QUANTITY_BREAK"
            text = "not closed by " + "; ".join(why[k]) if k in why else ""
        price = s["price"] if s else float("nan")
        mult = s["value"] / (broker_q * price) if s and broker_q and price else float("nan")
        if not mult > 0 and d["asset_class"] not in _DERIVATIVES:
            mult = 1.0
        unknown = status == "UNKNOWN"
        out.append({"connection": k[0], "account": k[1], "instrument": k[2],
                    "symbol": d["symbol"], "asset_class": d["asset_class"],
                    "currency": d["currency"],
                    "book_quantity": float("nan") if book_q is None else book_q,
                    "broker_quantity": float("nan") if broker_q is None or unknown
                    else broker_q,
                    "quantity_diff": float("nan") if unknown else diff, "price": price,
                    "value_diff": float("nan") if unknown else diff * price * mult,
                    "status": status, "explanation": text})
    floats = {c.name: "float64" for c in RECONCILIATION if c.kind == "float"}
    return pd.DataFrame(out, columns=COLUMNS).astype(floats)
