"""Rate limits shared per broker credential through the book, on SQLite and PostgreSQL: one
budget per key across limiters and processes, leases of a process that dies, the fallback
when the book is down, and where the execution service and the Alpaca adapter take them."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import textwrap
import time
from bisect import bisect_left

import pytest

from brokerkit.book import Book
from brokerkit.config import ConnectionConfig, Settings
from brokerkit.execution.ratelimit import RateLimiter, Window
from brokerkit.execution.sharedlimit import (
    RateLimitStore,
    SharedRateLimiter,
    connection_key,
    credential_key,
)
from brokerkit.secrets import Secret


def max_in_any_window(times: list[float], period: float) -> int:
    """The most admissions inside any half-open window [t, t + period)."""
    times = sorted(times)
    return max((bisect_left(times, t + period) - i for i, t in enumerate(times)), default=0)


def shared(book: Book, key: str, limit: int, period: float) -> SharedRateLimiter:
    limiter = RateLimitStore(book).share(RateLimiter((Window(limit, period),)), key,
                                         min_period=0)  # short windows: fast tests
    assert isinstance(limiter, SharedRateLimiter)
    return limiter


def drain(limiter: RateLimiter) -> int:
    """Take units until the limiter refuses; how many it admitted."""
    n = 0
    while limiter.try_acquire():
        n += 1
    return n


# -- keys ----------------------------------------------------------------------------------


def test_credential_key_is_a_hash_of_the_key_id_never_the_key():
    key = credential_key("alpaca", key_id="PKSECRETKEYID123")
    assert key.startswith("alpaca:") and len(key) == len("alpaca:") + 16
    assert "PKSECRETKEYID123" not in key
    assert key == credential_key("alpaca", key_id="PKSECRETKEYID123")
    assert key != credential_key("alpaca", key_id="PKOTHERKEYID")


def test_a_connection_without_credentials_keys_on_its_host_not_its_url_userinfo():
    assert credential_key("tradestation", endpoint="https://user:pw@api.example.com:8443/v3") \
        == "tradestation@api.example.com:8443"
    assert connection_key("ibkr", "ib", {"host": "127.0.0.1", "port": 7497}, {}) \
        == "ibkr@127.0.0.1:7497"
    assert connection_key("x", "mine", {}, {}) == "x#mine"


def test_connection_key_of_a_configured_api_key_is_the_adapters_credential_key():
    secrets = {"api_key": Secret("PKABC", "k"), "secret_key": Secret("s", "s")}
    assert connection_key("alpaca", "a", {"url": "http://127.0.0.1:1"}, secrets) \
        == credential_key("alpaca", key_id="PKABC")


# -- one budget per key --------------------------------------------------------------------


def test_limiters_on_one_key_share_one_budget_and_other_keys_do_not(book_url):
    book = Book(book_url)
    a, b = shared(book, "alpaca:aaaa", 10, 30.0), shared(book, "alpaca:aaaa", 10, 30.0)
    other = shared(book, "alpaca:bbbb", 10, 30.0)
    taken_a = drain(a)
    taken_b = drain(b)
    assert taken_a + taken_b == 10  # the two together, whoever leased first
    assert taken_a <= 10 and taken_b <= 10 - taken_a
    assert drain(other) == 10
    assert a.wait_time() > 25.0  # nothing frees before the first lease leaves the window
    assert "shared by alpaca:aaaa" in str(a)


def test_unused_units_of_a_closed_limiter_go_back_at_once(book_url):
    book = Book(book_url)
    a, b = shared(book, "k", 1, 5.0), shared(book, "k", 1, 5.0)
    assert a.wait_time() == 0.0  # a leases the only unit, spends nothing
    assert not b.try_acquire()
    a.close()
    time.sleep(0.5)  # a refused limiter asks again within a lease's length (0.5 s here)
    assert b.try_acquire()
    assert not a.try_acquire()


def test_a_process_that_dies_holding_a_lease_keeps_its_units_out_until_the_window_passes(
        book_url):
    book = Book(book_url)
    limit, period = 4, 1.0
    # A process that leased units and died: its lease is never settled, as here.
    script = textwrap.dedent(f"""
        import os
        from brokerkit.book import Book
        from brokerkit.execution.ratelimit import RateLimiter, Window
        from brokerkit.execution.sharedlimit import RateLimitStore
        limiter = RateLimitStore(Book({book_url!r})).share(
            RateLimiter((Window({limit}, {period}),)), "dead", min_period=0)
        assert limiter.try_acquire() and limiter.try_acquire()
        assert limiter.wait_time() == 0.0
        os._exit(0)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    died = time.monotonic()
    survivor = shared(book, "dead", limit, period)
    got = drain(survivor)
    assert got < limit  # the dead process's lease still counts
    time.sleep(max(0.0, died + period + 0.1 * period + 0.05 - time.monotonic()))
    assert drain(survivor) >= limit - got  # after its lease and a window, all of it is back


