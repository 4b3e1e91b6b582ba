"""The `llmlab compare` command's work (and the eval stage's compare task): two models scored on the
same examples, then the paired difference of core.eval.compare, per task.

The tasks follow from the two models: multiple choice (eval.choice_data) for two language models,
the test split for two classifiers; and for a language model instruction- or preference-tuned, the
claim its tuning makes, on the held-out split of the data it was tuned on (read from its run's
preset.toml, with that run's seed, so the split is the one the finetuning held out):
  instruct    greedy exact match on held-out instructions (prompted as the tuned model was)
  preference  log p(chosen) > log p(rejected) on held-out pairs
Both models answer every question, so "SFT beats the pretrained model" and "DPO beats its SFT start"
are paired-bootstrap verdicts with intervals and p-values.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from core.errors import UserError
from core.eval.compare import paired_bootstrap

TUNED_TASKS = ("instruct", "preference")  # finetune.method -> the compare task that checks its claim
METRICS = {"choice": "multiple-choice acc", "classify": "classify accuracy", "instruct": "exact match",
           "preference": "preference accuracy (log p chosen > rejected)"}


def _method(meta: dict) -> str:
    return (meta.get("finetune") or {}).get("method") or (meta.get("lineage") or {}).get("method") or ""


def _run_preset(meta: dict) -> Any:
    """The preset a checkpoint's run was made with (None for a model with no run folder)."""
    from core import config

    path = Path(meta["path"]).parent.parent / "preset.toml"
    return config.load(str(path)) if path.is_file() else None


def plan_tasks(meta_a: dict, meta_b: dict, preset: Any) -> dict[str, Any]:
    """task -> the preset that names its examples (the tuned model's own run preset, else `preset`)."""
    heads = {(m.get("head") or {}).get("kind", "lm") for m in (meta_a, meta_b)}
    if len(heads) > 1:
        raise UserError(f"compare: {meta_a['path']} and {meta_b['path']} have different heads "
                        f"({' vs '.join(sorted(heads))}); compare two language models or two classifiers")
    if heads == {"classify"}:
        return {"classify": preset}
    tasks: dict[str, Any] = {"choice": preset}
    for meta in (meta_b, meta_a):  # B is usually the newer model: its data first
        method = _method(meta)
        if method in TUNED_TASKS and method not in tasks:
            found = [p for p in (_run_preset(meta), preset) if p is not None and p.finetune.method == method]
            if found:
                tasks[method] = found[0]
    return tasks


def _choice(model: Any, tok: Any, source: Any, limit: int, stop: threading.Event | None) -> list[float]:
    from core.eval.choice import evaluate, load_task

    examples = load_task(source.eval.choice_data, "test", limit=limit)
    r = evaluate(model, tok, examples, batch_size=max(4, source.train.micro_batch_size), stop=stop)
    return [float(c) for c in r["correct"]]


def _classify(model: Any, tok: Any, source: Any, limit: int, stop: threading.Event | None) -> list[float]:
    from core.stages.scoring import classify_outcomes

    return classify_outcomes(model, tok, source, stop)


def _instruct(model: Any, tok: Any, source: Any, limit: int, stop: threading.Event | None) -> list[float]:
    """Exact match per held-out instruction; a model with no prompt format is prompted as the tuned one was."""
    from core.train.instruct import EXACT_MATCH_LIMIT, exact_answer, prepare_split

    ft = source.finetune
    records, _, _, _ = prepare_split(ft, "test", tok, model.config.context_length, source.train.seed)
    records = [r for r in records if "instruction" in r and "output" in r][:limit or EXACT_MATCH_LIMIT]
    fmt = "chat" if ft.template == "chat" else "alpaca"
    out = []
    for r in records:
        if stop is not None and stop.is_set():
            break
        out.append(float(exact_answer(model, tok, fmt, r)[0]))
    return out


@torch.no_grad()
def _preference(model: Any, tok: Any, source: Any, limit: int, stop: threading.Event | None) -> list[float]:
    """1 where the model gives the chosen answer a higher log-probability than the rejected one."""
    from core.data.formats import collate_preference
    from core.train.examples import fixed_batches
    from core.train.preference import pair_logps, prepare_split

    pairs, _ = prepare_split(source.finetune, "test", tok, model.config.context_length, source.train.seed)
    if limit:
        pairs = pairs[:limit]
    device = next(model.parameters()).device
    out: list[float] = []
    for b in fixed_batches(pairs, source.train.micro_batch_size, lambda batch: collate_preference(batch, tok.eot_id)):
        if stop is not None and stop.is_set():
            break
        c, r = pair_logps(model, {k: v.to(device) for k, v in b.items()})
        out += [float(x) for x in (c > r).tolist()]
    return out


SCORERS: dict[str, Callable[..., list[float]]] = {
    "choice": _choice, "classify": _classify, "instruct": _instruct, "preference": _preference}


def _data_of(task: str, source: Any) -> str:
    return source.eval.choice_data if task == "choice" else source.finetune.data


def compare_models(spec_a: str, spec_b: str, preset: Any, stop: threading.Event | None = None,
                   progress: Callable[[str], None] | None = None) -> dict:
    """Both models on the same examples, per task: each one's score and the paired difference B - A."""
    from core.lookup import read_meta, resolve_checkpoint
    from core.stages.scoring import load_for_eval
    from core.train.device import pick_device

    metas = []
    for spec in (spec_a, spec_b):
        ckpt = resolve_checkpoint(spec)
        meta = read_meta(ckpt)
        if meta is None:
            raise UserError(f"{ckpt}: model.json is missing or unreadable")
        metas.append(meta)
    plan = plan_tasks(metas[0], metas[1], preset)
    device = pick_device(preset.train.device)
    scores: dict[str, list[list[float]]] = {t: [] for t in plan}
    out: dict[str, Any] = {"models": {}, "tasks": {}}
    for key, spec in (("A", spec_a), ("B", spec_b)):
        model, tok, meta = load_for_eval(spec, device)
        out["models"][key] = {"spec": spec, "checkpoint": str(meta["path"]), "method": _method(meta)}
        for task, source in plan.items():
            if progress is not None:
                progress(f"{task}, model {key}")
            scores[task].append(SCORERS[task](model, tok, source, preset.eval.limit, stop))
        del model
        gc.collect()
    for task, (a, b) in scores.items():
        n = min(len(a), len(b))  # a stop cuts both short at the same example
        if n:
            out["tasks"][task] = {"metric": METRICS[task], "data": _data_of(task, plan[task]), "split": "test",
                                  **paired_bootstrap(a[:n], b[:n])}
    return out
