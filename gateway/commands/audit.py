"""The command audit log: append-only JSON lines, each chained to the one before by SHA-256.

Every command the gateway receives leaves entries: ``refused`` (with the
reason), or ``accepted`` (written before any node is touched) then
``executed`` (with the result), or ``duplicate`` (a retry answered from
memory). One line per entry, for example::

    {"action":"dim","digest":"9f2c...","envelope":"0oRD...","event":"accepted","id":"c-0042",
     "key":"maint-elm","params":{"level":40},"prev":"5be1...","seq":17,"target":"group:elm-street",
     "time":"2026-01-01T00:00:00.123Z","hash":"e3a0..."}

``hash`` is the SHA-256 (hex) of the entry without ``hash``, serialised as
RFC 8785 (JCS) JSON, UTF-8; for the types an entry holds (strings, integers,
booleans, null, arrays, objects) that is Python's ``json.dumps(entry,
sort_keys=True, separators=(",", ":"), ensure_ascii=False)``. ``prev`` is the
hash of the entry before (64 zeros for the first), ``seq`` counts from 1. An
edit, insertion, deletion or reordering anywhere breaks the chain at that
entry, which :func:`verify_log` (``streetedge audit verify PATH``) reports.
Someone able to rewrite the whole file from the edit onwards could re-chain
it; that is why every entry is also published upstream (``<root>/audit``, the
same map in CBOR): the copy outside the cabinet anchors the chain.

Durability (fsync policy): entries are written by one writer thread that
appends every pending line, then calls ``fsync`` once for the batch (group
commit) before it reports them written. The router waits for that before it
acts: a refusal is durable before its result is published, an ``accepted``
entry before any node is written, an ``executed`` entry before the result is
published. A line torn by a crash is cut off at the next start and kept, in
base64, inside a ``torn_tail`` entry, so the chain stays intact and nothing
is lost silently.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import datetime
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2

log = logging.getLogger(__name__)

GENESIS = "0" * 64
"""``prev`` of the first entry."""
TAIL_READ = 65536
"""Bytes read from the end of an existing log to find the chain's head."""


def canonical(entry: dict[str, Any]) -> bytes:
    """The JCS (RFC 8785) bytes of ``entry`` for the value types audit entries hold."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(entry: dict[str, Any]) -> str:
    """The chain hash of an entry: SHA-256 hex of its canonical form without ``hash``."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(canonical(body)).hexdigest()


def audit_topic(root: str) -> str:
    """The upstream topic of audit entries under a gateway's topic root."""
    return root + "/audit"


