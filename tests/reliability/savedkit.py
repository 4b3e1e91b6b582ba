"""Real saved files for the boundary and fuzzing tests: a committed checkpoint of a tiny GPT with its
trained BPE tokenizer, a manifest rewritten after a mutation (a hostile file carries a valid one), run
folders with status and events, and snapshots that prove no other file changed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
from pathlib import Path

import torch

from core import checkpoint as ckpt_io
from core.config import ModelConfig
from core.model.gpt import GPT


def make_tokenizer():
    from core.data.synthetic import iter_stories
    from core.tokenizer import train_bpe

    return train_bpe(list(iter_stories(3, 40_000)), 300, name="fuzz-bpe")


def make_checkpoint(dest: Path, tokenizer, *, head: str = "lm") -> Path:
    torch.manual_seed(0)
    model = GPT(ModelConfig(n_layer=1, n_head=2, n_embd=16, context_length=16, vocab_size=tokenizer.n_vocab))
    if head != "lm":
        model.set_head(2, bias=True, kind=head)
    return ckpt_io.write_checkpoint(dest, 1, model, tokenizer=tokenizer)


def recommit(ckpt: Path) -> None:
    """COMMITTED for the files as they are now, so a mutation reaches the reader behind the hash check."""
    files = {p.relative_to(ckpt).as_posix(): {"bytes": p.stat().st_size, "sha256": ckpt_io._sha256(p)}
             for p in sorted(ckpt.rglob("*")) if p.is_file() and p.name != "COMMITTED"}
    (ckpt / "COMMITTED").write_text(json.dumps({"step": 1, "files": files}))


def snapshot(root: Path, skip: Path | None = None) -> dict[str, str]:
    """sha256 of every file under root (except `skip`): compare before and after to prove nothing changed."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink() and p != skip:
            out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def copy_tree(src: Path, dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest)
    return dest


def make_run(root: Path, name: str, state: str = "finished", events: list[dict] | None = None,
             pid: int | None = None) -> Path:
    """A run folder the way core.runs writes one (status.json, events.jsonl, preset.toml)."""
    run = root / "runs" / name
    run.mkdir(parents=True)
    (run / "preset.toml").write_text('name = "tiny"\n')
    status = {"state": state, "stage": "pretrain", "preset": "tiny", "pid": pid, "host": socket.gethostname(),
              "started": 1767225600.0, "ended": None if state in ("created", "running") else 1767225660.0}
    (run / "status.json").write_text(json.dumps(status, indent=1))
    evs = events if events is not None else [
        {"t": 1.0, "kind": "status", "state": "running"},
        {"t": 2.0, "kind": "train", "step": 1, "loss": 5.5, "lr": 1e-3, "grad_norm": 1.0, "tokens_per_s": 100.0},
        {"t": 3.0, "kind": "val", "step": 1, "val_loss": 5.4, "val_ppl": 221.4},
        {"t": 4.0, "kind": "sample", "step": 1, "prompt": "Once", "text": " upon [/] a time"},
        {"t": 5.0, "kind": "status", "state": state},
    ]
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evs))
    return run
