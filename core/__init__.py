"""llmlab core: the headless API behind the workbench and the `llmlab` command.

    from core import load_preset, run_stage, load_model, generate_text
    preset = load_preset("tiny", ["train.max_steps=200"])
    run = run_stage("pretrain", preset)              # in this process; runs.launch() detaches
    model, tokenizer, meta = load_model(run.path)
    print("".join(generate_text(model, tokenizer, "Once upon a time", max_new_tokens=40)))

Names are imported lazily, so `import core` stays fast and pulls in torch only when a model is used.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

_LAZY = {
    "load_preset": ("core.config", "load"),
    "Preset": ("core.config", "Preset"),
    "PresetError": ("core.config", "PresetError"),
    "UserError": ("core.errors", "UserError"),
    "launch": ("core.runs", "launch"),
    "list_runs": ("core.runs", "list_runs"),
    "tail": ("core.runs", "tail"),
    "load_model": ("core.checkpoint", "load_model"),
    "generate": ("core.generate", "generate"),
    "generate_text": ("core.generate", "generate_text"),
    "get_tokenizer": ("core.tokenizer", "get_tokenizer"),
}

__all__ = [*_LAZY, "run_stage"]


def run_stage(stage: str, preset: Any, root: Path | None = None, echo: Any = None):
    """Run `stage` for `preset` in this process, in a new run directory; returns the Run."""
    from core import config, runs
    run = runs.create_run(preset.name or "preset", stage, config.dump(preset), root)
    runs.execute(run, stage, preset, echo=echo)
    return run


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'core' has no attribute {name!r}")
