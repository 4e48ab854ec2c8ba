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

from protocols.bthome import MAX_OBJECTS, ROLE_ADVERTS, pack_alarms, pack_reading, role

__all__ = ["MAX_OBJECTS", "ROLE_ADVERTS", "pack_alarms", "pack_reading", "role", "unpack"]  # and ROLES

# The tables (ROLE_ADVERTS), role() and the packing are protocols.bthome's, which is all a node imports for its
# adverts; this module adds what the gateway and the tools read: every role's tables (ROLES), unpack().


def _roles():
    lines = [line.split() for line in ROLE_ADVERTS.split("\n") if line]
    return tuple((words[0], int(words[1])) + role(words[0]) for words in lines)


def __getattr__(name):
    # ROLES on demand (the gateway's, the tools'): a node never builds every role's tables.
    if name == "ROLES":
        return _roles()
    raise AttributeError(name)


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
