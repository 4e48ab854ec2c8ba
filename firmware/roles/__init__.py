"""Node roles: what a node does with its hardware and registers.

A role module provides ``MAP`` (its :class:`~protocols.regmap.RegisterMap`) and
``Role(board, bank, store, safe_mode)`` with ``start()``, ``on_write(names)``
and ``sample(now_ms)``. Roles are imported only when chosen (by name, so that
neither an image build nor a type check drags every role in), and an image
carries only its own role: ``firmware/imageinfo.py``, written by the image
builder, names it (``ROLE``); run from the source tree, every role is there.
"""

try:
    from firmware.imageinfo import ROLE as BUILT
except ImportError:  # the source tree: every role is available
    BUILT = None

NAMES = ("lamp", "meter", "env")
DEFAULT = BUILT or "lamp"  # the role of safe mode: the image's own (a lamp powers up lit)


def available(name):
    """True if role ``name`` is known and present in this image."""
    return name in NAMES and (BUILT is None or name == BUILT)


def load(name):
    """The role module called ``name`` (one of :data:`NAMES`)."""
    if not available(name):
        raise ValueError("unknown role %r" % (name,))
    return __import__("firmware.roles." + name, None, None, ["Role"])
