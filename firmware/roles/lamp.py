"""The lamp role: who drives the light (gateway or program), the driver and relay, metering, alarms.

Control (``protocols.roles.lamp`` says it for the gateway): the gateway's
``dim_level``/``relay`` rule while it is present; the node's own program
(``firmware.schedule``: calendar, programs, photocell, override) rules in
``mode`` 1, after ``autonomy_after`` seconds without a request to this node,
and from power-up until the gateway writes ``dim_level`` or ``relay``.
Without a synced clock (or with invalid settings) the program's level is
``safe_level``; the photocell alone may switch the lamp off in daylight. The
program is evaluated (:mod:`firmware.roles.lamp_level`) when the clock's minute
changes or an input changed.

Measured each sample: voltage, current, power (metering chip), power factor,
driver temperature, lux (photocell, if the board has one). ``level_actual``
models the driver's fade (full scale in ``_FADE_MS``), 0 with the relay open,
without mains or while the lamp draws nothing it should.

Counters (``firmware.storage``, published as saved so they never go back): energy (Wh), burning
time (s lit, at least 1 W drawn), switch-ons (dark to lit), supply losses (mains gone at the meter).

Alarms (status bits; two samples in a row raise and clear a failure; each
change is an ``EV_ALARM_ON``/``EV_ALARM_OFF`` event with the bit):

- lamp failure: relay closed, level > 0, mains present, under 1 W;
- dimming failure: level steady for two samples, but the power is further than
  max(25 % of ``rated_power``, 5 W) from ``rated_power`` x level;
- relay failure: relay open but 1 W or more drawn (a welded contact);
- on when off: commanded off (relay open or level 0) but at least
  max(2 W, 10 % of ``rated_power``) drawn;
- over voltage above 253 V, under voltage below 207 V (with mains), supply
  loss below 100 V; over temperature above 85 C; storage error.

Settings, programs and calendar live in ``lamp.json``
(:mod:`firmware.roles.lamp_config`, imported for a boot or a write and then
released, as is ``firmware.night_plan`` after each night's plan: RAM is the
node's scarcest resource; the node collects before importing either, and
reports the heap at their height as its peak). The override is not
persisted: it ends with a reboot.
"""

import gc
import time
from array import array

from firmware.lazy import release
from protocols.roles.common import EV_SETTINGS
from protocols.roles.lamp import (
    ALARMS,
    BLOCKS,
    CALENDAR_START,
    CALENDAR_WORDS,
    CONTROL_AUTONOMOUS,
    CONTROL_POWER_UP,
    CONTROL_PROGRAM,
    EV_CONTROL,
    EV_LEVEL,
    EV_PROGRAMS,
    FIRMWARE_VERSION,
    MIRRORS,
    OVER_TEMPERATURE_DC,
    OVER_VOLTAGE_DV,
    POINTS,
    PROGRAM_START,
    PROGRAM_WORDS,
    PROGRAMS,
    ROLE_ID,
    RULES,
    SOURCE_GATEWAY,
    STATUS_CLOCK_UNSYNCED,
    STATUS_DIMMING_FAILURE,
    STATUS_LAMP_FAILURE,
    STATUS_LAMP_ON,
    STATUS_ON_WHEN_OFF,
    STATUS_OVER_TEMPERATURE,
    STATUS_OVER_VOLTAGE,
    STATUS_RELAY_FAILURE,
    STATUS_SAFE_MODE,
    STATUS_STORAGE_ERROR,
    STATUS_SUPPLY_LOSS,
    STATUS_UNDER_VOLTAGE,
    SUPPLY_LOSS_DV,
    UNDER_VOLTAGE_DV,
)

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_FADE_MS = const(500)  # the driver's fade, full scale
_MIN_ON_DW = const(10)  # 1 W in 0.1 W
_TEMP_MIN_DC = const(-400)
_TEMP_MAX_DC = const(1250)
_U16_MAX = const(0xFFFF)
_DEBOUNCE = const(2)
# Slots of Role._was: the modelled light (%), the clock's minute (-1 unsynced), lit ms not yet counted in burn_s,
# lit and mains present at the last sample.
_ACTUAL = const(0)
_MINUTE = const(1)
_BURN_MS = const(2)
_LIT = const(3)
_SUPPLY = const(4)
_FC_WRITE = const(16)
_EX_ILLEGAL_VALUE = const(3)
_GATEWAY = const(0)  # CONTROL_GATEWAY
_SCHEDULE = "firmware.night_plan firmware.almanac protocols.program_rules"  # one string: one object in the heap
_CONFIG = const("firmware.roles.lamp_config")
_NOT_PERSISTED = ("dim_level", "relay", "override_level", "override_minutes")

