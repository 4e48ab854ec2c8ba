"""The virtual RS-485 bus as a process: delivery, faults, pacing, and a full buffer.

Where a behaviour depends on how a node is wired to its drop, the test runs for
both links (``--link pty`` and ``--link socket``): the bus must not tell them apart.
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import subprocess
import sys
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def attach(address: str, line_times: bool = False) -> int:
    """A node's end of a drop: the pty opened raw, or a connection to the bus's socket (``@name``).

    ``line_times``: the bus's ``--line-times`` socket, a ``SOCK_SEQPACKET`` one."""
    if address.startswith("@"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET if line_times else socket.SOCK_STREAM)
        sock.connect("\0" + address[1:])
        fd = sock.detach()  # a raw fd, closed with os.close like a pty's
    else:
        fd = os.open(address, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(fd)
    os.set_blocking(fd, False)
    return fd


class BusProcess:
    """A bus started with given options; ``fds[0]`` is the master, ``fds[1:]`` the drops."""

    def __init__(self, workdir: Path, drops: int, *options: str) -> None:
        self.ports_path = workdir / "ports.json"
        self.stats_path = workdir / "stats.json"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tools.sim.bus", "--drops", str(drops),
             "--ports", str(self.ports_path), "--stats", str(self.stats_path), *options],
            cwd=REPO,
        )
        deadline = time.monotonic() + 20
        while not self.ports_path.exists():
            assert self.proc.poll() is None, "the bus exited early"
            assert time.monotonic() < deadline, "the bus did not write its ports file"
            time.sleep(0.02)
        self.ports = json.loads(self.ports_path.read_text())
        self.fds = [attach(path, "--line-times" in options) for path in [self.ports["master"], *self.ports["drops"]]]

    def read(self, index: int, n: int, timeout: float = 10.0) -> bytes:
        """Read until ``n`` bytes arrived on drop ``index`` or ``timeout`` passed."""
        got = bytearray()
        deadline = time.monotonic() + timeout
        while len(got) < n and time.monotonic() < deadline:
            try:
                got += os.read(self.fds[index], 65536)
            except BlockingIOError:
                time.sleep(0.002)
        return bytes(got)

    def quiet(self, index: int, wait: float = 0.2) -> bytes:
        """Whatever drop ``index`` receives within ``wait`` seconds (expected: nothing)."""
        time.sleep(wait)
        try:
            return os.read(self.fds[index], 65536)
        except BlockingIOError:
            return b""

    def stop(self) -> dict[str, object]:
        """Terminate the bus and return its final counters."""
        for fd in self.fds:
            os.close(fd)
        self.fds = []
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        stats: dict[str, object] = json.loads(self.stats_path.read_text())
        return stats


StartBus = Callable[..., BusProcess]


@pytest.fixture
def start_bus(tmp_path: Path) -> Iterator[StartBus]:
    """Factory: start a bus process; every bus started is stopped at teardown."""
    started: list[BusProcess] = []

    def start(drops: int, *options: str) -> BusProcess:
        bus = BusProcess(tmp_path, drops, *options)
        started.append(bus)
        return bus

    yield start
    for bus in started:
        if bus.proc.poll() is None or bus.fds:
            bus.stop()


@pytest.fixture(params=["pty", "socket"])
def link(request: pytest.FixtureRequest) -> str:
    """How the nodes are wired to their drops (``--link``)."""
    return str(request.param)


def test_ports_file_names_every_pty(start_bus: StartBus) -> None:
    """The ports file gives one master and one device path per drop, all distinct."""
    bus = start_bus(3, "--baud", "9600")
    assert len(bus.ports["drops"]) == 3
    paths = {bus.ports["master"], *bus.ports["drops"]}
    assert len(paths) == 4
    assert all(p.startswith("/dev/pts/") for p in paths)
    assert bus.ports["baud"] == 9600
    assert bus.ports["paced"] is False
    assert bus.ports["pid"] == bus.proc.pid
    assert bus.ports["link"] == "pty"


def test_socket_link_names_a_socket_per_drop_and_keeps_the_master_a_pty(start_bus: StartBus) -> None:
    """With --link socket each drop is an abstract-namespace socket address; the gateway's side stays a pty."""
    bus = start_bus(3, "--link", "socket")
    drops = bus.ports["drops"]
    assert len(set(drops)) == 3 and all(d.startswith("@streetedge-bus-") for d in drops)
    assert bus.ports["master"].startswith("/dev/pts/")
    assert bus.ports["link"] == "socket"
    with pytest.raises(ConnectionRefusedError):  # the names are the bus's: nothing else listens on a made-up one
        attach(drops[0] + "-none")


