"""The node's GATT service: the gateway's sealed commands in, sealed results out as notifications.

Started with the beacon (:mod:`firmware.ble_beacon`), so a node without
``ble.json`` never loads it. One service (``protocols.ble_gatt``; a node
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
import struct

from firmware.ble_beacon import persisted
from protocols import ble_gatt_server
from protocols.errors import AuthenticationError, ModbusException, ProtocolError

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


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
_KEY = "gattctr"
# Text, not a dictionary: its keys would be names the node interns (RAM).
_DIAG = (', "gatt_accepted": %d, "gatt_replayed": %d, "gatt_forged": %d, "gatt_malformed": %d, '
         '"gatt_dropped": %d, "gatt_connections": %d, "gatt_counter": %d')


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
        self.highest = persisted(board, _KEY)
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
            self.store.persist_write(_KEY, counter.to_bytes(4, "little"))  # before it acts: never taken twice
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
        return _DIAG % (self._accepted, self._replayed, self._forged, self._malformed, self._dropped, self._connections,
                        self.highest)
