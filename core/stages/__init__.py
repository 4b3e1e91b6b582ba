"""The stage registry: stage name -> the function that runs it (imported lazily, so the CLI starts fast).

A stage is `run(preset, run_dir, log, stop) -> None`; see core.runs.execute for how it is wrapped.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable

from core.errors import UserError

STAGES: dict[str, tuple[str, str]] = {
    "data": ("core.stages.data", "prepare the corpus: read, filter, deduplicate, write token shards"),
    "tokenizer": ("core.stages.tokenizer", "train a BPE tokenizer on the corpus (or check a tiktoken encoding)"),
    "pretrain": ("core.stages.pretrain", "pretrain the model on the token shards"),
    "finetune": ("core.stages.finetune", "finetune: classification, instruction or preference (DPO)"),
    "eval": ("core.stages.eval", "evaluate a model: perplexity, classification, multiple choice, judge"),
    "serve": ("core.stages.serve", "serve a model over an OpenAI-compatible HTTP API"),
}


def plugin_stages() -> dict[str, str]:
    """Extra stages from $LLMLAB_STAGES ("name=package.module,..."): a user's own stage functions."""
    out = {}
    for item in filter(None, os.environ.get("LLMLAB_STAGES", "").split(",")):
        name, _, module = item.partition("=")
        if name.strip() and module.strip():
            out[name.strip()] = module.strip()
    return out


def get_stage(name: str) -> Callable:
    plugins = plugin_stages()
    if name in plugins:
        return importlib.import_module(plugins[name]).run
    if name not in STAGES:
        raise UserError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    return importlib.import_module(STAGES[name][0]).run
