"""Run directories: the contract between core, the CLI and the TUI (see DESIGN.md).

A run is a folder `runs/<yyyymmdd-hhmmss>-<preset>-<stage>/` holding the resolved preset, a status
file and an append-only event log. Long stages run in a detached process (`launch`) in a session of
their own, so a closed terminal or a dropped SSH connection never stops them; anyone can `tail` the
events, `list_runs` shows their state, and `stop` asks for a cooperative stop at a step boundary.
"""

from __future__ import annotations

import json
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

STOP_FILE = "STOP"
LOCK_FILE = ".lock"


class Logger(Protocol):
    def log(self, event: dict) -> None: ...
    def close(self) -> None: ...


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
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
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
    """Complete events from byte `offset` on, and the offset after the last complete line."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    events = []
    for line in data[:end].splitlines():
        if line.strip():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
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
        try:
            return json.loads((self.path / "status.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {"state": "unknown"}

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


def latest_run(preset_name: str, stage: str, root: Path | None = None, state: str = "finished") -> Run | None:
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
    if signal_too and process_alive(pid):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


# --------------------------------------------------------------------------------------- execute

def execute(run: Run, stage: str, preset: Any, echo: Logger | None = None) -> str:
    """Run a stage in this process inside `run`: lock, status, events, stop handling. Returns the final
    state (finished, stopped, failed); UserError still propagates after being recorded."""
    from core.errors import StageFailed
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


# ---------------------------------------------------------------------------------- model lookup

def resolve_checkpoint(spec: str | Path, prefer: str = "best", root: Path | None = None) -> Path:
    """A model named the way users name it -> a committed checkpoint folder.

    Accepts a checkpoint folder (has COMMITTED), a run folder or run name (its `best`, else `latest`,
    checkpoint), or `run:PRESET:STAGE` (the newest finished run of that preset and stage)."""
    s = str(spec)
    if s.startswith("run:"):
        parts = s.split(":")
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise UserError(f"{s}: expected run:PRESET:STAGE, e.g. run:tiny:pretrain")
        run = latest_run(parts[1], parts[2], root)
        if run is None:
            raise UserError(f"{s}: no finished {parts[2]} run of preset {parts[1]!r} in {runs_root(root)}; "
                            f"run `llmlab {parts[2]} {parts[1]}` first")
        return resolve_checkpoint(run.path, prefer, root)
    p = Path(s).expanduser()
    if (p / "COMMITTED").exists():
        return p
    if p.is_dir() and (p / "model.safetensors").exists():
        raise UserError(f"{p}: checkpoint is not committed (its save was interrupted); use an earlier one")
    run_dir = p if (p / "checkpoints").is_dir() or (p / "status.json").exists() else None
    if run_dir is None:
        try:
            run_dir = open_run(s, root).path
        except UserError:
            raise UserError(f"{s}: not a checkpoint, a run folder, a run name or run:PRESET:STAGE") from None
    ckdir = run_dir / "checkpoints"
    for name in (prefer, "latest", "best"):
        f = ckdir / name
        if f.exists():
            step = ckdir / f.read_text().strip()
            if (step / "COMMITTED").exists():
                return step
    committed = sorted(d for d in ckdir.glob("step-*") if (d / "COMMITTED").exists()) if ckdir.is_dir() else []
    if committed:
        return committed[-1]
    raise UserError(f"{run_dir}: has no committed checkpoint")
