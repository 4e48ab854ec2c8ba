"""What each battery role puts in its BTHome v2 adverts, one table per role, read by node and gateway alike.

A row maps a register of the role's map (``protocols.roles.<role>``) to a
BTHome object: ``object raw = register raw * mul // div``. The gateway turns
an object back into the register's raw value (``object raw * div // mul``)
and from there into the register's value and unit, so BLE readings carry the
same names and units as the Modbus ones.

Two advert kinds per role:

- the reading advert, sent every advertising interval: the rows below plus,
  where they fit, the role's alarm flags as BTHome binary sensors;
- the alarm advert, trigger-based (information-byte bit 2), sent at once as
  a burst when an alarm is raised and repeated until the gateway
  acknowledges it over GATT or its timeout passes, and once when the alarms
  clear: the alarm flags only.

A legacy advert has 31 bytes; flags (3), the service-data header (5),
counter and tag (8) leave 15 for objects, which is why the environment node
sends whole-percent humidity (``humidity_8``) and no noise level (BTHome has
no sound-level object; noise stays a Modbus-only reading).

BTHome limits that show upstream: ``water`` is an unsigned 32-bit count of
millilitres, so the meter's volume wraps after 4,294,967 l; the particulate
objects are whole micrograms per cubic metre.
"""

from protocols import bthome

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


# Status bits of protocols.roles.meter and .env (restated as plain numbers so
# that a node imports one role's constants only; tests check they agree).
_METER_LEAK = const(0x0002)
_METER_BURST = const(0x0004)
_METER_BACKFLOW = const(0x0008)
_METER_TAMPER = const(0x0010)
_ENV_FAULTS = const(0x0007)  # climate, particulate and noise sensor faults

# register name, BTHome object id, mul, div
METER_ROWS = (
    ("battery", bthome.VOLTAGE, 1, 1),
    ("volume", bthome.WATER, 1000, 1),
)
# status bits, BTHome binary object id (set when any of the bits is)
METER_ALARMS = (
    (_METER_LEAK, bthome.MOISTURE),
    (_METER_BURST | _METER_BACKFLOW, bthome.PROBLEM),
    (_METER_TAMPER, bthome.TAMPER),
)
ENV_ROWS = (
    ("temperature", bthome.TEMPERATURE, 1, 1),
    ("humidity", bthome.HUMIDITY_8, 1, 100),
    ("pressure", bthome.PRESSURE, 1, 10),
    ("pm25", bthome.PM25, 1, 10),
    ("pm10", bthome.PM10, 1, 10),
)
ENV_ALARMS = ((_ENV_FAULTS, bthome.PROBLEM),)

# role name, role id (as in protocols.roles), rows, alarms in the reading advert, alarms
ROLES = (
    ("meter", 2, METER_ROWS, METER_ALARMS, METER_ALARMS),
    ("env", 3, ENV_ROWS, (), ENV_ALARMS),  # no room left in its reading advert: alarms go in alarm adverts
)
MAX_OBJECTS = const(15)


def role(name):
    """(rows, alarms in the reading advert, alarms) of a BLE role; KeyError naming the roles that advertise."""
    for row in ROLES:
        if row[0] == name:
            return row[2], row[3], row[4]
    raise KeyError("role %r does not advertise over BLE (roles: %s)" % (name, ", ".join(r[0] for r in ROLES)))


def pack_reading(buf, rows, alarms, values, status):
    """Object bytes of a reading advert into ``buf``; their length.

    ``values`` gives each row's register raw value by index (a list or tuple
    in the order of ``rows``), so the node allocates no dictionary.
    """
    pos = 0
    for i in range(len(rows)):
        row = rows[i]
        raw = values[i] * row[2] // row[3]
        if row[1] == bthome.WATER:
            raw &= 0xFFFFFFFF  # BTHome's water object wraps (see the module's docstring)
        pos = bthome.pack_into(buf, pos, row[1], raw)
    return pack_alarms(buf, pos, alarms, status)


def pack_alarms(buf, pos, alarms, status):
    """The alarm flags as BTHome binary objects at ``buf[pos]``; the position after them."""
    # BTHome asks for objects in ascending id order; the tables list them so.
    for bits, object_id in alarms:
        pos = bthome.pack_into(buf, pos, object_id, 1 if status & bits else 0)
    return pos


def unpack(rows, alarms, objects):
    """(register raw values by name, alarm status bits) from decoded (object id, raw) pairs.

    Status bits come back as the union of each raised object's bits (a
    ``problem`` on a meter is burst or backflow: the advert cannot tell which).
    """
    values = {}
    status = 0
    for object_id, raw in objects:
        for name, row_id, mul, div in rows:
            if row_id == object_id:
                values[name] = raw * div // mul
        for bits, alarm_id in alarms:
            if alarm_id == object_id and raw:
                status |= bits
    return values, status
