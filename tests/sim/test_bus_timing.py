"""Serial timing by the Modbus serial line spec, checked on the bytes of the paced virtual bus.

The bus timestamps every chunk it reads from a drop and every chunk it
delivers (``--trace``). The gateway's master (:class:`ModbusBus`) polls two
hosted firmware lamps, writes one, broadcasts once; then, from the trace:

- every frame of the master starts at least t3.5 after the last byte the bus
  delivered before it (the answer it waited for), and at least the turnaround
  delay after a broadcast (or a request that got no answer and is retried);
- every answer of a node starts at least t3.5 after its request's last character
  ended on the line (the request went out on an idle line: from when the bus
  read it plus its characters' time, to the microsecond that line times carry).

These are lower bounds that follow from causality (a drop cannot start before
the bus delivered what it waits for), so a loaded machine only widens the
gaps; nothing here bounds a gap from above.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gateway.polling.poller import BusPoller
from gateway.service.config import parse_config
from gateway.service.stats import NodeStats
from gateway.transport.modbus_rtu import TURNAROUND, ModbusBus, silence
from tools.sim.bus import BITS_PER_CHAR
from tools.sim.hosted_street import HostedStreet

BUS_READ_LATE = 0.01
"""Seconds the bus process may read a frame after the master wrote it (a process on a loaded machine)."""


def test_spec_values() -> None:
    """t3.5: 3.5 characters up to 19200 bit/s, 1.75 ms above (Modbus over Serial Line V1.02, 2.5.1.1)."""
    assert silence(19200) == pytest.approx(3.5 * 11 / 19200)
    assert silence(9600) == pytest.approx(3.5 * 11 / 9600)
    assert silence(38400) == 0.00175
    assert silence(115200) == 0.00175
    assert 0.1 <= TURNAROUND <= 0.2


def _frames(trace: list[list[object]]) -> list[dict[str, object]]:
    """Chunks as frames (the master and the host write a frame at once): when the bus read it, delivered its end."""
    frames: list[dict[str, object]] = []
    for t, kind, who, n in trace:
        if kind == "in":
            if frames and frames[-1]["who"] == who and frames[-1]["open"]:
                frames[-1]["n"] = int(frames[-1]["n"]) + int(n)  # type: ignore[call-overload]
                continue
            frames.append({"who": who, "start": t, "end": None, "open": True, "n": n})
        else:
            for frame in reversed(frames):
                if frame["who"] == who:
                    frame["end"] = t
                    frame["open"] = False  # a sender's next chunk after a delivery: its next frame
                    break
    return frames


def _poll_on_the_paced_bus(workdir: Path, baud: int, link: str) -> list[dict[str, object]]:
    """Two hosted lamps wired by ``link``: three polls each, a write, a broadcast, a poll each; the frames traced."""
    trace_path = workdir / "trace.jsonl"
    street = HostedStreet(workdir / "street", nodes=2, baud=baud, paced=True, sample_ms=1000, link=link)
    street.bus_args = ["--trace", str(trace_path)]
    with street:
        manifest = street.start(timeout=120)
        device = manifest["buses"][0]["device"]
        # 8N2: 11-bit characters like 8E1, which the bus paces (a pty refuses parity).
        config = parse_config(
            "\n".join([
                'site = "s"', 'gateway = "g"', "[broker]", 'url = "mqtt://127.0.0.1:1"',
                "[[bus]]", 'name = "bus0"', f'device = "{device}"', f"baud = {baud}", 'parity = "N"',
                "stopbits = 2", "timeout = 2.0", "retries = 2",
                *[line for n in manifest["nodes"] for line in
                  ("[[node]]", f'id = "{n["id"]}"', 'bus = "bus0"', f"unit = {n['unit']}", "interval = 0.05")],
            ]),
            source="timing.toml",
        )
        bus = ModbusBus(config.bus[0])
        stats: dict[str, NodeStats] = {}
        poller = BusPoller(bus, config.nodes_on("bus0"), stats, lambda *_: None)

        async def main() -> None:
            for _ in range(3):
                for node in poller.nodes:
                    assert await poller.poll(node), stats[node.id].last_error
            unit = poller.nodes[0].unit
            await bus.write(unit, 0, [40])
            await bus.broadcast(0, [50])
            for node in poller.nodes:
                assert await poller.poll(node), stats[node.id].last_error
            bus.close()

        asyncio.run(main())
    return _frames([json.loads(line) for line in trace_path.read_text().splitlines()])


def _check_spec_silences(frames: list[dict[str, object]], baud: int) -> None:
    t35 = silence(baud, BITS_PER_CHAR)
    master = [f for f in frames if f["who"] == "master"]
    answers = [f for f in frames if f["who"] != "master"]
    assert len(master) >= 3 * 2 * 2 + 2 and answers  # polls, the write, the broadcast
    checked_master = checked_node = after_broadcast = 0
    for i in range(1, len(frames)):
        frame, before = frames[i], frames[i - 1]
        assert before["end"] is not None
        gap = float(frame["start"]) - float(before["end"])  # type: ignore[arg-type]
        if frame["who"] == "master":
            if before["who"] == "master":  # no answer in between: the broadcast (or a request retried)
                # From the frame's end on the line: its start plus its characters (the bus process may
                # deliver the last one late, which a UART would not). The start is when the bus read the
                # frame, which can be later than the master wrote it (a UART starts at once): the bus
                # process's scheduling delay, up to BUS_READ_LATE, is not the gateway's.
                end = float(before["start"]) + int(before["n"]) * BITS_PER_CHAR / baud  # type: ignore[arg-type, call-overload]
                line_gap = float(frame["start"]) - end  # type: ignore[arg-type]
                assert line_gap >= TURNAROUND - BUS_READ_LATE, f"request {line_gap * 1000:.2f} ms after a broadcast"
                after_broadcast += 1
            else:
                assert gap >= t35, f"request {gap * 1000:.3f} ms after an answer, t3.5 is {t35 * 1000:.3f} ms"
                checked_master += 1
        else:
            assert before["who"] == "master"
            # A lamp counts from the request's end on the line, which a lamp host learns from the line times of
            # its socket; the bus process may hand the request over later (a UART would not).
            end = float(before["start"]) + int(before["n"]) * BITS_PER_CHAR / baud  # type: ignore[arg-type, call-overload]
            line_gap = float(frame["start"]) - end  # type: ignore[arg-type]
            assert line_gap >= t35 - 1e-6, f"answer {line_gap * 1000:.3f} ms after its request, t3.5 {t35 * 1e3:.3f}"
            checked_node += 1
    assert after_broadcast >= 1
    assert checked_master >= 10 and checked_node >= 10


def _line_time_kept(frames: list[dict[str, object]], baud: int) -> None:
    """The bus hands every frame over at the end of its last character's slot, never before (paced)."""
    for f in frames:
        took = float(f["end"]) - float(f["start"])  # type: ignore[arg-type]
        assert took >= int(f["n"]) * BITS_PER_CHAR / baud - 1e-9, f  # type: ignore[call-overload]


@pytest.mark.parametrize("baud", [115200, 19200])
def test_gateway_and_nodes_keep_the_spec_silences(tmp_path: Path, baud: int) -> None:
    """On lamp hosts wired by sockets (the default), at both rates."""
    frames = _poll_on_the_paced_bus(tmp_path, baud, "socket")
    _check_spec_silences(frames, baud)
    _line_time_kept(frames, baud)


def test_a_socket_drop_carries_the_frames_a_pty_drop_did_with_the_same_timing_rules(tmp_path: Path) -> None:
    """The same exchange with the hosts wired by a pty and by a socket: the bus's timestamps obey the same rules.

    The same frames (sender and length, in order), each handed over whole no sooner than its characters'
    time, every request and answer t3.5 or more after the frame before it: the link changes how soon a
    process hears the bus, not what the bus does (its pacing, hand-over and silences)."""
    by_link = {link: _poll_on_the_paced_bus(tmp_path / link, 115200, link) for link in ("pty", "socket")}
    for frames in by_link.values():
        _check_spec_silences(frames, 115200)
        _line_time_kept(frames, 115200)
    shape = {link: [(f["who"], f["n"]) for f in frames] for link, frames in by_link.items()}
    assert shape["socket"] == shape["pty"]
