"""The pretraining stage: tokenizer -> token shards -> model -> the shared loop -> report.

`run(preset, run_dir, log, stop)` is what `llmlab pretrain PRESET` executes in its run folder.
Setup reuses the cached tokenizer and shards of an unchanged preset; the model is built from
preset.model with the tokenizer's vocabulary, or starts from `model.init_from` (a checkpoint, a
run, or GPT-2 weights). A run folder that already holds committed checkpoints resumes from the
newest one. With `train.nproc > 1` the stage hands `fit` to torchrun workers (core.train.ddp).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from core.config import Preset
from core.errors import Stopped, UserError
from core.runs import Logger, write_report
from core.data.stream import ShardStream, StreamTokenLoader
from core.train.device import Dist, seed_everything
from core.train.loop import LoopResult, lm_objective, train
from core.train.optim import plan_steps

if TYPE_CHECKING:
    from core.tokenizer.protocol import TextTokenizer
    from core.model.gpt import GPT

SAMPLE_SEED = 1234  # samples use their own generator: the training RNG stream stays untouched


def prepare(preset: Preset, log: Logger, stop: threading.Event) -> tuple[Any, Path | ShardStream] | None:
    """The tokenizer and the token-shard folder (both cached), or with data.prepare = "stream" the
    shards as they are committed (prepared beside the run while not complete, and read in order
    even once they are, so a resumed run draws the same batches); None when stopped meanwhile."""
    from core.data import prepare_shards
    from core.tokenizer import tokenizer_for

    t0 = time.time()
    try:
        tokenizer = tokenizer_for(preset, log, stop)
        t1 = time.time()
        if preset.data.prepare == "stream":
            return tokenizer, ShardStream(preset, tokenizer, log)
        folder = prepare_shards(preset, tokenizer, log, stop)
    except Stopped:
        return None
    log.log({"kind": "log", "level": "info",
             "message": f"setup: tokenizer {t1 - t0:.1f}s, shards {time.time() - t1:.1f}s"})
    return tokenizer, folder


def build_model(preset: Preset, tokenizer: TextTokenizer, log: Logger) -> tuple[GPT, dict]:
    """A fresh GPT of the preset's shape, or one started from model.init_from; returns (model, lineage)."""
    from core.model.gpt import GPT

    spec = preset.model.init_from
    if not spec:
        cfg = dataclasses.replace(preset.model, vocab_size=preset.model.vocab_size or tokenizer.n_vocab)
        if cfg.vocab_size < tokenizer.n_vocab:
            raise UserError(f"model.vocab_size: {cfg.vocab_size} is smaller than the tokenizer's {tokenizer.n_vocab} ids")
        return GPT(cfg), {"stage": "pretrain", "preset": preset.name, "init": "random"}
    from core.checkpoint import load_model
    from core.lookup import GPT2_NAMES, resolve_checkpoint
    from core.model.importer import import_once

    path = import_once(spec, log) if spec in GPT2_NAMES else resolve_checkpoint(spec)
    model, src_tok, _meta = load_model(path)
    model.train()
    if src_tok is not None and src_tok.fingerprint != tokenizer.fingerprint:
        raise UserError(f"model.init_from: {spec} was trained with tokenizer {src_tok.name!r}, the preset gives "
                        f"{tokenizer.name!r}; set tokenizer.kind = \"tiktoken\" and tokenizer.encoding = "
                        f"\"{path / 'tokenizer'}\" to keep its tokenizer")
    spec = str(path)
    # the source's architecture wins; dropout is a training choice and follows the preset
    ignored = [f.name for f in dataclasses.fields(preset.model)
               if f.name not in ("init_from", "dropout", "vocab_size")
               and getattr(preset.model, f.name) != getattr(model.config, f.name)]
    if ignored:
        log.log({"kind": "log", "level": "warning",
                 "message": f"model.init_from: the architecture comes from {spec}; preset values of "
                            f"{', '.join('model.' + n for n in ignored)} are not used"})
    if model.config.dropout != preset.model.dropout:
        model.config = dataclasses.replace(model.config, dropout=preset.model.dropout)
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = preset.model.dropout
            if hasattr(m, "dropout") and isinstance(m.dropout, float):
                m.dropout = preset.model.dropout
    return model, {"stage": "pretrain", "preset": preset.name, "init": spec}


def make_sampler(preset: Preset, tokenizer: TextTokenizer):
    """sample(model, step) -> (prompt, text): a short continuation of train.sample_prompt."""
    from core.generate import generate_text

    prompt = preset.train.sample_prompt
    ids = tokenizer.encode(prompt) if prompt else [tokenizer.eot_id]
    g = preset.generate

    def sample(model: GPT, step: int) -> tuple[str, str]:
        ids_ = ids[-(model.config.context_length - 1):]
        text = "".join(generate_text(model, tokenizer, ids_, max_new_tokens=preset.train.sample_tokens,
                                     temperature=g.temperature, top_k=g.top_k, top_p=g.top_p,
                                     seed=SAMPLE_SEED + step))
        return prompt, text

    return sample


def fit(preset: Preset, run_dir: Path, log: Logger, stop: threading.Event, dist: Dist | None = None) -> LoopResult | None:
    """Setup and the loop, in this process (a single process, or one rank of torchrun)."""
    prepared = prepare(preset, log, stop)
    if prepared is None:
        return None
    tokenizer, shards = prepared
    try:
        return _fit(preset, run_dir, log, stop, dist, tokenizer, shards)
    except Stopped:  # while waiting for streamed shards: the last checkpoint stands
        return None
    finally:
        if isinstance(shards, ShardStream):
            shards.close()


