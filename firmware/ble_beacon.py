"""The node's BLE part: its readings and alarms in encrypted BTHome v2 adverts, its GATT service.

Started by the meter and environment roles (``start_radio``) when the board
has a radio (``board.ble()``) and the flash holds ``ble.json``::

    {"key": "<32 hex digits>", "interval_ms": 10000, "burst_ms": 200,
     "alarm_repeat_ms": 2000, "alarm_timeout_ms": 60000, "gatt": true,
     "tx_power_dbm": 0, "sleep": false}

The radio settings (``interval_ms``, ``tx_power_dbm``, ``sleep``) are checked by
``protocols.ble_gatt_server.radio_problem`` (a file with a bad one boots with the
defaults and says why in ``diag.json``) and can be set over GATT
(``OP_RADIO``), which rewrites this file. The TX power goes to the board
(``ble_tx_power``: the virtual radio honours it as RSSI and range; MicroPython
on the ESP32 has no call for it). With ``sleep`` the node sleeps through the
board (``ble_sleep``: light sleep on the ESP32) from one reading advert to the
next, unless an alarm is being repeated; a change of the alarm bits is then
seen at the next wake.

Every ``interval_ms`` the node seals a reading advert (the registers
``protocols.bthome.role`` lists for its role) with the next counter and
advertises it once per interval. When the alarm bits of ``status`` change,
an alarm advert goes out at once as a burst (every 20 ms for ``burst_ms``),
and again every ``alarm_repeat_ms`` (a new counter each time) until
``alarm_timeout_ms`` has passed or the gateway acknowledged the alarm over
GATT, so that an advert lost on the air does not lose the alarm. With
``"gatt"`` (the default) the node also serves the gateway's sealed commands
(:class:`GattService`, below).

The counter never repeats: the node reserves blocks of :data:`_BLOCK`
counters in the board's persistent store (``persist_read/persist_write``,
NVS on the ESP32) and, after a reset, starts after the last reservation (a
reset skips at most one block). Buffers are allocated once: an advert costs
the few small objects the AES block calls make.

GATT service (:class:`GattService`, started with the beacon unless
``"gatt": false``; in this module rather than one of its own, whose module
objects would cost a node about 0.4 KB of RAM). One service (``protocols.ble_gatt``; a node
imports its half, ``protocols.ble_gatt_server``): a command
characteristic the gateway writes and a result characteristic it subscribes
to. Each command is opened with the node's key; its counter must be above
every counter the node took before (kept in the board's persistent store
before the command acts, so a reset does not reopen old counters). What the
commands do:

- write holding registers: through the register bank, exactly as a Modbus
  write (the same range checks, the role acts on the new setting); a refusal
  answers the Modbus exception code;
- read holding registers;
- acknowledge the alarm: the beacon stops repeating its alarm adverts;
- write and read the node's file records (``bank.files``), as Modbus
  functions 21 and 20 do: an update over the air goes through the very code
  of an update over the bus (:mod:`firmware.update`); a 240-byte chunk comes
  in two parts (``ble_gatt_server.FILE_PART``), kept until the second arrives. After
  the answer to the COMMIT that switched the code slot, the node resets.

A forged or malformed frame gets no answer (a result sealed for the sender
would tell a forger nothing it could use, and costs air time); a replayed
counter is answered ``STATUS_REPLAY``. Both are counted (:meth:`diagnostics`).
No BLE bonding is relied on.

The IRQ handler only keeps the written frame (a short fixed queue) and hands
the work to the main thread with ``micropython.schedule`` (the ``schedule``
given at start): :meth:`serve_pending` runs there, between two bytecodes of
whatever runs, as MicroPython's docs advise for work an IRQ triggers. No task
waits on a flag for it, so a node does not load asyncio's event module (about
1.2 KB on the 64-bit unix port) nor keep a task for it; only the reset after
an update's COMMIT is a task, created when one is due.
"""

import asyncio
import binascii
import json
import os
import struct
import time

