"""Biases of an LLM judge, measured on its own verdicts: length, position and its own noise.

- score-length correlation: Pearson r of rubric scores with answer length (judges favour longer answers);
- length-controlled win rate, in the manner of AlpacaEval 2: a logistic regression of each pair's
  outcome on tanh(length difference / its standard deviation), read at a difference of zero;
- flip rate: the share of pairs whose verdict changes when the two answers swap places;
- sample agreement: two scores of the same answer (the second sampled at temperature 1) within a
  tenth of the scale of each other.
Each comes with the count it was measured on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def length_correlation(scores: Sequence[float | None], lengths: Sequence[int]) -> dict:
    """Pearson r of the parsed scores with the answers' lengths in characters."""
    pairs = [(float(s), float(n)) for s, n in zip(scores, lengths) if s is not None]
    if len(pairs) < 3:
        return {"r": math.nan, "n": len(pairs)}
    x, y = np.array([p[1] for p in pairs]), np.array([p[0] for p in pairs])
    if x.std() == 0 or y.std() == 0:
        return {"r": math.nan, "n": len(pairs), "note": "constant scores or lengths"}
    return {"r": float(np.corrcoef(x, y)[0, 1]), "n": len(pairs)}


def length_controlled_win_rate(outcomes: Sequence[float], length_diffs: Sequence[float], iters: int = 50) -> dict:
    """P(A wins) at equal length, from a logistic fit of outcome (1 win, 0.5 tie, 0 loss) on
    tanh(diff / std(diff)) with an intercept (Newton's method on the soft-label log-likelihood)."""
    y = np.asarray(outcomes, dtype=np.float64)
    d = np.asarray(length_diffs, dtype=np.float64)
    n = len(y)
    raw = float(y.mean()) if n else math.nan
    if n < 3:
        return {"lc_win_rate": math.nan, "win_rate": raw, "length_coef": math.nan, "n": n}
    z = np.tanh(d / d.std()) if d.std() > 0 else np.zeros(n)
    X = np.stack([np.ones(n), z], axis=1)
    w = np.zeros(2)
    ridge = 1e-3 * np.eye(2)  # keeps the fit finite when one side always wins
    for _ in range(iters):
        p = 1 / (1 + np.exp(-X @ w))
        grad = X.T @ (y - p) - ridge @ w
        hess = (X * (p * (1 - p))[:, None]).T @ X + ridge
        step = np.linalg.solve(hess, grad)
        w += step
        if np.abs(step).max() < 1e-8:
            break
    return {"lc_win_rate": float(1 / (1 + math.exp(-w[0]))), "win_rate": raw, "length_coef": float(w[1]), "n": n}


def flip_rate(verdict_pairs: Sequence[tuple[str, str]]) -> dict:
    """Share of pairs judged differently in the two orders (verdicts already mapped back to the models)."""
    n = len(verdict_pairs)
    flipped = sum(a != b for a, b in verdict_pairs)
    return {"flip_rate": flipped / n if n else math.nan, "n_flipped": flipped, "n": n}


def sample_agreement(first: Sequence[float | None], second: Sequence[float | None], scale: tuple[float, float]) -> dict:
    """How often two judge samples of the same answer agree (within a tenth of the scale)."""
    both = [(a, b) for a, b in zip(first, second) if a is not None and b is not None]
    tol = (scale[1] - scale[0]) / 10
    n = len(both)
    agree = sum(abs(a - b) <= tol for a, b in both)
    return {"agreement": agree / n if n else math.nan, "mean_abs_diff": (sum(abs(a - b) for a, b in both) / n) if n
            else math.nan, "tolerance": tol, "n": n}
