"""Accuracy on questions a program checks: greedy accuracy, pass@1 and pass@k, with intervals.

Each question is asked through the chat template as instruction tuning saw it; its answer is
checked by core.data.verifiable.is_correct. Greedy accuracy gets a Wilson interval; pass@1 (the
mean correct share of k samples) and pass@k (the unbiased estimator of Chen et al., 2021, with
n = k samples: whether any is right) get Student-t intervals over questions. Used by the eval task
`verify` and by reinforcement learning's held-out evaluation (core.train.rl).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from core.data.verifiable import is_correct, question_of
from core.eval.metrics import mean_ci, proportion_ci

EVAL_SEED = 20_240_205  # the same samples at every evaluation, so two evaluations differ by the model only
EVAL_BATCH = 16  # questions per generation batch (x k samples each)


def chat_prompt(tokenizer: Any, record: dict, room: int, prompt_field: str = "") -> list[int]:
    """The record's question as chat prompt ids, cut from the left to `room` tokens."""
    from core.train.instruct import prompt_ids

    instruction, inp = question_of(record, prompt_field)
    return prompt_ids(tokenizer, "chat", instruction, inp)[-room:]


@torch.no_grad()
def score_verifiable(model: Any, tokenizer: Any, records: Sequence[dict], *, k: int, max_new_tokens: int,
                     temperature: float, top_k: int = 0, top_p: float = 1.0, answer_field: str = "answer",
                     prompt_field: str = "", seed: int = EVAL_SEED, examples: int = 3) -> dict:
    """Greedy accuracy, pass@1 and pass@k (each with a 95% interval) over `records`, and a few examples."""
    from core.generate import generate_groups
    from core.train.instruct import stop_ids

    room = model.config.context_length - max_new_tokens
    stops = stop_ids(tokenizer, "chat")
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    greedy: list[float] = []
    pass1: list[float] = []
    passk: list[float] = []
    shown: list[dict] = []
    for at in range(0, len(records), EVAL_BATCH):
        chunk = records[at: at + EVAL_BATCH]
        ids = [chat_prompt(tokenizer, rec, room, prompt_field) for rec in chunk]
        bests = [tokenizer.decode(c) for c in generate_groups(model, ids, 1, max_new_tokens=max_new_tokens,
                                                               temperature=0.0, stop_ids=stops)]
        samples = [tokenizer.decode(c) for c in generate_groups(
            model, ids, k, max_new_tokens=max_new_tokens, temperature=max(temperature, 1e-3), top_k=top_k,
            top_p=top_p, stop_ids=stops, generator=gen)]
        for i, (rec, best) in enumerate(zip(chunk, bests)):
            gold = str(rec[answer_field])
            right = [is_correct(s, gold) for s in samples[i * k: (i + 1) * k]]
            greedy.append(float(is_correct(best, gold)))
            pass1.append(sum(right) / k)
            passk.append(float(any(right)))
            if len(shown) < examples:
                shown.append({"question": " ".join(question_of(rec, prompt_field)).strip(), "answer": gold,
                              "greedy": best, "correct": bool(greedy[-1])})
    acc = proportion_ci(sum(greedy), len(greedy))
    p1, pk = mean_ci(pass1), mean_ci(passk)
    return {"accuracy": acc["rate"], "accuracy_low": acc["ci_low"], "accuracy_high": acc["ci_high"],
            "pass_at_1": p1["mean"], "pass_at_1_low": p1["ci_low"], "pass_at_1_high": p1["ci_high"],
            "pass_at_k": pk["mean"], "pass_at_k_low": pk["ci_low"], "pass_at_k_high": pk["ci_high"],
            "k": k, "n": len(greedy), "correct": greedy, "sampled_correct": pass1, "examples": shown}


def paired_difference(before: Sequence[float], after: Sequence[float]) -> dict:
    """Mean of after - before over the same questions, with its 95% interval (a paired comparison)."""
    if len(before) != len(after):
        return {}
    d = mean_ci([b - a for a, b in zip(before, after)])
    return {"gain": d["mean"], "gain_low": d["ci_low"], "gain_high": d["ci_high"], "n": d["n"]}
