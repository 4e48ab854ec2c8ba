"""Exit codes of the ``streetedge`` command, and the error that carries one to ``main``.

Every subcommand ends with one of these; ``docs/operations.md`` lists them for
operators and scripts. A subcommand that cannot do its job raises
:class:`CliError`; ``main`` prints its message as one line on standard error.
"""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    """What an exit status means."""

    OK = 0
    """Done: the command did its job (a command sent was confirmed ``done``)."""
    FAILED = 1
    """It ran, and the answer is no: a command rejected, failed or unanswered, a broken audit chain,
    ``check`` found a problem."""
    USAGE = 2
    """Bad input, nothing done: a wrong option, configuration file, key file or payload."""
    UNAVAILABLE = 3
    """Something it needs is not there: the broker is unreachable, the state directory is missing or not
    writable. Fix the machine, then run it again."""
    INTERNAL = 70
    """A fault of streetedge itself (sysexits' EX_SOFTWARE): the line names it; ``-v`` shows the traceback."""
    INTERRUPTED = 130
    """Stopped with Ctrl-C."""


class CliError(Exception):
    """A subcommand could not do its job; the message says what is wrong and what to do.

    Args:
        message: one line, without the ``streetedge:`` prefix.
        code: the exit status.
    """

    def __init__(self, message: str, code: Exit = Exit.USAGE) -> None:
        super().__init__(message)
        self.code = code
