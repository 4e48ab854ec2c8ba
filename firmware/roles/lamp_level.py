"""The lamp's level when it rules itself: override, program of the night, photocell, safe levels.

Imported at the first evaluation (a role in gateway control drives the level the gateway wrote
and evaluates only on a change of control); kept, as the role's own code is. Decides as
``firmware.schedule.level_at`` does (``tests/firmware/test_lamp_plan.py``), from the night's plan
(:mod:`firmware.night`), built by :mod:`firmware.night_plan` only when a night begins or a setting
it depends on changes.
"""

import gc

from firmware import night
from firmware.roles import lamp  # the role's copies of the table's numbers (the table may be released)

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_GATEWAY = const(0)  # CONTROL_GATEWAY
_SAFE_NO_CLOCK = const(3)  # firmware.schedule.DEFAULT_SAFE
_SAFE_INVALID = const(4)  # firmware.schedule.INVALID
_PROGRAM = const(0)  # firmware.schedule.PROGRAM
_OVERRIDE = const(1)  # firmware.schedule.OVERRIDE
_PHOTOCELL = const(2)  # firmware.schedule.PHOTOCELL


def photocell(bank):
    """The photocell's settings, or None when it is off (``photo_off`` 0)."""
    off = bank.get("photo_off")
    if not off:
        return None
    return {"on": bank.get("photo_on"), "off": off, "level": bank.get("photo_level")}


def evaluate(role):
    """Decide the level for the present control and drive the lamp there.

    One function (the night's plan built and the lamp driven in it): each function of a module the node
    keeps is code in its heap for good.
    """
    bank = role.bank
    if role.control == _GATEWAY:
        level = bank.get("dim_level")
        relay = bank.get("relay") == 1
        target = level if relay else 0
        source = lamp.SOURCE_GATEWAY
    else:
        end = role._ov_end
        clock = role.clock
        if end is not None and role._clock_ms() < end:
            level = bank.get("override_level")
            source = _OVERRIDE
        elif clock is None or not clock.synced():
            # No clock, no program (firmware.schedule.safe_level, without importing it): lit unless daylight.
            level = 0 if role._dark is False else 100
            source = _SAFE_NO_CLOCK
        else:
            # firmware.schedule.level_at without an override, from the night's plan (firmware.night).
            now = clock.epoch()
            photo = photocell(bank)
            # The plan of the night in force (plan[1] None: invalid settings), built by firmware.night_plan
            # (imported for it, then released) when a night begins, after a write of a setting the plan
            # depends on, or after a change of the time zone; otherwise the one kept. None: out of RAM.
            node = role.node
            tz = node.tz_offset if node is not None else 0
            plan = role._plan
            night_no = night.night_of(now, tz)[0]
            if plan is None or plan[0] != night_no or plan[2] != tz:
                role._plan = plan = None  # last night's plan goes before tonight's is built, not after: a lower peak
                gc.collect()  # the schedule and its work land in one tidy heap
                try:
                    from firmware import night_plan

                    # Place and time zone are within their registers' bounds, programs and calendar were checked
                    # when written or loaded (firmware.roles.lamp_config): level_at's checks, but for the photocell.
                    off = bank.get("photo_off")
                    if off and not bank.get("photo_on") < off:
                        raise ValueError("photocell: on must be below off")
                    # Programs and calendar as the role keeps them, packed in words: the plan reads the few it needs.
                    plan = night_plan.plan(now, tz, bank.get("latitude") / 1e6, bank.get("longitude") / 1e6,
                                           role.calendar, role.programs)
                except MemoryError:
                    role.memory_errors += 1
                except Exception:  # invalid settings (a damaged program chosen tonight): the safe level all night
                    plan = (night_no, None, tz)
                finally:
                    night_plan = None
                    role._done()
                role._plan = plan
            if plan is None:
                # No room for the schedule now: keep the level in force, try again next minute.
                level = role.target if role.target >= 0 else 100
                source = role.source
            else:
                # The clock's valid years (firmware.schedule.VALID_FROM, VALID_UNTIL) in place: not small ints on
                # the ESP32, so no const(), and named globals would each take a name in RAM.
                valid = plan[1] is not None and 1577836800 <= now < 4102444800
                level = night.level(plan, now) if valid else None
                dark = role._dark
                lux = role._lux
                if lux is not None and photo is not None:  # firmware.schedule.photocell_override
                    dark = True if lux < photo["on"] else False if lux > photo["off"] else dark
                if level is None:  # invalid settings: safe_level (off when a working photocell sees daylight)
                    source = _SAFE_INVALID
                    level = 0 if lux is not None and photo is not None and photo["on"] < photo["off"] and \
                        dark is False else 100
                elif level == 0 and photo is not None and dark:
                    level = photo["level"]
                    source = _PHOTOCELL
                else:
                    source = _PROGRAM
        if (source == _SAFE_NO_CLOCK or source == _SAFE_INVALID) and level > 0:
            level = bank.get("safe_level")
        role.stale = False
        target = level
        relay = level > 0
    role.source = source
    bank.set("dim_level", level)
    bank.set("relay", 1 if relay else 0)
    role.board.relay(relay)
    role.board.dimmer(level)
    if target != role.target:
        role.target = target
        role._steady = 0
        bank.set("level_target", target)
        role.log(lamp.EV_LEVEL, target)
    bank.set("level_source", source)
