"""Rules of thumb: the field's practical guidelines, checked against a preset, returned as data.

Each rule looks at a preset (and, where known, facts about its corpus and finetuning set) and
returns a `Finding`: a level (ok, warn, bad), a title, a one-line reason and the numbers behind
it, plus what to change (`fix`) and whether it matters for this preset: a rule of a stage the
preset does not run does not apply, and a preset may accept a rule with a one-line reason
(`accepted = ["train.lr: ..."]`), shown instead of the warning. `llmlab presets check` prints them; every TUI stage screen shows the findings of its stage.
Nothing here reads data or builds a model: the caller passes what it knows in `Facts`, and the
rest is estimated from the preset and labelled as an estimate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from core.config import Preset
from core.model import stats as model_stats
from core.tokenizer.encodings import TIKTOKEN_VOCAB

LEVELS = ("ok", "warn", "bad")
STAGES = ("data", "tokenizer", "model", "pretrain", "finetune", "eval", "chat")

# Chinchilla (Hoffmann et al. 2022): compute-optimal training uses about 20 tokens per parameter.
CHINCHILLA_TOKENS_PER_PARAM = 20.0
# English text through a GPT-2-like BPE: about 4 bytes per token; a small BPE gives fewer.
BYTES_PER_TOKEN = 4.0
SMALL_BPE_BYTES_PER_TOKEN = 3.0


@dataclass(frozen=True)
class Finding:
    """One checked rule of thumb: `reason` is one line; `numbers` are the values it rests on."""

    level: str  # ok | warn | bad
    title: str
    reason: str
    stage: str = ""
    key: str = ""  # the preset field this is about (dotted), for showing it beside the field
    numbers: dict = field(default_factory=dict)
    fix: str = ""  # what to change, with the number, when the level is warn or bad
    accepted: str = ""  # the preset's reason for breaking this rule on purpose
    not_applicable: str = ""  # why the rule does not matter for this preset (e.g. it does not pretrain)

    @property
    def matters(self) -> bool:
        """A warning to act on: not accepted by the preset, and about a stage the preset runs."""
        return self.level != "ok" and not self.accepted and not self.not_applicable


@dataclass
class Facts:
    """What is known about the data, beyond the preset (from the data stage's statistics)."""

    corpus_bytes: int | None = None
    corpus_tokens: int | None = None  # training tokens in the shards (one epoch)
    val_tokens: int | None = None
    doc_tokens: Sequence[int] | None = None  # token length of (a sample of) documents
    finetune_examples: int | None = None
    class_counts: dict[str, int] | None = None
    origin: str = ""  # where the corpus facts come from (prepared shards, a scan), for display


# ----------------------------------------------------------------------------------- helpers

def vocab_size(p: Preset) -> int:
    """The vocabulary the model will have: model.vocab_size, else the tokenizer's."""
    if p.model.vocab_size:
        return p.model.vocab_size
    if p.tokenizer.kind == "bpe":
        return p.tokenizer.vocab_size
    return TIKTOKEN_VOCAB.get(p.tokenizer.encoding, 50257)


def n_params(p: Preset) -> int:
    import dataclasses

    cfg = dataclasses.replace(p.model, vocab_size=vocab_size(p))
    return model_stats.param_counts(cfg).total


def corpus_bytes(p: Preset, facts: Facts) -> int | None:
    if facts.corpus_bytes is not None:
        return facts.corpus_bytes
    d = p.data
    if d.source.startswith("embedded:") and not d.mixture:
        size = int(d.synthetic_mb * 1_000_000)
        return min(size, d.max_bytes) if d.max_bytes else size
    return d.max_bytes or None


def corpus_tokens(p: Preset, facts: Facts) -> tuple[int | None, bool]:
    """Training tokens in one epoch, and whether that is an estimate (from bytes)."""
    if facts.corpus_tokens is not None:
        return facts.corpus_tokens, False
    b = corpus_bytes(p, facts)
    if b is None:
        return None, True
    small_bpe = p.tokenizer.kind == "bpe" and p.tokenizer.vocab_size <= 8192
    per = SMALL_BPE_BYTES_PER_TOKEN if small_bpe else BYTES_PER_TOKEN
    return int(b * (1 - p.data.val_fraction) / per), True


def training_tokens(p: Preset, facts: Facts) -> int | None:
    """Tokens the pretraining run will see, from whichever stopping rule ends it first."""
    t = p.train
    per_step = p.tokens_per_step()
    limits = []
    if t.max_steps:
        limits.append(t.max_steps * per_step)
    if t.max_tokens:
        limits.append(t.max_tokens)
    if t.epochs:
        ct, _ = corpus_tokens(p, facts)
        if ct is not None:
            limits.append(int(t.epochs * ct))
    return min(limits) if limits else None


def _fmt(n: float) -> str:
    for unit, k in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= k:
            return f"{n / k:.3g}{unit}"
    return f"{n:.3g}"


# ------------------------------------------------------------------------------------- rules

Rule = Callable[[Preset, Facts], "Finding | None"]
RULES: list[tuple[str, Rule]] = []


def rule(stage: str) -> Callable[[Rule], Rule]:
    def deco(fn: Rule) -> Rule:
        RULES.append((stage, fn))
        return fn
    return deco


@rule("pretrain")
def tokens_per_parameter(p: Preset, facts: Facts) -> Finding | None:
    n = n_params(p)
    tokens = training_tokens(p, facts)
    if tokens is None:
        return Finding("warn", "Tokens per parameter", "no token budget known: set train.max_steps or max_tokens",
                       key="train.max_steps", numbers={"params": n})
    ratio = tokens / n
    nums = {"params": n, "training_tokens": tokens, "tokens_per_param": round(ratio, 2),
            "compute_optimal": CHINCHILLA_TOKENS_PER_PARAM}
    base = f"{_fmt(tokens)} tokens for {_fmt(n)} parameters = {ratio:.3g} per parameter (compute-optimal ~20)"
    steps = math.ceil(CHINCHILLA_TOKENS_PER_PARAM * n / max(1, p.tokens_per_step()))
    fix = f"train.max_steps = {steps:,} (20 tokens per parameter), or fewer model.n_layer / n_embd"
    if ratio < 2:
        return Finding("bad", "Tokens per parameter", base + ": far too few, the model stays undertrained",
                       key="train.max_steps", numbers=nums, fix=fix)
    if ratio < 10:
        return Finding("warn", "Tokens per parameter", base + ": train longer or use a smaller model",
                       key="train.max_steps", numbers=nums, fix=fix)
    extra = "" if ratio <= 100 else "; past compute-optimal, fine for a model meant to be cheap to run"
    return Finding("ok", "Tokens per parameter", base + extra, key="train.max_steps", numbers=nums)


@rule("pretrain")
def epochs_over_corpus(p: Preset, facts: Facts) -> Finding | None:
    tokens = training_tokens(p, facts)
    ct, est = corpus_tokens(p, facts)
    if tokens is None or not ct:
        return None
    ep = tokens / ct
    nums = {"training_tokens": tokens, "corpus_tokens": ct, "epochs": round(ep, 2), "estimated": est}
    base = f"{ep:.2g} passes over {'~' if est else ''}{_fmt(ct)} corpus tokens"
    fix = f"a corpus about {ep / 4:.2g}x larger (data.synthetic_mb or more sources), or fewer train.max_steps"
    if ep > 16:
        return Finding("bad", "Repeated data", base + ": beyond ~16 epochs more repeats add almost nothing",
                       key="data.synthetic_mb", numbers=nums, fix=fix)
    if ep > 4:
        return Finding("warn", "Repeated data", base + ": up to ~4 epochs are nearly as good as fresh data",
                       key="data.synthetic_mb", numbers=nums, fix=fix)
    return Finding("ok", "Repeated data", base, key="data.synthetic_mb", numbers=nums)


def _lr_range(n: int) -> tuple[float, float]:
    """Usual AdamW peak learning rates for pretraining at this size (GPT-3 table, nanoGPT, Pythia)."""
    if n < 50e6:
        return 3e-4, 6e-3
    if n < 500e6:
        return 1e-4, 1e-3
    return 3e-5, 4e-4


@rule("pretrain")
def pretrain_learning_rate(p: Preset, facts: Facts) -> Finding | None:
    n, lr = n_params(p), p.train.lr
    lo, hi = _lr_range(n)
    nums = {"lr": lr, "usual_min": lo, "usual_max": hi, "params": n}
    base = f"lr {lr:g}; pretraining at {_fmt(n)} parameters usually uses {lo:g} to {hi:g}"
    fix = f"train.lr between {lo:g} and {hi:g} (train.min_lr about a tenth of it)"
    if lr > 5 * hi:
        return Finding("bad", "Pretraining learning rate", base + ": expect divergence", key="train.lr", numbers=nums, fix=fix)
    if lr > hi:
        return Finding("warn", "Pretraining learning rate", base + ": risk of loss spikes", key="train.lr", numbers=nums, fix=fix)
    if lr < lo / 10:
        return Finding("warn", "Pretraining learning rate", base + ": that is a finetuning rate, training will crawl",
                       key="train.lr", numbers=nums, fix=fix)
    if lr < lo:
        return Finding("warn", "Pretraining learning rate", base + ": on the low side", key="train.lr", numbers=nums, fix=fix)
    return Finding("ok", "Pretraining learning rate", base, key="train.lr", numbers=nums)


@rule("pretrain")
def warmup(p: Preset, facts: Facts) -> Finding | None:
    t = p.train
    if not t.max_steps:
        return None
    share = t.warmup_steps / t.max_steps
    nums = {"warmup_steps": t.warmup_steps, "max_steps": t.max_steps, "share": round(share, 4)}
    base = f"{t.warmup_steps} warmup steps = {share:.1%} of {t.max_steps}"
    fix = f"train.warmup_steps = {max(1, t.max_steps // 50):,} (2% of the steps)"
    if t.warmup_steps == 0:
        return Finding("warn", "Warmup", "no warmup: Adam's early updates are large; use ~1-5% of the steps",
                       key="train.warmup_steps", numbers=nums, fix=fix)
    if share > 0.3:
        return Finding("warn", "Warmup", base + ": most of the run at a reduced rate; ~1-10% is usual",
                       key="train.warmup_steps", numbers=nums, fix=fix)
    return Finding("ok", "Warmup", base, key="train.warmup_steps", numbers=nums)


@rule("pretrain")
def min_learning_rate(p: Preset, facts: Facts) -> Finding | None:
    t = p.train
    share = t.min_lr / t.lr
    nums = {"lr": t.lr, "min_lr": t.min_lr, "ratio": round(share, 4)}
    if share > 0.5:
        return Finding("warn", "Cosine floor", f"min_lr is {share:.0%} of lr: the decay barely anneals; ~10% is usual",
                       key="train.min_lr", numbers=nums, fix=f"train.min_lr = {t.lr / 10:g}")
    return Finding("ok", "Cosine floor", f"min_lr is {share:.0%} of lr (about 10% is usual)", key="train.min_lr",
                   numbers=nums)


@rule("pretrain")
def batch_tokens(p: Preset, facts: Facts) -> Finding | None:
    b = p.tokens_per_step()
    nums = {"tokens_per_step": b, "micro_batch_size": p.train.micro_batch_size,
            "context_length": p.model.context_length, "grad_accum_steps": p.grad_accum_steps()}
    procs = f" x {p.train.nproc} processes" if p.train.nproc > 1 else ""
    base = f"{_fmt(b)} tokens per step ({p.train.micro_batch_size} x {p.model.context_length} x {p.grad_accum_steps()} accum{procs})"
    if b < 1024:
        return Finding("warn", "Batch size in tokens", base + ": very noisy gradients; aim for 4k+ on a small model",
                       key="train.batch_tokens", numbers=nums, fix="train.batch_tokens = 4096 (accumulates micro-batches)")
    if b > 4_000_000:
        return Finding("warn", "Batch size in tokens", base + ": beyond the critical batch of small models (0.5-4M)",
                       key="train.batch_tokens", numbers=nums, fix="train.batch_tokens = 1048576")
    return Finding("ok", "Batch size in tokens", base, key="train.batch_tokens", numbers=nums)


@rule("pretrain")
def evaluation_cadence(p: Preset, facts: Facts) -> Finding | None:
    t = p.train
    if not t.max_steps:
        return None
    n = t.max_steps // t.eval_every
    nums = {"eval_every": t.eval_every, "max_steps": t.max_steps, "validations": n}
    if n < 3:
        return Finding("warn", "Validation cadence", f"only {n} validations in {t.max_steps} steps: set eval_every "
                       f"to ~{max(1, t.max_steps // 10)} to see the curve", key="train.eval_every", numbers=nums,
                       fix=f"train.eval_every = {max(1, t.max_steps // 10):,}")
    return Finding("ok", "Validation cadence", f"{n} validations in {t.max_steps} steps", key="train.eval_every",
                   numbers=nums)


@rule("data")
def context_vs_documents(p: Preset, facts: Facts) -> Finding | None:
    ctx = p.model.context_length
    if not facts.doc_tokens:
        return None
    lengths = sorted(facts.doc_tokens)
    median = lengths[len(lengths) // 2]
    p95 = lengths[min(len(lengths) - 1, int(0.95 * len(lengths)))]
    longer = sum(1 for x in lengths if x > ctx) / len(lengths)
    nums = {"context_length": ctx, "median_doc_tokens": median, "p95_doc_tokens": p95, "share_longer": round(longer, 4)}
    base = f"context {ctx}; documents: median {median}, 95th percentile {p95} tokens, {longer:.0%} longer"
    if longer > 0.5:
        return Finding("warn", "Context length", base + ": most documents are cut across windows",
                       key="model.context_length", numbers=nums)
    if ctx > 8 * p95:
        return Finding("warn", "Context length", base + ": windows mostly span unrelated documents; a shorter "
                       "context trains faster", key="model.context_length", numbers=nums)
    return Finding("ok", "Context length", base, key="model.context_length", numbers=nums)


@rule("data")
def validation_split(p: Preset, facts: Facts) -> Finding | None:
    ct, est = corpus_tokens(p, facts)
    if ct is None:
        return None
    vf = p.data.val_fraction
    val = facts.val_tokens if facts.val_tokens is not None else int(ct * vf / (1 - vf))
    need = p.train.eval_batches * p.train.micro_batch_size * p.model.context_length
    nums = {"val_tokens": val, "val_fraction": vf, "tokens_per_validation": need, "estimated": facts.val_tokens is None}
    base = f"{'~' if facts.val_tokens is None else ''}{_fmt(val)} validation tokens ({vf:.1%}); one validation reads {_fmt(need)} of them"
    if val < need:
        per_batch = p.train.micro_batch_size * p.model.context_length
        fix = (f"train.eval_batches = {max(1, val // per_batch)} (or data.val_fraction = "
               f"{min(0.2, vf * need / max(val, 1)):.2g}); repeated windows only make the val loss less precise")
        return Finding("warn", "Validation split", base + ": windows repeat, raise data.val_fraction or lower "
                       "train.eval_batches", key="data.val_fraction", numbers=nums, fix=fix)
    if vf > 0.2:
        return Finding("warn", "Validation split", base + ": more than 20% held out wastes training data",
                       key="data.val_fraction", numbers=nums, fix="data.val_fraction = 0.05")
    return Finding("ok", "Validation split", base, key="data.val_fraction", numbers=nums)


@rule("tokenizer")
def vocab_vs_corpus(p: Preset, facts: Facts) -> Finding | None:
    if p.tokenizer.kind != "bpe":
        return None
    b = corpus_bytes(p, facts)
    if b is None:
        return None
    train_b = min(b, p.tokenizer.train_max_bytes)
    per = train_b / p.tokenizer.vocab_size
    nums = {"vocab_size": p.tokenizer.vocab_size, "training_bytes": train_b, "bytes_per_vocab_entry": round(per)}
    base = f"{p.tokenizer.vocab_size} tokens learned from {_fmt(train_b)} bytes = {per:,.0f} bytes per token"
    if per < 200:
        return Finding("bad", "Vocabulary size", base + ": most merges will be seen a handful of times",
                       key="tokenizer.vocab_size", numbers=nums)
    if per < 1000:
        return Finding("warn", "Vocabulary size", base + ": a smaller vocabulary fits this corpus better",
                       key="tokenizer.vocab_size", numbers=nums)
    return Finding("ok", "Vocabulary size", base, key="tokenizer.vocab_size", numbers=nums)


@rule("model")
def embedding_share(p: Preset, facts: Facts) -> Finding | None:
    import dataclasses

    cfg = dataclasses.replace(p.model, vocab_size=vocab_size(p))
    pc = model_stats.param_counts(cfg)
    share = (pc.embeddings + pc.head) / pc.total
    nums = {"vocab_size": cfg.vocab_size, "embedding_params": pc.embeddings + pc.head, "total_params": pc.total,
            "share": round(share, 4)}
    base = f"embeddings hold {share:.0%} of {_fmt(pc.total)} parameters (vocabulary {cfg.vocab_size})"
    if share > 0.6:
        return Finding("warn", "Embedding share", base + ": a smaller vocabulary leaves more for the blocks",
                       key="tokenizer.vocab_size", numbers=nums)
    return Finding("ok", "Embedding share", base, key="tokenizer.vocab_size", numbers=nums)


@rule("model")
def head_size(p: Preset, facts: Facts) -> Finding | None:
    hd = p.model.n_embd // p.model.n_head
    nums = {"head_dim": hd, "n_embd": p.model.n_embd, "n_head": p.model.n_head}
    if hd < 16:
        return Finding("warn", "Head size", f"{hd} dimensions per head: below ~32 attention heads lose capacity; "
                       "use fewer heads", key="model.n_head", numbers=nums)
    return Finding("ok", "Head size", f"{hd} dimensions per head (16-128 is usual; 64-128 in large models)", key="model.n_head", numbers=nums)


@rule("model")
def padded_vocab(p: Preset, facts: Facts) -> Finding | None:
    v = vocab_size(p)
    nums = {"vocab_size": v, "multiple_of_64": v % 64 == 0}
    if v % 64:
        padded = 64 * math.ceil(v / 64)
        return Finding("warn", "Vocabulary padding", f"vocabulary {v} is not a multiple of 64: on a GPU, "
                       f"model.vocab_size = {padded} makes the head matmul faster", key="model.vocab_size", numbers=nums)
    return Finding("ok", "Vocabulary padding", f"vocabulary {v} is a multiple of 64", key="model.vocab_size",
                   numbers=nums)


@rule("finetune")
def finetune_learning_rate(p: Preset, facts: Facts) -> Finding | None:
    lr, lora = p.train.lr, p.finetune.trainable == "lora"
    lo, hi = (1e-4, 1e-3) if lora else (1e-6, 1e-4)
    what = "LoRA finetuning" if lora else "full finetuning"
    nums = {"lr": lr, "usual_min": lo, "usual_max": hi, "trainable": p.finetune.trainable}
    base = f"lr {lr:g}; {what} usually uses {lo:g} to {hi:g}"
    if p.finetune.trainable == "head":
        return Finding("ok", "Finetuning learning rate", f"lr {lr:g}; training only the head tolerates high rates",
                       key="train.lr", numbers=nums)
    fix = f"train.lr between {lo:g} and {hi:g}"
    if lr > 10 * hi:
        return Finding("bad", "Finetuning learning rate", base + ": a pretraining rate, it erases what the model knows",
                       key="train.lr", numbers=nums, fix=fix)
    if lr > hi or lr < lo:
        return Finding("warn", "Finetuning learning rate", base, key="train.lr", numbers=nums, fix=fix)
    return Finding("ok", "Finetuning learning rate", base, key="train.lr", numbers=nums)


@rule("finetune")
def lora_rank_alpha(p: Preset, facts: Facts) -> Finding | None:
    if p.finetune.trainable != "lora":
        return None
    r, a = p.finetune.lora.rank, p.finetune.lora.alpha
    scale = a / r
    nums = {"rank": r, "alpha": a, "scale": round(scale, 3)}
    base = f"rank {r}, alpha {a:g}: scale alpha/rank = {scale:.2g}"
    if r > p.model.n_embd // 2:
        return Finding("warn", "LoRA rank and alpha", base + f": rank near the width {p.model.n_embd} saves little "
                       "over full finetuning", key="finetune.lora.rank", numbers=nums)
    if not 0.5 <= scale <= 4:
        return Finding("warn", "LoRA rank and alpha", base + ": alpha = 1-2 x rank is usual", key="finetune.lora.alpha",
                       numbers=nums)
    if r < 4 or r > 64:
        return Finding("warn", "LoRA rank and alpha", base + ": ranks 4-64 are usual", key="finetune.lora.rank",
                       numbers=nums)
    return Finding("ok", "LoRA rank and alpha", base, key="finetune.lora.rank", numbers=nums)


@rule("finetune")
def finetune_epochs(p: Preset, facts: Facts) -> Finding | None:
    n = facts.finetune_examples
    t = p.train
    if not n or not (t.max_steps or t.epochs):
        return None
    per_step = t.micro_batch_size * p.grad_accum_steps() * t.nproc
    ep = t.epochs if t.epochs and (not t.max_steps or t.epochs * n / per_step < t.max_steps) else t.max_steps * per_step / n
    nums = {"examples": n, "examples_per_step": per_step, "epochs": round(ep, 2)}
    base = f"{ep:.2g} epochs over {n:,} examples"
    if ep > 10:
        return Finding("bad", "Finetuning epochs", base + ": a small set seen this often is memorised", key="train.max_steps",
                       numbers=nums)
    if ep > 3:
        return Finding("warn", "Finetuning epochs", base + ": 1-3 epochs are usual; watch validation loss for "
                       "overfitting", key="train.max_steps", numbers=nums)
    return Finding("ok", "Finetuning epochs", base, key="train.max_steps", numbers=nums)


@rule("finetune")
def class_balance(p: Preset, facts: Facts) -> Finding | None:
    if p.finetune.method != "classify" or not facts.class_counts:
        return None
    counts = facts.class_counts
    lo, hi = min(counts.values()), max(counts.values())
    ratio = hi / max(lo, 1)
    nums = {"class_counts": dict(counts), "imbalance": round(ratio, 2)}
    base = f"largest class {ratio:.2g}x the smallest"
    if ratio > 3 and not p.finetune.balance_classes:
        return Finding("warn", "Class balance", base + ": set finetune.balance_classes or report balanced accuracy",
                       key="finetune.balance_classes", numbers=nums)
    return Finding("ok", "Class balance", base, key="finetune.balance_classes", numbers=nums)


@rule("finetune")
def dpo_beta(p: Preset, facts: Facts) -> Finding | None:
    if p.finetune.method != "preference":
        return None
    b = p.finetune.beta
    nums = {"beta": b}
    if not 0.01 <= b <= 0.5:
        return Finding("warn", "DPO beta", f"beta {b:g}: 0.1-0.5 is usual (lower drifts further from the base model)",
                       key="finetune.beta", numbers=nums)
    return Finding("ok", "DPO beta", f"beta {b:g} (0.1-0.5 is usual)", key="finetune.beta", numbers=nums)


@rule("eval")
def eval_sample_size(p: Preset, facts: Facts) -> Finding | None:
    n = p.eval.limit
    if not n:
        return Finding("ok", "Evaluation size", "every example is evaluated", key="eval.limit", numbers={"limit": 0})
    half_width = 1.96 * math.sqrt(0.25 / n)
    nums = {"limit": n, "ci95_half_width_at_50pct": round(half_width, 4)}
    base = f"{n} examples per task: accuracy near 50% is known to +/-{half_width:.0%} (95%)"
    if n < 100:
        return Finding("warn", "Evaluation size", base + ": too few to tell models apart", key="eval.limit", numbers=nums)
    return Finding("ok", "Evaluation size", base, key="eval.limit", numbers=nums)


@rule("chat")
def sampling_temperature(p: Preset, facts: Facts) -> Finding | None:
    g = p.generate
    nums = {"temperature": g.temperature, "top_k": g.top_k, "top_p": g.top_p}
    if g.temperature > 1.5:
        return Finding("warn", "Sampling temperature", f"temperature {g.temperature:g}: above ~1.2 text turns random",
                       key="generate.temperature", numbers=nums)
    return Finding("ok", "Sampling temperature", f"temperature {g.temperature:g}, top-k {g.top_k}, top-p {g.top_p:g}",
                   key="generate.temperature", numbers=nums)


# ---------------------------------------------------------------------------------------- API

def advise(preset: Preset, facts: Facts | None = None, stage: str | None = None) -> list[Finding]:
    """Every rule of thumb (or those of one stage) checked against `preset`; worst first is up to
    the caller, the order here is the lifecycle order of the rules."""
    facts = facts or Facts()
    stages = [stage] if stage is not None else relevant_stages(preset)
    accepted = accepted_reasons(preset)
    out = []
    for st, fn in RULES:
        if st not in stages:
            continue
        f = fn(preset, facts)
        if f is not None:
            out.append(_judged(f if f.stage else _with_stage(f, st), preset, accepted))
    return out


def accepted_reasons(preset: Preset) -> dict[str, str]:
    """The preset's `accepted` entries ("KEY: reason") as key -> reason."""
    out = {}
    for entry in getattr(preset, "accepted", []) or []:
        key, _, reason = entry.partition(":")
        out[key.strip()] = reason.strip()
    return out


def _judged(f: Finding, preset: Preset, accepted: dict[str, str]) -> Finding:
    """Whether `f` matters for this preset: accepted by it, or about a stage it does not run."""
    import dataclasses

    if f.level == "ok":
        return f
    if f.key in accepted:
        return dataclasses.replace(f, accepted=accepted[f.key])
    if f.stage in ("pretrain", "data", "tokenizer", "model") and finetunes(preset):
        # the architecture and (by default) the tokenizer are the base model's, chosen when it was pretrained
        why = (f"this preset finetunes {preset.finetune.base or 'a model'}; it matters for the run that "
               "pretrained the base")
        return dataclasses.replace(f, not_applicable=why)
    return f


def relevant_stages(preset: Preset) -> list[str]:
    """The stages a preset is for: finetuning only when its [finetune] section says more than the
    base model a later finetune would start from (the train section is shared, so a pretraining
    preset would otherwise be judged by finetuning rates)."""
    out = [s for s in STAGES if s != "finetune"]
    if finetunes(preset):
        out.insert(STAGES.index("finetune"), "finetune")
    return out


def finetunes(preset: Preset) -> bool:
    """Whether the preset is a finetuning preset (a method, set or schedule of its own)."""
    import dataclasses

    from core.config import FinetuneConfig

    return dataclasses.replace(preset.finetune, base=FinetuneConfig().base) != FinetuneConfig()


def _with_stage(f: Finding, stage: str) -> Finding:
    import dataclasses

    return dataclasses.replace(f, stage=stage)


def worst(findings: Sequence[Finding]) -> str:
    """The worst level among the findings that matter ("ok" when none does)."""
    return max((f.level for f in findings if f.level == "ok" or f.matters), key=LEVELS.index, default="ok")
