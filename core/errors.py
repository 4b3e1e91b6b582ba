"""Errors that reach the user as a message, never as a traceback.

`UserError` is bad input (a preset, a file, a name): the CLI prints it and exits 2, a run records it
in status.json. Anything else escaping a stage is a failure of the run (exit 1).
"""


class UserError(Exception):
    """Bad input: the message names the file/key/line and says what to do."""


class StageFailed(Exception):
    """A run that started and could not finish (non-finite loss, out of memory, disk full)."""
