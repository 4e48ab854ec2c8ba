"""The command-security subcommands of ``streetedge``: ``keys new``, ``cmd``, ``audit verify``, ``bench commands``.

Registered by :func:`add_parsers` from ``tools/cli.py``; like every
subcommand they import their modules only when they run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any

from tools.exit_codes import CliError, Exit

ACTIONS = ("dim", "switch", "override", "clear_override", "set_schedule", "set_config", "set_unit", "time_sync",
           "reboot", "rebirth", "refresh", "update", "cancel_update")
KEY_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""A key id the gateway configuration accepts (``[[key]] id``): letters, digits, '_' and '-'."""


def _keys_new(args: argparse.Namespace) -> int:
    from tools.keys import key_entry, new_key

    if not KEY_NAME.fullmatch(args.name):
        raise CliError(f"key name {args.name!r}: use 1..64 letters, digits, '_' and '-' (the gateway "
                       "configuration accepts no other key id); nothing written")
    actions = args.actions.split(",")
    unknown = [a for a in actions if a not in (*ACTIONS, "*")]
    if unknown:
        raise CliError(f"--actions: unknown action {unknown[0]!r} (known: {', '.join(ACTIONS)}, *); nothing written")
    try:
        private, public = new_key(args.name, Path(args.dir), overwrite=args.force)
    except FileExistsError as exc:
        raise CliError(f"{exc} (--force replaces it)") from None
    except OSError as exc:
        raise CliError(f"cannot write the key pair in {args.dir}: {exc.strerror}", Exit.UNAVAILABLE) from None
    print(f"private key: {private} (keep it secret; only its owner can read it)")
    print(f"public key:  {public}")
    print("\nAdd this to the gateway configuration to trust the key:\n")
    print(key_entry(args.name, public, actions, args.targets.split(",")))
    return Exit.OK


def _params(args: argparse.Namespace) -> dict[str, Any]:
    """The command's parameters from --params and the action's own options; CliError names what is missing."""
    text = args.params or ""
    if text.startswith("@"):  # a schedule is easier to keep in a file
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise CliError(f"--params {text}: cannot read the file: {exc.strerror}; nothing sent") from None
    try:
        params = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        raise CliError(f"--params: not JSON ({exc}); nothing sent") from None
    if not isinstance(params, dict):
        raise CliError("--params: give a JSON object, e.g. '{\"level\": 40}'; nothing sent")
    # A command changes a public street: it states what it does, nothing is assumed.
    if args.action in ("dim", "override"):
        if args.level is not None:
            params["level"] = args.level
        elif "level" not in params:
            raise CliError(f"{args.action} needs --level 0..100; nothing sent")
    if args.action == "switch":
        if args.state is not None:
            params["on"] = args.state == "on"
        elif "on" not in params:
            raise CliError("switch needs --state on or --state off; nothing sent")
    elif args.action == "override":
        if args.minutes is not None:
            params["minutes"] = args.minutes
        elif "minutes" not in params:
            raise CliError("override needs --minutes 1..1440; nothing sent")
    elif args.action == "set_unit" and args.unit is not None:
        params["unit"] = args.unit
    elif args.action == "reboot" and args.within is not None:
        params["within"] = args.within
    elif args.action == "update":
        from tools.update_command import update_params

        params = update_params(args, params)
    elif args.action == "cancel_update":
        if args.rollout is not None:
            params["rollout"] = args.rollout
        elif "rollout" not in params:
            raise CliError("cancel_update needs --rollout ID (the update command's id); nothing sent")
    return params


