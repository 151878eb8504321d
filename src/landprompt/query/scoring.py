"""Score a cube's stored vectors against many query vectors at once, near memory speed.

The queries (concepts and background) are projected once into the space the cube stores (the ``r + 1``
code values of a version-2 cube, or the d values of a version-1 cube); each chunk, read in the background
while the previous one is scored, is converted in cache-sized blocks and scored with one matrix product
against all queries by torch, one block a thread on all cores. The probability of one
concept against a background set is ``1 / (1 + sum_j exp(l_j - l_c))`` (only the concept's probability
is needed); several concepts share the background's log-sum-exp: ``sigmoid(l_i - logsumexp(l_background))``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial

import numpy as np
import torch
import xarray as xr

from landprompt.embedder.cube import ChunkWindow, cube_basis, iter_raw_chunks

#: Pixels scored per block, one block a thread: 1 MB of int8 codes (4 MB as float32) at r = 64, so
#: a block stays in a core's cache (measured best of 8192, 16384 and 65536).
BLOCK_PIXELS = 16384


def _norm_weights(ds: xr.Dataset) -> np.ndarray | None:
    """The norm weights (k,) of a version-4 cube's codes, or None (versions 1-3)."""
    basis = cube_basis(ds)
    return None if basis is None else basis.weights


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
    project, weights = _columns(query_space(ds, vectors).T), _norm_weights(ds)
    with _block_workers() as pool:
        for window, raw in iter_raw_chunks(ds, rows, cols):
            valid = raw["valid"].astype(bool)
            scores = _chunk_scores(raw, project, lambda logits: logits, pool, weights)
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
        project, epilogue = _columns((classes[1:] - classes[:1]).T), _one_concept
    else:
        project, epilogue = _columns(classes.T), partial(_many_concepts, m=m)
    weights = _norm_weights(ds)
    with _block_workers() as pool:
        for window, raw in iter_raw_chunks(ds, rows, cols):
            probabilities = _chunk_scores(raw, project, epilogue, pool, weights)
            probabilities[~raw["valid"].astype(bool)] = np.nan
            yield window, probabilities


def _columns(columns: np.ndarray) -> torch.Tensor:
    """Query columns (k, c) as a contiguous float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(columns, dtype=np.float32))


def _one_concept(logits: torch.Tensor) -> torch.Tensor:
    """One concept's probability ``1 / (1 + sum_j exp(d_j))`` from the logit differences (n, k)."""
    return logits.exp_().sum(dim=1, keepdim=True).add_(1).reciprocal_()


def _many_concepts(logits: torch.Tensor, m: int) -> torch.Tensor:
    """Each concept's probability ``sigmoid(l_i - logsumexp(background))`` from the logits (n, m + k)."""
    rest = torch.logsumexp(logits[:, m:].contiguous(), dim=1, keepdim=True)  # contiguous: 3x faster
    return torch.sigmoid(logits[:, :m] - rest)


@contextmanager
def _block_workers() -> Iterator[ThreadPoolExecutor]:
    """Threads that score blocks side by side, each running torch single-threaded meanwhile.

    One block a thread needs no hand-over between threads inside every torch call, so the scoring keeps
    its pace on a CPU shared with other work (torch's own threads wait for each other at every call).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            yield pool
    finally:
        torch.set_num_threads(threads)


def _chunk_scores(
    raw: dict[str, np.ndarray],
    project: torch.Tensor,
    epilogue: Callable[[torch.Tensor], torch.Tensor],
    pool: ThreadPoolExecutor,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """``epilogue(scale * values @ project)`` of one chunk, block by block: float32 (h, w, outputs).

    ``weights``: a version-4 cube's norm weights (k,) (see :func:`_pixel_multiplier`).
    """
    values = raw["code"] if "code" in raw else raw["embedding"]
    h, w, width = values.shape
    flat = torch.from_numpy(np.ascontiguousarray(values).reshape(-1, width))
    scale = None
    if "scale" in raw:  # float32 (version 1, 2) or float16 (version 3)
        scale = torch.from_numpy(np.ascontiguousarray(raw["scale"], np.float32).reshape(-1, 1))

    def block(start: int) -> torch.Tensor:
        stop = min(start + BLOCK_PIXELS, flat.shape[0])
        values = flat[start:stop].to(torch.float32)
        scores = values @ project
        multiplier = _pixel_multiplier(values, None if scale is None else scale[start:stop], weights)
        if multiplier is not None:
            scores.mul_(multiplier)
        return epilogue(scores)

    blocks = list(pool.map(block, range(0, flat.shape[0], BLOCK_PIXELS)))
    if not blocks:
        return np.zeros((h, w, 0), np.float32)
    return torch.cat(blocks).numpy().reshape(h, w, -1)


def _pixel_multiplier(
    values: torch.Tensor, scale: torch.Tensor | None, weights: np.ndarray | None
) -> torch.Tensor | None:
    """The per-pixel multiplier (n, 1) of a block's scores, or None when there is none (fp16, versions 1-3).

    The stored scale of int8 values (versions 1-3), or ``1 / sqrt(sum_i w_i k_i^2)`` of a version-4 cube's
    codes ``k`` (n, k) with norm weights ``w`` (k,): 0 for all-zero (invalid) codes. The weights are 1 but
    for the last code's (:class:`~landprompt.embedder.basis.Basis` checks it), so the sum is one vector
    norm and a correction (measured 2.5x faster than ``k^2 @ w``).
    """
    if scale is not None:
        return scale
    if weights is None:
        return None
    square = torch.linalg.vector_norm(values, dim=1, keepdim=True).square_()
    if weights[-1] != 1:
        square.addcmul_(values[:, -1:], values[:, -1:], value=float(weights[-1]) - 1.0)
    return torch.where(square > 0, square.rsqrt(), 0.0)
