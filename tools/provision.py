"""``streetedge provision``: put a node's image and identity on a board, check them there, and see it join.

For a board that already runs MicroPython (``streetedge flash`` puts it there)::

    streetedge provision --port /dev/ttyUSB0 --board esp32_lamp --role lamp --node-id lamp-12 --unit 12 \\
        --bus /dev/ttyUSB1

1. builds the image for the board and role (``tools.image``);
2. over the board's USB console with ``mpremote`` (its raw REPL; a running
   node is interrupted with Ctrl-C first): removes ``main.py`` first, so a
   board whose provisioning is interrupted boots to the REPL and can be
   provisioned again; copies the boot stub ``update_boot.py``, the image's
   ROMFS image into code slot 0, made active in ``rom/state.json`` (the node
   runs its code in place from it): on a board whose MicroPython has two ROM
   partitions (``vfs.rom_ioctl``) into partition 0 with mpremote's own
   ``romfs deploy``, checked there by hash; on the virtual board into its
   partition 0 (``rom/part0.bin``, with ``sim_rom.mpy``, the partitions' driver);
   elsewhere into the file ``rom/slot0.img``;
   ``config.json`` (unit, role, baud) and ``identity.json`` (node id, board,
   role, image and ROMFS hashes, when, by whom), and the node key if one is
   given (updates over the bus are checked with it); with a BLE key
   (:mod:`tools.provision_ble`) ``ble.json``, and for a battery node
   ``"bus": false`` in ``config.json``;
3. hashes every file on the board itself (SHA-256) and compares with the
   image's manifest; only then copies ``main.py`` (checked the same way);
4. resets the board and waits until the node answers on its RS-485 bus
   (``--bus``: a Modbus read of its unit's uptime, which must show a boot
   after the reset) and, with a BLE adapter, until its first advert opens with
   its key (the advert's sender is its BLE address) before it says done;
5. appends what was provisioned to the record (``provisioned.jsonl``), from
   which ``streetedge provision --nodes-toml`` writes the gateway's ``[[node]]``
   (and ``[[ble.node]]``) entries.

Running it again on the same board is safe: everything is copied and checked
again. The virtual board (``tools.sim.console``) answers exactly as a real one,
so the tests provision a blank virtual node and see it join the virtual street.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.transport.ble_adapter import adapter_problem
from tools.exit_codes import Exit
from tools.image import ImageError, board_info, build_image
from tools.provision_ble import INTERVAL_MS, TX_POWER_DBM, ble_settings, read_key, wait_for_advert

NODE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)  # firmware/config.py's
RESET = "import machine\ntry:\n    machine.reset()\nexcept AttributeError:\n    import sys\n    sys.exit()\n"
"""machine.reset() on a board; the virtual board's unix port has none and boots again when the REPL exits."""
MKDIRS = """import os
for d in %r:
    try:
        os.mkdir(d)
    except OSError:
        pass
"""
STAGING_GONE = """try:
    os.remove('rom/staging.json')
except OSError:
    pass
"""
"""An update half received before this provisioning is not resumed into the slot provisioning rewrites."""
ROM_PARTITIONS = "import vfs\nprint(vfs.rom_ioctl(1) if hasattr(vfs, 'rom_ioctl') else 0)\n"
"""How many ROM partitions the board's MicroPython has (0: none, as the unix port)."""
PARTITION_HASH = """import hashlib, binascii, vfs
dev = vfs.rom_ioctl(2, %d)
n = %d
h = hashlib.sha256()
b = bytearray(512)
at = 0
while at < n:
    k = min(512, n - at)
    dev.readblocks(at // 4096, memoryview(b)[:k], at %% 4096)
    h.update(memoryview(b)[:k])
    at += k
print(binascii.hexlify(h.digest()).decode())
"""
"""SHA-256 of the first n bytes of a ROM partition, read on the board (esp32.Partition's block protocol)."""
HASHES = """import hashlib, binascii, json
out = {}
for p in %r:
    h = hashlib.sha256()
    try:
        with open(p, 'rb') as f:
            while True:
                b = f.read(512)
                if not b:
                    break
                h.update(b)
        out[p] = binascii.hexlify(h.digest()).decode()
    except OSError:
        out[p] = None
print(json.dumps(out))
"""