def test_a_book_that_cannot_be_reached_leaves_each_process_its_own_windows(tmp_path, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")  # a file where the book's directory should be
    store = RateLimitStore(f"sqlite:///{blocker / 'book.db'}")
    limiter = store.share(RateLimiter((Window(3, 30.0),)), "k")
    with caplog.at_level(logging.WARNING, "brokerkit.execution.sharedlimit"):
        assert drain(limiter) == 3
    assert "cannot be reached" in caplog.text
    assert limiter.wait_time() > 25.0


async def test_acquire_waits_for_room_another_limiter_holds(book_url):
    book = Book(book_url)
    a, b = shared(book, "k", 2, 0.5), shared(book, "k", 2, 0.5)
    assert drain(a) == 2
    t0 = time.monotonic()
    await asyncio.wait_for(b.acquire(), 5)
    assert time.monotonic() - t0 >= 0.4


# -- two real processes on one key ---------------------------------------------------------

_HAMMER = textwrap.dedent("""
    import asyncio, json, sys, time
    from brokerkit.book import Book
    from brokerkit.execution.ratelimit import RateLimiter, Window
    from brokerkit.execution.sharedlimit import RateLimitStore

    url, limit, period, start, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), \\
        float(sys.argv[4]), float(sys.argv[5])
    limiter = RateLimitStore(Book(url)).share(RateLimiter((Window(limit, period),)), "hammer",
                                              min_period=0)
    stamps = []

    async def main():
        await asyncio.sleep(max(0.0, start - time.time()))
        while time.time() < start + seconds:
            await limiter.acquire()
            stamps.append(time.time())

    asyncio.run(main())
    print(json.dumps(stamps))
""")


def test_two_processes_on_one_key_never_exceed_the_limit_and_use_95_percent(book_url):
    Book(book_url).close()  # migrated once, before the processes start
    limit, period, seconds = 20, 2.0, 6.0
    start = time.time() + 3.0  # both import first, then hammer together
    procs = [subprocess.Popen([sys.executable, "-c", _HAMMER, book_url, str(limit), str(period),
                               str(start), str(seconds)], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    each = [json.loads(out) for out in outs]
    stamps = sorted(each[0] + each[1])
    assert all(each), "both processes were admitted"
    assert max_in_any_window(stamps, period) <= limit
    windows = int(seconds // period)
    in_full_windows = sum(1 for s in stamps if s < start + windows * period)
    assert in_full_windows >= 0.95 * limit * windows, (in_full_windows, limit * windows)


# -- wiring --------------------------------------------------------------------------------


@pytest.fixture
def alpaca_config(monkeypatch):
    monkeypatch.setenv("BROKERKIT_SECRET_SHARED_ALPACA_KEY", "PKSHAREDKEY")
    monkeypatch.setenv("BROKERKIT_SECRET_SHARED_ALPACA_SECRET", "shared-secret")
    return ConnectionConfig("alpaca", "alpaca", options={"url": "http://127.0.0.1:9"},
                            secrets={"api_key": "shared_alpaca_key",
                                     "secret_key": "shared_alpaca_secret"})


def test_the_brokerage_service_hands_its_books_store_to_every_adapter(tmp_path,
                                                                      alpaca_config):
    from brokerkit.service import BrokerageService

    cfg = alpaca_config
    with_book = BrokerageService(Settings(connections={"alpaca": cfg},
                                          book_url=f"sqlite:///{tmp_path / 'b.db'}"))
    without = BrokerageService(Settings(connections={"alpaca": cfg}))
    assert with_book.rate_limits is not None
    assert with_book.adapter("alpaca").rate_limits is with_book.rate_limits
    assert without.rate_limits is None
    assert without.adapter("alpaca").rate_limits is None


def test_alpaca_request_limiters_are_shared_per_key_from_connect(tmp_path, alpaca_config):
    from brokerkit.adapters.alpaca import AlpacaAdapter

    cfg = alpaca_config
    adapter = AlpacaAdapter(cfg, {"api_key": Secret("PKKEY"), "secret_key": Secret("x")})
    adapter.rate_limits = RateLimitStore(f"sqlite:///{tmp_path / 'b.db'}")
    adapter._build("http://127.0.0.1:9", None, ("PKKEY", "x"))
    key = credential_key("alpaca", key_id="PKKEY")
    assert isinstance(adapter._limiter, SharedRateLimiter) and adapter._limiter.key == key
    assert isinstance(adapter._data_limiter, SharedRateLimiter)
    assert adapter._data_limiter.key == f"{key}:data"
    assert adapter._limiter.windows == adapter._own_limiters[0].windows  # 200 per 60.5 s
    first = adapter._limiter
    adapter._build("http://127.0.0.1:9", None, ("PKKEY", "x"))  # a reconnect keeps it
    assert adapter._limiter is first


def test_the_pipelines_order_limiter_is_shared_per_credential(tmp_path, alpaca_config):
    from brokerkit.execution.service import ExecutionService
    from brokerkit.service import BrokerageService

    cfg = alpaca_config
    url = f"sqlite:///{tmp_path / 'b.db'}"
    settings = Settings(connections={"alpaca": cfg}, routing={"default": "alpaca"},
                        book_url=url)
    brokerage = BrokerageService(settings)
    svc = ExecutionService(brokerage, Book(url))
    try:
        adapter = brokerage.adapter("alpaca")
        limiter = svc._limiter("alpaca", adapter)
        assert isinstance(limiter, SharedRateLimiter)
        assert limiter.key == credential_key("alpaca", key_id="PKSHAREDKEY") + ":orders"
    finally:
        svc.close()


def test_brokerkits_per_second_cap_stays_per_process_while_the_brokers_minute_is_shared(book):
    store = RateLimitStore(book)
    windows = (Window(6, 60.0), Window(2, 1.0))  # a broker's per-minute budget, our own cap
    a = store.share(RateLimiter(windows), "k2")
    b = store.share(RateLimiter(windows), "k2")
    # each process (limiter) has its own 2 per second...
    assert a.try_acquire() and a.try_acquire() and not a.try_acquire()
    assert b.try_acquire() and b.try_acquire() and not b.try_acquire()
    # ...and the minute's 6 are one budget: 4 taken, so 2 are left between them
    time.sleep(1.05)
    assert a.try_acquire() and b.try_acquire()
    assert not a.try_acquire() and not b.try_acquire()
    assert a.wait_time() > 1.0 and b.wait_time() > 1.0  # the minute, not the second
