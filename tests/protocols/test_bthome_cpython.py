"""The nodes' BTHome adverts read by Home Assistant's own parser (PyPI bthome-ble); CPython only.

Every advert kind a node sends (the reading and alarm adverts of each BLE
role) is sealed by protocols.bthome and decoded by bthome-ble with the
node's key; the values must equal the node's register values in their units.
"""

import random
import subprocess

import pytest
from bleak.backends.device import BLEDevice
from bthome_ble import BTHomeBluetoothDeviceData
from habluetooth import BluetoothServiceInfoBleak
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import ble_adverts, bthome, bthome_read
from protocols.roles import env, meter
from tools.sim.street import micropython_path

ADDRESS = "A4:C1:38:00:11:22"
_UUID = "0000fcd2-0000-1000-8000-00805f9b34fb"


def _home_assistant_reads(key: bytes, service_data: bytes) -> tuple[dict[str, object], dict[str, object], bool]:
    info = BluetoothServiceInfoBleak(
        name="node", address=ADDRESS, rssi=-70, manufacturer_data={}, service_data={_UUID: service_data},
        service_uuids=[_UUID], source="local", device=BLEDevice(ADDRESS, "node", None), advertisement=None,
        connectable=True, time=0.0, tx_power=None,
    )
    parser = BTHomeBluetoothDeviceData(bindkey=key)
    update = parser.update(info)
    sensors = {k.key: v.native_value for k, v in update.entity_values.items() if k.key != "signal_strength"}
    binaries = {k.key: v.native_value for k, v in update.binary_entity_values.items()}
    return sensors, binaries, parser.bindkey_verified


def _seal(role: str, values: list[int], status: int, counter: int, key: bytes, alarm: bool) -> bytes:
    rows, in_reading, alarms = ble_adverts.role(role)
    buf = bytearray(ble_adverts.MAX_OBJECTS)
    if alarm:
        n = ble_adverts.pack_alarms(buf, 0, alarms, status)
    else:
        n = ble_adverts.pack_reading(buf, rows, in_reading, values, status)
    return bthome.Sealer(key, ADDRESS).seal(bytes(buf[:n]), counter, trigger=alarm)


def test_golden_vector_is_what_home_assistant_reads() -> None:
    """The golden service data of the common-subset tests: 21.5 Cel and 55 % to bthome-ble."""
    sensors, _, verified = _home_assistant_reads(bytes(range(16)), bytes.fromhex("413aa3a09367040302015f77ca61"))
    assert verified
    assert sensors == {"temperature": 21.5, "humidity": 55}


def test_meter_adverts_decode_in_home_assistant_with_the_node_values() -> None:
    """200 random meter reading and alarm adverts: voltage, water (litres) and the alarm binaries."""
    rnd = random.Random(5)
    for i in range(200):
        key = rnd.randbytes(16)
        battery, volume = rnd.randrange(2000, 4200), rnd.randrange(0, 4_294_967)
        status = rnd.randrange(0x100)
        sealed = _seal("meter", [battery, volume], status, rnd.randrange(1 << 32), key, alarm=bool(i % 2))
        sensors, binaries, verified = _home_assistant_reads(key, sealed)
        assert verified
        assert binaries == {
            "moisture": bool(status & meter.STATUS_LEAK),
            "problem": bool(status & (meter.STATUS_BURST | meter.STATUS_BACKFLOW)),
            "tamper": bool(status & meter.STATUS_TAMPER),
        }
        if i % 2:
            assert sensors == {}
        else:
            assert sensors == {"voltage": pytest.approx(battery / 1000), "water": pytest.approx(volume)}


