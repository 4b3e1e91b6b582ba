"""Run directories: the contract between core, the CLI and the TUI (see DESIGN.md).

A run is a folder `runs/<yyyymmdd-hhmmss>-<preset>-<stage>/` holding the resolved preset, a status
file and an append-only event log. Long stages run in a detached process (`launch`) in a session of
their own, so a closed terminal or a dropped SSH connection never stops them; anyone can `tail` the
events, `list_runs` shows their state, and `stop` asks for a cooperative stop at a step boundary.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from core.errors import UserError
from core.schemas import MiB, STATUS_JSON, FileFormatError, parse_event, read_json

STOP_FILE = "STOP"
REPORT = "report.json"
STATUS_MAX_BYTES = 1 * MiB
LIVE_STATES = ("created", "running")
LOCK_FILE = ".lock"


class Logger(Protocol):
    def log(self, event: dict) -> None: ...
    def close(self) -> None: ...


class NullLogger:
    """A Logger that drops every event: for ranks other than 0, and for callers that want no events."""

    def log(self, event: dict) -> None:
        pass

    def close(self) -> None:
        pass


def workspace() -> Path:
    """Where runs/, data/ and tokenizers/ live: $LLMLAB_HOME, else the current directory."""
    return Path(os.environ.get("LLMLAB_HOME") or os.getcwd())


def runs_root(root: Path | None = None) -> Path:
    return Path(root) if root is not None else workspace() / "runs"


# ------------------------------------------------------------------------------------ event log

class EventLog:
    """Append-only JSON lines. Each event is one write() of one complete line on an O_APPEND file,
    so a reader in another process sees whole lines or nothing (it skips a partial last line)."""

    def __init__(self, path: Path, echo: Logger | None = None):
        self.path = Path(path)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()
        self.echo = echo

    def log(self, event: dict) -> None:
        event = {"t": round(time.time(), 3), **event}
        line = (json.dumps(event, default=_json_default, allow_nan=True) + "\n").encode()
        with self._lock:
            if self._fd is None:
                return
            os.write(self._fd, line)
        if self.echo is not None:
            self.echo.log(event)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_events(path: Path, offset: int = 0) -> tuple[list[dict], int]:
    """Complete events from byte `offset` on, and the offset after the last complete line; a line that
    is not an event comes back as a warning `log` event naming the file and byte (readers carry on)."""
    if path.exists() and not path.is_file():  # a FIFO would block the reader
        return [{"kind": "log", "level": "warning", "message": f"{path}: not a regular file; no events read"}], offset
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    events = []
    pos = offset
    for line in data[:end].split(b"\n"):
        at, pos = pos, pos + len(line) + 1
        if line.strip():
            try:
                events.append(parse_event(line, f"{path} at byte {at}"))
            except FileFormatError as e:  # marked, then skipped: one bad line never hides the others
                events.append({"kind": "log", "level": "warning", "message": f"{e}; line skipped", "bad_line": at})
    return events, offset + end


# ------------------------------------------------------------------------------------------ runs

@dataclass
class Run:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def events_path(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def preset_path(self) -> Path:
        return self.path / "preset.toml"

    def raw_status(self) -> dict:
        """status.json as written; {"state": "unknown"} when absent, {"state": "invalid", "problem": ...}
        when it is not a status file (readers show the run marked, and carry on)."""
        path = self.path / "status.json"
        if not path.exists():
            return {"state": "unknown"}
        try:
            return read_json(path, STATUS_MAX_BYTES, STATUS_JSON)
        except FileFormatError as e:
            return {"state": "invalid", "problem": str(e)}

    def status(self) -> dict:
        """status.json, with `running` turned into `crashed` when its process is gone."""
        st = self.raw_status()
        if st.get("state") in ("running", "created") and st.get("pid") and not process_alive(st.get("pid"), st.get("host")):
            st = {**st, "state": "crashed"}
        return st

    @property
    def state(self) -> str:
        return self.status().get("state", "unknown")

    @property
    def stage(self) -> str:
        return self.raw_status().get("stage") or self.name.rsplit("-", 1)[-1]

    @property
    def preset_name(self) -> str:
        return self.raw_status().get("preset", "")

    def events(self) -> list[dict]:
        return read_events(self.events_path)[0]

    def write_status(self, **fields: Any) -> None:
        st = {**self.raw_status(), **fields}
        st.pop("problem", None)
        if st.get("state") == "invalid":  # what was there is lost; what we know is written anew
            st["state"] = "failed"
        write_text_atomic(self.path / "status.json", json.dumps(st, indent=1))


def write_text_atomic(path: Path, text: str) -> None:
    """Write a small file so that readers see the old or the new content, never a partial one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def json_safe(x: Any) -> Any:
    """JSON-safe: NaN and infinities become None (JSON has neither), paths and other objects strings,
    tensors and numpy scalars their value."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if x is None or isinstance(x, (str, int, bool)):
        return x
    if hasattr(x, "item") and not isinstance(x, bytes):
        return json_safe(x.item())
    return str(x)


def write_json_atomic(path: Path, obj: Any) -> Path:
    """`obj` (through json_safe) as an indented JSON file, written atomically."""
    write_text_atomic(Path(path), json.dumps(json_safe(obj), indent=1, allow_nan=False, ensure_ascii=False) + "\n")
    return Path(path)


def write_report(run_dir: str | Path, report: dict) -> Path:
    """run_dir/report.json, every stage's results: readers see the old or the new report, never half."""
    return write_json_atomic(Path(run_dir) / REPORT, report)


