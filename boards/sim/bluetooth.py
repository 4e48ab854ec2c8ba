"""The virtual board's radio: MicroPython's ``bluetooth.BLE`` surface, carried to the virtual radio.

On the ESP32 the firmware gets ``bluetooth.BLE()`` from the board; here it
gets :class:`BLE`, which sends each call over a TCP connection to the radio
host (``tools/sim/radio_host.py``), where a Bumble device with this node's
address does it on the virtual radio. One JSON object per line::

    {"op": "hello", "addr": "D0:5E:00:00:00:07"}
    {"op": "adv", "us": 100000, "data": "<hex>", "resp": "<hex>" | null, "conn": true}
    {"op": "adv", "us": null}                      (stop advertising)

What the firmware uses: ``active()``, ``config("mac")``, ``irq()``,
``gap_advertise()``. A call that cannot reach the host raises OSError, as a
radio that failed would.
"""

import binascii
import json
import socket


class BLE:
    """The node's radio on the virtual radio at ``host`` (``"127.0.0.1:PORT"``), with static random ``address``."""

    def __init__(self, host, address):
        self._host = host
        self._address = address.upper()
        self._mac = binascii.unhexlify(self._address.replace(":", ""))
        self._sock = None
        self._irq = None

    def active(self, flag=None):
        """Switch the radio on (connects to the radio host) or off; the state without an argument."""
        if flag is None:
            return self._sock is not None
        if flag and self._sock is None:
            name, port = self._host.rsplit(":", 1)
            sock = socket.socket()
            sock.connect(socket.getaddrinfo(name, int(port))[0][-1])
            self._sock = sock
            self._send({"op": "hello", "addr": self._address})
        elif not flag and self._sock is not None:
            self._sock.close()
            self._sock = None
        return self._sock is not None

    def config(self, name):
        """``config("mac")`` -> ``(1, address bytes)`` (1: a random address); other names are not wired."""
        if name == "mac":
            return (1, self._mac)
        raise ValueError("unknown config param " + str(name))

    def irq(self, handler):
        """Register the event handler (no events are carried yet: adverts only)."""
        self._irq = handler

    def gap_advertise(self, interval_us, adv_data=None, resp_data=None, connectable=True):
        """Advertise ``adv_data`` every ``interval_us`` (None: stop), as the ESP32's controller does."""
        msg = {"op": "adv", "us": interval_us}
        if interval_us is not None:
            msg["data"] = binascii.hexlify(adv_data or b"").decode()
            msg["resp"] = binascii.hexlify(resp_data).decode() if resp_data else None
            msg["conn"] = bool(connectable)
        self._send(msg)

    def _send(self, msg):
        if self._sock is None:
            raise OSError("radio not active")
        self._sock.write(json.dumps(msg).encode() + b"\n")
