"""The typed face of the shared wire contracts (``protocols/``): the one place where the gateway meets them.

``protocols/`` runs on MicroPython too, so it carries no annotations and its
modules are not something ``mypy --strict`` can check. This module imports them
at run time without letting mypy follow the import and states, as Protocols and
typed names, exactly the parts the gateway uses; the rest of ``gateway/``
imports them from here and nowhere else (``tests/test_import_rules.py`` holds
that; ``tests/gateway/test_contracts.py`` checks each stated face against the
module behind it). It restates no table: register maps, limits and constants
come from ``protocols``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, cast

from gateway.profiles import Profile, ProfileError, shipped_profile, shipped_profiles

Number = int | float
"""A register's engineering value (BOOL registers give ``bool``, a subclass of int)."""
RegisterRow = tuple[Any, ...]
"""One row of a register table: name, table, address, type, scale, unit, access, minimum, maximum, doc."""


class Register(Protocol):
    """One register of a role's map (``protocols.regmap.Register``)."""

    name: str
    table: int
    address: int
    type: int
    scale: int
    unit: str | None
    access: int
    minimum: Number
    maximum: Number
    width: int
    order: int

    def to_raw(self, value: Number) -> Number:
        """Engineering value -> raw value; ValueError when out of bounds or too precise."""

    def value(self, raw: Number) -> Number:
        """Raw value -> engineering value (``bool`` for BOOL registers)."""

    def words(self, raw: Number) -> tuple[int, ...]:
        """Raw value -> the register words that carry it."""

    def from_words(self, words: Sequence[int], offset: int = 0) -> Number:
        """Register words -> raw value."""


class RegisterMap(Protocol):
    """A role's validated register table (``protocols.regmap.RegisterMap``)."""

    role: str
    role_id: int
    registers: list[Register]
    poll_classes: dict[str, int] | None
    """Poll class by register name where the map declares its own (a device profile), else None."""

    def __getitem__(self, name: str) -> Register:
        """The register called ``name``; KeyError naming close names otherwise."""

    def __contains__(self, name: object) -> bool:
        """Whether the role has a register called ``name``."""

    def blocks(self, table: int) -> tuple[tuple[int, int], ...]:
        """``(start, count)`` read requests covering every register of ``table``."""

    def decode(self, table: int, start: int, words: Sequence[int]) -> list[tuple[Register, Number]]:
        """Words read from ``start`` -> ``(register, raw)`` for every whole register inside."""


class CommonContract(Protocol):
    """What every role shares (``protocols.roles.common``): clock, commands, the event window."""

    CLOCK_MIN: int
    NODE_CLOCK_UNSYNCED: int
    CMD_REBOOT: int
    CMD_APPLY_UNIT: int
    EVENT_WINDOW: int
    EVENT_WORDS: int
    EVENT_WINDOW_START: int
    COMMON: Sequence[RegisterRow]


class LampContract(Protocol):
    """The lamp role's layout beyond its register rows (``protocols.roles.lamp``): programs and calendar."""

    CONTROL_GATEWAY: int
    PROGRAMS: int
    POINTS: int
    RULES: int
    PROGRAM_START: int
    CALENDAR_START: int
    CALENDAR_WORDS: int


class ProgramRules(Protocol):
    """The rules of lamp programs, calendars and photocell settings (``protocols.programs``, the node's own)."""

    MAX_PROGRAMS: int
    MAX_POINTS: int
    MAX_RULES: int

    def validate_program(self, points: object, pid: int) -> None:
        """ValueError naming the point when ``points`` is not a valid program ``pid``."""

    def validate_calendar(self, calendar: object, n_programs: int, max_rules: int = ...) -> None:
        """ValueError naming the rule when ``calendar`` is not a valid calendar."""

    def calendar_programs(self, calendar: Mapping[str, Any]) -> list[int]:
        """The program ids a valid calendar uses."""

    def month_day(self, md: object, where: str) -> int:
        """``[month, day]`` -> the day's number in a leap year (1..366); ValueError otherwise."""

    def validate_photo(self, photo: object) -> None:
        """ValueError when ``photo`` is not a valid photocell setting."""


class SenmlLabels(Protocol):
    """SenML's integer labels (``protocols.senml``, RFC 8428 section 6)."""

    LABELS: dict[str, int]

    def to_labels(self, pack: list[dict[str, Any]]) -> list[dict[int, Any]]:
        """A pack with text labels -> the same pack with the CBOR integer labels."""


class ModbusRequests(Protocol):
    """Modbus request PDUs (``protocols.modbus.master``): function code and fields, no unit, no CRC."""

    def read_pdu(self, function: int, address: int, count: int) -> bytes:
        """Read ``count`` (1..125) registers from ``address`` with function 3 (holding) or 4 (input)."""

    def write_multiple_pdu(self, address: int, values: Sequence[int]) -> bytes:
        """Write 1..123 holding registers from ``address`` on (function 16)."""


