"""MQTT over TLS against Mosquitto: the broker verified, the gateway known by its client certificate, ACLs.

The test makes its own CA, a server certificate for 127.0.0.1 and client certificates (``cryptography``);
Mosquitto requires a client certificate and takes its CN as the user name that the ACL file speaks of.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import cbor2
import msgspec
import paho.mqtt.client as paho
import pytest

from gateway.service.daemon import Gateway
from tools.broker import LocalBroker
from tools.pki import Pki

GATEWAY_CN = "streetedge-test-site-gw-1"
CONSUMER_CN = "consumer"


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder the broker can read after it dropped root privileges (pytest's own are private)."""
    folder = Path(tempfile.mkdtemp(prefix="streetedge-tls-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pki(shared: Path) -> Pki:
    folder = shared / "pki"
    folder.mkdir()
    folder.chmod(0o755)
    return Pki(folder)


@pytest.fixture
def tls_broker(pki: Pki, shared: Path) -> Iterator[LocalBroker]:
    """Mosquitto with a TLS listener that requires client certificates, and an ACL per identity."""
    cert, key = pki.issue("127.0.0.1", server=True)
    acl = shared / "acl"
    acl.write_text(
        f"user {GATEWAY_CN}\ntopic readwrite streetedge/v1/test-site/gw-1/#\n\n"
        f"user {CONSUMER_CN}\ntopic read streetedge/v1/#\n"
    )
    acl.chmod(0o644)
    extra = (
        f"cafile {pki.ca}\ncertfile {cert}\nkeyfile {key}\nrequire_certificate true\n"
        f"use_identity_as_username true\nacl_file {acl}\n"
    )
    with LocalBroker("mosquitto", extra_config=extra) as broker:
        yield broker


class TlsSubscriber:
    """A paho client over TLS with a client certificate, recording what arrives on ``topic``."""

    def __init__(self, broker: LocalBroker, pki: Pki, topic: str) -> None:
        cert, key = pki.issue(CONSUMER_CN)
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.tls_set(ca_certs=str(pki.ca), certfile=str(cert), keyfile=str(key))
        self.messages: queue.Queue[paho.MQTTMessage] = queue.Queue()
        subscribed: queue.Queue[bool] = queue.Queue()
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.client.on_subscribe = lambda *_a: subscribed.put(True)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        subscribed.get(timeout=10)

    async def wait(self, within: float = 30.0) -> paho.MQTTMessage:
        deadline = time.monotonic() + within
        while True:
            try:
                return self.messages.get_nowait()
            except queue.Empty:
                assert time.monotonic() < deadline, "no message arrived in time"
                await asyncio.sleep(0.02)

    def close(self) -> None:
        # Disconnect first: it wakes paho's thread, which would otherwise sleep out its 1 s select.
        self.client.disconnect()
        self.client.loop_stop()


def tls_config(sim: Any, device: str, broker: LocalBroker, tls: str, outbox: Path, site: str = "test-site") -> Any:
    """A gateway configuration on ``mqtts://127.0.0.1:<port>`` with the given ``tls = {...}`` table."""
    config = sim.config(device, extra=f'[delivery]\noutbox = "{outbox}"\n')
    text = (f'site = "{site}"\ngateway = "gw-1"\n[broker]\nurl = "mqtts://127.0.0.1:{broker.port}"\n'
            f"client_id = \"{GATEWAY_CN}\"\nkeepalive = 10\ntls = {tls}\n")
    from gateway.service.config import parse_config

    broker_part = parse_config(text + f'[delivery]\noutbox = "{outbox}"\n').broker
    return msgspec.structs.replace(config, broker=broker_part, site=site)


@contextlib.asynccontextmanager
async def running(gateway: Gateway) -> AsyncIterator[None]:
    task = asyncio.create_task(gateway.run())
    try:
        yield
    finally:
        gateway.stop()
        async with asyncio.timeout(30):
            await task


def test_the_gateway_publishes_over_tls_with_its_client_certificate(
    tls_broker, pki, pty_pair, sim, tmp_path
) -> None:
    """Broker verified against the test CA, gateway known by its certificate: data reaches a TLS consumer."""
    gw_end, node_end = pty_pair
    cert, key = pki.issue(GATEWAY_CN)
    config = tls_config(sim, gw_end, tls_broker, f'{{ ca = "{pki.ca}", cert = "{cert}", key = "{key}" }}',
                        tmp_path / "outbox.db")
    config = msgspec.structs.replace(config, delivery=msgspec.structs.replace(config.delivery, profile="senml"))
    gateway = Gateway(config)
    consumer = TlsSubscriber(tls_broker, pki, "streetedge/v1/test-site/gw-1/data/#")

    async def main() -> None:
        async with sim.serve(node_end, [sim.lamp(1)]), running(gateway):
            msg = await consumer.wait()
            assert msg.topic == "streetedge/v1/test-site/gw-1/data/lamp-1"
            assert isinstance(cbor2.loads(msg.payload), list)
            assert gateway.uplink is not None and gateway.uplink.url is not None and gateway.uplink.url.tls

    try:
        asyncio.run(main())
    finally:
        consumer.close()


@pytest.mark.parametrize("case", ["wrong CA", "no client certificate"])
def test_a_gateway_that_cannot_prove_or_verify_stays_off_and_keeps_its_data(
    case: str, tls_broker, pki, pty_pair, sim, tmp_path, caplog
) -> None:
    """A broker it cannot verify, or no certificate of its own: no session; polls stay in the outbox."""
    gw_end, node_end = pty_pair
    if case == "wrong CA":
        other = tmp_path / "other"
        other.mkdir()  # only the gateway reads these
        stranger = Pki(other, "another CA")
        cert, key = stranger.issue(GATEWAY_CN)
        tls = f'{{ ca = "{stranger.ca}", cert = "{cert}", key = "{key}" }}'
    else:
        tls = f'{{ ca = "{pki.ca}" }}'
    gateway = Gateway(tls_config(sim, gw_end, tls_broker, tls, tmp_path / "outbox.db"))

    async def main() -> None:
        async with sim.serve(node_end, [sim.lamp(1)]), running(gateway):
            deadline = time.monotonic() + 60
            while not ("unreachable" in caplog.text and gateway.stats.outbox_stored >= 3):
                assert time.monotonic() < deadline, "no refused connection and stored polls in time"
                await asyncio.sleep(0.05)
            assert not gateway.stats.broker_connected
            assert gateway.stats.broker_connects == 0
            assert gateway.stats.packs_acked == 0

    with caplog.at_level(logging.WARNING, logger="gateway.mqtt.uplink"):
        asyncio.run(main())
    if case == "wrong CA":
        assert "CERTIFICATE_VERIFY_FAILED" in caplog.text or "certificate verify failed" in caplog.text


def test_the_acl_keeps_a_gateway_inside_its_own_topics(tls_broker, pki, pty_pair, sim, tmp_path) -> None:
    """A gateway whose certificate belongs to another site's topics: the broker refuses its data, nothing is
    acknowledged, nothing leaves the outbox."""
    gw_end, node_end = pty_pair
    cert, key = pki.issue(GATEWAY_CN)
    config = tls_config(sim, gw_end, tls_broker, f'{{ ca = "{pki.ca}", cert = "{cert}", key = "{key}" }}',
                        tmp_path / "outbox.db", site="someone-else")
    gateway = Gateway(config)
    consumer = TlsSubscriber(tls_broker, pki, "streetedge/v1/#")

    async def main() -> None:
        async with sim.serve(node_end, [sim.lamp(1)]), running(gateway):
            deadline = time.monotonic() + 60
            while gateway.stats.outbox_stored < 10:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            assert gateway.stats.packs_acked == 0
            assert gateway.stats.outbox_depth >= 10
            assert consumer.messages.empty()

    try:
        asyncio.run(main())
    finally:
        consumer.close()
