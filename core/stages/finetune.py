"""The finetuning stage: a starting model, a method's objective and data, the shared loop, a report.

`run(preset, run_dir, log, stop)` is what `llmlab finetune PRESET` executes. It loads the model
named by `finetune.base` (a checkpoint, a run, `run:PRESET:STAGE`, or a GPT-2 name imported once
into `workspace()/models/`), lets the method (classify, instruct, preference) adapt it and build
its data, chooses what trains (`finetune.trainable`: head, last_blocks, all or lora) and hands it
all to `core.train.loop.train`. The resolved base is written to `run_dir/base.json` first, so a
resumed run (`--resume`) restarts from the same model and DPO keeps the same reference even
when newer runs of the base preset have finished since.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path
from typing import Any

import torch

from core.checkpoint import write_text_atomic
from core.config import Preset
from core.errors import UserError
from core.train.examples import plan_finetune_steps

GPT2_NAMES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
BASE_FILE = "base.json"
BASELINE_FILE = "baseline.json"


# ---------------------------------------------------------------------------------- the base

def import_gpt2(name: str, log: Any) -> Path:
    """A checkpoint of GPT-2 weights `name`, imported from the hub once into workspace()/models/NAME."""
    from core.runs import workspace

    out = workspace() / "models" / name
    if (out / "COMMITTED").is_file():
        return out
    try:
        from core.model.hf import import_hf
    except ImportError:
        raise UserError(f"finetune.base: importing {name} needs core.model.hf, which this build lacks") from None
    log.log({"kind": "log", "level": "info", "message": f"importing {name} weights into {out} (once)"})
    return Path(import_hf(name, out))


def resolve_base(spec: str, run_dir: Path, log: Any) -> Path:
    """The starting checkpoint folder, fixed on the run's first start (run_dir/base.json)."""
    f = run_dir / BASE_FILE
    if f.is_file():
        saved = json.loads(f.read_text())
        path = Path(saved["path"])
        if not path.exists():
            raise UserError(f"{f}: this run started from {path}, which no longer exists; it cannot be resumed")
        return path
    if not spec:
        raise UserError("finetune.base: empty; name a checkpoint, a run, run:PRESET:STAGE or a GPT-2 name")
    if spec in GPT2_NAMES:
        path = import_gpt2(spec, log)
    else:
        from core.runs import resolve_checkpoint

        try:
            path = resolve_checkpoint(spec)
        except UserError as e:
            raise UserError(f"finetune.base: {e}") from None
    path = Path(path).resolve()
    write_text_atomic(f, json.dumps({"spec": spec, "path": str(path)}) + "\n")  # a kill mid-write leaves no half file
    return path


def load_base(path: Path, preset: Preset) -> tuple[torch.nn.Module, Any, dict]:
    """(model in train mode, tokenizer, meta) of the base; refuses a tokenizer the model cannot use."""
    from core.checkpoint import load_model

    try:
        model, tokenizer, meta = load_model(path)
    except UserError as e:
        raise UserError(f"finetune.base: {e}") from None
    tokenizer = base_tokenizer(path, tokenizer, preset)
    if tokenizer.n_vocab > model.config.vocab_size:
        raise UserError(f"finetune.base: {path}: the tokenizer {tokenizer.name!r} has {tokenizer.n_vocab} ids but the "
                        f"model's vocabulary is {model.config.vocab_size}; they do not belong together")
    set_dropout(model, preset.model.dropout)
    model.train()
    return model, tokenizer, meta


def base_tokenizer(path: Path, own: Any, preset: Preset) -> Any:
    """The base's own tokenizer, unless the preset names another: then they must be the same one
    (a model fed another tokenizer's ids learns nothing), or it is refused with both names."""
    from core.tokenizer.cache import trained_name, uses_model_tokenizer

    where = f"finetune.base: {path}"
    if uses_model_tokenizer(preset):
        if own is None:
            raise UserError(f"{where} has no tokenizer (model.json names none), so it cannot be finetuned on text; "
                            "import it with its tokenizer, or name one in [tokenizer] (kind, encoding)")
        return own
    t = preset.tokenizer
    if t.kind == "tiktoken":
        from core.tokenizer import get_tokenizer

        named = get_tokenizer(t.encoding, t.chat_template)
        wanted, same = f"tokenizer.encoding = {t.encoding!r} ({named.name})", own is not None and (
            named.fingerprint == getattr(own, "fingerprint", None) or t.encoding == own.name)
    else:
        named, wanted = None, f"tokenizer.kind = \"bpe\" ({trained_name(preset)})"
        same = own is not None and own.name == trained_name(preset)
    if own is None:
        if named is None:
            from core.tokenizer import tokenizer_for

            named = tokenizer_for(preset)
        return named  # the preset names it explicitly: not a silent swap
    if not same:
        raise UserError(f"{where} was trained with tokenizer {own.name!r} (its own), but the preset names {wanted}; remove "
                        f"the [tokenizer] section or set tokenizer.kind = \"model\" to finetune with the model's own")
    return own