class ModbusBits(Protocol):
    """Coil and discrete-input PDUs (``protocols.modbus.bits``): functions 01, 02, 05 and 15, no unit, no CRC."""

    def read_bits_pdu(self, function: int, address: int, count: int) -> bytes:
        """Read ``count`` (1..2000) coils (function 1) or discrete inputs (2) from ``address``."""

    def write_coil_pdu(self, address: int, on: object) -> bytes:
        """Switch one coil (function 5): a true ``on`` sends 0xFF00, a false one 0x0000."""

    def write_coils_pdu(self, address: int, bits: Sequence[int]) -> bytes:
        """Set 1..1968 coils from ``address`` on (function 15)."""

    def read_bits_answer(self, pdu: bytes, function: int, count: int) -> list[int]:
        """The 0/1 bits of a read-bits answer PDU; ValueError when it is not one of ``count`` bits."""


class UpdateRecords(Protocol):
    """Updates over the bus (``protocols.update``): the file records, their status and the image's MAC."""

    FILE_IMAGE: int
    FILE_CONTROL: int
    CHUNK: int
    OP_COMMIT: int
    STATUS_WORDS: int
    MAX_IMAGE: int
    RECEIVING: int
    OK: int
    RESULTS: dict[int, str]

    def mac(self, key: bytes, role: str, size: int, health_s: int, digest: bytes) -> bytes:
        """HMAC-SHA256 the node checks before it switches to an image."""

    def begin_record(self, size: int, health_s: int, digest: bytes, tag: bytes) -> bytes:
        """The BEGIN control record's bytes."""

    def parse_status(self, data: bytes) -> dict[str, int]:
        """The status record's bytes as a dict."""


_regmap: Any = importlib.import_module("protocols.regmap")
_roles: Any = importlib.import_module("protocols.roles")

HOLDING: int = _regmap.HOLDING  # holding-register table (read with function 03, written with 16)
INPUT: int = _regmap.INPUT  # input-register table (read with function 04)
COIL: int = _regmap.COIL  # coil table (read with function 01, written with 05 or 15); one bit per address
DISCRETE: int = _regmap.DISCRETE  # discrete-input table (read with function 02); one bit per address
TABLES: tuple[int, ...] = tuple(_regmap.TABLES)  # every table, in the order a node's values are read and reported
BIT_TABLES: tuple[int, ...] = tuple(_regmap.BIT_TABLES)  # coils and discrete inputs: their "words" are 0 or 1
U16: int = _regmap.U16  # register type code: unsigned 16-bit
U32: int = _regmap.U32  # register type code: unsigned 32-bit, high word first
S32: int = _regmap.S32  # register type code: signed 32-bit, high word first
BOOL: int = _regmap.BOOL  # register type code of a 0/1 register, published as a SenML boolean
F32: int = _regmap.F32  # register type code: IEEE 754 float32
RO: int = _regmap.RO  # access code: read only
RW: int = _regmap.RW  # access code: the gateway may write it
LOW_FIRST: int = _regmap.LOW_FIRST  # word order of a 32-bit value whose low word comes first (at the lower address)
RegisterMapError: type[Exception] = _regmap.RegisterMapError  # a table that contradicts itself (role, register, field)
ROLES: list[str] = [*_roles.ROLES, *shipped_profiles()]
"""Names of the node roles that have a register map: the firmware's roles, then the shipped device
profiles; a profile file named in the configuration joins them (:func:`add_profile`)."""
FIRMWARE_ROLES: tuple[str, ...] = tuple(_roles.ROLES)
"""The roles of streetedge's own nodes (lamp, meter, env): commanded by their own actions, never by ``write``."""
TABLE_NAMES: dict[int, str] = {HOLDING: "holding", INPUT: "input", COIL: "coil", DISCRETE: "discrete input"}
"""Human names of the tables, for log and error messages."""

common = cast(CommonContract, importlib.import_module("protocols.roles.common"))  # what every role shares
lamp = cast(LampContract, importlib.import_module("protocols.roles.lamp"))  # the lamp's programs and calendar layout
programs = cast(ProgramRules, importlib.import_module("protocols.programs"))  # the rules of lamp programs and calendars

senml = cast(SenmlLabels, importlib.import_module("protocols.senml"))  # senML's integer labels
modbus = cast(ModbusRequests, importlib.import_module("protocols.modbus.master"))  # modbus request PDUs
bits = cast(ModbusBits, importlib.import_module("protocols.modbus.bits"))  # coil and discrete-input PDUs
update = cast(UpdateRecords, importlib.import_module("protocols.update"))  # update file records and the image MAC

