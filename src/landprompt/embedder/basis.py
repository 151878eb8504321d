"""A stored basis for compact embedding cubes (format versions 2, 3 and 4).

A pixel's d-dimensional embedding is ``e = normalize(B v[:r] + o v[r])``: ``B`` (d x r) and ``o`` (d,) are
stored once, a pixel stores the code values ``v``. For a unit query ``c``,
``cos(c, e) = [B^T c, o . c] . v / ||B v[:r] + o v[r]||``.

Format version 4 (:meth:`Basis.diagonal`) keeps ``B`` orthonormal and ``o`` orthogonal to it, so the norm
is a diagonal quadratic form of the codes, ``||B v[:r] + o v[r]||^2 = sum_i w_i v_i^2`` with weights
``w = [1, ..., 1, ||o||^2]`` (stored in the basis attrs): a pixel's scale follows from its codes and int8
codes are stored as ``round(127 v / max|v|)`` with nothing else. ``o = b / a`` for the offset ``b`` of
``e = normalize(B0 z + b)`` (a linear head's bias, a PCA mean) and a gain ``a`` that keeps the last code
about as large as the others (the median largest code of the PCA sample; 1 for a head). A head without
bias stores ``r`` codes, no ``o``. ``B`` is turned by a fixed seeded rotation, which spreads the energy of
the codes evenly over them (PCA coordinates would otherwise leave the last axes a few int8 levels).

Versions 2 and 3 (read only) stored ``v = [u, a t]`` with ``u = z / n``, ``t = 1 / n``,
``n = ||B z + b||``, ``e = B u + b t``, an offset not orthogonal to ``B`` and a per-pixel int8 scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from landprompt.errors import BadInputError

#: Default rank of a PCA basis.
DEFAULT_RANK = 64
#: Explained variance a PCA basis keeps at least, growing its rank beyond the requested one if needed.
DEFAULT_VARIANCE = 0.999
#: Seed of the fixed rotation of a version-4 basis (None: no rotation).
ROTATION_SEED: int | None = 0
#: Size of a head's mean embedding, relative to its embeddings' root mean square, below which the data hold
#: no common part (float32 precision) and the head basis keeps its offset along the bias.
MEAN_FLOOR = 1e-6
#: A head basis centred on the data is kept where its int8 error is below this fraction of the bias split's
#: (a margin, so that tiny floating-point differences between machines do not flip the choice).
CENTRED_MARGIN = 0.99


@dataclass(frozen=True)
class Basis:
    """``B`` (d x r), the offset (d,) and what they came from.

    Attributes:
        matrix: float32 (d, r).
        offset: float32 (d,): ``o`` (version 4) or ``b`` (versions 2 and 3).
        kind: ``"linear_head"`` (exact) or ``"pca"``.
        info: JSON-able provenance (explained variance, sample size, seed, ...).
        feature_map: Optional (k, r_in) map of a writer's features (a linear head's input) into the
            code coordinates (version 4: unnormalised codes, with ``feature_offset``; versions 2 and 3:
            the (r, r) ``R`` with ``z = R z_in``); not stored in the cube.
        norm_scale: ``a`` > 0: the gain of the last code (``o = b / a``; versions 2 and 3: ``a t``).
        weights: Version 4: the diagonal norm weights (k,), ``k = r`` or ``r + 1``; None for versions 2, 3.
        feature_offset: Optional (k,) added after ``feature_map`` (version 4); not stored in the cube.
    """

    matrix: np.ndarray
    offset: np.ndarray
    kind: str
    info: dict[str, Any] = field(default_factory=dict)
    feature_map: np.ndarray | None = None
    norm_scale: float = 1.0
    weights: np.ndarray | None = None
    feature_offset: np.ndarray | None = None

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
        if self.weights is not None:
            object.__setattr__(self, "weights", _checked_weights(matrix, offset, self.weights))

    @property
    def dim(self) -> int:
        """d: the embedding dimension."""
        return int(self.matrix.shape[0])

    @property
    def rank(self) -> int:
        """r: columns of ``B``."""
        return int(self.matrix.shape[1])

    @property
    def code_size(self) -> int:
        """Values a pixel stores: r + 1, or r for a version-4 basis without offset."""
        return self.rank + 1 if self.weights is None else len(self.weights)

    @property
    def feature_width(self) -> int:
        """Values a pixel's features have (:meth:`codes_from_features`)."""
        if self.feature_map is not None:
            return int(self.feature_map.shape[1])
        return self.rank if self.weights is None else self.code_size

    def diagonal(self, rotation_seed: int | None = ROTATION_SEED) -> Basis:
        """This basis in the version-4 form (itself if it is one).

        ``B`` becomes an orthonormal basis of the part of ``span(B, b)`` orthogonal to ``b``, turned by a
        rotation seeded with ``rotation_seed``, and the offset ``o = b / a``; features map to the new
        codes through ``feature_map`` and ``feature_offset``.
        """
        if self.weights is not None:
            return self
        q = self.matrix.astype(np.float64)
        feature_map = np.eye(self.rank) if self.feature_map is None else self.feature_map.astype(np.float64)
        b = self.offset.astype(np.float64)
        b_norm = float(np.linalg.norm(b))
        info = dict(self.info)
        if b_norm > 0:
            b_hat = b / b_norm
            matrix, top = _orthonormal_factor(q - np.outer(b_hat, b_hat @ q))
            top = top @ feature_map
            gain = self.norm_scale / b_norm
            last = gain * (b_hat @ q) @ feature_map
        else:
            matrix, top, last = q, feature_map, None
        if rotation_seed is not None:
            rotation = random_rotation(matrix.shape[1], rotation_seed)
            matrix, top = matrix @ rotation.T, rotation @ top
            info["rotation_seed"] = int(rotation_seed)
        rows, shift = [top], [np.zeros(len(top))]
        offset = np.zeros(self.dim)
        if last is not None:
            rows.append(last[None])
            shift.append(np.array([self.norm_scale]))
            offset = b / self.norm_scale
        weights = np.concatenate([np.ones(matrix.shape[1]), [offset @ offset] if last is not None else []])
        return Basis(
            matrix,
            offset,
            self.kind,
            info,
            np.concatenate(rows).astype(np.float32),
            self.norm_scale,
            weights,
            np.concatenate(shift).astype(np.float32),
        )

    def unit_scale(self, codes: np.ndarray) -> np.ndarray:
        """Version 4: ``1 / sqrt(sum_i w_i v_i^2)`` a pixel of codes (..., k) (0 for all-zero codes)."""
        assert self.weights is not None, "only a version-4 basis has norm weights"
        square = np.square(codes, dtype=np.float32) @ self.weights
        return np.divide(1.0, np.sqrt(square), out=np.zeros_like(square), where=square > 0)

    def codes_from_features(self, features: np.ndarray) -> np.ndarray:
        """Codes (..., k) of features (..., :attr:`feature_width`); zero where the embedding is 0.

        Version 4: unit codes (``sum_i w_i v_i^2 = 1``); versions 2 and 3: ``[z / n, a / n]``.
        """
        z = np.asarray(features, dtype=np.float32)
        if z.shape[-1] != self.feature_width:
            raise BadInputError(f"features must have {self.feature_width} values a pixel, got {z.shape[-1]}")
        if self.feature_map is not None:
            z = z @ self.feature_map.T
        if self.feature_offset is not None:
            z = z + self.feature_offset
        if self.weights is not None:
            return (z * self.unit_scale(z)[..., None]).astype(np.float32)
        norm = np.linalg.norm(z @ self.matrix.T + self.offset, axis=-1, keepdims=True)
        inv = np.divide(1.0, norm, out=np.zeros_like(norm), where=norm > 0)
        return np.concatenate([z * inv, inv * np.float32(self.norm_scale)], axis=-1).astype(np.float32)

    def codes_from_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """Codes (..., k) of full embeddings (..., d): their projection onto the basis's span."""
        e = np.asarray(embeddings, dtype=np.float32)
        if e.shape[-1] != self.dim:
            raise BadInputError(f"embeddings must have {self.dim} values a pixel, got {e.shape[-1]}")
        if self.weights is not None:  # B orthonormal, o orthogonal to it: coordinates by projection
            values = e @ self.matrix
            if self.code_size > self.rank:
                norm = float(self.offset @ self.offset)
                values = np.concatenate([values, (e @ self.offset)[..., None] / np.float32(norm)], axis=-1)
            return (values * self.unit_scale(values)[..., None]).astype(np.float32)
        features = (e - self.offset) @ np.linalg.pinv(self.matrix).T
        codes = replace(self, feature_map=None, feature_offset=None).codes_from_features(features)
        codes[~np.any(e != 0, axis=-1)] = 0  # a zero (invalid) pixel stays zero
        return codes

    def decode(self, codes: np.ndarray, unit: bool = False) -> np.ndarray:
        """Unit embeddings (..., d) from codes (..., k).

        Args:
            codes: Codes (..., k).
            unit: Version 4: the codes are unit already (``sum_i w_i v_i^2`` is 1 or 0, as
                :func:`~landprompt.embedder.cube.stored_values` gives them), so they are not normalised again.
        """
        codes = np.asarray(codes, dtype=np.float32)
        r = self.rank
        if self.weights is None:
            return codes[..., :r] @ self.matrix.T + codes[..., r:] * (self.offset / self.norm_scale)
        out = codes[..., :r] @ self.matrix.T
        if self.code_size > r:
            out += codes[..., r:] * self.offset
        return out if unit else out * self.unit_scale(codes)[..., None]

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """Query vectors (m, d) into code space (m, k): ``[B^T c, o . c]`` (versions 2, 3: ``b . c / a``)."""
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if vectors.shape[1] != self.dim:
            raise BadInputError(f"vectors have dimension {vectors.shape[1]}, the cube {self.dim}")
        columns = [vectors @ self.matrix]
        if self.weights is None:
            columns.append((vectors @ self.offset)[:, None] / np.float32(self.norm_scale))
        elif self.code_size > self.rank:
            columns.append((vectors @ self.offset)[:, None])
        return np.concatenate(columns, axis=1)


