"""The registry: consolidated status and frames, health, and isolation of failing connections."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from brokerkit import frames
from brokerkit.config import ConnectionConfig, Settings
from brokerkit.errors import ConnectionDown, UnknownConnection
from brokerkit.service import BrokerageService, get_brokerage_service, reset_brokerage_service


def paper(name: str, url: str, **options) -> ConnectionConfig:
    """A paper connection to the paper server at `url`, over the USD demo accounts (no FX
    rates needed)."""
    return ConnectionConfig(name=name, type="paper", options={"url": url, **options},
                            accounts=("DEMO-MARGIN-1", "DEMO-CASH-1"))


def make_service(*conns: ConnectionConfig, **kw) -> BrokerageService:
    return BrokerageService(Settings(connections={c.name: c for c in conns}), **kw)


@pytest.fixture
def embedded():
    svc = BrokerageService(Settings())
    yield svc
    svc.close()


def test_embedded_default_connects_several_demo_connections(embedded):
    status = embedded.get_status()
    summary, conns = status["summary"], status["connections"]
    assert summary["embedded_sandbox"] is True
    assert len(conns) >= 2 and summary["connected"] == len(conns)
    assert summary["total_buying_power"] > 0
    assert summary["total_buying_power"] == pytest.approx(
        sum(c["buying_power"] for c in conns), abs=0.05)
    for c in conns:
        assert c["status"] == "connected" and c["accounts"] and c["latency_ms"] >= 0
        assert c["last_error"] is None and c["institution"]


def test_consolidated_positions_span_several_currencies(embedded):
    pos = embedded.positions()
    frames.validate(frames.POSITIONS, pos[frames.POSITIONS.names])
    assert pos["currency"].nunique() >= 3
    assert pos.attrs["errors"] == {}
    assert not pos["market_value_base"].isna().any()
    usd = pos[pos["currency"] == "USD"]
    assert (usd["market_value_base"] == usd["market_value"]).all()


def test_consolidated_balances_convert_to_the_base_currency(embedded):
    bal = embedded.balances()
    frames.validate(frames.BALANCES, bal[frames.BALANCES.names])
    assert set(bal["connection"]) == set(embedded.connections)
    non_usd = bal[bal["currency"] != "USD"]
    assert len(non_usd) and (non_usd["buying_power_base"] != non_usd["buying_power"]).any()


def test_failing_connection_is_down_while_the_rest_work(fresh_sandbox, paper_url):
    fresh_sandbox.broker("refusing").faults.set("connect", error_rate=1.0)
    svc = make_service(paper("good", paper_url), paper("broken", paper_url, broker="refusing"))
    try:
        status = svc.get_status()
        by_name = {c["name"]: c for c in status["connections"]}
        assert by_name["good"]["status"] == "connected"
        assert by_name["broken"]["status"] == "down"
        assert "connect failed" in by_name["broken"]["last_error"]
        assert by_name["broken"]["buying_power"] is None
        assert status["summary"]["down"] == 1 and status["summary"]["connected"] == 1
        assert status["summary"]["total_buying_power"] == by_name["good"]["buying_power"]
        pos = svc.positions()
        assert set(pos["connection"]) <= {"good"} and "broken" in pos.attrs["errors"]
    finally:
        svc.close()


def test_slow_connection_times_out_without_blocking_the_others(fresh_sandbox, paper_url):
    fresh_sandbox.broker("slow").faults.set("*", latency_ms=3000)
    svc = make_service(paper("fast", paper_url), paper("slow", paper_url, broker="slow"),
                       call_timeout=0.5)
    try:
        svc.connect()
        t0 = time.perf_counter()
        status = svc.get_status()
        elapsed = time.perf_counter() - t0
        by_name = {c["name"]: c for c in status["connections"]}
        assert elapsed < 2.0
        assert by_name["fast"]["status"] == "connected"
        assert by_name["slow"]["status"] in ("degraded", "down")
        assert by_name["slow"]["last_error"]
    finally:
        svc.close()


def test_status_calls_run_concurrently(fresh_sandbox, paper_url):
    fresh_sandbox.broker("slow").faults.set("*", latency_ms=200)
    svc = make_service(*(paper(f"p{i}", paper_url, broker="slow") for i in range(6)))
    try:
        svc.connect()
        t0 = time.perf_counter()
        svc.get_status()
        assert time.perf_counter() - t0 < 6 * 0.2 / 2
    finally:
        svc.close()


def test_unknown_and_unavailable_connections_are_named(embedded, paper_url):
    with pytest.raises(UnknownConnection, match="no connection named 'nope'"):
        embedded.adapter("nope")
    svc = make_service(paper("x", paper_url, broker=5))
    try:
        status = svc.get_status()
        assert status["connections"][0]["status"] == "down"
        with pytest.raises(ConnectionDown):
            svc.adapter("x")
    finally:
        svc.close()


def test_async_forms_work_from_a_foreign_running_loop(embedded):
    async def cell():
        return await embedded.get_status_async()

    assert asyncio.run(cell())["summary"]["connected"] >= 2


def test_process_wide_service_is_one_object():
    reset_brokerage_service()
    try:
        assert get_brokerage_service() is get_brokerage_service()
    finally:
        reset_brokerage_service()


def test_a_connection_type_whose_adapter_is_missing_is_down_with_a_clear_error(paper_url):
    svc = make_service(paper("good", paper_url),
                       ConnectionConfig(name="tx", type="tradestation"))
    try:
        by_name = {c["name"]: c for c in svc.get_status()["connections"]}
        assert by_name["good"]["status"] == "connected"
        assert by_name["tx"]["status"] == "down"
        assert "not available in this brokerkit version" in by_name["tx"]["last_error"]
    finally:
        svc.close()


def test_rotating_a_secret_reconnects_the_connections_that_use_it(paper_url):
    import time as _time

    from brokerkit.secrets import get_secret_store

    store = get_secret_store()
    store.set("paper_token", "first-value-123", store="file")
    uses = dataclasses.replace(paper("uses", paper_url), secrets={"token": "paper_token"})
    svc = make_service(uses, paper("other", paper_url))
    try:
        svc.connect()
        before_uses, before_other = svc.adapter("uses"), svc.adapter("other")
        assert before_uses.secrets["token"].reveal() == "first-value-123"
        store.rotate("paper_token", "second-value-456")
        deadline = _time.monotonic() + 5
        while svc.adapter("uses") is before_uses and _time.monotonic() < deadline:
            _time.sleep(0.02)
        fresh = svc.adapter("uses")
        assert fresh is not before_uses and fresh.secrets["token"].reveal() == "second-value-456"
        assert svc.adapter("other") is before_other
        assert svc.health("uses").status == "connected"
        assert "second-value-456" not in repr(svc) and "second-value-456" not in repr(fresh)
    finally:
        svc.close()
