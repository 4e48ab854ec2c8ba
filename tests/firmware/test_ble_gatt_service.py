# common-subset
"""The node's GATT service: sealed commands through the register bank, results sealed back, replays and
forgeries refused and counted, the counter kept across a reset.

The radio chip is the one part recorded here (a node's ``bluetooth.BLE`` calls); the end-to-end run on the
virtual radio is tests/gateway/transport/test_ble_gatt_firmware.py.
"""

import json

import mp_env  # noqa: F401  (the frozen asyncio on MicroPython)

from firmware.ble_beacon import GattService
from firmware.registers import RegisterBank
from protocols import ble_gatt
from protocols.roles.kinds import HOLDING, RO, RW, U16, U32

KEY = bytes(range(16))
ADDRESS = b"\xd0\x5e\x00\x00\x00\x07"
ROWS = (
    ("threshold", HOLDING, 0, U16, 0, "l", RW, 1, 500, ""),
    ("limit", HOLDING, 1, U32, 0, "s", RW, 5, 100000, ""),
    ("status", HOLDING, 3, U16, 0, None, RO, 0, 0xFFFF, ""),
)
_WRITE = 3  # _IRQ_GATTS_WRITE


class Radio:
    """What the service asks of ``bluetooth.BLE``, recorded (there is no radio chip here)."""

    def __init__(self):
        self.values = {}
        self.notified = []
        self.handler = None
        self.services = None

    def gatts_register_services(self, services):
        self.services = services
        return ((21, 22),)

    def irq(self, handler):
        self.handler = handler

    def config(self, **settings):
        self.settings = settings

    def gatts_read(self, handle):
        return self.values[handle]

    def gatts_write(self, handle, data):
        self.values[handle] = bytes(data)

    def gatts_notify(self, conn, handle, data):
        self.notified.append((conn, handle, bytes(data)))

    def write(self, frame, conn=7, handle=21):
        """A central writes ``frame``: the value is stored, then the IRQ fires (as the stack does)."""
        self.values[handle] = frame
        self.handler(_WRITE, (conn, handle))


class Board:
    """UUIDs as text and the persistent store (NVS keeps it across resets: a dict that outlives the service)."""

    def __init__(self):
        self.kept = {}

    def ble_uuid(self, text):
        return text

    def persist_read(self, key):
        return self.kept.get(key)

    def persist_write(self, key, value):
        self.kept[key] = bytes(value)


class Beacon:
    acked = False


def _node(board=None, hook=None, schedule=None):
    radio = Radio()
    bank = RegisterBank(ROWS, hook)
    bank.set("threshold", 100)
    beacon = Beacon()
    service = GattService(radio, board or Board(), bank, beacon, KEY, ADDRESS, schedule)
    return radio, bank, beacon, service


GATEWAY = ble_gatt.Sealed(KEY, ADDRESS)


def _counts(service):
    """The service's counters as diag.json carries them (its members of the beacon's object)."""
    d = json.loads("{" + service.diagnostics()[1:] + "}")
    return {key[5:]: value for key, value in d.items()}  # without "gatt_"


def _answers(radio):
    return [GATEWAY.open_result(frame) for _, _, frame in radio.notified]


def test_service_is_registered_with_a_command_and_a_result_characteristic():
    radio, _, _, _ = _node()
    ((service, chars),) = radio.services
    assert service == ble_gatt.SERVICE_UUID
    assert [c[0] for c in chars] == [ble_gatt.COMMAND_UUID, ble_gatt.RESULT_UUID]
    assert chars[0][1] & 0x08 and chars[1][1] & 0x10  # write; notify
    assert radio.settings == {"mtu": 247}  # room for the largest frame in one notification


def test_a_sealed_write_changes_the_setting_and_the_result_says_so():
    names = []
    radio, bank, _, service = _node(hook=names.extend)
    radio.write(GATEWAY.command(5, ble_gatt.OP_WRITE, ble_gatt.write_body(0, [250])))
    service.serve_pending()
    assert bank.get("threshold") == 250 and names == ["threshold"]
    assert [(c, h) for c, h, _ in radio.notified] == [(7, 22)]
    counter, status, body = _answers(radio)[0]
    assert (counter, status, bytes(body)) == (5, 0, b"")
    radio.write(GATEWAY.command(6, ble_gatt.OP_READ, b"\x00\x00\x02"))
    service.serve_pending()
    counter, status, body = _answers(radio)[1]
    assert (counter, status, bytes(body)) == (6, 0, b"\xfa\x00\x00\x00")
    assert _counts(service)["accepted"] == 2 and service.highest == 6


def test_an_out_of_range_write_answers_the_modbus_code_and_changes_nothing():
    radio, bank, _, service = _node()
    radio.write(GATEWAY.command(1, ble_gatt.OP_WRITE, ble_gatt.write_body(0, [501])))
    radio.write(GATEWAY.command(2, ble_gatt.OP_WRITE, ble_gatt.write_body(3, [1])))  # read-only status
    radio.write(GATEWAY.command(3, ble_gatt.OP_READ, b"\x09\x00\x01"))  # past the table
    service.serve_pending()
    assert [(c, s) for c, s, _ in _answers(radio)] == [(1, 3), (2, 2), (3, 2)]
    assert bank.get("threshold") == 100


