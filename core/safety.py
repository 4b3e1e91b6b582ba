"""Where a command may write: the refusal that keeps an export from damaging what it reads or a run.

`refuse_unsafe_target(out, reads, force)` is called by every command that writes a file or folder
the user names (export-hf, export-gguf, import-hf, report --html, chat /save) before anything is written. It raises `UserError` when
`out` is one of the paths the command reads, lies inside or contains one, lies inside or contains
a run folder or a checkpoint, or already exists without `force`. `write_replacing` then writes the
new folder or file into a temporary sibling and renames it into place, so a failed export leaves
nothing half-written and the old target stays until the new one is complete.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from core.errors import UserError

# files that mark a folder as something llmlab must never overwrite
RUN_MARKERS = ("status.json", "events.jsonl")
CHECKPOINT_MARKER = "COMMITTED"


def _inside(a: Path, b: Path) -> bool:
    """a is b or lies below b (both resolved)."""
    return a == b or b in a.parents


def _protected(folder: Path) -> str | None:
    """'a run folder' or 'a checkpoint' when `folder` is one, else None."""
    if all((folder / m).exists() for m in RUN_MARKERS) or (folder / "checkpoints").is_dir():
        return "a run folder"
    if (folder / CHECKPOINT_MARKER).is_file():
        return "a checkpoint"
    return None


def _protected_below(folder: Path) -> Path | None:
    """The first run folder or checkpoint inside `folder` (walked only where --force would delete it)."""
    for root, dirs, files in os.walk(folder):
        if CHECKPOINT_MARKER in files or all(m in files for m in RUN_MARKERS):
            return Path(root)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
    return None


def refuse_unsafe_target(out: Path, reads: list[Path], force: bool, *, file: bool = False) -> None:
    """Raise UserError when writing `out` (a folder; a file with `file=True`) could damage an input,
    a run or a checkpoint, or would replace an existing file or non-empty folder without `force`."""
    target = Path(out).expanduser().resolve()
    for r in reads:
        src = Path(r).expanduser().resolve()
        if target == src:
            raise UserError(f"{out}: is {r}, which this command reads; choose another output path")
        if _inside(target, src):
            raise UserError(f"{out}: lies inside {r}, which this command reads; choose a path outside it")
        if _inside(src, target):
            raise UserError(f"{out}: contains {r}, which this command reads; choose another output path")
    for parent in [target, *target.parents]:
        kind = _protected(parent) if parent.is_dir() else None
        if kind is not None:
            where = "is" if parent == target else f"lies inside {parent}, which is"
            raise UserError(f"{out}: {where} {kind}; choose an output path outside the workspace's runs")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{out}: {parent} is a file, not a folder")
            break
    if file:
        _refuse_file_target(out, target, force)
    elif target.is_dir():
        if any(target.iterdir()) and not force:
            raise UserError(f"{out}: the folder is not empty; add --force to replace it, or choose a new path")
        found = _protected_below(target)
        if found is not None:
            raise UserError(f"{out}: contains {found}, a run or checkpoint; it is never replaced")
    elif target.exists():
        raise UserError(f"{out}: is a file; give a folder to write into")


def _refuse_file_target(out: Path, target: Path, force: bool) -> None:
    if target.is_dir():
        raise UserError(f"{out}: is a folder; give a file name")
    if target.exists() and not target.is_file():
        raise UserError(f"{out}: is not a regular file (a device, FIFO or socket); give a file name")
    if target.exists() and not force:
        raise UserError(f"{out}: the file exists; add --force to replace it, or choose a new path")


def model_inputs(checkpoint: Path) -> list[Path]:
    """The folders loading a checkpoint reads: itself and, for a LoRA adapter, its base (and the
    base's base), so an export can refuse to write into any of them."""
    import json

    out, seen = [Path(checkpoint)], set()
    while out[-1] not in seen:
        seen.add(out[-1])
        try:
            meta = json.loads((out[-1] / "model.json").read_text())
            base = (meta.get("adapter") or {}).get("base")
        except (OSError, ValueError, AttributeError):
            break
        if not base or not Path(base).exists():
            break
        from core.lookup import resolve_checkpoint  # a base may name a run folder

        out.append(resolve_checkpoint(base))
    return list(dict.fromkeys(out))


def _temp_sibling(target: Path) -> Path:
    return target.with_name(f".tmp-{target.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _remove_stale_siblings(target: Path) -> None:
    """Temporaries of earlier writes of `target` whose process was killed (SIGKILL skips cleanup)."""
    from core.runs import process_alive

    for p in target.parent.glob(f".tmp-{target.name}-*-*"):
        pid = p.name[len(f".tmp-{target.name}-"):].split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def write_replacing(target: Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary sibling of `target`, then rename it to `target` (replacing
    what was there only now); on any failure the temporary is removed and `target` is untouched."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_siblings(target)
    tmp = _temp_sibling(target)
    try:
        write(tmp)
        if target.is_dir() and not target.is_symlink():
            old = _temp_sibling(target)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise
    return target
