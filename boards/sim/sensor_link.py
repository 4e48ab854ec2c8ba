"""The virtual board's end of a meter's or environment node's parts: a socket to their host process.

The link starts the sensor host (:mod:`boards.sim.sensor_host`) in the
node's flash folder and answers the board's members from it, so the
simulated parts are not on the node's heap, as real chips are not; a call
costs a round trip to the host (tens of microseconds). A host that is gone
raises ``OSError`` on every call.

- :class:`SensorLink` is what ``board.i2c()``, ``board.sensor_uart()`` and
  ``board.sound_uv()`` give the firmware of an environment node: an I2C bus
  (``readfrom_mem_into``, ``writeto_mem``, as ``machine.I2C``) and a
  non-blocking UART (``write``, ``readinto``, ``read``, as ``machine.UART``
  with ``timeout=0``) in one object. A device that does not answer raises
  ``OSError`` as on the chip (ENODEV for an absent BME280).
- :class:`boards.sim.meter_link.MeterLink` (a module of its own, in meter images
  only) gives a water meter's members over the same link.
"""

import json
import os
import socket
import struct
import sys

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_SOCKET = const("sensors.sock")
_WAIT_S = const(60)  # for the host to start on a loaded machine


def address(path):
    """A ``sockaddr_un`` for ``path`` (the unix port's sockets take the raw structure)."""
    return struct.pack("<H", socket.AF_UNIX) + path.encode() + b"\0"


class _Link:
    """A connection to a sensor host serving the ``kind`` parts (see boards.sim.sensor_host)."""

    def __init__(self, kind, heapsize="512K"):
        try:
            os.remove(_SOCKET)
        except OSError:
            pass
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(address(_SOCKET))
        server.listen(1)
        # The host runs the node's image too: mounted from its code slot, if it has one (update_boot).
        os.system("%s -X heapsize=%s -c \"import update_boot as u; u.mount(False); "
                  "import board.sensor_host as h; h.main('%s', '%s')\" &"
                  % (sys.executable, heapsize, _SOCKET, kind))
        server.settimeout(_WAIT_S)
        self._sock = server.accept()[0]
        server.close()
        self._sock.settimeout(None)

    def _call(self, op, payload=b""):
        sock = self._sock
        sock.send(struct.pack(">BH", op, len(payload)) + payload)
        head = self._read(3)
        status, n = struct.unpack(">BH", head)
        data = self._read(n) if n else b""
        if status:
            raise OSError(status)
        return data

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self._sock.recv(n - len(buf))
            if not chunk:
                raise OSError(32)  # EPIPE: the sensor host is gone
            buf += chunk
        return buf

    async def run(self):
        """Nothing to run here: the host follows ``control.json`` itself."""

    def snapshot(self):
        """The parts' state for world.json (from the host)."""
        return json.loads(self._call(106))


class SensorLink(_Link):
    """The BME280's I2C bus, the SDS011's UART and the sound-level module, served by the sensor host."""

    name = "weather"

    def __init__(self, board=None, cfg=None):
        _Link.__init__(self, "env")

    # -- what the board gives the firmware -------------------------------------------------------

    def i2c(self):
        """The sensor I2C bus (a BME280 at 0x76)."""
        return self

    def sensor_uart(self):
        """The dust sensor's UART (an SDS011, 9600 8N1), non-blocking."""
        return self

    def sound_uv(self):
        """The sound-level module's output, microvolts."""
        return int(self._call(115))

    # -- machine.I2C ----------------------------------------------------------------------------

    def readfrom_mem_into(self, addr, memaddr, buf):
        """Fill ``buf`` from register ``memaddr`` on."""
        data = self._call(82, bytes((addr, memaddr, len(buf))))
        for i in range(len(buf)):
            buf[i] = data[i]

    def writeto_mem(self, addr, memaddr, buf):
        """Write ``buf`` from register ``memaddr`` on."""
        self._call(87, bytes((addr, memaddr)) + bytes(buf))

    # -- machine.UART ---------------------------------------------------------------------------

    def write(self, buf):
        """Send ``buf`` to the dust sensor; how many bytes were taken."""
        return int(self._call(119, bytes(buf)))

    def readinto(self, buf):
        """Fill ``buf`` with what the sensor sent; the count, or None if nothing was there."""
        data = self._call(114, bytes((min(len(buf), 255),)))
        n = len(data)
        buf[:n] = data
        return n or None

    def read(self, n=255):
        """Up to ``n`` bytes the sensor sent, or None."""
        return self._call(114, bytes((min(n, 255),))) or None
