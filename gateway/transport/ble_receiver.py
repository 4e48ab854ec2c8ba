"""BLE adverts in, readings out: decryption, replay protection, de-duplication, node life and death.

:class:`AdvertReceiver` is the gateway's BLE side without a radio: the
scanner (:mod:`gateway.transport.ble_scan`) hands it each BTHome service
data it hears, with the sender's address; it answers with what became of
it (one of :data:`OUTCOMES`) and, for a good advert, calls ``on_readings``
exactly as a Modbus poll does, so BLE readings take the same outbox,
profiles and births (the node's role is ``<role>-ble``: the registers its
adverts carry, with the advert counter as ``seq``). Node death and return
are reported to ``on_state``, as for polled nodes: a node is offline after
``silent_intervals`` advert intervals without a good advert, online again
with its next one.

An advert counts as a duplicate (dropped quietly) when it repeats the last
accepted, or the last refused, one byte for byte: a scanner hears every
advertising event, and a node repeats an advert until it has a new one. Any other counter the node
has used is a replay, and a counter older than the replay window is too
old: both are refused and counted, as are forged adverts (the tag does not
match the node's key) and malformed ones.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence

from gateway.contracts import (
    AuthenticationError,
    BthomeOpener,
    DecodeError,
    Number,
    RegisterMap,
    ble_adverts,
    ble_role,
    bthome,
    bthome_opener,
    load_role,
)
from gateway.polling.read_plan import Readings
from gateway.service.config import NodeConfig
from gateway.service.config_ble import BleConfig, BleNodeConfig
from gateway.service.stats import NodeStats
from gateway.transport.ble_window import LATE, NEW, SEEN, ReplayWindows

log = logging.getLogger(__name__)

_INFO_TRIGGER = 0x04  # a trigger-based (alarm) advert: BTHome's information byte, bit 2

__all__ = ["ACCEPTED", "OUTCOMES", "AdvertReceiver"]

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
REPLAYED = "replayed"
TOO_OLD = "too_old"
FORGED = "forged"
MALFORMED = "malformed"
UNKNOWN_NODE = "unknown_node"
INCOMPLETE = "incomplete"
OUTCOMES = (ACCEPTED, DUPLICATE, REPLAYED, TOO_OLD, FORGED, MALFORMED, UNKNOWN_NODE, INCOMPLETE)
"""What can become of an advert; ``incomplete``: accepted, but the node has not yet sent every reading
(an alarm advert before its first reading advert), so nothing is recorded yet; its alarm bits are kept."""
BLE_BUS = "ble"
"""The bus name BLE nodes report in their state (they hang on the radio, not on a line)."""

OnReadings = Callable[[NodeConfig, float, Readings], None]
OnState = Callable[[NodeConfig, NodeStats], None]


class _Node:
    """One configured node: its decrypter, the map of its readings, what it last said."""

    def __init__(self, config: BleNodeConfig) -> None:
        self.config = config
        self.opener: BthomeOpener = bthome_opener(config.key_bytes, config.normal_address)
        role = ble_role(config.role)
        self.regmap: RegisterMap = load_role(role)
        self.as_node = NodeConfig(id=config.id, bus=BLE_BUS, unit=1, role=role, interval=config.interval)
        rows, _, alarms = ble_adverts.role(config.role)
        self.rows: Sequence[tuple[str, int, int, int]] = rows
        self.alarms: Sequence[tuple[int, int]] = alarms
        self.alarm_ids = {object_id for _, object_id in alarms}
        self.alarm_bits = 0
        for bits, _ in alarms:
            self.alarm_bits |= bits
        self.raws: dict[str, Number] = {"status": 0}
        self.last: bytes = b""
        self.last_refused: bytes = b""
        self.heard: float | None = None
        """Monotonic time of the last good advert."""


def receiver_for(config: BleConfig, stats: dict[str, NodeStats], on_readings: OnReadings, *,
                 on_state: OnState | None = None, clock: Callable[[], float] = time.time) -> AdvertReceiver | None:
    """The receiver of a gateway's BLE nodes, its replay windows opened; None when it has no BLE nodes."""
    if not config.node:
        return None
    return AdvertReceiver(config, ReplayWindows(config.counters), stats, on_readings, on_state=on_state, clock=clock)


