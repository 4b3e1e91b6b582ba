"""Presets: the one declaration of what a preset may say.

A preset is a TOML file with optional sections (data, tokenizer, model, train, finetune, eval,
generate, chat). `load()` parses it with tomllib, follows `extends`, applies `--set` overrides,
and validates everything at once; every problem is reported as `file: dotted.key: message`.
`dump()` writes the resolved preset back with tomli-w, and `load(dump(p)) == p`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from core.errors import UserError

GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)


def opt(default: Any, doc: str, *, lo: float | None = None, hi: float | None = None,
        lo_open: bool = False, hi_open: bool = False, choices: tuple | None = None) -> Any:
    """A preset field: default, one-line doc and declarative bounds/choices."""
    meta = {"doc": doc, "lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open, "choices": choices}
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        factory = (lambda d=default: type(d)(d)) if isinstance(default, (list, dict)) else type(default)
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


# ----------------------------------------------------------------------------------------- data

@dataclass
class FilterConfig:
    min_chars: int = opt(0, "drop documents shorter than this many characters", lo=0)
    max_chars: int = opt(0, "drop documents longer than this many characters (0 = no limit)", lo=0)
    max_non_letter_frac: float = opt(1.0, "drop documents whose share of non-letter, non-space characters exceeds this", lo=0, hi=1)
    max_repeated_line_frac: float = opt(1.0, "drop documents whose share of duplicated lines exceeds this", lo=0, hi=1)
    min_words: int = opt(0, "drop documents with fewer words than this", lo=0)
    dedup_exact: bool = opt(True, "remove exact duplicates (hash of the normalised text)")
    dedup_near: bool = opt(False, "remove near duplicates with MinHash LSH")
    near_threshold: float = opt(0.55, "estimated Jaccard similarity (of the shingle sets) above which two documents are near duplicates", lo=0, hi=1, lo_open=True)
    minhash_perm: int = opt(128, "MinHash permutations (more: slower, more precise)", lo=16, hi=1024)
    shingle: str = opt("word", "near dedup compares sets of word n-grams or character n-grams", choices=("word", "char"))
    shingle_size: int = opt(2, "n of the n-gram shingles of near dedup (words or characters)", lo=1, hi=64)
    markup_aware: bool = opt(True, "non-letter share and repeated lines leave out code blocks and markup (reStructuredText, Markdown)")
    repeated_line_min_chars: int = opt(20, "lines shorter than this (refrains, braces) never count as repeated", lo=0)


@dataclass
class SourceFilters:
    """Thresholds of one mixture source; -1 keeps data.filters' value (dedup is always corpus-wide)."""
    min_chars: int = opt(-1, "as data.filters.min_chars, for this source (-1 = data.filters' value)", lo=-1)
    max_chars: int = opt(-1, "as data.filters.max_chars, for this source (-1 = data.filters' value)", lo=-1)
    min_words: int = opt(-1, "as data.filters.min_words, for this source (-1 = data.filters' value)", lo=-1)
    max_non_letter_frac: float = opt(-1.0, "as data.filters.max_non_letter_frac, for this source (-1 = data.filters' value)", lo=-1, hi=1)
    max_repeated_line_frac: float = opt(-1.0, "as data.filters.max_repeated_line_frac, for this source (-1 = data.filters' value)", lo=-1, hi=1)


@dataclass
class SourceConfig:
    source: str = opt("", "where the text comes from: embedded:NAME, hf:NAME, or a local file/glob")
    weight: float = opt(1.0, "share of this source in the mixture (normalised over all sources)", lo=1e-9, hi=1e9)
    hf_config: str = opt("", "hub dataset configuration name")
    split: str = opt("train", "hub dataset split")
    text_field: str = opt("text", "field holding the text in JSON/CSV/parquet/hub rows")
    max_docs: int = opt(0, "read at most this many documents from this source (0 = all)", lo=0)
    txt_mode: str = opt("", "how this source's .txt files split into documents (empty = data.txt_mode)", choices=("", "file", "block", "line"))
    separator: str = opt("", "regex of a line that ends a document in .txt files, e.g. ^%$ (fortune files); overrides txt_mode")
    strip: str = opt("", "remove the header and footer of a known format from .txt files", choices=("", "gutenberg"))
    filters: SourceFilters = opt(SourceFilters(), "filter thresholds for this source")


# data fields that change how fast or when shards are written, never their content (not in any cache key)
DATA_SPEED_KEYS = ("workers", "prepare", "shard_tokens")