def test_a_replayed_counter_is_refused_also_after_a_reset():
    board = Board()
    radio, bank, _, service = _node(board)
    frame = GATEWAY.command(9, ble_gatt.OP_WRITE, ble_gatt.write_body(0, [300]))
    radio.write(frame)
    service.serve_pending()
    bank.set("threshold", 100)
    radio.write(frame)  # the same frame again
    radio.write(GATEWAY.command(8, ble_gatt.OP_WRITE, ble_gatt.write_body(0, [301])))  # an older counter
    service.serve_pending()
    assert [(c, s) for c, s, _ in _answers(radio)] == [(9, 0), (9, ble_gatt.STATUS_REPLAY), (8, ble_gatt.STATUS_REPLAY)]
    assert bank.get("threshold") == 100 and _counts(service)["replayed"] == 2
    radio, bank, _, service = _node(board)  # the node reset: its counter came back from the store
    radio.write(frame)
    service.serve_pending()
    assert [(c, s) for c, s, _ in _answers(radio)] == [(9, ble_gatt.STATUS_REPLAY)]
    assert bank.get("threshold") == 100 and service.highest == 9


def test_forged_and_malformed_frames_get_no_answer_and_are_counted():
    radio, bank, _, service = _node()
    forged = ble_gatt.Sealed(bytes(16), ADDRESS).command(1, ble_gatt.OP_WRITE, ble_gatt.write_body(0, [200]))
    other_node = ble_gatt.Sealed(KEY, b"\xd0\x5e\x00\x00\x00\x08").command(1, ble_gatt.OP_ACK_ALARM)
    flipped = bytearray(GATEWAY.command(1, ble_gatt.OP_WRITE, ble_gatt.write_body(0, [200])))
    flipped[6] ^= 1
    for frame in (forged, other_node, bytes(flipped), b"\x01\x02", b""):
        radio.write(frame)
        service.serve_pending()
    assert radio.notified == [] and bank.get("threshold") == 100
    counts = _counts(service)
    assert (counts["forged"], counts["malformed"], counts["accepted"], service.highest) == (3, 2, 0, 0)


def test_an_acknowledgement_stops_the_alarm_and_bad_ops_are_refused():
    radio, _, beacon, service = _node()
    radio.write(GATEWAY.command(1, ble_gatt.OP_ACK_ALARM))
    radio.write(GATEWAY.command(2, 9))  # no such op
    radio.write(GATEWAY.command(3, ble_gatt.OP_READ, b"\x00"))  # a read without its count
    service.serve_pending()
    assert beacon.acked is True
    assert [(c, s) for c, s, _ in _answers(radio)] == [(1, 0), (2, ble_gatt.STATUS_BAD_OP), (3, ble_gatt.STATUS_BAD_OP)]


def test_writes_elsewhere_are_ignored_and_a_full_queue_drops_and_counts():
    radio, _, _, service = _node()
    radio.write(GATEWAY.command(1, ble_gatt.OP_ACK_ALARM), handle=22)  # the result characteristic
    for counter in range(1, 7):
        radio.write(GATEWAY.command(counter, ble_gatt.OP_ACK_ALARM))
    service.serve_pending()
    assert [c for c, _, _ in _answers(radio)] == [1, 2, 3, 4] and _counts(service)["dropped"] == 2
    counts = _counts(service)
    assert (counts["accepted"], counts["dropped"], counts["counter"]) == (4, 2, 4)


def test_a_write_schedules_one_pass_that_answers_every_command_queued():
    """The IRQ handler hands the work on through ``schedule`` (micropython.schedule on a node): one pass per
    batch of writes, none while one is due; the pass answers in order and a later write schedules anew."""
    due = []
    radio, _, _, _ = _node(schedule=lambda pass_, arg: due.append((pass_, arg)))
    radio.write(GATEWAY.command(1, ble_gatt.OP_ACK_ALARM))
    radio.write(GATEWAY.command(2, ble_gatt.OP_READ, b"\x00\x00\x01"))
    assert len(due) == 1 and radio.notified == []  # nothing done inside the handler
    pass_, arg = due.pop()
    pass_(arg)
    assert [(c, s) for c, s, _ in _answers(radio)] == [(1, 0), (2, 0)]
    radio.write(GATEWAY.command(3, ble_gatt.OP_ACK_ALARM))
    assert len(due) == 1
    pass_, arg = due.pop()
    pass_(arg)
    assert [c for c, _, _ in _answers(radio)] == [1, 2, 3]


def test_a_full_scheduler_queue_leaves_the_command_for_the_next_pass():
    """``micropython.schedule`` raises RuntimeError when its queue is full: the frame stays queued and the next
    write schedules a pass that answers both."""
    due = []
    refused = []

    def schedule(pass_, arg):
        if not refused:
            refused.append(pass_)
            raise RuntimeError("schedule queue full")
        due.append((pass_, arg))

    radio, _, _, _ = _node(schedule=schedule)
    radio.write(GATEWAY.command(1, ble_gatt.OP_ACK_ALARM))
    assert due == [] and radio.notified == []
    radio.write(GATEWAY.command(2, ble_gatt.OP_ACK_ALARM))
    pass_, arg = due.pop()
    pass_(arg)
    assert [c for c, _, _ in _answers(radio)] == [1, 2]
