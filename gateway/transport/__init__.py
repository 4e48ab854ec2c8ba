"""Transports: the bus contract the poller and the commands use, and its backends (Modbus RTU, Modbus TCP)."""
