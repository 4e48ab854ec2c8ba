# common-subset
"""protocols.bthome and protocols.ble_adverts on both interpreters: layout, round trips, refusals."""
import binascii

from expect import raises

from protocols import ble_adverts, bthome, bthome_read
from protocols.errors import AuthenticationError, DecodeError
from protocols.roles import env, meter

KEY = bytes(range(16))
ADDRESS = "A4:C1:38:00:11:22"
# temperature 21.50 Cel, humidity 55 %, counter 0x01020304; bthome-ble reads it (test_bthome_cpython.py)
GOLDEN = "413aa3a09367040302015f77ca61"


def test_nonce_layout():
    got = bthome_read.nonce(ADDRESS, 0x41, 0x01020304)
    assert binascii.hexlify(got) == b"a4c138001122d2fc4104030201"


def test_golden_service_data():
    objects = bthome_read.encode_objects([(bthome.TEMPERATURE, 2150), (bthome.HUMIDITY_8, 55)])
    assert objects == b"\x02\x66\x08\x2e\x37"
    sealed = bthome.Sealer(KEY, ADDRESS).seal(objects, 0x01020304)
    assert binascii.hexlify(sealed).decode() == GOLDEN
    info, counter, plain = bthome_read.Opener(KEY, ADDRESS).open(sealed)
    assert (info, counter, plain) == (0x41, 0x01020304, objects)


def test_every_fixed_size_object_round_trips_its_extremes():
    for row in bthome_read.OBJECTS:
        _, name, size, signed, _, _ = bthome_read.spec(row[0])
        object_id = row[0]
        if size < 0:
            pair = [(object_id, b""), (object_id, bytes(range(255)))]
        elif signed:
            pair = [(object_id, -(1 << (8 * size - 1))), (object_id, (1 << (8 * size - 1)) - 1)]
        else:
            pair = [(object_id, 0), (object_id, (1 << (8 * size)) - 1)]
        assert bthome_read.decode_objects(bthome_read.encode_objects(pair)) == pair, name


def test_every_size_has_a_name_and_every_name_a_size():
    ids = [bthome.SIZES[i] for i in range(0, len(bthome.SIZES), 2)]
    assert ids == [row[0] for row in bthome_read.OBJECTS]
    assert ids == sorted(ids)


def test_values_that_do_not_fit_are_refused():
    raises(DecodeError, bthome_read.encode_objects, [(bthome.TEMPERATURE, 32768)])
    raises(DecodeError, bthome_read.encode_objects, [(bthome.WATER, -1)])
    raises(DecodeError, bthome_read.encode_objects, [(bthome.RAW, bytes(256))])
    exc = raises(DecodeError, bthome_read.encode_objects, [(0x7F, 1)])
    assert "0x7f" in str(exc)


def test_truncated_or_unknown_objects_are_refused():
    good = bthome_read.encode_objects([(bthome.VOLTAGE, 3300), (bthome.WATER, 123456), (bthome.TEXT, b"hi")])
    for cut in range(1, len(good)):
        if cut in (3, 8):  # object boundaries: a shorter list of objects, still well-formed
            assert len(bthome_read.decode_objects(good[:cut])) == (1 if cut == 3 else 2)
            continue
        raises(DecodeError, bthome_read.decode_objects, good[:cut])
    exc = raises(DecodeError, bthome_read.decode_objects, b"\x0c\xe4\x0c\xfe\x00")
    assert "unknown BTHome object id 0xfe" in str(exc)


def test_opener_refuses_forgery_another_key_or_address():
    objects = bthome_read.encode_objects([(bthome.VOLTAGE, 3300)])
    sealed = bthome.Sealer(KEY, ADDRESS).seal(objects, 7)
    raises(AuthenticationError, bthome_read.Opener(bytes(16), ADDRESS).open, sealed)
    raises(AuthenticationError, bthome_read.Opener(KEY, "A4:C1:38:00:11:23").open, sealed)
    for i in range(len(sealed)):
        bad = bytearray(sealed)
        bad[i] ^= 0x01
        if i == 0:  # the information byte: no longer encrypted v2, or another nonce
            raises(DecodeError, bthome_read.Opener(KEY, ADDRESS).open, bytes(bad))
        else:
            raises(AuthenticationError, bthome_read.Opener(KEY, ADDRESS).open, bytes(bad))


def test_headers_that_are_not_encrypted_v2_are_refused():
    raises(DecodeError, bthome_read.check_header, b"")
    exc = raises(DecodeError, bthome_read.check_header, b"\x21\x00\x00")
    assert "version 1" in str(exc)
    assert bthome_read.check_header(b"\x40\x01\x64") == (0x40, None)
    raises(DecodeError, bthome_read.Opener(KEY, ADDRESS).open, b"\x40\x01\x64")
    raises(DecodeError, bthome_read.check_header, b"\x41\x01\x02\x03\x04\x05\x06\x07")
    raises(DecodeError, bthome_read.nonce, "A4:C1:38:00:11", 0x41, 0)
    raises(DecodeError, bthome_read.nonce, "A4:C1:38:00:11:ZZ", 0x41, 0)


def test_counter_is_on_the_air_and_in_the_nonce():
    sealer = bthome.Sealer(KEY, ADDRESS)
    first = sealer.seal(b"\x01\x64", 1)
    second = sealer.seal(b"\x01\x64", 2)
    assert first != second
    assert bthome_read.check_header(second) == (0x41, 2)
    raises(DecodeError, sealer.seal, b"\x01\x64", 1 << 32)
    trigger = sealer.seal(b"\x01\x64", 3, True)
    assert bthome_read.Opener(KEY, ADDRESS).open(trigger)[0] == 0x45