@dataclass
class DataConfig:
    source: str = opt("embedded:tinyworld", "corpus: embedded:tinyworld, hf:NAME (hub), or a local file or glob (.txt .jsonl .json .parquet .csv)")
    hf_config: str = opt("", "hub dataset configuration name (hf: sources)")
    split: str = opt("train", "hub dataset split (hf: sources)")
    streaming: bool = opt(False, "stream a hub dataset instead of downloading it whole")
    text_field: str = opt("text", "field holding the text in JSON/CSV/parquet/hub rows")
    label_field: str = opt("label", "field holding the class label in labelled sets")
    txt_mode: str = opt("file", "how a .txt file splits into documents", choices=("file", "block", "line"))
    separator: str = opt("", "regex of a line that ends a document in .txt files, e.g. ^%$ (fortune files); overrides txt_mode")
    strip: str = opt("", "remove the header and footer of a known format from .txt files", choices=("", "gutenberg"))
    max_docs: int = opt(0, "read at most this many documents (0 = all)", lo=0)
    max_bytes: int = opt(0, "read at most this many bytes of text (0 = all)", lo=0)
    mixture: list[SourceConfig] = opt([], "several weighted sources instead of `source` ([[data.mixture]] tables)")
    mixture_end: str = opt("smallest", "a mixture ends when its first source runs out, when its last does (smaller sources repeat), or at budget_tokens", choices=("smallest", "largest", "budget"))
    budget_tokens: int = opt(0, "tokens of a mixture with mixture_end = budget; each source gives weight x budget, repeating if short", lo=0)
    relevance_reference: str = opt("", "a text file or glob the corpus should resemble: the data report scores each source's TF-IDF similarity to it")
    synthetic_mb: float = opt(4.0, "size of the embedded synthetic corpus in MB", lo=0, lo_open=True, hi=4096)
    seed: int = opt(1337, "seed for the synthetic world, the split and shuffling")
    val_fraction: float = opt(0.05, "share of documents held out for validation", lo=0, hi=1, lo_open=True, hi_open=True)
    workers: int = opt(1, "processes that tokenize into shards (the shards are identical for any number)", lo=1, hi=256)
    prepare: str = opt("ahead", "pretraining waits for the whole shards (ahead) or starts on the shards committed so far "
                       "while preparation continues (stream)", choices=("ahead", "stream"))
    shard_tokens: int = opt(1 << 22, "tokens per committed shard: what a killed preparation redoes at most, and how "
                            "soon a streamed pretraining starts", lo=1)
    filters: FilterConfig = opt(FilterConfig(), "quality filters and deduplication")


# ------------------------------------------------------------------------------------ tokenizer

@dataclass
class TokenizerConfig:
    kind: str = opt("bpe", "train a byte-level BPE on the corpus, use an existing tiktoken encoding, or (finetune, "
                    "the default there) the base model's own", choices=("bpe", "tiktoken", "model"))
    encoding: str = opt("gpt2", "tiktoken encoding name or path to a saved tokenizer folder (kind = tiktoken)")
    vocab_size: int = opt(4096, "vocabulary size of a trained BPE, special tokens included", lo=256, hi=65536)
    pattern: str = opt(GPT4_SPLIT_PATTERN, "regex that splits text into pre-tokens before BPE")
    train_max_bytes: int = opt(50_000_000, "train the BPE on at most this many bytes of the corpus", lo=1)
    chat_template: str = opt("chatml", "chat template for instruction, preference and chat", choices=("chatml",))


# ---------------------------------------------------------------------------------------- model

@dataclass
class ModelConfig:
    n_layer: int = opt(4, "transformer blocks", lo=1, hi=512)
    n_head: int = opt(4, "attention heads", lo=1, hi=512)
    n_kv_head: int = opt(0, "key/value heads for grouped-query attention (0 = n_head)", lo=0, hi=512)
    n_embd: int = opt(128, "embedding width", lo=1, hi=65536)
    context_length: int = opt(256, "maximum sequence length in tokens", lo=1, hi=1_048_576)
    vocab_size: int = opt(0, "vocabulary size (0 = taken from the tokenizer)", lo=0, hi=1_000_000)
    norm: str = opt("layernorm", "normalisation layer", choices=("layernorm", "rmsnorm"))
    norm_eps: float = opt(1e-5, "epsilon of the normalisation layers", lo=0, lo_open=True)
    position: str = opt("learned", "position encoding", choices=("learned", "rope"))
    rope_theta: float = opt(10000.0, "RoPE base frequency", lo=0, lo_open=True)
    rope_scaling: str = opt("none", "RoPE frequency scaling (llama3: Llama 3.1/3.2's long-context rule)", choices=("none", "llama3"))
    rope_factor: float = opt(8.0, "llama3 RoPE scaling: factor by which low frequencies are divided", lo=1)
    rope_low_freq_factor: float = opt(1.0, "llama3 RoPE scaling: wavelengths above original_context / this are scaled", lo=0, lo_open=True)
    rope_high_freq_factor: float = opt(4.0, "llama3 RoPE scaling: wavelengths below original_context / this are kept", lo=0, lo_open=True)
    rope_original_context: int = opt(8192, "llama3 RoPE scaling: context length of the original pretraining", lo=1)
    nope_layers: list[int] = opt([], "blocks (0-based) that use no position encoding at all (SmolLM3's NoPE layers)")
    head_dim: int = opt(0, "width of one attention head (0 = n_embd / n_head; Qwen3 sets it explicitly)", lo=0, hi=65536)
    qk_norm: bool = opt(False, "RMSNorm over each head of the queries and keys before RoPE (Qwen3)")
    mlp: str = opt("gelu", "feed-forward block", choices=("gelu", "swiglu"))
    mlp_hidden: int = opt(0, "feed-forward hidden width (0 = 4 * n_embd for gelu, 8/3 * n_embd rounded for swiglu)", lo=0)
    bias: bool = opt(True, "biases in linear and norm layers")
    qkv_bias: bool = opt(False, "biases on the query, key and value projections only (Qwen2; implied by bias)")
    tie_embeddings: bool = opt(True, "share the token embedding and the output head")
    dropout: float = opt(0.0, "dropout probability", lo=0, hi=1, hi_open=True)
    init_from: str = opt("", "start from weights: a checkpoint folder, run:PRESET:STAGE, or a GPT-2 name (gpt2, gpt2-medium, gpt2-large, gpt2-xl)")


# ---------------------------------------------------------------------------------------- train

