"""Updates over the bus: receive a new code image beside the running one, check it, switch, prove it.

The gateway writes the image with Modbus function 21 (write file record) and
reads the progress with function 20 (the records: :mod:`protocols.update`);
``protocols.modbus.slave`` hands both to :class:`Updater` (the bank's
``files``). Image chunks come in order; a record before the next one
expected is taken as a repeat (its answer was lost) and not written again,
one after it is refused (exception 2): the status says where to resume.

The image goes into the inactive code slot (a ROM partition where the node
has two, else ``rom/slot<1-active>.img``: :mod:`firmware.update_rom`), never
into the one running; what was received survives a power cut
(``rom/staging.json`` names the update, the slot holds its bytes), so a
BEGIN of the same update resumes. COMMIT checks the SHA-256 of
the slot's bytes and the MAC the node's provisioned key (``node.key``) gives
(``protocols.update.mac``: HMAC-SHA256 over the role, size, health time and hash), then
writes the slot state (one atomic rename: the old image or the new one, never
a mix), answers, and resets. The new image boots as a trial: it is confirmed
once it has run ``health_s`` seconds and answered the gateway; if it has not
by ``health_s * 4`` seconds it rolls itself back and resets (and
``update_boot`` rolls back a trial that cannot even boot).
"""

import json
import os
import time

from protocols.errors import ModbusException
from protocols.update import (
    BAD_HASH,
    BAD_HEADER,
    BAD_MAC,
    BEGIN_WORDS,
    BUSY,
    CHUNK,
    FILE_CONTROL,
    FILE_IMAGE,
    IDLE,
    INCOMPLETE,
    MAX_IMAGE,
    NO_KEY,
    OK,
    OP_ABORT,
    OP_BEGIN,
    OP_COMMIT,
    RECEIVING,
    REFUSED,
    mac,
)

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_FC_READ_FILE = const(20)
_FC_WRITE_FILE = const(21)
_EX_ADDRESS = const(2)
_EX_VALUE = const(3)
_EX_FAILURE = const(4)
_STAGING = "rom/staging.json"
_STATE = "rom/state.json"