def set_dropout(model: torch.nn.Module, p: float) -> None:
    """Dropout is a training choice: the preset's value replaces the base's."""
    model.config = dataclasses.replace(model.config, dropout=p)
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = p
        elif hasattr(m, "dropout") and isinstance(m.dropout, float):
            m.dropout = p


# ------------------------------------------------------------------------------ trainable parts

def set_trainable(model: torch.nn.Module, mode: str, last_blocks: int = 1) -> None:
    """head: the output head only; last_blocks: the last N blocks, the final norm and the head; all."""
    n_layer = len(model.blocks)
    if mode == "last_blocks" and last_blocks > n_layer:
        raise UserError(f"finetune.last_blocks: {last_blocks} is more than the model's {n_layer} blocks")
    for p in model.parameters():
        p.requires_grad_(mode == "all")
    if mode == "all":
        return
    parts = [model.lm_head]
    if mode == "last_blocks":
        parts += [model.ln_f, *model.blocks[n_layer - last_blocks:]]
    for part in parts:
        for p in part.parameters():
            p.requires_grad_(True)


def add_lora(model: torch.nn.Module, preset: Preset, base: Path, method: str, log: Any) -> torch.nn.Module:
    """Adapters from finetune.lora; a new classification head trains in full next to them."""
    from core.model.lora import AdapterModel, apply_lora

    cfg = preset.finetune.lora
    targets = list(cfg.targets)
    if method == "classify" and "head" in targets:
        targets.remove("head")  # the classifier is new: it trains in full, an adapter on it would add nothing
        log.log({"kind": "log", "level": "info", "message": "lora: the new classification head trains in full"})
    if not targets and method != "classify":
        raise UserError("finetune.lora.targets: empty; choose from attn, mlp, head")
    apply_lora(model, cfg.rank, cfg.alpha, cfg.dropout, targets)
    if method == "classify":
        for p in model.lm_head.parameters():
            p.requires_grad_(True)
    return AdapterModel(model, str(base), cfg.rank, cfg.alpha, cfg.dropout, targets)


def make_task(preset: Preset, tokenizer: Any, log: Any, max_len: int) -> Any:
    method = preset.finetune.method
    if method == "classify":
        from core.train.classify import ClassifyTask
        return ClassifyTask(preset, tokenizer, log, max_len)
    if method == "instruct":
        from core.train.instruct import InstructTask
        return InstructTask(preset, tokenizer, log, max_len)
    if method == "preference":
        from core.train.preference import PreferenceTask
        return PreferenceTask(preset, tokenizer, log, max_len)
    raise UserError(f"finetune.method: unknown method {method!r}")


# --------------------------------------------------------------------------------------- stage

