"""Shared fixtures. Every test runs with its own user config and data directories, so nothing
on the machine (a real brokerkit.toml, a real book, real secrets) is ever read or written."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, settings

# CI has 2 cores shared with servers under test: judge properties, not generation speed.
settings.register_profile("brokerkit", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.function_scoped_fixture])
settings.load_profile("brokerkit")


def pytest_collection_modifyitems(config, items):
    """Browser tests run last: Playwright's sync API keeps an event loop running in the main
    thread for the rest of the session, which `asyncio.run` in other tests cannot share."""
    items.sort(key=lambda item: item.get_closest_marker("ui") is not None)


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("BROKERKIT_CONFIG_DIR", str(home / "config"))
    monkeypatch.setenv("BROKERKIT_DATA_DIR", str(home / "data"))
    monkeypatch.delenv("BROKERKIT_CONFIG", raising=False)
    monkeypatch.delenv("BROKERKIT_DATABASE_URL", raising=False)
    monkeypatch.delenv("SYSTEM_HALTED", raising=False)
    monkeypatch.chdir(home)
    yield
    # a test that used the embedded profile started the sandbox service of its data dir:
    # it outlives processes by design, so the test stops it
    from brokerkit.sandbox import service

    service.stop(home / "data" / "sandbox")


@pytest.fixture(autouse=True)
def _no_real_keyring():
    """Tests never read or write the developer's real keyring: keyring's `fail` backend is in
    force (so the secret chain skips it) unless a test installs its own."""
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        yield
        return
    from brokerkit.secrets import reset_secret_store

    old = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    reset_secret_store()
    yield
    keyring.set_keyring(old)
    reset_secret_store()


# --- sandboxes and adapters ---------------------------------------------------------------

_sandbox_seeds = itertools.count(70_000)


@pytest.fixture
def fresh_sandbox():
    """A sandbox of its own (a seed no other test uses), forgotten after the test."""
    from brokerkit.sandbox import get_sandbox, reset_sandbox

    seed = next(_sandbox_seeds)
    yield get_sandbox(seed)
    reset_sandbox(seed)


@pytest.fixture
def embedded_sandbox(fresh_sandbox):
    """`fresh_sandbox`, served by this process as the user's sandbox service: the embedded
    profile (nothing configured) of this test, and of any process it starts, connects to it,
    while the test reaches its brokers' state directly (`embedded_sandbox.broker("paper")`)."""
    import os
    from pathlib import Path

    from brokerkit.sandbox import service

    with service.hosted(Path(os.environ["BROKERKIT_DATA_DIR"]) / "sandbox", fresh_sandbox):
        yield fresh_sandbox


@pytest.fixture
def paper_url(fresh_sandbox):
    """The URL of `fresh_sandbox`'s paper server, on a real loopback socket: connections of
    type "paper" take `options={"url": paper_url, "broker": name}`, and tests reach the
    broker's state (and set its faults) through `fresh_sandbox.broker(name)`."""
    servers = fresh_sandbox.start_servers()
    yield servers["paper"]["url"]
    fresh_sandbox.stop_servers()


@pytest.fixture
def adapters():
    """`adapters(adapter, connect=True)` connects `adapter` and returns it; every adapter
    passed is closed after the test."""
    made = []

    def keep(adapter, *, connect: bool = True):
        if connect:
            adapter.connect()
        made.append(adapter)
        return adapter

    yield keep
    for adapter in made:
        adapter.close()


# --- the book: `book_url` over SQLite and PostgreSQL, and an open `book` ------------------
# (owned by the book; execution and post-trade tests reuse these fixtures)

_PG_URL_ENV = "BROKERKIT_TEST_DATABASE_URL"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def book_url(request, tmp_path):
    """A URL of a fresh, empty book database: a SQLite file, or a new PostgreSQL schema
    (dropped afterwards) when BROKERKIT_TEST_DATABASE_URL is set."""
    import os
    import uuid

    import sqlalchemy as sa

    from brokerkit.book import close_books

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'book.db'}"
        yield url
        close_books(url)
        return
    base = os.environ.get(_PG_URL_ENV)
    if not base:
        pytest.skip(f"{_PG_URL_ENV} is not set")
    schema = f"bk_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    url_text = url.render_as_string(hide_password=False)
    try:
        yield url_text
    finally:
        close_books(url_text)
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def book(book_url):
    """An open, migrated `Book` at `book_url`."""
    from brokerkit.book import Book

    b = Book(book_url)
    yield b
    b.close()
