"""The ``streetedge update`` subcommands (``pack``, ``send``) and ``streetedge bench update``.

``update pack`` signs a node image for the nodes holding a key: the key holder's step, on the
operator's side. ``update send`` rolls a package out to nodes of one RS-485 line, canaries first,
and prints each step; the gateway runs the same roll-out (:mod:`gateway.update.rollout`).
Registered by :func:`tools.cli.build_parser`; each imports its module only when it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from tools.exit_codes import CliError, Exit


def _cmd_pack(args: argparse.Namespace) -> int:
    from gateway.update.package import PackageError, make_package
    from tools.image import ImageError, build_image

    try:
        key = Path(args.key).read_bytes()
    except OSError as exc:
        raise CliError(f"--key {args.key}: {exc.strerror}") from None
    if args.image:
        image_path = Path(args.image)
    else:
        try:
            manifest = build_image(args.board, args.role, Path(args.workdir) / f"image-{args.board}-{args.role}")
        except ImageError as exc:
            raise CliError(str(exc)) from None
        image_path = Path(args.workdir) / f"image-{args.board}-{args.role}" / manifest["rom"]["file"]
    try:
        package = make_package(image_path.read_bytes(), key=key, role=args.role, board=args.board,
                               health_s=args.health)
    except OSError as exc:
        raise CliError(f"{image_path}: {exc.strerror}") from None
    except PackageError as exc:
        raise CliError(str(exc)) from None
    Path(args.out).write_bytes(package.to_bytes())
    print(f"update package {args.out}: {args.role} image of {len(package.image)} bytes, "
          f"sha256 {package.digest.hex()}, health time {package.health_s} s")
    return 0


def _cmd_send(args: argparse.Namespace) -> int:
    from gateway.service.config import BusConfig
    from gateway.transport.modbus_rtu import ModbusBus
    from gateway.update.package import PackageError, load_package
    from gateway.update.rollout import Target, roll_out

    try:
        package = load_package(Path(args.package))
    except PackageError as exc:
        raise CliError(str(exc)) from None

    def show(event: dict[str, Any]) -> None:
        print(json.dumps(event) if args.json else
              f"{event['phase']:<9} {event['node'] or '':<10} {event['done']}/{event['total']} {event['detail']}",
              flush=True)

    if args.ble_config or args.nodes:  # BLE nodes, over GATT
        from tools.update_ble_cli import send_ble

        if not (args.ble_config and args.nodes) or args.bus or args.units:
            raise CliError("a BLE roll-out takes --ble-config and --nodes (and no --bus nor --units)")
        return send_ble(args, package, show)
    if not (args.bus and args.units):
        raise CliError("a roll-out on a line takes --bus and --units (BLE nodes: --ble-config and --nodes)")
    try:
        units = [int(u) for u in args.units.split(",")]
    except ValueError:
        raise CliError(f"--units {args.units!r}: Modbus units separated by commas, e.g. 1,2,3") from None
    if not units or not all(1 <= u <= 247 for u in units):
        raise CliError(f"--units {args.units!r}: units are 1..247")

    async def run() -> Any:
        bus = ModbusBus(BusConfig(name="bus0", device=args.bus, baud=args.baud, parity=args.parity,
                                  timeout=args.timeout, retries=1))
        try:
            return await roll_out(args.id, package, [Target(f"unit-{u}", "bus0", u) for u in units],
                                  {"bus0": bus}, canaries=args.canaries, report=show)
        finally:
            bus.close()

    outcome = asyncio.run(run())
    return 0 if outcome.ok else int(Exit.FAILED)


def _cmd_bench_update(args: argparse.Namespace) -> int:
    from tools.bench.update import run_update_bench

    code: int = run_update_bench([int(b) for b in args.bauds.split(",")], nodes=args.nodes,
                                 write_docs=args.write_docs)
    return code


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                bench: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``update pack``, ``update send`` under ``sub`` and ``update`` under ``bench``."""
    p = sub.add_parser("update", help="node updates over the bus: sign an image, roll it out")
    update = p.add_subparsers(dest="update", required=True, metavar="STEP")
    u = update.add_parser("pack", help="sign a node image (ROMFS) for the nodes holding a key")
    u.add_argument("--key", required=True, help="the file holding the nodes' key (as given to provision --key)")
    u.add_argument("--board", default="sim", help="board the image is for (default sim)")
    u.add_argument("--role", default="lamp", help="node role the image is for (default lamp)")
    u.add_argument("--image", help="a ROMFS image (default: build the board's and role's)")
    u.add_argument("--health", type=int, default=30,
                   help="seconds the new image must run and answer before the node keeps it (default 30)")
    u.add_argument("--workdir", default="build/update", help="where the image is built")
    u.add_argument("--out", required=True, help="the package file to write")
    u.set_defaults(func=_cmd_pack)
    u = update.add_parser("send", help="roll a package out to nodes of one RS-485 line or BLE nodes, canaries first")
    u.add_argument("--bus", help="the line's serial device")
    u.add_argument("--baud", type=int, default=19200, help="the line's bit rate (default 19200)")
    u.add_argument("--parity", default="E", choices=["N", "E", "O"], help="the line's parity (default E, 8E1)")
    u.add_argument("--timeout", type=float, default=0.5, help="seconds to wait for each answer")
    u.add_argument("--units", help="the nodes' Modbus units, in roll-out order, e.g. 3,1,2")
    u.add_argument("--ble-config", help="BLE nodes instead: the gateway configuration with their [[ble.node]]")
    u.add_argument("--nodes", help="the BLE nodes' ids, in roll-out order, e.g. pit-3,pit-1")
    u.add_argument("--canaries", type=int, default=1, help="nodes updated (and confirmed) before the rest")
    u.add_argument("--package", required=True, help="the update package (streetedge update pack)")
    u.add_argument("--id", default="manual", help="a name for this roll-out in the progress lines")
    u.add_argument("--json", action="store_true", help="progress as JSON lines")
    u.set_defaults(func=_cmd_send)
    b = bench.add_parser("update", help="update time of one node and a line of nodes vs the line rate")
    b.add_argument("--bauds", default="19200,115200", help="bit rates, comma-separated")
    b.add_argument("--nodes", type=int, default=32, help="nodes on the line for the whole-line run")
    b.add_argument("--write-docs", action="store_true", help="record the table in docs/performance.md")
    b.set_defaults(func=_cmd_bench_update)
