"""Metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from landprompt.evaluate.metrics import (
    accuracy,
    average_precision,
    balanced_accuracy,
    confusion_matrix,
    f1_scores,
    mean_average_precision,
    multilabel_predictions,
    per_class_recall,
    softmax,
)


def test_confusion_recall_and_balanced_accuracy() -> None:
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 0, 2])
    confusion = confusion_matrix(y_true, y_pred, 4)
    assert confusion.tolist() == [[2, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    recall = per_class_recall(confusion)
    np.testing.assert_allclose(recall[:3], [2 / 3, 1 / 2, 1.0])
    assert np.isnan(recall[3])  # no sample of class 3: left out of the mean
    assert balanced_accuracy(y_true, y_pred) == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert accuracy(y_true, y_pred) == pytest.approx(4 / 6)


def test_average_precision_by_hand() -> None:
    # ranks: hit (P 1, R 1/2), miss, hit (P 2/3, R 1): AP = 1/2 * 1 + 1/2 * 2/3
    ranked = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    assert average_precision(np.array([1, 0, 1, 0, 0]), ranked) == pytest.approx(5 / 6)
    # a tie of a hit and a miss is one threshold: P 2/3 at R 1
    assert average_precision(np.array([1, 0, 1, 0]), np.array([0.9, 0.5, 0.5, 0.1])) == pytest.approx(5 / 6)
    assert average_precision(np.array([0, 1]), np.array([0.9, 0.1])) == pytest.approx(1 / 2)
    assert np.isnan(average_precision(np.zeros(3, bool), np.arange(3.0)))


def test_mean_average_precision_skips_classes_without_positives() -> None:
    labels = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=bool)
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.5], [0.1, 0.3, 0.5]])
    m_ap, per_class = mean_average_precision(labels, scores)
    # class 0: ranks s0 (hit), s1 (miss), s2 (hit) -> 1/2 + 1/2 * 2/3; class 1: s1, s2 hits -> 1
    np.testing.assert_allclose(per_class[:2], [5 / 6, 1.0])
    assert np.isnan(per_class[2]) and m_ap == pytest.approx((5 / 6 + 1) / 2)


def test_f1_micro_and_macro_by_hand() -> None:
    labels = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=bool)
    predicted = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 0]], dtype=bool)
    f1 = f1_scores(labels, predicted)
    # TP 2, FP 1, FN 2; per class 2/3, 2/3, 0
    assert f1["micro"] == pytest.approx(4 / 7)
    np.testing.assert_allclose(f1["per_class"], [2 / 3, 2 / 3, 0.0])
    assert f1["macro"] == pytest.approx(4 / 9)
    no_positive = f1_scores(np.zeros((2, 2), bool) | [True, False], np.ones((2, 2), bool))
    # class 1 has no positive: out of the macro mean, but its false positives count in the micro F1
    assert np.isnan(no_positive["per_class"][1]) and no_positive["macro"] == 1.0
    assert no_positive["micro"] == pytest.approx(4 / 6)


def test_multilabel_rule_is_softmax_above_uniform() -> None:
    scores = np.array([[0.3, 0.1, 0.2], [0.5, 0.5, 0.0], [0.2, 0.2, 0.2]])
    predicted = multilabel_predictions(scores, logit_scale=10.0)
    assert predicted.tolist() == [[True, False, False], [True, True, False], [False, False, False]]
    np.testing.assert_allclose(softmax(np.log(np.array([[1.0, 3.0]]))), [[0.25, 0.75]])
