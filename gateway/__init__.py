"""The streetedge gateway daemon (CPython on the cabinet's Linux computer).

One concept per module:

- :mod:`gateway.config`: the TOML configuration, checked whole (``load_config``).
- :mod:`gateway.modbus_bus`: one RS-485 line, one transaction at a time (pymodbus).
- :mod:`gateway.poller`: per-bus polling, node online/offline state.
- :mod:`gateway.records`: decoded registers -> SenML packs -> CBOR.
- :mod:`gateway.topics`: the MQTT topic namespace.
- :mod:`gateway.uplink`: the broker connection (aiomqtt) and the publish queue.
- :mod:`gateway.commands`: the command format (``parse_command``).
- :mod:`gateway.router`: command execution, confirmation and results.
- :mod:`gateway.daemon`: everything wired together (``Gateway``, ``run_gateway``).
"""
