"""The finetuning stage: a starting model, a method's objective and data, the shared loop, a report.

`run(preset, run_dir, log, stop)` is what `llmlab finetune PRESET` executes. It loads the model
named by `finetune.base` (a checkpoint, a run, `run:PRESET:STAGE`, or a GPT-2 name imported once
into `workspace()/models/`), lets the method (classify, instruct, preference, rl) adapt it and build
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
from typing import TYPE_CHECKING, Any

import torch

from core.config import Preset
from core.errors import UserError
from core.lookup import GPT2_NAMES
from core.runs import Logger, write_report, write_text_atomic
from core.train.device import Dist
from core.schemas import F, read_json
from core.train.examples import plan_finetune_steps

if TYPE_CHECKING:
    from core.tokenizer.protocol import TextTokenizer
    from core.model.gpt import GPT
    from core.model.lora import AdapterModel

BASE_FILE = "base.json"
BASELINE_FILE = "baseline.json"


# ---------------------------------------------------------------------------------- the base

def resolve_base(spec: str, run_dir: Path, log: Logger) -> Path:
    """The starting checkpoint folder, fixed on the run's first start (run_dir/base.json)."""
    f = run_dir / BASE_FILE
    if f.is_file():
        saved = read_json(f, 1 << 20, {"path": F((str,), max_len=4096)})
        path = Path(saved["path"])
        if not path.exists():
            raise UserError(f"{f}: this run started from {path}, which no longer exists; it cannot be resumed")
        return path
    if not spec:
        raise UserError("finetune.base: empty; name a checkpoint, a run, run:PRESET:STAGE or a GPT-2 name")
    from core.model.hf import is_hub_name

    from core.model.importer import import_once

    if spec in GPT2_NAMES:
        path = import_once(spec, log)
    else:
        from core.lookup import resolve_checkpoint

        try:
            path = resolve_checkpoint(spec)
        except UserError as e:
            hub = spec.removeprefix("hf:")  # hf:owner/name, as data sources are written, or owner/name
            if not is_hub_name(hub):  # a hub model, imported once into models/
                raise UserError(f"finetune.base: {e}") from None
            path = import_once(hub, log)
    path = Path(path).resolve()
    write_text_atomic(f, json.dumps({"spec": spec, "path": str(path)}) + "\n")  # a kill mid-write leaves no half file
    return path


def load_base(path: Path, preset: Preset) -> tuple[GPT, Any, dict]:
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


def base_tokenizer(path: Path, own: TextTokenizer | None, preset: Preset) -> TextTokenizer:
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


def set_dropout(model: GPT, p: float) -> None:
    """Dropout is a training choice: the preset's value replaces the base's."""
    model.config = dataclasses.replace(model.config, dropout=p)
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = p  # type: ignore[assignment]  # nn.Module.__setattr__ takes the float
        elif hasattr(m, "dropout") and isinstance(m.dropout, float):
            m.dropout = p  # type: ignore[assignment]  # an attention module's float dropout


# ------------------------------------------------------------------------------ trainable parts

def set_trainable(model: GPT, mode: str, last_blocks: int = 1) -> None:
    """head: the output head only; last_blocks: the last N blocks, the final norm and the head; all."""
    n_layer = len(model.blocks)
    if mode == "last_blocks" and last_blocks > n_layer:
        raise UserError(f"finetune.last_blocks: {last_blocks} is more than the model's {n_layer} blocks")
    for p in model.parameters():
        p.requires_grad_(mode == "all")
    if mode == "all":
        return
    parts: list[torch.nn.Module] = [model.lm_head]
    if mode == "last_blocks":
        parts += [model.ln_f, *model.blocks[n_layer - last_blocks:]]
    for part in parts:
        for p in part.parameters():
            p.requires_grad_(True)


def add_lora(model: GPT, preset: Preset, base: Path, method: str, log: Logger) -> AdapterModel:
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


def make_task(preset: Preset, tokenizer: TextTokenizer, log: Logger, max_len: int) -> Any:
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
    if method == "rl":
        from core.train.rl import RLTask
        return RLTask(preset, tokenizer, log, max_len)
    raise UserError(f"finetune.method: unknown method {method!r}")


# --------------------------------------------------------------------------------------- stage

def run(preset: Preset, run_dir: Path, log: Logger, stop: threading.Event) -> None:
    """The finetune stage (see the module docstring); with train.nproc > 1 on torchrun workers."""
    from core.fork import seed_fork

    run_dir = Path(run_dir)
    seed_fork(preset, "finetune", run_dir, log)
    if preset.train.nproc > 1:
        from core.train import ddp

        if preset.finetune.method == "rl":
            raise UserError("train.nproc: RL (finetune.method = \"rl\") runs in one process for now; set train.nproc = 1")

        resolve_base(preset.finetune.base, run_dir, log)  # once, here: the workers read base.json
        ddp.launch(preset, run_dir, log, stop, worker_module="core.stages.finetune")
        return
    fit(preset, run_dir, log, stop)


