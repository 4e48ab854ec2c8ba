"""The virtual board's radio: MicroPython's ``bluetooth.BLE`` surface, carried to the virtual radio.

On the ESP32 the firmware gets ``bluetooth.BLE()`` from the board; here it
gets :class:`BLE`, which sends each call over a TCP connection to the radio
host (``tools/sim/radio_host.py``), where a Bumble device with this node's
address does it on the virtual radio. One JSON array per line, its first
item the call (a number: words would be names the node interns, RAM a chip's
C module does not spend), node to host::

    [1, "D0:5E:00:00:00:07"]                       (hello: the node's address)
    [2, 100000, "<hex>", "<hex>" | null, true]     (advertise: interval (us), data, scan response, connectable)
    [2, null]                                      (stop advertising)
    [3, [[uuid, [[uuid, flags, handle], ...]], ...]]  (register the GATT services)
    [4, 1, 2, "<hex>"]                             (notify: connection, handle, data)
    [5, -6]                                        (TX power, dBm: the board's ble_tx_power, the virtual radio's own)

and host to node, the radio's events as MicroPython delivers them to the
``irq()`` handler (event numbers as in MicroPython's ``bluetooth`` docs)::

    [1, 1, "<hex>"]                                (_IRQ_CENTRAL_CONNECT: connection, central's address)
    [2, 1, "<hex>"]                                (_IRQ_CENTRAL_DISCONNECT)
    [3, 1, 2, "<hex>"]                             (_IRQ_GATTS_WRITE: connection, handle, value; stored first)

What the firmware uses: ``active()``, ``config("mac")``, ``irq()``,
``gap_advertise()``, ``gatts_register_services()``, ``gatts_read()``,
``gatts_write()``, ``gatts_notify()``. Handles are numbered here, as the
ESP32's stack numbers them on its side; a UUID is its text (``ble_uuid``;
``bluetooth.UUID`` on the ESP32), which the radio host gives to Bumble. A
call that cannot reach the host raises OSError, as a radio that failed
would. Events are read by an asyncio task (started with the radio) that
waits on asyncio's poller for the socket, so the handler runs on the node's
event loop, as a scheduled IRQ does on the ESP32; asyncio's stream module is
not loaded for it (a chip's radio has no stream).

What a chip keeps out of MicroPython's heap is measured here and written to
``./radio_heap.json`` when the radio is switched on (``streetedge bench
node`` reports the node's heap with and without it): ``module``, this
module's objects (its classes and functions: the ``bluetooth`` module is C
in an ESP32's firmware, in flash) and ``link``, the connection to the radio
host (socket, the event task: the BLE controller and host stack of
an ESP32 keep their memory in ESP-IDF's heap, not MicroPython's). The BLE
object itself and the attribute values (``gatts_write``) stay counted as the
node's: MicroPython keeps those in its heap on a chip too.
"""

import asyncio
import binascii
import gc
import json
import socket

from micropython import const

gc.collect()
_HEAP_BEFORE = gc.mem_alloc()  # this module's objects are counted from here (see the end of the module)
_HELLO = const(1)
_ADVERTISE = const(2)
_SERVICES = const(3)
_NOTIFY = const(4)
_TX_POWER = const(5)
_IRQ_GATTS_WRITE = const(3)


