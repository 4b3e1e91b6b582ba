"""Sampling: a generator that yields tokens as the model produces them.

`generate()` prefills a KV cache with the prompt and then feeds one token per step, computing
the head at the last position only; `generate_pieces()` wraps it with a tokenizer, stop strings
and incremental decoding through the tokenizer's own `decode` and yields each token's id with the
text it completes, `generate_text()` the text alone. Training samples, the chat pane,
evaluation and `llmlab generate` all iterate these.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator, Sequence
from typing import Any

import torch

from core.errors import UserError
from core.model.gpt import GPT, KVCache
from core.tokenizer.protocol import TextTokenizer
from core.tokenizer.stream import Piece, TextDecoder


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                generator: torch.Generator | None = None) -> int:
    """One token id from logits (V,): greedy at temperature 0, else top-k / top-p sampling."""
    if temperature <= 0:
        return int(torch.argmax(logits))
    logits = logits.float()
    # the max subtracted first: a tiny temperature then sends the others to -inf, never inf - inf = nan
    logits = (logits - logits.max()) / temperature
    if top_k and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        # drop a token when the tokens before it already reach top_p (the first always stays)
        drop = (torch.cumsum(sorted_p, dim=-1) - sorted_p) >= top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return int(torch.multinomial(probs, 1, generator=generator))


def sample_batch(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """One token id per row of logits (B, V) -> (B,), with the same rules as `sample_next`."""
    if temperature <= 0:
        return torch.argmax(logits, dim=-1)
    logits = logits.float()
    logits = (logits - logits.max(dim=-1, keepdim=True).values) / temperature
    if top_k and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)  # (B, V)
    if top_p < 1.0:
        sorted_p, order = torch.sort(probs, dim=-1, descending=True)
        drop = (torch.cumsum(sorted_p, dim=-1) - sorted_p) >= top_p
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p.masked_fill(drop, 0.0))
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def generate(model: GPT, prompt_ids: Sequence[int], *, max_new_tokens: int, temperature: float = 1.0,
             top_k: int = 0, top_p: float = 1.0, stop_ids: Iterable[int] = (), seed: int | None = None,
             use_cache: bool = True) -> Iterator[int]:
    """Yield up to `max_new_tokens` token ids after `prompt_ids`; a stop id ends it and is not yielded.

    With the cache the prompt is processed once and every step feeds a single token. When the
    sequence outgrows the context, both paths slide a window of the last `context_length` tokens
    (the cached path re-prefills that window), so greedy output is identical with and without it.
    """
    if not prompt_ids:
        raise UserError("the prompt encodes to no tokens (an empty prompt, or a tokenizer whose pattern "
                        "matches none of it); give a prompt the tokenizer splits into tokens")
    was_training = model.training
    model.eval()
    device = _device(model)
    ctx = model.config.context_length
    stops = set(stop_ids)
    gen = None
    if seed is not None:
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)
    ids = list(prompt_ids)
    cache: KVCache | None = None
    try:
        for step in range(max_new_tokens):
            if use_cache and cache is not None and cache.pos < cache.max_len:
                x = torch.tensor([ids[-1:]], dtype=torch.long, device=device)  # (1, 1)
            else:
                # first step, no cache, or a full cache: (re)process the last window
                window = ids[-ctx:]
                x = torch.tensor([window], dtype=torch.long, device=device)  # (1, T)
                # a full window leaves the cache no room, so the next step re-prefills as well;
                # room for this window and every token still to come, never more than the context
                room = min(ctx, len(window) + max_new_tokens - step)
                cache = KVCache.for_model(model, room) if use_cache else None
            logits, _ = model(x, cache=cache, last_only=True)  # (1, 1, V)
            nxt = sample_next(logits[0, -1], temperature, top_k, top_p, gen)
            if nxt in stops:
                return
            ids.append(nxt)
            yield nxt
    finally:
        model.train(was_training)


def _stop_prefix_len(text: str, stops: Sequence[str]) -> int:
    """Length of the longest tail of `text` that is a proper prefix of a stop string (held back)."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if s.startswith(text[-n:]):
                best = n
                break
    return best


def generate_pieces(model: GPT, tokenizer: TextTokenizer, prompt: str | Sequence[int], *, max_new_tokens: int,
                    temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, stop: Sequence[str] = (),
                    stop_ids: Iterable[int] | None = None, seed: int | None = None,
                    use_cache: bool = True) -> Generator[Piece, None, None]:
    """Yield a `Piece` per generated token (its id and the text it completes) of the continuation of
    `prompt`; ends at a stop string (not yielded), a stop id (default: the tokenizer's end-of-text
    id, neither yielded) or `max_new_tokens`. Text that might be the start of a stop string is held
    back until it is not; a last Piece with no id carries what is held at the end."""
    ids = tokenizer.encode(prompt, allowed_special="all") if isinstance(prompt, str) else list(prompt)
    if stop_ids is None:
        stop_ids = (tokenizer.eot_id,)
    stops = [s for s in stop if s]
    decoder = TextDecoder(tokenizer)
    pending = ""
    for tok in generate(model, ids, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                        top_p=top_p, stop_ids=stop_ids, seed=seed, use_cache=use_cache):
        pending += decoder.add(tok)
        if stops:
            hits = [i for i in (pending.find(s) for s in stops) if i >= 0]
            if hits:
                yield Piece(pending[: min(hits)], [tok])
                return
            keep = _stop_prefix_len(pending, stops)
            out, pending = pending[: len(pending) - keep], pending[len(pending) - keep:]
        else:
            out, pending = pending, ""
        yield Piece(out, [tok])
    pending += decoder.flush()
    if pending:
        yield Piece(pending, [])


