"""The node's Modbus file records (functions 20 and 21): the door to an update over the bus.

Kept apart from the update itself: a node that is never updated carries this small class
and not :mod:`firmware.update`, which is imported at the first file record.
"""


class UpdateFiles:
    """Answers the node's file records through :mod:`firmware.update`, imported at the first one."""

    def __init__(self, node):
        self._node = node
        self._updater = None

    def updater(self):
        if self._updater is None:
            from firmware.update import Updater

            self._updater = Updater(self._node)
        return self._updater

    def read_record(self, file, record, count, values):
        self.updater().read_record(file, record, count, values)

    def write_record(self, file, record, data):
        self.updater().write_record(file, record, data)

    def pending_reset(self):
        """The reset a COMMIT that switched the code slot waits for (after its answer), or None."""
        return self._updater.reset_pending if self._updater is not None else None
