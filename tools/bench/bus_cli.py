"""``streetedge bench bus``: its arguments and its handler (the bench itself is :mod:`tools.bench.bus`)."""

from __future__ import annotations

import argparse
from typing import Any


def add_bus_parser(bench: Any) -> None:
    """Register ``bus`` on the ``bench`` sub-parsers; the bench's module loads only when the command runs."""
    b = bench.add_parser("bus", help="RS-485: useful readings/s per bus vs the line-rate limit, poll interval")
    b.add_argument("--nodes", type=int, default=32, help="lamps on the bus (hosted, real firmware)")
    b.add_argument("--baud", type=int, default=19200, help="bit rate of the paced line")
    b.add_argument("--seconds", type=float, default=60.0, help="how long to poll after every lamp's first poll")
    b.add_argument("--link", choices=("socket", "pty"), default="socket",
                   help="how the lamp hosts are wired to the bus process (default socket)")
    b.add_argument("--hosts", type=int, default=None, help="lamp host processes (default: 62 lamps each at most)")
    b.add_argument("--lamp-hosts", choices=("realtime", "ordinary"), default="realtime",
                   help="the lamp hosts' scheduling: SCHED_FIFO (default, as root) or ordinary at nice 0")
    b.add_argument("--sample-ms", type=int, default=None, help="each lamp's sampling period in the host (ms)")
    b.add_argument("--gateway-fifo", type=int, default=0, metavar="PRIORITY",
                   help="run the poller under SCHED_FIFO at this priority (default 0: ordinary)")
    b.add_argument("--answers-to", choices=("master", "all"), default="master",
                   help="the drops a lamp's answer reaches on the virtual bus (default: the gateway's only)")
    b.add_argument("--line-times", action=argparse.BooleanOptionalAction, default=True,
                   help="the lamp hosts' links carry line times, as a lamp's UART knows them (default on)")
    b.add_argument("--write-docs", action="store_true", help="record the figures in docs/performance.md")
    b.set_defaults(func=_cmd_bench_bus)


def _cmd_bench_bus(args: argparse.Namespace) -> int:
    from tools.bench.bus import run_bus_bench

    code: int = run_bus_bench(nodes=args.nodes, baud=args.baud, seconds=args.seconds, write_docs=args.write_docs,
                              link=args.link, hosts=args.hosts, lamp_hosts=args.lamp_hosts,
                              sample_ms=args.sample_ms, gateway_fifo=args.gateway_fifo, answers_to=args.answers_to,
                              line_times=args.line_times)
    return code