# The node releases protocols.roles.lamp and .common once the bank has packed the rows: this module keeps
# copies of the numbers above (not the modules), and nothing else here holds on to them.
RELEASE_TABLES = True

# Re-exported for lamp_config, lamp_level and the node's bank (MIRRORS), which must not import the released table.
__all__ = ["BLOCKS", "CALENDAR_START", "CALENDAR_WORDS", "EV_LEVEL", "EV_PROGRAMS", "EV_SETTINGS", "FIRMWARE_VERSION",
           "MIRRORS", "POINTS", "PROGRAMS", "PROGRAM_START", "PROGRAM_WORDS", "RELEASE_TABLES", "ROLE_ID", "RULES",
           "SOURCE_GATEWAY", "Role", "safe_state"]


def __getattr__(name):
    # The table's rows (``REGISTERS``, which the node's bank packs at boot) and its MAP (large) only on demand,
    # from protocols.roles.lamp, which the node then releases; one function for both (each is code in the heap).
    if name == "REGISTERS" or name == "MAP":
        from protocols.roles import lamp

        return getattr(lamp, name)
    raise AttributeError(name)


def safe_state(board, bank):
    """Crash-loop safe mode (the role does not run): relay closed, full light, the flag in ``status``."""
    bank.set("dim_level", 100)
    bank.set("relay", 1)
    bank.set("status", STATUS_SAFE_MODE)
    try:
        board.relay(True)
        board.dimmer(100)
    except Exception:  # a broken output must not stop the node answering
        pass


