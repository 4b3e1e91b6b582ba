"""A bag-of-words logistic-regression baseline for classification, beside the finetuned model.

Fit on the same training split the model was finetuned on and scored on the same test split: a
word-count vector per text (lowercased words, the 5,000 most frequent training words), an L2-
regularised multinomial logistic regression trained full-batch with L-BFGS in torch. If a model
does not beat this, its finetuning learned no more than which words go with which label.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import torch

from core.eval.metrics import accuracy, proportion_ci

MAX_FEATURES = 5000
_WORD = re.compile(r"[a-z0-9']+")


def _vectors(texts: Sequence[str], vocab: dict[str, int]) -> torch.Tensor:
    x = torch.zeros(len(texts), len(vocab))
    for i, t in enumerate(texts):
        for w, c in Counter(_WORD.findall(t.lower())).items():
            j = vocab.get(w)
            if j is not None:
                x[i, j] = float(c)
    return x


def bag_of_words_baseline(train_texts: Sequence[str], train_labels: Sequence[int], test_texts: Sequence[str],
                          test_labels: Sequence[int], num_classes: int, l2: float = 1e-3,
                          max_features: int = MAX_FEATURES) -> dict:
    """Test accuracy (with its 95% interval) of a bag-of-words logistic regression."""
    counts = Counter(w for t in train_texts for w in set(_WORD.findall(t.lower())))
    vocab = {w: i for i, (w, _) in enumerate(counts.most_common(max_features))}
    x, y = _vectors(train_texts, vocab), torch.tensor(list(train_labels), dtype=torch.long)
    torch.manual_seed(0)
    linear = torch.nn.Linear(len(vocab), num_classes)
    opt = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(x), y) + l2 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        pred = linear(_vectors(test_texts, vocab)).argmax(-1).tolist()
    acc = accuracy(list(test_labels), pred)
    ci = proportion_ci(acc * len(pred), len(pred))
    return {"accuracy": acc, "ci_low": ci["ci_low"], "ci_high": ci["ci_high"], "n": len(pred),
            "n_train": len(train_texts), "features": len(vocab), "model": "bag-of-words logistic regression"}
