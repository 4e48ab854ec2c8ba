"""Fuzz the BLE parsers (adverts, GATT commands): readings, a command, or a precise refusal, never a crash.

    python -m tools.fuzz.ble --cases 100000 --seed 7

Two parts, ``--cases`` each:

- adverts: byte mutations of the advertising data the meter and environment
  nodes send (reading and alarm adverts, sealed with a known key), through
  the gateway's whole read path: find the BTHome service data, check the
  header, decrypt, decode the objects, map them to the role's registers. An
  accepted advert must seal back to the same service data.
- objects: mutations of decrypted object bytes through the object decoder
  and the role mapping (what a node holding the key could send); accepted
  objects must encode back to the same bytes.
- GATT commands: mutations of sealed command frames (writes, reads, alarm
  acknowledgements) and of their plaintext bodies through the node's command
  parser (``protocols.ble_gatt``): an accepted frame must seal back to itself.

Prints one line per part; exits 1 on any crash or hang.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from protocols import ble_adverts, ble_gatt, bthome, bthome_read
from protocols.errors import AuthenticationError, DecodeError
from tools.fuzz.harness import Summary, main_for, mutate, run_target

KEY = bytes(range(16))
ADDRESS = "A4:C1:38:00:11:22"
_SEALER = bthome.Sealer(KEY, ADDRESS)
_OPENER = bthome_read.Opener(KEY, ADDRESS)
_GATT = ble_gatt.Sealed(KEY, bthome.address_bytes(ADDRESS))


def seed_objects() -> list[bytes]:
    """Object bytes of reading and alarm adverts of both BLE roles, at typical and extreme values."""
    out = []
    buf = bytearray(ble_adverts.MAX_OBJECTS)
    samples = {"meter": ([3300, 0], [2000, 4294967]), "env": ([2150, 5500, 1013250, 120, 300],
                                                            [-4000, 10000, 1100000, 9999, 9999])}
    for name, values in samples.items():
        rows, in_reading, alarms = ble_adverts.role(name)
        for sample in values:
            for status in (0, 0xFF):
                n = ble_adverts.pack_reading(buf, rows, in_reading, sample, status)
                out.append(bytes(buf[:n]))
                n = ble_adverts.pack_alarms(buf, 0, alarms, status)
                out.append(bytes(buf[:n]))
    out.append(bthome_read.encode_objects([(bthome.TEXT, b"pit 7"), (bthome.RAW, b"\x00\xff")]))
    return out


def seed_adverts() -> list[bytes]:
    """Whole advertising data of the seed objects, sealed, some named, some trigger-based."""
    return [
        bthome.advert(_SEALER.seal(objects, i * 977, trigger=bool(i % 3 == 0)), "m" if i % 2 else None)
        for i, objects in enumerate(seed_objects())
        if len(objects) <= 13
    ]


def check_advert(data: bytes) -> str | None:
    """Fuzz target: the gateway's read path on one advertising data payload."""
    try:
        service_data = bthome_read.service_data_of(data)
        if service_data is None:
            return "not_bthome"
        info, counter, plain = _OPENER.open(service_data)
        objects = bthome_read.decode_objects(plain)
    except AuthenticationError:
        return "forged"
    except DecodeError as exc:
        if not str(exc):
            raise AssertionError("a DecodeError that says nothing") from None
        return "malformed"
    if _SEALER.seal(plain, counter, trigger=bool(info & bthome.INFO_TRIGGER)) != service_data:
        raise AssertionError("an accepted advert does not seal back to itself")
    for name, _, _, _, _ in ble_adverts.ROLES:
        rows, _, alarms = ble_adverts.role(name)
        ble_adverts.unpack(rows, alarms, objects)
    return None


def check_objects(data: bytes) -> str | None:
    """Fuzz target: the object decoder and the role mapping on decrypted bytes."""
    try:
        objects = bthome_read.decode_objects(data)
    except DecodeError as exc:
        if not str(exc):
            raise AssertionError("a DecodeError that says nothing") from None
        return "malformed"
    if bthome_read.encode_objects(objects) != data:
        raise AssertionError("decoded objects do not encode back to the same bytes")
    for name, _, _, _, _ in ble_adverts.ROLES:
        rows, _, alarms = ble_adverts.role(name)
        values, status = ble_adverts.unpack(rows, alarms, objects)
        if not isinstance(status, int) or not all(isinstance(v, int) for v in values.values()):
            raise AssertionError(f"unpack gave {values!r}, {status!r}")
    return None


def seed_commands() -> list[bytes]:
    """Sealed command frames of every op, and bare bodies (op byte first) for the body parser."""
    bodies = [(ble_gatt.OP_WRITE, ble_gatt.write_body(0, [1000])), (ble_gatt.OP_WRITE, ble_gatt.write_body(2, [
        0, 21600, 900])), (ble_gatt.OP_READ, b"\x00\x00\x09"), (ble_gatt.OP_ACK_ALARM, b"")]
    frames = [_GATT.command(i * 131, op, body) for i, (op, body) in enumerate(bodies)]
    return frames + [bytes([op]) + body for op, body in bodies]


def check_command(data: bytes) -> str | None:
    """Fuzz target: a GATT write as the node reads it (a frame), or a decrypted body (op byte first)."""
    try:
        if data[:1] == bytes([ble_gatt.VERSION]) and len(data) > 9:
            counter, op, body = _GATT.open_command(data)
            if _GATT.command(counter, op, body) != data:
                raise AssertionError("an accepted command does not seal back to itself")
        elif data:
            op, body = data[0], data[1:]
        else:
            return "empty"
        ble_gatt.parse_body(op, body)
    except AuthenticationError:
        return "forged"
    except DecodeError as exc:
        if not str(exc):
            raise AssertionError("a DecodeError that says nothing") from None
        return "malformed"
    return None


def _inputs(pool: list[bytes], n: int, seed: int) -> Iterator[bytes]:
    rnd = random.Random(seed)
    for _ in range(n):
        yield mutate(rnd, rnd.choice(pool), pool)


def run(n: int, seed: int = 0) -> dict[str, Summary]:
    """``n`` mutated adverts, object payloads and GATT commands."""
    return {
        "BLE adverts": run_target(check_advert, _inputs(seed_adverts(), n, seed)),
        "BTHome objects": run_target(check_objects, _inputs(seed_objects(), n, seed + 1)),
        "GATT commands": run_target(check_command, _inputs(seed_commands(), n, seed + 2)),
    }


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    return main_for(__doc__ or "", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