def _signer(args: argparse.Namespace) -> Any:
    from tools.keys import load_private_key
    from tools.operator import Signer

    key_path = Path(args.key)
    try:
        key = load_private_key(key_path)
    except FileNotFoundError:
        raise CliError(f"--key {key_path}: no such key file (make one with `streetedge keys new NAME`); "
                       "nothing sent") from None
    except OSError as exc:
        raise CliError(f"--key {key_path}: cannot read it: {exc.strerror}; nothing sent") from None
    except ValueError:
        hint = (" (this is a public key: give the NAME.key file, not NAME.pub)"
                if key_path.suffix == ".pub" or _looks_public(key_path) else "")
        raise CliError(f"--key {key_path}: not an Ed25519 private key in PEM{hint}; nothing sent") from None
    return Signer(key, args.kid or key_path.stem)


def _looks_public(path: Path) -> bool:
    from gateway.service.config_commands import public_key_bytes

    try:
        public_key_bytes(path.read_text().strip())
    except (OSError, ValueError):
        return False
    return True


def _cmd(args: argparse.Namespace) -> int:
    import aiomqtt

    from tools.operator import send_command

    params = _params(args)
    signer = _signer(args)
    wait = args.timeout
    if wait is None:  # a reboot's result comes once the node is back (or ``within`` is over); an update's later
        within = params.get("within", 120) if args.action == "reboot" else None
        wait = float(within) + 30 if isinstance(within, int | float) else 3600.0 if args.action == "update" else 10.0
    try:
        result = asyncio.run(send_command(
            broker=args.broker, site=args.site, gateway=args.gateway, signer=signer, target=args.target,
            action=args.action, params=params, wait=wait, protocol=args.protocol,
            command_id=args.id, lifetime=args.lifetime, progress=_show_progress,
        ))
    except ValueError as exc:  # the broker URL
        raise CliError(f"--broker: {exc}; nothing sent") from None
    except aiomqtt.MqttError as exc:
        raise CliError(f"broker {args.broker}: {exc} (is it running and reachable? see --broker)",
                       Exit.UNAVAILABLE) from None
    print(json.dumps(result, indent=2, default=str))
    return Exit.OK if result.get("status") == "done" else Exit.FAILED


def _show_progress(step: dict[str, Any]) -> None:
    """One line per step of a running command (an update's roll-out), on stderr: stdout keeps the result."""
    print(f"{step.get('phase', ''):<9} {step.get('node') or '':<12} {step.get('done', 0)}/{step.get('total', 0)} "
          f"{step.get('detail') or ''}".rstrip(), file=sys.stderr, flush=True)


def _audit_verify(args: argparse.Namespace) -> int:
    from gateway.commands.audit import verify_log

    path = Path(args.path)
    if not path.is_file():
        raise CliError(f"{path}: no such audit log")
    verdict = verify_log(path)
    if verdict.ok:
        print(f"{path}: {verdict.entries} entries, chain intact, head {verdict.head}")
        return Exit.OK
    print(f"{path}: BROKEN at line {verdict.bad_line}: {verdict.problem} "
          f"({verdict.entries - 1} entries before it are intact, last good hash {verdict.head})")
    return Exit.FAILED


def _bench_commands(args: argparse.Namespace) -> int:
    from tools.bench.commands import run_commands_bench

    code: int = run_commands_bench(
        nodes=args.nodes, rounds=args.rounds, baud=args.baud, paced=args.paced,
        bus_rounds=args.bus_rounds, write_docs=args.write_docs, host_lamps=args.host_lamps,
    )
    return code