from protocols import ble_gatt_server, bthome
from protocols.errors import AuthenticationError, ModbusException, ProtocolError

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_BLOCK = const(256)
_BURST_US = const(20000)
_ADV_MAX_MS = const(10240)  # the longest legacy advertising interval: a longer reading interval repeats it
_KEY = "blectr"
# diag.json's "ble" object from format strings: its keys as a dictionary would be names the node interns (RAM).
_DIAG = ('{"adverts": %d, "alarm_adverts": %d, "alarm_acked": %s, "interval_ms": %d, "tx_power_dbm": %d, '
         '"tx_power_applied": %s, "sleep": %d, "slept_ms": %d%s%s}')
_DIAG_ERROR = ', "settings_error": %s'
# The GATT service's: events and flags of MicroPython's bluetooth module, Modbus codes of its answers
_IRQ_CENTRAL_CONNECT = const(1)
_IRQ_GATTS_WRITE = const(3)
_FLAG_READ = const(0x02)
_FLAG_WRITE = const(0x08)
_FLAG_NOTIFY = const(0x10)
_FC_READ_HOLDING = const(3)
_FC_WRITE_MULTIPLE = const(16)
_ILLEGAL_FUNCTION = const(1)
_ILLEGAL_VALUE = const(3)
_DEVICE_FAILURE = const(4)
_MTU = const(247)  # ble_gatt_server.MAX_FRAME plus the ATT header
_QUEUE = const(4)  # commands waiting at once; the gateway sends one per connection
_GATT_KEY = "gattctr"
# Text, not a dictionary: its keys would be names the node interns (RAM).
_GATT_DIAG = (', "gatt_accepted": %d, "gatt_replayed": %d, "gatt_forged": %d, "gatt_malformed": %d, '
         '"gatt_dropped": %d, "gatt_connections": %d, "gatt_counter": %d')


