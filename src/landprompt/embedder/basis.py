"""A stored basis for compact embedding cubes (format version 2).

A version-2 cube keeps each pixel's d-dimensional embedding ``e = normalize(B z + b)`` as ``r + 1`` code
values ``v = [u, t]`` with ``u = z / n``, ``t = 1 / n`` and ``n = ||B z + b||``, so that

    e = B u + b t          and          cos(c, e) = [B^T c, b . c] . v     for a unit vector c.

The per-pixel norm is folded into the codes: the cosine of any unit query is one inner product of
``r + 1`` numbers, exact up to the codes' quantisation. The last code value is stored as ``a t`` with a
per-basis ``norm_scale`` ``a`` (the median of ``max|z|`` over the PCA sample), so that it is about as large
as the largest ``u`` value: int8 codes share one per-pixel scale, and an unscaled ``t`` (about 1, while
``u`` is about 0.1) would leave ``u`` a few quantisation levels. ``B`` (d x r) and ``b`` (d,) are stored once.
They come from a linear head (``sits``: exact, ``z`` is the pooled backbone feature) or from a PCA of a
reproducible sample of the run's own embeddings (any other encoder).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from landprompt.errors import BadInputError

#: Default rank of a PCA basis.
DEFAULT_RANK = 64
#: Explained variance a PCA basis keeps at least, growing its rank beyond the requested one if needed.
DEFAULT_VARIANCE = 0.999


@dataclass(frozen=True)
class Basis:
    """``B`` (d x r), ``b`` (d,) and what they came from.

    Attributes:
        matrix: float32 (d, r).
        offset: float32 (d,).
        kind: ``"linear_head"`` (exact) or ``"pca"``.
        info: JSON-able provenance (explained variance, sample size, seed, ...).
        feature_map: Optional (r, r) ``R`` with ``B z_in = B' (R z_in)`` for writers whose features
            live in another coordinate system (a linear head's input); not stored in the cube.
        norm_scale: ``a`` > 0: the codes store ``a t`` in place of ``t`` (1 in version-2 cubes).
    """

    matrix: np.ndarray
    offset: np.ndarray
    kind: str
    info: dict[str, Any] = field(default_factory=dict)
    feature_map: np.ndarray | None = None
    norm_scale: float = 1.0

    def __post_init__(self) -> None:
        matrix = np.asarray(self.matrix, dtype=np.float32)
        offset = np.asarray(self.offset, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[1] < 1 or matrix.shape[1] > matrix.shape[0]:
            raise BadInputError(f"a basis must have shape (d, r) with 1 <= r <= d, got {matrix.shape}")
        if offset.shape != (matrix.shape[0],):
            raise BadInputError(f"the basis offset must have shape ({matrix.shape[0]},), got {offset.shape}")
        if not (np.isfinite(matrix).all() and np.isfinite(offset).all()):
            raise BadInputError("the basis or its offset holds NaN or infinite values")
        if not (math.isfinite(self.norm_scale) and self.norm_scale > 0):
            raise BadInputError(f"the basis norm scale must be finite and > 0, got {self.norm_scale!r}")
        object.__setattr__(self, "matrix", matrix)
        object.__setattr__(self, "offset", offset)

    @property
    def dim(self) -> int:
        """d: the embedding dimension."""
        return int(self.matrix.shape[0])

    @property
    def rank(self) -> int:
        """r: values of ``z`` a pixel."""
        return int(self.matrix.shape[1])

    @property
    def code_size(self) -> int:
        """Values a pixel stores, r + 1 (``u`` and ``t``)."""
        return self.rank + 1

    def codes_from_features(self, features: np.ndarray) -> np.ndarray:
        """Codes ``[z / n, a / n]`` (..., r + 1) of features ``z`` (..., r); zero where ``B z + b`` is 0."""
        z = np.asarray(features, dtype=np.float32)
        if z.shape[-1] != self.rank:
            raise BadInputError(f"features must have {self.rank} values a pixel, got {z.shape[-1]}")
        if self.feature_map is not None:
            z = z @ self.feature_map.T
        norm = np.linalg.norm(z @ self.matrix.T + self.offset, axis=-1, keepdims=True)
        inv = np.divide(1.0, norm, out=np.zeros_like(norm), where=norm > 0)
        return np.concatenate([z * inv, inv * np.float32(self.norm_scale)], axis=-1).astype(np.float32)

    def codes_from_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """Codes (..., r + 1) of full embeddings (..., d), through the least-squares features."""
        e = np.asarray(embeddings, dtype=np.float32)
        if e.shape[-1] != self.dim:
            raise BadInputError(f"embeddings must have {self.dim} values a pixel, got {e.shape[-1]}")
        features = (e - self.offset) @ np.linalg.pinv(self.matrix).T
        codes = self.codes_from_features(features)
        codes[~np.any(e != 0, axis=-1)] = 0  # a zero (invalid) pixel stays zero
        return codes

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Unit embeddings (..., d) from codes (..., r + 1): ``B u + b t``."""
        codes = np.asarray(codes, dtype=np.float32)
        return codes[..., :-1] @ self.matrix.T + codes[..., -1:] * (self.offset / self.norm_scale)

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """Query vectors (m, d) into code space (m, r + 1): ``[B^T c, b . c / a]``."""
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if vectors.shape[1] != self.dim:
            raise BadInputError(f"vectors have dimension {vectors.shape[1]}, the cube {self.dim}")
        offset = (vectors @ self.offset)[:, None] / np.float32(self.norm_scale)
        return np.concatenate([vectors @ self.matrix, offset], axis=1)


def fit_pca(
    sample: np.ndarray,
    rank: int = DEFAULT_RANK,
    min_variance: float | None = DEFAULT_VARIANCE,
    max_rank: int | None = None,
    seed: int = 0,
) -> Basis:
    """A PCA basis of a sample of embeddings (n, d): the mean as offset, the top principal axes as ``B``.

    The rank is the smallest ``r >= rank`` whose axes keep ``min_variance`` of the variance (capped at
    ``max_rank``, default ``2 * rank``, and at d); ``min_variance=None`` keeps exactly ``rank``.

    Raises:
        BadInputError: if the rank exceeds d or the sample is too small or not finite.
    """
    sample = np.asarray(sample, dtype=np.float64)
    if sample.ndim != 2:
        raise BadInputError(f"a PCA sample must have shape (n, d), got {sample.shape}")
    n, dim = sample.shape
    if rank < 1 or rank > dim:
        raise BadInputError(f"basis rank must be between 1 and the embedding dimension {dim}, got {rank}")
    if n < 2 or not np.isfinite(sample).all():
        raise BadInputError(f"a PCA basis needs at least 2 finite embeddings, got {n}")
    mean = sample.mean(axis=0)
    _, singular, axes = np.linalg.svd(sample - mean, full_matrices=False)
    variance = singular**2
    kept = np.cumsum(variance) / max(float(variance.sum()), 1e-30)
    r = rank
    if min_variance is not None:
        cap = min(dim, max_rank or 2 * rank, len(kept))
        r = int(min(cap, max(rank, np.searchsorted(kept, min_variance) + 1)))
    r = min(r, axes.shape[0])
    features = (sample - mean) @ axes[:r].T
    norm_scale = float(np.median(np.abs(features).max(axis=1)))
    info = {
        "explained_variance": float(kept[r - 1]),
        "requested_rank": int(rank),
        "min_variance": min_variance,
        "sample_size": int(n),
        "seed": int(seed),
    }
    matrix, offset = axes[:r].T.astype(np.float32), mean.astype(np.float32)
    return Basis(matrix, offset, "pca", info, norm_scale=norm_scale if norm_scale > 0 else 1.0)


def linear_head_basis(
    weight: np.ndarray, bias: np.ndarray | None, info: dict[str, Any] | None = None
) -> Basis:
    """The exact basis of a linear head ``e = W z + b`` (weight (d, r) as torch's ``Linear.weight``).

    ``W = Q R`` is stored as its orthonormal factor ``Q`` and features ``z`` are written as ``R z``, so
    code quantisation errors are not amplified by a badly conditioned head (cosines stay exact).
    """
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 2 or not 1 <= weight.shape[1] <= weight.shape[0] or not np.isfinite(weight).all():
        raise BadInputError(
            f"a linear head weight must be finite with shape (d, r), r <= d, got {weight.shape}"
        )
    q, r = np.linalg.qr(weight)
    offset = np.zeros(weight.shape[0], np.float32) if bias is None else np.asarray(bias, np.float32)
    return Basis(q.astype(np.float32), offset, "linear_head", dict(info or {}), r.astype(np.float32))
