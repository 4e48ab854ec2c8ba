"""The virtual street: a virtual RS-485 bus and the real firmware on virtual boards.

- :mod:`tools.sim.bus`: a multi-drop bus process built on pseudo-terminals.
- :mod:`tools.sim.street`: :class:`~tools.sim.street.VirtualStreet`, one bus
  plus N MicroPython unix-port nodes, each with its own flash folder.
"""
