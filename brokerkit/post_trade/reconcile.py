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

Everything is vectorized (one merge, grouped sums, numpy selects); only the explanation text
of EXPLAINED and UNKNOWN rows is built per row, and there are few of those.
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


def _keyed(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["account"] = out["account"].fillna("").astype(str)
    return out


def _side(df: pd.DataFrame, extra: list[str]) -> pd.DataFrame:
    """Quantities summed per key, with the first of the descriptive columns."""
    cols = [c for c in ("symbol", "asset_class", "currency", *extra) if c in df.columns]
    agg: dict[str, Any] = {"quantity": "sum", **{c: "first" for c in cols}}
    if "market_value" in df.columns:
        agg["market_value"] = "sum"
    return _keyed(df).groupby(KEY, sort=False, dropna=False).agg(agg)


def _signed(df: pd.DataFrame, qty: str) -> pd.Series:
    sign = np.where(df["side"].astype(str).str.lower() == "buy", 1.0, -1.0)
    return df[qty].astype("float64").fillna(0.0) * sign


def reconcile(book: pd.DataFrame, broker: pd.DataFrame, *,
              open_orders: pd.DataFrame | None = None, fills_after: pd.DataFrame | None = None,
              failed: Mapping[str, str] | None = None,
              tolerances: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Class every position of `book` and `broker` (see the module doc).

    `book` has at least connection, account, instrument, quantity (plus symbol, asset_class,
    currency); `broker` is a POSITIONS frame. `fills_after` are fills the book recorded after
    the broker's snapshot (side, quantity, fill_id); `open_orders` an ORDERS frame of orders
    still working at the broker (their `filled_quantity` may not be in the book yet);
    `failed` maps connections that could not be read to their error.
    """
    failed = dict(failed or {})
    tol_map = {**DEFAULT_TOLERANCES, **(tolerances or {})}
    b = _side(book, [])
    r = _side(broker, ["market_price"])
    merged = pd.merge(b, r, how="outer", left_index=True, right_index=True,
                      suffixes=("_book", "_broker")).reset_index()
    for col in ("symbol", "asset_class", "currency"):
        sides = [merged[c] for c in (f"{col}_broker", f"{col}_book", col) if c in merged]
        merged[col] = sides[0].combine_first(sides[1]) if len(sides) > 1 \
            else sides[0] if sides else None
    book_q = merged["quantity_book"].astype("float64")
    broker_q = merged["quantity_broker"].astype("float64")
    has_book, has_broker = book_q.notna().to_numpy(), broker_q.notna().to_numpy()
    diff = broker_q.fillna(0.0) - book_q.fillna(0.0)
    tol = merged["asset_class"].map(tol_map).fillna(_FALLBACK_TOLERANCE).to_numpy()

    explained_qty = pd.Series(0.0, index=merged.index)
    notes: dict[int, list[str]] = {}
    key_index = pd.MultiIndex.from_frame(merged[KEY])
    if fills_after is not None and len(fills_after):
        f = _keyed(fills_after).assign(signed=lambda d: _signed(d, "quantity"))
        per_key = f.groupby(KEY)["signed"].sum()
        explained_qty -= per_key.reindex(key_index).fillna(0.0).to_numpy()
        _collect(notes, key_index, f, lambda x: f"fill {x.fill_id} ({x.side} {x.quantity:g}) "
                                                f"booked after the broker's snapshot")
    if open_orders is not None and len(open_orders):
        o = _keyed(open_orders)
        o = o[o["filled_quantity"].fillna(0) > 0].assign(
            signed=lambda d: _signed(d, "filled_quantity"))
        if len(o):
            per_key = o.groupby(KEY)["signed"].sum()
            explained_qty += per_key.reindex(key_index).fillna(0.0).to_numpy()
            _collect(notes, key_index, o, lambda x: f"open order {x.order_id} filled "
                                                    f"{x.filled_quantity:g} at the broker, not "
                                                    f"yet in the book")

    absdiff = diff.abs().to_numpy()
    unknown = merged["connection"].isin(failed).to_numpy()
    status = np.select(
        [unknown, absdiff <= tol, np.abs(diff.to_numpy() - explained_qty.to_numpy()) <= tol,
         ~has_book, ~has_broker],
        ["UNKNOWN", "MATCH", "EXPLAINED", "UNKNOWN_TO_BOOK", "MISSING_AT_BROKER"],
        default="QUANTITY_BREAK")
    price = merged.get("market_price", pd.Series(np.nan, index=merged.index)).astype("float64")
    mv = merged.get("market_value", pd.Series(np.nan, index=merged.index)).astype("float64")
    unit = (mv / broker_q).where(broker_q.fillna(0) != 0, price)
    out = pd.DataFrame({
        "connection": merged["connection"], "account": merged["account"],
        "instrument": merged["instrument"], "symbol": merged["symbol"],
        "asset_class": merged["asset_class"], "currency": merged["currency"],
        "book_quantity": book_q, "broker_quantity": broker_q.where(~unknown),
        "quantity_diff": diff.where(~unknown), "price": price,
        "value_diff": (diff * unit).where(~unknown), "status": status, "explanation": "",
    }, columns=COLUMNS)
    for i in np.flatnonzero(status == "EXPLAINED"):
        out.iat[i, COLUMNS.index("explanation")] = "; ".join(notes.get(int(i), []))
    for i in np.flatnonzero(unknown):
        conn = out.iat[i, 0]
        out.iat[i, COLUMNS.index("explanation")] = \
            f"{conn} could not be read ({failed[conn]}): its position is unknown, not flat"
    return out.sort_values(KEY, kind="stable").reset_index(drop=True)


def _collect(notes: dict[int, list[str]], key_index: pd.MultiIndex, rows: pd.DataFrame,
             describe: Any) -> None:
    """Append a description of each row to the note of its key's output row."""
    pos = key_index.get_indexer(pd.MultiIndex.from_frame(rows[KEY]))
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