def _loaders(shards: Path | ShardStream, T: int, t: Any, stop: threading.Event) -> tuple[Any, Any, dict]:
    """Training and validation batches and the shards' meta (empty while they are streamed)."""
    from core.data import TokenLoader, read_meta

    if isinstance(shards, ShardStream):
        return (StreamTokenLoader(shards, "train", T, t.micro_batch_size, stop),
                StreamTokenLoader(shards, "val", T, t.micro_batch_size, stop), {})
    # every rank draws the same global sequence of micro-batches and keeps its share (see loop.train),
    # so all ranks build the same loader and a checkpoint resumes at any world size
    return (TokenLoader(shards / "train.bin", T, t.micro_batch_size, seed=t.seed),
            TokenLoader(shards / "val.bin", T, t.micro_batch_size, seed=t.seed), read_meta(shards))


def _fit(preset: Preset, run_dir: Path, log: Logger, stop: threading.Event, dist: Dist | None, tokenizer: Any,
         shards: Path | ShardStream) -> LoopResult | None:
    from core.fork import lineage_of

    t = preset.train
    seed_everything(t.seed)
    model, lineage = build_model(preset, tokenizer, log)
    lineage.update(lineage_of(run_dir))
    T = model.config.context_length
    world = dist.world_size if dist else 1
    micro_tokens = t.micro_batch_size * T * world
    if world > 1 and t.batch_tokens and t.batch_tokens % micro_tokens:
        raise UserError(f"train.batch_tokens: {t.batch_tokens:,} is not a whole number of micro-batches over "
                        f"{world} processes ({t.micro_batch_size} x {T} tokens x {world} = {micro_tokens:,}); "
                        f"use a multiple of {micro_tokens:,} or another train.nproc")
    accum = preset.grad_accum_steps(world, T)
    tokens_per_step = preset.tokens_per_step(world, T)
    train_loader, val_loader, meta = _loaders(shards, T, t, stop)
    total = plan_steps(t, tokens_per_step, meta.get("train_tokens"))
    n_params = sum(p.numel() for p in model.parameters())
    if dist is None or dist.is_main:
        log.log({"kind": "log", "level": "info",
                 "message": f"model {n_params / 1e6:.2f}M parameters, vocab {model.config.vocab_size}, context {T}; "
                            + (f"{meta['train_tokens']:,} training tokens" if meta else "training tokens as they are prepared")
                            + f", {tokens_per_step:,} tokens per step"})
    from core.stages.eval import live_eval_for
    from core.train.device import pick_device

    live = live_eval_for(preset, tokenizer, "lm", pick_device(t.device, dist))
    result = train(model, lm_objective, train_loader, lambda: val_loader.eval_batches(t.eval_batches), t, log, stop,
                   run_dir, total_steps=total, grad_accum=accum, tokenizer=tokenizer,
                   sample=make_sampler(preset, tokenizer) if t.sample_every else None,
                   checkpoint_kwargs={"lineage": lineage}, dist=dist, live=live)
    if dist is None or dist.is_main:
        write_report(run_dir, pretrain_report(preset, result, n_params, tokens_per_step, total))
    return result


def pretrain_report(preset: Preset, result: LoopResult, n_params: int, tokens_per_step: int,
                    total_steps: int) -> dict:
    """report.json of a pretraining run."""
    return {
        "stage": "pretrain",
        "preset": preset.name,
        "params": n_params,
        "steps": result.step,
        "planned_steps": total_steps,
        "tokens": result.tokens,
        "tokens_per_step": tokens_per_step,
        "val_loss": result.val_loss,
        "best_val_loss": result.best_val_loss,
        "train_s": round(result.train_s, 2),
        "cpu_s": round(time.process_time(), 1),  # this process's CPU time, setup included
        "tokens_per_s": round(result.tokens_per_s, 1),
        "stopped": result.stopped,
        **live_report(result),
        "resumed_from": result.resumed_from,
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
    }


def live_report(result: LoopResult) -> dict:
    """The report.json fields of live evaluations and early stopping (shared with finetuning)."""
    return {"loop_s": round(result.wall_s, 2), "eval_s": round(result.eval_s, 2),
            "eval_share": round(result.eval_s / result.wall_s, 4) if result.wall_s > 0 else None,
            "early_stopped_at": result.early_stopped_at, "best_step": result.best_step}


def run(preset: Preset, run_dir: Path, log: Logger, stop: threading.Event) -> None:
    """The pretrain stage (see the module docstring)."""
    from core.fork import seed_fork

    run_dir = Path(run_dir)
    seed_fork(preset, "pretrain", run_dir, log)
    if preset.train.nproc > 1:
        from core.train import ddp

        # tokenizer and shards once, here: the workers find them in the caches instead of racing to build them
        if prepare(preset, log, stop) is None or stop.is_set():
            return
        ddp.launch(preset, run_dir, log, stop, worker_module="core.stages.pretrain")
        return
    fit(preset, run_dir, log, stop)


if __name__ == "__main__":  # one torchrun worker (core.train.ddp)
    import sys

    from core.train import ddp

    sys.exit(ddp.worker(fit, "pretrain"))
