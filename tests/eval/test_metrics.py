"""Classification metrics and intervals against hand-computed values."""

import math

import pytest
import torch

from core.eval.metrics import accuracy, classification_report, confusion_matrix, mean_ci, proportion_ci


def test_confusion_matrix_and_report_match_hand_counts():
    y_true = [0, 0, 0, 1, 1, 2, 2, 2, 2, 2]
    y_pred = [0, 1, 0, 1, 2, 2, 2, 0, 2, 2]
    assert confusion_matrix(y_true, y_pred) == [[2, 1, 0], [0, 1, 1], [1, 0, 4]]
    r = classification_report(torch.tensor(y_true), torch.tensor(y_pred), class_names=["a", "b", "c"])
    assert r["accuracy"] == pytest.approx(0.7)
    assert r["n"] == 10
    a, b, c = r["per_class"]
    # class a: tp 2, predicted 3, support 3; b: tp 1, predicted 2, support 2; c: tp 4, predicted 5, support 5
    assert (a["precision"], a["recall"]) == pytest.approx((2 / 3, 2 / 3))
    assert (b["precision"], b["recall"], b["f1"]) == pytest.approx((0.5, 0.5, 0.5))
    assert (c["precision"], c["recall"], c["f1"]) == pytest.approx((0.8, 0.8, 0.8))
    assert c["name"] == "c" and c["support"] == 5
    assert r["macro"]["f1"] == pytest.approx((2 / 3 + 0.5 + 0.8) / 3)
    assert r["weighted"]["f1"] == pytest.approx((2 / 3 * 3 + 0.5 * 2 + 0.8 * 5) / 10)
    assert r["majority_baseline"] == pytest.approx(0.5)


def test_a_class_never_predicted_scores_zero_not_nan():
    r = classification_report([0, 1, 1], [1, 1, 1], num_classes=3)
    assert r["per_class"][0]["precision"] == 0.0 and r["per_class"][0]["recall"] == 0.0
    assert r["per_class"][2]["support"] == 0 and r["per_class"][2]["f1"] == 0.0
    assert r["confusion_matrix"] == [[0, 1, 0], [0, 2, 0], [0, 0, 0]]


def test_accuracy_and_errors():
    assert accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == 0.5
    assert math.isnan(accuracy([], []))
    with pytest.raises(ValueError):
        accuracy([1, 0], [1])
    with pytest.raises(ValueError):
        confusion_matrix([0, 3], [0, 1], num_classes=2)


def test_mean_ci_uses_student_t_for_small_samples():
    ci = mean_ci([1.0, 2.0, 3.0, 4.0])
    sd = math.sqrt(sum((x - 2.5) ** 2 for x in [1, 2, 3, 4]) / 3)
    assert ci["mean"] == 2.5 and ci["std"] == pytest.approx(sd)
    assert ci["ci_high"] - ci["mean"] == pytest.approx(3.182 * sd / 2)
    big = mean_ci([float(i % 2) for i in range(100)])
    assert big["ci_high"] - big["mean"] == pytest.approx(1.96 * big["stderr"])
    assert mean_ci([])["n"] == 0 and math.isnan(mean_ci([5.0])["stderr"])


def test_wilson_interval():
    p = proportion_ci(0, 10)
    assert p["rate"] == 0 and p["ci_low"] == 0 and 0.25 < p["ci_high"] < 0.35
    q = proportion_ci(5, 10)
    assert q["ci_low"] == pytest.approx(1 - q["ci_high"])