def read_report(run_dir: str | Path) -> dict | None:
    """run_dir/report.json, or None when it is absent or not a valid report (core.schemas): the card
    leaves that run's results out and shows the rest."""
    from core.schemas import check_report

    path = Path(run_dir) / REPORT
    if not path.exists():
        return None
    try:
        return check_report(read_json(path, 64 * MiB), path)
    except FileFormatError:
        return None


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def process_alive(pid: Any, host: Any = None) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    if host and host != socket.gethostname():
        return True  # another machine's run: we cannot tell, trust its status
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not yet reaped by its parent) is not alive
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def create_run(preset_name: str, stage: str, preset_toml: str, root: Path | None = None) -> Run:
    """A new run directory (never an existing one) with preset.toml, status.json, events.jsonl."""
    root = runs_root(root)
    if root.exists() and not root.is_dir():
        raise UserError(f"{root}: is a file, where the runs folder belongs; move it away (or set LLMLAB_HOME)")
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in preset_name) or "preset"
    for i in range(1000):
        name = f"{stamp}-{safe}-{stage}" if i == 0 else f"{stamp}-{safe}-{stage}-{i}"
        path = root / name
        try:
            path.mkdir()
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover
        raise UserError(f"{root}: could not create a new run directory")
    (path / "preset.toml").write_text(preset_toml)
    (path / "events.jsonl").touch()
    run = Run(path)
    run.write_status(state="created", stage=stage, preset=preset_name, pid=None,
                     host=socket.gethostname(), created=time.time())
    return run


def open_run(name_or_path: str | Path, root: Path | None = None) -> Run:
    """A run by folder path, by name, or by a unique name prefix/suffix."""
    p = Path(name_or_path)
    if (p / "status.json").exists():
        return Run(p)
    root = runs_root(root)
    if (root / str(name_or_path) / "status.json").exists():
        return Run(root / str(name_or_path))
    matches = [r for r in list_runs(root) if str(name_or_path) in r.name]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UserError(f"{name_or_path}: no such run in {root} (see `llmlab runs list`)")
    raise UserError(f"{name_or_path}: ambiguous, matches {', '.join(r.name for r in matches[:5])}")


def list_runs(root: Path | None = None) -> list[Run]:
    """Every run under root, newest first."""
    root = runs_root(root)
    if not root.is_dir():
        return []
    runs = [Run(p) for p in root.iterdir() if (p / "status.json").exists()]
    return sorted(runs, key=lambda r: r.name, reverse=True)


def latest_run(preset_name: str, stage: str, root: Path | None = None, state: str | None = "finished") -> Run | None:
    """The newest run of a preset and stage in `state` (None: any state)."""
    for r in list_runs(root):
        st = r.raw_status()
        if st.get("preset") == preset_name and st.get("stage") == stage and (state is None or st.get("state") == state):
            return r
    return None


# ------------------------------------------------------------------------------- lock and status

class RunLocked(UserError):
    """A second writer of a run directory: refused, and it must not touch the live run's status."""