@dataclass
class EarlyStopConfig:
    metric: str = opt("", "stop when this stops improving: val_loss, or TASK.KEY of a train.eval_tasks task (e.g. choice.acc); empty = off")
    mode: str = opt("min", "whether lower or higher values of the metric are better", choices=("min", "max"))
    patience: int = opt(3, "evaluations without an improvement of more than min_delta before the run stops", lo=1)
    min_delta: float = opt(0.0, "the smallest change that counts as an improvement", lo=0)


@dataclass
class TrainConfig:
    device: str = opt("auto", "cpu, cuda, cuda:N, mps, or auto")
    dtype: str = opt("auto", "compute dtype (auto = bf16 autocast where the GPU supports it, else fp32)", choices=("auto", "float32", "bfloat16", "float16"))
    compile: bool = opt(False, "torch.compile the model (slow first step)")
    seed: int = opt(1337, "seed for initialisation, data order and sampling")
    lr: float = opt(1e-3, "peak learning rate", lo=0, lo_open=True, hi=100)
    min_lr: float = opt(1e-4, "learning rate at the end of the cosine decay", lo=0)
    warmup_steps: int = opt(100, "linear warmup steps", lo=0)
    optimizer: str = opt("adamw", "adamw, or muon: Muon (Newton-Schulz orthogonalised momentum) on the blocks' matrices, AdamW on embeddings, head and vectors", choices=("adamw", "muon"))
    weight_decay: float = opt(0.1, "AdamW weight decay (matrices only)", lo=0)
    beta1: float = opt(0.9, "AdamW beta1", lo=0, hi=1, hi_open=True)
    beta2: float = opt(0.95, "AdamW beta2", lo=0, hi=1, hi_open=True)
    grad_clip: float = opt(1.0, "clip the gradient norm to this (0 = off)", lo=0)
    micro_batch_size: int = opt(16, "sequences per forward pass", lo=1)
    batch_tokens: int = opt(0, "tokens per optimizer step, reached by gradient accumulation (0 = one micro-batch)", lo=0)
    max_steps: int = opt(1000, "stop after this many optimizer steps (0 = no step limit)", lo=0)
    max_tokens: int = opt(0, "stop after this many training tokens (0 = no token limit)", lo=0)
    epochs: float = opt(0.0, "stop after this many passes over the training data (0 = no epoch limit)", lo=0)
    log_every: int = opt(10, "log training metrics every N steps", lo=1)
    eval_every: int = opt(100, "validate every N steps", lo=1)
    eval_batches: int = opt(20, "micro-batches per validation", lo=1)
    sample_every: int = opt(200, "generate a text sample every N steps (0 = never)", lo=0)
    sample_prompt: str = opt("", "prompt of the training samples")
    sample_tokens: int = opt(48, "new tokens per training sample", lo=1)
    checkpoint_every: int = opt(500, "save a checkpoint every N steps (and always at the end)", lo=1)
    keep_last: int = opt(2, "keep this many recent checkpoints besides the best", lo=1)
    nproc: int = opt(1, "processes for data-parallel training (torchrun)", lo=1, hi=1024)
    eval_tasks: list[str] = opt([], "downstream tasks run on held-out sets every eval_every steps during training: choice, classify")
    eval_budget_s: float = opt(3.0, "seconds one live evaluation of a task may take (it stops at the next batch)", lo=0, lo_open=True)
    early_stop: EarlyStopConfig = opt(EarlyStopConfig(), "stop the run when a metric stops improving, and mark its best checkpoint")
    fork_from: str = opt("", "start from another run's checkpoint: RUN or RUN@STEP (`--fork`); the new run records its parent")
    activation_checkpointing: bool = opt(False, "recompute each block's activations in the backward pass: memory for one block instead of all, for about a third more compute")
    parallel: str = opt("ddp", "with several processes: ddp (a full copy per rank) or fsdp (parameters, gradients and optimizer state sharded, FSDP2)", choices=("ddp", "fsdp"))
    fsdp_offload: bool = opt(False, "fsdp: keep parameters and optimizer state in host memory (GPU memory for the largest models, at a speed cost)")


# ------------------------------------------------------------------------------------- finetune

@dataclass
class LoraConfig:
    rank: int = opt(8, "adapter rank", lo=1, hi=4096)
    alpha: float = opt(16.0, "adapter scale numerator (scale = alpha / rank)", lo=0, lo_open=True)
    dropout: float = opt(0.0, "dropout on the adapter input", lo=0, hi=1, hi_open=True)
    targets: list[str] = opt(["attn", "mlp"], "modules that get adapters: attn, mlp, head")


@dataclass
class RLConfig:
    group_size: int = opt(8, "completions sampled per prompt (G); advantages compare them, so at least 2", lo=1, hi=1024)
    prompts: int = opt(4, "prompts per rollout batch (each gives group_size completions)", lo=1, hi=4096)
    max_new_tokens: int = opt(16, "tokens per completion (sampling temperature, top_k, top_p from [generate])", lo=1)
    oversample: int = opt(1, "prompts drawn per rollout batch = prompts x this; above 1 only the first `prompts` groups whose rewards differ are trained on (the rest teach nothing)", lo=1, hi=64)
    updates: int = opt(1, "optimizer steps per rollout batch (the ratio is taken against the rollout policy)", lo=1, hi=64)
    clip: float = opt(0.2, "clip range epsilon of the policy ratio", lo=0, lo_open=True, hi=10)
    kl_beta: float = opt(0.0, "weight of the KL penalty to the frozen start (0 = none, no reference kept)", lo=0)
    scale_std: bool = opt(True, "divide advantages by the group's reward std (false: Dr. GRPO's mean-centred rewards)")
    loss_norm: str = opt("token", "average the loss over all completion tokens, or per sequence first (GRPO's original)", choices=("token", "sequence"))
    rewards: list[str] = opt(["exact", "format"], "reward components: exact, number, format, or module:function (imported only then)")
    weights: list[float] = opt([], "weight per reward component (empty = 1 each)")
    tolerance: float = opt(1e-6, "relative tolerance of the number reward", lo=0)
    answer_field: str = opt("answer", "dataset field holding the gold answer (GSM8K: answer, its text after ####)")
    eval_questions: int = opt(100, "held-out questions scored at every evaluation (0 = all)", lo=0)
    eval_samples: int = opt(4, "samples per held-out question for pass@k (k = this)", lo=1, hi=256)


