"""The daemon as a process: SIGTERM stops it cleanly, SIGKILL leaves its Will; it reconnects to a broker."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import cbor2

from gateway.service.daemon import Gateway
from protocols import senml
from tools.broker import LocalBroker, free_port

RUN = (
    "import asyncio, logging, sys; from pathlib import Path;"
    "from gateway.service.config import load_config; from gateway.service.daemon import run_gateway;"
    "logging.basicConfig(level=logging.INFO);"
    "asyncio.run(run_gateway(load_config(Path(sys.argv[1]))))"
)


def start_daemon(tmp_path: Path, sim, broker_url: str) -> tuple[subprocess.Popen[bytes], str]:
    """A gateway process whose bus device does not exist (polls fail; MQTT works)."""
    config = sim.config(str(tmp_path / "ttyMISSING"), broker_url)
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'site = "{config.site}"\ngateway = "{config.gateway}"\n[broker]\nurl = "{broker_url}"\nkeepalive = 10\n'
        f'[[bus]]\nname = "bus0"\ndevice = "{tmp_path / "ttyMISSING"}"\nparity = "N"\n'
        '[[node]]\nid = "lamp-1"\nbus = "bus0"\nunit = 1\n'
    )
    proc = subprocess.Popen([sys.executable, "-c", RUN, str(path)], stderr=subprocess.PIPE)
    return proc, f"streetedge/v1/{config.site}/{config.gateway}/state"


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


async def state_after(sub, online: bool) -> dict[str, object]:
    msg = await sub.wait(lambda m: cbor2.loads(m.payload)["online"] is online, within=30)
    state: dict[str, object] = cbor2.loads(msg.payload)
    return state


def test_sigterm_publishes_offline_state_and_exits_cleanly(tmp_path, mosquitto, sim, subscriber) -> None:
    """SIGTERM: retained {"online": false, "ts": ...} published by the gateway itself, exit status 0."""
    proc, topic = start_daemon(tmp_path, sim, mosquitto.url)
    try:
        sub = subscriber(mosquitto.host, mosquitto.port, topic)
        node = subscriber(mosquitto.host, mosquitto.port, topic.rsplit("/", 1)[0] + "/node/lamp-1/state")

        async def main() -> None:
            await state_after(sub, True)
            # polling starts once the session is up: stop only after its failures were seen (the node's death)
            await state_after(node, False)
            proc.send_signal(signal.SIGTERM)
            state = await state_after(sub, False)
            assert "ts" in state  # the gateway's own goodbye, not the broker's Will

        asyncio.run(main())
        assert proc.wait(20) == 0
        log = proc.stderr.read().decode() if proc.stderr else ""
        assert "gateway stopped" in log
        assert "bus bus0" in log or "ttyMISSING" in log or "offline" in log
    finally:
        stop_process(proc)


def test_sigkill_leaves_the_will(tmp_path, mosquitto, sim, subscriber) -> None:
    """A gateway that dies without a word: the broker publishes its retained Will {"online": false}."""
    proc, topic = start_daemon(tmp_path, sim, mosquitto.url)
    try:
        sub = subscriber(mosquitto.host, mosquitto.port, topic)

        async def main() -> None:
            await state_after(sub, True)
            proc.kill()
            state = await state_after(sub, False)
            assert set(state) == {"online", "session"}  # the Will: no ts, the session it closes

        asyncio.run(main())
    finally:
        stop_process(proc)


def test_reconnects_when_the_broker_comes_back(pty_pair, sim, subscriber) -> None:
    """Started with no broker, the gateway keeps polling, connects once one appears, and again after a restart."""
    gw_end, node_end = pty_pair
    port = free_port()
    config = sim.config(gw_end, f"mqtt://127.0.0.1:{port}", extra='[delivery]\nprofile = "senml"\n')
    gateway = Gateway(config)

    async def wait_for(predicate, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            assert time.monotonic() < deadline, "condition not reached in time"
            await asyncio.sleep(0.02)

    async def main() -> None:
        async with sim.serve(node_end, [sim.lamp(1)]):
            task = asyncio.create_task(gateway.run())
            # A poll's readings are handed on once the next request is on the wire: wait for the packs themselves.
            await wait_for(lambda: gateway.stats.packs_queued >= 3)
            assert not gateway.stats.broker_connected
            queued = gateway.stats.packs_queued
            assert gateway.stats.packs_acked == 0
            with LocalBroker("mosquitto", port=port) as broker:
                await wait_for(lambda: gateway.stats.broker_connected)
                # What was queued while the broker was away is delivered.
                await wait_for(lambda: gateway.stats.packs_acked >= queued)
            await wait_for(lambda: not gateway.stats.broker_connected)
            with LocalBroker("mosquitto", port=port) as broker:
                sub = subscriber(broker.host, broker.port, gateway.topics.data("lamp-1"))
                await wait_for(lambda: gateway.stats.broker_connects >= 2)
                await sub.wait(lambda m: True, within=30)
                gateway.stop()
                await asyncio.wait_for(task, 20)
            assert gateway.stats.queue_drops == 0

    asyncio.run(main())


class SlowHandshake:
    """A loopback relay to a broker that holds back the broker's first answer (the CONNACK) for ``hold`` s.

    It stands for a broker far away: the session opens well after the gateway started.
    """

    def __init__(self, broker_port: int, hold: float) -> None:
        self.broker_port = broker_port
        self.hold = hold
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> SlowHandshake:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        broker_r, broker_w = await asyncio.open_connection("127.0.0.1", self.broker_port)

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter, hold: float) -> None:
            first = True
            while data := await r.read(4096):
                if first and hold:
                    await asyncio.sleep(hold)
                first = False
                w.write(data)
                await w.drain()
            w.close()

        try:
            await asyncio.gather(pipe(client_r, broker_w, 0.0), pipe(broker_r, client_w, self.hold))
        except ConnectionError:
            pass  # either side went away: the relay ends with it
        finally:
            broker_w.close()
            client_w.close()


def test_first_polls_go_out_live_when_the_session_opens_late(pty_pair, sim, mosquitto, subscriber) -> None:
    """Polling waits for the first session: with a slow broker handshake, no poll of this start is backlog."""
    gw_end, node_end = pty_pair
    lamp = sim.lamp(1)
    first_seq = lamp.values["seq"] + 1  # the lamp counts up on every read

    async def main() -> None:
        async with SlowHandshake(mosquitto.port, hold=1.0) as relay, sim.serve(node_end, [lamp]):
            config = sim.config(gw_end, f"mqtt://127.0.0.1:{relay.port}", interval=0.05,
                                extra='[delivery]\nprofile = "senml"\n')
            gateway = Gateway(config)
            sub = subscriber(mosquitto.host, mosquitto.port, gateway.topics.data("lamp-1"))
            task = asyncio.create_task(gateway.run())
            try:
                messages = [await sub.wait(lambda m: True, within=30) for _ in range(3)]
            finally:
                gateway.stop()
                await asyncio.wait_for(task, 30)
        records = [senml.resolve(senml.from_labels(cbor2.loads(m.payload))) for m in messages]
        seqs = [next(r["v"] for r in pack if r["n"].endswith(":seq")) for pack in records]
        historical = [dict(getattr(m.properties, "UserProperty", []) or []).get("historical") for m in messages]
        assert historical == [None, None, None], "a poll of this start went out as backlog"
        assert seqs == [first_seq, first_seq + 1, first_seq + 2]

    asyncio.run(main())
