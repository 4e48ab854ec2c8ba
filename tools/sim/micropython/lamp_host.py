"""Many lamps on one drop of the virtual bus: the real lamp firmware, N nodes in one MicroPython process.

A bench of a whole bus (247 lamps) cannot give each lamp its own process on a
small machine: the paced bus would wake 247 interpreters for every character.
The host runs N complete nodes (``firmware.node.Node``: configuration, register
bank, lamp role, event log, boot record, each with its own flash folder and its
own ``ModbusSlave``) in one process, attached as ONE drop::

    micropython -X heapsize=16M -c "import lamp_host as h; h.main('host.json')"

with ``MICROPYPATH=<image>:.frozen:tools/sim/micropython`` (the sim lamp image: the very
``.mpy`` files a virtual node runs, and this folder). It is a tool, not part of the board:
a node runs one firmware; running many in one process is the virtual street's business.
``host.json``: ``{"uart": <pty>, "baud": 19200,
"lamps": [{"unit": 1, "flash": "/abs/node-1"}, ...], "stats": "/abs/host.stats.json"}``,
or ``"socket": "@name"`` instead of ``"uart"`` for a drop the bus wires with a
socket (``python -m tools.sim.bus --link socket``: ``socket_port.SocketPort``),
with ``"line_times": true`` for the bus's ``--line-times`` (a request's t3.5
then counts from its end on the line, as a lamp's UART would tell it); each
flash folder holds the node's ``config.json`` and ``sim.json`` as the virtual
street writes them. ``tools.sim.hosted_street`` starts it.

How a frame travels: the host reads the drop's bytes with a node's own read
loop (``firmware.modbus_slave.ModbusSlave`` on the virtual board's ``SimPort``:
the same silence rule) and frames them ONCE with the real slave
framer (:class:`HostFramer`, a ``protocols.modbus.slave.SlaveFramer`` whose unit
is the set of hosted units), as every node on a real line frames the same byte
stream alike. A request for a hosted unit is
handed, as its bytes, to that lamp's port; a broadcast to every lamp's port,
one lamp at a time, and to a lamp addressed meanwhile before its request
(``_feed_broadcasts`` says why).
Each lamp's own ``ModbusSlave`` reads it from there, frames it (one frame: cheap),
keeps the spec's t3.5 after the request,
runs it against its bank and writes its answer, which the host puts on the bus.
Frames for units not hosted, and answers, are consumed silently: no answer.

What runs per lamp: ``Node.main()`` unchanged (slave, sampler every
``sample_ms`` with the role's sampling, the common registers, event log and boot
record, ``diag.json`` every 10 s), the nodes started staggered over one sample
period so that their samplers are not all due at once (``tools.sim.hosted_street``
also gives them a longer ``sample_ms``, and says why). What does not run, and
why it does not change the bus timing:

- the board's world task (``world.json`` every second, ``control.json``): the
  physics still advance at every relay, dimmer and meter call of the sampler;
  only the snapshot file and the test steering file are missing, which the
  command bench does not use;
- ``gc.collect()`` in the node's sampler and the lamp's schedule evaluation:
  with one heap for N nodes each collection costs the whole heap, N times a
  second. The host collects once a second itself (timed: ``gc`` in the stats);
  per-node heap figures in ``diag.json`` are those of the shared heap;
- a unit change (``set_unit``) is not followed: the host keeps dispatching by
  the units it was started with.

Limits of the model (the stats file reports what was measured, so readers can
judge): a broadcast is executed by N lamps one after another on one CPU, where a
real bus has N CPUs working in parallel (``broadcast_us``: from the frame's
arrival until the last lamp has executed it; the gateway's 0.1 s turnaround
after a broadcast covers it when it is shorter); a request waits while the host
runs other lamps' samplers or a collection (``turnaround_us``: from the read
that completed a request, or its end on the line with line times, to its answer written, p50/p99/max); a real node
answers in 30-130 µs. A flash write (``diag.json``, counters, events) stops
every lamp of the host, not one: keep the flash folders on a RAM disk for
benches. When the machine takes the CPU away from the host, every lamp stops
at once, which never happens to a real bus (``lags``; on a loaded virtual
machine, 0.1-1 s stalls a few times a minute). No device image carries it.

Stats (``stats`` path, every 2 s, atomically): ``lamps``, ``frames``,
``broadcasts``, ``answered``, ``turnaround_us`` and ``broadcast_us``
(``{"n", "p50", "p99", "max"}``), ``gc`` (``{"n", "max_us", "total_us"}``),
``heap_free``, ``crc_errors``, ``bytes_dropped``, ``frames_other``, ``slow``
(answers 50 ms or more after their request) with ``slow_last`` (``[unit,
function, ms, s since start]`` of the last 8), ``lag_max_us`` (the worst
lateness of the event loop waking the host's once-a-second task) with ``lags``
(``[s since start, ms]`` of the last 8 of 50 ms or more).
"""