def generate_text(model: GPT, tokenizer: TextTokenizer, prompt: str | Sequence[int], *, max_new_tokens: int,
                  temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, stop: Sequence[str] = (),
                  stop_ids: Iterable[int] | None = None, seed: int | None = None,
                  use_cache: bool = True) -> Generator[str, None, None]:
    """The text pieces of `generate_pieces` (the same stops), without the empty ones: joined, they
    are `tokenizer.decode` of the generated ids."""
    pieces = generate_pieces(model, tokenizer, prompt, max_new_tokens=max_new_tokens, temperature=temperature,
                             top_k=top_k, top_p=top_p, stop=stop, stop_ids=stop_ids, seed=seed, use_cache=use_cache)
    try:
        for piece in pieces:
            if piece.text:
                yield piece.text
    finally:
        pieces.close()


def sampling_options(gen_cfg: Any) -> dict:
    """Keyword arguments for generate/generate_text from a preset's GenerateConfig (seed 0 = random)."""
    return {"temperature": gen_cfg.temperature, "top_k": gen_cfg.top_k, "top_p": gen_cfg.top_p,
            "max_new_tokens": gen_cfg.max_new_tokens, "seed": gen_cfg.seed or None}


def generate_group(model: GPT, prompt_ids: Sequence[int], n: int, **options: Any) -> list[list[int]]:
    """`n` sampled completions of one prompt as one batch (`generate_groups` with one prompt)."""
    return generate_groups(model, [prompt_ids], n, **options)


@torch.inference_mode()
def generate_groups(model: GPT, prompts: Sequence[Sequence[int]], n: int, *, max_new_tokens: int,
                    temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, stop_ids: Iterable[int] = (),
                    generator: torch.Generator | None = None, keep_stop: bool = False) -> list[list[int]]:
    """`n` sampled completions of each prompt, all P x n as one batch: the prompts are left-padded to
    one length and prefilled once (the cache masks the padding and counts each row's positions from
    its first token), their keys and values copied to n rows each (a shared-prefix KV cache), then
    all rows decode together; a row that samples a stop id ends there and leaves the batch (the id
    ends its list with keep_stop, as RL trains on the choice to stop; else it is not returned).
    Returns the P x n completions prompt by prompt.

    Every prompt must leave room for max_new_tokens in the context (the caller cuts it)."""
    if not prompts or not all(prompts):
        raise UserError("the prompt encodes to no tokens; give a prompt the tokenizer splits into tokens")
    ctx, longest = model.config.context_length, max(map(len, prompts))
    if longest + max_new_tokens > ctx:
        raise ValueError(f"{longest} prompt tokens + {max_new_tokens} new ones exceed the context ({ctx})")
    was_training = model.training
    model.eval()
    device = _device(model)
    stops = set(stop_ids)
    cache = KVCache.for_model(model, longest + max_new_tokens)
    out: list[list[int]] = [[] for _ in range(len(prompts) * n)]
    try:
        x = torch.tensor([[0] * (longest - len(p)) + list(p) for p in prompts], dtype=torch.long, device=device)
        if any(len(p) < longest for p in prompts):
            cache.pad = torch.tensor([longest - len(p) for p in prompts], device=device)
        logits, _ = model(x, cache=cache, last_only=True)  # (P, 1, V)
        alive = torch.arange(len(out), device=device)  # which completion each cache row holds
        cache.select(alive // n)  # (L, P * n, H, max_len, D): each prompt's cache copied to its n rows
        logits = logits[alive // n]
        for step in range(max_new_tokens):
            nxt = sample_batch(logits[:, -1], temperature, top_k, top_p, generator)  # (B,)
            done = [tok in stops for tok in nxt.tolist()]
            for row, tok, d in zip(alive.tolist(), nxt.tolist(), done):
                if keep_stop or not d:
                    out[row].append(tok)
            if any(done):
                if all(done):
                    break
                keep = torch.tensor([i for i, d in enumerate(done) if not d], device=device)
                alive, nxt = alive[keep], nxt[keep]
                cache.select(keep)  # finished rows leave the batch
            if step + 1 == max_new_tokens:
                break
            logits, _ = model(nxt[:, None], cache=cache, last_only=True)  # (B, 1, V)
    finally:
        model.train(was_training)
    return out
