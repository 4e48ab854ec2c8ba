"""The local broker starts on a free port and carries QoS 1 messages, in both kinds."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
import pytest

from tools.broker import LocalBroker, mosquitto_path


@pytest.mark.parametrize("kind", ["mosquitto", "amqtt"])
def test_broker_carries_a_qos1_message(kind: str) -> None:
    """An independent client (paho) subscribes and receives what it published."""
    if kind == "mosquitto":
        assert mosquitto_path(), "mosquitto missing"
    with LocalBroker(kind) as broker:  # type: ignore[arg-type]
        version = mqtt.MQTTv5 if broker.protocol == "5" else mqtt.MQTTv311
        got = threading.Event()
        payloads: list[bytes] = []
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=version)

        def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
            payloads.append(msg.payload)
            got.set()

        client.on_message = on_message
        client.connect(broker.host, broker.port)
        client.loop_start()
        try:
            client.subscribe("t/#", qos=1)[0]
            info = None
            for _ in range(50):  # the subscription may not be active yet: publish until received
                info = client.publish("t/x", b"\x01\x02", qos=1)
                if got.wait(0.2):
                    break
            assert info is not None
            assert payloads and payloads[0] == b"\x01\x02"
        finally:
            # Disconnect first: it wakes paho's thread, which would otherwise sleep out its 1 s select.
            client.disconnect()
            client.loop_stop()
