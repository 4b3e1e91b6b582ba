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


# OSErrors that say the user's setup or arguments are at fault (a read-only or missing folder, a file
# where a folder belongs), not the machine (a full disk or an I/O error fail the run: exit 1)
INPUT_ERRNOS = frozenset({"EACCES", "EPERM", "EROFS", "ENOENT", "ENOTDIR", "EISDIR", "EEXIST", "ENAMETOOLONG",
                          "ELOOP", "ENXIO"})


def input_fault(e: BaseException) -> bool:
    """Is `e` bad input (UserError, or an OSError of INPUT_ERRNOS) rather than a failure of the run?"""
    import errno

    if isinstance(e, UserError):
        return True
    return isinstance(e, OSError) and errno.errorcode.get(e.errno or 0, "") in INPUT_ERRNOS


def describe_os_error(e: OSError) -> str:
    """One line for an OSError: the file and the reason, no traceback."""
    where = f"{e.filename}: " if e.filename else ""
    return f"{where}{e.strerror or e}"
