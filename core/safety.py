"""Output targets that cannot destroy saved work.

Every command that writes (export-hf, import-hf, report --html, chat /save, ...) first asks
`refuse_unsafe_target`, which refuses an OUT that is, contains or lies inside a checkpoint or run folder
the command reads, a file where a folder is meant (or the reverse), and an existing non-empty folder
unless `--force` was given.
"""

from __future__ import annotations

from pathlib import Path

from core.errors import UserError


def _run_folder(p: Path) -> Path | None:
    """The run folder (holding status.json) that `p` is or lies in, if any."""
    for q in (p, *p.parents):
        if (q / "status.json").is_file() and (q / "events.jsonl").exists():
            return q
    return None


def _protected(reads: list[Path]) -> list[Path]:
    out = []
    for r in reads:
        r = Path(r).expanduser().resolve()
        out.append(r)
        run = _run_folder(r)
        if run is not None:
            out.append(run)
    return out


def refuse_unsafe_target(out: Path, reads: list[Path], force: bool, *, file: bool = False) -> None:
    """Raise UserError unless writing `out` (a folder; a file with `file=True`) is safe: it must not
    be, contain or lie inside any of `reads` (or the run folder holding one), even with `force`."""
    out = Path(out).expanduser()
    target = out.resolve()
    for r in _protected(reads):
        if target == r or r.is_relative_to(target) or target.is_relative_to(r):
            what = "is" if target == r else "contains" if r.is_relative_to(target) else "lies inside"
            raise UserError(f"{out}: {what} {r}, which this command reads; write somewhere else")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{out}: {parent} is a file, not a folder")
            break
    if file:
        if target.is_dir():
            raise UserError(f"{out}: is a folder; give a file name")
        if target.exists() and not target.is_file():
            raise UserError(f"{out}: is not a regular file (a device, FIFO or socket); give a file name")
        return
    if target.exists() and not target.is_dir():
        raise UserError(f"{out}: is a file; give a folder to write into")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise UserError(f"{out}: folder exists and is not empty; add --force to write into it")
