"""Classification metrics and small statistics shared by evaluation and finetuning.

Accuracy, per-class precision/recall/F1 (and their macro and weighted averages) and the confusion
matrix, computed from label sequences (lists, tuples or torch tensors), plus the mean with a
confidence interval used by the judge and the multiple-choice scores. Plain Python: the finetuning
loop calls these on every validation, the eval stage on a test split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

# two-sided 95% Student t critical values by degrees of freedom (1..30); above 30 the normal 1.96 is
# within 2% and is used (no scipy dependency for one table)
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042)


def _as_list(labels: Any) -> list[int]:
    if hasattr(labels, "tolist"):  # torch tensors and numpy arrays
        labels = labels.tolist()
    return [int(x) for x in labels]


def accuracy(y_true: Sequence[int] | Any, y_pred: Sequence[int] | Any) -> float:
    """Share of predictions equal to the truth (nan for no examples)."""
    t, p = _as_list(y_true), _as_list(y_pred)
    if len(t) != len(p):
        raise ValueError(f"{len(t)} true labels but {len(p)} predictions")
    return sum(a == b for a, b in zip(t, p)) / len(t) if t else math.nan


def confusion_matrix(y_true: Sequence[int] | Any, y_pred: Sequence[int] | Any,
                     num_classes: int | None = None) -> list[list[int]]:
    """matrix[true][predicted] = count; classes are 0..num_classes-1 (default: the largest label seen + 1)."""
    t, p = _as_list(y_true), _as_list(y_pred)
    if len(t) != len(p):
        raise ValueError(f"{len(t)} true labels but {len(p)} predictions")
    n = num_classes if num_classes is not None else (max(t + p) + 1 if t else 0)
    m = [[0] * n for _ in range(n)]
    for a, b in zip(t, p):
        if not (0 <= a < n and 0 <= b < n):
            raise ValueError(f"label {a if not 0 <= a < n else b} outside 0..{n - 1}")
        m[a][b] += 1
    return m


def _safe_div(a: float, b: float) -> float:
    # scikit-learn's zero_division=0: an empty class scores 0 rather than nan, so averages stay defined
    return a / b if b else 0.0


def classification_report(y_true: Sequence[int] | Any, y_pred: Sequence[int] | Any,
                          num_classes: int | None = None, class_names: Sequence[str] | None = None) -> dict:
    """Accuracy, per-class precision/recall/F1/support, macro and weighted averages, confusion matrix.

    Precision of a class never predicted (or recall of a class absent from the truth) is 0, as in
    scikit-learn's `zero_division=0`.
    """
    m = confusion_matrix(y_true, y_pred, num_classes)
    n = len(m)
    names = list(class_names) if class_names is not None else [str(i) for i in range(n)]
    if len(names) != n:
        raise ValueError(f"{len(names)} class names for {n} classes")
    total = sum(map(sum, m))
    per_class: list[dict[str, Any]] = []
    for c in range(n):
        tp = m[c][c]
        predicted = sum(m[r][c] for r in range(n))
        support = sum(m[c])
        precision, recall = _safe_div(tp, predicted), _safe_div(tp, support)
        f1 = _safe_div(2 * precision * recall, precision + recall)
        per_class.append({"class": c, "name": names[c], "precision": precision, "recall": recall,
                          "f1": f1, "support": support})

    def avg(key: str, weighted: bool) -> float:
        if not per_class:
            return math.nan
        if weighted:
            return _safe_div(sum(pc[key] * pc["support"] for pc in per_class), total)
        return sum(pc[key] for pc in per_class) / n

    return {
        "accuracy": _safe_div(sum(m[c][c] for c in range(n)), total) if total else math.nan,
        "n": total,
        "per_class": per_class,
        "macro": {k: avg(k, False) for k in ("precision", "recall", "f1")},
        "weighted": {k: avg(k, True) for k in ("precision", "recall", "f1")},
        "confusion_matrix": m,
        "majority_baseline": max((sum(row) for row in m), default=0) / total if total else math.nan,
    }


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> dict:
    """Mean, sample standard deviation, standard error and a 95% Student-t confidence interval."""
    if confidence != 0.95:
        raise ValueError("only 95% intervals are tabulated")
    xs = [float(v) for v in values]
    n = len(xs)
    if n == 0:
        return {"mean": math.nan, "std": math.nan, "stderr": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 0}
    mean = sum(xs) / n
    if n == 1:
        return {"mean": mean, "std": math.nan, "stderr": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 1}
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    se = std / math.sqrt(n)
    t = _T95[n - 2] if n - 1 <= len(_T95) else 1.96
    return {"mean": mean, "std": std, "stderr": se, "ci_low": mean - t * se, "ci_high": mean + t * se, "n": n}


def proportion_ci(successes: float, n: int) -> dict:
    """A share with its 95% Wilson score interval (well-behaved near 0 and 1 and for small n)."""
    if n <= 0:
        return {"rate": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 0}
    z = 1.96
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return {"rate": p, "ci_low": max(0.0, centre - half), "ci_high": min(1.0, centre + half), "n": n}
