"""Fitting a monotone recalibration of concept probabilities to field observations, with scikit-learn.

- ``platt``: ``sigmoid(a * logit(p) + b)`` with ``a >= 0``, a ``LogisticRegression`` on ``logit(p)``
  against Platt's smoothed targets (``(n+ + 1) / (n+ + 2)`` and ``1 / (n- + 2)``, each point entered as
  a presence and an absence weighted by its target), so separable data gives finite parameters;
- ``isotonic``: the non-decreasing step function of ``IsotonicRegression`` (points with tied ``p``
  pooled first), kept as the ends of its steps.

The result is a :class:`~landprompt.calibration.Calibration`, the saved form that
:mod:`landprompt.query` applies.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any, get_args

import numpy as np

from landprompt.calibration import Calibration, Method, QuerySettings, logit
from landprompt.errors import BadInputError


def fit_calibration(
    p: np.ndarray,
    present: np.ndarray,
    method: Method = "platt",
    query: QuerySettings | None = None,
    cube: str | os.PathLike[str] | None = None,
    metrics: dict[str, Any] | None = None,
) -> Calibration:
    """Fit a monotone recalibration of raw probabilities to observed presence (1) / absence (0).

    Args:
        p: Raw probabilities [n].
        present: Observed labels [n] (bool or 0/1).
        method: ``"platt"`` or ``"isotonic"``.
        query: The query ``p`` came from, recorded and checked when the calibration is applied.
        cube: The cube the points were sampled from (recorded).
        metrics: Metrics to record with it.

    Returns:
        The fitted :class:`Calibration`.
    """
    p, y = np.asarray(p, dtype=np.float64), np.asarray(present, dtype=bool)
    if p.ndim != 1 or p.shape != y.shape or p.size == 0 or not np.all(np.isfinite(p)):
        raise BadInputError("fitting a calibration needs as many finite probabilities as labels (at least 1)")
    if method not in get_args(Method):
        raise BadInputError(f"unknown calibration method {method!r}; choose platt or isotonic")
    parameters = fit_platt(p, y) if method == "platt" else fit_isotonic(p, y)
    created = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    return Calibration(
        method, parameters, query, int(p.size), metrics or {}, created, None if cube is None else str(cube)
    )


def fit_platt(p: np.ndarray, present: np.ndarray) -> dict[str, float]:
    """Platt scaling (see the module): ``{"a", "b"}``; a negative slope becomes ``a = 0`` and the base rate.

    A concept anti-correlated with the observations has no monotone recalibration: it gets a flat one.
    """
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(present, dtype=bool)
    target = np.where(y, (y.sum() + 1) / (y.sum() + 2), 1 / ((~y).sum() + 2))
    x = np.tile(logit(np.asarray(p, dtype=np.float64)), 2)[:, None]
    model = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000)
    model.fit(x, np.repeat([1, 0], y.size), sample_weight=np.r_[target, 1 - target])
    a, b = float(model.coef_[0, 0]), float(model.intercept_[0])
    return {"a": a, "b": b} if a >= 0 else {"a": 0.0, "b": float(logit(target.mean()))}


def fit_isotonic(p: np.ndarray, present: np.ndarray) -> dict[str, list[float]]:
    """Isotonic regression (see the module): knots ``{"x", "y"}``, the ends of each step."""
    from sklearn.isotonic import IsotonicRegression

    model = IsotonicRegression().fit(np.asarray(p, dtype=np.float64), np.asarray(present, dtype=np.float64))
    return {"x": model.X_thresholds_.tolist(), "y": model.y_thresholds_.tolist()}