class Role:
    """One lamp controller: ``start()`` once; ``on_write`` from the bank; ``sample(now_ms)``."""

    def __init__(self, board, bank, store, safe_mode=False):
        self.board = board
        self.bank = bank
        self.store = store
        self.safe_mode = safe_mode
        self.events = None  # set by the node
        self.clock = None
        self.node = None
        self.settings_error = False
        # Packed, as the window and the calendar block hold them (a program's points in an array("h"), the
        # calendar's words in an array("H")): a tuple per point and a dictionary per rule took five times the heap.
        self.programs = [None] * PROGRAMS
        self.calendar_words = array("H", bytes(2 * CALENDAR_WORDS))
        self.calendar = self.calendar_words  # the same words while they are a valid calendar; None if damaged
        self.control = CONTROL_POWER_UP
        self.source = SOURCE_GATEWAY
        self.target = -1  # level driven now (0 with the relay open); -1 before the first drive
        self.stale = True  # the program must be evaluated again
        self._plan = None  # the night's switch points (firmware.night), until a night begins or a setting changes
        self.status = 0
        self.memory_errors = 0  # evaluations skipped for want of RAM (diagnostics)
        self._last_ms = None
        # sample()'s own state between samples, in one list (_ACTUAL ..): each attribute of the role would be a
        # name the node keeps interned for good, a slot of a list is none.
        self._was = [0.0, -1, 0, False, True]
        self._steady = 0  # samples since the target last changed
        self._counts = bytearray(16)  # debounce counters, one per status bit (by its number: a dict took 3x the heap)
        self._dark = None  # photocell state: True dark, False light, None unknown
        self._lux = None
        self._ov_end = None  # clock ms when the override ends
        from protocols.roles.lamp import block_bounds  # used here only: the bank copies the bounds

        bank.add_block(PROGRAM_START, PROGRAM_WORDS, block_bounds, self._block_write)
        bank.add_block(CALENDAR_START, CALENDAR_WORDS, block_bounds, self._block_write)

    def log(self, code, value):
        """Record an event, if the node gave this role an event log."""
        events = self.events
        if events is not None:
            events.log(code, value)

    def _done(self):
        # Neither the settings code nor the schedule is needed until the next write or evaluation.
        node = self.node
        if node is not None:
            node.note_heap()  # a write or an evaluation at its height: the node's peak
        release(_CONFIG)
        for name in _SCHEDULE.split():
            release(name)

    # --- start and writes ----------------------------------------------------------------------

    def start(self):
        """Load the settings, publish them, and drive the lamp to its power-up state (the program's level)."""
        bank = self.bank
        gc.collect()  # the settings code (firmware.roles.lamp_config) and its work land in one tidy heap
        from firmware.roles import lamp_config

        lamp_config.load(self)
        lamp_config = None
        bank.set("role", ROLE_ID)
        bank.set("firmware", FIRMWARE_VERSION)
        bank.set("energy", self.store.energy_wh)
        self.control = CONTROL_PROGRAM if bank.get("mode") == 1 else CONTROL_POWER_UP
        self._done()
        self._evaluate()

    def on_write(self, names):
        """A master wrote holding registers ``names``: check, apply, persist (ModbusException refuses it)."""
        bank = self.bank
        if "photo_on" in names or "photo_off" in names:
            on = bank.get("photo_on")
            off = bank.get("photo_off")
            if off and on >= off:
                from protocols.errors import ModbusException

                raise ModbusException(_FC_WRITE, _EX_ILLEGAL_VALUE, "photo_on must be below photo_off")
        persist = False
        for name in names:
            if name not in _NOT_PERSISTED:
                persist = True
        take = "dim_level" in names or "relay" in names
        if take and bank.get("mode") == 1:
            bank.set("mode", 0)
            persist = True
        if persist:
            gc.collect()  # the settings code and its work land in one tidy heap (a write is rare)
            try:
                from firmware.roles import lamp_config

                lamp_config.save(self)
            finally:
                lamp_config = None
                release(_CONFIG)
            self.log(EV_SETTINGS, bank.address(names[0]))
        if take:
            self._set_control(_GATEWAY)
        elif "mode" in names:
            self._set_control(CONTROL_PROGRAM if bank.get("mode") == 1 else _GATEWAY)
        if "override_minutes" in names:
            m = bank.get("override_minutes")
            self._ov_end = self._clock_ms() + m * 60000 if m else None
        self.store.note_change()
        self.stale = True
        self._plan = None
        # The settings are stored; deciding the level may mean building a night's plan (tens of
        # ms): answer first, then decide, before the next request is read.
        slave = getattr(self.node, "slave", None)
        if slave is not None and slave.after_answer is None:
            slave.after_answer = self._evaluate
        else:
            self._evaluate()

    def _block_write(self, address, count):
        # A master wrote the program window or the calendar (one method for both: one name fewer in RAM).
        self._plan = None
        gc.collect()  # the settings code and its work land in one tidy heap (a write is rare)
        from firmware.roles import lamp_config

        try:
            lamp_config.block_write(self, address, count)
        finally:
            lamp_config = None
            self._done()

    def _clock_ms(self):
        clock = self.clock
        return clock.ms() if clock is not None else time.ticks_ms()

    def _set_control(self, control):
        if control != self.control:
            self.control = control
            self.bank.set("control", control)
            self.log(EV_CONTROL, control)
            if control == _GATEWAY:
                self._done()
        self.stale = True

    # --- deciding the level --------------------------------------------------------------------

    def _evaluate(self):
        """Decide the level for the present control and drive the lamp there (firmware.roles.lamp_level)."""
        from firmware.roles.lamp_level import evaluate

        evaluate(self)

    # --- sampling ------------------------------------------------------------------------------

    def _debounce(self, bit, bad):
        # ``bad``: the alarm's condition in this sample; two in a row raise it, two without clear it.
        k = 0
        while bit >> k > 1:
            k += 1
        c = self._counts[k]
        if bad:
            c = c + 1 if c < _DEBOUNCE else _DEBOUNCE
        else:
            c = c - 1 if c > 0 else 0
        self._counts[k] = c
        return c > 0 if self.status & bit else c >= _DEBOUNCE

    def sample(self, now_ms):
        """Read the meter, thermometer and photocell; follow the program if it rules; publish everything."""
        board = self.board
        bank = self.bank
        store = self.store
        voltage, current, power = board.read_meter()
        temp = board.read_temperature()
        read_lux = getattr(board, "read_lux", None)
        lux = read_lux() if read_lux is not None else None
        dt = time.ticks_diff(now_ms, self._last_ms) if self._last_ms is not None else 0
        self._last_ms = now_ms

        # Who rules, and the program's level.
        node = self.node
        silence = node.silence_ms() if node is not None else 0
        if self.control == _GATEWAY and silence > bank.get("autonomy_after") * 1000:
            self._set_control(CONTROL_AUTONOMOUS)
        end = self._ov_end
        if end is not None and self._clock_ms() >= end:
            self._ov_end = None
            self.stale = True
        self._lux = lux
        from firmware.roles.lamp_level import photocell  # loaded since start(): a lookup

        photo = photocell(self.bank)
        dark = self._dark
        if lux is not None and photo is not None:  # firmware.schedule.photocell_override
            dark = True if lux < photo["on"] else False if lux > photo["off"] else dark
        elif photo is None:
            dark = None
        if dark != self._dark:
            self._dark = dark
            self.stale = True
        clock = self.clock
        synced = clock is not None and clock.synced()
        minute = clock.epoch() // 60 if synced else -1
        was = self._was
        if minute != was[_MINUTE]:
            was[_MINUTE] = minute
            self.stale = True
        if self.control != _GATEWAY and self.stale:
            self._evaluate()
        end = self._ov_end
        bank.set("override_minutes", (end - self._clock_ms() + 59999) // 60000 if end is not None else 0)

        # Measurements.
        power_dw = min(max(int(power * 10 + 0.5), 0), _U16_MAX)
        v_dv = min(max(int(voltage * 10 + 0.5), 0), _U16_MAX)
        temp_dc = min(max(int(temp * 10 + (0.5 if temp >= 0 else -0.5)), _TEMP_MIN_DC), _TEMP_MAX_DC)
        va = voltage * current
        pf = min(max(int(power / va * 1000 + 0.5), 0), 1000) if va > 0.0 else 0
        relay = bank.get("relay") == 1
        target = self.target
        rated_dw = bank.get("rated_power") * 10
        supply = v_dv >= SUPPLY_LOSS_DV
        lit = relay and power_dw >= _MIN_ON_DW
        self._steady += 1

        # Counters.
        if dt > 0:
            store.add_energy(power_dw, dt)
            if lit:
                ms = was[_BURN_MS] + dt
                store.add("burn_s", ms // 1000)
                was[_BURN_MS] = ms % 1000
        if lit and not was[_LIT]:
            store.add("switch_ons", 1)
            store.note_change()
        was[_LIT] = lit
        if not supply and was[_SUPPLY]:
            store.add("supply_losses", 1)
            store.note_change()
        was[_SUPPLY] = supply
        store.tick(now_ms)

        # Alarms.
        on = relay and target > 0
        dark_lamp = on and supply and power_dw < _MIN_ON_DW
        status = STATUS_LAMP_ON if lit else 0
        if self._debounce(STATUS_LAMP_FAILURE, dark_lamp):
            status |= STATUS_LAMP_FAILURE
        expected = rated_dw * target // 100
        off_by = power_dw - expected if power_dw > expected else expected - power_dw
        if self._debounce(STATUS_DIMMING_FAILURE, on and supply and not dark_lamp and self._steady > 2
                          and off_by > max(rated_dw // 4, 50)):
            status |= STATUS_DIMMING_FAILURE
        if self._debounce(STATUS_RELAY_FAILURE, not relay and power_dw >= _MIN_ON_DW):
            status |= STATUS_RELAY_FAILURE
        if self._debounce(STATUS_ON_WHEN_OFF, not on and power_dw >= max(20, rated_dw // 10)):
            status |= STATUS_ON_WHEN_OFF
        if self._debounce(STATUS_OVER_VOLTAGE, v_dv > OVER_VOLTAGE_DV):
            status |= STATUS_OVER_VOLTAGE
        if self._debounce(STATUS_UNDER_VOLTAGE, supply and v_dv < UNDER_VOLTAGE_DV):
            status |= STATUS_UNDER_VOLTAGE
        if not supply:
            status |= STATUS_SUPPLY_LOSS
        if self._debounce(STATUS_OVER_TEMPERATURE, temp_dc > OVER_TEMPERATURE_DC):
            status |= STATUS_OVER_TEMPERATURE
        if self.safe_mode:
            status |= STATUS_SAFE_MODE
        if not synced:
            status |= STATUS_CLOCK_UNSYNCED
        events = self.events
        if store.error or self.settings_error or (events is not None and events.error):
            status |= STATUS_STORAGE_ERROR
        changed = (status ^ self.status) & ALARMS
        self.status = status
        if changed and events is not None:
            events.alarms(changed, status)

        # The modelled light: the driver fades toward the target; dark without power.
        if not relay or not supply or dark_lamp:
            was[_ACTUAL] = 0.0
        else:
            step = dt * 100.0 / _FADE_MS
            a = was[_ACTUAL]
            was[_ACTUAL] = min(target, a + step) if a < target else max(target, a - step)

        bank.set("seq", store.next_seq())
        bank.set("power", power_dw)
        bank.set("voltage", v_dv)
        bank.set("current", min(max(int(current * 1000 + 0.5), 0), _U16_MAX))
        bank.set("energy", store.energy_wh)
        bank.set("temperature", temp_dc)
        bank.set("status", status)
        bank.set("level_actual", int(was[_ACTUAL] + 0.5))
        bank.set("level_target", target)
        bank.set("power_factor", pf)
        bank.set("burn_time", store.saved("burn_s"))
        bank.set("switch_ons", store.saved("switch_ons"))
        bank.set("supply_losses", store.saved("supply_losses"))
        bank.set("control", self.control)
        bank.set("level_source", self.source)
        bank.set("lux", min(max(int(lux + 0.5), 0), _U16_MAX) if lux is not None else 0)
        bank.set("silence", min(silence // 1000, _U16_MAX))
