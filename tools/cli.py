"""The ``streetedge`` command: one entry point, one subcommand per job.

Each subcommand imports its module only when it runs, so that ``streetedge
--help`` stays instant and a field laptop without MicroPython can still run the
gateway. A subcommand that cannot do its job raises :class:`~tools.exit_codes.CliError`;
:func:`main` prints it as one line and exits with its code (``tools/exit_codes.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from tools.bench.bus_cli import add_bus_parser
from tools.bench_analytics import add_parser as add_analytics_bench
from tools.ble_cli import add_parsers as add_ble_parsers
from tools.command_cli import add_parsers as add_command_parsers
from tools.dashboard_cli import add_bench_parser as add_dashboard_bench
from tools.dashboard_cli import add_parsers as add_dashboard_parsers
from tools.exit_codes import CliError, Exit
from tools.field_cli import add_parsers as add_field_parsers
from tools.update_cli import add_parsers as add_update_parsers

RUN_DIR = Path(".run")
REPO = Path(__file__).resolve().parents[1]

DESCRIPTION = """\
streetedge: the street cabinet's gateway and its field tools.

  streetedge check -c /etc/streetedge/gateway.toml   is this configuration ready to run here?
  streetedge run -c /etc/streetedge/gateway.toml     the gateway daemon
  streetedge watch -c /etc/streetedge/gateway.toml   the street as the broker sees it, live
  streetedge demo                                    a virtual street, a gateway and a broker
