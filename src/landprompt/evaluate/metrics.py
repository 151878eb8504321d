"""Classification metrics in NumPy: single-label (accuracy, balanced accuracy, confusion) and multi-label.

Conventions:

- classes without any true sample are left out of averages (their recall, AP and F1 are NaN): a
  subset of a benchmark may lack rare classes, and counting them as 0 would measure the subset;
- average precision is the step-wise area under the precision-recall curve with tied scores taken
  together, ``sum_n (R_n - R_{n-1}) P_n`` over distinct score thresholds (as scikit-learn computes it);
- multi-label predictions (:func:`multilabel_predictions`): a class is predicted when its softmax
  probability over the classes, at CLIP's logit scale, exceeds ``1 / num_classes`` (so the best class is
  always predicted, and more when several are about as likely); no label statistics are used.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts int64 [true class, predicted class]."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return matrix


def per_class_recall(confusion: np.ndarray) -> np.ndarray:
    """Recall of every class from a confusion matrix; NaN for classes without samples."""
    support = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(confusion) / support, np.nan)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of correct predictions (NaN without samples)."""
    y_true = np.asarray(y_true)
    return float(np.mean(y_true == np.asarray(y_pred))) if y_true.size else float("nan")


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Mean recall over the classes that have samples."""
    recall = per_class_recall(confusion_matrix(y_true, y_pred, num_classes))
    return float(np.nanmean(recall)) if np.isfinite(recall).any() else float("nan")


def average_precision(positive: np.ndarray, scores: np.ndarray) -> float:
    """Average precision of one class: ``sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds.

    Args:
        positive: Whether each sample has the class, bool [samples].
        scores: Scores, higher = more likely [samples].

    Returns:
        AP in [0, 1]; NaN when no sample has the class.
    """
    positive = np.asarray(positive, dtype=bool)
    total = positive.sum()
    if total == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    ranked, hits = np.asarray(scores, dtype=np.float64)[order], positive[order]
    ends = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]  # last index of each tie group
    tp = np.cumsum(hits)[ends]
    precision = tp / (ends + 1)
    recall = tp / total
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(labels: np.ndarray, scores: np.ndarray) -> tuple[float, np.ndarray]:
    """Macro mAP over the classes that have positives, and the AP of every class (NaN without any).

    Args:
        labels: bool [samples, classes].
        scores: float [samples, classes].
    """
    per_class = np.array([average_precision(labels[:, k], scores[:, k]) for k in range(labels.shape[1])])
    present = np.isfinite(per_class)
    return (float(per_class[present].mean()) if present.any() else float("nan")), per_class


def f1_scores(labels: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """Micro and macro F1 of multi-label predictions.

    Micro F1 pools every (sample, class) decision: ``2 TP / (2 TP + FP + FN)``. Macro F1 is the mean of
    the per-class F1 over the classes that have positives.

    Args:
        labels: True labels, bool [samples, classes].
        predicted: Predicted labels, bool [samples, classes].

    Returns:
        ``{"micro": float, "macro": float, "per_class": float array (NaN for classes without positives)}``.
    """
    labels, predicted = np.asarray(labels, dtype=bool), np.asarray(predicted, dtype=bool)
    tp = (labels & predicted).sum(axis=0)
    fp = (~labels & predicted).sum(axis=0)
    fn = (labels & ~predicted).sum(axis=0)
    denominator = 2 * tp.sum() + fp.sum() + fn.sum()
    micro = float(2 * tp.sum() / denominator) if denominator else float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(labels.any(axis=0), 2 * tp / (2 * tp + fp + fn), np.nan)
    macro = float(np.nanmean(per_class)) if np.isfinite(per_class).any() else float("nan")
    return {"micro": micro, "macro": macro, "per_class": per_class}


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax."""
    shifted = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def multilabel_predictions(scores: np.ndarray, logit_scale: float) -> np.ndarray:
    """Predicted labels bool [samples, classes]: softmax(logit_scale * cosine) > 1 / classes."""
    return softmax(logit_scale * np.asarray(scores, dtype=np.float64)) > 1.0 / scores.shape[1]
