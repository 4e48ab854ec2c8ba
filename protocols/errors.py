"""The errors every wire contract raises: one root, a few kinds, data attached."""


class ProtocolError(ValueError):
    """Bytes or values that break a streetedge wire contract."""


class FrameError(ProtocolError):
    """A frame that cannot be trusted: bad CRC, impossible length, truncated."""


class DecodeError(ProtocolError):
    """A payload that is not well-formed for its format (CBOR, SenML, a register value)."""


class ModbusException(ProtocolError):
    """A Modbus exception response: `function` is the request's function code, `code` the exception code."""

    def __init__(self, function: int, code: int, message: "str | None" = None) -> None:
        self.function = function
        self.code = code
        # super() rather than ProtocolError.__init__: MicroPython's built-in
        # exception types expose no __init__ attribute.
        super().__init__(message or "modbus exception %d for function %d" % (code, function))


class AuthenticationError(ProtocolError):
    """Data whose authentication tag does not match: forged, corrupted, or sealed with another key or nonce."""
