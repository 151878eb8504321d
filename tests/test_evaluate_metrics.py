"""Metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from landprompt.evaluate.metrics import binary_metrics, multilabel_predictions
from landprompt.evaluate.zeroshot import multilabel_results, single_label_results


def test_confusion_recall_and_balanced_accuracy() -> None:
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 0, 2])
    result = single_label_results(np.eye(4)[y_pred], y_true, ["a", "b", "c", "d"])
    assert result["confusion_matrix"] == [[2, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    recall = result["per_class_recall"]
    np.testing.assert_allclose([recall["a"], recall["b"], recall["c"]], [2 / 3, 1 / 2, 1.0])
    assert np.isnan(recall["d"])  # no sample of class d: left out of the mean
    assert result["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert result["top1"] == pytest.approx(4 / 6)


def average_precision(positive: np.ndarray, scores: np.ndarray) -> float:
    return binary_metrics(positive, scores)["average_precision"]


def test_average_precision_by_hand() -> None:
    # ranks: hit (P 1, R 1/2), miss, hit (P 2/3, R 1): AP = 1/2 * 1 + 1/2 * 2/3
    ranked = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    assert average_precision(np.array([1, 0, 1, 0, 0]), ranked) == pytest.approx(5 / 6)
    # a tie of a hit and a miss is one threshold: P 2/3 at R 1
    assert average_precision(np.array([1, 0, 1, 0]), np.array([0.9, 0.5, 0.5, 0.1])) == pytest.approx(5 / 6)
    assert average_precision(np.array([0, 1]), np.array([0.9, 0.1])) == pytest.approx(1 / 2)
    assert np.isnan(average_precision(np.zeros(3, bool), np.arange(3.0) / 3))


def test_mean_average_precision_skips_classes_without_positives() -> None:
    labels = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=bool)
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.5], [0.1, 0.3, 0.5]])
    result = multilabel_results(scores, labels, ["a", "b", "c"], logit_scale=10.0)
    # class 0: ranks s0 (hit), s1 (miss), s2 (hit) -> 1/2 + 1/2 * 2/3; class 1: s1, s2 hits -> 1
    per_class = result["per_class_ap"]
    np.testing.assert_allclose([per_class["a"], per_class["b"]], [5 / 6, 1.0])
    assert np.isnan(per_class["c"]) and result["mAP"] == pytest.approx((5 / 6 + 1) / 2)


def f1_scores(labels: np.ndarray, predicted: np.ndarray) -> dict:
    """The F1 figures of ``multilabel_results`` for exactly these predictions (1/0 scores, a large scale)."""
    scores = predicted.astype(float)
    assert (multilabel_predictions(scores, 1e3) == predicted).all()
    result = multilabel_results(scores, labels, [str(k) for k in range(labels.shape[1])], logit_scale=1e3)
    return {"micro": result["micro_f1"], "macro": result["macro_f1"], "per_class": result["per_class_f1"]}


def test_f1_micro_and_macro_by_hand() -> None:
    labels = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=bool)
    predicted = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 0]], dtype=bool)
    f1 = f1_scores(labels, predicted)
    # TP 2, FP 1, FN 2; per class 2/3, 2/3, 0
    assert f1["micro"] == pytest.approx(4 / 7)
    np.testing.assert_allclose(list(f1["per_class"].values()), [2 / 3, 2 / 3, 0.0])
    assert f1["macro"] == pytest.approx(4 / 9)
    no_positive = f1_scores(np.array([[1, 0], [1, 0]], bool), np.array([[1, 0], [0, 1]], bool))
    # class 1 has no positive: out of the macro mean, but its false positive counts in the micro F1
    assert np.isnan(no_positive["per_class"]["1"]) and no_positive["macro"] == pytest.approx(2 / 3)
    assert no_positive["micro"] == pytest.approx(2 / 4)


def test_multilabel_rule_is_softmax_above_uniform() -> None:
    scores = np.array([[0.3, 0.1, 0.2], [0.5, 0.5, 0.0], [0.2, 0.2, 0.2]])
    predicted = multilabel_predictions(scores, logit_scale=10.0)
    assert predicted.tolist() == [[True, False, False], [True, True, False], [False, False, False]]
    # softmax([log 1, log 3]) = [0.25, 0.75]: only the second is above 1/2
    assert multilabel_predictions(np.log(np.array([[1.0, 3.0]])), 1.0).tolist() == [[False, True]]
