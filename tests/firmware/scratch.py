"""Scratch files for common-subset tests, on either interpreter (MicroPython has no tempfile)."""

import os
from binascii import hexlify


def scratch_path(stem, ext):
    """A fresh path under /tmp: ``/tmp/se-<stem>-<random>.<ext>``."""
    return "/tmp/se-%s-%s.%s" % (stem, hexlify(os.urandom(4)).decode(), ext)


def remove_scratch(path):
    """Remove ``path`` and the ``.tmp`` an atomic write may have left beside it."""
    for p in (path, path + ".tmp"):
        try:  # noqa: SIM105 - MicroPython has no contextlib
            os.remove(p)
        except OSError:
            pass