_maps: dict[str, RegisterMap] = {}
_profile_sources: dict[str, str] = {}


def load_role(name: str) -> RegisterMap:
    """The register map of the role called ``name`` (cached); ValueError for an unknown role."""
    regmap = _maps.get(name)
    if regmap is None:
        if name in _roles.ROLES:
            regmap = cast(RegisterMap, _roles.load(name))
        elif name in ROLES:
            try:
                regmap = shipped_profile(name).regmap
            except ProfileError as exc:
                raise ValueError(str(exc)) from exc
        else:
            raise ValueError(f"unknown role {name!r}; known roles: {', '.join(ROLES)}")
        _maps[name] = regmap
    return regmap


def add_profile(profile: Profile) -> None:
    """Make a profile read from a file a role: ``load_role(profile.name)`` then gives its map.

    ValueError when the name belongs to a firmware role, a shipped profile or another file.
    """
    name = profile.name
    source = _profile_sources.get(name)
    if source == profile.source:
        _maps[name] = profile.regmap  # the same file read again (a reload): its current content wins
        return
    if source is not None:
        raise ValueError(f"profile name {name!r} is already used by {source}")
    if name in ROLES:
        kind = "a node role" if name in _roles.ROLES else "a shipped profile"
        raise ValueError(f"profile name {name!r} is already {kind}; name the device in the file otherwise")
    _profile_sources[name] = profile.source
    _maps[name] = profile.regmap
    ROLES.append(name)

def register_map(role: str, rows: Sequence[RegisterRow], role_id: int = 0, max_read: int = 125) -> RegisterMap:
    """A register map of the gateway's own making (a read-back's few registers, the event window, a profile).

    ``max_read`` is the most registers (or bits) the device answers in one request. Raises
    :data:`RegisterMapError` naming the register and field when the rows contradict themselves.
    """
    return cast(RegisterMap, _regmap.RegisterMap(role, tuple(rows), role_id, max_read))


def role_constants(role: str) -> dict[str, int]:
    """The integer constants of ``protocols.roles.<role>`` (``role`` may be ``"common"``), by name."""
    module = importlib.import_module(f"protocols.roles.{role}")
    return {name: value for name, value in vars(module).items() if type(value) is int and name.isupper()}


_kinds: Any = importlib.import_module("protocols.roles.kinds")
POLL_MEASURE: int = _kinds.POLL_MEASURE
"""Poll class of a register read at every poll (the default)."""
POLL_COUNTER: int = _kinds.POLL_COUNTER
"""Poll class of a total that only grows, read every few polls."""
POLL_SETTING: int = _kinds.POLL_SETTING
"""Poll class of a value only a write changes."""
POLL_IDENTITY: int = _kinds.POLL_IDENTITY
"""Poll class of a value fixed while the node runs."""
_POLL_ATTRS = (("COUNTERS", POLL_COUNTER), ("SETTINGS", POLL_SETTING), ("IDENTITY", POLL_IDENTITY),
               ("MEASURES", POLL_MEASURE))


def poll_declarations(role: str) -> dict[str, int]:
    """The poll classes a role's table declares, by register name: the common rows', then the role's own.

    Names not listed are measurements; a role that is not in ``protocols.roles``
    (a device profile) declares nothing here.
    """
    declared: dict[str, int] = {}
    modules = [importlib.import_module("protocols.roles.common")]
    if role in FIRMWARE_ROLES:
        modules.append(importlib.import_module(f"protocols.roles.{role}"))
    for module in modules:
        for attr, cls in _POLL_ATTRS:
            for name in str(getattr(module, attr, "")).split():
                declared[name] = cls
    return declared


class BthomeCodec(Protocol):
    """BTHome v2 service data read (``protocols.bthome_read``): the advert structure, header and objects."""

    INFO_TRIGGER: int
    WATER: int  # the water object (millilitres, 32 bits: it wraps)

    def service_data_of(self, adv_data: bytes) -> bytes | None:
        """The BTHome service data in advertising data, or None; DecodeError on a malformed structure."""

    def check_header(self, service_data: bytes) -> tuple[int, int | None]:
        """(information byte, counter or None when unencrypted); DecodeError unless BTHome v2 that fits."""

    def decode_objects(self, data: bytes) -> list[tuple[int, int | bytes]]:
        """(object id, raw value) pairs; DecodeError on an unknown id or a truncated value."""


class BthomeOpener(Protocol):
    """Decrypts one node's service data (``protocols.bthome_read.Opener``)."""

    def open(self, service_data: bytes) -> tuple[int, int, bytes]:
        """(information byte, counter, object bytes); AuthenticationError on a forged or foreign advert."""


