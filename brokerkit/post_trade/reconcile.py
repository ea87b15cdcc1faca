"""Book against broker: one row per position on either side, with a class and a reason.

`reconcile(book, broker, ...)` joins the book's positions and a broker's snapshot on
(connection, account, instrument) and classes every row:

==================  ===================================================================
status              meaning
==================  ===================================================================
MATCH               both sides agree within the asset class's tolerance
QUANTITY_BREAK      both hold it, in different quantities
MISSING_AT_BROKER   the book holds it, the broker does not
UNKNOWN_TO_BOOK     the broker holds it, the book does not
EXPLAINED           the difference is accounted for: fills the book recorded after the
                    broker's snapshot, or fills of orders still open at the broker that the
                    book has not recorded yet (the explanation names them)
UNKNOWN             the connection could not be read: nothing is known, never "flat"
==================  ===================================================================

Everything is vectorized: keys become integers (one factorize per key column), quantities are
summed with `bincount`, classes chosen with one `numpy.select`; only the explanation text of
EXPLAINED and UNKNOWN rows is built per row, and there are few of those.
`reconcile_reference` is the same logic row by row, kept for tests and the benchmark.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["COLUMNS", "DEFAULT_TOLERANCES", "STATUSES", "UNEXPLAINED", "reconcile",
           "reconcile_reference"]

KEY = ["connection", "account", "instrument"]

#: The output columns, in order.
COLUMNS = [*KEY, "symbol", "asset_class", "currency", "book_quantity", "broker_quantity",
           "quantity_diff", "price", "value_diff", "status", "explanation"]
STATUSES = ("MATCH", "QUANTITY_BREAK", "MISSING_AT_BROKER", "UNKNOWN_TO_BOOK", "EXPLAINED",
            "UNKNOWN")
#: Rows that need a person.
UNEXPLAINED = frozenset({"QUANTITY_BREAK", "MISSING_AT_BROKER", "UNKNOWN_TO_BOOK", "UNKNOWN"})

#: Absolute quantity differences treated as equal, by asset class: fractional shares and
#: crypto dust are real, float noise is not.
DEFAULT_TOLERANCES: Mapping[str, float] = {
    "equity": 1e-6, "etf": 1e-6, "fund": 1e-6, "bond": 1e-6, "crypto": 1e-8, "fx": 0.01,
    "option": 1e-9, "future": 1e-9,
}
_FALLBACK_TOLERANCE = 1e-9


def _accounts(s: pd.Series) -> np.ndarray:
    return s.astype(object).where(s.notna(), "").to_numpy()


def _group_ids(book: pd.DataFrame, broker: pd.DataFrame) -> tuple[np.ndarray, int]:
    """One integer per distinct (connection, account, instrument) across both sides."""
    codes = np.zeros(len(book) + len(broker), dtype=np.int64)
    for col in KEY:
        values = np.concatenate([_accounts(book[col]) if col == "account"
                                 else book[col].to_numpy(dtype=object),
                                 _accounts(broker[col]) if col == "account"
                                 else broker[col].to_numpy(dtype=object)])
        c, uniq = pd.factorize(values)
        codes, groups = pd.factorize(codes * (len(uniq) + 1) + c)
    return codes.astype(np.int64), len(groups) if len(codes) else 0


def _first(ids: np.ndarray, n: int) -> np.ndarray:
    """Row index of the first row of each group (-1 where a group has none)."""
    first = np.full(n, -1, dtype=np.int64)
    first[ids[::-1]] = np.arange(len(ids) - 1, -1, -1)
    return first


def _signed(df: pd.DataFrame, qty: str) -> np.ndarray:
    sign = np.where(df["side"].astype(str).str.lower() == "buy", 1.0, -1.0)
    return df[qty].astype("float64").fillna(0.0).to_numpy() * sign


def reconcile(book: pd.DataFrame, broker: pd.DataFrame, *,
              open_orders: pd.DataFrame | None = None, fills_after: pd.DataFrame | None = None,
              failed: Mapping[str, str] | None = None,
              tolerances: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Class every position of `book` and `broker` (see the module doc).

    `book` has at least connection, account, instrument, quantity (plus symbol, asset_class,
    currency); `broker` is a POSITIONS frame. `fills_after` are fills the book recorded after
    the broker's snapshot (side, quantity, fill_id); `open_orders` an ORDERS frame of orders
    still working at the broker (their `filled_quantity` may not be in the book yet);
    `failed` maps connections that could not be read to their error. Rows come in order of
    first appearance, book first.
    """
    failed = dict(failed or {})
    tol_map = {**DEFAULT_TOLERANCES, **(tolerances or {})}
    nb = len(book)
    ids, n = _group_ids(book, broker)
    gb, gr = ids[:nb], ids[nb:]

    def col(df: pd.DataFrame, name: str) -> np.ndarray | None:
        if name not in df.columns:
            return None
        return _accounts(df[name]) if name == "account" else df[name].to_numpy(dtype=object)

    def total(g: np.ndarray, values: pd.Series) -> np.ndarray:
        return np.bincount(g, weights=values.astype("float64").fillna(0.0).to_numpy(),
                           minlength=n)

    has_book = np.bincount(gb, minlength=n) > 0
    has_broker = np.bincount(gr, minlength=n) > 0
    book_q = np.where(has_book, total(gb, book["quantity"]), np.nan)
    broker_q = np.where(has_broker, total(gr, broker["quantity"]), np.nan)
    fr = _first(gr, n)
    first = _first(ids, n)  # each key's first row, book rows first

    def pick(name: str) -> np.ndarray:
        parts = [c if c is not None else np.full(len(df), None, dtype=object)
                 for c, df in ((col(book, name), book), (col(broker, name), broker))]
        return np.concatenate(parts)[first]

    desc = {c: pick(c) for c in (*KEY, "symbol", "asset_class", "currency")}
    price = np.full(n, np.nan)
    if "market_price" in broker.columns:
        price[fr >= 0] = broker["market_price"].astype("float64").to_numpy()[fr[fr >= 0]]
    mv = total(gr, broker["market_value"]) if "market_value" in broker.columns \
        else np.full(n, np.nan)
    diff = np.nan_to_num(broker_q) - np.nan_to_num(book_q)
    classes, class_of = pd.factorize(desc["asset_class"])
    tol = np.array([tol_map.get(c, _FALLBACK_TOLERANCE) for c in class_of] +
                   [_FALLBACK_TOLERANCE])[classes]  # -1 (no class) takes the fallback

    explained_qty = np.zeros(n)
    notes: dict[int, list[str]] = {}
    if (fills_after is not None and len(fills_after)) or \
            (open_orders is not None and len(open_orders)):
        key_index = pd.MultiIndex.from_arrays([desc[c] for c in KEY])
        if fills_after is not None and len(fills_after):
            pos = _positions(key_index, fills_after)
            ok = pos >= 0
            np.add.at(explained_qty, pos[ok], -_signed(fills_after, "quantity")[ok])
            _collect(notes, pos, fills_after,
                     lambda x: f"fill {x.fill_id} ({x.side} {x.quantity:g}) booked after the "
                               f"broker's snapshot")
        if open_orders is not None and len(open_orders):
            o = open_orders[open_orders["filled_quantity"].fillna(0) > 0]
            if len(o):
                pos = _positions(key_index, o)
                ok = pos >= 0
                np.add.at(explained_qty, pos[ok], _signed(o, "filled_quantity")[ok])
                _collect(notes, pos, o,
                         lambda x: f"open order {x.order_id} filled {x.filled_quantity:g} at "
                                   f"the broker, not yet in the book")

    unknown = pd.Series(desc["connection"]).isin(list(failed)).to_numpy()
    absdiff = np.abs(diff)
    status = np.select(
        [unknown, absdiff <= tol, np.abs(diff - explained_qty) <= tol, ~has_book, ~has_broker],
        ["UNKNOWN", "MATCH", "EXPLAINED", "UNKNOWN_TO_BOOK", "MISSING_AT_BROKER"],
        default="QUANTITY_BREAK").astype(object)
    with np.errstate(divide="ignore", invalid="ignore"):
        unit = np.where(np.nan_to_num(broker_q) != 0, mv / broker_q, price)
    explanation = np.full(n, "", dtype=object)
    for i in np.flatnonzero(status == "EXPLAINED"):
        explanation[i] = "; ".join(notes.get(int(i), []))
    for i in np.flatnonzero(unknown):
        conn = desc["connection"][i]
        explanation[i] = f"{conn} could not be read ({failed[conn]}): its position is " \
                         f"unknown, not flat"
    return pd.DataFrame({
        **{c: desc[c] for c in (*KEY, "symbol", "asset_class", "currency")},
        "book_quantity": book_q, "broker_quantity": np.where(unknown, np.nan, broker_q),
        "quantity_diff": np.where(unknown, np.nan, diff), "price": price,
        "value_diff": np.where(unknown, np.nan, diff * unit), "status": status,
        "explanation": explanation,
    }, columns=COLUMNS)


