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


# The tables, one line per role: its name and role id (as in protocols.roles), its reading rows
# ("register:object:mul:div"), "|", its alarms ("status bits:object", "+" when the flag also goes in the
# reading advert). Object ids (as in protocols.bthome) and status bits (protocols.roles.<role>) are
# hexadecimal, mul and div decimal; tests hold the ids and bits equal to the named constants. Text, parsed by
# role() for the role asked: a node holds its own role's tuples only, where tuples written out here would
# all be objects in its RAM.
_TABLES = const(
    "meter 2 battery:0c:1:1 volume:4f:1000:1 | 0002:20+ 000c:26+ 0010:2b+\n"
    # the environment node's reading advert has no room left: its alarm goes in alarm adverts only
    "env 3 temperature:02:1:1 humidity:2e:1:100 pressure:04:1:10 pm25:0d:1:10 pm10:0e:1:10 | 0007:26\n"
)
MAX_OBJECTS = const(15)


def role(name):
    """(rows, alarms in the reading advert, alarms) of a BLE role; KeyError naming the roles that advertise.

    A row is ``(register name, BTHome object id, mul, div)``, an alarm ``(status bits, BTHome object id)``.
    """
    for line in _TABLES.split("\n"):
        words = line.split()
        if words and words[0] == name:
            cut = words.index("|")
            rows = tuple((w[0], int(w[1], 16), int(w[2]), int(w[3])) for w in (x.split(":") for x in words[2:cut]))
            alarms = []
            in_reading = []
            for word in words[cut + 1 :]:
                bits, object_id = word.rstrip("+").split(":")
                alarms.append((int(bits, 16), int(object_id, 16)))
                if word.endswith("+"):
                    in_reading.append(alarms[-1])
            return rows, tuple(in_reading), tuple(alarms)
    raise KeyError("role %r does not advertise over BLE (roles: %s)" % (name, ", ".join(r[0] for r in _roles())))


def _roles():
    lines = [line.split() for line in _TABLES.split("\n") if line]
    return tuple((words[0], int(words[1])) + role(words[0]) for words in lines)


def __getattr__(name):
    # ROLES on demand (the gateway's, the tools'): a node never builds every role's tables.
    if name == "ROLES":
        return _roles()
    raise AttributeError(name)


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