@dataclass
class FinetuneConfig:
    method: str = opt("instruct", "finetuning objective", choices=("classify", "instruct", "preference", "rl"))
    base: str = opt("run:tiny:pretrain", "starting model: a checkpoint folder, run:PRESET:STAGE (latest finished run), a name under models/, a GPT-2 name, or a hub model (owner/name or hf:owner/name, imported once into models/)")
    data: str = opt("embedded:tinyworld-instruct", "finetuning set: embedded:NAME, hf:NAME or a local file")
    hf_config: str = opt("", "hub dataset configuration name")
    text_field: str = opt("text", "input text field (classification)")
    label_field: str = opt("label", "label field (classification)")
    prompt_field: str = opt("", "field holding the instruction (instruction sets) or the prompt (preference sets) when the set names it differently, e.g. question")
    num_classes: int = opt(2, "number of classes (classification)", lo=2, hi=100_000)
    balance_classes: bool = opt(False, "undersample the training split to equal class counts")
    template: str = opt("alpaca", "prompt format for instruction and preference data", choices=("alpaca", "chat"))
    packing: bool = opt(False, "pack several instruction examples into one sequence")
    truncate: str = opt("truncate", "examples longer than the context: cut and count, or refuse the run", choices=("truncate", "refuse"))
    trainable: str = opt("all", "what is trained", choices=("head", "last_blocks", "all", "lora"))
    last_blocks: int = opt(1, "blocks trained (with the final norm and head) when trainable = last_blocks", lo=1)
    lora: LoraConfig = opt(LoraConfig(), "LoRA adapter settings (trainable = lora)")
    beta: float = opt(0.1, "DPO temperature", lo=0, lo_open=True)
    test_fraction: float = opt(0.1, "share held out for the test split when the set has none", lo=0, hi=1, lo_open=True, hi_open=True)
    rl: RLConfig = opt(RLConfig(), "reinforcement learning with verifiable rewards (method = rl: GRPO)")


# ----------------------------------------------------------------------------------------- eval

@dataclass
class JudgeConfig:
    base_url: str = opt("http://localhost:11434/v1", "OpenAI-compatible endpoint of the judge (default: a local Ollama)")
    model: str = opt("llama3.1", "judge model name")
    api_key_env: str = opt("OPENAI_API_KEY", "name of the environment variable holding the API key (the key itself is never stored)")
    scale: str = opt("0-100", "rubric scale", choices=("0-100", "1-5"))
    timeout_s: float = opt(30.0, "seconds before a judge request times out", lo=0, lo_open=True)
    retries: int = opt(2, "retries per judge request", lo=0, hi=20)
    compare_with: str = opt("", "second model for pairwise win rates (checkpoint or run:PRESET:STAGE)")


@dataclass
class EvalConfig:
    model: str = opt("", "model to evaluate (checkpoint or run:PRESET:STAGE; empty = this preset's latest run)")
    tasks: list[str] = opt(["perplexity", "choice"], "tasks: perplexity, classify, choice, judge, pairwise, verify, contamination, sensitivity, compare")
    baseline: str = opt("", "model A of the compare task (B - A, B the evaluated model; empty = the model's base in its lineage)")
    choice_data: str = opt("embedded:tinyworld-choice", "multiple-choice set: embedded:NAME, hf:NAME or local JSONL")
    verify_data: str = opt("embedded:tinyworld-verify", "questions with checkable answers (field answer) for the verify task")
    pass_k: int = opt(4, "samples per question of the verify task (pass@k)", lo=1, hi=256)
    num_fewshot: int = opt(0, "examples shown before each multiple-choice question", lo=0, hi=64)
    limit: int = opt(0, "evaluate at most this many examples per task (0 = all)", lo=0)
    max_new_tokens: int = opt(64, "new tokens per generated answer (judge tasks)", lo=1)
    seed: int = opt(1234, "seed of the few-shot draw (`llmlab eval --seeds N` varies it)", lo=0)
    judge: JudgeConfig = opt(JudgeConfig(), "LLM judge settings")


# ------------------------------------------------------------------------------ generate & chat

@dataclass
class GenerateConfig:
    temperature: float = opt(0.8, "sampling temperature (0 = greedy)", lo=0)
    top_k: int = opt(50, "sample from the k most likely tokens (0 = off)", lo=0)
    top_p: float = opt(1.0, "nucleus sampling threshold (1 = off)", lo=0, hi=1, lo_open=True)
    max_new_tokens: int = opt(128, "tokens generated per reply", lo=1)
    stop: list[str] = opt([], "strings that end generation")
    seed: int = opt(0, "sampling seed (0 = random)", lo=0, hi=2**63 - 1)


@dataclass
class ChatConfig:
    model: str = opt("", "model to chat with (checkpoint or run:PRESET:STAGE; empty = latest)")
    system_prompt: str = opt("", "system message placed before the conversation")
    max_history_tokens: int = opt(0, "drop the oldest turns beyond this many tokens (0 = context length)", lo=0)


