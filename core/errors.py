"""Errors that reach the user as a message, never as a traceback.

`UserError` is bad input (a preset, a file, a name): the CLI prints it and exits 2, a run records it
in status.json. Anything else escaping a stage is a failure of the run (exit 1).
"""


class UserError(Exception):
    """Bad input: the message names the file/key/line and says what to do."""


class Stopped(Exception):
    """Work ended early because its stop event was set (a user's stop request); what was half done is
    not saved. Raised by any library step that checks the event deep inside (shards, BPE training)."""


class StageFailed(Exception):
    """A run that started and could not finish (non-finite loss, out of memory, disk full)."""
