"""Evaluation statistics by scikit-learn, with the project's conventions on top.

- A score a sample leaves undefined is NaN: the AUC unless both classes occur, the AP and F1 of a class
  without positives (macro means leave those out, so a benchmark subset lacking a class is measured fairly).
- Reliability: ``bins`` equal-width bins of ``p`` (bin ``i`` holds ``i/bins <= p < (i+1)/bins``, the last
  one 1 too); ``ECE = sum_b n_b / n * |observed_b - mean_p_b|``.
- Multi-label predictions: the classes whose softmax probability at CLIP's logit scale exceeds
  ``1 / classes`` (the best class always; more when several are about as likely).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.special import softmax
from sklearn import metrics


def multilabel_predictions(scores: np.ndarray, logit_scale: float) -> np.ndarray:
    """Predicted labels bool [samples, classes]: softmax(logit_scale * cosine) > 1 / classes."""
    return softmax(logit_scale * np.asarray(scores, dtype=np.float64), axis=-1) > 1.0 / scores.shape[1]


def roc_auc(present: np.ndarray, scores: np.ndarray) -> float:
    """``roc_auc_score`` (ties count half); NaN unless there are both presences and absences."""
    y = np.asarray(present, dtype=bool)
    return float(metrics.roc_auc_score(y, scores)) if y.any() and not y.all() else float("nan")


def reliability(present: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Per equal-width bin of ``p``: its bounds, count, mean ``p`` and observed frequency (NaN if empty)."""
    y, p = np.asarray(present, dtype=np.float64), np.asarray(p, dtype=np.float64)
    index = np.clip(np.floor(p * bins).astype(int), 0, bins - 1)  # floor: 0.3 is in [0.3, 0.4)
    count, edges = np.bincount(index, minlength=bins), np.linspace(0.0, 1.0, bins + 1)
    with np.errstate(invalid="ignore"):
        mean_p, seen = (np.bincount(index, weights=w, minlength=bins) / count for w in (p, y))
    table = {"lower": edges[:-1], "upper": edges[1:], "count": count, "mean_probability": mean_p}
    return pd.DataFrame(table | {"observed": seen})


def binary_metrics(present: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """AUC, average precision, ECE, Brier score, counts and the reliability table of predictions."""
    y, p = np.asarray(present, dtype=bool), np.asarray(p, dtype=np.float64)
    table = reliability(y, p, bins)
    return {
        "n": int(y.size),
        "n_present": int(y.sum()),
        "auc": roc_auc(y, p),
        "average_precision": float(metrics.average_precision_score(y, p)) if y.any() else float("nan"),
        "ece": float((table["count"] * (table["observed"] - table["mean_probability"]).abs()).sum() / y.size),
        "brier": float(metrics.brier_score_loss(y, p)),
        "reliability": table.to_dict(orient="list"),
    }