def test_master_bytes_reach_every_drop_but_not_the_master(start_bus: StartBus, link: str) -> None:
    """A request from the master reaches every node drop; the master does not hear itself."""
    bus = start_bus(3, "--link", link)
    frame = bytes.fromhex("010400000002 71cb".replace(" ", ""))
    os.write(bus.fds[0], frame)
    for i in (1, 2, 3):
        assert bus.read(i, len(frame)) == frame
    assert bus.quiet(0) == b""


def test_node_bytes_reach_master_and_other_nodes(start_bus: StartBus, link: str) -> None:
    """A response from one node reaches the master and the other nodes, not the node itself."""
    bus = start_bus(3, "--link", link)
    payload = b"\x02\x04\x04\x00\x01\x00\x02"
    os.write(bus.fds[2], payload)
    assert bus.read(0, len(payload)) == payload
    assert bus.read(1, len(payload)) == payload
    assert bus.read(3, len(payload)) == payload
    assert bus.quiet(2) == b""


@pytest.mark.parametrize("paced", [False, True])
def test_answers_to_master_keeps_node_frames_from_the_other_nodes_only(start_bus: StartBus, paced: bool) -> None:
    """``--answers-to-master``: a node's frame reaches the master alone; the master's still reaches every node."""
    bus = start_bus(3, "--link", "socket", "--answers-to-master", *(["--paced", "--baud", "115200"] * paced))
    answer = b"\x02\x04\x04\x00\x01\x00\x02"
    os.write(bus.fds[2], answer)
    assert bus.read(0, len(answer)) == answer
    assert bus.quiet(1) == b"" and bus.quiet(3, wait=0.0) == b""
    request = bytes.fromhex("010400000002 71cb".replace(" ", ""))
    os.write(bus.fds[0], request)
    for i in (1, 2, 3):
        assert bus.read(i, len(request)) == request


def test_noise_flips_one_bit_in_about_the_configured_share(start_bus: StartBus) -> None:
    """With --noise 0.1, about 10 % of bytes arrive with exactly one bit flipped."""
    bus = start_bus(1, "--noise", "0.1", "--seed", "7")
    sent = bytes(i & 0xFF for i in range(20000))
    got = b""
    for k in range(0, len(sent), 1000):
        os.write(bus.fds[0], sent[k:k + 1000])
        # Read as it comes, as a node would: a drop whose pty is full loses bytes (the bus never stalls).
        got += bus.read(1, k + 1000 - len(got))
    assert len(got) == len(sent)
    flipped = [a ^ b for a, b in zip(sent, got, strict=True) if a != b]
    assert all(bin(x).count("1") == 1 for x in flipped)
    assert 0.07 * len(sent) < len(flipped) < 0.13 * len(sent)
    stats = bus.stop()
    assert stats["corrupted"] == len(flipped)


def test_drop_loses_about_the_configured_share(start_bus: StartBus) -> None:
    """With --drop 0.05, about 5 % of bytes never arrive; the rest arrive in order."""
    bus = start_bus(1, "--drop", "0.05", "--seed", "3")
    sent = b"\x55" * 20000
    got = b""
    for k in range(0, len(sent), 1000):
        os.write(bus.fds[0], sent[k:k + 1000])
        got += bus.read(1, 1)  # keep the drop's pty from filling up (a full one loses bytes too)
    got += bus.read(1, len(sent) - len(got), timeout=3.0)
    assert 0.92 * len(sent) < len(got) < 0.98 * len(sent)
    assert set(got) == {0x55}
    stats = bus.stop()
    assert stats["lost"] == len(sent) - len(got)


def test_paced_bytes_take_at_least_the_line_time(start_bus: StartBus, link: str) -> None:
    """At 9600 baud, 11 bits per character, 240 bytes cannot arrive in less than 275 ms."""
    bus = start_bus(2, "--paced", "--baud", "9600", "--link", link)
    sent = bytes(range(240))
    t0 = time.monotonic()
    os.write(bus.fds[0], sent)
    got = bus.read(1, len(sent))
    elapsed = time.monotonic() - t0
    assert got == sent
    assert elapsed >= len(sent) * 11 / 9600
    assert bus.read(2, len(sent)) == sent


