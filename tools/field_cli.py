"""The ``streetedge`` subcommands of the field and of consumers: ``listen``, ``flash``, ``provision``.

Registered by :func:`tools.cli.build_parser` (as :mod:`tools.command_cli` registers the
operator's commands); each imports its module only when it runs. Exit codes are those of
:mod:`tools.exit_codes`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_listen(args: argparse.Namespace) -> int:
    from tools.listen import listen

    if args.share:
        from tools.listen_share import listen_shared

        return listen_shared(args)
    try:
        listen(args.broker, site=args.site, gateway=args.gateway, resolved=args.resolved, count=args.count,
               ready=lambda topic: print(f"streetedge listen: listening to {topic} on {args.broker}",
                                         file=sys.stderr, flush=True))
    except ValueError as exc:
        print(f"streetedge listen: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"streetedge listen: cannot reach the broker at {args.broker}: {exc.strerror or exc}",
              file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        pass
    return 0


def _cmd_flash(args: argparse.Namespace) -> int:
    from tools.flash import FlashError, flash

    try:
        done = flash(args.port, Path(args.firmware), chip=args.chip, baud=args.baud,
                     connect_attempts=args.connect_attempts)
    except FlashError as exc:
        print(f"streetedge flash: {exc}", file=sys.stderr)
        return exc.code
    print(done)
    return 0


def _cmd_provision(args: argparse.Namespace) -> int:
    from tools.provision import ProvisionError, Request, nodes_toml, provision

    try:
        if args.nodes_toml:
            print(nodes_toml(Path(args.record), args.bus_name), end="")
            return 0
        if args.no_rs485 and not args.ble_key:
            print("streetedge provision: --no-rs485 needs --ble-key (a node without a bus is reached over its "
                  "radio only)", file=sys.stderr)
            return 2
        # a battery node (--no-rs485) has no bus speed; its unit (default 1) only fills config.json
        needed = ("port", "board", "role", "node_id") + (() if args.no_rs485 else ("unit", "baud"))
        missing = [f"--{name.replace('_', '-')}" for name in needed if getattr(args, name) is None]
        if args.no_rs485 and args.ble_adapter is None and not args.no_bus_check:
            missing.append("--ble-adapter (or --no-bus-check)")
        elif not args.no_rs485 and args.bus is None and not args.no_bus_check:
            missing.append("--bus (or --no-bus-check)")
        if missing:
            print(f"streetedge provision: missing {', '.join(missing)}", file=sys.stderr)
            return 2
        request = Request(args.port, args.board, args.role, args.node_id, 1 if args.unit is None else args.unit,
                          args.baud or 0, Path(args.key) if args.key else None, bus=not args.no_rs485,
                          ble_key=Path(args.ble_key) if args.ble_key else None,
                          ble_interval_ms=args.ble_interval_ms, ble_tx_power_dbm=args.ble_tx_power,
                          ble_sleep=args.ble_sleep)
        entry = provision(request, workdir=Path(args.workdir), bus=None if args.no_rs485 else args.bus,
                          record=Path(args.record), timeout=args.timeout, connect_timeout=args.connect_timeout,
                          ble_adapter=args.ble_adapter)
    except ProvisionError as exc:
        print(f"streetedge provision: {exc}", file=sys.stderr)
        return exc.code
    where = f"BLE {entry['ble_address']}" if entry.get("ble_address") else f"unit {entry['unit']}"
    print(f"provisioned {entry['node']} ({where}, image {entry['image'][:12]}); recorded in {args.record}")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``listen``, ``flash`` and ``provision`` under ``sub``."""
    p = sub.add_parser("listen", help="print a gateway's live data, either profile, as SenML-JSON lines")
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
    p.add_argument("--site", help="the site of the gateway to listen to (default: every site)")
    p.add_argument("--gateway", help="the gateway to listen to (default: every gateway)")
    p.add_argument("--resolved", action="store_true", help="resolved records (RFC 8428 4.6) instead of packs")
    p.add_argument("--count", type=int, help="stop after this many lines (default: until Ctrl-C)")
    p.add_argument("--share", metavar="GROUP", help="one of a group of consumers that split the data (AMQP)")
    p.add_argument("--amqp", action="append", default=[], metavar="URL",
                   help="with --share: amqp://USER:PASS@HOST:PORT/ of a broker node (repeat for each node)")
    p.set_defaults(func=_cmd_listen)

    p = sub.add_parser("flash", help="write the MicroPython base image to an ESP32 (esptool)")
    p.add_argument("--port", required=True, help="the board's USB serial port")
    p.add_argument("--firmware", required=True, help="the vendor's MicroPython .bin for the board")
    p.add_argument("--chip", default="esp32", help="the chip the board carries (esp32, esp32s3, esp32c3)")
    p.add_argument("--baud", type=int, default=460800, help="bit/s while writing (the ROM starts at 115200)")
    p.add_argument("--connect-attempts", type=int, default=7, help="tries to reach the chip's ROM loader")
    p.set_defaults(func=_cmd_flash)

    p = sub.add_parser("provision", help="put a node's image and identity on a board running MicroPython")
    p.add_argument("--port", help="the board's USB serial port (a virtual board's console link)")
    p.add_argument("--board", help="board folder under boards/ (sim, esp32_lamp, esp32_meter, esp32_env)")
    p.add_argument("--role", help="node role: lamp, meter or env")
    p.add_argument("--node-id", help="the node's id in the gateway configuration")
    p.add_argument("--unit", type=int, help="its Modbus unit on the bus, 1..247")
    p.add_argument("--baud", type=int, help="its bus speed in bit/s (the gateway's [[bus]] baud)")
    p.add_argument("--key", help="a file holding the node's key, copied to node.key")
    p.add_argument("--bus", help="the RS-485 line the node hangs on, to see it answer after the reset")
    p.add_argument("--no-bus-check", action="store_true",
                   help="say done without seeing the node answer (on its bus or its radio)")
    p.add_argument("--ble-key", help="a file with the node's BLE key (32 hex digits): writes ble.json")
    p.add_argument("--ble-interval-ms", type=int, default=1000, help="with --ble-key: ms between adverts")
    p.add_argument("--ble-tx-power", type=int, default=0, help="with --ble-key: TX power in dBm (-12..9, step 3)")
    p.add_argument("--ble-sleep", action="store_true", help="with --ble-key: sleep between adverts")
    p.add_argument("--no-rs485", action="store_true",
                   help='a battery BLE node: no bus ("bus": false); needs --ble-key, not --unit/--baud/--bus')
    p.add_argument("--ble-adapter",
                   help="the gateway's [ble] adapter (hci0, bumble:tcp-client:HOST:PORT): wait for the first advert")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the node's first answer")
    p.add_argument("--connect-timeout", type=float, default=30.0,
                   help="seconds the board's REPL has to answer at all")
    p.add_argument("--record", default="provisioned.jsonl", help="the provisioning record (appended)")
    p.add_argument("--workdir", default="build/provision", help="where the images are built")
    p.add_argument("--nodes-toml", action="store_true",
                   help="print the gateway's [[node]] entries from --record instead of provisioning")
    p.add_argument("--bus-name", default="bus0", help="with --nodes-toml: the [[bus]] name the nodes hang on")
    p.set_defaults(func=_cmd_provision)
