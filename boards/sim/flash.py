"""The virtual board's key-value flash and the files through which tests steer the virtual world.

:class:`FlashStore` is the board's ``persist_read``/``persist_write``: one file
``nvs-<key>.bin`` per key, replaced by rename, so a record is written whole or
not at all (as an NVS blob on the ESP32). :class:`Control` reports changes of
``control.json`` (written by tests at any time). :func:`read_json` and
:func:`write_json` (atomic) are for ``sim.json``, ``world.json`` and friends.
"""

import json
import os


def read_json(path):
    """A JSON file's content, or None."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_json(path, data):
    """Write ``data`` to ``path`` atomically (temporary file, then rename)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.rename(tmp, path)


class FlashStore:
    """``persist_read``/``persist_write`` of the board: one file per key, replaced by rename (whole or not at all)."""

    def __init__(self, folder, readonly=False):
        self.folder = folder
        self.readonly = readonly  # writes fail (OSError), as on a worn-out flash
        self.writes = 0

    def _path(self, key):
        return "%s/nvs-%s.bin" % (self.folder, key)

    def read(self, key):
        """The record stored under ``key``, or None."""
        try:
            with open(self._path(key), "rb") as f:
                return f.read()
        except OSError:
            return None

    def persist_read(self, key):
        """The board's ``persist_read``: :meth:`read`."""
        return self.read(key)

    def persist_write(self, key, data):
        """The board's ``persist_write``: :meth:`write`, refused (OSError) on a read-only flash."""
        if self.readonly:
            raise OSError(30)  # EROFS
        self.write(key, data)

    def write(self, key, data):
        """Store ``data`` under ``key`` (raises OSError if the flash cannot be written)."""
        path = self._path(key)
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.rename(path + ".tmp", path)
        self.writes += 1


class Control:
    """Changes of control.json, seen by whoever polls it."""

    def __init__(self):
        self._text = None

    def poll(self):
        """The new content of control.json as a dict, or None if it did not change."""
        try:
            with open("control.json") as f:
                text = f.read()
        except OSError:
            return None
        if text == self._text:
            return None
        self._text = text
        try:
            data = json.loads(text)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None


def store(board, cfg):
    """The board's key-value flash: ``sim.json`` ``"flash": "readonly"`` makes its writes fail."""
    return FlashStore(board.flash_dir, cfg.get("flash") == "readonly")