class ProvisionError(Exception):
    """Provisioning could not finish; ``code`` is the exit status the command line uses."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# tools/exit_codes.py's meanings: bad input (nothing done), the board not there, the job ran and failed
USAGE, NO_BOARD, MISMATCH, NO_ANSWER = int(Exit.USAGE), int(Exit.UNAVAILABLE), int(Exit.FAILED), int(Exit.FAILED)
FIRST_ANSWER = 30.0
"""Seconds the board's REPL has to answer the first command (a board busy in main.py is interrupted first)."""


@dataclass(frozen=True)
class Request:
    """What to provision: every field is given by the person provisioning, none is filled in."""

    port: str
    board: str
    role: str
    node_id: str
    unit: int
    baud: int
    key: Path | None = None
    bus: bool = True
    """False: a battery node with no RS-485 bus (``"bus": false``), reached over its radio only."""
    ble_key: Path | None = None
    """A file with the node's BLE key (32 hex digits): the node gets ``ble.json`` and advertises."""
    ble_interval_ms: int = INTERVAL_MS
    ble_tx_power_dbm: int = TX_POWER_DBM
    ble_sleep: bool = False


def check(request: Request) -> dict[str, Any] | None:
    """Refuse a request that cannot give a working node, before the board is touched (ProvisionError).

    Returns the node's ``ble.json`` settings (None for a node without radio).
    """
    if not request.bus and request.ble_key is None:
        raise ProvisionError("--no-rs485 needs --ble-key: a node without a bus is reached over its radio only",
                             USAGE)
    if not NODE_ID.match(request.node_id):
        raise ProvisionError(f"--node-id {request.node_id!r}: letters, digits, '-' and '_' only (1..64)", USAGE)
    if not 1 <= request.unit <= 247:
        raise ProvisionError(f"--unit {request.unit}: a Modbus unit is 1..247", USAGE)
    if request.bus and request.baud not in BAUD_RATES:
        raise ProvisionError(f"--baud {request.baud}: one of {', '.join(map(str, BAUD_RATES))}", USAGE)
    try:
        roles = board_info(request.board)["roles"]
    except ImageError as exc:
        raise ProvisionError(str(exc), USAGE) from None
    if roles is not None and request.role not in roles:
        raise ProvisionError(f"board {request.board} carries {', '.join(roles)}, not {request.role!r}", USAGE)
    if request.key is not None and not request.key.is_file():
        raise ProvisionError(f"--key {request.key}: no such file", USAGE)
    settings = None
    if request.ble_key is not None:
        try:
            settings = ble_settings(read_key(request.ble_key), request.role, request.ble_interval_ms,
                                    request.ble_tx_power_dbm, request.ble_sleep)
        except ValueError as exc:
            raise ProvisionError(str(exc), USAGE) from None
    if not Path(request.port).exists():
        raise ProvisionError(f"--port {request.port}: no such device (is the board plugged in?)", NO_BOARD)
    if Path(request.port).is_dir():
        raise ProvisionError(f"--port {request.port}: a folder, not a serial device", USAGE)
    return settings


