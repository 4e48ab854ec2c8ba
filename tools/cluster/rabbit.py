"""Three RabbitMQ nodes on loopback ports, joined into one cluster: started, killed, restarted by PID.

RabbitMQ (Debian ``rabbitmq-server``) is the clustered broker the tests and ``streetedge bench
cluster`` run against (``docs/broker-cluster.md`` says why this one). Every node is a separate
Erlang VM (``beam.smp``) with its own node name, distribution port, data directory, configuration
and log; node 0 boots first, then the others in parallel (a first boot takes ~10 s). The nodes find each other
through RabbitMQ's ``classic_config`` peer discovery (node 0 the seed the others join) and form one
cluster at first boot; a node
killed with SIGKILL and started again rejoins it from its own data directory.

Each cluster runs its own ``epmd`` (the Erlang port mapper) on a port of its own, started and
stopped by PID, so that two clusters (two test workers) never share or stop each other's.

Per node: an MQTT listener (3.1.1: RabbitMQ 3.10 closes an MQTT 5 CONNECT) and an AMQP 0-9-1
listener, anonymous MQTT allowed (loopback only), persistent MQTT sessions on quorum queues
(``mqtt.durable_queue_type = quorum``) so that they survive the loss of a node. MQTT topics
map to routing keys of the ``amq.topic`` exchange with ``/`` turned into ``.``.

By hand: ``python -m tools.cluster.rabbit`` prints the nodes' URLs and beam PIDs (JSON) and runs
until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from tools.broker import free_port

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
BOOT_TIMEOUT = 120.0
"""Seconds a node may take to open its MQTT listener (first boot ~10 s alone, several times that under load)."""


class ClusterError(RuntimeError):
    """The cluster could not be started, or a node did not come up."""


def epmd_path() -> str:
    """The ``epmd`` executable (comes with Erlang, a dependency of ``rabbitmq-server``)."""
    found = shutil.which("epmd") or next((str(p) for p in Path("/usr/lib/erlang").glob("erts-*/bin/epmd")), None)
    if found is None:
        raise ClusterError("epmd not found: install the Debian package rabbitmq-server (tools/install_system_deps.sh)")
    return found


@dataclass
class RabbitNode:
    """One node of the cluster: its name, ports and directory; its process while it runs."""

    index: int
    name: str
    mqtt_port: int
    amqp_port: int
    dist_port: int
    home: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def mqtt_url(self) -> str:
        """``mqtt://127.0.0.1:PORT``, for a gateway's ``[broker] url`` list."""
        return f"mqtt://127.0.0.1:{self.mqtt_port}"

    @property
    def amqp_url(self) -> str:
        """``amqp://guest:guest@127.0.0.1:PORT/`` (guest may log in from loopback only)."""
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    @property
    def pid_file(self) -> Path:
        return self.home / "rabbit.pid"

    def beam_pid(self) -> int | None:
        """PID of the node's Erlang VM (the broker itself, not its launcher script), or None if not running."""
        if self.process is None or self.process.poll() is not None:
            return None
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class RabbitCluster:
    """Three (or ``size``) RabbitMQ nodes on free loopback ports, clustered; a context manager.

    Args:
        size: number of nodes.
        directory: where node data and logs go; None for a temporary directory removed at stop.
    """

    def __init__(self, size: int = 3, directory: Path | None = None) -> None:
        if size < 1:
            raise ValueError("a cluster needs at least one node")
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="streetedge-cluster-")
            directory = Path(self._tmp.name)
        self.directory = directory
        self.epmd_port = free_port()
        self._epmd: subprocess.Popen[bytes] | None = None
        run = secrets.token_hex(3)  # node names unique per cluster, in case an epmd is ever shared
        self.nodes = [
            RabbitNode(i, f"se{run}n{i}@localhost", free_port(), free_port(), free_port(), directory / f"node{i}")
            for i in range(size)
        ]
        self.cookie = secrets.token_hex(16)

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self, timeout: float = BOOT_TIMEOUT) -> RabbitCluster:
        """Start epmd, node 0, then the other nodes in parallel; return once each node's MQTT listener answers and
        they formed one cluster. :class:`ClusterError` (with the tail of the failing node's log) otherwise."""
        (self.directory / ".erlang.cookie").write_text(self.cookie)
        (self.directory / ".erlang.cookie").chmod(0o400)
        self._epmd = subprocess.Popen(
            [epmd_path(), "-address", "127.0.0.1", "-port", str(self.epmd_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            self._wait_epmd(timeout)  # a node booting before epmd listens cannot register its name
            for node in self.nodes:
                self._configure(node)
            # The seed boots alone first: peers that reach it mid-boot stalled its start for minutes at times.
            seed, *others = self.nodes
            self._launch(seed)
            self.wait_ready(seed, timeout)
            for node in others:
                self._launch(node)
            with ThreadPoolExecutor(max(1, len(others))) as pool:
                list(pool.map(lambda n: self.wait_ready(n, timeout), others))
            self._wait_clustered(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every node (SIGTERM to its VM, SIGKILL if it lingers) and epmd, by PID; remove the directory."""
        for node in self.nodes:
            self._terminate(node)
        if self._epmd is not None:
            self._epmd.terminate()
            try:
                self._epmd.wait(10)
            except subprocess.TimeoutExpired:
                self._epmd.kill()
                self._epmd.wait()
            self._epmd = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> RabbitCluster:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- faults ----------------------------------------------------------------------------------------------

    def kill(self, index: int) -> int:
        """SIGKILL node ``index``'s Erlang VM (no goodbye to anyone); returns the PID killed."""
        node = self.nodes[index]
        pid = node.beam_pid()
        if pid is None:
            raise ClusterError(f"node {index} is not running")
        os.kill(pid, signal.SIGKILL)
        assert node.process is not None
        node.process.wait(30)  # the launcher ends with its VM
        node.process = None
        return pid

    def restart(self, index: int, timeout: float = BOOT_TIMEOUT) -> None:
        """Start node ``index`` again from its data directory and wait until its MQTT listener answers."""
        node = self.nodes[index]
        if node.running:
            raise ClusterError(f"node {index} is running already")
        node.pid_file.unlink(missing_ok=True)
        self._launch(node)
        self.wait_ready(node, timeout)

    # -- queries ---------------------------------------------------------------------------------------------

    @property
    def mqtt_urls(self) -> list[str]:
        """Every node's MQTT URL, in node order."""
        return [node.mqtt_url for node in self.nodes]

    @property
    def amqp_urls(self) -> list[str]:
        """Every node's AMQP URL, in node order."""
        return [node.amqp_url for node in self.nodes]

    def ctl(self, index: int, *args: str, timeout: float = 60.0) -> str:
        """Run ``rabbitmqctl`` against node ``index``; its standard output (ClusterError if it fails)."""
        node = self.nodes[index]
        done = subprocess.run(
            [str(RABBIT_BIN / "rabbitmqctl"), "-n", node.name, *args],
            env=self._env(node), capture_output=True, timeout=timeout, check=False,
        )
        if done.returncode:
            raise ClusterError(f"rabbitmqctl {' '.join(args)} on {node.name}: {done.stderr.decode(errors='replace')}")
        return done.stdout.decode()

    def wait_ready(self, node: RabbitNode, timeout: float = BOOT_TIMEOUT) -> None:
        """Wait until the node's MQTT listener takes a connection (the broker app is up)."""
        deadline = time.monotonic() + timeout
        while True:
            if not node.running:
                raise ClusterError(f"node {node.name} exited during start-up:\n{self.log_tail(node)}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", node.mqtt_port), 1.0):
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"node {node.name} not up in {timeout:.0f} s:\n{self.log_tail(node)}")
            time.sleep(0.2)

    def _wait_epmd(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.epmd_port), 1.0):
                return
            if self._epmd is None or self._epmd.poll() is not None:
                raise ClusterError(f"epmd exited at start (port {self.epmd_port} taken?)")
            if time.monotonic() > deadline:
                raise ClusterError(f"epmd not listening on {self.epmd_port} in {timeout:.0f} s")
            time.sleep(0.05)

    def log_tail(self, node: RabbitNode, lines: int = 30) -> str:
        """The end of a node's log, for error messages."""
        logs = [*sorted((node.home / "log").glob("*.log")), node.home / "stdout.log"]
        logs = [p for p in logs if p.exists()]
        text = "\n".join(p.read_text(errors="replace") for p in logs)
        return "\n".join(text.splitlines()[-lines:])

    # -- internals -------------------------------------------------------------------------------------------

    def _configure(self, node: RabbitNode) -> None:
        node.home.mkdir(parents=True, exist_ok=True)
        # Node 0 is the seed: it lists only itself and boots alone; the others list it and retry until it is up,
        # so parallel first boots never form two clusters (each node giving up on the others at once).
        seed = self.nodes[0]
        peers = "\n".join(
            f"cluster_formation.classic_config.nodes.{i + 1} = {n.name}"
            for i, n in enumerate([seed] if node is seed else [seed, node])
        )
        (node.home / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{node.amqp_port}\n"
            f"mqtt.listeners.tcp.1 = 127.0.0.1:{node.mqtt_port}\n"
            "mqtt.allow_anonymous = true\n"
            "mqtt.durable_queue_type = quorum\n"
            "cluster_formation.peer_discovery_backend = classic_config\n"
            f"{peers}\n"
            # No random wait before discovery (3.10 waits 5-60 s by default): the seed settles who forms it.
            "cluster_formation.randomized_startup_delay_range.min = 0\n"
            "cluster_formation.randomized_startup_delay_range.max = 0\n"
            "cluster_formation.discovery_retry_limit = 600\n"
            "cluster_formation.discovery_retry_interval = 500\n"
            "log.console = false\n"
            "log.file.level = warning\n"
        )
        (node.home / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")

    def _env(self, node: RabbitNode) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            HOME=str(self.directory),  # where the Erlang cookie is, for the VM and rabbitmqctl alike
            RABBITMQ_NODENAME=node.name,
            RABBITMQ_DIST_PORT=str(node.dist_port),
            RABBITMQ_MNESIA_BASE=str(node.home / "mnesia"),
            RABBITMQ_LOG_BASE=str(node.home / "log"),
            RABBITMQ_CONFIG_FILE=str(node.home / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(node.home / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(node.home / "enabled_plugins"),
            RABBITMQ_PID_FILE=str(node.pid_file),
            RABBITMQ_CONF_ENV_FILE=str(node.home / "rabbitmq-env.conf"),
            ERL_EPMD_ADDRESS="127.0.0.1",
            ERL_EPMD_PORT=str(self.epmd_port),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        return env

    def _launch(self, node: RabbitNode) -> None:
        log = (node.home / "stdout.log").open("ab")
        node.process = subprocess.Popen(
            [str(RABBIT_BIN / "rabbitmq-server")], env=self._env(node), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()

    def _wait_clustered(self, timeout: float) -> None:
        """Every node lists every other as running (peer discovery joins them during boot)."""
        deadline = time.monotonic() + timeout
        names = {n.name for n in self.nodes}
        while True:
            status = self.ctl(0, "cluster_status", "--formatter", "json")
            with contextlib.suppress(ValueError, AttributeError):
                if names <= set(json.loads(status).get("running_nodes", [])):
                    return
            if time.monotonic() > deadline:
                raise ClusterError(f"nodes did not form one cluster in {timeout:.0f} s: {status}")
            time.sleep(1.0)

    def _terminate(self, node: RabbitNode) -> None:
        process, node.process = node.process, None
        if process is None or process.poll() is not None:
            return
        pid = None
        with contextlib.suppress(OSError, ValueError):
            pid = int(node.pid_file.read_text().strip())
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid if pid is not None else process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid if pid is not None else process.pid, signal.SIGKILL)
            process.wait(30)


def main(argv: list[str] | None = None) -> int:
    """``python -m tools.cluster.rabbit``: run a cluster until Ctrl-C or SIGTERM, printing its URLs as JSON."""
    import argparse
    import json as json_module

    parser = argparse.ArgumentParser(description="three RabbitMQ nodes on loopback, clustered, until Ctrl-C")
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with RabbitCluster(args.nodes) as cluster:
        print(json_module.dumps({"mqtt": cluster.mqtt_urls, "amqp": cluster.amqp_urls,
                                 "beam_pids": [n.beam_pid() for n in cluster.nodes]}), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