class BLE:
    """The node's radio on the virtual radio at ``host`` (``"127.0.0.1:PORT"``), with static random ``address``."""

    def __init__(self, host, address):
        self._host = host
        self._address = address.upper()
        self._mac = binascii.unhexlify(self._address.replace(":", ""))
        self._sock = None
        self._irq = None
        self._values = {}  # attribute handle -> its value (gatts_read/gatts_write)
        self._handles = 0
        self._pump = None
        self._mtu = 23

    def active(self, flag=None):
        """Switch the radio on (connects to the radio host) or off; the state without an argument."""
        if flag is None:
            return self._sock is not None
        if flag and self._sock is None:
            gc.collect()
            before = gc.mem_alloc()
            name, port = self._host.rsplit(":", 1)
            sock = socket.socket()
            sock.connect(socket.getaddrinfo(name, int(port))[0][-1])
            sock.setblocking(False)  # events are read by the pump task; writes are small (see _send)
            self._sock = sock
            self._send([_HELLO, self._address])
            self._pump = asyncio.create_task(self._events(sock))
            gc.collect()
            with open("radio_heap.json", "w") as f:
                f.write('{"module": %d, "link": %d}' % (_MODULE_HEAP, gc.mem_alloc() - before))
        elif not flag and self._sock is not None:
            if self._pump is not None:
                self._pump.cancel()
                self._pump = None
            self._sock.close()
            self._sock = None
        return self._sock is not None

    def config(self, name=None, **settings):
        """``config("mac")`` -> ``(1, address bytes)`` (1: a random address); ``config(mtu=N)`` sets the MTU
        offered in an exchange (``config("mtu")`` gives it; the virtual radio's devices take up to 517)."""
        if settings:
            for key in settings:
                if key != "mtu":
                    raise ValueError("unknown config param " + key)
            self._mtu = int(settings["mtu"])
            return None
        if name == "mac":
            return (1, self._mac)
        if name == "mtu":
            return self._mtu
        raise ValueError("unknown config param " + str(name))

    def irq(self, handler):
        """Register the event handler: ``handler(event, data)`` as MicroPython calls it."""
        self._irq = handler

    def gap_advertise(self, interval_us, adv_data=None, resp_data=None, connectable=True):
        """Advertise ``adv_data`` every ``interval_us`` (None: stop), as the ESP32's controller does."""
        msg = [_ADVERTISE, interval_us]
        if interval_us is not None:
            msg += [binascii.hexlify(adv_data or b"").decode(),
                    binascii.hexlify(resp_data).decode() if resp_data else None, bool(connectable)]
        self._send(msg)

    def gatts_register_services(self, services):
        """Register ``((uuid, ((uuid, flags), ...)), ...)``; a tuple of value handles per service."""
        handles = []
        wire = []
        for service_uuid, chars in services:
            mine = []
            rows = []
            for char_uuid, flags in chars:
                self._handles += 1
                self._values[self._handles] = b""
                mine.append(self._handles)
                rows.append([str(char_uuid), flags, self._handles])
            handles.append(tuple(mine))
            wire.append([str(service_uuid), rows])
        self._send([_SERVICES, wire])
        return tuple(handles)

    def gatts_read(self, value_handle):
        """The local value of an attribute (what a central wrote, or gatts_write put there)."""
        return self._values[value_handle]

    def gatts_write(self, value_handle, data, send_update=False):
        """Set the local value of an attribute (not sent to anyone: ``send_update`` is not wired)."""
        self._values[value_handle] = bytes(data)

    def gatts_notify(self, conn_handle, value_handle, data=None):
        """Notify ``data`` (or the local value) to the central on ``conn_handle``."""
        if data is None:
            data = self._values[value_handle]
        self._send([_NOTIFY, conn_handle, value_handle, binascii.hexlify(data).decode()])

    def _events(self, sock):
        # A generator task parked on asyncio's own poller until the socket is readable: what
        # asyncio.StreamReader does, without loading its stream module (1.8 KB) for this socket alone.
        wait_readable = asyncio.core._io_queue.queue_read
        line = b""
        while True:
            yield wait_readable(sock)
            part = sock.readline()  # non-blocking: what has arrived, up to a newline
            if part is None:
                continue
            if not part:
                return  # the radio host went away
            line += part
            if line[-1] != 10:  # the rest of the line is still on its way
                continue
            msg = json.loads(line)
            line = b""
            event = msg[0]
            if event == _IRQ_GATTS_WRITE:
                self._values[msg[2]] = binascii.unhexlify(msg[3])
                data = (msg[1], msg[2])
            else:
                data = (msg[1], 1, binascii.unhexlify(msg[2]))
            handler = self._irq
            if handler is not None:
                handler(event, data)

    def _send(self, msg):
        if self._sock is None:
            raise OSError("radio not active")
        data = memoryview(json.dumps(msg).encode() + b"\n")
        while data:
            n = self._sock.write(data)  # non-blocking: None while loopback's buffer is full
            if n:
                data = data[n:]


class Radio:
    """The board's radio members, built the first time the firmware asks for one (a node without BLE never does).

    ``cfg`` is ``sim.json``: ``"radio"`` (the radio host, unwired without it) and ``"ble_address"`` (the node's
    static random address; from ``"seed"`` without it). Only those are kept, not the whole file's dictionary.
    """

    def __init__(self, board, cfg):
        self._host = cfg.get("radio")
        self._address = cfg.get("ble_address") or "D0:00:00:00:00:%02X" % (cfg.get("seed", 0) & 0xFF)

    def ble(self):
        """The radio on the radio host of ``sim.json`` ``"radio"``, None if unwired."""
        return BLE(self._host, self._address) if self._host else None

    def ble_tx_power(self, ble, dbm):
        """Set the radio's TX power: the virtual radio makes it the RSSI and range of the node's adverts. True.

        (MicroPython's ``BLE`` has no call for it; the virtual radio host takes it as a message of its own.)
        """
        ble._send([_TX_POWER, int(dbm)])
        return True

    async def ble_sleep(self, ms):
        """Sleep between adverts: here the process waits (no current to save); the ESP32 boards light-sleep."""
        await asyncio.sleep_ms(ms)

    def ble_uuid(self, text):
        """A GATT UUID for ``gatts_register_services``: its text, all the radio host needs."""
        return text


gc.collect()
_MODULE_HEAP = gc.mem_alloc() - _HEAP_BEFORE