class BleAdvertTables(Protocol):
    """What each battery role advertises (``protocols.ble_adverts``)."""

    def role(self, name: str) -> tuple[Sequence[tuple[str, int, int, int]], Sequence[tuple[int, int]],
                                       Sequence[tuple[int, int]]]:
        """(rows, alarms in the reading advert, alarms) of a role that advertises; KeyError otherwise."""

    def unpack(self, rows: Sequence[tuple[str, int, int, int]], alarms: Sequence[tuple[int, int]],
               objects: Sequence[tuple[int, int | bytes]]) -> tuple[dict[str, int], int]:
        """(register raw values by name, alarm status bits) from decoded objects."""


_bthome: Any = importlib.import_module("protocols.bthome_read")
bthome = cast(BthomeCodec, _bthome)  # BTHome v2 service data
ble_adverts = cast(BleAdvertTables, importlib.import_module("protocols.ble_adverts"))  # what each role advertises
BLE_ROLES: tuple[str, ...] = tuple(row[0] for row in importlib.import_module("protocols.ble_adverts").ROLES)
"""The roles whose nodes advertise their readings over BLE."""
_errors: Any = importlib.import_module("protocols.errors")
AuthenticationError: type[Exception] = _errors.AuthenticationError  # a tag that does not match: forged, another key
DecodeError: type[Exception] = _errors.DecodeError  # bytes that are not well-formed for their format


def bthome_opener(key: bytes, address: str) -> BthomeOpener:
    """The decrypter of the node with this key (16 bytes) and address (``AA:BB:CC:DD:EE:FF``)."""
    return cast(BthomeOpener, _bthome.Opener(key, address))


def ble_role(role: str) -> str:
    """The role of a BLE node's readings: ``<role>-ble``, the role's registers its adverts carry (and seq, status).

    Its map is made and known to :func:`load_role` on first use; ValueError when ``role`` does not advertise.
    """
    name = f"{role}-ble"
    if name not in _maps:
        if role not in BLE_ROLES:
            raise ValueError(f"role {role!r} does not advertise over BLE (roles that do: {', '.join(BLE_ROLES)})")
        wanted = {"seq", "status", *(row[0] for row in ble_adverts.role(role)[0])}
        rows = [row for row in importlib.import_module(f"protocols.roles.{role}").REGISTERS if row[0] in wanted]
        _maps[name] = register_map(name, rows, load_role(role).role_id)
        ROLES.append(name)
    return name


for _role in BLE_ROLES:  # known from the start, so that the outbox's births describe them
    ble_role(_role)


class BleGattFrames(Protocol):
    """One BLE node's sealed GATT frames (``protocols.ble_gatt.Sealed``)."""

    def command(self, counter: int, op: int, body: bytes = b"") -> bytes:
        """A command frame under the node's key."""

    def open_result(self, frame: bytes) -> tuple[int, int, bytes]:
        """(counter, status, body) of a result frame; AuthenticationError if forged, DecodeError if malformed."""


_gatt: Any = importlib.import_module("protocols.ble_gatt")
BLE_GATT_COMMAND, BLE_GATT_RESULT = str(_gatt.COMMAND_UUID), str(_gatt.RESULT_UUID)  # written / notified (UUIDs)
BLE_GATT_OP_WRITE, BLE_GATT_OP_READ, BLE_GATT_OP_ACK_ALARM, BLE_GATT_OP_RADIO = (  # write holding registers
    int(_gatt.OP_WRITE), int(_gatt.OP_READ), int(_gatt.OP_ACK_ALARM), int(_gatt.OP_RADIO))  # read, ack, radio
BLE_GATT_OP_FILE_WRITE, BLE_GATT_OP_FILE_READ = int(_gatt.OP_FILE_WRITE), int(_gatt.OP_FILE_READ)  # updates
ble_gatt_radio_body: Callable[[int, int, int], bytes] = _gatt.radio_body  # (interval_ms, tx_power_dbm, sleep)
ble_gatt_parse_radio: Callable[[bytes], tuple[int, int, int]] = _gatt.parse_radio  # a radio result's body
BLE_GATT_FILE_BODY: tuple[Any, Any, int] = (_gatt.file_write_body, _gatt.file_read_body, _gatt.FILE_PART)  # updates


def ble_gatt_write_body(address: int, words: list[int]) -> bytes:
    """The body of a GATT write of holding registers from ``address`` on; DecodeError for bad words."""
    return bytes(_gatt.write_body(address, words))


def ble_gatt_frames(key: bytes, address: str) -> BleGattFrames:
    """The GATT frames of the node with this key and address (``AA:BB:CC:DD:EE:FF``)."""
    return cast(BleGattFrames, _gatt.Sealed(key, _bthome.address_bytes(address)))
