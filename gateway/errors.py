"""The root of the gateway's errors: ``except GatewayError`` catches everything the gateway raises on purpose.

Each part of the gateway raises its own subclass, next to the code that
raises it, and the subclass carries what a caller acts on as attributes (not
only in its message)::

    GatewayError
    ├── ConfigError          gateway.service.config       .source, .key, .problem (a ValueError)
    ├── ProfileError         gateway.profiles.loader      (a ValueError)
    │   └── NodeProfileError gateway.profiles.registry    .path, .message (reported as a ConfigError)
    ├── OutboxError          gateway.delivery.outbox      .path
    ├── BusError             gateway.transport.bus
    │   ├── BusUnavailable
    │   ├── NodeTimeout
    │   └── NodeError                                     .code (the Modbus exception code)
    ├── PlanError            gateway.polling.read_plan    (a ValueError)
    ├── CompactError         gateway.delivery.compact     (a ValueError)
    ├── PollRecordError      gateway.delivery.senml_records .payload (a ValueError)
    ├── PublishRefused       gateway.mqtt.uplink          .topic, .reason (also an aiomqtt.MqttError)
    ├── CborError            gateway.commands.strict_cbor .tag (a ValueError)
    ├── CoseError            gateway.commands.cose        .kind, .detail (a ValueError)
    └── CommandRejected      gateway.commands.parse       .reason, .detail, .command_id

Errors about bad input also derive from ``ValueError``, so code written
against the standard library's convention keeps working. Anything else that
escapes (``OSError`` from a disk, ``sqlite3`` errors, ...) is a failure of the
machine, not a decision of the gateway, and is left as it is.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Something the gateway refuses or cannot do; subclasses say what, with the data to act on."""