def test_paced_frame_arrives_whole_at_the_end_of_its_line_time(start_bus: StartBus, link: str) -> None:
    """A frame written in one go reaches a receiver without inner gaps, as from a UART: not byte by byte.

    At 9600 bit/s a character takes 1.15 ms: delivered as its slots end, 240 bytes would come in
    dozens of reads here (one every 2 ms); held until the transmission ends, they come in one write.
    """
    bus = start_bus(2, "--paced", "--baud", "9600", "--link", link)
    sent = bytes(range(240))
    t0 = time.monotonic()
    os.write(bus.fds[0], sent)
    reads: list[tuple[float, bytes]] = []
    deadline = t0 + 10.0
    while sum(len(r) for _, r in reads) < len(sent) and time.monotonic() < deadline:
        try:
            reads.append((time.monotonic(), os.read(bus.fds[1], 65536)))
        except BlockingIOError:
            time.sleep(0.002)
    assert b"".join(r for _, r in reads) == sent
    assert reads[0][0] - t0 >= len(sent) * 11 / 9600  # nothing before the frame's last character
    assert len(reads) <= 3, [len(r) for _, r in reads]  # one write; a pty may split it, not per character
    if link == "socket":
        assert len(reads) == 1  # a socket hands one write to one read


def test_paced_overlapping_senders_collide(start_bus: StartBus, link: str) -> None:
    """Two nodes transmitting at once corrupt each other: the master sees collision bytes."""
    bus = start_bus(2, "--paced", "--baud", "9600", "--link", link)
    os.write(bus.fds[1], b"\x0f" * 200)  # takes ~230 ms on the line
    os.write(bus.fds[2], b"\xf0" * 200)
    got = bus.read(0, 400, timeout=3.0)
    stats = bus.stop()
    assert stats["collisions"] > 0
    assert len(got) == 400 - stats["collisions"]
    assert b"\x00" in got  # 0x0f AND 0xf0


def test_a_drop_nobody_reads_does_not_stall_the_bus(start_bus: StartBus, link: str) -> None:
    """A dead node's full buffer loses bytes (counted); the live node still gets everything."""
    bus = start_bus(2, "--link", link)
    chunk = bytes(range(256)) * 4
    got = bytearray()
    for _ in range(400):  # 400 KiB: far more than a pty buffers
        os.write(bus.fds[0], chunk)
        got += bus.read(1, len(chunk), timeout=5.0)
    assert got == chunk * 400
    stats = bus.stop()
    drops = stats["drops"]
    assert isinstance(drops, dict)
    assert drops["drop1"]["overflow"] > 0
    assert drops["drop0"]["overflow"] == 0


def test_a_node_closing_its_pty_does_not_break_the_bus(start_bus: StartBus) -> None:
    """A node process that dies (closes its end) and comes back keeps its drop working."""
    bus = start_bus(2)
    os.close(bus.fds[1])
    os.write(bus.fds[0], b"hello")
    assert bus.read(2, 5) == b"hello"
    fd = attach(bus.ports["drops"][0])
    bus.fds[1] = fd
    bus.read(1, 5, timeout=0.3)  # the bytes sent while it was away may still be buffered
    os.write(fd, b"back")
    assert bus.read(0, 4) == b"back"


def test_a_node_hanging_up_its_socket_leaves_the_drop_unwired_until_it_connects_again(start_bus: StartBus) -> None:
    """Socket link: a node that hangs up misses what the line carries meanwhile; connected again, it hears it all.

    The master writes right after the node connects: the bus wires a waiting connection before it hands
    bytes on, so nothing depends on when its selector noticed the node."""
    bus = start_bus(2, "--link", "socket")
    os.close(bus.fds[1])
    os.write(bus.fds[0], b"away")
    assert bus.read(2, 4) == b"away"
    bus.fds[1] = attach(bus.ports["drops"][0])
    os.write(bus.fds[0], b"hello")
    assert bus.read(1, 5) == b"hello"  # not "awayhello": the drop was unwired
    assert bus.read(2, 5) == b"hello"
    os.write(bus.fds[1], b"back")
    assert bus.read(0, 4) == b"back" and bus.read(2, 4) == b"back"
    replacement = attach(bus.ports["drops"][0])  # a second board on the same drop takes it over
    ready, _, _ = select.select([bus.fds[1]], [], [], 10.0)
    assert ready and os.read(bus.fds[1], 100) == b""  # the bus hung up on the first (EOF) as it wired the second
    bus.fds.append(replacement)
    os.write(bus.fds[0], b"swap")
    assert bus.read(len(bus.fds) - 1, 4) == b"swap"


