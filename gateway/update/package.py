"""Update packages: a node's new code image with what the node checks before it switches to it.

A package file is ``SEUPDATE1\\n``, one line of JSON (``{"role", "board",
"size", "health_s", "sha256", "mac"}``), ``\\n``, then the image (a ROMFS
image, ``tools.image``). The MAC (:func:`protocols.update.mac`) is made with
the key provisioned on the nodes by whoever holds it (``streetedge update
pack``); the gateway only carries it: it cannot make a node accept an image
the key holder did not sign.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from gateway.contracts import update as records
from gateway.errors import GatewayError

MAGIC = b"SEUPDATE1\n"


class PackageError(GatewayError):
    """A package file that cannot be used: the message says which part is wrong."""


@dataclass(frozen=True)
class UpdatePackage:
    """An image for nodes of ``role`` (on ``board``), their health time, and its MAC."""

    role: str
    board: str
    image: bytes
    health_s: int
    tag: bytes

    @property
    def digest(self) -> bytes:
        """SHA-256 of the image."""
        return hashlib.sha256(self.image).digest()

    def to_bytes(self) -> bytes:
        """The package file's bytes."""
        header = {"role": self.role, "board": self.board, "size": len(self.image), "health_s": self.health_s,
                  "sha256": self.digest.hex(), "mac": self.tag.hex()}
        return MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + self.image


def make_package(image: bytes, *, key: bytes, role: str, board: str, health_s: int = 30) -> UpdatePackage:
    """Sign ``image`` for nodes of ``role`` holding ``key``."""
    if not 1 <= len(image) <= records.MAX_IMAGE:
        raise PackageError(f"an image is 1..{records.MAX_IMAGE} bytes, this one {len(image)}")
    if not 1 <= health_s <= 0xFFFF:
        raise PackageError(f"health time {health_s} s: 1..65535")
    if not key:
        raise PackageError("an empty key signs nothing")
    tag = records.mac(key, role, len(image), health_s, hashlib.sha256(image).digest())
    return UpdatePackage(role=role, board=board, image=image, health_s=health_s, tag=tag)


def parse_package(data: bytes, where: str = "package") -> UpdatePackage:
    """Read a package file's bytes; PackageError names what is wrong (the MAC is the node's to check)."""
    if not data.startswith(MAGIC):
        raise PackageError(f"{where}: not an update package (it does not start with {MAGIC!r})")
    line, sep, image = data[len(MAGIC):].partition(b"\n")
    if not sep:
        raise PackageError(f"{where}: the header line is cut short")
    try:
        header = json.loads(line)
        role, board, size = str(header["role"]), str(header["board"]), int(header["size"])
        health_s, digest, tag = int(header["health_s"]), bytes.fromhex(header["sha256"]), bytes.fromhex(header["mac"])
    except (ValueError, KeyError, TypeError) as exc:
        raise PackageError(f"{where}: bad header: {exc}") from None
    if size != len(image):
        raise PackageError(f"{where}: the header says {size} bytes of image, the file holds {len(image)}")
    if hashlib.sha256(image).digest() != digest:
        raise PackageError(f"{where}: the image's SHA-256 is not the header's (corrupted)")
    if len(tag) != 32:
        raise PackageError(f"{where}: the MAC is {len(tag)} bytes, not 32")
    return UpdatePackage(role=role, board=board, image=image, health_s=health_s, tag=tag)


def load_package(path: Path) -> UpdatePackage:
    """Read a package file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PackageError(f"{path}: {exc.strerror}") from None
    return parse_package(data, str(path))
