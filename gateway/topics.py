"""The gateway's MQTT topic namespace, stated once.

Everything a gateway publishes or listens to lives under one root per site and
gateway, ``streetedge/v1/<site>/<gateway>``:

===========================  =========  ==============================================
topic                        direction  payload (CBOR)
===========================  =========  ==============================================
``<root>/state``             up         ``{"online": bool, "ts": epoch}``, retained;
                                        the broker publishes ``{"online": false}`` as
                                        the gateway's Will when it vanishes
``<root>/data/<node id>``    up         one SenML pack per poll of the node
``<root>/node/<id>/state``   up         ``{"online": bool, "ts": epoch, "error": str}``,
                                        retained; published when a node answers for
                                        the first time, goes offline (its death
                                        message, with the last error) or comes back
``<root>/cmd``               down       a command map (see :mod:`gateway.commands`)
``<root>/result``            up         the result of a command, keyed by its ``id``
===========================  =========  ==============================================

Site, gateway and node ids are restricted by the configuration to letters,
digits, ``_`` and ``-``, so they never carry MQTT wildcards or separators.
"""

from __future__ import annotations

VERSION = "v1"
"""Namespace version; bumped when a topic or payload changes incompatibly."""


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

    def node_state(self, node_id: str) -> str:
        """Topic of the retained online/offline state of node ``node_id``."""
        return f"{self.root}/node/{node_id}/state"

    def data(self, node_id: str) -> str:
        """Topic of the SenML packs of node ``node_id``."""
        return self.data_prefix + node_id

    def __repr__(self) -> str:
        return f"Topics({self.root!r})"