def prepare_model(preset: Preset, run_dir: Path, log: Logger, main: bool) -> tuple[Any, GPT | AdapterModel, Any, Path, dict | None]:
    """The base, the method's task and what trains: (task, model to train, tokenizer, base, baseline)."""
    from core.checkpoint import committed_checkpoints
    from core.train.device import seed_everything

    ft = preset.finetune
    fresh = not committed_checkpoints(run_dir)
    base = resolve_base(ft.base, run_dir, log)
    model, tokenizer, base_meta = load_base(base, preset)
    seed_everything(preset.train.seed)
    task = make_task(preset, tokenizer, log, model.config.context_length)
    task.adapt_model(model)
    trained_with = (base_meta.get("finetune") or {}).get("prompt_format")
    if trained_with and getattr(task, "prompt_format", trained_with) != trained_with:
        log.log({"kind": "log", "level": "warning",
                 "message": f"finetune.template: the base was instruction-tuned with {trained_with!r} prompts, this "
                            f"run uses {task.prompt_format!r}; set finetune.template = {trained_with!r} to match"})
    baseline = _baseline(task, model, run_dir, fresh, log, write=main)
    lora = ft.trainable == "lora"
    trained: GPT | AdapterModel
    if lora:
        trained = add_lora(model, preset, base, task.method, log)
    else:
        set_trainable(model, ft.trainable, ft.last_blocks)
        trained = model
    if task.method == "preference":
        task.make_objective(model, lora)
    elif task.method == "rl":
        task.make_objective(model, trained, lora)  # the policy samples the rollouts; a reference when kl_beta > 0
    return task, trained, tokenizer, base, baseline


def fit(preset: Preset, run_dir: Path, log: Logger, stop: threading.Event, dist: Dist | None = None) -> Any:
    """Setup, the loop and the report, in this process (a single process, or one rank of torchrun)."""
    from core.fork import lineage_of
    from core.stages.eval import live_eval_for
    from core.stages.pretrain import live_report
    from core.model.lora import AdapterModel, count_parameters
    from core.train.device import pick_device
    from core.train.loop import train

    run_dir = Path(run_dir)
    ft, t = preset.finetune, preset.train
    main = dist is None or dist.is_main
    task, trained, tokenizer, base, baseline = prepare_model(preset, run_dir, log, main)
    n_train, n_total = count_parameters(trained.gpt if isinstance(trained, AdapterModel) else trained)
    device = pick_device(t.device, dist)
    if hasattr(task, "to"):
        task.to(device)
    world = dist.world_size if dist else 1
    accum = preset.grad_accum_steps(world)
    per_step = min(t.micro_batch_size, task.batches.n_train) * accum * world
    if task.method == "rl":  # a step trains on one rollout batch (finetune.rl.prompts), reused rl.updates times
        accum, per_step = 1, max(1, ft.rl.prompts // ft.rl.updates)
    total = plan_finetune_steps(t, per_step, task.batches.n_train)
    log.log({"kind": "log", "level": "info",
             "message": f"finetune ({task.method}, trainable {ft.trainable}): {n_train:,} of {n_total:,} parameters "
                        f"train; {total} steps of {per_step} examples ({total * per_step / task.batches.n_train:.2f} epochs) "
                        f"from {base}"})
    extra = task.checkpoint_extra()
    if isinstance(trained, AdapterModel):
        extra["adapter"] = trained.adapter_meta()
    lineage = {"stage": "finetune", "preset": preset.name, "method": task.method, "init": str(base),
               "base": str(base), "trainable": ft.trainable, **lineage_of(run_dir)}
    t0 = time.time()
    result = train(trained, task.objective, task.batches.train_loader(), task.batches.val_batches(), t, log, stop, run_dir,
                   total_steps=total, grad_accum=accum, tokenizer=tokenizer,
                   sample=task.sample if t.sample_every and task.sample else None,
                   checkpoint_kwargs={"lineage": lineage, "extra": extra}, dist=dist, device=device,
                   live=live_eval_for(preset, tokenizer, "classify" if task.method == "classify" else "lm", device))
    if not main:
        return result
    report = {"stage": "finetune", "preset": preset.name, "method": task.method, "base": str(base),
              "trainable": ft.trainable, "trainable_params": n_train, "params": n_total, "steps": result.step,
              "planned_steps": total, "val_loss": result.val_loss, "best_val_loss": result.best_val_loss,
              "train_s": round(result.train_s, 2), "wall_s": round(time.time() - t0, 2), "stopped": result.stopped,
              "resumed_from": result.resumed_from, "world_size": world, **live_report(result),
              "checkpoint": str(result.checkpoint) if result.checkpoint else None, "baseline": baseline}
    if not result.stopped and result.step > 0:
        held_out = task.final_report(trained, device, baseline) if task.method == "rl" else task.final_report(trained, device)
        report["test"] = held_out
        log.log({"kind": "test", "step": result.step, **_scalars(held_out)})
        log.log({"kind": "log", "level": "info", "message": "held-out " + _summary(held_out)})
    write_report(run_dir, report)
    return result


def _baseline(task: Any, model: GPT, run_dir: Path, fresh: bool, log: Logger,
              write: bool = True) -> dict | None:
    """The starting model's score on the held-out set (once per run; kept for resumed runs)."""
    f = run_dir / BASELINE_FILE
    if not fresh and f.is_file():
        return read_json(f, 64 << 20, {})
    if not hasattr(task, "baseline_report"):
        return None
    was = model.training
    model.eval()
    with torch.no_grad():
        out = task.baseline_report(model)
    model.train(was)
    log.log({"kind": "log", "level": "info", "message": "before finetuning: " + _summary(out)})
    if write:
        write_text_atomic(f, json.dumps(out) + "\n")
    return out


def _scalars(d: dict) -> dict:
    return {k: v for k, v in d.items() if isinstance(v, (int, float, str)) or k == "confusion_matrix"}


def _summary(d: dict) -> str:
    keys = ("accuracy", "macro_f1", "exact_match", "reward_accuracy", "reward_margin", "logp_accuracy", "loss",
            "pass_at_1", "pass_at_k", "gain")
    parts = [f"{k} {d[k]:.3f}" for k in keys if isinstance(d.get(k), float)]
    return ", ".join(parts) + (f" on {d['n']} {d.get('split', 'held-out')} examples" if "n" in d else "")


if __name__ == "__main__":  # one torchrun worker (core.train.ddp)
    import sys

    from core.train import ddp

    sys.exit(ddp.worker(fit, "finetune"))
