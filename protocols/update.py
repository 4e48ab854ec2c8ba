"""Updates over the bus: the file records a gateway and a node exchange, and the image's MAC.

Modbus function 21 (write file record) carries the image and the control
records, function 20 (read file record) the node's status:

- ``FILE_CONTROL`` (2), record 0, written: ``begin_words(...)`` starts (or
  resumes) an update; ``[OP_COMMIT]`` makes the node check and switch;
  ``[OP_ABORT]`` drops what was received. Read: ``STATUS_WORDS`` words,
  :func:`parse_status`.
- ``FILE_IMAGE`` (1), record n: image bytes ``n * CHUNK`` on, ``CHUNK`` bytes
  (the last one shorter), written in order.

:func:`mac` is what the node checks with its provisioned key before it
switches: HMAC-SHA256 over the role, the size, the health time and the
image's SHA-256. Common subset of CPython and MicroPython.
"""

import hashlib

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


FILE_IMAGE = const(1)
FILE_CONTROL = const(2)
CHUNK = const(240)
OP_BEGIN = const(1)
OP_COMMIT = const(2)
OP_ABORT = const(3)
BEGIN_WORDS = const(36)
STATUS_WORDS = const(12)
MAX_IMAGE = const(1048576)
# status word 0: the node's update state
IDLE = const(0)
RECEIVING = const(1)
REFUSED = const(3)
# status word 5: the result of the last commit or refusal
OK = const(1)
BAD_HASH = const(2)
BAD_MAC = const(3)
NO_KEY = const(4)
BAD_HEADER = const(5)
BUSY = const(6)
INCOMPLETE = const(7)
RESULTS = {0: "none", 1: "ok", 2: "bad hash", 3: "bad MAC (unsigned, or not for this node's key or role)",
           4: "no key provisioned", 5: "bad header", 6: "busy: a new image is on trial", 7: "incomplete"}
STATUS_FIELDS = ("state", "received_hi", "received_lo", "size_hi", "size_lo", "result", "active", "trial",
                 "tries", "rolled_back", "has_slots", "chunk")


def hmac_sha256(key, message):
    """HMAC-SHA256 (RFC 2104) with nothing but hashlib (MicroPython has no hmac module)."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = bytes(key) + bytes(64 - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    inner.update(message)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def mac(key, role, size, health_s, digest):
    """The MAC an image of ``size`` bytes with SHA-256 ``digest`` must carry for a node of ``role``."""
    message = b"streetedge update\0" + role.encode() + b"\0"
    message += bytes((size >> 24, (size >> 16) & 0xFF, (size >> 8) & 0xFF, size & 0xFF,
                      health_s >> 8, health_s & 0xFF))
    return hmac_sha256(key, message + digest)


def begin_record(size, health_s, digest, tag):
    """The bytes of the BEGIN control record (``BEGIN_WORDS`` words)."""
    if not 1 <= size <= MAX_IMAGE or not 1 <= health_s <= 0xFFFF or len(digest) != 32 or len(tag) != 32:
        raise ValueError("an update needs 1..%d bytes, a health time 1..65535 s, a 32-byte hash and MAC"
                         % MAX_IMAGE)
    return bytes((0, OP_BEGIN, size >> 24, (size >> 16) & 0xFF, (size >> 8) & 0xFF, size & 0xFF,
                  health_s >> 8, health_s & 0xFF)) + bytes(digest) + bytes(tag)


def parse_status(data):
    """The status record's bytes as a dict (``received`` and ``size`` joined from their two words)."""
    words = [(data[i] << 8) | data[i + 1] for i in range(0, len(data) - 1, 2)]
    status = {}
    for i, name in enumerate(STATUS_FIELDS):
        status[name] = words[i] if i < len(words) else 0
    status["received"] = (status.pop("received_hi") << 16) | status.pop("received_lo")
    status["size"] = (status.pop("size_hi") << 16) | status.pop("size_lo")
    return status
