"""BLE adverts to readings: decryption, replay windows on disk, de-duplication, refusals, node death and return.

Adverts are sealed by protocols.bthome as the nodes seal them; the replay windows are a real SQLite file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.contracts import Number, Register
from gateway.service.config import NodeConfig, parse_config
from gateway.service.stats import NodeStats
from gateway.transport.ble_receiver import AdvertReceiver
from gateway.transport.ble_window import WINDOW, ReplayWindows
from protocols import ble_adverts, bthome
from protocols.roles import env, meter

METER_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
ENV_KEY = bytes.fromhex("ffeeddccbbaa99887766554433221100")
METER_ADDRESS = "A4:C1:38:00:00:07"
ENV_ADDRESS = "A4:C1:38:00:00:08"


def config_text(counters: Path) -> str:
    return f"""
site = "s"
gateway = "g"
[ble]
counters = "{counters}"
silent_intervals = 3
[[ble.node]]
id = "pit-7"
address = "{METER_ADDRESS.lower()}"
key = "{METER_KEY.hex()}"
role = "meter"
interval = 10
[[ble.node]]
id = "pole-8"
address = "{ENV_ADDRESS}"
key = "{ENV_KEY.hex()}"
role = "env"
interval = 60
"""


def meter_advert(counter: int, volume: int, battery: int = 3300, status: int = 0, key: bytes = METER_KEY) -> bytes:
    rows, in_reading, _ = ble_adverts.role("meter")
    buf = bytearray(ble_adverts.MAX_OBJECTS)
    n = ble_adverts.pack_reading(buf, rows, in_reading, [battery, volume], status)
    return bthome.Sealer(key, METER_ADDRESS).seal(bytes(buf[:n]), counter)


def env_advert(counter: int, values: list[int] | None = None, status: int | None = None) -> bytes:
    rows, in_reading, alarms = ble_adverts.role("env")
    buf = bytearray(ble_adverts.MAX_OBJECTS)
    if status is not None:  # an alarm advert
        n = ble_adverts.pack_alarms(buf, 0, alarms, status)
        return bthome.Sealer(ENV_KEY, ENV_ADDRESS).seal(bytes(buf[:n]), counter, trigger=True)
    assert values is not None
    n = ble_adverts.pack_reading(buf, rows, in_reading, values, 0)
    return bthome.Sealer(ENV_KEY, ENV_ADDRESS).seal(bytes(buf[:n]), counter)


class Rig:
    """A receiver on a real windows file, a settable monotonic clock, and what it reported."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "ble-counters.sqlite"
        self.config = parse_config(config_text(self.path))
        self.now = 1000.0
        self.stats: dict[str, NodeStats] = {}
        self.readings: list[tuple[str, str, dict[str, Any]]] = []
        self.states: list[tuple[str, bool | None]] = []
        self.open()

    def open(self) -> None:
        self.windows = ReplayWindows(self.path)
        self.receiver = AdvertReceiver(self.config.ble, self.windows, self.stats, self.on_readings,
                                       on_state=self.on_state, clock=lambda: 1.7e9, monotonic=lambda: self.now)

    def on_readings(self, node: NodeConfig, when: float, readings: list[tuple[Register, Number]]) -> None:
        self.readings.append((node.id, node.role, {reg.name: reg.value(raw) for reg, raw in readings}))

    def on_state(self, node: NodeConfig, state: NodeStats) -> None:
        self.states.append((node.id, state.online))


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


def test_a_meter_advert_becomes_a_reading_in_litres_with_the_counter_as_seq(rig: Rig) -> None:
    """Volume in litres, battery in volts, the alarm bits, seq = the advert counter; the node comes online."""
    assert rig.receiver.receive(METER_ADDRESS, meter_advert(41, 12345, 3312, meter.STATUS_LEAK)) == "accepted"
    assert rig.readings == [("pit-7", "meter-ble", {"seq": 41, "volume": 12345, "status": meter.STATUS_LEAK,
                                                    "battery": pytest.approx(3.312)})]
    assert rig.states == [("pit-7", True)]
    assert rig.stats["pit-7"].values["volume"] == 12345


def test_the_same_advert_heard_again_is_a_duplicate_not_a_reading(rig: Rig) -> None:
    advert = meter_advert(5, 100)
    assert [rig.receiver.receive(METER_ADDRESS, advert) for _ in range(3)] == ["accepted", "duplicate", "duplicate"]
    assert len(rig.readings) == 1
    assert rig.receiver.counts["duplicate"] == 2


