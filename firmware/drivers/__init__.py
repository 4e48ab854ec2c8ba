"""Drivers for the sensor chips of the node roles, written against their datasheets.

They talk to ``machine.I2C``/``machine.UART``-like objects handed over by the
board, never raise on a sensor failure (they report it), and allocate their
buffers once.
"""