class Updater:
    """The node's end of an update (the bank's ``files``), and the trial of a new image after one."""

    def __init__(self, node):
        self.node = node
        self.role = node.config.role
        self.state = IDLE
        self.result = 0
        self.header = None  # (size, health_s, sha256, mac) of the update in progress
        self.received = 0
        self._staged = {}  # the staging record, as in rom/staging.json
        self._slots = self._read(_STATE)
        self._stage = None
        self.reset_pending = None  # board.reset once a COMMIT switched the slot: due after its answer
        self._resume()

    # -- slots -------------------------------------------------------------

    def _read(self, path):
        try:
            with open(self.node.flash_path(path)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def _write_json(self, path, data):
        full = self.node.flash_path(path)
        with open(full + ".tmp", "w") as f:
            json.dump(data, f)
        os.rename(full + ".tmp", full)

    def stage(self):
        """Where the update goes: the inactive slot (:func:`firmware.update_rom.stage_for`)."""
        if self._stage is None:
            from firmware.update_rom import stage_for

            self._stage = stage_for(self.node, 1 - self._slots["active"])
        return self._stage

    def _resume(self):
        staged = self._read(_STAGING)
        if self._slots is None or staged is None:
            return
        self.header = (staged["size"], staged["health_s"], bytes.fromhex(staged["sha256"]),
                       bytes.fromhex(staged["mac"]))
        have = self.stage().resume(staged)
        if have < 0:
            # a slot torn by a power cut in a way that cannot be resumed: the update starts again at its BEGIN
            self._drop()
            return
        self._staged = staged
        self.received = have
        self.state = RECEIVING

    # -- Modbus file records -------------------------------------------------

    def read_record(self, file, record, count, values):
        """Function 20: the status words (file 2, record 0)."""
        if file != FILE_CONTROL or record != 0:
            raise ModbusException(_FC_READ_FILE, _EX_ADDRESS)
        words = self.status()
        for i in range(count):
            values[i] = words[i] if i < len(words) else 0

    def status(self):
        """``[state, received_hi, received_lo, size_hi, size_lo, result, active, trial, tries,
        rolled_back, has_slots, chunk]``."""
        size = self.header[0] if self.header else 0
        slots = self._slots or {}
        return [self.state, self.received >> 16, self.received & 0xFFFF, size >> 16, size & 0xFFFF,
                self.result, slots.get("active", 0), int(bool(slots.get("trial"))), slots.get("tries", 0),
                slots.get("rolled_back", 0), int(self._slots is not None), CHUNK]

    def write_record(self, file, record, data):
        """Function 21: a control record (file 2) or a chunk of the image (file 1)."""
        if file == FILE_CONTROL and record == 0:
            self._control(data)
        elif file == FILE_IMAGE:
            self._chunk(record, data)
        else:
            raise ModbusException(_FC_WRITE_FILE, _EX_ADDRESS)

    def _refuse(self, result, code=_EX_VALUE):
        raise self._refusal(result, code)

    def _refusal(self, result, code):
        self.result = result
        self.state = REFUSED if result != BUSY else self.state
        return ModbusException(_FC_WRITE_FILE, code)

    def _control(self, data):
        op = (data[0] << 8) | data[1]
        if op == OP_BEGIN:
            if len(data) != 2 * BEGIN_WORDS:
                raise ModbusException(_FC_WRITE_FILE, _EX_VALUE)
            if self._slots is None:
                raise ModbusException(_FC_WRITE_FILE, _EX_FAILURE)  # a node without code slots runs from files
            if self._slots.get("trial"):
                self._refuse(BUSY, _EX_FAILURE)
            try:
                os.stat(self.node.flash_path("node.key"))
            except OSError:
                self._refuse(NO_KEY, _EX_FAILURE)  # nothing could be checked: not worth the bus time
            size = (data[2] << 24) | (data[3] << 16) | (data[4] << 8) | data[5]
            health_s = (data[6] << 8) | data[7]
            header = (size, health_s, bytes(data[8:40]), bytes(data[40:72]))
            if size < 1 or size > MAX_IMAGE or health_s < 1:
                self._refuse(BAD_HEADER)
            if header == self.header and self.state == RECEIVING:
                return  # the same update again: resume where it stands
            if not self.stage().begin(size):
                self._refuse(BAD_HEADER)  # larger than the code slot
            self._staged = {"size": size, "health_s": health_s, "sha256": header[2].hex(),
                            "mac": header[3].hex(), "have": 0}
            self._write_json(_STAGING, self._staged)
            self.header = header
            self.received = 0
            self.state = RECEIVING
            self.result = 0
        elif op == OP_ABORT:
            self._drop()
        elif op == OP_COMMIT:
            self._commit()
        else:
            raise ModbusException(_FC_WRITE_FILE, _EX_VALUE)

    def _chunk(self, record, data):
        header = self.header
        if self.state != RECEIVING or header is None:
            raise ModbusException(_FC_WRITE_FILE, _EX_FAILURE)
        offset = record * CHUNK
        size = header[0]
        if offset < self.received:
            return  # a repeat: its answer was lost
        if offset > self.received or len(data) != min(CHUNK, size - offset):
            raise ModbusException(_FC_WRITE_FILE, _EX_ADDRESS if offset != self.received else _EX_VALUE)
        stage = self.stage()
        have = stage.write(offset, data)
        self.received = offset + len(data)
        if self.received == size:
            have = stage.complete(size)
        if have is not None:
            self._staged["have"] = have  # whole blocks: a power cut from now on resumes after them
            self._write_json(_STAGING, self._staged)

    def _drop(self):
        try:
            os.remove(self.node.flash_path(_STAGING))
        except OSError:
            pass
        self.header = None
        self._staged = {}
        self.received = 0
        self.state = IDLE

    def _commit(self):
        header = self.header
        if self.state != RECEIVING or header is None or self.received != header[0]:
            raise self._refusal(INCOMPLETE, _EX_FAILURE)
        size, health_s, digest, tag = header
        if self.stage().digest(size) != digest:
            self._drop()
            self._refuse(BAD_HASH)
        try:
            with open(self.node.flash_path("node.key"), "rb") as f:
                key = f.read()
        except OSError:
            self._drop()
            self._refuse(NO_KEY)
        if mac(key, self.role, size, health_s, digest) != tag:
            self._drop()
            self._refuse(BAD_MAC)
        active = self._slots["active"]
        self._slots = {"active": 1 - active, "trial": True, "tries": 0, "previous": active,
                       "health_s": health_s, "rolled_back": self._slots.get("rolled_back", 0)}
        self._drop()  # first: a staging record left beside the new slot would name the old one
        self._write_json(_STATE, self._slots)  # the switch: one rename
        self._stage = None  # the slot staged into is now the active one
        self.result = OK
        self.node.boot.rebooting()  # a planned reset, not a crash
        self.node.slave.after_answer = self.node.board.reset  # over Modbus: once the answer is sent
        self.reset_pending = self.node.board.reset  # over GATT (firmware.ble_beacon.GattService)

    # -- the trial of a new image ---------------------------------------------

    def _answers(self):
        # what the node answered the gateway: Modbus requests, and sealed GATT commands on a BLE node
        n = self.node.slave.requests
        gatt = getattr(getattr(self.node.role, "beacon", None), "gatt", None)
        return n + gatt.accepted if gatt is not None else n

    async def run(self):
        """While this image is on trial: confirm it once healthy, or roll it back when its time is up."""
        import asyncio

        slots = self._slots
        if not slots or not slots.get("trial"):
            return
        health_ms = slots.get("health_s", 30) * 1000
        started = time.ticks_ms()
        first = self._answers()
        while True:
            await asyncio.sleep_ms(250)
            ran = time.ticks_diff(time.ticks_ms(), started)
            if ran >= health_ms and self._answers() > first:
                slots = {"active": slots["active"], "trial": False, "tries": 0,
                         "rolled_back": slots.get("rolled_back", 0)}
                self._write_json(_STATE, slots)
                self._slots = slots
                return
            if ran >= 4 * health_ms:
                self._write_json(_STATE, {"active": slots["previous"], "trial": False, "tries": 0,
                                          "rolled_back": slots.get("rolled_back", 0) + 1})
                self.node.board.reset()
