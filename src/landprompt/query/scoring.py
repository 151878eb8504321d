"""Score a cube's stored vectors against many query vectors at once, near memory speed.

The queries (concepts and background) are projected once into the space the cube stores (the ``r + 1``
code values of a version-2 cube, or the d values of a version-1 cube); each chunk, read in the background
while the previous one is scored, is converted in cache-sized blocks and scored with one matrix product
against all queries by torch on all cores (int8 values in integer arithmetic). The probability of one
concept against a background set is ``1 / (1 + sum_j exp(l_j - l_c))`` (only the concept's probability
is needed); several concepts share the background's log-sum-exp: ``sigmoid(l_i - logsumexp(l_background))``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

import numpy as np
import torch
import xarray as xr

from landprompt.embedder.cube import ChunkWindow, cube_basis, iter_raw_chunks

#: Pixels scored per block: ~4 MB of int8 codes at r = 64 (fewer, larger torch calls run faster).
BLOCK_PIXELS = 65536
#: int8 parts a query column is split into for exact integer products (3: about float32 precision).
_INT8_PARTS = 3
_HAS_INT_MM = hasattr(torch, "_int_mm")


def query_space(ds: xr.Dataset, vectors: np.ndarray) -> np.ndarray:
    """Unit query vectors (m, d) in the cube's stored space: (m, r + 1) for version 2, else themselves."""
    basis = cube_basis(ds)
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    return vectors if basis is None else basis.project(vectors)


def iter_scores(
    ds: xr.Dataset, vectors: np.ndarray, rows: slice | None = None, cols: slice | None = None
) -> Iterator[tuple[ChunkWindow, np.ndarray, np.ndarray]]:
    """Cosine of every pixel with each unit query vector, chunk by chunk.

    Yields:
        The window, float32 scores (h, w, m) (0 where invalid) and the valid mask (h, w).
    """
    project = Projection(query_space(ds, vectors).T)
    for window, raw in iter_raw_chunks(ds, rows, cols):
        valid = raw["valid"].astype(bool)
        scores = _chunk_scores(raw, project, lambda logits: logits)
        scores[~valid] = 0
        yield window, scores, valid


def iter_probabilities(
    ds: xr.Dataset,
    concepts: np.ndarray,
    background: np.ndarray,
    logit_scale: float,
    rows: slice | None = None,
    cols: slice | None = None,
) -> Iterator[tuple[ChunkWindow, np.ndarray]]:
    """Probability of each concept against the background at every pixel, chunk by chunk.

    One concept is scored against logit differences only (``p = 1 / (1 + sum_j exp(l_j - l_c))``, one
    column a background vector); several share the background's log-sum-exp.

    Args:
        ds: A cube from :func:`~landprompt.embedder.cube.open_cube`.
        concepts: Unit concept vectors (m, d).
        background: Unit background vectors (k, d).
        logit_scale: Softmax temperature.
        rows: Rows of a window (positions in ``ds``).
        cols: Columns of a window.

    Yields:
        The window and float32 probabilities (h, w, m), NaN where the cube is not valid.
    """
    concepts, background = np.atleast_2d(concepts), np.atleast_2d(background)
    m = len(concepts)
    classes = query_space(ds, np.concatenate([concepts, background]).astype(np.float32))
    classes = classes.astype(np.float64) * float(logit_scale)
    if m == 1:
        project, epilogue = Projection((classes[1:] - classes[:1]).T), _one_concept
    else:
        project, epilogue = Projection(classes.T), partial(_many_concepts, m=m)
    for window, raw in iter_raw_chunks(ds, rows, cols):
        probabilities = _chunk_scores(raw, project, epilogue)
        probabilities[~raw["valid"].astype(bool)] = np.nan
        yield window, probabilities


class Projection:
    """Query columns (k, c) applied to blocks of stored values (n, k), giving float32 (n, c).

    int8 values are multiplied exactly in integers (``torch._int_mm``, VNNI/AMX where the CPU has them)
    against the columns split into three int8 parts with per-column scales, which keeps the columns to
    about float32 precision (relative error < 1e-6 of a column's largest value); other values are
    converted to float32 and multiplied in float32.

    Args:
        columns: float (k, c) query columns in the cube's stored space.
    """

    def __init__(self, columns: np.ndarray) -> None:
        columns = np.asarray(columns, dtype=np.float64)
        self.columns = torch.from_numpy(np.ascontiguousarray(columns, dtype=np.float32))
        parts, scales, rest = [], [], columns
        for _ in range(_INT8_PARTS):
            step = np.abs(rest).max(axis=0) / 127
            step[step == 0] = 1
            part = np.rint(rest / step)
            parts.append(part)
            scales.append(step)
            rest = rest - part * step
        self.parts = torch.from_numpy(np.concatenate(parts, axis=1).astype(np.int8))
        c = columns.shape[1]
        combine = np.concatenate([np.diag(s) for s in scales]).reshape(_INT8_PARTS * c, c)
        self.combine = torch.from_numpy(combine.astype(np.float32))

    def __call__(self, block: torch.Tensor) -> torch.Tensor:
        """Scores (n, c) of a contiguous block of values (n, k)."""
        if block.dtype == torch.int8 and _HAS_INT_MM:
            return torch._int_mm(block, self.parts).to(torch.float32) @ self.combine
        return block.to(torch.float32) @ self.columns


def _one_concept(logits: torch.Tensor) -> torch.Tensor:
    """One concept's probability ``1 / (1 + sum_j exp(d_j))`` from the logit differences (n, k)."""
    return logits.exp_().sum(dim=1, keepdim=True).add_(1).reciprocal_()


def _many_concepts(logits: torch.Tensor, m: int) -> torch.Tensor:
    """Each concept's probability ``sigmoid(l_i - logsumexp(background))`` from the logits (n, m + k)."""
    rest = torch.logsumexp(logits[:, m:], dim=1, keepdim=True)
    return torch.sigmoid(logits[:, :m] - rest)


def _chunk_scores(
    raw: dict[str, np.ndarray], project: Projection, epilogue: Callable[[torch.Tensor], torch.Tensor]
) -> np.ndarray:
    """``epilogue(scale * project(values))`` of one chunk, block by block: float32 (h, w, outputs)."""
    values = raw["code"] if "code" in raw else raw["embedding"]
    h, w, width = values.shape
    flat = torch.from_numpy(np.ascontiguousarray(values).reshape(-1, width))
    scale = torch.from_numpy(np.ascontiguousarray(raw["scale"]).reshape(-1, 1)) if "scale" in raw else None
    out: torch.Tensor | None = None
    for start in range(0, flat.shape[0], BLOCK_PIXELS):
        stop = min(start + BLOCK_PIXELS, flat.shape[0])
        scores = project(flat[start:stop])
        if scale is not None:
            scores.mul_(scale[start:stop])
        result = epilogue(scores)
        if out is None:
            out = torch.empty((flat.shape[0], result.shape[1]), dtype=torch.float32)
        out[start:stop] = result
    if out is None:
        return np.zeros((h, w, 0), np.float32)
    return out.numpy().reshape(h, w, -1)
