"""Model names -> committed checkpoint folders: the one resolver, and a torch-free reader of model.json.

A MODEL is named the same way everywhere (CLI, TUI, presets' init_from / finetune.base / eval.model):
a checkpoint folder, a run folder or run name, `run:PRESET:STAGE` (the newest finished run of that
preset and stage) or a name under $LLMLAB_HOME/models/. A run resolves to its `latest` committed
checkpoint: the end of the schedule it was configured for, the one a resume continues from, and one
that exists even when no validation ran. `@best` after a run (`run:tiny:pretrain@best`) chooses the
checkpoint of lowest validation loss instead; `@latest` says the default explicitly.
The layout names (COMMITTED, step-NNNNNNNN, the latest/best pointers) live here so that readers
that must not import torch (the TUI) share them with core.checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from core.config import ModelConfig
from core.errors import UserError
from core.runs import latest_run, open_run, runs_root, workspace

WEIGHTS, META, TRAINER, COMMITTED, TOKENIZER_DIR = "model.safetensors", "model.json", "trainer.pt", "COMMITTED", "tokenizer"
STEP_PREFIX = "step-"
POINTERS = ("latest", "best")


@dataclass(frozen=True)
class GPT2Model:
    """One of OpenAI's GPT-2 checkpoints: its hub repository, size and the built-in preset of its shape."""

    hub: str
    size: str
    preset: str


GPT2_MODELS = {
    "gpt2": GPT2Model("openai-community/gpt2", "124M", "gpt2-124m"),
    "gpt2-medium": GPT2Model("openai-community/gpt2-medium", "355M", "gpt2-355m"),
    "gpt2-large": GPT2Model("openai-community/gpt2-large", "774M", "gpt2-774m"),
    "gpt2-xl": GPT2Model("openai-community/gpt2-xl", "1.5B", "gpt2-1558m"),
}
GPT2_NAMES = tuple(GPT2_MODELS)


def step_name(step: int) -> str:
    return f"{STEP_PREFIX}{step:08d}"


def models_root() -> Path:
    """Where imported models live (import-hf, GPT-2 weights): $LLMLAB_HOME/models."""
    return workspace() / "models"


def read_pointer(root: Path, name: str) -> Path | None:
    """The committed checkpoint a pointer file (latest, best) of a checkpoints/ folder names, or None."""
    try:
        target = (root / name).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    p = root / target
    return p if target.startswith(STEP_PREFIX) and "/" not in target and (p / COMMITTED).is_file() else None


def committed_checkpoints(run_dir_or_root: str | Path) -> list[Path]:
    """Committed checkpoint folders of a run (or of its checkpoints/ folder), oldest step first."""
    root = Path(run_dir_or_root)
    if (root / "checkpoints").is_dir():
        root = root / "checkpoints"
    if not root.is_dir():
        return []
    out = [p for p in root.iterdir() if p.name.startswith(STEP_PREFIX) and (p / COMMITTED).is_file()]
    return sorted(out, key=lambda p: p.name)


def split_choice(spec: str) -> tuple[str, str | None]:
    """`NAME@best` -> (NAME, "best"); a name without a pointer suffix -> (NAME, None)."""
    for name in POINTERS:
        if spec.endswith("@" + name):
            return spec[: -len(name) - 1], name
    return spec, None


def resolve_checkpoint(spec: str | Path, root: Path | None = None) -> Path:
    """A model named the way users name it (see the module docstring) -> a committed checkpoint folder.

    `root` is the runs folder (default: $LLMLAB_HOME/runs). Raises UserError naming what is wrong."""
    name, choice = split_choice(str(spec))
    if name.startswith("run:"):
        parts = name.split(":")
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise UserError(f"{spec}: expected run:PRESET:STAGE, e.g. run:tiny:pretrain or run:tiny:pretrain@best")
        run = latest_run(parts[1], parts[2], root)
        if run is None:
            raise UserError(f"{spec}: no finished {parts[2]} run of preset {parts[1]!r} in {runs_root(root)}; "
                            f"run `llmlab {parts[2]} {parts[1]}` first")
        return _from_run(run.path, choice)
    p = Path(name).expanduser()
    if not p.exists() and not p.is_absolute() and (workspace() / p).exists():
        p = workspace() / p  # a path under $LLMLAB_HOME means the same from any directory
    if (p / COMMITTED).is_file() or (p.name.startswith(STEP_PREFIX) and p.is_dir()):
        if choice is not None:
            raise UserError(f"{spec}: @{choice} chooses among a run's checkpoints; {p} is one checkpoint")
        return p
    if p.is_dir() and (p / WEIGHTS).exists():
        raise UserError(f"{p}: checkpoint is not committed (its save was interrupted); use an earlier one")
    if p.is_dir():  # a run folder or its checkpoints/ folder
        return _from_run(p, choice)
    imported = models_root() / name
    if name and "/" not in name and (imported / COMMITTED).is_file() and choice is None:
        return imported
    try:
        run_dir = open_run(name, root).path
    except UserError:
        raise UserError(f"{spec}: not a checkpoint folder, a run folder, a run name, run:PRESET:STAGE "
                        f"or a model under {models_root()}") from None
    return _from_run(run_dir, choice)


def _from_run(run_dir: Path, choice: str | None) -> Path:
    """A run's `latest` checkpoint (or the one `choice` names); past a pointer to a checkpoint that is
    no longer committed, the newest committed one."""
    ckdir = run_dir if run_dir.name == "checkpoints" else run_dir / "checkpoints"
    picked = read_pointer(ckdir, choice or "latest")
    if picked is not None:
        return picked
    if choice == "best":
        raise UserError(f"{run_dir}@best: this run has no best checkpoint (no validation loss was measured); "
                        f"name the run without @best for its latest checkpoint")
    committed = committed_checkpoints(ckdir)
    if committed:
        return committed[-1]
    raise UserError(f"{run_dir}: has no committed checkpoint (expected checkpoints/step-NNNNNNNN/ with a "
                    f"{COMMITTED} file)")


def model_config(meta: dict) -> ModelConfig:
    """The ModelConfig of a checkpoint's model.json, validated with the preset schema's bounds
    (core.schemas; fields this version does not know are left out)."""
    from core.schemas import model_config_of

    return model_config_of(meta, meta.get("path") or META)


def read_meta(ckpt: str | Path) -> dict | None:
    """model.json of a committed checkpoint folder with `path` added, or None (not committed, unreadable).
    No hashes are checked: this is for showing facts; loading goes through core.checkpoint.verify."""
    p = Path(ckpt)
    if not (p / COMMITTED).is_file():
        return None
    from core.schemas import check_model_json, read_json

    try:
        meta = check_model_json(read_json(p / META, 16 << 20), p / META)
    except UserError:  # a damaged checkpoint is left out of the lists; the others show
        return None
    meta["path"] = str(p)
    return meta
