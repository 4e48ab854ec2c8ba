"""The streetedge gateway daemon (CPython on the cabinet's Linux computer).

The sub-packages follow the data path (``docs/architecture.md`` draws it):

- :mod:`gateway.transport`: the bus contract and its backends (Modbus RTU, Modbus TCP).
- :mod:`gateway.polling`: which node is polled when, read plans, node state, event catch-up.
- :mod:`gateway.delivery`: the durable outbox, the delivery driver, births, the compact and SenML encoders.
- :mod:`gateway.mqtt`: the broker connection, topics, MQTT 5 properties.
- :mod:`gateway.commands`: signed commands from envelope to confirmed result: COSE, keys, replay,
  planning, execution, audit.
- :mod:`gateway.service`: configuration, the daemon that wires it all, HTTP, metrics, logs, systemd.

:mod:`gateway.contracts` is the one typed face of the shared wire contracts (``protocols/``).
"""
