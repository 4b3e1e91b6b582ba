"""What the model finds hard: the loss of every token of a text, with the model's top predictions.

`token_losses(model, tokenizer, text)` scores each token given the ones before it (the text is
preceded by the end-of-text token, so the first token is scored too) and keeps, for each position,
the k most likely tokens and their probabilities. `hardest(model, tokenizer, texts)` ranks texts
(rows of a dataset) by their mean token loss. `llmlab inspect` prints them; the Model screen shows them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class TokenLoss:
    id: int
    text: str
    loss: float                      # nats: -log p(token | the tokens before it)
    prob: float
    rank: int                        # 1 = the model's first choice
    top: list[tuple[str, float]] = field(default_factory=list)  # the model's k most likely tokens here


@dataclass
class TextLoss:
    text: str
    mean_loss: float
    tokens: list[TokenLoss]
    truncated: bool = False          # the text was longer than the model's context


def _piece(tokenizer: Any, i: int) -> str:
    return tokenizer.decode([i])


@torch.inference_mode()
def token_losses(model: Any, tokenizer: Any, text: str, top_k: int = 5) -> TextLoss:
    """Per-token loss of `text` under `model` (an LM head), with the top-k predictions per position."""
    ids = tokenizer.encode(text)
    if not ids:
        return TextLoss(text, float("nan"), [])
    T = model.config.context_length
    truncated = len(ids) > T
    ids = ids[:T]
    x = torch.tensor([[tokenizer.eot_id, *ids[:-1]]], device=next(model.parameters()).device)
    was = model.training
    model.eval()
    logits, _ = model(x)
    model.train(was)
    logp = torch.log_softmax(logits[0].float(), dim=-1)        # (T, vocab)
    target = torch.tensor(ids, device=logp.device)
    chosen = logp.gather(1, target[:, None])[:, 0]              # (T,)
    ranks = (logp > chosen[:, None]).sum(-1) + 1
    top_p, top_i = logp.exp().topk(min(top_k, logp.size(-1)), dim=-1)
    out = [TokenLoss(i, _piece(tokenizer, i), -float(c), float(c.exp()), int(r),
                     [(_piece(tokenizer, int(j)), float(p)) for j, p in zip(ti, tp)])
           for i, c, r, ti, tp in zip(ids, chosen, ranks, top_i.tolist(), top_p.tolist())]
    return TextLoss(text, float(-chosen.mean()), out, truncated)


def hardest(model: Any, tokenizer: Any, texts: list[str], n: int = 3, top_k: int = 5) -> list[TextLoss]:
    """The `n` texts of highest mean token loss, each with its per-token losses."""
    scored = [token_losses(model, tokenizer, t, top_k) for t in texts if t.strip()]
    return sorted((s for s in scored if s.tokens), key=lambda s: s.mean_loss, reverse=True)[:n]
