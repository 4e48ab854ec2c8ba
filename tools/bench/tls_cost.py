"""What one MQTT connection's TLS costs a broker: CPU per handshake and bytes on the wire, against plaintext.

A minimal MQTT 5 client on a plain socket, with TLS done through
``ssl.MemoryBIO`` so that every byte the connection puts on the wire is
counted. :func:`handshakes` opens and closes ``count`` connections one after
another (TCP, TLS handshake with a client certificate, CONNECT with the
gateway's Will, CONNACK, DISCONNECT) and reads the broker's CPU time around
them; the same loop in plaintext is the baseline, so the difference is what
TLS adds. :func:`per_message` publishes QoS 1 messages on one connection and
counts the bytes each one costs with and without TLS. Used by
``streetedge bench cluster --tls`` (:mod:`tools.load_gateways`).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path


def cpu_ns(pid: int) -> int:
    """CPU time a process has run, in nanoseconds (the scheduler's account: finer than clock ticks)."""
    return sum(int(Path(f"/proc/{pid}/task/{t}/schedstat").read_text().split()[0])
               for t in (p.name for p in Path(f"/proc/{pid}/task").iterdir()))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return len(data).to_bytes(2, "big") + data


def _packet(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + _varint(len(body)) + body


def connect_packet(client_id: str, will: tuple[str, bytes] | None, keepalive: int = 60) -> bytes:
    """MQTT 5 CONNECT, clean start, with an optional retained QoS 1 Will."""
    flags = 0x02 | ((0x04 | 0x08 | 0x20) if will else 0)  # clean start; will, will QoS 1, will retain
    body = _string("MQTT") + bytes([5, flags]) + keepalive.to_bytes(2, "big") + b"\x00" + _string(client_id)
    if will:
        body += b"\x00" + _string(will[0]) + _string(will[1])
    return _packet(0x10, body)


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    """MQTT 5 PUBLISH, QoS 1, no properties."""
    return _packet(0x32, _string(topic) + packet_id.to_bytes(2, "big") + b"\x00" + payload)


class Connection:
    """One MQTT connection over TCP, optionally TLS, counting the bytes sent and received on the socket."""

    def __init__(self, port: int, context: ssl.SSLContext | None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sent = 0
        self.received = 0
        self.handshake_bytes = (0, 0)
        self._buf = b""
        self._tls: ssl.SSLObject | None = None
        if context is not None:
            self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
            self._tls = context.wrap_bio(self._in, self._out, server_hostname="127.0.0.1")
            while True:
                try:
                    self._tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    self._flush()
                    self._fill()
            self._flush()
            self.handshake_bytes = (self.sent, self.received)

    def _flush(self) -> None:
        data = self._out.read()
        if data:
            self.sock.sendall(data)
            self.sent += len(data)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the broker closed the connection")
        self.received += len(data)
        if self._tls is not None:
            self._in.write(data)
        else:
            self._buf += data

    def send(self, data: bytes) -> None:
        """Send application bytes (encrypted with TLS)."""
        if self._tls is None:
            self.sock.sendall(data)
            self.sent += len(data)
        else:
            self._tls.write(data)
            self._flush()

    def _more(self) -> None:
        if self._tls is None:
            self._fill()
            return
        while True:
            try:
                self._buf += self._tls.read(65536)
                return
            except ssl.SSLWantReadError:
                self._fill()

    def packet(self) -> tuple[int, bytes]:
        """The next MQTT packet from the broker: (type byte, body)."""
        while True:
            if len(self._buf) >= 2:
                length, shift, i = 0, 0, 1
                while i < len(self._buf):
                    byte = self._buf[i]
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    i += 1
                    if not byte & 0x80:
                        if len(self._buf) >= i + length:
                            kind, body = self._buf[0], self._buf[i : i + length]
                            self._buf = self._buf[i + length :]
                            return kind, body
                        break
            self._more()

    def close(self) -> None:
        """DISCONNECT and close the socket."""
        with contextlib.suppress(OSError):
            self.send(_packet(0xE0, b""))
        self.sock.close()


@dataclass
class HandshakeCost:
    """Per connection: broker CPU, bytes each way, for ``count`` connections in one mode."""

    count: int
    cpu_ms: float
    sent: float
    received: float
    handshake_sent: float
    handshake_received: float
    seconds: float


def handshakes(port: int, context: ssl.SSLContext | None, broker_pid: int, count: int,
               will: tuple[str, bytes], client_id: str) -> HandshakeCost:
    """Open, CONNECT and close ``count`` connections in turn; the broker's CPU and the bytes, per connection."""
    sent = received = hs_sent = hs_received = 0
    c0, t0 = cpu_ns(broker_pid), time.monotonic()
    for i in range(count):
        conn = Connection(port, context)
        conn.send(connect_packet(f"{client_id}-{i}", will))
        kind, body = conn.packet()
        if kind >> 4 != 2 or body[1:2] != b"\x00":
            raise RuntimeError(f"CONNACK refused: {bytes([kind]) + body!r}")
        conn.close()
        sent += conn.sent
        received += conn.received
        hs_sent += conn.handshake_bytes[0]
        hs_received += conn.handshake_bytes[1]
    time.sleep(0.5)  # the broker has handled the last DISCONNECTs
    c1, t1 = cpu_ns(broker_pid), time.monotonic() - 0.5
    return HandshakeCost(count, (c1 - c0) / 1e6 / count, sent / count, received / count,
                         hs_sent / count, hs_received / count, t1 - t0)


def per_message(port: int, context: ssl.SSLContext | None, topic: str, payload: bytes, count: int) -> float:
    """Bytes on the wire per QoS 1 message (PUBLISH out, PUBACK back), averaged over ``count`` on one connection."""
    conn = Connection(port, context)
    conn.send(connect_packet("streetedge-wire-probe", None))
    conn.packet()
    s0, r0 = conn.sent, conn.received
    for i in range(count):
        conn.send(publish_packet(topic, payload, i % 65535 + 1))
        kind, _body = conn.packet()
        if kind >> 4 != 4:
            raise RuntimeError(f"expected PUBACK, got packet type {kind >> 4}")
    total = (conn.sent - s0) + (conn.received - r0)
    conn.close()
    return total / count