import asyncio
import gc
import json
import os
import sys
import time

from board import Board, SimPort  # the image installs boards/sim as `board`
from socket_port import SocketPort  # beside this file, on the host's MICROPYPATH

from firmware import node as node_module
from firmware.modbus_slave import ModbusSlave
from firmware.node import Node
from protocols.modbus.slave import SlaveFramer

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_STATS_MS = const(2000)
_GC_MS = const(1000)
_SAMPLES = const(4000)  # turnaround samples kept for the percentiles
_SLOW_US = const(50000)


class _Units:
    """The hosted units, as the framer's ``unit``: equal to each of them (the framer tests ``unit == self.unit``)."""

    def __init__(self, units):
        self.units = set(units)

    def __eq__(self, other):
        return other in self.units

    def __hash__(self):
        return 0  # never a key: it stands for several units


class HostFramer(SlaveFramer):
    """The slave framer for a set of units that hands each request, as its bytes, to ``host.dispatch``.

    It serves as the framer of the host's own ``ModbusSlave`` (the node's read
    loop, silence rule and hang-up detection, unchanged): ``next_request``
    dispatches every request it finds and returns None, so that slave never
    answers anything itself.
    """

    def __init__(self, units, host):
        SlaveFramer.__init__(self, min(units))
        self.unit = _Units(units)
        self._host = host

    def next_request(self):
        """Dispatch every complete request in the buffer; always None."""
        while True:
            n = self._scan()
            if n == 0:
                return
            i = self._head
            frame = bytes(self._buf[i:i + n])
            req = SlaveFramer.next_request(self)  # _scan() answers at once: the frame is found
            self._host.dispatch(req.unit, frame, self._host.arrival())


class _SharedHeap:
    """``gc`` as the hosted nodes see it: collecting is the host's business (one heap for every node)."""

    def collect(self):
        pass

    def mem_alloc(self):
        return gc.mem_alloc()

    def mem_free(self):
        return gc.mem_free()


class _Inbox:
    """One lamp's receive side: the frames the host found for it, one frame per read."""

    def __init__(self, host):
        self._host = host
        self._frames = []
        self._event = asyncio.Event()
        self._broadcast = False  # the frame handed out last was a broadcast
        self.arrived = 0  # ticks_us when the host read the end of the frame handed out last
        self.waiting = False

    def put(self, frame, arrived, broadcast):
        """Queue a frame for this lamp."""
        self._frames.append((frame, arrived, broadcast))
        self._event.set()

    async def readinto(self, buf):
        """The next frame into ``buf``; its length."""
        if self._broadcast:  # back for more: the lamp has executed the broadcast
            self._broadcast = False
            self._host.broadcast_done()
        while not self._frames:
            self.waiting = True
            self._event.clear()
            await self._event.wait()
        self.waiting = False
        frame, self.arrived, self._broadcast = self._frames.pop(0)
        n = len(frame)
        buf[0:n] = frame
        return n


class _LampPort:
    """The RS-485 port a hosted node gets from its board: frames from the host in, answers to the bus out."""

    silence_us = 1  # each read is one whole frame: any wait before it is a frame boundary

    def __init__(self, host):
        self._host = host
        self.stream = _Inbox(host)

    async def send(self, buf, n):
        """Put the answer on the bus (through the host's drop)."""
        await self._host.answer(self.stream.arrived, buf, n)


class HostedBoard(Board):
    """The virtual board of one hosted lamp: its flash folder, and a port that the host feeds."""

    def __init__(self, flash, host):
        here = os.getcwd()
        os.chdir(flash)  # the board reads world.json and control.json from its flash folder at power-up
        try:
            Board.__init__(self, flash + "/sim.json")
        finally:
            os.chdir(here)
        self._port = _LampPort(host)

    def open_rs485(self, baud):
        """The port the host feeds (the rate matters only to the bus's pacing)."""
        return self._port

    def tasks(self):
        """No world task: see the module docstring."""
        return ()


