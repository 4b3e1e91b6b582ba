"""Honest comparisons: two models on the same examples, a paired difference and its bootstrap interval.

`core.stages.compare.compare_models` scores both models on the same questions (multiple choice for
language models, the test split for classifiers, and the held-out instructions and preference pairs
of a tuned model) and `paired_bootstrap` resamples the questions, not each model's
score separately, so the interval is as narrow as the shared examples allow (the paired bootstrap
of Koehn 2004 / Dror et al. 2018). The verdict says "B is better" (or A) only when the 95% interval
of the difference excludes zero; otherwise there is no difference at this sample size. `seed_summary`
is the mean and 95% interval of one metric over runs with different seeds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.errors import UserError
from core.eval.metrics import mean_ci

RESAMPLES = 10_000


def paired_bootstrap(a: Sequence[float], b: Sequence[float], resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """Mean of b - a over shared examples, its 95% percentile interval and a two-sided p-value."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(x) != len(y):
        raise ValueError(f"{len(x)} scores for A but {len(y)} for B: a paired comparison needs the same examples")
    if not len(x):
        raise UserError("compare: no shared examples to compare on")
    d = y - x
    diff = float(d.mean())
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // len(d))  # bounded memory for large sets
    for s in range(0, resamples, chunk):
        k = min(chunk, resamples - s)
        means[s:s + k] = d[rng.integers(0, len(d), (k, len(d)))].mean(axis=1)
    lo, hi = (float(v) for v in np.percentile(means, [2.5, 97.5]))
    # the null (no difference) by shifting the bootstrap distribution to mean 0
    p = float(np.mean(np.abs(means - diff) >= abs(diff))) if diff else 1.0
    verdict = "B is better" if lo > 0 else "A is better" if hi < 0 else "no difference: the interval includes 0"
    return {"mean_a": float(x.mean()), "mean_b": float(y.mean()), "difference": diff, "ci_low": lo, "ci_high": hi,
            "p_value": max(p, 1.0 / resamples), "n": int(len(d)), "resamples": resamples, "verdict": verdict}


def seed_summary(values: Sequence[float]) -> dict:
    """Mean and 95% Student-t interval of one metric over seeds."""
    r = mean_ci(values)
    return {"mean": r["mean"], "ci_low": r["ci_low"], "ci_high": r["ci_high"], "std": r["std"], "n": r["n"],
            "values": list(values)}