def run(preset: Preset, run_dir: Path, log: Any, stop: threading.Event) -> None:
    """The finetune stage (see the module docstring)."""
    from core.checkpoint import committed_checkpoints
    from core.model.lora import count_parameters
    from core.train.loop import pick_device, seed_everything, train

    run_dir = Path(run_dir)
    ft, t = preset.finetune, preset.train
    if t.nproc > 1:
        raise UserError("train.nproc: finetuning runs in one process; set train.nproc = 1")
    fresh = not committed_checkpoints(run_dir)
    base = resolve_base(ft.base, run_dir, log)
    model, tokenizer, base_meta = load_base(base, preset)
    seed_everything(t.seed)
    max_len = model.config.context_length
    task = make_task(preset, tokenizer, log, max_len)
    task.adapt_model(model)
    trained_with = (base_meta.get("finetune") or {}).get("prompt_format")
    if trained_with and getattr(task, "prompt_format", trained_with) != trained_with:
        log.log({"kind": "log", "level": "warning",
                 "message": f"finetune.template: the base was instruction-tuned with {trained_with!r} prompts, this "
                            f"run uses {task.prompt_format!r}; set finetune.template = {trained_with!r} to match"})

    baseline = _baseline(task, model, run_dir, fresh, log)
    lora = ft.trainable == "lora"
    if lora:
        trained = add_lora(model, preset, base, task.method, log)
    else:
        set_trainable(model, ft.trainable, ft.last_blocks)
        trained = model
    if task.method == "preference":
        task.make_objective(model, lora)
    n_train, n_total = count_parameters(model)
    device = pick_device(t.device)
    if hasattr(task, "to"):
        task.to(device)

    accum = preset.grad_accum_steps()
    per_step = min(t.micro_batch_size, task.batches.n_train) * accum
    total = plan_finetune_steps(t, per_step, task.batches.n_train)
    log.log({"kind": "log", "level": "info",
             "message": f"finetune ({task.method}, trainable {ft.trainable}): {n_train:,} of {n_total:,} parameters "
                        f"train; {total} steps of {per_step} examples ({total * per_step / task.batches.n_train:.2f} epochs) "
                        f"from {base}"})
    extra = task.checkpoint_extra()
    if lora:
        extra["adapter"] = trained.adapter_meta()
    lineage = {"stage": "finetune", "preset": preset.name, "method": task.method, "init": str(base),
               "base": str(base), "trainable": ft.trainable}
    t0 = time.time()
    result = train(trained, task.objective, task.batches.train_loader(), task.batches.val_batches(), t, log, stop, run_dir,
                   total_steps=total, grad_accum=accum, tokenizer=tokenizer,
                   sample=task.sample if t.sample_every and task.sample else None,
                   checkpoint_kwargs={"lineage": lineage, "extra": extra}, device=device)
    report = {"stage": "finetune", "preset": preset.name, "method": task.method, "base": str(base),
              "trainable": ft.trainable, "trainable_params": n_train, "params": n_total, "steps": result.step,
              "planned_steps": total, "val_loss": result.val_loss, "best_val_loss": result.best_val_loss,
              "train_s": round(result.train_s, 2), "wall_s": round(time.time() - t0, 2), "stopped": result.stopped,
              "resumed_from": result.resumed_from,
              "checkpoint": str(result.checkpoint) if result.checkpoint else None, "baseline": baseline}
    if not result.stopped and result.step > 0:
        held_out = task.final_report(trained, device)
        report["test"] = held_out
        log.log({"kind": "test", "step": result.step, **_scalars(held_out)})
        log.log({"kind": "log", "level": "info", "message": "held-out " + _summary(held_out)})
    _write_report(run_dir, report)


def _baseline(task: Any, model: torch.nn.Module, run_dir: Path, fresh: bool, log: Any) -> dict | None:
    """The starting model's score on the held-out set (once per run; kept for resumed runs)."""
    f = run_dir / BASELINE_FILE
    if not fresh and f.is_file():
        return json.loads(f.read_text())
    if not hasattr(task, "baseline_report"):
        return None
    was = model.training
    model.eval()
    with torch.no_grad():
        out = task.baseline_report(model)
    model.train(was)
    log.log({"kind": "log", "level": "info", "message": "before finetuning: " + _summary(out)})
    write_text_atomic(f, json.dumps(out) + "\n")
    return out


def _scalars(d: dict) -> dict:
    return {k: v for k, v in d.items() if isinstance(v, (int, float, str)) or k == "confusion_matrix"}


def _summary(d: dict) -> str:
    keys = ("accuracy", "macro_f1", "exact_match", "reward_accuracy", "reward_margin", "logp_accuracy", "loss")
    parts = [f"{k} {d[k]:.3f}" for k in keys if isinstance(d.get(k), float)]
    return ", ".join(parts) + (f" on {d['n']} {d.get('split', 'held-out')} examples" if "n" in d else "")


def _write_report(run_dir: Path, report: dict) -> None:
    write_text_atomic(run_dir / "report.json", json.dumps(report, indent=1, default=str) + "\n")