def provision(request: Request, *, workdir: Path, bus: str | None, record: Path, timeout: float = 60.0,
              connect_timeout: float = FIRST_ANSWER, say: Any = print, ble_adapter: str | None = None
              ) -> dict[str, Any]:
    """Provision one board as the module docstring says; the record written. Raises ProvisionError.

    With ``ble_adapter`` (the gateway's ``[ble] adapter`` setting) it also waits for the node's first advert.
    """
    ble = check(request)
    if ble_adapter is not None:
        problem = adapter_problem(ble_adapter)
        if ble is None or problem:
            raise ProvisionError(f"--ble-adapter {ble_adapter!r}: {problem or 'needs --ble-key'}", USAGE)
    try:
        manifest = build_image(request.board, request.role, workdir / f"image-{request.board}-{request.role}")
    except ImageError as exc:
        raise ProvisionError(f"cannot build the image: {exc}", USAGE) from None
    image = workdir / f"image-{request.board}-{request.role}"
    rom = manifest["rom"]
    # The board gets the flash-root files and the ROMFS image in code slot 0, made active (firmware/update_boot.py).
    state = json.dumps({"active": 0, "trial": False, "tries": 0}).encode()
    sources = {"main.py": image / "main.py", "update_boot.py": image / "update_boot.py"}
    if (image / "sim_rom.mpy").is_file():  # the virtual board: its ROM partitions are files of its flash
        sources |= {"sim_rom.mpy": image / "sim_rom.mpy", "rom/part0.bin": image / rom["file"]}
    expected = {path: _sha256(src.read_bytes()) for path, src in sources.items()}
    identity = {"node": request.node_id, "board": request.board, "role": request.role,
                "image": manifest["source_hash"], "rom": rom["sha256"],
                "provisioned": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "by": getpass.getuser()}
    with tempfile.TemporaryDirectory() as tmp:
        config = {"unit": request.unit, "role": request.role,
                  **({"baud": request.baud} if request.bus else {"bus": False})}
        extra: dict[str, bytes] = {"config.json": json.dumps(config).encode(),
                                   "identity.json": json.dumps(identity).encode(), "rom/state.json": state}
        if ble is not None:
            extra["ble.json"] = json.dumps(ble).encode()
        for name, data in extra.items():
            local = Path(tmp) / name.replace("/", "_")
            local.write_bytes(data)
            sources[name] = local
            expected[name] = _sha256(data)
        if request.key is not None:
            expected["node.key"] = _sha256(request.key.read_bytes())
            sources["node.key"] = request.key
        say(f"copying the {request.role} image (ROMFS, {rom['bytes']} bytes) to {request.port}")
        _mpremote(request.port, ["exec", "import os\ntry:\n    os.remove('main.py')\nexcept OSError:\n    pass\n"],
                  timeout=connect_timeout)
        if "rom/part0.bin" not in sources:
            _deploy_rom(request.port, image / rom["file"], sources, expected, say)
        # Relative paths only: on the virtual board the flash is a folder of the host, and a path from "/"
        # would leave it. Folders are made first (mpremote's cp does not), each file copied on its own.
        files = sorted(p for p in expected if p != "main.py")
        folders = sorted({"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)})
        _mpremote(request.port, ["exec", MKDIRS % (folders,) + STAGING_GONE])
        args: list[str] = []
        for path in files:
            args += ["+", "fs", "cp", str(sources[path]), ":" + path]
        _mpremote(request.port, args[1:])
        _verify(request.port, {p: h for p, h in expected.items() if p != "main.py"})
        _mpremote(request.port, ["fs", "cp", str(sources["main.py"]), ":main.py"])
        _verify(request.port, {"main.py": expected["main.py"]})
    say(f"{len(expected)} files on the board match the image; resetting")
    _mpremote(request.port, ["exec", "--no-follow", RESET])
    if bus is not None:
        waited = _wait_for_answer(bus, request.unit, request.baud, request.role, timeout)
        say(f"{request.node_id} answers as unit {request.unit} on {bus} ({waited:.1f} s after reset)")
    address = None
    if ble is not None and ble_adapter is not None:
        try:
            address, waited = wait_for_advert(ble_adapter, ble["key"], timeout)
        except TimeoutError:
            raise ProvisionError(f"{request.node_id} sent no advert that opens with its key within {timeout:.0f} s "
                                 f"on {ble_adapter} (is its radio in range?)", NO_ANSWER) from None
        say(f"{request.node_id} advertises as {address} ({waited:.1f} s after reset)")
    entry = {**identity, "unit": request.unit, "baud": request.baud if request.bus else None,
             "port": request.port, "bus_checked": bus is not None}
    if ble is not None:  # the record holds the key as the gateway's configuration does
        entry |= {"ble_key": ble["key"], "ble_interval_ms": ble["interval_ms"], "ble_address": address}
    with record.open("a") as f:
        f.write(json.dumps(entry) + "\n")
    return entry


def nodes_toml(record: Path, bus: str) -> str:
    """The gateway's ``[[node]]`` entries for every node in the record (its latest provisioning wins)."""
    latest: dict[str, dict[str, Any]] = {}
    for n, line in enumerate(record.read_text().splitlines(), 1):
        try:
            entry = json.loads(line)
            latest[entry["node"]] = entry
        except (ValueError, KeyError, TypeError):
            raise ProvisionError(f"{record}:{n}: not a provisioning record line", USAGE) from None
    return "".join(_node_entry(e, bus) for e in latest.values())


def _node_entry(e: dict[str, Any], bus: str) -> str:
    """One node's gateway entry: ``[[ble.node]]`` for a node provisioned with a BLE key, else ``[[node]]``."""
    origin = f'# board {e["board"]}, image {e["image"][:12]}, provisioned {e["provisioned"]} by {e["by"]}\n\n'
    if "ble_key" not in e:
        return f'[[node]]\nid = "{e["node"]}"\nbus = "{bus}"\nunit = {e["unit"]}\nrole = "{e["role"]}"\n' + origin
    if not e.get("ble_address"):  # the address comes from the node's first advert
        return f'# {e["node"]}: BLE address unknown, provision it again with --ble-adapter\n' + origin
    return (f'[[ble.node]]\nid = "{e["node"]}"\naddress = "{e["ble_address"]}"\nkey = "{e["ble_key"]}"\n'
            f'role = "{e["role"]}"\ninterval = {e["ble_interval_ms"] / 1000}\n' + origin)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _mpremote(port: str, args: list[str], *, timeout: float = 300.0) -> str:
    """Run mpremote on the board's console (``resume``: no soft reset, so the REPL state is the board's)."""
    try:
        done = subprocess.run([sys.executable, "-m", "mpremote", "connect", port, "resume", *args],
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        # mpremote waits without end on a line where no REPL answers
        raise ProvisionError(f"{port}: cannot work with MicroPython there: no REPL answered within {timeout:.0f} s "
                             "(is MicroPython flashed, and the port the board's?)", NO_BOARD) from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        reason = lines[-1] if lines else f"mpremote exited with {done.returncode}"
        raise ProvisionError(f"{port}: cannot work with MicroPython there: {reason}", NO_BOARD)
    return done.stdout


def _deploy_rom(port: str, rom_image: Path, sources: dict[str, Path], expected: dict[str, str], say: Any) -> None:
    """Put the ROMFS image in ROM partition 0 where the board has two (else add the slot file to ``sources``)."""
    try:
        partitions = int(_mpremote(port, ["exec", ROM_PARTITIONS]).strip().splitlines()[-1])
    except (ValueError, IndexError):
        partitions = 0
    if partitions < 2:  # no ROM partitions for two code slots: the slot is a file
        sources["rom/slot0.img"] = rom_image
        expected["rom/slot0.img"] = _sha256(rom_image.read_bytes())
        return
    say(f"deploying the ROMFS image to ROM partition 0 of {partitions} (mpremote romfs deploy)")
    _mpremote(port, ["romfs", "deploy", "--partition", "0", str(rom_image)])
    data = rom_image.read_bytes()
    found = _mpremote(port, ["exec", PARTITION_HASH % (0, len(data))]).strip().splitlines()[-1:]
    if found != [_sha256(data)]:
        raise ProvisionError("ROM partition 0 does not hold the image after deploying it; run provision again",
                             MISMATCH)


def _verify(port: str, expected: dict[str, str]) -> None:
    out = _mpremote(port, ["exec", HASHES % (sorted(expected),)])
    try:
        found = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise ProvisionError(f"{port}: the board's hashes could not be read: {out[-200:]!r}", MISMATCH) from None
    wrong = sorted(p for p, h in expected.items() if found.get(p) != h)
    if wrong:
        raise ProvisionError(f"{len(wrong)} file(s) differ on the board after copying, e.g. {wrong[0]}; "
                             "run provision again", MISMATCH)


def _wait_for_answer(bus: str, unit: int, baud: int, role: str, timeout: float) -> float:
    """Seconds until ``unit`` answers on ``bus`` from a boot after the reset (its uptime says so)."""
    from pymodbus.client import ModbusSerialClient
    from pymodbus.exceptions import ModbusException

    from gateway.contracts import load_role

    uptime = load_role(role)["uptime"]  # every role has it (protocols/roles/common.py), seconds, u32
    start = time.monotonic()
    client = ModbusSerialClient(bus, baudrate=baud, timeout=0.5, retries=0)
    try:
        while time.monotonic() - start < timeout:
            if client.connected or client.connect():
                try:
                    reply = client.read_input_registers(uptime.address, count=2, device_id=unit)
                    # an answer from before the reset (a board that did not reset) does not count
                    if not reply.isError() and (reply.registers[0] << 16 | reply.registers[1]) <= (
                            time.monotonic() - start + 2):
                        return time.monotonic() - start
                except ModbusException:
                    pass
            time.sleep(0.2)
    finally:
        client.close()  # type: ignore[no-untyped-call]
    raise ProvisionError(f"unit {unit} did not answer on {bus} within {timeout:.0f} s after the reset; "
                         "check its wiring and baud rate", NO_ANSWER)