class AdvertReceiver:
    """Turns the BTHome adverts of the configured nodes into readings and node states.

    Args:
        config: the ``[ble]`` section.
        windows: the replay windows (on disk).
        stats: live state per node id; entries are created for the BLE nodes.
        on_readings: receives each good advert's readings, like a good poll.
        on_state: receives online/offline changes.
        clock: wall clock for reading times (epoch seconds).
        monotonic: the clock of silences.
    """

    def __init__(
        self,
        config: BleConfig,
        windows: ReplayWindows,
        stats: dict[str, NodeStats],
        on_readings: OnReadings,
        *,
        on_state: OnState | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.windows = windows
        self.stats = stats
        self.on_readings = on_readings
        self.on_state = on_state
        self.clock = clock
        self.monotonic = monotonic
        self.counts: Counter[str] = Counter()
        """Adverts by outcome, all nodes together."""
        self.refused: Counter[tuple[str, str]] = Counter()
        """Refused adverts by (node id, outcome): replayed, too old, forged, malformed."""
        self.on_alarm: Callable[[BleNodeConfig], None] | None = None
        """Called with the node for each new alarm advert that raises a bit (the gateway acknowledges it)."""
        self._by_address = {n.normal_address: _Node(n) for n in config.node}
        self._started = monotonic()
        for node in self._by_address.values():
            stats.setdefault(node.config.id, NodeStats(node.config.id, BLE_BUS, 0, node.as_node.role))

    def nodes(self) -> list[NodeConfig]:
        """The BLE nodes as the data path sees them (role ``<role>-ble``, bus ``ble``)."""
        return [n.as_node for n in self._by_address.values()]

    def knows(self, address: str) -> bool:
        """Whether ``address`` is a configured node."""
        return address.upper() in self._by_address

    def receive(self, address: str, service_data: bytes, rssi: int | None = None) -> str:
        """One BTHome service data (the bytes after the UUID) heard from ``address`` (with signal strength
        ``rssi`` in dBm, when the scanner gives it): what became of it."""
        outcome = self._receive(address.upper(), bytes(service_data))
        self.counts[outcome] += 1
        if rssi is not None and outcome in (ACCEPTED, INCOMPLETE):  # a forger's signal is not the node's
            self.stats[self._by_address[address.upper()].config.id].rssi = rssi
        return outcome

    def _receive(self, address: str, service_data: bytes) -> str:
        node = self._by_address.get(address)
        if node is None:
            return UNKNOWN_NODE
        node_id = node.config.id
        if service_data in (node.last, node.last_refused):
            return DUPLICATE  # the radio repeats an advert at every advertising event: judged once
        try:
            info, counter, plain = node.opener.open(service_data)
            objects = bthome.decode_objects(plain)
        except AuthenticationError:
            return self._refuse(node, FORGED, "advert tag does not match the node's key", service_data)
        except DecodeError as exc:
            return self._refuse(node, MALFORMED, str(exc), service_data)
        verdict = self.windows.admit(node_id, counter)
        if verdict not in (NEW, LATE):
            outcome = REPLAYED if verdict == SEEN else TOO_OLD
            return self._refuse(node, outcome, f"advert counter {counter} {verdict.replace('_', ' ')}", service_data)
        node.last = service_data
        objects = [(object_id, self.windows.unwrap_water(node_id, raw, keep=verdict == NEW)
                    if object_id == bthome.WATER and isinstance(raw, int) else raw) for object_id, raw in objects]
        values, status = ble_adverts.unpack(node.rows, node.alarms, objects)
        # A late advert is older than what the memory holds: it is recorded, but it does not overwrite.
        raws = node.raws if verdict == NEW else dict(node.raws)
        raws.update(values)
        if any(object_id in node.alarm_ids for object_id, _ in objects):
            # Without alarm objects (the env reading advert) the bits stay as the last alarm advert set them.
            raws["status"] = (int(raws["status"]) & ~node.alarm_bits) | status
        raws["seq"] = counter
        self._heard(node)
        if len(raws) < len(node.regmap.registers):
            return INCOMPLETE
        readings = [(reg, raws[reg.name]) for reg in node.regmap.registers]
        state = self.stats[node_id]
        if verdict == NEW:
            state.values.update({reg.name: reg.value(raw) for reg, raw in readings})
        state.readings += len(values) + 1
        now = self.clock()
        state.last_poll = now
        self.on_readings(node.as_node, now, readings)
        if verdict == NEW and status and info & _INFO_TRIGGER and self.on_alarm is not None:
            self.on_alarm(node.config)
        return ACCEPTED

    def _refuse(self, node: _Node, outcome: str, why: str, service_data: bytes) -> str:
        node.last_refused = service_data
        self.refused[(node.config.id, outcome)] += 1
        state = self.stats[node.config.id]
        state.failures += 1
        state.last_error = why
        log.debug("node %s: advert refused (%s): %s", node.config.id, outcome, why)
        return outcome

    def _heard(self, node: _Node) -> None:
        node.heard = self.monotonic()
        state = self.stats[node.config.id]
        state.polls += 1
        state.consecutive_failures = 0
        if state.online is not True:
            log.info("node %s %s (BLE %s)", node.config.id, "back online" if state.online is False else "online",
                     node.config.normal_address, extra={"node": node.config.id, "online": True})
            state.online = True
            state.last_error = None
            if self.on_state is not None:
                self.on_state(node.as_node, state)

    def check_silence(self) -> float:
        """Mark the nodes silent for ``silent_intervals`` advert intervals offline; seconds until the next check."""
        now = self.monotonic()
        limit = self.config.silent_intervals
        wait = float(limit * max((n.config.interval for n in self._by_address.values()), default=60.0))
        for node in self._by_address.values():
            since = node.heard if node.heard is not None else self._started
            allowed = limit * node.config.interval
            silent = now - since
            state = self.stats[node.config.id]
            if silent >= allowed:
                if state.online is not False:
                    state.online = False
                    state.last_error = f"no advert for {silent:.0f} s ({limit} advert intervals)"
                    log.warning("node %s offline: %s", node.config.id, state.last_error,
                                extra={"node": node.config.id, "online": False})
                    if self.on_state is not None:
                        self.on_state(node.as_node, state)
            else:
                wait = min(wait, allowed - silent)
        return max(wait, 0.01)
