"""Prompt and position sensitivity of a multiple-choice score: one number hides a range.

The same questions are scored (core.eval.choice, harness-style log-likelihoods) under changes that
should not matter to a model that knows the answers: the number of solved examples shown first
(k = 0, 1, 3, 5), three prompt formats (the options continue the text; "Question: ... Answer:";
lettered options answered by a letter, as MMLU), and, in the lettered format, the right option
moved to each position in turn (accuracy by the gold answer's position). Each group reports its
accuracies and their range (min, max); the gap is the measurement's own uncertainty.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from typing import Any

from core.errors import UserError
from core.eval.choice import LETTERS, ChoiceExample, evaluate

SHOTS = (0, 1, 3, 5)


def as_question(ex: ChoiceExample) -> ChoiceExample:
    return dataclasses.replace(ex, context=f"Question: {ex.context} ...\nAnswer:")


def as_letters(ex: ChoiceExample, gold_at: int | None = None) -> ChoiceExample:
    """Lettered options answered by a letter; `gold_at` moves the right option to that position."""
    choices = list(ex.choices)
    answer = ex.answer
    if gold_at is not None:
        choices[answer], choices[gold_at] = choices[gold_at], choices[answer]
        answer = gold_at
    options = "".join(f"\n{LETTERS[i]}. {c}" for i, c in enumerate(choices))
    return dataclasses.replace(ex, context=f"{ex.context} ...{options}\nAnswer:",
                               choices=list(LETTERS[:len(choices)]), answer=answer)


FORMATS: dict[str, Callable[[ChoiceExample], ChoiceExample]] = {
    "continuation": lambda ex: ex, "question-answer": as_question, "lettered": as_letters}


def _range(accs: dict[str, float]) -> dict:
    vals = list(accs.values())
    return {"min": min(vals), "max": max(vals), "spread": max(vals) - min(vals)}


def sensitivity(model: Any, tokenizer: Any, examples: Sequence[ChoiceExample], pool: Sequence[ChoiceExample], *,
                shots: Sequence[int] = SHOTS, batch_size: int = 16, stop: threading.Event | None = None,
                progress: Callable[[int, int], None] | None = None) -> dict:
    """Accuracy (acc) by k-shot, by prompt format and by gold position, each with its range."""
    examples = list(examples)
    if not examples:
        raise UserError("sensitivity: the multiple-choice set is empty")
    if max(shots) >= len(pool):
        raise UserError(f"sensitivity: {max(shots)}-shot needs more than {max(shots)} examples to draw from, "
                        f"the few-shot pool has {len(pool)}; use a larger set")
    n_choices = {len(ex.choices) for ex in examples}
    runs: list[tuple[str, str, list[ChoiceExample], list[ChoiceExample], int]] = []
    runs += [("kshot", str(k), examples, list(pool), k) for k in shots]
    runs += [("formats", name, [f(ex) for ex in examples], [f(ex) for ex in pool], 0)
             for name, f in FORMATS.items() if name != "continuation"]
    positions = range(min(n_choices))
    runs += [("position", LETTERS[p], [as_letters(ex, p) for ex in examples], [], 0) for p in positions]
    out: dict[str, Any] = {"kshot": {}, "formats": {}, "position": {}}
    for i, (group, key, exs, shot_pool, k) in enumerate(runs):
        if stop is not None and stop.is_set():
            break
        r = evaluate(model, tokenizer, exs, num_fewshot=k, fewshot_pool=shot_pool or None, batch_size=batch_size,
                     stop=stop, samples=0)
        out[group][key] = r["acc"]
        if progress is not None:
            progress(i + 1, len(runs))
    if "0" in out["kshot"]:
        out["formats"] = {"continuation": out["kshot"]["0"], **out["formats"]}
    out["ranges"] = {g: _range(out[g]) for g in ("kshot", "formats", "position") if out[g]}
    out["n"] = len(examples)
    out["chance"] = sum(1 / len(ex.choices) for ex in examples) / len(examples)
    out["complete"] = len(out["position"]) == len(positions)
    return out