def test_env_adverts_decode_in_home_assistant_with_the_node_values() -> None:
    """200 random environment reading and alarm adverts: climate, particulates, the fault binary."""
    rnd = random.Random(6)
    for i in range(200):
        key = rnd.randbytes(16)
        temperature, humidity = rnd.randrange(-4000, 8501), rnd.randrange(0, 10001)
        pressure, pm25, pm10 = rnd.randrange(300000, 1100001), rnd.randrange(0, 10000), rnd.randrange(0, 10000)
        status = rnd.randrange(0x20)
        alarm = bool(i % 2)
        sealed = _seal("env", [temperature, humidity, pressure, pm25, pm10], status, i, key, alarm)
        sensors, binaries, verified = _home_assistant_reads(key, sealed)
        assert verified
        if alarm:
            assert (sensors, binaries) == ({}, {"problem": bool(status & env.FAULTS)})
            continue
        assert binaries == {}
        assert sensors == {
            "temperature": pytest.approx(temperature / 100),
            "humidity": humidity // 100,
            "pressure": pytest.approx(pressure // 10 / 100),  # hPa from tenths of a pascal
            "pm25": pm25 // 10,
            "pm10": pm10 // 10,
        }


def test_home_assistant_does_not_verify_another_key() -> None:
    """With the wrong bind key bthome-ble decodes nothing and says the key is not verified."""
    sealed = _seal("meter", [3300, 10], 0, 1, bytes(16), alarm=False)
    sensors, binaries, verified = _home_assistant_reads(bytes(range(16)), sealed)
    assert (sensors, binaries, verified) == ({}, {}, False)


_OBJECT = st.sampled_from([bthome_read.spec(row[0]) for row in bthome_read.OBJECTS]).flatmap(
    lambda row: st.tuples(
        st.just(row[0]),
        st.binary(max_size=20) if row[2] < 0
        else st.integers(-(1 << (8 * row[2] - 1)), (1 << (8 * row[2] - 1)) - 1) if row[3]
        else st.integers(0, (1 << (8 * row[2])) - 1),
    )
)


@settings(max_examples=100, deadline=None, database=None)
@given(objects=st.lists(_OBJECT, max_size=8), counter=st.integers(0, 0xFFFFFFFF), key=st.binary(min_size=16,
                                                                                                  max_size=16))
def test_objects_round_trip_through_seal_and_open(objects: list[tuple[int, object]], counter: int,
                                                  key: bytes) -> None:
    """Any objects, any counter, any key: open(seal(x)) gives x back."""
    plain = bthome_read.encode_objects(objects)
    info, got_counter, got = bthome_read.Opener(key, ADDRESS).open(bthome.Sealer(key, ADDRESS).seal(plain, counter))
    assert (info, got_counter, bthome_read.decode_objects(got)) == (0x41, counter, objects)


# Seals one meter reading advert 200 times after a warm-up, with the collector off, and prints the
# bytes allocated per advert (the figure in docs/performance.md).
_HEAP_SCRIPT = """
import gc
from protocols import ble_adverts, bthome
rows, in_reading, alarms = ble_adverts.role("meter")
sealer = bthome.Sealer(bytes(range(16)), "A4:C1:38:00:11:22")
objects = bytearray(ble_adverts.MAX_OBJECTS)
out = bytearray(31)
values = [3300, 0]
def one(counter):
    values[1] = counter
    n = ble_adverts.pack_reading(objects, rows, in_reading, values, 2)
    return sealer.seal_into(memoryview(objects)[:n], counter, out)
one(0)
gc.collect()
gc.disable()
before = gc.mem_alloc()
for counter in range(1, 201):
    one(counter)
after = gc.mem_alloc()
print("bytes per advert", (after - before) // 200)
"""


def test_allocation_per_advert_on_micropython() -> None:
    """Sealing a meter advert into preallocated buffers allocates at most 256 bytes on the unix port."""
    proc = subprocess.run([micropython_path(), "-X", "heapsize=128K", "-c", _HEAP_SCRIPT], capture_output=True,
                          text=True, timeout=120, env={"MICROPYPATH": "."}, check=False)
    assert proc.returncode == 0, proc.stderr
    per_advert = int(proc.stdout.split("bytes per advert")[1])
    print(f"MicroPython heap allocated per sealed meter advert: {per_advert} bytes")
    assert per_advert <= 256


def test_fuzz_small_run_only_accepts_or_refuses() -> None:
    """3,000 mutated adverts, object payloads and GATT commands (python -m tools.fuzz.ble runs 100,000): no crash."""
    from tools.fuzz import ble as fuzz

    parts = fuzz.run(3000, seed=3)
    for summary in parts.values():
        assert summary.crashes == [] and summary.hangs == [], summary.crashes[:1]
        assert summary.accepted > 0 and summary.refused > 0
    assert parts["BLE adverts"].reasons["forged"] > 0 and parts["GATT commands"].reasons["forged"] > 0
