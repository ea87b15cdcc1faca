"""FaultInjector: latency, counted and seeded errors, timeouts, dropped answers."""

from __future__ import annotations

import time

import pytest

from brokerkit.sandbox.faults import FaultInjector, InjectedFault


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
