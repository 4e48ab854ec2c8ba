"""The lamp host (tools/sim/micropython/lamp_host.py): its lamps answer byte for byte like a lamp in its own process.

Two streets side by side on unpaced buses: a hosted street of lamps 5, 6 and 7
in one lamp host, and a per-process street with lamp 6 alone. The same raw RTU
frames go to both masters; the answers must be identical, bytes and CRC.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocols.modbus.crc import put_crc
from tools.sim.hosted_street import HostedStreet
from tools.sim.street import StreetError, VirtualStreet


def _frame(*body: int) -> bytes:
    out = bytearray(256)
    out[: len(body)] = bytes(body)
    return bytes(out[: put_crc(out, len(body))])


def _read(unit: int, fc: int, address: int, count: int) -> bytes:
    return _frame(unit, fc, address >> 8, address & 0xFF, count >> 8, count & 0xFF)


def _write1(unit: int, address: int, value: int) -> bytes:
    return _frame(unit, 6, address >> 8, address & 0xFF, value >> 8, value & 0xFF)


def _write(unit: int, address: int, values: list[int]) -> bytes:
    body = [unit, 16, address >> 8, address & 0xFF, 0, len(values), 2 * len(values)]
    for v in values:
        body += [v >> 8, v & 0xFF]
    return _frame(*body)


class _Master:
    """Raw frames on a street's master pty."""

    def __init__(self, device: str) -> None:
        self.fd = os.open(device, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd)

    def ask(self, frame: bytes, first: float = 20.0, quiet: float = 0.3) -> bytes:
        """Send ``frame``; everything that comes back until ``quiet`` s without a byte."""
        os.write(self.fd, frame)
        got = b""
        deadline = time.monotonic() + first
        while True:
            wait = quiet if got else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.fd], [], [], wait)
            if not ready:
                return got
            got += os.read(self.fd, 1024)

    def silent(self, frame: bytes, probe: bytes) -> bytes:
        """Send ``frame`` (expected to get no answer), then ``probe``: what came back to both."""
        os.write(self.fd, frame)
        time.sleep(0.05)  # a frame gap on the unpaced bus
        return self.ask(probe)

    def close(self) -> None:
        os.close(self.fd)


UNIT = 6
# Reads of what does not move with time, writes, exceptions: each is compared byte for byte.
REQUESTS = [
    _read(UNIT, 3, 0, 15),  # the lamp's settings
    _read(UNIT, 3, 102, 6),  # tz_offset .. command
    _read(UNIT, 4, 11, 2),  # role, firmware
    _read(UNIT, 4, 104, 4),  # node_status, boot_reason, boots
    _write1(UNIT, 0, 40),  # dim to 40 %
    _read(UNIT, 3, 0, 2),
    _write(UNIT, 5, [30, 0]),  # override level 30, no override running
    _read(UNIT, 3, 5, 2),
    _write1(UNIT, 0, 500),  # out of range: exception 3
    _read(UNIT, 3, 0, 0),  # count 0: exception 3
    _read(UNIT, 3, 30000, 1),  # no register there: exception 2
    _frame(UNIT, 5, 0, 0, 0xFF, 0),  # write coil: not a function the node has, exception 1
    _write(UNIT, 106, [300]),  # unit out of range: exception 3
]


@pytest.fixture(scope="module")
def streets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[_Master, _Master]]:
    base = tmp_path_factory.mktemp("lamp-host")
    hosted = HostedStreet(base / "hosted", nodes=3, first_unit=5, seed=3)
    alone = VirtualStreet(base / "alone", nodes=1, first_unit=UNIT, seed=3)
    with hosted, alone:
        hosted.start(timeout=120)
        alone.start(timeout=120)
        a, b = _Master(hosted.master_device), _Master(alone.master_device)
        try:
            yield a, b
        finally:
            a.close()
            b.close()


def test_answers_match_a_lamp_process_byte_for_byte(streets: tuple[_Master, _Master]) -> None:
    """Reads, writes and exceptions: the hosted lamp 6 answers exactly as lamp 6 in its own process."""
    hosted, alone = streets
    for request in REQUESTS:
        mine, theirs = hosted.ask(request), alone.ask(request)
        assert mine == theirs, f"request {request.hex()}: host {mine.hex()}, lamp process {theirs.hex()}"
        assert mine[:1] == bytes([UNIT])
    # Not just equal: the answers say what the contract says.
    assert hosted.ask(_read(UNIT, 3, 0, 1))[3:5] == bytes([0, 40])
    assert hosted.ask(_write1(UNIT, 0, 500))[1:3] == bytes([0x86, 3])
    assert hosted.ask(_read(UNIT, 3, 30000, 1))[1:3] == bytes([0x83, 2])
    assert hosted.ask(_frame(UNIT, 5, 0, 0, 0xFF, 0))[1:3] == bytes([0x85, 1])


def test_broadcast_reaches_every_hosted_lamp_and_gets_no_answer(streets: tuple[_Master, _Master]) -> None:
    """A broadcast write is executed by every lamp, silently; a broadcast read is ignored."""
    hosted, alone = streets
    probe = _read(UNIT, 3, 0, 1)
    for street in (hosted, alone):
        after = street.silent(_write(0, 0, [33]), probe)
        assert len(after) == 7 and after[:3] == bytes([UNIT, 3, 2])  # the probe's answer, nothing before it
        assert after[3:5] == bytes([0, 33])
    assert hosted.silent(_read(0, 3, 0, 1), probe) == alone.silent(_read(0, 3, 0, 1), probe)
    for unit in (5, 7):
        answer = hosted.ask(_read(unit, 3, 0, 1))
        assert answer[:1] == bytes([unit]) and answer[3:5] == bytes([0, 33])