class RunLock:
    """One writer per run directory: an exclusive flock on runs/<run>/.lock; a second writer is refused."""

    def __init__(self, run: Run):
        import fcntl
        self._fd = os.open(run.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise RunLocked(f"{run.path}: another process is writing this run") from None

    def release(self) -> None:
        os.close(self._fd)


def lock_held(run: Run) -> bool:
    """Does a live process hold the run's writer lock (whatever its status says)?"""
    import fcntl
    try:
        fd = os.open(run.path / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def is_live(run: Run) -> bool:
    """Is a process working on this run: it holds the lock, or it was launched (created, running) and
    its pid is alive. `runs delete` refuses such a run, `runs stop` reaches it."""
    st = run.raw_status()
    if lock_held(run):
        return True
    return st.get("state") in (*LIVE_STATES, "invalid", "unknown") and process_alive(st.get("pid"), st.get("host"))


def watch_stop(run: Run, stop: threading.Event, interval_s: float = 0.2) -> threading.Thread:
    """Set `stop` when a stop is requested (the STOP file appears) so the stage can finish its step."""

    def loop() -> None:
        while not stop.is_set():
            if (run.path / STOP_FILE).exists():
                stop.set()
                return
            time.sleep(interval_s)

    t = threading.Thread(target=loop, name="stop-watch", daemon=True)
    t.start()
    return t


def stop(run: Run, signal_too: bool = False) -> None:
    """Ask a run to stop at its next step boundary (it saves a checkpoint first)."""
    (run.path / STOP_FILE).write_text(str(time.time()))
    pid = run.raw_status().get("pid")
    if signal_too and isinstance(pid, int) and process_alive(pid):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


# --------------------------------------------------------------------------------------- execute

def execute(run: Run, stage: str, preset: Any, echo: Logger | None = None) -> str:
    """Run a stage in this process inside `run`: lock, status, events, stop handling. Returns the final
    state (finished, stopped, failed); UserError still propagates after being recorded."""
    from core.errors import StageFailed, describe_os_error, input_fault
    from core.stages import get_stage

    fn = get_stage(stage)
    lock = RunLock(run)
    log = EventLog(run.events_path, echo=echo)
    stop_event = threading.Event()
    watch_stop(run, stop_event)
    prev = {}
    if threading.current_thread() is threading.main_thread():
        def on_signal(signum: int, frame: Any) -> None:
            stop_event.set()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            prev[sig] = signal.signal(sig, on_signal)
    run.write_status(state="running", pid=os.getpid(), host=socket.gethostname(), started=time.time())
    log.log({"kind": "status", "state": "running"})
    state, error, error_kind = "finished", None, None
    try:
        fn(preset, run.path, log, stop_event)
        if stop_event.is_set():
            state = "stopped"
    except UserError as e:
        state, error, error_kind = "failed", str(e), "input"
        raise
    except StageFailed as e:
        state, error = "failed", str(e)
    except OSError as e:  # a read-only folder, a file where a folder belongs: the input, exit 2
        state, error = "failed", describe_os_error(e)
        if not input_fault(e):
            raise
        error_kind = "input"
        raise UserError(error) from None
    except BaseException as e:  # noqa: BLE001 - a crash is recorded, then re-raised
        state, error = "failed", f"{type(e).__name__}: {e}"
        raise
    finally:
        log.log({"kind": "status", "state": state, **({"error": error} if error else {})})
        run.write_status(state=state, ended=time.time(), error=error, error_kind=error_kind)
        log.close()
        for sig, h in prev.items():
            signal.signal(sig, h)
        lock.release()
    return state


@dataclass
class Handle:
    run: Run
    process: subprocess.Popen

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait(self, timeout: float | None = None) -> int:
        return self.process.wait(timeout)


RUN_NICENESS = 10  # what a launched stage adds to the launcher's niceness


def lower_priority(pid: int, by: int = RUN_NICENESS) -> None:
    """Run `pid` below the launcher's scheduling priority, so that an interactive session (the
    workbench over SSH, a shell) stays responsive on a busy box; its workers inherit it. Set from
    outside right after the start (no preexec_fn: launch is called from threads); where the OS has
    no priorities or refuses, the run simply keeps the launcher's."""
    if not hasattr(os, "setpriority"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, pid, min(19, os.getpriority(os.PRIO_PROCESS, 0) + by))
    except OSError:
        pass


def _spawn(run: Run, extra_env: dict[str, str] | None = None) -> Handle:
    """Start `python -m core.cli _execute RUN_DIR` detached: own session, no terminal, stdin closed."""
    cmd = [sys.executable, "-m", "core.cli", "_execute", str(run.path)]
    env = {**os.environ, **(extra_env or {}), "PYTHONUNBUFFERED": "1"}
    # OpenMP threads that spin while waiting cost 3x throughput when another process shares the cores
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    src = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(run.path / "stderr.log", "ab") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                start_new_session=True, cwd=os.getcwd(), env=env)
    lower_priority(proc.pid)
    run.write_status(state="created", pid=proc.pid, error=None, error_kind=None)
    return Handle(run, proc)


def launch(stage: str, preset: Any, root: Path | None = None, extra_env: dict[str, str] | None = None) -> Handle:
    """Start `stage` for `preset` in a detached process (own session, no terminal): it keeps running
    when the launcher, its terminal or its SSH connection goes away."""
    from core import config

    run = create_run(preset.name or "preset", stage, config.dump(preset), root)
    return _spawn(run, extra_env)


def relaunch(run: Run, preset: Any | None = None, extra_env: dict[str, str] | None = None) -> Handle:
    """Continue an earlier run in its own directory: its stage resumes from the latest committed
    checkpoint and appends to the same event log. `preset` (if given) replaces the run's preset."""
    from core import config

    if run.state in ("running", "created"):
        raise UserError(f"{run.name}: is still running; stop it first (`llmlab runs stop {run.name}`)")
    if preset is not None:
        write_text_atomic(run.preset_path, config.dump(preset))
    (run.path / STOP_FILE).unlink(missing_ok=True)
    return _spawn(run, extra_env)


def tail(run: Run, follow: bool = True, stop: threading.Event | None = None,
         poll_s: float = 0.2) -> Iterator[dict]:
    """Events of `run` as they arrive; with follow, until the run ends (or `stop` is set)."""
    offset = 0
    while True:
        events, offset = read_events(run.events_path, offset)
        yield from events
        if not follow or (stop is not None and stop.is_set()):
            return
        if not events and run.state not in ("running", "created"):
            events, offset = read_events(run.events_path, offset)
            yield from events
            return
        time.sleep(poll_s)