LINE_TIME = struct.Struct("<q")  # microseconds of CLOCK_MONOTONIC, as the lamp host's time.ticks_us


def _message(fd: int, timeout: float = 10.0) -> bytes:
    """The next message on a ``--line-times`` socket."""
    ready, _, _ = select.select([fd], [], [], timeout)
    assert ready, "no message"
    return os.read(fd, 65536)


def _trace(path: Path) -> list[list[object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_line_times_tell_a_node_when_a_request_ended_on_the_line(start_bus: StartBus, tmp_path: Path) -> None:
    """``--line-times``: a delivery carries its last character's end on the line, as a UART's receive time."""
    trace = tmp_path / "trace.jsonl"
    bus = start_bus(2, "--paced", "--baud", "9600", "--link", "socket", "--line-times", "--trace", str(trace))
    request = bytes.fromhex("010400000002 71cb".replace(" ", ""))
    wrote = time.monotonic()
    os.write(bus.fds[0], request)
    for drop in (1, 2):
        message = _message(bus.fds[drop])
        heard = time.monotonic()
        assert message[LINE_TIME.size:] == request
        end = LINE_TIME.unpack_from(message)[0] / 1e6
        # Causality: not before the characters could have crossed the line, not after the node heard them.
        assert wrote + len(request) * 11 / 9600 - 1e-6 <= end <= heard
    bus.stop()
    began = next(t for t, kind, who, _ in _trace(trace) if kind == "in" and who == "master")
    assert end == pytest.approx(float(began) + len(request) * 11 / 9600, abs=1e-6)  # type: ignore[arg-type]


def test_line_times_start_an_answer_when_the_node_wrote_it_once_the_line_was_free(
    start_bus: StartBus, tmp_path: Path
) -> None:
    """A node's line time is when its UART started: no earlier than the line's last transmission ended."""
    trace = tmp_path / "trace.jsonl"
    bus = start_bus(2, "--paced", "--baud", "9600", "--link", "socket", "--line-times", "--trace", str(trace))
    request = bytes.fromhex("010400000002 71cb".replace(" ", ""))
    os.write(bus.fds[0], request)
    request_end = LINE_TIME.unpack_from(_message(bus.fds[1]))[0] / 1e6
    answer = b"\x01\x04\x04\x00\x01\x00\x02\x2a\x32"
    # Stamped a second ago, before the request ended: the answer starts when the line was free.
    os.write(bus.fds[1], LINE_TIME.pack(round((time.monotonic() - 1.0) * 1e6)) + answer)
    assert bus.read(0, len(answer)) == answer
    time.sleep(0.05)
    fresh = time.monotonic()
    os.write(bus.fds[1], LINE_TIME.pack(round(fresh * 1e6)) + answer)
    assert bus.read(0, len(answer)) == answer
    assert time.monotonic() >= fresh + len(answer) * 11 / 9600  # whole at the end of its characters, as ever
    bus.stop()
    starts = [float(t) for t, kind, who, _ in _trace(trace) if kind == "in" and who == "drop0"]  # type: ignore[arg-type]
    assert starts[0] == pytest.approx(request_end, abs=1e-6)
    assert starts[1] == pytest.approx(fresh, abs=1e-6)


def test_line_times_take_a_short_message_as_bytes_and_a_bare_stamp_as_nothing(start_bus: StartBus) -> None:
    """A message too short for a line time still reaches the line; a bare line time neither hangs up nor sends."""
    bus = start_bus(2, "--link", "socket", "--line-times")
    os.write(bus.fds[1], b"\x01\x02\x03")
    assert bus.read(0, 3) == b"\x01\x02\x03"
    os.write(bus.fds[1], LINE_TIME.pack(round(time.monotonic() * 1e6)))
    assert bus.quiet(0) == b""
    os.write(bus.fds[1], LINE_TIME.pack(round(time.monotonic() * 1e6)) + b"\x07")
    assert bus.read(0, 1) == b"\x07"  # still wired


def test_line_times_need_the_socket_link(tmp_path: Path) -> None:
    """``--line-times`` on ptys is refused in one line, not a traceback."""
    run = subprocess.run(
        [sys.executable, "-m", "tools.sim.bus", "--drops", "1", "--ports", str(tmp_path / "p.json"), "--line-times"],
        check=False, cwd=REPO, capture_output=True, text=True, timeout=30,
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1].endswith("error: --line-times needs --link socket")
    assert "Traceback" not in run.stderr