def test_advert_structure_round_trip():
    sealed = bthome.Sealer(KEY, ADDRESS).seal(b"\x01\x64", 1)
    adv = bthome.advert(sealed, "m1")
    assert adv[:3] == b"\x02\x01\x06"
    assert bthome_read.service_data_of(adv) == sealed
    assert bthome_read.service_data_of(b"\x02\x01\x06\x03\x03\xaa\xfe") is None
    assert bthome_read.service_data_of(adv + b"\x00\x00") == sealed
    raises(DecodeError, bthome_read.service_data_of, adv + b"\x05\x09ab")
    raises(DecodeError, bthome_read.service_data_of, b"\x05\x16\xd2")
    raises(DecodeError, bthome.advert, bytes(25))


def test_role_tables_name_their_registers_and_bthome_objects():
    """The tables (text in the module) give these rows, alarms and roles, with BTHome's named object ids."""
    assert ble_adverts.role("meter")[0] == (("battery", bthome.VOLTAGE, 1, 1), ("volume", bthome.WATER, 1000, 1))
    problem = meter.STATUS_BURST | meter.STATUS_BACKFLOW
    assert ble_adverts.role("meter")[2] == ((meter.STATUS_LEAK, bthome.MOISTURE), (problem, bthome.PROBLEM),
                                            (meter.STATUS_TAMPER, bthome.TAMPER))
    env_rows = (("temperature", bthome.TEMPERATURE, 1, 1), ("humidity", bthome.HUMIDITY_8, 1, 100),
                ("pressure", bthome.PRESSURE, 1, 10), ("pm25", bthome.PM25, 1, 10), ("pm10", bthome.PM10, 1, 10))
    assert ble_adverts.role("env") == (env_rows, (), ((env.FAULTS, bthome.PROBLEM),))
    assert [(r[0], r[1]) for r in ble_adverts.ROLES] == [("meter", meter.ROLE_ID), ("env", env.ROLE_ID)]
    assert ble_adverts.ROLES[0][2:] == ble_adverts.role("meter")


def test_role_alarm_bits_match_the_role_maps():
    _rows, in_reading, alarms = ble_adverts.role("meter")
    assert in_reading == alarms
    assert [a[0] for a in alarms] == [meter.STATUS_LEAK, meter.STATUS_BURST | meter.STATUS_BACKFLOW,
                                      meter.STATUS_TAMPER]
    assert ble_adverts.role("env")[2][0][0] == env.FAULTS
    raises(KeyError, ble_adverts.role, "lamp")


def _check_role(name, values, status):
    rows, in_reading, alarms = ble_adverts.role(name)
    buf = bytearray(ble_adverts.MAX_OBJECTS)
    n = ble_adverts.pack_reading(buf, rows, in_reading, values, status)
    objects = bthome_read.decode_objects(buf[:n])
    got, got_status = ble_adverts.unpack(rows, alarms, objects)
    # the largest readings still make a legacy advert
    sealed = bthome.Sealer(KEY, ADDRESS).seal(bytes(buf[:n]), 0xFFFFFFFF)
    bthome.advert(sealed)
    n = ble_adverts.pack_alarms(buf, 0, alarms, status)
    _, alarm_status = ble_adverts.unpack(rows, alarms, bthome_read.decode_objects(buf[:n]))
    return got, got_status, alarm_status


def test_meter_reading_and_alarm_adverts_round_trip():
    got, status, alarm_status = _check_role("meter", [3312, 4294967], meter.STATUS_LEAK | meter.STATUS_FLOWING)
    assert got == {"battery": 3312, "volume": 4294967}
    assert status == alarm_status == meter.STATUS_LEAK
    got, status, _ = _check_role("meter", [2999, 12], meter.STATUS_BURST | meter.STATUS_TAMPER)
    assert got == {"battery": 2999, "volume": 12}
    assert status == meter.STATUS_BURST | meter.STATUS_BACKFLOW | meter.STATUS_TAMPER


def test_env_reading_and_alarm_adverts_round_trip():
    got, status, alarm_status = _check_role("env", [-4000, 10000, 1100000, 9999, 9999], env.STATUS_PM_FAULT)
    assert got == {"temperature": -4000, "humidity": 10000, "pressure": 1100000, "pm25": 9990, "pm10": 9990}
    assert status == 0  # the reading advert has no room for the fault flag ...
    assert alarm_status == env.FAULTS  # ... the alarm advert carries it


def test_objects_sealed_in_place_give_the_same_service_data():
    """A node packs its objects into the service-data buffer itself and seals them there (one buffer)."""
    objects = b"\x02\xca\x09\x2e\x37\x0c\xf0\x0c"
    sealer = bthome.Sealer(KEY, ADDRESS)
    apart = sealer.seal(objects, 77, True)
    buf = bytearray(1 + len(objects) + 8)
    buf[1 : 1 + len(objects)] = objects
    n = sealer.seal_into(memoryview(buf)[1 : 1 + len(objects)], 77, buf, True)
    assert bytes(buf[:n]) == apart and n == len(buf)
    assert bthome_read.Opener(KEY, ADDRESS).open(apart)[2] == objects
