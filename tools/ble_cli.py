"""``streetedge ble scan`` and ``streetedge bench ble``: the field engineer's view of nearby BLE nodes, the bench.

Registered by :func:`tools.cli.build_parser` with one call, as :mod:`tools.field_cli` is.

``ble scan`` lists every BTHome node heard for ``--seconds``: address, RSSI,
role (from the configuration, or guessed from the objects it sends when the
key decrypts), the last counter, and whether the configured key decrypts its
adverts (``yes``, ``NO``: the key is wrong or the advert forged, ``no key``:
not in the configuration). It scans with the configuration's ``[ble] adapter``
(BlueZ's default adapter without one; a Bumble HCI transport such as the
virtual street's: stop the daemon first, that port takes one host);
``--virtual N`` scans a virtual radio with N simulated nodes instead (keys
from the configuration when it names them), for the demo and tests.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner

from gateway.service.config import load_config
from gateway.service.config_ble import BleNodeConfig
from gateway.transport.ble_adapter import BleRadio
from gateway.transport.ble_scan import BTHOME_UUID
from protocols import bthome_read
from protocols.errors import AuthenticationError, DecodeError


@dataclass
class Heard:
    """What a scan learnt about one address."""

    address: str
    rssi: int
    counter: int | None
    decrypts: str
    role: str
    node: str
    adverts: int = 1


def _role_of(objects: list[tuple[int, Any]]) -> str:
    ids = {object_id for object_id, _ in objects}
    if 0x4F in ids:
        return "meter"
    if ids & {0x02, 0x2E, 0x04, 0x0D}:
        return "env"
    return "?"


def judge(data: bytes, address: str, rssi: int, nodes: dict[str, BleNodeConfig]) -> Heard:
    """One advert's row: counter, whether the configured key decrypts it, role, node id."""
    node = nodes.get(address.upper())
    try:
        _, counter = bthome_read.check_header(data)
    except DecodeError:
        return Heard(address, rssi, None, "malformed", "?", node.id if node else "")
    if node is None:
        return Heard(address, rssi, counter, "no key", "?", "")
    try:
        _, counter, plain = bthome_read.Opener(node.key_bytes, node.normal_address).open(data)
        role = _role_of(bthome_read.decode_objects(plain))
    except AuthenticationError:
        return Heard(address, rssi, counter, "NO", node.role, node.id)
    except DecodeError:
        return Heard(address, rssi, counter, "malformed", node.role, node.id)
    return Heard(address, rssi, counter, "yes", node.role if role in ("?", node.role) else role, node.id)


async def scan(nodes: list[BleNodeConfig], seconds: float, backend: type[BaseBleakScanner] | None = None,
               adapter: str = "") -> dict[str, Heard]:
    """Listen for ``seconds`` (on the configuration's ``[ble] adapter`` unless a ``backend`` is given); the last
    row per address of the BTHome adverts heard."""
    by_address = {n.normal_address: n for n in nodes}
    heard: dict[str, Heard] = {}

    def on_advert(device: BLEDevice, advertisement: AdvertisementData) -> None:
        data = advertisement.service_data.get(BTHOME_UUID)
        if data is None:
            return
        row = judge(data, device.address, advertisement.rssi, by_address)
        before = heard.get(device.address)
        row.adverts = before.adverts + 1 if before else 1
        heard[device.address] = row

    radio = BleRadio("" if backend else adapter)
    try:
        async with BleakScanner(on_advert, backend=backend or radio.scanner, **radio.args):
            await asyncio.sleep(seconds)
    finally:
        await radio.close()
    return heard


def table(heard: dict[str, Heard]) -> str:
    """The scan as a text table, strongest signal first."""
    lines = [f"{'address':<17}  {'rssi':>4}  {'role':<5}  {'counter':>10}  {'decrypts':<9}  {'adverts':>7}  node"]
    for row in sorted(heard.values(), key=lambda r: -r.rssi):
        counter = "" if row.counter is None else str(row.counter)
        lines.append(f"{row.address:<17}  {row.rssi:>4}  {row.role:<5}  {counter:>10}  {row.decrypts:<9}  "
                     f"{row.adverts:>7}  {row.node}")
    return "\n".join(lines)


async def _virtual_scan(nodes: list[BleNodeConfig], count: int, seconds: float) -> dict[str, Heard]:
    from tools.sim.ble_beacons import Beacon
    from tools.sim.bleak_bumble import scanner_backend
    from tools.sim.radio import VirtualRadio

    radio = VirtualRadio()
    for i in range(count):
        if i < len(nodes):
            address, key, role = nodes[i].normal_address, nodes[i].key_bytes, nodes[i].role
        else:
            address, key, role = f"D0:5E:00:00:FF:{i:02X}", bytes(16), "meter"
        beacon = Beacon(radio, address, key, role, interval_ms=100)
        await beacon.start()
        await beacon.reading([3300, 1000 + i] if role == "meter" else [2150, 5500, 1013250, 120, 300])
    return await scan(nodes, seconds, scanner_backend(radio))


def _cmd_ble_scan(args: argparse.Namespace) -> int:
    ble = load_config(Path(args.config)).ble if args.config else None
    nodes = list(ble.node) if ble is not None else []
    if args.virtual:
        heard = asyncio.run(_virtual_scan(nodes, args.virtual, args.seconds))
    else:
        heard = asyncio.run(scan(nodes, args.seconds, adapter=ble.adapter if ble is not None else ""))
    print(table(heard))
    return 0


def _cmd_bench_ble(args: argparse.Namespace) -> int:
    from tools.bench.ble import run_ble_bench

    return run_ble_bench(nodes=args.nodes, adverts=args.adverts, radio_nodes=args.radio_nodes,
                         interval=args.interval, loss=args.loss, seconds=args.seconds, write_docs=args.write_docs)


