"""Committed shards: how a shard preparation survives a kill, and what a streamed run may read.

The shards' writer (core/data/shards.py) appends to one train.bin / val.bin per folder and commits
them shard by shard: every `data.shard_tokens` tokens it flushes and fsyncs both files, saves its
running statistics (parts/state-K.npz) and writes parts/part-K.json last, atomically. A shard whose
manifest exists is committed; anything after it in the files is not. A restarted preparation
truncates the files to the last commit and continues after its documents (they are read and
filtered again, which rebuilds the dedup memory and the reports, but not tokenized again); a reader
takes the lengths from the last manifest and never maps more.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from core.config import DataConfig
from core.data.mixture import sources_of
from core.data.sources import expand_paths, is_saved_dataset
from core.errors import UserError
from core.runs import write_text_atomic

PARTS = "parts"
COUNTERS = ("train_tokens", "val_tokens", "train_docs", "val_docs", "chars")


def source_stamp(data: DataConfig) -> list[list]:
    """Size and modification time of every local file the corpus reads: a resume over files that
    changed since the commit would splice two corpora, so it starts over instead."""
    out: list[list] = []
    for s in sources_of(data):
        if s.source.startswith(("embedded:", "hf:")) or is_saved_dataset(Path(s.source).expanduser()):
            continue
        try:
            for p in expand_paths(s.source):
                st = p.stat()
                out.append([str(p), st.st_size, st.st_mtime_ns])
        except (UserError, OSError):
            out.append([s.source, -1, -1])  # the reading itself reports what is wrong
    return out


def last_commit(folder: Path) -> dict | None:
    """The manifest of the last committed shard in folder (None before the first)."""
    names = sorted((Path(folder) / PARTS).glob("part-*.json"))
    for path in reversed(names):  # each is written atomically; a newer unreadable one means a damaged disk
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return None


def commit(folder: Path, manifest: dict, state: dict[str, np.ndarray], files: list) -> None:
    """Make everything written so far durable, then the manifest (the commit itself), then drop the
    previous shard's statistics (the manifests stay: they are small and say where each shard ends)."""
    for f in files:
        f.flush()
        os.fsync(f.fileno())
    parts = Path(folder) / PARTS
    parts.mkdir(exist_ok=True)
    k = manifest["part"]
    with open(parts / f"state-{k:06d}.npz", "wb") as f:
        np.savez(f, **state)  # type: ignore[arg-type]  # numpy stubs mistake the keywords
        f.flush()
        os.fsync(f.fileno())
    write_text_atomic(parts / f"part-{k:06d}.json", json.dumps(manifest))
    (parts / f"state-{k - 1:06d}.npz").unlink(missing_ok=True)


def load_state(folder: Path, manifest: dict) -> dict[str, np.ndarray] | None:
    """The running statistics saved with a commit (None if missing: the preparation starts over)."""
    path = Path(folder) / PARTS / f"state-{manifest['part']:06d}.npz"
    try:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError):
        return None


def reset(folder: Path) -> None:
    """Forget every commit (a fresh start in the same folder)."""
    parts = Path(folder) / PARTS
    for p in parts.glob("*"):
        p.unlink()
    for name in ("train.bin", "val.bin"):
        (Path(folder) / name).unlink(missing_ok=True)
