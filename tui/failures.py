"""What happens when a key action or a worker raises: a notification, never an exit.

The workbench holds typed text, an edited preset and a conversation; an exception in one action
must not lose them. `report()` appends the traceback to `<workspace>/logs/tui.log` (the path is
in the notification) and returns the one line the user reads.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path

from core import runs as core_runs

LOG_NAME = "tui.log"


def log_path() -> Path:
    """Where the workbench writes the detail of what failed: logs/tui.log under the workspace."""
    return core_runs.workspace() / "logs" / LOG_NAME


def report(what: str, error: BaseException) -> str:
    """Log `error` (with its traceback) and return a one-line message for a notification."""
    path = log_path()
    detail = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {what}\n{detail}\n")
        where = f" (details in {path})"
    except OSError as e:  # a read-only workspace: the notification still says what failed
        where = f" (could not write {path}: {e.strerror})"
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}{': ' + first if first else ''}{where}"