def _bounded(low: int, high: int) -> Any:
    """An argparse type: an integer in ``low..high``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer {low}..{high}, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer {low}..{high}, got {value}")
        return value

    return parse


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                bench: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``keys``, ``cmd``, ``audit`` under ``sub`` and ``commands`` under ``bench``."""
    p = sub.add_parser("keys", help="operator key pairs")
    keys = p.add_subparsers(dest="keys", required=True, metavar="ACTION")
    k = keys.add_parser("new", help="make an Ed25519 key pair and print its [[key]] entry")
    k.add_argument("name", help="key id (letters, digits, '_' and '-')")
    k.add_argument("--dir", default=".", help="where NAME.key and NAME.pub go")
    k.add_argument("--actions", default="dim,switch", help="comma-separated actions for the entry, or *")
    k.add_argument("--targets", default="all", help="comma-separated targets for the entry")
    k.add_argument("--force", action="store_true", help="replace an existing key pair")
    k.set_defaults(func=_keys_new)

    p = sub.add_parser("cmd", help="sign and send an operator command, print its result")
    p.add_argument("action", choices=ACTIONS, metavar="ACTION",
                   help=f"one of: {', '.join(ACTIONS)} (parameters: docs/upstream.md#command-actions)")
    p.add_argument("--target", required=True, help="node id, group:NAME, bus:NAME or all")
    p.add_argument("--key", required=True, help="the operator's private key file (streetedge keys new)")
    p.add_argument("--kid", default=None, help="key id (default: the key file's name without .key)")
    p.add_argument("--level", type=_bounded(0, 100), default=None, help="dim, override: level 0..100 (required)")
    p.add_argument("--state", choices=["on", "off"], default=None, help="switch: on or off (required)")
    p.add_argument("--minutes", type=_bounded(1, 1440), default=None,
                   help="override: minutes 1..1440 (required)")
    p.add_argument("--unit", type=int, default=None, help="for set_unit: the node's new Modbus unit")
    p.add_argument("--within", type=int, default=None, help="for reboot: seconds to wait for the node's return")
    p.add_argument("--package", default=None,
                   help="update: the package file, or the SHA-256 of its image (required)")
    p.add_argument("--canary", default=None,
                   help="update: comma-separated node ids / group:NAME updated first, or 'none' (required)")
    p.add_argument("--stop-on-failure", choices=["yes", "no"], default=None,
                   help="update: stop at the first failed node after the canaries (required)")
    p.add_argument("--rollout", default=None,
                   help="cancel_update: the id of the update command whose roll-out to stop (required)")
    p.add_argument("--params", default=None,
                   help='parameters as JSON, e.g. \'{"level": 40}\', or @FILE with the JSON (set_schedule)')
    p.add_argument("--id", default=None, help="command id (default: random)")
    p.add_argument("--lifetime", type=float, default=60.0, help="seconds the command stays valid")
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="mqtt://HOST[:PORT] (default mqtt://127.0.0.1:1883)")
    p.add_argument("--protocol", choices=["5", "3.1.1"], default="5", help="MQTT version (default 5)")
    p.add_argument("--site", required=True, help="the gateway's site id")
    p.add_argument("--gateway", required=True, help="the gateway's id")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds to wait for the result (default 10; reboot: its within + 30; update: 3600)")
    p.set_defaults(func=_cmd)

    p = sub.add_parser("audit", help="the command audit log")
    audit = p.add_subparsers(dest="audit", required=True, metavar="ACTION")
    a = audit.add_parser("verify", help="check the hash chain; report the first broken entry")
    a.add_argument("path", help="the audit log file (the configuration's [commands] audit_log)")
    a.set_defaults(func=_audit_verify)

    b = bench.add_parser("commands", help="command latency p50/p99 (one lamp, a whole bus) on the virtual street")
    b.add_argument("--nodes", type=int, default=8, help="lamps on the bus")
    b.add_argument("--rounds", type=int, default=50, help="single-lamp commands")
    b.add_argument("--bus-rounds", type=int, default=10, help="whole-bus commands")
    b.add_argument("--baud", type=int, default=115200, help="line rate of the virtual bus, bit/s (default 115200)")
    b.add_argument("--paced", action="store_true", help="deliver bytes at the line rate")
    b.add_argument("--host-lamps", action="store_true",
                   help="run the lamps in one lamp host process on one drop (whole-bus benches up to 247 lamps)")
    b.add_argument("--write-docs", action="store_true", help="record the figures in docs/performance.md")
    b.set_defaults(func=_bench_commands)
