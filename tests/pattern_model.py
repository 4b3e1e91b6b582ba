"""A tiny GPT trained on one repeated sentence, so that a text which breaks the pattern has one
unpredictable token (the per-token loss tests of core.token_loss, `llmlab inspect` and the inspect view)."""

from __future__ import annotations

from pathlib import Path

SENTENCE = "the cat sat on the mat and the dog ran to the park. "
ODD = SENTENCE + "the cat sat on the mat and the dog ran to the mat"  # the last word breaks the pattern


def train_pattern_model(folder: Path):
    """(model, tokenizer, committed checkpoint folder) after 150 seeded steps (a few seconds)."""
    import torch

    from core.checkpoint import save_checkpoint
    from core.config import ModelConfig
    from core.model.gpt import GPT
    from core.tokenizer import train_bpe

    torch.manual_seed(0)
    tok = train_bpe([SENTENCE * 20], 280, name="pattern-bpe")
    ids = torch.tensor(([tok.eot_id] + tok.encode(SENTENCE * 4)) * 10)  # documents, as pretraining sees them
    model = GPT(ModelConfig(n_layer=2, n_head=2, n_embd=32, context_length=48, vocab_size=tok.n_vocab))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        starts = torch.randint(0, len(ids) - 49, (8,))
        x = torch.stack([ids[s:s + 48] for s in starts])
        y = torch.stack([ids[s + 1:s + 49] for s in starts])
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, tok, save_checkpoint(folder, 150, model, tokenizer=tok)
