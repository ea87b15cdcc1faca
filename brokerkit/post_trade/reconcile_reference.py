"""Reconciliation row by row in plain Python (dicts keyed by tuples, and loops): the
yardstick `reconcile` is held equal to in tests (tests/unit/test_reconcile_equivalence.py)
and measured against in `benchmarks/reconcile_bench.py`; not for production."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from ..venues.symbols import instrument_key
from .reconcile import (
    COLUMNS,
    DEFAULT_MULTIPLIERS,
    FALLBACK_TOLERANCE,
    RECONCILIATION,
    Tolerance,
    _tolerances,
)

__all__ = ["reconcile_reference"]


def reconcile_reference(book: pd.DataFrame, broker: pd.DataFrame, *,
                        open_orders: pd.DataFrame | None = None,
                        fills_after: pd.DataFrame | None = None,
                        broker_fills: pd.DataFrame | None = None,
                        corporate_actions: pd.DataFrame | None = None,
                        failed: Mapping[str, str] | None = None,
                        tolerances: Mapping[str, Tolerance | float] | None = None
                        ) -> pd.DataFrame:
    """The same reconciliation row by row in plain Python (dicts keyed by tuples, and
    loops); returns a frame with `COLUMNS` holding the same values as `reconcile`'s
    (explanations included), with plain (not categorical) columns, rows in order of first
    appearance. The yardstick for `reconcile` in tests and benchmarks; not for production."""
    failed = dict(failed or {})
    tol_map = _tolerances(tolerances)
    nan = float("nan")

    def key(row: Any) -> tuple[str, str, str]:
        account = row.account if isinstance(row.account, str) else ""
        return (row.connection, account, instrument_key(row.instrument))

    def num(value: Any) -> str:
        return "?" if value is None or value != value else f"{float(value):g}"

    def hms(when: Any) -> str:
        return when.strftime("%H:%M:%S")

    def known(when: Any) -> bool:
        return when is not None and when == when

    def ident(row: Any, column: str) -> str:
        value = getattr(row, column, None)
        return "?" if value is None or value != value else str(value)

    def at_time(when: Any, snap: Any) -> str:
        return "an unknown time" if not known(when) else hms(when) if known(snap) and \
            when.date() == snap.date() else when.strftime("%Y-%m-%d %H:%M:%S")

    sides: list[dict[tuple, dict[str, Any]]] = [{}, {}]
    # Symbol, asset class and currency: per (connection, instrument), its first book row's,
    # else its first broker row's (the book is read first); each side's currency apart.
    described: dict[tuple[str, str], tuple[Any, Any, Any]] = {}
    side_currency: list[dict[tuple[str, str], Any]] = [{}, {}]
    for held, frame, currency_of in zip(sides, (book, broker), side_currency, strict=True):
        for row in frame.itertuples(index=False):
            k = key(row)
            entry = held.get(k)
            currency_of.setdefault((k[0], k[2]), getattr(row, "currency", None))
            if entry is None:
                entry = held[k] = {
                    "quantity": 0.0, "symbol": getattr(row, "symbol", None),
                    "asset_class": getattr(row, "asset_class", None),
                    "currency": getattr(row, "currency", None),
                    "price": getattr(row, "market_price", nan),
                    "multiplier": getattr(row, "multiplier", nan),
                    "value": 0.0, "as_of": getattr(row, "as_of", None)}
                entry["symbol"], entry["asset_class"], entry["currency"] = described.setdefault(
                    (k[0], k[2]), (entry["symbol"], entry["asset_class"], entry["currency"]))
            elif known(when := getattr(row, "as_of", None)) and (
                    not known(earliest := entry.get("earliest", entry["as_of"]))
                    or when < earliest):
                entry["earliest"] = when  # a repeated key: its earliest snapshot
            q = float(row.quantity)
            entry["quantity"] += 0.0 if q != q else q
            mv = float(getattr(row, "market_value", 0.0))
            entry["value"] += 0.0 if mv != mv else mv
    held_book, held_broker = sides
    earliest: dict[tuple[str, str], Any] = {}  # per (connection, account)
    for (conn, acct, _), entry in held_broker.items():
        if known(first := entry.get("earliest", entry["as_of"])):
            prev = earliest.get((conn, acct))
            earliest[(conn, acct)] = first if prev is None else min(prev, first)

    def snapshot(k: tuple[str, str, str]) -> Any:
        return (held_broker.get(k) or {}).get("as_of") or earliest.get(k[:2])

    explained: dict[tuple, float] = {}
    why: dict[tuple, list[str]] = {}
    for row in (fills_after.itertuples(index=False) if fills_after is not None else ()):
        k = key(row)
        snap = snapshot(k)
        when = getattr(row, "executed_at", None)
        if known(snap) and known(when) and when <= snap:
            continue  # already in the broker's snapshot
        side = str(row.side).lower()
        q = float(row.quantity)
        explained[k] = explained.get(k, 0.0) - (1.0 if side == "buy" else -1.0) * (
            0.0 if q != q else q)
        why.setdefault(k, []).append(
            f"fill {ident(row, 'fill_id')} ({side} {num(row.quantity)} @ "
            f"{num(getattr(row, 'price', None))}) at {at_time(when, snap)} after broker "
            f"snapshot {hms(snap) if known(snap) else '(time unknown)'}")
    for row in (open_orders.itertuples(index=False) if open_orders is not None else ()):
        filled = float(row.filled_quantity)
        if not filled > 0:
            continue
        k = key(row)
        side = str(row.side).lower()
        explained[k] = explained.get(k, 0.0) + (1.0 if side == "buy" else -1.0) * filled
        avg = getattr(row, "avg_fill_price", None)
        why.setdefault(k, []).append(
            f"open order {ident(row, 'order_id')} ({side} {num(getattr(row, 'quantity', None))}"
            f", {num(filled)} filled{'' if avg is None or avg != avg else ' @ ' + num(avg)}) "
            f"executed at the broker, not yet in the book")
    for row in (broker_fills.itertuples(index=False) if broker_fills is not None else ()):
        k = key(row)
        snap = snapshot(k)
        when = getattr(row, "executed_at", None)
        if known(snap) and known(when) and when > snap:
            continue  # not in the broker's snapshot either
        side = str(row.side).lower()
        q = float(row.quantity)
        explained[k] = explained.get(k, 0.0) + (1.0 if side == "buy" else -1.0) * (
            0.0 if q != q else q)
        order_id = getattr(row, "order_id", None)
        of = "" if order_id is None or order_id != order_id else f" of order {order_id}"
        why.setdefault(k, []).append(
            f"broker fill {ident(row, 'fill_id')} ({side} {num(row.quantity)} @ "
            f"{num(getattr(row, 'price', None))}){of} at {at_time(when, snap)}, not yet in "
            f"the book")
    ratios: dict[tuple, float] = {}
    for row in (corporate_actions.itertuples(index=False) if corporate_actions is not None
                else ()):
        k = key(row)
        ratio = float(row.ratio)
        ratios[k] = ratios.get(k, 1.0) * ratio
        kind = getattr(row, "kind", None)
        kind = "" if kind is None or kind != kind else f"{kind} "
        why.setdefault(k, []).append(
            f"corporate action {ident(row, 'action_id')} ({kind}x{num(ratio)}) reported by "
            f"the broker, not yet in the book; cost basis kept")
    for k, ratio in ratios.items():
        book_q = held_book[k]["quantity"] if k in held_book else 0.0
        explained[k] = explained.get(k, 0.0) + book_q * (ratio - 1.0)

    out = []
    inf = float("inf")
    for k in {**held_book, **held_broker}:
        b, s = held_book.get(k), held_broker.get(k)
        d = b or s
        assert d is not None
        book_q = b["quantity"] if b else None
        broker_q = s["quantity"] if s else None
        diff = (broker_q or 0.0) - (book_q or 0.0)
        price = s["price"] if s else nan
        mult = s["multiplier"] if s else nan
        if not (mult > 0 and mult != inf):
            mult = s["value"] / (broker_q * price) if s and broker_q and price else nan
        if not mult > 0 or mult == inf:  # not known: by asset class
            mult = DEFAULT_MULTIPLIERS.get(d["asset_class"], 1.0)
        t = tol_map.get(d["asset_class"], FALLBACK_TOLERANCE)
        scale = max(abs(book_q or 0.0), abs(broker_q or 0.0))

        def within(gap: float, t: Tolerance = t, scale: float = scale, unit: float
                   = price * mult) -> bool:
            return abs(gap) <= max(t.absolute, t.relative * scale) or (
                t.value > 0 and abs(gap * unit) <= t.value)

        book_ccy = side_currency[0].get((k[0], k[2]))
        broker_ccy = side_currency[1].get((k[0], k[2]))
        if k[0] in failed:
            status = "UNKNOWN"
            text = f"{k[0]} could not be read ({failed[k[0]]}): its positions are unknown, " \
                   f"not flat"
        elif b and s and isinstance(book_ccy, str) and isinstance(broker_ccy, str) \
                and book_ccy != broker_ccy:
            status = "CURRENCY_BREAK"
            text = f"currency differs: book {book_ccy}, broker {broker_ccy}"
        elif diff == 0 or within(diff):
            status, text = "MATCH", ""
        elif k in explained and within(diff - explained[k]):
            status, text = "EXPLAINED", "; ".join(why[k])
        else:
            status = "UNKNOWN_TO_BOOK" if b is None else "MISSING_AT_BROKER" if s is None \
                else "QUANTITY_BREAK"
            text = "not closed by " + "; ".join(why[k]) if k in why else ""
        no_value = status in ("UNKNOWN", "CURRENCY_BREAK")
        out.append({"connection": k[0], "account": k[1], "instrument": k[2],
                    "symbol": d["symbol"], "asset_class": d["asset_class"],
                    "currency": d["currency"],
                    "book_quantity": nan if book_q is None else book_q,
                    "broker_quantity": nan if broker_q is None or status == "UNKNOWN"
                    else broker_q,
                    "quantity_diff": nan if status == "UNKNOWN" else diff, "price": price,
                    "value_diff": nan if no_value else diff * price * mult,
                    "status": status, "explanation": text})
    floats = {c.name: "float64" for c in RECONCILIATION if c.kind == "float"}
    return pd.DataFrame(out, columns=COLUMNS).astype(floats)
