"""The ``streetedge`` command: one entry point, one subcommand per job.

Each subcommand imports its module only when it runs, so that ``streetedge
--help`` stays instant and a field laptop without MicroPython can still run the
gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from pathlib import Path

from tools.command_cli import add_parsers as add_command_parsers

RUN_DIR = Path(".run")


def _cmd_run(args: argparse.Namespace) -> int:
    from gateway.service.config import ConfigError
    from gateway.service.runner import run_service

    try:
        run_service(Path(args.config), log_format=args.log_format)
    except ConfigError as exc:
        print(f"streetedge: {exc}", file=sys.stderr)
        return 2
    return 0


def _cmd_sim(args: argparse.Namespace) -> int:
    from tools.sim.street import VirtualStreet

    lamps, meters = args.nodes, args.meters
    roles = {lamps + 1 + i: "meter" for i in range(meters)}
    roles.update({lamps + meters + 1 + i: "env" for i in range(args.env)})
    street = VirtualStreet(
        Path(args.workdir), nodes=lamps + meters + args.env, roles=roles, baud=args.baud, paced=args.paced,
        noise=args.noise, drop=args.drop, seed=args.seed,
    )
    with street:
        manifest = street.start()
        print(json.dumps(manifest, indent=2))
        print(f"manifest written to {Path(args.workdir) / 'manifest.json'}; Ctrl-C stops the street")
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(asyncio.Event().wait())
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from tools.demo import run_demo

    code: int = run_demo(
        nodes=args.nodes, broker=args.broker, seconds=args.seconds, workdir=Path(args.workdir)
    )
    return code


def _cmd_bench(args: argparse.Namespace) -> int:
    from tools.bench.spine import run_spine_bench

    code: int = run_spine_bench(nodes=args.nodes, seconds=args.seconds, write_docs=args.write_docs)
    return code


def _cmd_bench_load(args: argparse.Namespace) -> int:
    from tools.bench.load import run_load_bench

    code: int = run_load_bench(
        mode=args.mode, seconds=args.seconds, sims=args.sims, nodes=args.nodes, write_docs=args.write_docs
    )
    return code


def _cmd_bench_node(args: argparse.Namespace) -> int:
    from tools.bench.node import run_node_bench

    code: int = run_node_bench(roles=args.roles.split(","), seconds=args.seconds, write_docs=args.write_docs)
    return code


def _cmd_docs(_: argparse.Namespace) -> int:
    from tools.regmap_docs import write_all

    for path in write_all():
        print(f"wrote {path}")
    return 0


def _cmd_image(args: argparse.Namespace) -> int:
    from tools.image import ImageError, build_image, summary

    target = {"march": args.march} if args.march else {}  # default: the board's (xtensawin on ESP32)
    try:
        manifest = build_image(args.board, args.role, Path(args.out), **target)
    except ImageError as exc:
        print(f"streetedge: {exc}", file=sys.stderr)
        return 2
    print(summary(manifest, args.out))
    return 0


def _cmd_bench_reliability(args: argparse.Namespace) -> int:
    from tools.bench.reliability import ALL, run_reliability_bench

    code: int = run_reliability_bench(
        args.scenario or ALL, full=not args.reduced, write_docs=args.write_docs, seed=args.seed
    )
    return code


def _cmd_bench_delivery(args: argparse.Namespace) -> int:
    from tools.bench.delivery import run_delivery_bench

    code: int = run_delivery_bench(polls=args.polls, write_docs=args.write_docs)
    return code


def _cmd_bench_bus(args: argparse.Namespace) -> int:
    from tools.bench.bus import run_bus_bench

    code: int = run_bus_bench(nodes=args.nodes, baud=args.baud, seconds=args.seconds, write_docs=args.write_docs)
    return code


def _cmd_bench_cluster(args: argparse.Namespace) -> int:
    from tools.load_gateways import main as load_main

    argv = ["--gateways", str(args.gateways), "--lamps", str(args.lamps), "--seconds", str(args.seconds),
            "--interval", str(args.interval)] + (["--tls"] if args.tls else []) + (
        ["--write-docs"] if args.write_docs else [])
    code: int = load_main(argv)
    return code


def _cmd_decode(args: argparse.Namespace) -> int:
    from tools.decode import resolve_payload

    data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    birth = Path(args.birth).read_bytes() if args.birth else None
    try:
        records = resolve_payload(data, birth)
    except ValueError as exc:
        print(f"streetedge decode: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(records, indent=2, default=str))
    return 0


def _cmd_listen(args: argparse.Namespace) -> int:
    from tools.listen import listen

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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``streetedge`` (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="streetedge", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the gateway daemon")
    p.add_argument("-c", "--config", required=True, help="gateway configuration (TOML)")
    p.add_argument(
        "--log-format", choices=["text", "json"], default=None,
        help="log format (overrides [logging] format): json writes one object per line",
    )
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("sim", help="start a virtual street and write its manifest")
    p.add_argument("--nodes", type=int, default=8, help="lamp nodes (units 1..N)")
    p.add_argument("--meters", type=int, default=0, help="water meter nodes (the next units)")
    p.add_argument("--env", type=int, default=0, help="environment nodes (the units after the meters)")
    p.add_argument("--baud", type=int, default=19200)
    p.add_argument("--paced", action="store_true", help="deliver bytes at the line rate")
    p.add_argument("--noise", type=float, default=0.0, help="probability of a flipped bit per byte")
    p.add_argument("--drop", type=float, default=0.0, help="probability of a lost byte")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=str(RUN_DIR / "street"))
    p.set_defaults(func=_cmd_sim)

    p = sub.add_parser("demo", help="virtual street + gateway + broker, shown live")
    p.add_argument("--nodes", type=int, default=8)
    p.add_argument(
        "--broker", default="auto",
        help="auto (Mosquitto if installed, else embedded amqtt), mosquitto, amqtt or mqtt://HOST:PORT",
    )
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (0: until Ctrl-C)")
    p.add_argument("--workdir", default=str(RUN_DIR / "demo"))
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("bench", help="benchmarks; results go to docs/performance.md")
    bench = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    b = bench.add_parser("spine", help="readings/s and gateway CPU per reading vs the bare floor")
    b.add_argument("--nodes", type=int, default=8)
    b.add_argument("--seconds", type=float, default=20)
    b.add_argument(
        "--write-docs", action="store_true", help="record the figures in docs/performance.md"
    )
    b.set_defaults(func=_cmd_bench)
    b = bench.add_parser("node", help="node firmware per role at 128K, every feature: heap peak, images, latency")
    b.add_argument("--seconds", type=float, default=120, help="polling window per role")
    b.add_argument("--roles", default="lamp,meter,env", help="comma-separated roles")
    b.add_argument("--write-docs", action="store_true", help="record the figures in docs/performance.md")
    b.set_defaults(func=_cmd_bench_node)
    b = bench.add_parser("load", help="Modbus TCP load: throughput and CPU vs floor, overload plateau, memory")
    b.add_argument("--mode", choices=["throughput", "overload", "memory", "all"], default="all")
    b.add_argument("--seconds", type=float, default=20, help="measuring window of each contender")
    b.add_argument("--sims", type=int, default=4, help="simulator processes")
    b.add_argument("--nodes", type=int, default=250, help="lamp nodes (spread over the simulators)")
    b.add_argument("--write-docs", action="store_true", help="record the figures in docs/performance.md")
    b.set_defaults(func=_cmd_bench_load)
    b = bench.add_parser("reliability", help="loss scenarios (SIGKILL, broker down, noise, power cuts, full disk)")
    b.add_argument("--scenario", action="append",
                   help="sigkill, broker, noise, nodes, budget or power-loss (default: all)")
    b.add_argument("--reduced", action="store_true", help="the default test run's sizes instead of the full ones")
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--write-docs", action="store_true", help="record the figures in docs/reliability.md")
    b.set_defaults(func=_cmd_bench_reliability)
    b = bench.add_parser("delivery", help="bytes per reading per profile, backlog drain rate, poll-to-broker latency")
    b.add_argument("--polls", type=int, default=20_000, help="stored polls in the backlog to drain")
    b.add_argument("--write-docs", action="store_true", help="record the figures in docs/performance.md")
    b.set_defaults(func=_cmd_bench_delivery)
    b = bench.add_parser("bus", help="RS-485: useful readings/s per bus vs the line-rate limit, poll interval")
    b.add_argument("--nodes", type=int, default=32, help="lamps on the bus (hosted, real firmware)")
    b.add_argument("--baud", type=int, default=19200)
    b.add_argument("--seconds", type=float, default=60.0)
    b.add_argument("--write-docs", action="store_true")
    b.set_defaults(func=_cmd_bench_bus)
    b = bench.add_parser("cluster", help="many simulated gateways against a local broker: what each one costs it")
    b.add_argument("--gateways", type=int, default=1000)
    b.add_argument("--lamps", type=int, default=32, help="lamps per gateway")
    b.add_argument("--seconds", type=float, default=60.0, help="measuring window")
    b.add_argument("--interval", type=float, default=1.0, help="seconds between two messages of a gateway")
    b.add_argument("--tls", action="store_true", help="also over TLS: handshake cost, bytes, CPU per message")
    b.add_argument("--write-docs", action="store_true", help="record the figures in docs/broker-cluster.md")
    b.set_defaults(func=_cmd_bench_cluster)

    p = sub.add_parser("docs", help="regenerate the register-map pages from protocols/roles")
    p.set_defaults(func=_cmd_docs)

    p = sub.add_parser("image", help="device images")
    img = p.add_subparsers(dest="image", required=True, metavar="ACTION")
    b = img.add_parser("build", help="compile firmware + protocols + board into an image folder")
    b.add_argument("--board", default="sim")
    b.add_argument("--role", default="lamp")
    b.add_argument("--out", default=str(Path("build") / "image"))
    b.add_argument("--march", default=None, help="mpy-cross -march (default: the board's; xtensawin on ESP32)")
    b.set_defaults(func=_cmd_image)

    add_command_parsers(sub, bench)  # keys new, cmd, audit verify, bench commands

    p = sub.add_parser("decode", help="turn a data payload (SenML-CBOR or compact) into resolved JSON records")
    p.add_argument("file", help="payload file, or - for standard input")
    p.add_argument("--birth", help="the gateway birth payload (<root>/birth) a compact message refers to")
    p.set_defaults(func=_cmd_decode)

    p = sub.add_parser("listen", help="print a gateway's live data, either profile, as SenML-JSON lines")
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
    p.add_argument("--site", help="the site of the gateway to listen to (default: every site)")
    p.add_argument("--gateway", help="the gateway to listen to (default: every gateway)")
    p.add_argument("--resolved", action="store_true", help="resolved records (RFC 8428 4.6) instead of packs")
    p.add_argument("--count", type=int, help="stop after this many lines (default: until Ctrl-C)")
    p.set_defaults(func=_cmd_listen)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``streetedge`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
