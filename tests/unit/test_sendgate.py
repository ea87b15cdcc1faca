"""The send gate: no order journaled under one trading state is sent after a change commits,
across threads and processes (`brokerkit.execution.sendgate`)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from brokerkit.execution.sendgate import SendGate, TradingStateChanged


def test_a_send_journaled_before_a_change_is_refused_and_sends_nothing(tmp_path: Path):
    gate = SendGate(tmp_path / "gate")
    before = gate.generation()
    with gate.changing():
        pass
    sent = []

    async def send() -> None:
        async with gate.sending(before):
            sent.append("sent")

    with pytest.raises(TradingStateChanged, match="nothing was sent"):
        asyncio.run(send())
    assert sent == []
    assert gate.generation() == before + 1


def test_a_change_commits_only_after_the_send_in_progress_and_later_sends_see_it(
        tmp_path: Path):
    gate = SendGate(tmp_path / "gate")
    events: list[str] = []

    async def main() -> None:
        g = gate.generation()
        async with gate.sending(g):
            changer = threading.Thread(target=change)
            changer.start()
            await asyncio.sleep(0.2)  # the change waits for this send
            events.append("sent")
        await asyncio.to_thread(changer.join)
        with pytest.raises(TradingStateChanged):
            async with gate.sending(g):
                events.append("sent late")

    def change() -> None:
        with gate.changing():
            events.append("committed")

    asyncio.run(main())
    assert events == ["sent", "committed"]


def test_a_waiting_change_is_not_starved_by_a_stream_of_sends(tmp_path: Path):
    gate = SendGate(tmp_path / "gate")
    committed = threading.Event()
    sends_after: list[float] = []

    def change() -> None:
        with gate.changing():
            committed.set()

    async def stream() -> None:
        g = gate.generation()
        changer: threading.Thread | None = None
        for i in range(200):  # overlapping sends, each holding the gate a little
            try:
                async with gate.sending(g):
                    if i == 5:
                        changer = threading.Thread(target=change)
                        changer.start()
                    if committed.is_set():
                        sends_after.append(time.monotonic())
                    await asyncio.sleep(0.005)
            except TradingStateChanged:
                break
        assert changer is not None
        await asyncio.to_thread(changer.join, 5)

    asyncio.run(stream())
    assert committed.is_set() and sends_after == []


def test_across_processes_a_halt_waits_for_the_other_process_send_to_finish(tmp_path: Path):
    gate_path = tmp_path / "gate"
    gate = SendGate(gate_path)
    script = textwrap.dedent(f"""
        import asyncio, sys, time
        from pathlib import Path
        from brokerkit.execution.sendgate import SendGate
        gate = SendGate(Path({str(gate_path)!r}))
        async def main():
            async with gate.sending(gate.generation()):
                print("holding", flush=True)
                await asyncio.sleep(0.5)
                print(f"sent {{time.time()!r}}", flush=True)
        asyncio.run(main())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "holding"
    with gate.changing():
        committed = time.time()
    out = proc.stdout.read()
    assert proc.wait(10) == 0
    sent = float(out.split()[-1])
    assert sent < committed, (sent, committed)
