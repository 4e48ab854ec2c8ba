"""Import a module for a rare task and let it leave RAM afterwards.

On the node, a module's code is held in RAM for as long as it is imported
(on the unix port and on an ESP32 that loads ``.mpy`` files from its
filesystem). Code that runs at boot or on a rare request (settings, program
tables, commands) is therefore imported where it is needed and then released:
:func:`release` removes it from ``sys.modules`` and from its package, so that
once the caller drops its references the garbage collector takes it back.
A module that defines classes whose instances live on must not be released
(the instances keep it alive anyway).
"""

import sys


def release(name):
    """Forget module ``name`` (dotted) if it was imported; its memory returns at the next collection."""
    if sys.modules.pop(name, None) is None:
        return
    parent, _, child = name.rpartition(".")
    package = sys.modules.get(parent)
    if package is not None:
        try:
            delattr(package, child)
        except AttributeError:
            pass
