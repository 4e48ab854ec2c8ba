"""The gateway's update packages: the files in its ``[update] packages`` directory, found by image hash.

An ``update`` command names a package by the SHA-256 of its image (64 hex
digits, as ``streetedge update pack`` prints and the package header holds).
The directory is read when a command asks, so a package copied in is usable
at once, without a reload; only the header line of each file is read until
the one with that hash is found, then the whole file is checked
(:func:`gateway.update.package.parse_package`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from gateway.update.package import MAGIC, PackageError, UpdatePackage, load_package

DIGEST = re.compile(r"[0-9a-f]{64}")
"""How a command names a package: the image's SHA-256, lower-case hex."""


class UnknownPackage(PackageError):  # noqa: N818 - names the outcome, like UpdateRefused
    """No package with the asked hash in the directory (or no directory configured)."""


class PackageStore:
    """The package files of one directory (``""``: none configured)."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory) if directory else None

    def find(self, digest: str) -> UpdatePackage:
        """The package whose image has SHA-256 ``digest``; UnknownPackage or PackageError saying why not."""
        if self.directory is None:
            raise UnknownPackage("this gateway has no package directory ([update] packages): it takes no updates")
        if not DIGEST.fullmatch(digest):
            raise UnknownPackage(f"package {digest[:80]!r}: expected the image's SHA-256, 64 lower-case hex digits")
        try:
            files = sorted(p for p in self.directory.iterdir() if p.is_file())
        except OSError as exc:
            raise UnknownPackage(f"package directory {self.directory}: {exc.strerror}") from None
        for path in files:
            if _header_digest(path) == digest:
                return load_package(path)
        raise UnknownPackage(f"no package with image sha256 {digest[:16]}... in {self.directory} "
                             f"({len(files)} file(s) there)")


def _header_digest(path: Path) -> str | None:
    """The image hash a package file's header states, or None for a file that is no package."""
    try:
        with path.open("rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                return None
            header = json.loads(f.readline(4096))
    except (OSError, ValueError):
        return None
    digest = header.get("sha256") if isinstance(header, dict) else None
    return digest if isinstance(digest, str) else None