def _positions(key_index: pd.MultiIndex, rows: pd.DataFrame) -> np.ndarray:
    """The output row of each of `rows` (-1 when its key is in neither side)."""
    return key_index.get_indexer(pd.MultiIndex.from_arrays(
        [_accounts(rows[c]) if c == "account" else rows[c].to_numpy(dtype=object)
         for c in KEY]))


def _collect(notes: dict[int, list[str]], pos: np.ndarray, rows: pd.DataFrame,
             describe: Any) -> None:
    """Append a description of each row to the note of its output row."""
    for p, row in zip(pos, rows.itertuples(index=False), strict=True):
        if p >= 0:
            notes.setdefault(int(p), []).append(describe(row))


def reconcile_reference(book: pd.DataFrame, broker: pd.DataFrame, *,
                        failed: Mapping[str, str] | None = None,
                        tolerances: Mapping[str, float] | None = None) -> dict[tuple, str]:
    """Row-by-row reconciliation (no explanations): {(connection, account, instrument):
    status}. The plain-Python yardstick for `reconcile`."""
    failed = dict(failed or {})
    tol_map = {**DEFAULT_TOLERANCES, **(tolerances or {})}
    held: dict[tuple, list[Any]] = {}
    for row in book.itertuples(index=False):
        key = (row.connection, row.account or "", row.instrument)
        entry = held.setdefault(key, [0.0, None, row.asset_class])
        entry[0] += float(row.quantity)
    seen: dict[tuple, list[Any]] = {}
    for row in broker.itertuples(index=False):
        key = (row.connection, row.account or "", row.instrument)
        entry = seen.setdefault(key, [0.0, row.asset_class])
        entry[0] += float(row.quantity)
    out: dict[tuple, str] = {}
    for key in {*held, *seen}:
        b, s = held.get(key), seen.get(key)
        asset_class = (s or b)[-1]  # type: ignore[index]
        tol = tol_map.get(asset_class, _FALLBACK_TOLERANCE)
        diff = (s[0] if s else 0.0) - (b[0] if b else 0.0)
        if key[0] in failed:
            out[key] = "UNKNOWN"
        elif abs(diff) <= tol:
            out[key] = "MATCH"
        elif b is None:
            out[key] = "UNKNOWN_TO_BOOK"
        elif s is None:
            out[key] = "MISSING_AT_BROKER"
        else:
            out[key] = "QUANTITY_BREAK"
    return out