def test_frames_for_other_units_get_no_answer(streets: tuple[_Master, _Master]) -> None:
    """A request for a unit the host does not run (and garbage) is passed over: only the probe is answered."""
    hosted, alone = streets
    probe = _read(7, 3, 0, 1)
    answer = hosted.silent(_read(9, 3, 0, 1), probe)
    assert len(answer) == 7 and answer[:2] == bytes([7, 3])
    bad_crc = bytearray(_read(5, 3, 0, 1))
    bad_crc[-1] ^= 0xFF
    answer = hosted.silent(bytes(bad_crc), probe)
    assert len(answer) == 7 and answer[:2] == bytes([7, 3])
    probe6 = _read(UNIT, 3, 0, 1)
    assert hosted.silent(_read(9, 3, 0, 1), probe6) == alone.silent(_read(9, 3, 0, 1), probe6)


def test_lamps_of_a_host_cannot_be_restarted_one_by_one(tmp_path: Path) -> None:
    """The host is one process: starting or killing one of its lamps is refused, not half done."""
    street = HostedStreet(tmp_path, nodes=2)
    with pytest.raises(StreetError):
        street.kill_node(1)
    with pytest.raises(StreetError):
        street.start_node(1)


def test_manifest_names_the_host_and_stop_ends_it(tmp_path: Path) -> None:
    """Every lamp's pid is the host's; the bus has one node drop; stop() leaves no process behind."""
    street = HostedStreet(tmp_path, nodes=3, first_unit=20)
    with street:
        manifest = street.start(timeout=120)
        host = street.host
        assert host is not None
        assert [n["id"] for n in manifest["nodes"]] == ["lamp-20", "lamp-21", "lamp-22"]
        assert {n["pid"] for n in manifest["nodes"]} == {host.pid}
        assert len(street.ports["drops"]) == 1
        config = json.loads((tmp_path / "node-21" / "config.json").read_text())
        assert config["unit"] == 21 and config["sample_ms"] == street.sample_ms
    assert host.poll() is not None


def test_lamps_split_over_hosts_each_answer_on_their_own_drop(tmp_path: Path) -> None:
    """``hosts=2``: two host processes on two drops share the lamps; every lamp answers; stop ends both.

    With ``realtime`` the bus and both hosts run under SCHED_FIFO where the kernel allows it, and the
    street says which it got; they answer all the same."""
    street = HostedStreet(tmp_path, nodes=3, first_unit=30, hosts=2, realtime=True)
    with street:
        manifest = street.start(timeout=120)
        procs = street.host_procs
        bus = int(street.ports["pid"])
        policies = {os.sched_getscheduler(p.pid) for p in procs} | {os.sched_getscheduler(bus)}
        allowed = os.geteuid() == 0  # root here; an unprivileged run must get the fallback, named
        assert policies == ({os.SCHED_FIFO} if allowed else {os.SCHED_OTHER}), policies
        assert ("SCHED_FIFO" in street.scheduling) == allowed
        assert ("refused" in street.scheduling) != allowed
        if allowed:  # the wire above the lamps: a host's work never holds a byte's delivery
            assert os.sched_getparam(bus).sched_priority > os.sched_getparam(procs[0].pid).sched_priority
        assert len(procs) == 2 and len(street.ports["drops"]) == 2
        assert [n["pid"] for n in manifest["nodes"]] == [procs[0].pid, procs[1].pid, procs[1].pid]
        master = _Master(street.master_device)
        try:
            for unit in (30, 31, 32):
                answer = master.ask(_read(unit, 4, 11, 2))  # role, firmware
                assert answer[:3] == bytes([unit, 4, 4]), (unit, answer)
        finally:
            master.close()
    assert all(p.poll() is not None for p in procs)
    with pytest.raises(StreetError):
        HostedStreet(tmp_path / "none", nodes=2, hosts=3)


def test_hosts_at_ordinary_priority_leave_only_the_bus_real_time(tmp_path: Path) -> None:
    """``realtime_hosts=False``: the bus goes SCHED_FIFO (as root), the hosts stay ordinary at ``host_nice``,
    and the street's text says which is which (two real processes stand for the bus and a host)."""
    street = HostedStreet(tmp_path, nodes=2, realtime=True, realtime_hosts=False, nice=-5, host_nice=3)
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) for _ in range(2)]
    try:
        bus, host = (p.pid for p in procs)
        street._schedule(bus, [host])
        allowed = os.geteuid() == 0
        assert os.sched_getscheduler(host) == os.SCHED_OTHER
        assert os.getpriority(os.PRIO_PROCESS, host) == 3
        assert os.sched_getscheduler(bus) == (os.SCHED_FIFO if allowed else os.SCHED_OTHER)
        if allowed:
            assert os.getpriority(os.PRIO_PROCESS, bus) == -5
            assert "lamp hosts at ordinary scheduling (nice 3)" in street.scheduling
            assert "the bus at SCHED_FIFO" in street.scheduling
    finally:
        for p in procs:
            p.kill()
            p.wait()