def _cmd_ble_radio(args: argparse.Namespace) -> int:
    from gateway.transport.ble_bus import GattRefusedError
    from gateway.transport.ble_client import GattError, GattSender
    from gateway.transport.ble_radio import RadioSettings, radio_settings
    from gateway.transport.ble_window import ReplayWindows
    from tools.exit_codes import CliError, Exit

    ble = load_config(Path(args.config)).ble
    node = next((n for n in ble.node if n.id == args.node), None)
    if node is None:
        known = ", ".join(n.id for n in ble.node) or "none"
        raise CliError(f"--node {args.node}: not a [[ble.node]] of {args.config} (those: {known})", Exit.USAGE)

    async def run() -> RadioSettings:
        radio = BleRadio(ble.adapter)  # the daemon's radio: stop the daemon first on a one-host HCI port
        windows = ReplayWindows(ble.counters)  # the command counters the daemon uses, never reused
        sender = GattSender(windows, backend=radio.client, client_args=radio.args)
        try:
            now = await radio_settings(sender, node)
            if (args.interval_ms, args.tx_power, args.sleep) == (None, None, None):
                return now
            new = RadioSettings(now.interval_ms if args.interval_ms is None else args.interval_ms,
                                now.tx_power_dbm if args.tx_power is None else args.tx_power,
                                now.sleep if args.sleep is None else int(args.sleep == "on"))
            return await radio_settings(sender, node, new)
        finally:
            windows.close()
            await radio.close()

    try:
        got = asyncio.run(run())
    except ValueError as exc:
        raise CliError(str(exc), Exit.USAGE) from None
    except (GattError, GattRefusedError) as exc:  # unreachable, or the node refused
        raise CliError(str(exc), Exit.FAILED) from None
    print(f"{node.id}: interval {got.interval_ms} ms, TX power {got.tx_power_dbm:+d} dBm, "
          f"sleep {'on' if got.sleep else 'off'}")
    return 0


DOC_CONFIGURATIONS = [(1000, 0, False), (10000, 0, False), (1000, 0, True), (10000, 0, True), (10000, 9, True),
                      (10000, -12, True), (60000, 0, True), (60000, -12, True)]
"""The settings docs/hardware.md tabulates (``streetedge ble budget`` without options)."""


def _cmd_ble_budget(args: argparse.Namespace) -> int:
    from gateway.contracts import DecodeError, ble_gatt_radio_body
    from tools.ble_battery import table
    from tools.exit_codes import CliError, Exit

    if not args.interval_ms:
        print(table(DOC_CONFIGURATIONS))
        return 0
    rows = [(ms, args.tx_power, args.sleep) for ms in args.interval_ms]
    for row in rows:
        try:
            ble_gatt_radio_body(*row)  # the node's own limits
        except DecodeError as exc:
            raise CliError(str(exc), Exit.USAGE) from None
    print(table(rows))
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                bench: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``ble scan``, ``ble radio`` and ``ble budget`` under ``sub``, ``ble`` under ``bench``."""
    p = sub.add_parser("ble", help="BLE nodes nearby: address, RSSI, role, counter, whether the key decrypts")
    ble = p.add_subparsers(dest="ble", required=True, metavar="ACTION")
    s = ble.add_parser("scan", help="list the BTHome nodes heard")
    s.add_argument("--config", help="the gateway configuration whose [[ble.node]] keys are checked")
    s.add_argument("--seconds", type=float, default=10.0, help="how long to listen")
    s.add_argument("--virtual", type=int, default=0, metavar="N",
                   help="scan a virtual radio with N simulated nodes instead of the adapter")
    s.set_defaults(func=_cmd_ble_scan)

    r = ble.add_parser("radio", help="read or set a BLE node's advert interval, TX power and sleep over GATT")
    r.add_argument("--config", required=True, help="the gateway configuration (its [ble] adapter, keys, counters)")
    r.add_argument("--node", required=True, help="the [[ble.node]] id")
    r.add_argument("--interval-ms", type=int, help="new advert interval (20..60000 ms)")
    r.add_argument("--tx-power", type=int, help="new TX power in dBm (-12, -9, -6, -3, 0, 3, 6, 9)")
    r.add_argument("--sleep", choices=["on", "off"], help="light sleep between adverts")
    r.set_defaults(func=_cmd_ble_radio)

    d = ble.add_parser("budget", help="battery budget (estimated) from radio settings: current, years on a cell")
    d.add_argument("--interval-ms", type=int, action="append", help="advert interval (repeat for several)")
    d.add_argument("--tx-power", type=int, default=0, help="TX power in dBm (default 0)")
    d.add_argument("--sleep", action="store_true", help="light sleep between adverts")
    d.set_defaults(func=_cmd_ble_budget)

    b = bench.add_parser("ble", help="adverts/s decoded and stored vs a floor; 200 nodes on a lossy virtual radio")
    b.add_argument("--nodes", type=int, default=50, help="nodes of the decode-and-store part")
    b.add_argument("--adverts", type=int, default=20000, help="adverts of the decode-and-store part")
    b.add_argument("--radio-nodes", type=int, default=200)
    b.add_argument("--interval", type=float, default=1.0, help="seconds between two readings of a radio node")
    b.add_argument("--loss", type=float, default=0.1, help="share of advert PDUs the radio loses")
    b.add_argument("--seconds", type=float, default=20.0, help="length of the radio part")
    b.add_argument("--write-docs", action="store_true", help="record the figures in docs/performance.md")
    b.set_defaults(func=_cmd_bench_ble)
