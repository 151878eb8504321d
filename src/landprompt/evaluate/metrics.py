"""Classification metrics from scikit-learn, with the project's conventions on top.

Conventions:

- classes without any true sample are left out of averages (their recall, AP and F1 are NaN): a
  subset of a benchmark may lack rare classes, and counting them as 0 would measure the subset;
- average precision is scikit-learn's ``average_precision_score``: the step-wise area under the
  precision-recall curve with tied scores taken together, ``sum_n (R_n - R_{n-1}) P_n``;
- multi-label predictions (:func:`multilabel_predictions`): a class is predicted when its softmax
  probability over the classes, at CLIP's logit scale, exceeds ``1 / num_classes`` (so the best class is
  always predicted, and more when several are about as likely); no label statistics are used.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn import metrics


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts int64 [true class, predicted class] over classes ``0 .. num_classes - 1``."""
    if np.asarray(y_true).size == 0:
        return np.zeros((num_classes, num_classes), dtype=np.int64)
    return metrics.confusion_matrix(y_true, y_pred, labels=np.arange(num_classes)).astype(np.int64)


def per_class_recall(confusion: np.ndarray) -> np.ndarray:
    """Recall of every class from a confusion matrix; NaN for classes without samples."""
    support = confusion.sum(axis=1)
    return np.divide(np.diag(confusion), support, out=np.full(support.shape, np.nan), where=support > 0)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of correct predictions (NaN without samples)."""
    return float(metrics.accuracy_score(y_true, y_pred)) if np.asarray(y_true).size else float("nan")


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes that have samples (NaN without samples)."""
    if np.asarray(y_true).size == 0:
        return float("nan")
    with warnings.catch_warnings():  # predicted classes without samples are left out, as intended
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")
        return float(metrics.balanced_accuracy_score(y_true, y_pred))


def average_precision(positive: np.ndarray, scores: np.ndarray) -> float:
    """Average precision of one class (tied scores one threshold); NaN when no sample has the class.

    Args:
        positive: Whether each sample has the class, bool [samples].
        scores: Scores, higher = more likely [samples].
    """
    positive = np.asarray(positive, dtype=bool)
    return float(metrics.average_precision_score(positive, scores)) if positive.any() else float("nan")


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
    micro = float(metrics.f1_score(labels, predicted, average="micro", zero_division=np.nan))
    per_class = metrics.f1_score(labels, predicted, average=None, zero_division=np.nan)
    per_class = np.where(labels.any(axis=0), per_class, np.nan)
    macro = float(np.nanmean(per_class)) if np.isfinite(per_class).any() else float("nan")
    return {"micro": micro, "macro": macro, "per_class": per_class}


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax."""
    shifted = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def multilabel_predictions(scores: np.ndarray, logit_scale: float) -> np.ndarray:
    """Predicted labels bool [samples, classes]: softmax(logit_scale * cosine) > 1 / classes."""
    return softmax(logit_scale * np.asarray(scores, dtype=np.float64)) > 1.0 / scores.shape[1]
