"""The gateway's MQTT topic namespace, stated once.

Everything a gateway publishes or listens to lives under one root per site and
gateway, ``streetedge/v1/<site>/<gateway>``:

===========================  =========  ==============================================
topic                        direction  payload (CBOR)
===========================  =========  ==============================================
``<root>/state``             up         ``{"online": bool, "session": n, "ts": epoch}``,
                                        retained; the broker publishes ``{"online":
                                        false, "session": n}`` as the gateway's Will
                                        (its death certificate) when it vanishes
``<root>/birth``             up         the gateway birth: node table and schemas,
                                        retained (:mod:`gateway.delivery.birth`)
``<root>/birth/<node id>``   up         a node birth: schema, firmware, capabilities,
                                        retained
``<root>/data/<node id>``    up         SenML profile: one SenML pack per poll
``<root>/compact``           up         compact profile: many polls per message
                                        (:mod:`gateway.delivery.compact`)
``<root>/delivery``          up         outbox counters (stored, dropped, backlog),
                                        retained
``<root>/event/<node id>``   up         a node's events (from its event log, analytics
                                        flags, the steps of its update), SenML
``<root>/node/<id>/state``   up         ``{"online": bool, "ts": epoch, "error": str}``,
                                        retained; published when a node answers for
                                        the first time, goes offline (its death
                                        message, with the last error) or comes back
``<root>/cmd``               down       a command map (see :mod:`gateway.commands.parse`)
``<root>/result``            up         the result of a command, keyed by its ``id``
``streetedge/v1/host``       down       ``{"online": true, "id": str}`` from a consumer
                                        that (re)started: every gateway republishes its
                                        births (see :data:`HOST`)
===========================  =========  ==============================================

Site, gateway and node ids are restricted by the configuration to letters,
digits, ``_`` and ``-``, so they never carry MQTT wildcards or separators.
"""

from __future__ import annotations

import cbor2

VERSION = "v1"
"""Namespace version; bumped when a topic or payload changes incompatibly."""
HOST = f"streetedge/{VERSION}/host"
"""Where a consumer announces that it came online, so that gateways publish their births again.

Births are retained, but a consumer cannot count on retained messages: a clustered broker may keep
them on the node they were published to only (RabbitMQ), a wildcard subscription may not get them,
and an AMQP queue never does. Sparkplug's answer, taken here: the consumer announces itself and
every gateway answers with its births, live. Three levels, so no gateway's topics can match it."""


class Topics:
    """The topic names of one gateway.

    Args:
        site: site id from the configuration.
        gateway: gateway id from the configuration.
    """

    def __init__(self, site: str, gateway: str) -> None:
        self.root = f"streetedge/{VERSION}/{site}/{gateway}"
        self.state = self.root + "/state"
        self.cmd = self.root + "/cmd"
        self.result = self.root + "/result"
        self.data_prefix = self.root + "/data/"
        self.birth = self.root + "/birth"
        self.compact = self.root + "/compact"
        self.delivery = self.root + "/delivery"

    def event(self, node_id: str) -> str:
        """Topic of the events of node ``node_id``."""
        return f"{self.root}/event/{node_id}"

    def node_birth(self, node_id: str) -> str:
        """Topic of the retained birth of node ``node_id``."""
        return f"{self.birth}/{node_id}"

    def node_state(self, node_id: str) -> str:
        """Topic of the retained online/offline state of node ``node_id``."""
        return f"{self.root}/node/{node_id}/state"

    def data(self, node_id: str) -> str:
        """Topic of the SenML packs of node ``node_id``."""
        return self.data_prefix + node_id

    def __repr__(self) -> str:
        return f"Topics({self.root!r})"


def announcement(consumer: str) -> bytes:
    """The payload a consumer publishes on :data:`HOST` when it comes online."""
    return bytes(cbor2.dumps({"online": True, "id": consumer}))


def announces_online(payload: bytes) -> bool:
    """A :data:`HOST` payload saying ``online: true`` (anything else, malformed included, asks for nothing)."""
    try:
        body = cbor2.loads(payload)
    except (cbor2.CBORDecodeError, ValueError, EOFError):
        return False
    return isinstance(body, dict) and body.get("online") is True