def test_replayed_forged_and_malformed_adverts_are_refused_and_counted(rig: Rig) -> None:
    """An older advert replayed, a forged one, a truncated one: refused, counted per node, no reading."""
    first, second = meter_advert(5, 100), meter_advert(6, 101)
    assert rig.receiver.receive(METER_ADDRESS, first) == "accepted"
    assert rig.receiver.receive(METER_ADDRESS, second) == "accepted"
    assert rig.receiver.receive(METER_ADDRESS, first) == "replayed"
    assert rig.receiver.receive(METER_ADDRESS, meter_advert(7, 999_999, key=bytes(16))) == "forged"
    assert rig.receiver.receive(METER_ADDRESS, second[:6]) == "malformed"
    forged_counter = bytearray(meter_advert(8, 102))
    forged_counter[-8] ^= 1  # a counter changed on the air: the nonce differs, the tag fails
    assert rig.receiver.receive(METER_ADDRESS, bytes(forged_counter)) == "forged"
    assert rig.receiver.receive("A4:C1:38:00:00:99", meter_advert(9, 1)) == "unknown_node"
    assert [r[2]["seq"] for r in rig.readings] == [5, 6]
    assert dict(rig.receiver.refused) == {("pit-7", "replayed"): 1, ("pit-7", "forged"): 2,
                                          ("pit-7", "malformed"): 1}
    assert rig.stats["pit-7"].failures == 4


def test_reordered_adverts_inside_the_window_are_taken_once_and_older_ones_refused(rig: Rig) -> None:
    """10 then 8 (late: recorded, the node's values not rolled back), 10 again (replay), then too old."""
    assert rig.receiver.receive(METER_ADDRESS, meter_advert(10, 110)) == "accepted"
    assert rig.receiver.receive(METER_ADDRESS, meter_advert(8, 108)) == "accepted"
    assert rig.stats["pit-7"].values["volume"] == 110
    assert rig.receiver.receive(METER_ADDRESS, meter_advert(10, 110)) == "replayed"
    assert rig.receiver.receive(METER_ADDRESS, meter_advert(10 + WINDOW, 200)) == "accepted"
    assert rig.receiver.receive(METER_ADDRESS, meter_advert(9, 109)) == "too_old"
    assert [(r[2]["seq"], r[2]["volume"]) for r in rig.readings] == [(10, 110), (8, 108), (10 + WINDOW, 200)]


def test_windows_survive_a_restart(rig: Rig) -> None:
    """A new receiver on the same file refuses every counter the previous run took."""
    for counter in (1, 2, 3):
        assert rig.receiver.receive(METER_ADDRESS, meter_advert(counter, counter)) == "accepted"
    rig.windows.close()
    rig.open()
    assert rig.receiver.receive(METER_ADDRESS, meter_advert(3, 3)) == "replayed"
    assert rig.receiver.receive(METER_ADDRESS, meter_advert(2, 2)) == "replayed"
    assert rig.receiver.receive(METER_ADDRESS, meter_advert(4, 4)) == "accepted"


def test_the_window_itself() -> None:
    """new, late, seen, too old, and a jump wider than the window."""
    windows = ReplayWindows(":memory:")
    assert [windows.admit("n", c) for c in (100, 100, 99, 99, 100 - WINDOW, 100 - WINDOW + 1)] == [
        "new", "seen", "late", "seen", "too_old", "late"]
    assert windows.admit("n", 100 + 5 * WINDOW) == "new"
    assert windows.admit("n", 100) == "too_old"
    assert windows.admit("other", 0) == "new"
    assert windows.highest("n") == 100 + 5 * WINDOW


def test_env_alarm_before_any_reading_waits_then_rides_on_the_readings(rig: Rig) -> None:
    """An env node's fault advert first: kept (incomplete), then every reading carries the fault until cleared."""
    assert rig.receiver.receive(ENV_ADDRESS, env_advert(1, status=env.STATUS_PM_FAULT)) == "incomplete"
    assert rig.readings == []
    assert rig.receiver.receive(ENV_ADDRESS, env_advert(2, [2150, 5500, 1013250, 120, 300])) == "accepted"
    assert rig.readings[-1] == ("pole-8", "env-ble", {
        "seq": 2, "temperature": 21.5, "humidity": 55, "pressure": 101325, "pm25": 12, "pm10": 30,
        "status": env.FAULTS})
    assert rig.receiver.receive(ENV_ADDRESS, env_advert(3, status=0)) == "accepted"
    assert rig.readings[-1][2]["status"] == 0


