"""Client-side rate limits: presets, sustained bursts on a fake clock, waiting, config errors."""

from __future__ import annotations

import asyncio
import threading
import time
from bisect import bisect_left

import pytest

from brokerkit.errors import ConfigError
from brokerkit.execution.ratelimit import (
    PRESETS,
    RateLimiter,
    Window,
    limiter_for,
)


class FakeClock:
    """A monotonic clock that moves only when told; its `sleep` advances it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def max_in_any_window(times: list[float], period: float) -> int:
    """The most acquisitions inside any half-open window [t, t + period)."""
    return max((bisect_left(times, t + period) - i for i, t in enumerate(times)), default=0)


def hammer(limiter: RateLimiter, clock: FakeClock, seconds: float, step: float) -> list[float]:
    """Acquire as fast as allowed for `seconds`, polling every `step`; return admission times."""
    admitted: list[float] = []
    end = clock.now + seconds
    while clock.now < end:
        while limiter.try_acquire():
            admitted.append(clock.now)
        clock.now += step
    return admitted


@pytest.mark.parametrize(("ctype", "options", "limit", "period"), [
    ("alpaca", {}, 200, 60.0),
    ("ibkr", {}, 50, 1.0),
    ("tradestation", {}, 250, 300.0),
    ("crypto", {"exchange": "coinbase"}, 29, 1.0),
    ("crypto", {"exchange": "binanceus"}, 20, 1.0),
])
def test_burst_at_the_preset_limit_sustains_95_percent_and_never_exceeds(ctype, options, limit,
                                                                          period):
    clock = FakeClock()
    limiter = limiter_for(ctype, options, clock=clock)
    assert [(w.limit, w.period) for w in limiter.windows] == [(limit, period)]
    duration = 10 * period
    times = hammer(limiter, clock, duration, step=period / 256)
    assert max_in_any_window(times, period) <= limit
    assert len(times) >= 0.95 * limit * duration / period


def test_kraken_orders_cost_nothing_on_the_api_counter_but_reads_cost_three():
    clock = FakeClock()
    kraken = limiter_for("crypto", {"exchange": "kraken"}, clock=clock)
    window = kraken.windows[0]
    assert window.limit / window.period == 1.0                    # rateLimit 1000 ms
    assert all(kraken.try_acquire() for _ in range(1000))          # AddOrder: cost 0
    assert kraken.try_acquire(operation="balances")               # Balance: cost 3
    assert kraken.try_acquire(operation="orders")                 # OpenOrders: cost 3
    assert not kraken.try_acquire(operation="balances")
    assert kraken.wait_time(operation="balances") == pytest.approx(6.0)


def test_binanceus_account_read_weighs_ten():
    clock = FakeClock()
    limiter = limiter_for("crypto", {"exchange": "binanceus"}, clock=clock)
    assert limiter.try_acquire(operation="balances")
    assert limiter.try_acquire(operation="balances")
    assert not limiter.try_acquire(operation="balances")           # 30 > 20 per second
    clock.now += 1.0
    assert limiter.try_acquire(operation="balances")


def test_order_rate_cap_adds_to_the_preset_and_counts_submits_only():
    clock = FakeClock()
    limiter = limiter_for("alpaca", {}, max_orders_per_second=2, clock=clock)
    assert limiter.try_acquire() and limiter.try_acquire()
    assert not limiter.try_acquire()
    assert limiter.try_acquire(operation="positions")              # reads: alpaca window only
    clock.now += 1.0
    assert limiter.try_acquire()


def test_fractional_order_rate_becomes_n_per_m_seconds():
    limiter = RateLimiter.per_second(0.5)
    assert [(w.limit, w.period) for w in limiter.windows] == [(1, 2.0)]


def test_paper_has_no_limit():
    limiter = limiter_for("paper", {})
    assert limiter.unlimited and all(limiter.try_acquire() for _ in range(10_000))
    assert PRESETS["paper"].windows == ()


def test_refused_acquire_takes_nothing_and_wait_time_says_how_long():
    clock = FakeClock()
    limiter = RateLimiter([Window(2, 10.0)], clock=clock)
    assert limiter.try_acquire()
    clock.now += 4.0
    assert limiter.try_acquire()
    assert not limiter.try_acquire() and not limiter.try_acquire()
    assert limiter.wait_time() == pytest.approx(6.0)
    clock.now += 6.0
    assert limiter.wait_time() == 0.0 and limiter.try_acquire()
    assert not limiter.try_acquire()


async def test_acquire_waits_exactly_until_a_slot_frees():
    clock = FakeClock()
    limiter = RateLimiter([Window(3, 1.0)], clock=clock, sleep=clock.sleep)
    start = clock.now
    for _ in range(9):
        await limiter.acquire()
    assert clock.now - start == pytest.approx(2.0)
    assert len(clock.slept) == 2


async def test_acquire_on_the_real_clock_sleeps_until_the_window_frees():
    """The second acquire of a 1-per-0.2 s window is admitted only once the first has left
    the window: the limiter asked to sleep, and the real clock moved at least the period."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(seconds)

    limiter = RateLimiter([Window(1, 0.2)], sleep=sleep)
    before_first = time.monotonic()
    await limiter.acquire()
    await limiter.acquire()
    assert time.monotonic() - before_first >= 0.2  # a lower bound only: never flaky
    assert slept and all(0 < s <= 0.2 + 1e-9 for s in slept)


def test_cost_larger_than_any_window_can_hold_is_an_error_not_a_hang():
    with pytest.raises(ValueError, match="more than the window 5 per 1 s"):
        RateLimiter([Window(5, 1.0)]).try_acquire(6)
    with pytest.raises(ValueError, match="cost"):
        RateLimiter([Window(5, 1.0)]).try_acquire(-1)


def test_try_acquire_is_thread_safe():
    clock = FakeClock()
    limiter = RateLimiter([Window(500, 60.0)], clock=clock)
    wins: list[bool] = []

    def grab() -> None:
        got = [limiter.try_acquire() for _ in range(200)]
        wins.extend(got)

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(wins) == 500


def test_option_overrides_the_preset_or_removes_it():
    custom = limiter_for("alpaca", {"rate_limit": {"requests": 1000, "per_seconds": 60}})
    assert [(w.limit, w.period) for w in custom.windows] == [(1000, 60)]
    assert limiter_for("ibkr", {"rate_limit": False}).unlimited


def test_unknown_ccxt_exchange_is_read_from_ccxt():
    limiter = limiter_for("crypto", {"exchange": "bitstamp"})
    assert len(limiter.windows) == 1


@pytest.mark.parametrize(("ctype", "options", "key"), [
    ("crypto", {}, "connections.k.options.exchange"),
    ("crypto", {"exchange": "not-an-exchange"}, "connections.k.options.exchange"),
    ("alpaca", {"rate_limit": {"requests": 0, "per_seconds": 60}},
     "connections.k.options.rate_limit"),
    ("alpaca", {"rate_limit": {"requests": 10}}, "connections.k.options.rate_limit"),
    ("robinhood", {}, "connections.k.type"),
])
def test_bad_rate_limit_options_name_the_key(ctype, options, key):
    with pytest.raises(ConfigError) as err:
        limiter_for(ctype, options, name="k")
    assert err.value.key == key


def test_limiter_describes_its_limits():
    assert str(limiter_for("alpaca", {}, name="live", max_orders_per_second=20)) == \
        "live: 200 per 60 s and 20 per 1 s"
