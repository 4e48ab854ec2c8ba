"""Fuzz the BLE advert parsers: every advert is readings or a precise refusal, never a crash.

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

Prints one line per part; exits 1 on any crash or hang.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from protocols import ble_adverts, bthome, bthome_read
from protocols.errors import AuthenticationError, DecodeError
from tools.fuzz.harness import Summary, main_for, mutate, run_target

KEY = bytes(range(16))
ADDRESS = "A4:C1:38:00:11:22"
_SEALER = bthome.Sealer(KEY, ADDRESS)
_OPENER = bthome_read.Opener(KEY, ADDRESS)


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


def _inputs(pool: list[bytes], n: int, seed: int) -> Iterator[bytes]:
    rnd = random.Random(seed)
    for _ in range(n):
        yield mutate(rnd, rnd.choice(pool), pool)


def run(n: int, seed: int = 0) -> dict[str, Summary]:
    """``n`` mutated adverts and ``n`` mutated object payloads."""
    return {
        "BLE adverts": run_target(check_advert, _inputs(seed_adverts(), n, seed)),
        "BTHome objects": run_target(check_objects, _inputs(seed_objects(), n, seed + 1)),
    }


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    return main_for(__doc__ or "", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