@dataclass
class ServeConfig:
    model: str = opt("", "model to serve (checkpoint, run folder or name, run:PRESET:STAGE)")
    host: str = opt("127.0.0.1", "address to listen on (0.0.0.0 exposes the server to the network)")
    port: int = opt(8000, "TCP port (0 = any free port)", lo=0, hi=65535)
    api_key_env: str = opt("", "environment variable holding the key clients must send (empty = no key)")


# --------------------------------------------------------------------------------------- preset

@dataclass
class Preset:
    name: str = opt("", "preset name (defaults to the file name)")
    description: str = opt("", "one line shown in `llmlab presets list`")
    accepted: list[str] = opt([], "rules of thumb this preset breaks on purpose, as \"KEY: one-line reason\" "
                              "(the advice panel shows the reason instead of the warning)")
    data: DataConfig = opt(DataConfig(), "corpus, filters and shards")
    tokenizer: TokenizerConfig = opt(TokenizerConfig(), "tokenizer")
    model: ModelConfig = opt(ModelConfig(), "architecture")
    train: TrainConfig = opt(TrainConfig(), "optimisation and schedule (pretraining and finetuning)")
    finetune: FinetuneConfig = opt(FinetuneConfig(), "finetuning method and data")
    eval: EvalConfig = opt(EvalConfig(), "evaluation")
    generate: GenerateConfig = opt(GenerateConfig(), "sampling")
    chat: ChatConfig = opt(ChatConfig(), "chat pane")
    serve: ServeConfig = opt(ServeConfig(), "OpenAI-compatible server (`llmlab serve`)")

    def kv_heads(self) -> int:
        return self.model.n_kv_head or self.model.n_head

    def grad_accum_steps(self, world_size: int | None = None, context_length: int | None = None) -> int:
        """Micro-batches per process and optimizer step: enough for train.batch_tokens over `world_size`
        processes (default train.nproc) at `context_length` (default model.context_length)."""
        world = world_size or self.train.nproc
        micro = self.train.micro_batch_size * (context_length or self.model.context_length) * world
        return max(1, math.ceil(self.train.batch_tokens / micro)) if self.train.batch_tokens else 1

    def tokens_per_step(self, world_size: int | None = None, context_length: int | None = None) -> int:
        """Tokens of one optimizer step as the loop trains them: micro-batch x context x accumulation x
        processes (train.batch_tokens rounded up to whole micro-batches)."""
        world = world_size or self.train.nproc
        ctx = context_length or self.model.context_length
        return self.train.micro_batch_size * ctx * self.grad_accum_steps(world, ctx) * world


# ---------------------------------------------------------------------------------------- errors

@dataclass(frozen=True)
class Problem:
    file: str
    key: str
    message: str

    def __str__(self) -> str:
        file, key, message = _one_line(self.file), _one_line(self.key), _one_line(self.message)
        return f"{file}: {key}: {message}" if key else f"{file}: {message}"


def _one_line(s: str) -> str:
    """Escape newlines and other unprintable characters (from quoted TOML keys, --set text, file
    names), so that each problem stays one `file: key: message` line."""
    return s if s.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


