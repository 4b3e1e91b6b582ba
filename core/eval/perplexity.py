"""Language-modelling quality: loss, perplexity and bits per byte on held-out text.

Loss and perplexity are per token, so they only compare models that share a tokenizer; bits per
byte divides the summed negative log-likelihood by the UTF-8 bytes the scored tokens stand for,
which makes models with different tokenizers comparable (as nanochat and the lm-evaluation-harness
report it). Special tokens (the end-of-text separator) stand for no bytes: they count in the loss
but are left out of bits per byte, nats and bytes alike. The text is scored in consecutive,
non-overlapping windows of the model's context, each token predicted once.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from core.errors import UserError
from core.model.gpt import GPT

if TYPE_CHECKING:
    from core.tokenizer.protocol import TextTokenizer


def token_byte_lengths(tokenizer: TextTokenizer, vocab_size: int | None = None) -> torch.Tensor:
    """(vocab_size,) long: UTF-8 bytes each token id decodes to; 0 for special and unused ids."""
    n = vocab_size or tokenizer.n_vocab
    out = torch.zeros(n, dtype=torch.long)
    for i in range(min(n, tokenizer.n_vocab)):
        if tokenizer.is_special(i):
            continue
        try:
            out[i] = len(tokenizer.token_bytes(i))
        except KeyError:  # a hole in the vocabulary
            continue
    return out


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def score_windows(model: torch.nn.Module, windows: Iterable[tuple[torch.Tensor, torch.Tensor]],
                  byte_lengths: torch.Tensor, stop: threading.Event | None = None) -> dict:
    """Sum nats and bytes over (x, y) batches of shape (B, T); y = -100 positions are skipped."""
    device = _device(model)
    byte_lengths = byte_lengths.to(device)
    nats = torch.zeros((), dtype=torch.float64, device=device)
    nats_bytes = torch.zeros((), dtype=torch.float64, device=device)
    n_tokens = n_bytes = n_windows = 0
    was_training = model.training
    model.eval()
    try:
        for x, y in windows:
            if stop is not None and stop.is_set():
                break
            x, y = x.to(device), y.to(device)
            logits, _ = model(x)  # (B, T, V)
            nll = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1),
                                  ignore_index=-100, reduction="none")  # (B*T,)
            valid = y.reshape(-1) != -100
            b = byte_lengths[y.reshape(-1).clamp(min=0)] * valid
            nats += nll[valid].double().sum()
            nats_bytes += (nll * (b > 0)).double().sum()
            n_tokens += int(valid.sum())
            n_bytes += int(b.sum())
            n_windows += x.size(0)
    finally:
        model.train(was_training)
    return summarize(float(nats), float(nats_bytes), n_tokens, n_bytes, n_windows)


def summarize(nats: float, nats_bytes: float, n_tokens: int, n_bytes: int, n_windows: int = 0) -> dict:
    """Loss (nats per token), perplexity and bits per byte from sums."""
    loss = nats / n_tokens if n_tokens else math.nan
    return {
        "loss": loss,
        "perplexity": (math.exp(loss) if loss < 700 else math.inf) if n_tokens else math.nan,
        "bits_per_byte": nats_bytes / (n_bytes * math.log(2)) if n_bytes else math.nan,
        "tokens": n_tokens,
        "bytes": n_bytes,
        "windows": n_windows,
    }


def windows_of(ids: np.ndarray | Sequence[int], context_length: int, batch_size: int,
               max_windows: int = 0) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """Consecutive windows of context_length + 1 tokens (overlapping by one), batched; a shorter tail
    window is scored too, so every token after the first is predicted exactly once."""
    arr = np.asarray(ids)
    n = len(arr)
    if n < 2:
        return
    T = context_length
    starts = list(range(0, n - 1, T))
    if max_windows:
        starts = starts[:max_windows]
    for i in range(0, len(starts), batch_size):
        chunk = starts[i:i + batch_size]
        full = [s for s in chunk if s + T + 1 <= n]
        if full:
            idx = np.array(full, dtype=np.int64)[:, None] + np.arange(T + 1)[None, :]
            rows = torch.from_numpy(arr[idx].astype(np.int64))  # (B, T + 1)
            yield rows[:, :-1], rows[:, 1:]
        for s in chunk:
            if s + T + 1 > n:  # the tail: at most one, last
                row = torch.from_numpy(arr[s:].astype(np.int64))[None, :]  # (1, n - s)
                yield row[:, :-1], row[:, 1:]


def evaluate_ids(model: GPT, ids: np.ndarray | Sequence[int], tokenizer: TextTokenizer, *,
                 batch_size: int = 8, max_windows: int = 0, stop: threading.Event | None = None) -> dict:
    """Loss, perplexity and bits per byte of a token stream under the model."""
    T = model.config.context_length
    lengths = token_byte_lengths(tokenizer, model.config.vocab_size)
    return score_windows(model, windows_of(ids, T, batch_size, max_windows), lengths, stop)


def evaluate_texts(model: GPT, tokenizer: TextTokenizer, texts: Iterable[str], *, batch_size: int = 8,
                   max_windows: int = 0, stop: threading.Event | None = None) -> dict:
    """Score documents the way the shards hold them: each preceded by the end-of-text token."""
    ids: list[int] = []
    for t in texts:
        ids.append(tokenizer.eot_id)
        ids.extend(tokenizer.encode(t))
    return evaluate_ids(model, ids, tokenizer, batch_size=batch_size, max_windows=max_windows, stop=stop)


def evaluate_shard(model: GPT, tokenizer: TextTokenizer, bin_path: str | Path, *, batch_size: int = 8,
                   max_windows: int = 0, stop: threading.Event | None = None) -> dict:
    """Score a token shard (train.bin / val.bin of `core.data.prepare_shards`), read through a memmap."""
    from core.data.shards import read_meta

    path = Path(bin_path)
    if not path.is_file():
        raise UserError(f"{path}: no such token shard; run `llmlab data PRESET` first")
    meta = read_meta(path.parent)
    ident = meta.get("tokenizer") or {}
    fp = ident.get("fingerprint")
    if fp and getattr(tokenizer, "fingerprint", fp) != fp:
        raise UserError(f"{path}: tokenized with {ident.get('name')!r} ({fp}), not with the model's tokenizer "
                        f"{tokenizer.name!r} ({tokenizer.fingerprint}); prepare shards with the model's tokenizer")
    data = np.memmap(path, dtype=np.dtype(meta.get("dtype", "uint16")), mode="r")
    out = evaluate_ids(model, data, tokenizer, batch_size=batch_size, max_windows=max_windows, stop=stop)
    out["shard"] = str(path)
    return out
