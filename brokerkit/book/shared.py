"""The book's connections in this process: one engine (and one journal hot path) per URL,
shared by every `Book` of it, migrated once; closed by `close_books`, forgotten by a forked
child."""

from __future__ import annotations

import os
import threading

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from .engine import create_book_engine, migrate
from .hotpath import Hot

__all__ = ["close_books", "engine_for", "hot_for"]

_LOCK = threading.Lock()
_ENGINES: dict[str, Engine] = {}
_HOTS: dict[str, Hot] = {}  # the journal's hot path of each shared engine
_MIGRATED: set[str] = set()


def _key(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def engine_for(url: URL, shared: bool) -> Engine:
    key = _key(url)
    with _LOCK:
        engine = _ENGINES.get(key) if shared else None
        if engine is None:
            engine = create_book_engine(url)
            if shared:
                _ENGINES[key] = engine
        if key not in _MIGRATED:
            try:
                migrate(engine)
            except BaseException:
                if shared:
                    _ENGINES.pop(key, None)
                engine.dispose()
                raise
            if shared or not _in_memory(url):  # a new in-memory engine is a new database
                _MIGRATED.add(key)
        return engine


def _in_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and (
        url.database in (None, "", ":memory:") or "mode=memory" in str(url.database))


def close_books(url: str | URL | None = None) -> None:
    """Close the shared engines (of `url`, else all); the next `Book` opens and checks anew."""
    with _LOCK:
        keys = [_key(sa.make_url(url))] if url is not None else list(_ENGINES)
        for key in keys:
            hot = _HOTS.pop(key, None)
            if hot is not None:
                hot.release()
            engine = _ENGINES.pop(key, None)
            if engine is not None:
                engine.dispose()
            _MIGRATED.discard(key)


def hot_for(url: URL, engine: Engine, shared: bool) -> Hot:
    """The hot path of `engine`: one per shared engine (so a process pins one connection
    per database, however many `Book`s it opens), else the `Book`'s own."""
    if not shared:
        return Hot(engine)
    key = _key(url)
    with _LOCK:
        hot = _HOTS.get(key)
        if hot is None or hot.engine is not engine:
            hot = _HOTS[key] = Hot(engine)
        return hot


def _after_fork() -> None:  # a child must not use its parent's sockets or SQLite handles
    for hot in _HOTS.values():
        hot.forget()
    for engine in _ENGINES.values():
        engine.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)

