"""The node's configuration: ``config.json`` in flash, validated, or safe defaults.

``{"unit": 1..247, "role": "lamp", "baud": 19200, "sample_ms": 1000}``; ``baud``
and ``sample_ms`` are optional. ``"bus": false`` says the board has no RS-485
bus (a battery BLE node): the node runs no Modbus slave and is reached over
its radio (``Config.baud`` is then 0). A missing, unreadable or invalid file never
stops the node: it boots in SAFE MODE on unit 247 at 19200 baud with the lamp
role (which powers up lit), and says why in ``Config.problem`` and in the
``safe_mode`` status flag, so a field engineer can reach it on the bus and fix
the file.
"""

import json

from firmware import roles

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_DEFAULT_UNIT = const(247)
_DEFAULT_BAUD = const(19200)
DEFAULT_ROLE = roles.DEFAULT  # safe mode runs the image's own role (lamp from the source tree)
_DEFAULT_SAMPLE_MS = const(1000)
BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
_MIN_SAMPLE_MS = const(100)
_MAX_SAMPLE_MS = const(60000)


class Config:
    """Settings in force; ``safe_mode``: defaults replaced a bad file (see ``problem``)."""

    def __init__(
        self,
        unit=_DEFAULT_UNIT,
        role=DEFAULT_ROLE,
        baud=_DEFAULT_BAUD,
        sample_ms=_DEFAULT_SAMPLE_MS,
        safe_mode=False,
        problem=None,
    ):
        self.unit = unit
        self.role = role
        self.baud = baud
        self.sample_ms = sample_ms
        self.safe_mode = safe_mode
        self.problem = problem


def load(path="config.json"):
    """Read and validate ``path``; return a :class:`Config` (safe mode when anything is wrong)."""
    try:
        with open(path) as f:
            raw = json.load(f)
    except OSError:
        return Config(safe_mode=True, problem="no %s" % path)
    except ValueError:
        return Config(safe_mode=True, problem="%s is not valid JSON" % path)
    problem = check(raw)
    if problem:
        return Config(safe_mode=True, problem="%s: %s" % (path, problem))
    return Config(
        raw["unit"],
        raw["role"],
        raw.get("baud", _DEFAULT_BAUD) if raw.get("bus", True) else 0,
        raw.get("sample_ms", _DEFAULT_SAMPLE_MS),
    )


def save_unit(path, cfg, unit):
    """Persist Modbus ``unit`` in ``path`` atomically, keeping the file's other keys (or ``cfg``'s values).

    Raises OSError when the file cannot be written, ValueError for a unit outside 1..247.
    """
    from firmware.storage import atomic_write

    if not _is_int(unit) or not 1 <= unit <= 247:
        raise ValueError("unit must be an integer 1..247, got %r" % (unit,))
    try:
        with open(path) as f:
            raw = json.load(f)
    except (OSError, ValueError):
        raw = None
    if not isinstance(raw, dict) or check(raw) is not None:
        raw = {"role": cfg.role, "sample_ms": cfg.sample_ms}
        raw.update({"baud": cfg.baud} if cfg.baud else {"bus": False})
    raw["unit"] = unit
    atomic_write(path, json.dumps(raw))


def check(raw):
    """None if ``raw`` (decoded JSON) is a valid configuration, else what is wrong."""
    if not isinstance(raw, dict):
        return "must be a JSON object"
    unit = raw.get("unit")
    if not _is_int(unit) or not 1 <= unit <= 247:
        return "unit must be an integer 1..247, got %r" % (unit,)
    role = raw.get("role")
    if role not in roles.NAMES:
        return "role must be one of %s, got %r" % (", ".join(roles.NAMES), role)
    if not roles.available(role):
        return "role %r is not in this image (built for %s)" % (role, roles.BUILT)
    baud = raw.get("baud", _DEFAULT_BAUD)
    if baud not in BAUD_RATES or not _is_int(baud):
        return "baud must be one of %s, got %r" % (BAUD_RATES, baud)
    if not isinstance(raw.get("bus", True), bool):
        return "bus must be true or false, got %r" % (raw["bus"],)
    sample_ms = raw.get("sample_ms", _DEFAULT_SAMPLE_MS)
    if not _is_int(sample_ms) or not _MIN_SAMPLE_MS <= sample_ms <= _MAX_SAMPLE_MS:
        return "sample_ms must be an integer %d..%d, got %r" % (
            _MIN_SAMPLE_MS,
            _MAX_SAMPLE_MS,
            sample_ms,
        )
    return None


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)
