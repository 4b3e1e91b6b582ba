"""The `llmlab compare` command's work: two models scored on the same examples (multiple choice for
language models, the test split for classifiers), then the paired difference of core.eval.compare.
"""

from __future__ import annotations

import threading
from typing import Any

from core.errors import UserError
from core.eval.compare import paired_bootstrap


def _per_example(model: Any, tokenizer: Any, meta: dict, preset: Any, stop: threading.Event | None) -> tuple[str, list[float]]:
    head = (meta.get("head") or {}).get("kind", "lm")
    if head == "classify":
        from core.stages.eval import classify_outcomes

        return "classify accuracy", classify_outcomes(model, tokenizer, preset, stop)
    from core.eval.choice import evaluate, load_task

    e = preset.eval
    examples = load_task(e.choice_data, "test", limit=e.limit)
    r = evaluate(model, tokenizer, examples, batch_size=max(4, preset.train.micro_batch_size), stop=stop)
    return "multiple-choice acc", [float(c) for c in r["correct"]]


def compare_models(spec_a: str, spec_b: str, preset: Any, stop: threading.Event | None = None) -> dict:
    """Both models on the same examples: each one's score and the paired difference B - A."""
    from core.stages.eval import load_for_eval
    from core.train.device import pick_device

    device = pick_device(preset.train.device)
    out: dict[str, Any] = {"models": {}}
    scores = []
    for key, spec in (("A", spec_a), ("B", spec_b)):
        model, tok, meta = load_for_eval(spec, device)
        metric, per = _per_example(model, tok, meta, preset, stop)
        out["models"][key] = {"spec": spec, "checkpoint": str(meta["path"]), "metric": metric}
        scores.append(per)
    metrics = {m["metric"] for m in out["models"].values()}
    if len(metrics) > 1:
        raise UserError(f"compare: {spec_a} and {spec_b} have different heads ({' vs '.join(sorted(metrics))}); "
                        f"compare two language models or two classifiers")
    out["metric"] = metrics.pop()
    out.update(paired_bootstrap(scores[0], scores[1]))
    return out