def _orthonormal_factor(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``a = U T`` with ``U`` orthonormal (d, r') spanning the columns of ``a``.

    QR (the columns keep their order and direction), or where ``a`` is rank-deficient an SVD keeping the
    nonzero singular values.
    """
    u, t = np.linalg.qr(a)
    diag = np.abs(np.diag(t))
    if diag.min() > 1e-6 * max(float(diag.max()), 1e-30):
        return u, t
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    keep = s > 1e-6 * max(float(s.max()), 1e-30)
    return u[:, keep], (s[:, None] * vt)[keep]


def _checked_weights(matrix: np.ndarray, offset: np.ndarray, weights: Any) -> np.ndarray:
    """Version-4 weights (k,) that fit an orthonormal ``B`` and an offset orthogonal to it."""
    w = np.asarray(weights, dtype=np.float32)
    r = matrix.shape[1]
    has_offset = bool(np.any(offset != 0))
    if w.shape != (r + int(has_offset),) or not (np.isfinite(w).all() and (w > 0).all()):
        raise BadInputError(
            f"the basis norm weights must be {r + int(has_offset)} finite values > 0, got shape {w.shape}"
        )
    gram = matrix.T.astype(np.float64) @ matrix
    expected = np.concatenate([np.ones(r), [float(offset @ offset)] if has_offset else []])
    if (
        np.abs(gram - np.eye(r)).max() > 1e-3
        or np.abs(matrix.T @ offset).max() > 1e-3 * max(1.0, float(np.linalg.norm(offset)))
        or not np.allclose(w, expected, rtol=1e-3)
    ):
        raise BadInputError(
            "the basis is not in the version-4 form (B orthonormal, the offset orthogonal to it, norm "
            "weights [1, ..., 1, |offset|^2])"
        )
    return expected.astype(np.float32)  # exactly 1 but for the last: scorers rely on it


def random_rotation(size: int, seed: int) -> np.ndarray:
    """A fixed orthogonal (size, size) matrix drawn from a seeded normal sample (QR, signs fixed)."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(size, size)))
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def fit_pca(
    sample: np.ndarray,
    rank: int = DEFAULT_RANK,
    min_variance: float | None = DEFAULT_VARIANCE,
    max_rank: int | None = None,
    seed: int = 0,
    rotation_seed: int | None = ROTATION_SEED,
) -> Basis:
    """A version-4 PCA basis of a sample of embeddings (n, d): the mean as offset, the top axes as ``B``.

    The rank is the smallest ``r >= rank`` whose axes keep ``min_variance`` of the variance (capped at
    ``max_rank``, default ``2 * rank``, and at d); ``min_variance=None`` keeps exactly ``rank``. The gain
    ``a`` makes the last code of the median sample pixel as large as its largest other code.

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
    info = {
        "explained_variance": float(kept[r - 1]),
        "requested_rank": int(rank),
        "min_variance": min_variance,
        "sample_size": int(n),
        "seed": int(seed),
    }
    plain = Basis(axes[:r].T, mean, "pca", info)
    first = plain.diagonal(rotation_seed)
    codes = first.codes_from_embeddings(sample.astype(np.float32))
    if first.code_size > first.rank:
        plain = replace(plain, norm_scale=_median_gain(codes))
    return plain.diagonal(rotation_seed)


def linear_head_basis(
    weight: np.ndarray,
    bias: np.ndarray | None,
    info: dict[str, Any] | None = None,
    rotation_seed: int | None = ROTATION_SEED,
    mean: np.ndarray | None = None,
    covariance: np.ndarray | None = None,
) -> Basis:
    """The exact version-4 basis of a linear head ``e = W z + b`` (weight (d, r) as torch's ``Linear``'s).

    ``W = Q R`` is stored through its orthonormal factor, features ``z`` are mapped to codes by ``R`` (so
    code quantisation errors are not amplified by a badly conditioned head). Without the features' moments
    the offset ``o`` lies along the bias (r + 1 codes; r codes for a head without bias or a zero one).

    With them (``mean`` (r,), ``covariance`` (r, r) of the features ``z``) ``o`` lies along the data's mean
    embedding ``m = W mean + b``, which holds the common part of clustered embeddings, so int8 codes spend
    their steps on what tells pixels apart: the same span, still exact, r + 1 codes with a bias and r
    without (``m`` lies in ``span(W)``). The gain makes the last code as large as the others' largest at
    the median of a seeded normal sample of the moments (as :func:`fit_pca` does on its sample). The data
    split is kept where its int8 error on that sample (:func:`_int8_error`) is at least 1 % smaller than the
    bias split's (:data:`CENTRED_MARGIN`, so that machines agree), and
    ``info["offset"]`` says which: ``"data_mean"``, or ``"bias"`` (``"none"`` without a bias) where the
    mean holds no common part (features centred on 0).

    Raises:
        BadInputError: if the weight, or the moments, have the wrong shape or are not finite.
    """
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 2 or not 1 <= weight.shape[1] <= weight.shape[0] or not np.isfinite(weight).all():
        raise BadInputError(
            f"a linear head weight must be finite with shape (d, r), r <= d, got {weight.shape}"
        )
    q, r = np.linalg.qr(weight)
    b = np.zeros(weight.shape[0]) if bias is None else np.asarray(bias, np.float64)
    plain = Basis(q, b, "linear_head", dict(info or {}), r).diagonal(rotation_seed)
    moments = _checked_moments(mean, covariance, weight.shape[1])
    if moments is None:
        return plain
    mu, cov = moments
    m = weight @ mu + b
    if m @ m <= MEAN_FLOOR**2 * (m @ m + float(np.sum(weight * (weight @ cov)))):
        return plain  # no common part: the mean embedding is below float32's reach of E|e|^2
    # cov = root root^T through the Cholesky factor of its positive part: both are unique (eigenvectors'
    # signs are not, and LAPACK builds differ in them), so the seeded sample, the gain and the cube
    # fingerprint are the same on every machine
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    values = np.clip(values, 0, None)
    jitter = 1e-10 * max(float(values.max()), np.finfo(np.float64).tiny)
    root = np.linalg.cholesky((vectors * values) @ vectors.T + jitter * np.eye(len(mu)))
    sample = mu + np.random.default_rng(0).normal(size=(4096, len(mu))) @ root.T

    def centred(gain: float) -> Basis:  # e = W (z - mu) + m: the plain split of m, features shifted by mu
        info_ = {**(info or {}), "offset": "data_mean"}
        basis = Basis(q, m, "linear_head", info_, r, norm_scale=gain).diagonal(rotation_seed)
        assert basis.feature_map is not None and basis.feature_offset is not None
        shift = basis.feature_offset - basis.feature_map.astype(np.float64) @ mu
        return replace(basis, feature_offset=shift.astype(np.float32))

    best = centred(_median_gain(centred(1.0).codes_from_features(sample)))
    if _int8_error(best, sample) < CENTRED_MARGIN * _int8_error(plain, sample):
        return best
    return replace(plain, info={**plain.info, "offset": "bias" if np.any(b) else "none"})


def _median_gain(codes: np.ndarray) -> float:
    """The gain that makes a sample's last (offset) code as large as the others' largest, at the median.

    Rounded to 6 significant digits, so that tiny floating-point differences between machines give the
    same basis (and cube fingerprint); 1 where the sample leaves it undefined.
    """
    others, last = np.abs(codes[:, :-1]).max(axis=1), np.abs(codes[:, -1])
    gain = float(np.median(others) / max(float(np.median(last)), 1e-30))
    return float(f"{gain:.6g}") if math.isfinite(gain) and gain > 0 else 1.0


def _int8_error(basis: Basis, features: np.ndarray) -> float:
    """The mean int8 error of features' embeddings in ``basis``, up to a constant factor.

    A pixel's unit codes ``v`` are stored in steps of ``max|v| / 127``; each code's rounding error adds
    ``w_i`` times its square to the embedding's, so the error's size goes as ``max|v| sqrt(sum_i w_i)``.
    """
    assert basis.weights is not None, "a version-4 basis"
    codes = basis.codes_from_features(features)
    return float(np.abs(codes).max(axis=-1).mean() * math.sqrt(float(basis.weights.sum())))


def _checked_moments(
    mean: np.ndarray | None, covariance: np.ndarray | None, width: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """The features' mean (r,) and covariance (r, r) as float64, None without them."""
    if mean is None and covariance is None:
        return None
    if mean is None or covariance is None:
        raise BadInputError("a head basis centred on the data needs both the features' mean and covariance")
    mu, cov = np.asarray(mean, np.float64), np.asarray(covariance, np.float64)
    if mu.shape != (width,) or cov.shape != (width, width):
        raise BadInputError(
            f"the head features' mean and covariance must have shapes ({width},) and ({width}, {width}), "
            f"got {mu.shape} and {cov.shape}"
        )
    if not (np.isfinite(mu).all() and np.isfinite(cov).all()):
        raise BadInputError("the head features' mean or covariance holds NaN or infinite values")
    return mu, (cov + cov.T) / 2