def _summary(values):
    if not values:
        return {"n": 0, "p50": 0, "p99": 0, "max": 0}
    ordered = sorted(values)
    n = len(ordered)
    return {"n": n, "p50": ordered[(n - 1) // 2], "p99": ordered[min(n - 1, (99 * n + 99) // 100 - 1)],
            "max": ordered[-1]}


class LampHost:
    """The host: N nodes, one drop, one framer (see the module docstring)."""

    def __init__(self, cfg):
        self.cfg = cfg
        if "socket" in cfg:
            self.port = SocketPort(cfg["socket"], cfg.get("baud", 19200), cfg.get("silence_us", 0),
                                   cfg.get("line_times", False))
        else:
            self.port = SimPort(cfg["uart"], cfg.get("baud", 19200), cfg.get("silence_us", 0))
        self.lamps = {}
        self.nodes = []
        self.frames = 0
        self.broadcasts = 0
        self.answered = 0
        self.turnaround = []
        self.broadcast_us = []
        self._bc_pending = 0
        self._bc_start = 0
        self._bc_queue = []  # [frame, arrived, units not given it yet] per broadcast, oldest first
        self._bc_wake = asyncio.Event()
        self.gc_n = 0
        self.gc_max_us = 0
        self.gc_total_us = 0
        self.framer = None
        self.slow = 0  # answers later than _SLOW_US
        self.slow_last = []  # [unit, function, ms, s since start] of the last few
        self.lag_max_us = 0  # the event loop's worst lateness waking a sleeping task
        self.lags = []  # [s since start, ms] of the last 8 lags of 50 ms or more
        self._t0 = time.ticks_ms()

    def arrival(self):
        """When the frame just read ended: on the line if the link says (``line_times``), else now."""
        return getattr(self.port.stream, "line_end", 0) or time.ticks_us()

    def broadcast_done(self):
        """A lamp has executed the broadcast(s) it was handed."""
        self._bc_pending -= 1
        if self._bc_pending == 0:
            _keep(self.broadcast_us, time.ticks_diff(time.ticks_us(), self._bc_start))

    async def answer(self, arrived, buf, n):
        """Write a lamp's answer to the bus (its slave kept t3.5 after the request); record the turnaround."""
        await self.port.send(buf, n)
        self.answered += 1
        took = time.ticks_diff(time.ticks_us(), arrived)
        _keep(self.turnaround, took)
        if took >= _SLOW_US:
            self.slow += 1
            _keep8(self.slow_last, [buf[0], buf[1], took // 1000, time.ticks_diff(time.ticks_ms(), self._t0) // 1000])

    def _build(self):
        # The nodes' own collections would each cost the whole shared heap: the host collects instead.
        node_module.gc = _SharedHeap()
        for lamp in self.cfg["lamps"]:
            board = HostedBoard(lamp["flash"], self)
            node = Node(board)
            role = sys.modules.get("firmware.roles." + node.config.role)
            if role is not None and hasattr(role, "gc"):
                role.gc = node_module.gc
            self.lamps[lamp["unit"]] = board.open_rs485(0).stream
            self.nodes.append(node)
            if len(self.nodes) % 16 == 0:
                gc.collect()

    async def run(self):
        """Build and start every node, then serve the bus until it hangs up."""
        self._build()
        # Started one after another across one sample period, as lamps powered up at different moments:
        # N samplers (and their periodic flash writes) due at the same instant would hold every request
        # up behind N samples.
        period = max(n.config.sample_ms for n in self.nodes)
        step = max(1, period // len(self.nodes))
        tasks = [asyncio.create_task(_start(n, i * step)) for i, n in enumerate(self.nodes)]
        inboxes = list(self.lamps.values())
        while not all(i.waiting for i in inboxes):
            for t in tasks:
                if t.done():
                    raise RuntimeError("a hosted node stopped while starting")
            await asyncio.sleep_ms(10)
        reader = ModbusSlave(self.port, min(self.lamps), None, self.cfg.get("baud", 19200))
        reader.framer = self.framer = HostFramer(list(self.lamps), self)
        self._chores = asyncio.create_task(self._housekeeping())
        self._feeder = asyncio.create_task(self._feed_broadcasts())
        print("streetedge lamp host ready lamps=%d" % len(self.nodes))
        await reader.run()

    def dispatch(self, unit, frame, arrived):
        """Hand a request to its lamp, a broadcast (unit 0) to every lamp (through the feeder, see below)."""
        self.frames += 1
        if unit == 0:
            self.broadcasts += 1
            if self._bc_pending == 0:
                self._bc_start = arrived
            self._bc_pending += len(self.lamps)
            self._bc_queue.append([frame, arrived, sorted(self.lamps)])
            self._bc_wake.set()
            return
        inbox = self.lamps[unit]
        for bc in self._bc_queue:  # broadcasts this lamp has not been given yet go first, in order
            if unit in bc[2]:
                bc[2].remove(unit)
                inbox.put(bc[0], bc[1], True)
        inbox.put(frame, arrived, False)

    async def _feed_broadcasts(self):
        """Give each broadcast to the lamps one at a time, the reader free to serve requests in between.

        Handed to every lamp at once, a broadcast would queue N lamps' executions
        ahead of any request that comes meanwhile (the read-back of the lamp
        that executed it first, 0.1 s later, waited up to 0.7 s behind the other
        246 in a stall). On a real bus each lamp executes it on its own CPU;
        here a lamp that is addressed gets its broadcasts first (``dispatch``).
        """
        queue = self._bc_queue
        while True:
            if not queue:
                self._bc_wake.clear()
                await self._bc_wake.wait()
                continue
            frame, arrived, units = queue[0]
            if units:
                self.lamps[units.pop(0)].put(frame, arrived, True)
                await asyncio.sleep_ms(0)  # that lamp runs next; a request read meanwhile is dispatched
            else:
                queue.pop(0)

    async def _housekeeping(self):
        next_stats = time.ticks_add(time.ticks_ms(), _STATS_MS)
        while True:
            t = time.ticks_us()
            await asyncio.sleep_ms(_GC_MS)
            lag = time.ticks_diff(time.ticks_us(), t) - _GC_MS * 1000
            self.lag_max_us = max(self.lag_max_us, lag)
            if lag >= _SLOW_US:
                _keep8(self.lags, [time.ticks_diff(time.ticks_ms(), self._t0) // 1000, lag // 1000])
            t = time.ticks_us()
            gc.collect()
            took = time.ticks_diff(time.ticks_us(), t)
            self.gc_n += 1
            self.gc_total_us += took
            self.gc_max_us = max(self.gc_max_us, took)
            if time.ticks_diff(time.ticks_ms(), next_stats) >= 0:
                next_stats = time.ticks_add(time.ticks_ms(), _STATS_MS)
                self.write_stats()

    def write_stats(self):
        """Write the stats file (atomically); see the module docstring."""
        path = self.cfg.get("stats")
        if not path:
            return
        framer = self.framer
        d = {
            "lamps": len(self.nodes),
            "frames": self.frames,
            "broadcasts": self.broadcasts,
            "answered": self.answered,
            "turnaround_us": _summary(self.turnaround),
            "broadcast_us": _summary(self.broadcast_us),
            "gc": {"n": self.gc_n, "max_us": self.gc_max_us, "total_us": self.gc_total_us},
            "slow": self.slow,
            "slow_last": self.slow_last,
            "lag_max_us": self.lag_max_us,
            "lags": self.lags,
            "heap_free": gc.mem_free(),
            "crc_errors": framer.crc_errors,
            "bytes_dropped": framer.bytes_dropped,
            "frames_other": framer.frames_other,
        }
        try:
            with open(path + ".tmp", "w") as f:
                json.dump(d, f)
            os.rename(path + ".tmp", path)
        except OSError:
            pass  # stats are best effort


async def _start(node, delay_ms):
    await asyncio.sleep_ms(delay_ms)
    await node.main()


def _keep8(values, v):
    if len(values) >= 8:
        values.pop(0)
    values.append(v)


def _keep(values, v):
    if len(values) >= _SAMPLES:
        values.pop(0)
    values.append(v)


def main(config_path):
    """Run the host described by ``config_path`` (JSON, see the module docstring) until the bus hangs up."""
    with open(config_path) as f:
        cfg = json.load(f)
    asyncio.run(LampHost(cfg).run())