class AuditLog:
    """Appends chained entries to ``path`` and hands each to ``publish`` (CBOR) for upstream.

    Args:
        path: the log file (created if missing); ``""`` keeps no local file
            (entries are then only published and logged).
        publish: called with each entry encoded as a CBOR map; must not block.
        clock: wall clock for the entries' time.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        publish: Callable[[bytes], None] | None = None,
        clock: Callable[[], float],
    ) -> None:
        self.path = Path(path) if path else None
        self.publish = publish
        self.clock = clock
        self._seq = 0
        self._head = GENESIS
        self._cond = threading.Condition()
        self._pending: list[tuple[bytes, concurrent.futures.Future[None]]] = []
        self._closing = False
        self._file = None
        self._thread: threading.Thread | None = None
        torn = b""
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torn = self._open_tail(self.path)
            self._file = self.path.open("ab")
            self._thread = threading.Thread(target=self._writer, name="audit-writer", daemon=True)
            self._thread.start()
        if torn:
            log.warning("audit log %s: %d bytes of a torn last line kept in a torn_tail entry", path, len(torn))
            self.append("torn_tail", fragment=base64.b64encode(torn).decode(), bytes=len(torn))

    @property
    def head(self) -> str:
        """Hash of the last entry appended (GENESIS when empty)."""
        return self._head

    def append(self, event: str, **fields: Any) -> concurrent.futures.Future[None]:
        """Chain one entry and queue it; the future completes when it is on disk (fsynced)."""
        self._seq += 1
        entry: dict[str, Any] = {"seq": self._seq, "time": _iso(self.clock()), "event": event}
        entry.update({k: v for k, v in fields.items() if v is not None})
        entry["prev"] = self._head
        entry["hash"] = entry_hash(entry)
        self._head = entry["hash"]
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        if self._thread is None:
            done.set_result(None)
        else:
            with self._cond:
                if self._closing:
                    done.set_exception(OSError("the audit log is closed"))
                else:
                    self._pending.append((canonical(entry) + b"\n", done))
                    self._cond.notify()
        if self.publish is not None:
            self.publish(cbor2.dumps(entry))
        log.debug("audit %d %s %s", entry["seq"], event, fields.get("id"))
        return done

    async def record(self, event: str, **fields: Any) -> None:
        """Append an entry and wait until it is durable (raises OSError if it could not be written)."""
        await asyncio.wrap_future(self.append(event, **fields))

    def close(self) -> None:
        """Write what is queued, stop the writer and close the file."""
        if self._thread is None:
            return
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()
        self._thread = None
        if self._file is not None:
            self._file.close()

    def _open_tail(self, path: Path) -> bytes:
        """Find the chain's head in an existing log; cut off (and return) a torn last line."""
        if not path.exists():
            path.touch()
            with contextlib.suppress(OSError):  # make the new name durable too
                fd = os.open(path.parent, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            return b""
        with path.open("r+b") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - TAIL_READ))
            tail = f.read()
            cut = tail.rfind(b"\n") + 1
            torn = tail[cut:]
            if torn:
                f.truncate(size - len(torn))
                f.flush()
                os.fsync(f.fileno())
        lines = tail[:cut].splitlines()
        if lines:
            try:
                last = json.loads(lines[-1])
                self._seq, self._head = int(last["seq"]), str(last["hash"])
            except (ValueError, KeyError, TypeError):
                self._head = hashlib.sha256(lines[-1]).hexdigest()
                log.error("audit log %s: the last line is not an entry; chaining onto its raw hash", path)
        return torn

    def _writer(self) -> None:
        assert self._file is not None
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                batch, self._pending = self._pending, []
                closing = self._closing
            if batch:
                try:
                    self._file.write(b"".join(line for line, _ in batch))
                    self._file.flush()
                    os.fsync(self._file.fileno())
                except OSError as exc:
                    log.error("audit log %s: write failed: %s", self.path, exc)
                    for _, done in batch:
                        done.set_exception(exc)
                else:
                    for _, done in batch:
                        done.set_result(None)
            if closing and not batch:
                return


@dataclass(frozen=True)
class Verdict:
    """What :func:`verify_log` found.

    Attributes:
        entries: entries read (up to and including the first bad one).
        bad_line: line number (1-based) of the first entry that breaks the chain, or None.
        problem: what is wrong with it ("" when the chain is intact).
        head: hash of the last good entry.
    """

    entries: int
    bad_line: int | None
    problem: str
    head: str

    @property
    def ok(self) -> bool:
        """True when every entry is intact and chained."""
        return self.bad_line is None


def verify_log(path: Path) -> Verdict:
    """Check every entry of the log at ``path``: its hash, its link to the one before, its seq."""
    head, seq, count = GENESIS, 0, 0
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            count += 1
            problem = _check_line(raw, head, seq)
            if problem:
                return Verdict(count, number, problem, head)
            entry = json.loads(raw)
            head, seq = entry["hash"], entry["seq"]
    return Verdict(count, None, "", head)


def _check_line(raw: bytes, prev: str, seq: int) -> str:
    if not raw.endswith(b"\n"):
        return "torn line (no newline at the end)"
    try:
        entry = json.loads(raw)
    except ValueError as exc:
        return f"not JSON: {exc}"
    if not isinstance(entry, dict) or not isinstance(entry.get("hash"), str):
        return "not an audit entry (no hash)"
    if entry_hash(entry) != entry["hash"]:
        return "hash does not match the entry (edited)"
    if entry.get("prev") != prev:
        return f"prev {str(entry.get('prev'))[:16]}... does not link to the entry before ({prev[:16]}...)"
    if entry.get("seq") != seq + 1:
        return f"seq {entry.get('seq')} follows {seq} (entries missing or reordered)"
    return ""


def _iso(ts: float) -> str:
    when = datetime.datetime.fromtimestamp(ts, tz=datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