"""

EPILOG = """\
exit codes: 0 done; 1 ran, and the answer is no (a command rejected, failed or unanswered, a check
that found problems, a broken audit chain); 2 bad input, nothing done (options, configuration, key or
payload file); 3 something needed is missing (broker unreachable, state directory missing or not
writable); 70 a fault of streetedge itself (-v shows the traceback); 130 interrupted.
Documentation: docs/operations.md, docs/commands.md (in the Debian package: /usr/share/doc/streetedge/).
"""


def _known(folder: str, pattern: str) -> list[str]:
    """Names of the boards or firmware roles in this checkout (for choices and help)."""
    return sorted(p.parent.name if p.name == "board.json" else p.stem
                  for p in (REPO / folder).glob(pattern) if not p.name.startswith("_"))


def _version() -> str:
    try:
        return metadata.version("streetedge")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _cmd_run(args: argparse.Namespace) -> int:
    from gateway.delivery.outbox import OutboxError
    from gateway.service.config import ConfigError
    from gateway.service.runner import StartError, run_service
    from gateway.update.rollout_store import RolloutStoreError

    try:
        run_service(Path(args.config), log_format=args.log_format)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    except StartError as exc:
        raise CliError(str(exc), Exit.UNAVAILABLE) from None
    except OutboxError as exc:  # what the state-file check could not foresee (a full disk, a broken file)
        raise CliError(f"delivery.outbox: {exc}; a damaged file can be moved aside (what it holds stays in it) "
                       "for the gateway to start a new one", Exit.UNAVAILABLE) from None
    except RolloutStoreError as exc:  # the roll-outs beside commands.replay_db
        raise CliError(f"roll-out store {exc}; a damaged file can be moved aside (its roll-outs are then not "
                       "resumed) for the gateway to start a new one", Exit.UNAVAILABLE) from None
    return Exit.OK


def _cmd_check(args: argparse.Namespace) -> int:
    from tools.check import run_check

    return run_check(Path(args.config), broker=not args.no_broker, timeout=args.timeout)


def _cmd_watch(args: argparse.Namespace) -> int:
    from tools.watch import run_watch, target_from

    target = target_from(config=args.config, broker=args.broker, site=args.site, gateway=args.gateway,
                         protocol=args.protocol)
    return run_watch(target, seconds=args.seconds, plain=args.plain)


def _cmd_sim(args: argparse.Namespace) -> int:
    from tools.sim.radio_street import run_street
    from tools.sim.street import VirtualStreet

    lamps, meters = args.nodes, args.meters
    roles = {lamps + 1 + i: "meter" for i in range(meters)}
    roles.update({lamps + meters + 1 + i: "env" for i in range(args.env)})
    first_ble = lamps + meters + args.env + 1
    ble_units = {first_ble + i: "meter" for i in range(args.ble_meters)}
    ble_units.update({first_ble + args.ble_meters + i: "env" for i in range(args.ble_env)})
    roles.update(ble_units)
    street = VirtualStreet(
        Path(args.workdir), nodes=len(roles) + lamps, roles=roles, baud=args.baud, paced=args.paced,
        noise=args.noise, drop=args.drop, seed=args.seed,
    )

    def started(manifest: dict[str, Any]) -> None:
        print(json.dumps(manifest, indent=2))
        print(f"manifest written to {Path(args.workdir) / 'manifest.json'}")
        if args.write_config:
            from tools.street_config import write_gateway_toml

            try:
                path = write_gateway_toml(Path(args.write_config), manifest, broker_url=args.broker,
                                          site=args.site, gateway=args.gateway)
            except OSError as exc:
                raise CliError(f"--write-config {args.write_config}: {exc.strerror}", Exit.UNAVAILABLE) from None
            print(f"gateway configuration written to {path}: streetedge run -c {path}")
        print("Ctrl-C stops the street", flush=True)

    with street, contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_street(street, ble_units, started, interval_ms=args.ble_interval_ms))
    return Exit.OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from tools.demo import run_demo

    code: int = run_demo(
        nodes=args.nodes, ble=args.ble, broker=args.broker, seconds=args.seconds, workdir=Path(args.workdir)
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


def _cmd_bench_soak(args: argparse.Namespace) -> int:
    from tools.bench.soak import run_soak_bench

    code: int = run_soak_bench(minutes=args.minutes, nodes=args.nodes, warmup=args.warmup, every=args.every,
                               label=args.label, write_docs=args.write_docs, trace=args.trace)
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
        raise CliError(str(exc)) from None
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


def _cmd_bench_cluster(args: argparse.Namespace) -> int:
    from tools.cluster.bench import main as rabbit_main
    from tools.load_gateways import main as load_main

    argv = ["--gateways", str(args.gateways), "--lamps", str(args.lamps), "--seconds", str(args.seconds),
            "--interval", str(args.interval)] + (["--tls"] if args.tls else []) + (
        ["--write-docs"] if args.write_docs else [])
    code: int = rabbit_main([a for a in argv if a != "--tls"]) if args.rabbitmq else load_main(argv)
    return code


def _read_input(path: str, what: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise CliError(f"{path}: no such {what} file") from None
    except OSError as exc:
        raise CliError(f"{path}: cannot read the {what} file: {exc.strerror}") from None


def _cmd_decode(args: argparse.Namespace) -> int:
    from tools.decode import decode_message

    data = _read_input(args.file, "payload")
    birth = _read_input(args.birth, "birth") if args.birth else None
    try:
        decoded = decode_message(data, birth=birth, topic=args.topic)
    except ValueError as exc:
        raise CliError(f"decode {args.file}: {exc}") from None
    print(json.dumps(decoded, indent=2, default=str))
    return Exit.OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``streetedge`` (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="streetedge", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"streetedge {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the gateway daemon")
    p.add_argument("-c", "--config", required=True, help="gateway configuration (TOML)")
    p.add_argument(
        "--log-format", choices=["text", "json"], default=None,
        help="log format (overrides [logging] format): json writes one object per line",
    )
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("check", help="check a configuration and what it needs here (devices, files, keys, broker)",
                       description="Check a gateway configuration and the machine it is to run on, without "
                       "starting anything: serial devices (present, readable and writable), state directories, "
                       "TLS files, the broker (a real MQTT connection) and Modbus TCP servers. Run it as the "
                       "gateway's user before a reload: runuser -u streetedge -- streetedge check -c FILE",
                       epilog="exit codes: 0 all good; 1 a problem was found (each printed); 2 the file "
                       "does not check")
    p.add_argument("-c", "--config", required=True, help="gateway configuration (TOML)")
    p.add_argument("--no-broker", action="store_true", help="do not try to connect to the broker")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds for each connection attempt (default 5)")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("watch", help="the street of a real gateway, live, from its MQTT messages",
                       description="Subscribe to a gateway's topics and show its nodes, their latest values and "
                       "states, alarms, command results and delivery counters, live. Takes the broker, site "
                       "and gateway from a configuration file (-c) or from the options.")
    p.add_argument("-c", "--config", default=None, help="read broker, site and gateway from this configuration")
    p.add_argument("--broker", default=None, help="mqtt://HOST[:PORT] (default: the configuration's, "
                   "else mqtt://127.0.0.1:1883)")
    p.add_argument("--protocol", choices=["5", "3.1.1"], default=None, help="MQTT version (default 5)")
    p.add_argument("--site", default=None, help="site id (the configuration's site)")
    p.add_argument("--gateway", default=None, help="gateway id (the configuration's gateway)")
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (0: until Ctrl-C)")
    p.add_argument("--plain", action="store_true", help="print one line per message instead of the live view")
    p.set_defaults(func=_cmd_watch)

    p = sub.add_parser("sim", help="start a virtual street and write its manifest")
    p.add_argument("--nodes", type=int, default=8, help="lamp nodes (units 1..N)")
    p.add_argument("--meters", type=int, default=0, help="water meter nodes (the next units)")
    p.add_argument("--env", type=int, default=0, help="environment nodes (the units after the meters)")
    p.add_argument("--ble-meters", type=int, default=0, help="BLE water meters on the virtual radio (next units)")
    p.add_argument("--ble-env", type=int, default=0, help="BLE environment nodes on the virtual radio (next units)")
    p.add_argument("--ble-interval-ms", type=int, default=1000, help="the BLE nodes' advert interval (default 1000)")
    p.add_argument("--baud", type=int, default=19200, help="line rate of the virtual bus, bit/s (default 19200)")
    p.add_argument("--paced", action="store_true", help="deliver bytes at the line rate")
    p.add_argument("--noise", type=float, default=0.0, help="probability of a flipped bit per byte")
    p.add_argument("--drop", type=float, default=0.0, help="probability of a lost byte")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise and drop draws (default 0)")
    p.add_argument("--workdir", default=str(RUN_DIR / "street"), help="folder of the nodes' flash and the manifest")
    p.add_argument("--write-config", metavar="FILE", default=None,
                   help="also write a gateway configuration for this street to FILE")
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883",
                   help="broker URL written into --write-config's file (default mqtt://127.0.0.1:1883)")
    p.add_argument("--site", default="sim-site", help="site id written into --write-config's file")
    p.add_argument("--gateway", default="cabinet-1", help="gateway id written into --write-config's file")
    p.set_defaults(func=_cmd_sim)

    p = sub.add_parser("demo", help="virtual street + gateway + broker, shown live")
    p.add_argument("--nodes", type=int, default=8, help="lamp nodes (default 8)")
    p.add_argument("--ble", type=int, default=2, help="BLE water meters on the virtual radio (default 2)")
    p.add_argument(
        "--broker", default="auto",
        help="auto (Mosquitto if installed, else embedded amqtt), mosquitto, amqtt or mqtt://HOST:PORT",
    )
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (0: until Ctrl-C)")
    p.add_argument("--workdir", default=str(RUN_DIR / "demo"), help="folder of the street, configuration and state")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("bench", help="benchmarks; results go to docs/performance.md")
    bench = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    add_dashboard_bench(bench)
    b = bench.add_parser("spine", help="readings/s and gateway CPU per reading vs the bare floor")
    b.add_argument("--nodes", type=int, default=8)
    b.add_argument("--seconds", type=float, default=20)
    b.add_argument(
        "--write-docs", action="store_true", help="record the figures in docs/performance.md"
    )
    b.set_defaults(func=_cmd_bench)
    b = bench.add_parser("node", help="node firmware per role at 128K, every feature: heap peak, images, latency")
    b.add_argument("--seconds", type=float, default=120, help="polling window per role")
    b.add_argument("--roles", default="lamp,meter,env,meter-ble,env-ble",
                   help="comma-separated roles (meter-ble, env-ble: with BLE)")
    b.add_argument("--write-docs", action="store_true", help="record the figures in docs/performance.md")
    b.set_defaults(func=_cmd_bench_node)
    b = bench.add_parser("load", help="Modbus TCP load: throughput and CPU vs floor, overload plateau, memory")
    b.add_argument("--mode", choices=["throughput", "overload", "memory", "all"], default="all")
    b.add_argument("--seconds", type=float, default=20, help="measuring window of each contender")
    b.add_argument("--sims", type=int, default=4, help="simulator processes")
    b.add_argument("--nodes", type=int, default=250, help="lamp nodes (spread over the simulators)")
    b.add_argument("--write-docs", action="store_true", help="record the figures in docs/performance.md")
    b.set_defaults(func=_cmd_bench_load)
    b = bench.add_parser("soak", help="gateway RSS over a long steady load with commands and a broker restart")
    b.add_argument("--minutes", type=float, default=30, help="length of the run")
    b.add_argument("--nodes", type=int, default=250, help="Modbus TCP lamps polled every second")
    b.add_argument("--warmup", type=float, default=5, help="minutes left out of the slope")
    b.add_argument("--every", type=float, default=10, help="seconds between two RSS samples")
    b.add_argument("--label", default="", help="names the figures in the docs (e.g. a version), one block each")
    b.add_argument("--trace", type=float, default=0, metavar="SECONDS",
                   help="run the gateway under tracemalloc and report where memory grew, every SECONDS")
    b.add_argument("--write-docs", action="store_true", help="record the figures in docs/performance.md")
    b.set_defaults(func=_cmd_bench_soak)
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
    add_bus_parser(bench)
    b = bench.add_parser("cluster", help="many simulated gateways against a local broker: what each one costs it")
    b.add_argument("--gateways", type=int, default=1000)
    b.add_argument("--lamps", type=int, default=32, help="lamps per gateway")
    b.add_argument("--seconds", type=float, default=60.0, help="measuring window")
    b.add_argument("--interval", type=float, default=1.0, help="seconds between two messages of a gateway")
    b.add_argument("--tls", action="store_true", help="also over TLS: handshake cost, bytes, CPU per message")
    b.add_argument("--rabbitmq", action="store_true", help="against a 3-node RabbitMQ cluster: also re-homing time")
    b.add_argument("--write-docs", action="store_true", help="record the figures in docs/broker-cluster.md")
    b.set_defaults(func=_cmd_bench_cluster)

    p = sub.add_parser("docs", help="regenerate the register-map pages from protocols/roles")
    p.set_defaults(func=_cmd_docs)

    p = sub.add_parser("image", help="device images")
    img = p.add_subparsers(dest="image", required=True, metavar="ACTION")
    b = img.add_parser("build", help="compile firmware + protocols + board into an image folder")
    boards, roles = _known("boards", "*/board.json"), _known("firmware/roles", "*.py")
    b.add_argument("--board", default="sim", choices=boards or None,
                   help=f"board folder under boards/: {', '.join(boards)} (default sim, the virtual board)")
    b.add_argument("--role", default="lamp", choices=roles or None,
                   help=f"node role: {', '.join(roles)} (default lamp)")
    b.add_argument("--out", default=str(Path("build") / "image"), help="image folder to write (default build/image)")
    b.add_argument("--march", default=None, help="mpy-cross -march (default: the board's; xtensawin on ESP32)")
    b.set_defaults(func=_cmd_image)

    add_command_parsers(sub, bench)  # keys new, cmd, audit verify, bench commands
    add_analytics_bench(bench)  # bench analytics

    p = sub.add_parser("decode", help="any message the gateway publishes (CBOR) as JSON",
                       description="Decode a payload of any gateway topic: data and events into resolved SenML "
                       "records (a compact message needs --birth), births, states, delivery counters, results, "
                       "audit entries and signed commands into JSON objects with their kind.")
    p.add_argument("file", help="payload file, or - for standard input")
    p.add_argument("--birth", help="the gateway birth payload (<root>/birth) a compact message refers to")
    p.add_argument("--topic", help="the topic it came from, when its shape alone does not tell the kind")
    p.set_defaults(func=_cmd_decode)

    add_field_parsers(sub)  # listen, flash, provision
    add_dashboard_parsers(sub)  # dashboard-user, dashboard-shots
    add_ble_parsers(sub, bench)  # ble scan, bench ble
    add_update_parsers(sub, bench)  # update pack, update send, bench update
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``streetedge`` console script: the subcommand's exit code (tools/exit_codes.py)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"streetedge {args.command}: {exc}", file=sys.stderr)
        return int(exc.code)
    except KeyboardInterrupt:
        return int(Exit.INTERRUPTED)
    except Exception as exc:  # one line for the operator; the traceback only when asked for
        if args.verbose:
            raise
        print(f"streetedge {args.command}: unexpected {type(exc).__name__}: {exc} (a fault of streetedge; "
              "-v shows where)", file=sys.stderr)
        return int(Exit.INTERNAL)


if __name__ == "__main__":
    sys.exit(main())