def test_silence_of_n_intervals_takes_a_node_offline_and_an_advert_brings_it_back(rig: Rig) -> None:
    """3 intervals of 10 s without a good advert: offline; a forged advert does not revive it; a good one does."""
    rig.receiver.receive(METER_ADDRESS, meter_advert(1, 1))
    rig.now += 29.0
    rig.receiver.check_silence()
    assert rig.states == [("pit-7", True)]
    rig.now += 1.0
    rig.receiver.check_silence()
    assert ("pit-7", False) in rig.states
    assert "no advert for 30 s" in (rig.stats["pit-7"].last_error or "")
    rig.receiver.receive(METER_ADDRESS, meter_advert(2, 2, key=bytes(16)))
    assert rig.stats["pit-7"].online is False
    rig.receiver.receive(METER_ADDRESS, meter_advert(3, 3))
    assert rig.states[-1] == ("pit-7", True)
    assert rig.receiver.check_silence() == pytest.approx(30.0)  # the next deadline: pit-7's


def test_the_signal_strength_of_a_good_advert_is_kept_and_a_forgers_is_not(rig: Rig) -> None:
    """The dashboard shows a BLE node's RSSI: that of its last good advert, never that of a refused one."""
    assert rig.receiver.receive(METER_ADDRESS, meter_advert(1, 100)) == "accepted"
    assert rig.stats["pit-7"].rssi is None  # a scanner that reports none
    assert rig.receiver.receive(METER_ADDRESS, meter_advert(2, 101), rssi=-67) == "accepted"
    assert rig.stats["pit-7"].rssi == -67
    assert rig.receiver.receive(METER_ADDRESS, meter_advert(3, 102, key=bytes(16)), rssi=-30) == "forged"
    assert rig.receiver.receive(METER_ADDRESS, meter_advert(2, 101), rssi=-31) == "duplicate"
    assert rig.stats["pit-7"].rssi == -67
    assert rig.receiver.receive(METER_ADDRESS, meter_advert(4, 103), rssi=-72) == "accepted"
    assert rig.stats["pit-7"].rssi == -72


def test_the_water_count_keeps_counting_across_its_32_bit_wrap_and_a_restart(rig: Rig) -> None:
    """BTHome's water object wraps after 4,294,967.296 l: upstream litres go on past it, a late advert from
    before the wrap keeps its own value, and a restarted gateway (same file) still adds the wrap."""
    wrap_l = 4_294_967.296
    before, after = 4_294_960, 4_294_970  # the second is 2,704 mL on the air
    assert after * 1000 % (1 << 32) == 2_704
    assert rig.receiver.receive(METER_ADDRESS, meter_advert(10, before)) == "accepted"
    assert rig.receiver.receive(METER_ADDRESS, meter_advert(12, after)) == "accepted"
    assert rig.receiver.receive(METER_ADDRESS, meter_advert(11, 4_294_965)) == "accepted"  # late, pre-wrap
    assert rig.stats["pit-7"].values["volume"] == after
    rig.windows.close()
    rig.open()
    assert rig.receiver.receive(METER_ADDRESS, meter_advert(13, 4_294_990)) == "accepted"
    assert rig.receiver.receive(METER_ADDRESS, meter_advert(14, 4_295_100)) == "accepted"
    assert [r[2]["volume"] for r in rig.readings] == [before, after, 4_294_965, 4_294_990, 4_295_100]
    assert all(r[2]["volume"] > wrap_l for r in rig.readings[3:])
    assert rig.windows.unwrap_water("pit-7", 0, keep=False) == 1 << 32  # where the count stands: one wrap in


def test_a_restart_far_past_the_first_count_still_unwraps(rig: Rig) -> None:
    """Six million litres in steps of a million (one wrap on the air), then a restart: the file kept the count
    close enough (per quarter wrap) that the next advert is not mistaken for 1.7 million litres."""
    for counter, litres in enumerate(range(100, 6_000_101, 1_000_000), start=1):
        assert rig.receiver.receive(METER_ADDRESS, meter_advert(counter, litres)) == "accepted"
    assert rig.readings[-1][2]["volume"] == 6_000_100
    rig.windows.close()
    rig.open()
    assert rig.receiver.receive(METER_ADDRESS, meter_advert(10, 6_000_110)) == "accepted"
    assert rig.readings[-1][2]["volume"] == 6_000_110


def test_the_first_water_count_heard_is_taken_as_it_is(rig: Rig) -> None:
    """A node first heard after its count wrapped on the air reads low: nothing tells the gateway otherwise."""
    assert rig.receiver.receive(METER_ADDRESS, meter_advert(3, 7)) == "accepted"
    assert rig.readings[-1][2]["volume"] == 7
