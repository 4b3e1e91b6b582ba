"""What the model finds hard: the loss of every token of a text, with the model's top predictions.

Torch is imported only where a model runs (the TUI imports the types and the scale).
`token_losses(model, tokenizer, text)` scores each token given the ones before it (the text is
preceded by the end-of-text token, so the first token is scored too) and keeps, for each position,
the k most likely tokens and their probabilities. `hardest(model, tokenizer, texts)` ranks texts
(rows of a dataset) by their mean token loss; `held_out_documents` reads the validation documents
of the run a checkpoint came from. `loss_level` is the one scale (0 easy .. 4 hardest of the text)
that `llmlab inspect` and the Model screen's inspect view (tui/screens/inspect.py) colour by.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import UserError

LEVELS = 5


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


def token_losses(model: Any, tokenizer: Any, text: str, top_k: int = 5) -> TextLoss:
    """Per-token loss of `text` under `model` (an LM head), with the top-k predictions per position."""
    import torch  # here, so that the TUI can import the scale and the types without torch

    with torch.inference_mode():
        return _token_losses(model, tokenizer, text, top_k)


def _token_losses(model: Any, tokenizer: Any, text: str, top_k: int) -> TextLoss:
    import torch

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


def loss_level(loss: float, high: float) -> int:
    """0 (easy) .. LEVELS - 1 (the hardest tokens of the text), by the share of the text's highest loss."""
    share = min(1.0, loss / high) if high > 0 else 0.0
    return min(LEVELS - 1, int(share * LEVELS))


def load_scorer(spec: str | Path, device: str = "cpu", root: Path | None = None) -> tuple[Any, Any, dict]:
    """(model, tokenizer, meta) of a language model that can score text, or a UserError saying why not."""
    from core.checkpoint import load_model, require_tokenizer
    from core.lookup import resolve_checkpoint

    model, tok, meta = load_model(resolve_checkpoint(str(spec), root=root), device=device)
    tok = require_tokenizer(tok, meta, "score text")
    if (meta.get("head") or {}).get("kind", "lm") != "lm":
        raise UserError(f"{meta['path']}: a classifier scores labels, not tokens; inspect a pretrained or "
                        "instruction-tuned model")
    return model, tok, meta


def held_out_documents(ckpt: str | Path, tokenizer: Any, max_docs: int = 32) -> list[str]:
    """The first `max_docs` documents of the validation shard of the run that wrote `ckpt` (its preset's
    data in the checkpoint's tokenizer), decoded; a UserError when the run or its shards are not here."""
    from core import config
    from core.data.shards import read_meta, shard_key
    from core.runs import workspace

    run_dir = Path(ckpt).parent.parent
    if not (run_dir / "preset.toml").is_file():
        raise UserError(f"{ckpt}: not a checkpoint of a run here (no preset.toml beside it), so it has no held-out set")
    try:
        preset = config.load(run_dir / "preset.toml")
    except config.PresetError as e:
        raise UserError(f"{run_dir / 'preset.toml'}: {e.problems[0]}") from None
    folder = workspace() / "data" / shard_key(preset.data, tokenizer)
    if not (folder / "meta.json").is_file():
        raise UserError(f"{folder}: no validation shard of {run_dir.name}'s data here; run `llmlab data "
                        f"{run_dir / 'preset.toml'}` first")
    try:
        ids = np.memmap(folder / "val.bin", dtype=np.dtype(read_meta(folder)["dtype"]), mode="r")
    except (OSError, ValueError) as e:
        raise UserError(f"{folder / 'val.bin'}: cannot read ({e})") from None
    window = ids[: max_docs * preset.model.context_length * 2].tolist()
    docs: list[str] = []
    cur: list[int] = []
    for i in window:
        if i == tokenizer.eot_id:
            if cur:
                docs.append(tokenizer.decode(cur))
            cur = []
        else:
            cur.append(i)
    return [d for d in docs if d.strip()][:max_docs]
