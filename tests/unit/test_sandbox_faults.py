"""FaultInjector: latency, counted and seeded errors, timeouts, dropped answers, late
accepts."""

from __future__ import annotations

import asyncio
import time

import pytest

from brokerkit.sandbox.faults import FaultInjector, InjectedFault, LateOrders


async def test_latency_applies_to_every_endpoint_and_can_be_overridden():
    faults = FaultInjector({"*": {"latency_ms": 60}, "quotes": {"latency_ms": 0}})
    t0 = time.perf_counter()
    await faults.apply("balances")
    assert time.perf_counter() - t0 >= 0.06
    t0 = time.perf_counter()
    await faults.apply("quotes")
    assert time.perf_counter() - t0 < 0.05


async def test_error_next_fails_exactly_that_many_calls():
    faults = FaultInjector()
    faults.set("submit", error_next=2, error_status=503, error_message="maintenance")
    for _ in range(2):
        with pytest.raises(InjectedFault, match="submit: maintenance") as info:
            await faults.apply("submit")
        assert info.value.status == 503
    await faults.apply("submit")
    await faults.apply("balances")  # other endpoints never failed


async def test_error_rate_is_seeded():
    async def outcomes(seed: int) -> list[bool]:
        faults = FaultInjector({"*": {"error_rate": 0.5}}, seed=seed)
        out = []
        for _ in range(40):
            try:
                await faults.apply("orders")
                out.append(True)
            except InjectedFault:
                out.append(False)
        return out

    first = await outcomes(5)
    assert first == await outcomes(5) and 5 < first.count(False) < 35


async def test_timeout_hangs_then_raises():
    faults = FaultInjector({"connect": {"timeout": True, "timeout_s": 0.02}})
    with pytest.raises(TimeoutError, match="connect: injected timeout"):
        await faults.apply("connect")


def test_drop_after_accept_counts_down_or_stays_on():
    counted = FaultInjector({"submit": {"drop_after_accept": 1}})
    assert counted.take_drop() is True and counted.take_drop() is False
    always = FaultInjector({"submit": {"drop_after_accept": True}})
    assert always.take_drop() and always.take_drop()


@pytest.mark.parametrize(("values", "needle"), [
    ({"latency": 5}, "unknown fault setting 'latency'"),
    ({"latency_ms": -1}, "latency_ms=-1"),
    ({"error_rate": 1.5}, "between 0 and 1"),
    ({"timeout": "yes"}, "timeout='yes'"),
    ({"accept_late_rate": 2}, "accept_late_rate=2 .* between 0 and 1"),
    ({"accept_late_next": 1.5}, "accept_late_next=1.5"),
    ({"accept_late_next": True}, "accept_late_next=True"),
    ({"accept_late_s": -0.1}, "accept_late_s=-0.1"),
])
def test_bad_settings_are_named(values, needle):
    with pytest.raises(ValueError, match=needle):
        FaultInjector().set("submit", **values)


def test_clear_removes_faults():
    faults = FaultInjector({"submit": {"error_next": 1}, "*": {"latency_ms": 5}})
    faults.clear("submit")
    assert faults.snapshot() == {"*": {"latency_ms": 5.0}}
    faults.clear()
    assert not faults.settings("submit").active


def test_accept_late_next_holds_that_many_submits_for_accept_late_s():
    faults = FaultInjector({"submit": {"accept_late_next": 2, "accept_late_s": 0.25}})
    assert [faults.take_late() for _ in range(3)] == [0.25, 0.25, None]
    assert FaultInjector().settings("submit").accept_late_s == 15.0
    assert faults.take_late("cancel") is None


def test_accept_late_rate_is_seeded_and_leaves_the_error_draws_alone():
    def late(seed: int) -> list[bool]:
        faults = FaultInjector({"submit": {"accept_late_rate": 0.3}}, seed=seed)
        return [faults.take_late() is not None for _ in range(200)]

    first = late(3)
    assert first == late(3) and first != late(4)
    assert 40 <= first.count(True) <= 80

    async def errors(with_late: bool) -> list[bool]:
        faults = FaultInjector({"submit": {"error_rate": 0.5}}, seed=3)
        if with_late:
            faults.set("submit", accept_late_rate=0.5)
        out = []
        for _ in range(40):
            try:
                await faults.apply("submit")
                out.append(True)
            except InjectedFault:
                out.append(False)
            faults.take_late()
        return out

    assert asyncio.run(errors(False)) == asyncio.run(errors(True))


async def test_a_late_order_is_placed_after_its_delay_even_when_its_waiter_is_cancelled():
    late = LateOrders()
    placed: list[str] = []
    waiter = asyncio.ensure_future(late.placed(0.05, lambda: placed.append("o-1")))
    await asyncio.sleep(0.01)
    waiter.cancel()  # the client gave up
    assert placed == [] and len(late) == 1
    await asyncio.sleep(0.08)
    assert placed == ["o-1"] and len(late) == 0
    assert await late.placed(0, lambda: "answer") == "answer"


async def test_closing_late_orders_never_places_the_held_ones():
    owner: set[asyncio.Task] = set()
    late = LateOrders(owner)
    placed: list[int] = []
    late.hold(0.05, lambda: placed.append(1))
    assert len(owner) == 1
    await late.close()
    await asyncio.sleep(0.08)
    assert placed == [] and len(late) == 0 and not owner
