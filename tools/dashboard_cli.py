"""The dashboard's subcommands: ``dashboard-user`` (a user entry with its password hash), ``dashboard-shots``
(the docs' screenshots) and ``bench dashboard`` (what the page costs the gateway)."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from tools.exit_codes import CliError, Exit


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``dashboard-user`` and ``dashboard-shots`` under ``sub``."""
    p = sub.add_parser("dashboard-user", help="print a [[dashboard.user]] entry: a name and its password's hash")
    p.add_argument("name", help="the login name")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.set_defaults(func=_cmd_user)

    p = sub.add_parser("dashboard-shots", help="regenerate the dashboard's screenshots in docs/images/")
    p.add_argument("--out", default=None, help="folder (default docs/images)")
    p.set_defaults(func=_cmd_shots)


def add_bench_parser(bench: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``bench dashboard`` under ``bench``."""
    b = bench.add_parser("dashboard", help="gateway CPU and memory with pages of the dashboard open, vs none")
    b.add_argument("--nodes", type=int, default=250)
    b.add_argument("--pages", type=int, default=10, help="pages (event streams or browsers) open")
    b.add_argument("--seconds", type=float, default=30)
    b.add_argument("--clients", choices=("sse", "browser"), default="sse",
                   help="sse: logged-in event-stream readers; browser: headless chromium pages")
    b.add_argument("--write-docs", action="store_true", help="record the figures in docs/performance.md")
    b.set_defaults(func=_cmd_bench)


def _cmd_user(args: argparse.Namespace) -> int:
    import re

    from gateway.service.config_check import NAME_PATTERN
    from tools.dashboard_setup import user_entry

    if not re.fullmatch(NAME_PATTERN, args.name):
        raise CliError(f"a user name is letters, digits, '_' and '-': {args.name!r}")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise CliError("the two passwords differ")
    if len(password) < 8:
        raise CliError("a password of at least 8 characters, please")
    print(user_entry(args.name, password), end="")
    return int(Exit.OK)


def _cmd_shots(args: argparse.Namespace) -> int:
    from tools.dashboard_shots import OUT, make_screenshots

    for path in make_screenshots(Path(args.out) if args.out else OUT):
        print(path)
    return int(Exit.OK)


def _cmd_bench(args: argparse.Namespace) -> int:
    from tools.bench.dashboard import run_dashboard_bench

    return run_dashboard_bench(nodes=args.nodes, pages=args.pages, seconds=args.seconds, clients=args.clients,
                               write_docs=args.write_docs)
