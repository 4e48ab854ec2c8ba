"""Eastron SDM630-class three-phase energy meter: a third-party device, described by a table.

The meter is not our firmware: this map only tells the gateway how to read it.
Every measurement is an IEEE 754 float32 in two input registers, high word
first (function 04, addresses from the meter's manual: 30001 is address 0).
The map covers the first 80 registers (0x0000..0x004F) so that the gateway reads
them in one request (within the meter's 80-register limit per request); the
few addresses inside that span the manual leaves unassigned (0x2C, 0x32, 0x36,
0x3A, 0x40, 0x44) are read along and ignored. Energies are in kWh and kvarh as
the meter counts them; the power factor is a ratio ("/"), signed by the meter
(negative: capacitive).

The meter has no role or sequence register: the gateway stamps its readings
with the poll time only.
"""

from protocols.regmap import F32, INPUT, RO, RegisterMap

_LO = -3.4e38
_HI = 3.4e38


def _f(name, address, unit, doc):
    # name, table, address, type, scale, unit, access, minimum, maximum, doc
    return (name, INPUT, address, F32, 0, unit, RO, _LO, _HI, doc)


REGISTERS = (
    _f("voltage_l1", 0x00, "V", "Phase 1 line to neutral voltage"),
    _f("voltage_l2", 0x02, "V", "Phase 2 line to neutral voltage"),
    _f("voltage_l3", 0x04, "V", "Phase 3 line to neutral voltage"),
    _f("current_l1", 0x06, "A", "Phase 1 current"),
    _f("current_l2", 0x08, "A", "Phase 2 current"),
    _f("current_l3", 0x0A, "A", "Phase 3 current"),
    _f("power_l1", 0x0C, "W", "Phase 1 active power"),
    _f("power_l2", 0x0E, "W", "Phase 2 active power"),
    _f("power_l3", 0x10, "W", "Phase 3 active power"),
    _f("apparent_power_l1", 0x12, "VA", "Phase 1 apparent power"),
    _f("apparent_power_l2", 0x14, "VA", "Phase 2 apparent power"),
    _f("apparent_power_l3", 0x16, "VA", "Phase 3 apparent power"),
    _f("reactive_power_l1", 0x18, "var", "Phase 1 reactive power"),
    _f("reactive_power_l2", 0x1A, "var", "Phase 2 reactive power"),
    _f("reactive_power_l3", 0x1C, "var", "Phase 3 reactive power"),
    _f("power_factor_l1", 0x1E, "/", "Phase 1 power factor"),
    _f("power_factor_l2", 0x20, "/", "Phase 2 power factor"),
    _f("power_factor_l3", 0x22, "/", "Phase 3 power factor"),
    _f("phase_angle_l1", 0x24, "deg", "Phase 1 phase angle"),
    _f("phase_angle_l2", 0x26, "deg", "Phase 2 phase angle"),
    _f("phase_angle_l3", 0x28, "deg", "Phase 3 phase angle"),
    _f("voltage_avg", 0x2A, "V", "Average line to neutral voltage"),
    _f("current_avg", 0x2E, "A", "Average line current"),
    _f("current_sum", 0x30, "A", "Sum of line currents"),
    _f("power", 0x34, "W", "Total system active power"),
    _f("apparent_power", 0x38, "VA", "Total system apparent power"),
    _f("reactive_power", 0x3C, "var", "Total system reactive power"),
    _f("power_factor", 0x3E, "/", "Total system power factor"),
    _f("phase_angle", 0x42, "deg", "Total system phase angle"),
    _f("frequency", 0x46, "Hz", "Supply frequency"),
    _f("import_energy", 0x48, "kWh", "Imported active energy"),
    _f("export_energy", 0x4A, "kWh", "Exported active energy"),
    _f("import_reactive_energy", 0x4C, "kvarh", "Imported reactive energy"),
    _f("export_reactive_energy", 0x4E, "kvarh", "Exported reactive energy"),
)

# Poll classes (protocols.roles.kinds): the energy totals are counters, the rest measurements.
COUNTERS = "import_energy export_energy import_reactive_energy export_reactive_energy"
SETTINGS = ""
IDENTITY = ""

MAP = RegisterMap("sdm630", REGISTERS, 0)
