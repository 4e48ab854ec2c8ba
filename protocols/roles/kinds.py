"""The codes of a register row (table, type, access), the same numbers as ``protocols.regmap``'s.

Role tables import their codes from here so that a node, which packs its rows
itself (``firmware/registers.py``), never loads ``protocols.regmap`` with its
classes (about 10 KB of RAM on the unix port) for a handful of integers.
``tests/protocols/test_regmap.py`` holds the two sets of numbers equal.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


HOLDING = const(3)
INPUT = const(4)

U16 = const(0)
S16 = const(1)
U32 = const(2)
S32 = const(3)
BOOL = const(4)
F32 = const(5)

RO = const(0)
RW = const(1)

# Poll classes: how often the gateway reads a register. A role module names its
# non-measurement registers in three space-separated strings, ``COUNTERS``,
# ``SETTINGS`` and ``IDENTITY`` (plain strings: on a node they stay in the image,
# not in RAM); every register not named there is a measurement. A role's own
# strings (and ``MEASURES``) override the classes of the common rows.
POLL_MEASURE = const(0)  # every poll, at the node's interval
POLL_COUNTER = const(1)  # totals that only grow: every few polls
POLL_SETTING = const(2)  # changed only by a write: at start, when settings_changes moves, on request
POLL_IDENTITY = const(3)  # fixed while the node runs: at start, after a reboot, on request


def with_docs(rows, text):
    """Register rows with their ``doc`` (the tenth field, ``""`` in the source) taken from ``text``.

    ``text`` is the role module's docstring: each register is described by a
    line ``- ``name``: meaning``, continued on the following indented lines.
    MicroPython compiles docstrings away: there ``text`` is None, the rows are
    returned as they are (docs empty), and a node never holds the
    documentation in its RAM. Raises ValueError if ``text`` is given and lacks
    a register.
    """
    if not text:
        return rows
    docs = {}
    name = None
    for line in text.split("\n"):
        s = line.strip()
        if s.startswith("- ``") and "``: " in s:
            name, _, doc = s[4:].partition("``: ")
            docs[name] = doc
        elif name is not None and s and line.startswith("  "):
            docs[name] += " " + s
        else:
            name = None
    out = []
    for r in rows:
        if r[0] not in docs:
            raise ValueError("register %s has no description in the module docstring" % r[0])
        out.append(r[:9] + (docs[r[0]],))
    return tuple(out)
