"""The simulated parts of a meter or environment node in a process of their own.

A real BME280, SDS011, reed switch or Hall sensor is not objects on the
node's heap. So the virtual board (:mod:`boards.sim.sensor_link`) starts this
host next to the node, in the node's flash folder, with the node's image on
its path::

    micropython -X heapsize=512K -c "import board.sensor_host as h; h.main('sensors.sock', 'env')"

and the host connects to the node's socket and serves the parts of
:mod:`boards.sim.env_parts` (``env``: the same weather, faults and
``control.json`` keys) or :mod:`boards.sim.meter_parts` (``meter``: the same
water, wheel and reeds), following ``control.json`` itself (the meter's
water every 0.5 s, as the in-process parts did), one request at a time. It
exits when the node's end of the socket closes (the node stopped, crashed or
lost its power).

The exchange (:mod:`boards.sim.sensor_link` is the other end): a request is
an operation byte, a 16-bit big-endian length and the payload; the answer a
status byte (0 done, else the OSError number to raise), a 16-bit length and
the payload:

- ``R`` address, register, count: an I2C read of ``count`` bytes;
- ``W`` address, register, bytes: an I2C write;
- ``w`` bytes: bytes to the dust sensor's UART (answer: how many were taken);
- ``r`` count: up to ``count`` bytes the dust sensor has sent;
- ``s``: the sound-level module's output, microvolts (decimal text);
- ``a``: the meter starts counting (``meter-session.json`` is written); answer:
  reed A's level now, one byte;
- ``e``: the wheel moved to now: the changes of reed A since the last ``e``,
  each ``(ms before now, a, b)`` packed ``>IBB``;
- ``t``, ``b``, ``d``: tamper (1 byte), battery mV (decimal text), reed B
  present (1 byte);
- ``j``: the parts' state for ``world.json`` (JSON text).
"""

import json
import select
import socket
import struct
import time

from .flash import read_json
from .sensor_link import address

_CONTROL_MS = 500


def _exact(sock, n):
    """``n`` bytes from ``sock``; None if it closed."""
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def _answer(parts, op, data):
    """``(status, payload)`` for one request."""
    if op == 82:  # R
        try:
            return 0, parts.bus.readfrom_mem(data[0], data[1], data[2])
        except OSError as exc:
            return exc.args[0] if exc.args else 5, b""
    if op == 87:  # W
        try:
            parts.bus.writeto_mem(data[0], data[1], data[2:])
        except OSError as exc:
            return exc.args[0] if exc.args else 5, b""
        return 0, b""
    if op == 119:  # w
        return 0, b"%d" % parts.uart.write(data)
    if op == 114:  # r
        return 0, parts.uart.read(data[0]) or b""
    if op == 115:  # s
        return 0, b"%d" % parts.sound_uv()
    if op == 97:  # a
        edges = parts.edges = []
        parts.pulse_input(_Collector(edges))
        return 0, bytes((edges.pop(),))
    if op == 101:  # e
        edges = parts.edges
        parts.step()
        out = b"".join(struct.pack(">IBB", *e) for e in edges)
        edges.clear()
        return 0, out
    if op == 116:  # t
        return 0, bytes((1 if parts.tamper() else 0,))
    if op == 98:  # b
        return 0, b"%d" % parts.battery_mv()
    if op == 100:  # d
        return 0, bytes((1 if parts.has_direction else 0,))
    if op == 106:  # j
        return 0, json.dumps(parts.snapshot()).encode()
    return 22, b""  # EINVAL


class _Collector:
    """Stands in for the node's pulse counter: keeps the edges for the next ``e`` request."""

    def __init__(self, edges):
        self.edges = edges

    def start(self, now_ms, a):
        self.edges.append(a)

    def edge(self, t_ms, a, b):
        # As ms before the step's now: the node turns them into its own ticks.
        self.edges.append((max(0, time.ticks_diff(time.ticks_ms(), t_ms)), a, b))


def main(path="sensors.sock", kind="env"):
    """Serve the ``kind`` parts (``env`` or ``meter``) to the node listening at ``path`` until it hangs up."""
    cfg = read_json("sim.json") or {}
    if kind == "meter":
        from .meter_parts import MeterParts

        parts = MeterParts(cfg, (read_json("world.json") or {}).get("water"))
    else:
        from .env_parts import EnvParts

        parts = EnvParts(cfg)
    parts.edges = []
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(address(path))
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    due = time.ticks_add(time.ticks_ms(), _CONTROL_MS)
    while True:
        wait = time.ticks_diff(due, time.ticks_ms())
        if wait <= 0 or not poller.poll(wait):
            parts.apply_control()
            due = time.ticks_add(time.ticks_ms(), _CONTROL_MS)
            continue
        head = _exact(sock, 3)
        if head is None:
            return
        op, n = struct.unpack(">BH", head)
        data = _exact(sock, n) if n else b""
        if data is None:
            return
        status, payload = _answer(parts, op, data)
        sock.send(struct.pack(">BH", status, len(payload)) + payload)
