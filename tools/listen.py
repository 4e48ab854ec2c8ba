"""``streetedge listen``: a gateway's live upstream data, either profile, as SenML-JSON lines.

Any consumer can pipe it: every data message becomes one or more lines, each a
complete SenML-JSON pack (RFC 8428 section 5) of one poll, whatever profile
the gateway publishes (SenML-CBOR packs on ``<root>/data/<node>``, or compact
messages on ``<root>/compact``, read against the retained gateway birth they
name)::

    streetedge listen --broker mqtt://127.0.0.1:1883 --site district-7 --gateway cabinet-12
    streetedge listen --broker mqtt://127.0.0.1:1883 --resolved | jq .

Without ``--site``/``--gateway`` it listens to every gateway on the broker.
``--resolved`` prints resolved records (section 4.6: full names, absolute
times) instead of packs. Messages that are not data (births, states, events,
results) are read for what they tell (births) but not printed. A payload that
cannot be decoded is reported on standard error, one line, and listening goes on.
"""

from __future__ import annotations

import queue
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import cbor2
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gateway.delivery import compact
from gateway.service.config_uplink import parse_url
from protocols import senml

PREFIX = "streetedge/v1"


@dataclass
class Listener:
    """Turns a gateway's upstream messages into SenML-JSON lines (no I/O: feed it, print what it returns).

    Args:
        resolved: print resolved records rather than packs.
    """

    resolved: bool = False
    births: dict[tuple[str, bytes], dict[str, Any]] = field(default_factory=dict)
    """Gateway births seen, by (topic root, birth id)."""

    def feed(self, topic: str, payload: bytes) -> list[str]:
        """The lines for one message (none for messages that are not data).

        Raises ValueError (a DecodeError, CompactError or CBOR error is one) naming what is wrong with a
        data payload, or a compact message whose gateway birth was never seen.
        """
        root, kind, rest = split_topic(topic)
        if kind == "birth" and not rest:
            body = _cbor(payload)
            if isinstance(body, dict) and isinstance(body.get("birth"), bytes):
                self.births[(root, body["birth"])] = body
            return []
        if kind == "data" and rest:
            packs = [senml.from_labels(_cbor(payload))]
        elif kind == "compact" and not rest:
            birth_id = self.birth_of(payload)
            birth = self.births.get((root, birth_id))
            if birth is None:
                raise ValueError(f"compact message for birth {birth_id.hex()}, never seen on {root}/birth")
            packs = compact.to_senml(payload, birth)
        else:
            return []
        if self.resolved:
            return [senml.encode_json(senml.resolve(pack)) for pack in packs if pack]
        return [senml.encode_json(pack) for pack in packs if pack]


    @staticmethod
    def birth_of(payload: bytes) -> bytes:
        """The id of the gateway birth a compact message refers to; ValueError if it is not one."""
        item = _cbor(payload)
        if not (isinstance(item, list) and len(item) == 6 and isinstance(item[3], bytes)):
            raise ValueError("not a compact message ([version, seq, flags, birth, t0, body])")
        return item[3]


def split_topic(topic: str) -> tuple[str, str, str]:
    """``streetedge/v1/<site>/<gw>/<kind>[/<rest>]`` -> (root, kind, rest); ("", "", "") for other topics."""
    parts = topic.split("/")
    if len(parts) < 5 or "/".join(parts[:2]) != PREFIX:
        return "", "", ""
    return "/".join(parts[:4]), parts[4], "/".join(parts[5:])


def _cbor(payload: bytes) -> Any:
    try:
        return cbor2.loads(payload)
    except (cbor2.CBORDecodeError, ValueError, EOFError) as exc:
        raise ValueError(f"not CBOR: {exc}") from None


def listen(
    broker: str, *, site: str | None = None, gateway: str | None = None, resolved: bool = False,
    count: int | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
    ready: Callable[[str], None] | None = None,
) -> int:
    """Print the live data of one gateway (or all) until interrupted, or until ``count`` lines.

    ``ready`` is called with the topic filter once the broker confirmed the subscription (the CLI says so
    on standard error, so that standard output carries data only). Returns the number of payloads that
    could not be decoded. Raises ValueError for a bad broker URL and OSError when the broker cannot be
    reached.
    """
    url = parse_url(broker)
    topic = f"{PREFIX}/{site or '+'}/{gateway or '+'}/#"
    inbox: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    if url.tls:
        client.tls_set_context(ssl.create_default_context())

    def on_connect(c: paho.Client, _u: object, _f: object, reason: Any, _p: object) -> None:
        if not reason.is_failure:
            c.subscribe(topic, qos=1)

    def on_subscribe(_c: paho.Client, _u: object, _mid: int, _codes: object, _p: object) -> None:
        if ready is not None:
            ready(topic)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = lambda _c, _u, msg: inbox.put((msg.topic, bytes(msg.payload)))
    client.connect(url.host, url.port, keepalive=30)
    client.loop_start()
    listener = Listener(resolved=resolved)
    printed = bad = 0
    try:
        while count is None or printed < count:
            item = inbox.get()
            if item is None:
                break
            topic_name, payload = item
            try:
                lines = listener.feed(topic_name, payload)
            except ValueError as exc:
                bad += 1
                print(f"streetedge listen: {topic_name}: {exc}", file=err, flush=True)
                continue
            for line in lines:
                print(line, file=out, flush=True)
                printed += 1
    finally:
        client.loop_stop()
        client.disconnect()
    return bad