class PresetError(UserError):
    """Every problem of a preset at once; str() is one `file: key: message` per line."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


# --------------------------------------------------------------------------------------- loading

def presets_dir() -> Path:
    """The built-in presets: `presets/` in a source checkout, else the installed package data."""
    here = Path(__file__).resolve().parent.parent / "presets"
    if here.is_dir():
        return here
    import importlib.resources
    return Path(str(importlib.resources.files("llmlab_presets")))


def builtin_names() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.toml"))


def resolve_path(name_or_path: str | Path, relative_to: Path | None = None) -> Path:
    """A built-in name (`tiny`) or a path; relative paths are tried against `relative_to` first."""
    s = str(name_or_path)
    if "\x00" in s:  # no file name holds one; os calls raise ValueError
        raise PresetError([Problem(s, "", "not a preset name or path (it contains a NUL character)")])
    try:
        p = Path(s).expanduser()
    except RuntimeError:  # `~user/...` for a user this machine does not have
        raise PresetError([Problem(s, "", "no such user's home directory; write the full path")]) from None
    if relative_to is not None and not p.is_absolute() and (relative_to / p).exists():
        return relative_to / p
    if p.exists() or s.endswith(".toml") or "/" in s:
        return p
    builtin = presets_dir() / f"{s}.toml"
    if builtin.exists():
        return builtin
    known = builtin_names()
    hint = difflib.get_close_matches(s, known, n=1)
    extra = f" (did you mean {hint[0]!r}?)" if hint else ""
    raise PresetError([Problem(s, "", f"no preset file or built-in preset of this name{extra}; built-in: {', '.join(known)}")])


def read_toml(path: Path) -> dict:
    """Parse one TOML file; every failure is a PresetError naming the file (and line, column)."""
    f = str(path)
    if not path.exists():
        raise PresetError([Problem(f, "", "file not found")])
    if path.is_dir():
        raise PresetError([Problem(f, "", "is a directory, not a preset file")])
    if not path.is_file():  # a FIFO would block the read forever, a device never end
        raise PresetError([Problem(f, "", "not a regular file (a device, FIFO or socket)")])
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise PresetError([Problem(f, "", f"cannot read: {e.strerror}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise PresetError([Problem(f, "", f"line {line}: not UTF-8 text (byte {raw[e.start]:#04x} at offset {e.start})")]) from None
    if not text.strip():
        raise PresetError([Problem(f, "", "file is empty; a preset needs at least a name or one section")])
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        lineno = getattr(e, "lineno", None)
        if lineno is not None and "line" not in msg:
            msg = f"{msg} (at line {lineno}, column {e.colno})"
        raise PresetError([Problem(f, "", f"invalid TOML: {msg}")]) from None
    except RecursionError:  # tomllib recurses per nested array or inline table
        raise PresetError([Problem(f, "", "invalid TOML: arrays or tables nested too deeply")]) from None


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_with_extends(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    path = path.resolve() if path.exists() else path
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise PresetError([Problem(str(chain[0]), "extends", f"cycle: {cycle}")])
    doc = read_toml(path)
    parent = doc.pop("extends", None)
    if parent is None:
        return doc
    if not isinstance(parent, str) or not parent:
        raise PresetError([Problem(str(path), "extends", "must be a preset name or path (a string)")])
    try:
        parent_path = resolve_path(parent, relative_to=path.parent)
    except PresetError as e:
        raise PresetError([Problem(str(path), "extends", e.problems[0].message)]) from None
    if not parent_path.is_file():  # the mistake is this file's `extends`, not the missing file
        why = "is a directory, not a preset file" if parent_path.is_dir() else "no such preset file"
        raise PresetError([Problem(str(path), "extends", f"{parent}: {why}")])
    base = _read_with_extends(parent_path, (*chain, path))
    base.pop("name", None)
    base.pop("description", None)
    return _merge(base, doc)


def parse_override(item: str) -> tuple[str, Any]:
    """`train.lr=3e-4` -> ("train.lr", 0.0003); values are TOML, bare words are strings."""
    if "=" not in item:
        raise PresetError([Problem("--set", item, "expected KEY=VALUE, e.g. train.lr=3e-4")])
    key, value = item.split("=", 1)
    key = key.strip()
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    except RecursionError:
        raise PresetError([Problem("--set", key, "value nested too deeply")]) from None
    return key, parsed


def apply_overrides(doc: dict, overrides: list[str] | dict[str, Any]) -> dict:
    items = overrides.items() if isinstance(overrides, dict) else (parse_override(o) for o in overrides)
    doc = dict(doc)
    for key, value in items:
        parts = key.split(".")
        node = doc
        for part in parts[:-1]:
            nxt = node.get(part)
            nxt = dict(nxt) if isinstance(nxt, dict) else {}
            node[part] = nxt
            node = nxt
        node[parts[-1]] = value
    return doc


def _type_name(t: Any) -> str:
    if typing.get_origin(t) is list:
        return f"a list of {_type_name(typing.get_args(t)[0])}"
    if dataclasses.is_dataclass(t):
        return "a table"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(t, str(t))


def _convert(value: Any, tp: Any, key: str, file: str, problems: list[Problem]) -> Any:
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            problems.append(Problem(file, key, f"expected a table, got {type(value).__name__}"))
            return tp()
        return _build(tp, value, key, file, problems)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            problems.append(Problem(file, key, f"expected {_type_name(tp)}, got {type(value).__name__}"))
            return []
        items = [_convert(v, item_tp, f"{key}[{i}]", file, problems) for i, v in enumerate(value)]
        return [x for x in items if x is not None]  # a bad item was reported; the checks after see only good ones
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is bool and not isinstance(value, bool) or tp is not bool and isinstance(value, bool) \
            or not isinstance(value, tp):
        problems.append(Problem(file, key, f"expected {_type_name(tp)}, got {value!r}"))
        return None
    return value


def _check_bounds(f: dataclasses.Field, value: Any, key: str, file: str, problems: list[Problem]) -> None:
    m = f.metadata
    if m.get("choices") and value not in m["choices"]:
        hint = difflib.get_close_matches(str(value), [str(c) for c in m["choices"]], n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        problems.append(Problem(file, key, f"{value!r} is not one of {', '.join(map(repr, m['choices']))}{extra}"))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(Problem(file, key, f"must be a finite number, got {value}"))
            return
        lo, hi = m.get("lo"), m.get("hi")
        if lo is not None and (value <= lo if m["lo_open"] else value < lo):
            problems.append(Problem(file, key, f"must be {'>' if m['lo_open'] else '>='} {lo:g}, got {value:g}"))
        if hi is not None and (value >= hi if m["hi_open"] else value > hi):
            problems.append(Problem(file, key, f"must be {'<' if m['hi_open'] else '<='} {hi:g}, got {value:g}"))


# keys a release renamed: an old preset's key is answered with its new name
RENAMED = {"data.num_proc": "data.workers"}


def _build(cls: type, doc: dict, prefix: str, file: str, problems: list[Problem]) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in doc.items():
        part = k or '""'  # an empty quoted TOML key must not read as a problem of the whole file
        key = f"{prefix}.{part}" if prefix else part
        if k not in fields:
            hint = [RENAMED[key].rsplit(".", 1)[-1]] if key in RENAMED else difflib.get_close_matches(k, list(fields), n=1)
            extra = f"; did you mean {(prefix + '.' if prefix else '') + hint[0]!r}?" if hint else ""
            problems.append(Problem(file, key, f"unknown key{extra}"))
            continue
        n = len(problems)
        value = _convert(v, hints[k], key, file, problems)
        if dataclasses.is_dataclass(value) or isinstance(value, list) and value:
            kwargs[k] = value  # a table keeps its good fields; its bad ones were reported inside
        elif len(problems) == n and value is not None:
            _check_bounds(fields[k], value, key, file, problems)
            if len(problems) == n:
                kwargs[k] = value
    return cls(**kwargs)


def validate(p: Preset, file: str) -> list[Problem]:
    """Cross-field checks: the relations between fields that no single field can check."""
    out: list[Problem] = []
    m, t, tok = p.model, p.train, p.tokenizer
    if m.head_dim:
        if m.position == "rope" and m.head_dim % 2:
            out.append(Problem(file, "model.head_dim", f"RoPE needs an even head size, not {m.head_dim}"))
    elif m.n_embd % m.n_head:
        out.append(Problem(file, "model.n_embd", f"{m.n_embd} is not divisible by model.n_head = {m.n_head}"))
    elif m.position == "rope" and (m.n_embd // m.n_head) % 2:
        out.append(Problem(file, "model.n_embd", f"RoPE needs an even head size; n_embd / n_head = {m.n_embd // m.n_head}"))
    bad_layers = [i for i in m.nope_layers if not 0 <= i < m.n_layer]
    if bad_layers:
        out.append(Problem(file, "model.nope_layers", f"{bad_layers} are not block indices (0 to {m.n_layer - 1})"))
    if m.rope_scaling == "llama3" and m.rope_high_freq_factor <= m.rope_low_freq_factor:
        out.append(Problem(file, "model.rope_high_freq_factor",
                           f"{m.rope_high_freq_factor:g} must be above model.rope_low_freq_factor = {m.rope_low_freq_factor:g}"))
    if m.n_kv_head and m.n_head % m.n_kv_head:
        out.append(Problem(file, "model.n_kv_head", f"model.n_head = {m.n_head} is not divisible by {m.n_kv_head}"))
    if m.n_kv_head > m.n_head:
        out.append(Problem(file, "model.n_kv_head", f"{m.n_kv_head} is more than model.n_head = {m.n_head}"))
    if t.optimizer == "muon" and t.dtype == "float16":
        out.append(Problem(file, "train.optimizer", "muon does not run with train.dtype = \"float16\" (its loss scaler); use bfloat16 or float32"))
    if t.min_lr > t.lr:
        out.append(Problem(file, "train.min_lr", f"{t.min_lr:g} is above train.lr = {t.lr:g}"))
    if t.max_steps == 0 and t.max_tokens == 0 and t.epochs == 0:
        out.append(Problem(file, "train.max_steps", "no stopping rule: set max_steps, max_tokens or epochs"))
    if t.batch_tokens and t.batch_tokens < t.micro_batch_size * m.context_length:
        out.append(Problem(file, "train.batch_tokens",
                           f"{t.batch_tokens} is smaller than one micro-batch "
                           f"({t.micro_batch_size} x {m.context_length} = {t.micro_batch_size * m.context_length} tokens)"))
    if tok.kind == "bpe" and m.vocab_size and m.vocab_size < tok.vocab_size:
        out.append(Problem(file, "model.vocab_size", f"{m.vocab_size} is smaller than tokenizer.vocab_size = {tok.vocab_size}"))
    f = p.data.filters
    if f.max_chars and f.max_chars < f.min_chars:
        out.append(Problem(file, "data.filters.max_chars", f"{f.max_chars} is below data.filters.min_chars = {f.min_chars}"))
    for i, s in enumerate(p.data.mixture):
        if not s.source:
            out.append(Problem(file, f"data.mixture[{i}].source", "is empty"))
    seps = [("data.separator", p.data.source, p.data.separator)]
    seps += [(f"data.mixture[{i}].separator", s.source, s.separator) for i, s in enumerate(p.data.mixture)]
    for key, source, sep in seps:
        if sep:
            try:
                re.compile(sep)
            except re.error as e:
                out.append(Problem(file, key, f"{sep!r} (source {source}) is not a regular expression: {e}"))
    if p.data.prepare == "stream" and t.epochs and not (t.max_steps or t.max_tokens):
        out.append(Problem(file, "data.prepare", "\"stream\" starts before the corpus size is known, so train.epochs "
                           "cannot end the run; set train.max_steps or train.max_tokens"))
    if p.data.prepare == "stream" and t.nproc > 1:
        out.append(Problem(file, "data.prepare", f"\"stream\" runs in one process; with train.nproc = {t.nproc} "
                           "prepare the shards ahead (`llmlab data PRESET`) or set data.prepare = \"ahead\""))
    if p.data.mixture_end == "budget" and p.data.mixture and not p.data.budget_tokens:
        out.append(Problem(file, "data.budget_tokens", "mixture_end = \"budget\" needs a token budget (> 0)"))
    rl = p.finetune.rl
    if p.finetune.method == "rl" and rl.group_size < 2:
        out.append(Problem(file, "finetune.rl.group_size", f"{rl.group_size}: GRPO compares a prompt's completions with "
                           "each other, so with one the advantages are all zero and nothing trains; use 2 or more"))
    if rl.weights and len(rl.weights) != len(rl.rewards):
        out.append(Problem(file, "finetune.rl.weights", f"{len(rl.weights)} weights for {len(rl.rewards)} rewards; "
                           "give one per reward or none"))
    if p.finetune.method == "rl" and not rl.rewards:
        out.append(Problem(file, "finetune.rl.rewards", "empty; name at least one of exact, number, format or a module:function"))
    bad = [x for x in p.finetune.lora.targets if x not in ("attn", "mlp", "head")]
    if bad:
        out.append(Problem(file, "finetune.lora.targets", f"unknown target(s) {bad}; choose from attn, mlp, head"))
    leaf_keys = preset_keys()
    for i, entry in enumerate(p.accepted):
        key, sep, reason = entry.partition(":")
        if not sep or not reason.strip() or key.strip() not in leaf_keys:
            out.append(Problem(file, f"accepted[{i}]", f"{entry!r}: expected \"KEY: reason\" with KEY a preset "
                               "field, e.g. \"train.lr: tiny model, a higher lr on purpose\""))
    out += _live_eval_problems(t, file)
    bad = [x for x in p.eval.tasks if x not in EVAL_TASKS]
    if bad:
        out.append(Problem(file, "eval.tasks", f"unknown task(s) {bad}; choose from {', '.join(EVAL_TASKS)}"))
    return out


LIVE_EVAL_TASKS = ("choice", "classify")


def _live_eval_problems(t: TrainConfig, file: str) -> list[Problem]:
    """train.eval_tasks and train.early_stop.metric name things a training run can measure."""
    out = []
    bad = [x for x in t.eval_tasks if x not in LIVE_EVAL_TASKS]
    if bad:
        out.append(Problem(file, "train.eval_tasks", f"{bad} cannot run during training; choose from "
                           f"{', '.join(LIVE_EVAL_TASKS)} (perplexity is the val loss; judge after training)"))
    if t.eval_tasks and t.nproc > 1:
        out.append(Problem(file, "train.eval_tasks", "live evaluations run in one process; set train.nproc = 1 "
                           "or evaluate the checkpoints after training (`llmlab eval`)"))
    m = t.early_stop.metric
    if m and not m.startswith("val_") and m.split(".", 1)[0] not in t.eval_tasks:
        out.append(Problem(file, "train.early_stop.metric", f"{m!r}: expected val_loss (or another val_ metric) or "
                           f"TASK.KEY of a task in train.eval_tasks (now {t.eval_tasks or 'empty'})"))
    return out


@functools.lru_cache(maxsize=1)
def preset_keys() -> frozenset[str]:
    """Every leaf key of the schema, dotted (computed once: validation runs on every keystroke)."""
    return frozenset(row[0] for row in schema_rows(Preset))


EVAL_TASKS = ("perplexity", "classify", "choice", "judge", "pairwise", "verify", "contamination", "sensitivity",
              "compare")


def from_dict(doc: dict, file: str = "<preset>", default_name: str = "") -> Preset:
    """Build and validate a Preset from a parsed TOML table; raises PresetError with every problem."""
    problems: list[Problem] = []
    doc = dict(doc)
    if "extends" in doc:
        problems.append(Problem(file, "extends", "cannot be resolved here; use load()"))
        doc.pop("extends")
    p = _build(Preset, doc, "", file, problems)
    if not p.name:
        p.name = default_name
    seen = {q.key for q in problems}
    problems += [q for q in validate(p, file) if q.key not in seen]
    if problems:
        raise PresetError(problems)
    return p


def load(name_or_path: str | Path, overrides: list[str] | dict[str, Any] | None = None) -> Preset:
    """Load a preset by built-in name or path, follow `extends`, apply overrides, validate."""
    path = resolve_path(name_or_path)
    doc = _read_with_extends(path)
    bad: list[Problem] = []
    if overrides:
        pairs = []
        for item in overrides.items() if isinstance(overrides, dict) else overrides:
            try:
                pairs.append(item if isinstance(item, tuple) else parse_override(item))
            except PresetError as e:
                bad += e.problems
        doc = apply_overrides(doc, dict(pairs))
    try:
        p = from_dict(doc, str(path), default_name=path.stem)
    except PresetError as e:
        raise PresetError(bad + e.problems) from None
    if bad:
        raise PresetError(bad)
    return p


def loads(text: str, file: str = "<string>") -> Preset:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PresetError([Problem(file, "", f"invalid TOML: {e}")]) from None
    except RecursionError:
        raise PresetError([Problem(file, "", "invalid TOML: arrays or tables nested too deeply")]) from None
    return from_dict(doc, file)


def to_dict(p: Any) -> dict:
    out = {}
    for f in dataclasses.fields(p):
        v = getattr(p, f.name)
        if dataclasses.is_dataclass(v):
            v = to_dict(v)
        elif isinstance(v, list):
            v = [to_dict(x) if dataclasses.is_dataclass(x) else x for x in v]
        out[f.name] = v
    return out


def flat_dict(p: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf value by dotted key (`train.lr`); a list of tables stays one value."""
    out: dict[str, Any] = {}
    for k, v in to_dict(p).items() if dataclasses.is_dataclass(p) else p.items():
        if isinstance(v, dict):
            out.update(flat_dict(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def dump(p: Preset) -> str:
    """The fully resolved preset as TOML (no `extends`); load(dump(p)) == p."""
    return tomli_w.dumps(to_dict(p), multiline_strings=False)


def schema_rows(cls: type = Preset, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, doc) for every leaf field: the preset reference."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            rows += schema_rows(tp, key + ".")
            continue
        if typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            rows.append((key, "array of tables", "[]", f.metadata["doc"]))
            rows += schema_rows(typing.get_args(tp)[0], key + "[].")
            continue
        factory = f.default_factory
        default = f.default if f.default is not dataclasses.MISSING else (factory() if callable(factory) else None)
        tname = f"list[{typing.get_args(tp)[0].__name__}]" if typing.get_origin(tp) is list else tp.__name__
        doc = f.metadata["doc"]
        if f.metadata.get("choices"):
            doc += " (" + " \\| ".join(f.metadata["choices"]) + ")"
        rows.append((key, tname, tomli_w.dumps({"v": default}).strip()[4:], doc))
    return rows

