"""Modbus RTU, sans-IO: CRC, slave framer and responder, request builders (PDU and RTU frame).

The adapter (firmware UART loop, gateway transport, a test) owns the bytes and
the clock: it feeds what it receives, calls ``reset()`` on a 3.5-character
silence, and writes what the builders or ``slave.respond`` produce.

Import the submodule that holds what you use: ``crc`` (``crc16``), ``pdu``
(function and exception codes, limits, ``Request``), ``rtu`` (frame lengths),
``slave`` (``SlaveFramer``, ``respond``), ``master`` (request builders),
``bits`` (coil and discrete-input PDUs). The package itself re-exports nothing:
a node imports only what it answers the bus with (every name a module holds is
heap on a node), never the gateway's request builders.
"""
