# common-subset
"""The SDS011 driver: the protocol's own examples, a parser that keeps in step, and a simulated sensor."""

import time

import mp_env  # noqa: F401  (time.ticks_* on CPython, frozen asyncio on MicroPython)

from boards.sim.sds011 import REPLY_MS, SimSDS011
from firmware import sds011 as drv

# Examples of the Laser Dust Sensor Control Protocol V1.3.
QUERY = bytes.fromhex("AA B4 04 00 00 00 00 00 00 00 00 00 00 00 00 FF FF 02 AB".replace(" ", ""))
SET_QUERY_MODE = bytes.fromhex("AA B4 02 01 01 00 00 00 00 00 00 00 00 00 00 FF FF 02 AB".replace(" ", ""))
SLEEP = bytes.fromhex("AA B4 06 01 00 00 00 00 00 00 00 00 00 00 00 FF FF 05 AB".replace(" ", ""))
DATA = bytes.fromhex("AA C0 D4 04 3A 0A A1 60 1D AB".replace(" ", ""))  # PM2.5 123.6, PM10 261.8
REPLY = bytes.fromhex("AA C5 02 01 01 00 A1 60 05 AB".replace(" ", ""))


def test_command_frames_match_the_protocol_examples():
    assert bytes(drv.command(drv.CMD_QUERY)) == QUERY
    assert bytes(drv.command(drv.CMD_REPORTING_MODE, 1, 1)) == SET_QUERY_MODE
    assert bytes(drv.command(drv.CMD_SLEEP_WORK, 1, 0)) == SLEEP
    one = drv.command(drv.CMD_QUERY, device_id=0x60A1)
    assert one[15] == 0xA1 and one[16] == 0x60 and one[17] == (4 + 0xA1 + 0x60) & 0xFF


def test_parser_reads_the_example_frames():
    p = drv.Sds011Parser()
    assert p.feed(DATA) == 1
    assert (p.pm25, p.pm10, p.device_id) == (1236, 2618, 0x60A1)
    assert p.feed(REPLY) == 0
    assert (p.replies, p.last_reply) == (1, 2)
    assert p.bad_frames == 0 and p.garbage == 0


def test_frames_split_anywhere_are_reassembled():
    p = drv.Sds011Parser()
    stream = DATA + REPLY + DATA
    for i in range(len(stream)):
        p.feed(stream[i:i + 1])
    assert p.measurements == 2 and p.replies == 1


def test_garbage_before_and_between_frames_is_skipped():
    p = drv.Sds011Parser()
    assert p.feed(b"\x00\x13\xab" + DATA + b"\xff\xaa\x01" + DATA) == 2
    assert p.bad_frames == 1  # AA followed by 01: not a frame ...
    assert p.garbage == 5  # ... whose 01 is then skipped like the other four


def test_a_false_head_inside_a_bad_frame_does_not_hide_the_next_frame():
    p = drv.Sds011Parser()
    bad = bytearray(DATA)
    bad[8] ^= 0xFF
    assert p.feed(b"\xaa\xc0" + DATA) == 1  # a truncated frame whose bytes lead into a real one
    assert p.feed(bytes(bad) + DATA) == 1
    assert p.bad_frames >= 2
    assert p.pm25 == 1236


def test_bad_checksum_and_bad_tail_are_refused():
    p = drv.Sds011Parser()
    bad = bytearray(DATA)
    bad[8] = (bad[8] + 1) & 0xFF
    assert p.feed(bad) == 0
    tail = bytearray(DATA)
    tail[9] = 0
    assert p.feed(tail) == 0
    assert p.bad_frames == 2
    assert p.pm25 is None


def _sensor(fault=None, values=(12.3, 45.6)):
    state = {"v": values}
    part = SimSDS011(lambda: state["v"], fault=fault)
    return state, part, drv.SDS011(part)


def _settle():
    time.sleep_ms(REPLY_MS + 5)


def test_query_mode_and_a_measurement():
    state, part, sensor = _sensor()
    assert sensor.set_query_mode()
    _settle()
    sensor.poll()
    assert part.query_mode
    assert sensor.parser.last_reply == drv.CMD_REPORTING_MODE
    state["v"] = (7.84, 1234.5)
    assert sensor.query()
    _settle()
    assert sensor.poll() == 1
    assert (sensor.parser.pm25, sensor.parser.pm10) == (78, 9999)  # 7.8; PM10 capped at the range, 999.9


def test_active_mode_reports_every_second_until_query_mode():
    _, _, sensor = _sensor()
    time.sleep_ms(1000 + REPLY_MS + 30)
    assert sensor.poll() >= 1


def test_sleep_silences_the_sensor_until_woken():
    _, part, sensor = _sensor()
    sensor.set_query_mode()
    sensor.sleep()
    _settle()
    sensor.poll()
    assert not part.working
    sensor.query()
    _settle()
    assert sensor.poll() == 0
    sensor.wake()
    sensor.query()
    _settle()
    assert sensor.poll() == 1


def test_a_silent_sensor_gives_nothing_and_no_error():
    _, _, sensor = _sensor(fault="silent")
    sensor.set_query_mode()
    sensor.query()
    _settle()
    assert sensor.poll() == 0
    assert sensor.parser.pm25 is None


def test_a_sensor_with_bad_checksums_is_counted_not_believed():
    _, _, sensor = _sensor(fault="bad_checksum")
    for _ in range(3):
        sensor.query()
    _settle()
    assert sensor.poll() == 0
    assert sensor.parser.bad_frames >= 3
    assert sensor.parser.pm25 is None


def test_a_sensor_sending_garbage_does_not_crash_the_driver():
    _, _, sensor = _sensor(fault="garbage")
    for _ in range(20):
        sensor.query()
    _settle()
    sensor.poll()
    p = sensor.parser
    assert p.measurements == 0 or p.pm25 is not None
    assert p.garbage + p.bad_frames > 0


def test_a_bad_command_is_ignored_by_the_sensor():
    _, part, _ = _sensor()
    bad = bytearray(QUERY)
    bad[17] ^= 1
    part.write(bad)
    assert part.bad_commands == 1 and part.commands == 0