def load_settings(path):
    """The BLE settings in ``path`` (None without the file, or with an unusable key)."""
    try:
        with open(path) as f:
            cfg = json.load(f)
        key = binascii.unhexlify(cfg["key"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if len(key) != 16:
        return None
    cfg["key"] = key
    return cfg


def start(board, bank, role):
    """The running beacon of a node on ``board`` (its task created), or None without radio or ``ble.json``."""
    settings = load_settings(board.flash_dir + "/ble.json")
    ble = board.ble() if settings is not None else None
    if ble is None:
        return None
    beacon = Beacon(ble, bank, board, role, settings)
    beacon.task = asyncio.create_task(beacon.run())
    if settings.get("gatt", True) and getattr(board, "ble_uuid", None) is not None:
        from micropython import schedule

        # One AES-CCM (key schedule and buffers) for adverts and frames: their nonces never meet.
        address = bytes(ble.config("mac")[1])
        service = GattService(ble, board, bank, beacon, beacon.sealer.ccm, address, schedule)
        beacon.gatt = service
    return beacon


def persisted(store, key):
    """The 32-bit number kept under ``key`` in ``store`` (``persist_read``: NVS on the ESP32), 0 if none."""
    data = None
    try:
        data = store.persist_read(key)
    except (OSError, AttributeError):
        pass
    return int.from_bytes(data, "little") if data and len(data) == 4 else 0


class Beacon:
    """Advertises the readings of ``bank`` (a role's register bank) through ``ble`` (``bluetooth.BLE``).

    ``store`` is the board (``persist_read``/``persist_write``), ``role`` the role's name.
    """

    def __init__(self, ble, bank, store, role, settings):
        self.ble = ble
        self.bank = bank
        self.store = store
        self.rows, self._in_reading, self.alarms = bthome.role(role)
        self._interval_ms = int(settings.get("interval_ms", 10000))
        self._tx_power = int(settings.get("tx_power_dbm", 0))
        self.sleep = 1 if settings.get("sleep", False) else 0
        self._settings_error = ble_gatt_server.radio_problem(self._interval_ms, self._tx_power, self.sleep)
        if self._settings_error:  # a bad file still boots, with the defaults, and says why (diag.json)
            self._interval_ms, self._tx_power, self.sleep = 10000, 0, 0
        self._slept_ms = 0
        # burst, repeat, timeout (ms): read by run() only
        self._alarm_ms = (int(settings.get("burst_ms", 200)), int(settings.get("alarm_repeat_ms", 2000)),
                         int(settings.get("alarm_timeout_ms", 60000)))
        ble.active(True)
        self._tx_applied = False
        self.set_radio(self._interval_ms, self._tx_power, self.sleep, False)
        self.sealer = bthome.Sealer(settings["key"], bytes(ble.config("mac")[1]))
        self.gatt = None  # the GATT service (GattService), started beside the beacon
        # The service data: information byte, objects (packed here, then sealed in place), counter, tag.
        self._service = bytearray(1 + bthome.MAX_OBJECTS + 8)
        self._values = [0] * len(self.rows)
        self.counter = self._reserved = persisted(store, _KEY)  # a reset skips the rest of the last block
        self._sent = 0
        self._alarms_sent = 0
        self.acked = False  # set by the GATT service when the gateway acknowledges the alarm
        self.task = None  # the running advertiser (start())

    def radio_settings(self):
        """(interval_ms, tx_power_dbm, sleep) as in force."""
        return self._interval_ms, self._tx_power, self.sleep

    def set_radio(self, interval_ms, tx_power_dbm, sleep, save=True):
        """Take new radio settings (checked by the caller): written to ``ble.json`` first, then applied."""
        if save:
            path = getattr(self.store, "flash_dir", ".") + "/ble.json"
            with open(path) as f:
                cfg = json.load(f)
            cfg["interval_ms"], cfg["tx_power_dbm"], cfg["sleep"] = interval_ms, tx_power_dbm, bool(sleep)
            with open(path + ".tmp", "w") as f:
                json.dump(cfg, f)
            os.rename(path + ".tmp", path)  # the old file or the new one, whatever a power cut hits
            self._settings_error = None
        self._interval_ms, self._tx_power, self.sleep = interval_ms, tx_power_dbm, 1 if sleep else 0
        apply = getattr(self.store, "ble_tx_power", None)
        self._tx_applied = bool(apply(self.ble, tx_power_dbm)) if apply is not None else False

    def advertise(self, alarms=None):
        """Advertise the current readings (once per interval from now on), or, given ``alarms`` (a ``status``
        value), its alarm bits now, every 20 ms (the caller ends the burst)."""
        service = memoryview(self._service)
        objects = service[1 : 1 + bthome.MAX_OBJECTS]
        if alarms is None:
            bank = self.bank
            values = self._values
            rows = self.rows
            for i in range(len(rows)):
                values[i] = bank.get(rows[i][0])
            n = bthome.pack_reading(objects, rows, self._in_reading, values, bank.get("status"))
            interval_us = min(self._interval_ms, _ADV_MAX_MS) * 1000
        else:
            n = bthome.pack_alarms(objects, 0, self.alarms, alarms)
            interval_us = _BURST_US
        # The objects sealed in place with the next counter (a block reserved first).
        counter = self.counter
        if counter >= self._reserved:
            self._reserved = counter + _BLOCK
            self.store.persist_write(_KEY, self._reserved.to_bytes(4, "little"))
        self.counter = counter + 1
        length = self.sealer.seal_into(service[1 : 1 + n], counter, self._service, alarms is not None)
        self.ble.gap_advertise(interval_us, bthome.advert(service[:length]))
        self._sent += 1
        if alarms is not None:
            self._alarms_sent += 1

    def diagnostics(self):
        """The beacon's counters for the node's ``diag.json``, and the GATT service's: JSON object text."""
        error = self._settings_error
        return _DIAG % (self._sent, self._alarms_sent, json.dumps(self.acked), self._interval_ms, self._tx_power,
                        json.dumps(self._tx_applied), self.sleep, self._slept_ms,
                        _DIAG_ERROR % json.dumps(error) if error else "",
                        "" if self.gatt is None else self.gatt.diagnostics())

    async def run(self):
        """Readings every interval, alarm bursts on a change of the alarm bits, repeated until acked or timed out."""
        alarm_bits = 0
        for bits, _ in self.alarms:
            alarm_bits |= bits
        burst_ms, repeat_ms, timeout_ms = self._alarm_ms
        last_alarms = self.bank.get("status") & alarm_bits
        raised_ms = None
        next_repeat = 0
        self.advertise()
        due = time.ticks_add(time.ticks_ms(), self._interval_ms)
        while True:
            sleeper = getattr(self.store, "ble_sleep", None) if self.sleep and raised_ms is None else None
            if sleeper is not None:  # nothing to repeat: sleep until the next reading advert
                step = max(20, time.ticks_diff(due, time.ticks_ms()))
                self._slept_ms += step
                await sleeper(step)
            else:
                await asyncio.sleep_ms(min(repeat_ms, self._interval_ms, 100))
            now = time.ticks_ms()
            status = self.bank.get("status")
            alarms = status & alarm_bits
            burst = False
            if alarms != last_alarms:
                last_alarms = alarms
                raised_ms = now if alarms else None  # a clear goes out once, as a burst
                self.acked = False
                burst = True
            elif raised_ms is not None and not self.acked and time.ticks_diff(now, next_repeat) >= 0:
                if time.ticks_diff(now, raised_ms) >= timeout_ms:
                    raised_ms = None
                else:
                    burst = True
            if burst:
                self.advertise(status)
                next_repeat = time.ticks_add(now, repeat_ms)
                await asyncio.sleep_ms(burst_ms)
                self.advertise()
                due = time.ticks_add(time.ticks_ms(), self._interval_ms)
            elif time.ticks_diff(now, due) >= 0:
                self.advertise()
                due = time.ticks_add(due, self._interval_ms)


async def _reset_soon(reset):
    await asyncio.sleep_ms(300)  # the COMMIT's answer on its way before the reset
    reset()


class GattService:
    """Serves ``protocols.ble_gatt`` commands on ``ble`` for the node's ``bank`` and ``beacon``.

    ``board`` gives the UUIDs (``ble_uuid``) and the persistent store;
    ``key`` (16 bytes, or the beacon's ``AesCcm`` to share) and ``address``
    (6 bytes) seal the frames. ``schedule`` (``micropython.schedule`` on a
    node) runs :meth:`serve_pending` after a write; without it the caller
    calls :meth:`serve_pending` itself (tests).
    """

    def __init__(self, ble, board, bank, beacon, key, address, schedule=None):
        self.ble = ble
        self.store = board
        self.bank = bank
        self.beacon = beacon
        self._frames = ble_gatt_server.Sealed(key, address)
        uuid = board.ble_uuid
        gatt = ble_gatt_server
        service = (
            uuid(gatt.SERVICE_UUID),
            ((uuid(gatt.COMMAND_UUID), _FLAG_WRITE), (uuid(gatt.RESULT_UUID), _FLAG_READ | _FLAG_NOTIFY)),
        )
        ((self._command, self._result),) = ble.gatts_register_services((service,))
        ble.config(mtu=_MTU)  # a result of 100 registers needs 210 bytes; the central asks for the exchange
        self.highest = persisted(board, _GATT_KEY)
        self._accepted = 0
        self._replayed = 0
        self._forged = 0
        self._malformed = 0
        self._dropped = 0  # commands that found the queue full
        self._connections = 0
        self._pending = []
        self._part = None  # (file, record, bytes): the first part of a file record, until its second
        self._schedule = schedule
        self._serve = self.serve_pending  # one bound method, made here: an IRQ handler must not allocate it
        self._due = False  # a serve_pending is scheduled and has not started yet
        self._resetting = None  # the task that resets the node after an update's COMMIT, once one is due
        ble.irq(self._irq)

    def _irq(self, event, data):
        if event == _IRQ_GATTS_WRITE:
            conn, handle = data
            if handle != self._command:
                return
            if len(self._pending) >= _QUEUE:
                self._dropped += 1
                return
            self._pending.append((conn, bytes(self.ble.gatts_read(handle))))
            if self._schedule is not None and not self._due:
                self._due = True
                try:
                    self._schedule(self._serve, None)
                except RuntimeError:  # the scheduler's queue is full: the next write schedules the pass
                    self._due = False
        elif event == _IRQ_CENTRAL_CONNECT:
            self._connections += 1

    def serve_pending(self, _=None):
        """Answer the commands written so far, in order; after a COMMIT that switched the code slot, reset."""
        # Cleared before the queue is read: a write that lands while it is served schedules another pass.
        self._due = False
        while self._pending:
            conn, frame = self._pending.pop(0)
            self.handle(conn, frame)
        files = self.bank.files
        reset = files.pending_reset() if files is not None else None
        if reset is not None and self._resetting is None:
            self._resetting = asyncio.create_task(_reset_soon(reset))

    def handle(self, conn, frame):
        """Open, check, apply and answer one command frame written on connection ``conn``."""
        try:
            counter, op, body = self._frames.open_command(frame)
        except AuthenticationError:
            self._forged += 1
            return
        except ProtocolError:
            self._malformed += 1
            return
        answer = b""
        if counter <= self.highest:
            self._replayed += 1
            status = ble_gatt_server.STATUS_REPLAY
        else:
            self.highest = counter
            self.store.persist_write(_GATT_KEY, counter.to_bytes(4, "little"))  # before it acts: never taken twice
            self._accepted += 1
            status = ble_gatt_server.STATUS_OK
            try:
                answer = self._apply(op, ble_gatt_server.parse_body(op, body))
            except ModbusException as exc:
                status = exc.code
            except ProtocolError:
                status = ble_gatt_server.STATUS_BAD_OP
            except (OSError, MemoryError):
                status = _DEVICE_FAILURE  # the node could not do it now (flash, heap): the service goes on
        frame = self._frames.result(counter, status, answer)
        self.ble.gatts_write(self._result, frame)
        try:
            self.ble.gatts_notify(conn, self._result, frame)
        except OSError:
            pass  # the central left before its answer: it retries with a new counter

    def _apply(self, op, what):
        # What one accepted command does; its answer's body (16-bit words go out low byte first).
        files = self.bank.files
        beacon = self.beacon
        if op == ble_gatt_server.OP_WRITE:
            start, words = what
            self.bank.write(start, words, len(words))
        elif op == ble_gatt_server.OP_READ or op == ble_gatt_server.OP_FILE_READ:
            count = what[-1]
            words = [0] * count
            if op == ble_gatt_server.OP_READ:
                self.bank.read(_FC_READ_HOLDING, what[0], count, words)
            elif files is None:  # no file records on this node: an illegal function, as over Modbus
                raise ModbusException(20, _ILLEGAL_FUNCTION)
            else:
                files.read_record(what[0], what[1], count, words)
            return struct.pack("<%dH" % count, *words)
        elif op == ble_gatt_server.OP_RADIO:
            if beacon is None:
                raise ModbusException(_FC_WRITE_MULTIPLE, _DEVICE_FAILURE)
            if what and ble_gatt_server.radio_problem(*what):
                raise ModbusException(_FC_WRITE_MULTIPLE, _ILLEGAL_VALUE)
            if what:
                beacon.set_radio(*what)
            return ble_gatt_server.radio_body(*beacon.radio_settings())
        elif op == ble_gatt_server.OP_FILE_WRITE:
            if files is None:
                raise ModbusException(21, _ILLEGAL_FUNCTION)
            file, record, part, data = what
            first = self._part
            self._part = None
            if part == 0:
                self._part = (file, record, bytes(data))
            else:
                if first is not None and first[0] == file and first[1] == record:
                    data = first[2] + bytes(data)
                files.write_record(file, record, data)
        elif beacon is not None:
            beacon.acked = True
        return b""

    def diagnostics(self):
        """Counters for the node's ``diag.json``: members of the beacon's JSON object, as text."""
        return _GATT_DIAG % (self._accepted, self._replayed, self._forged, self._malformed, self._dropped,
                             self._connections, self.highest)
