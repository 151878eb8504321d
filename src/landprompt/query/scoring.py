"""Score a cube's stored vectors against many query vectors at once, near memory speed.

The queries (concepts and background) are projected once into the space the cube stores (the ``r + 1``
code values of a version-2 cube, or the d values of a version-1 cube); each chunk, read in the background
while the previous one is scored, is converted in cache-sized blocks and scored with one matrix product
against all queries by torch on all cores. The probability of concept ``i`` against a background set is
``sigmoid(l_i - logsumexp(l_background))``: the softmax over ``[concept i, background]`` for every concept
in one pass.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import xarray as xr

from landprompt.embedder.cube import ChunkWindow, cube_basis, iter_raw_chunks

#: Pixels converted and scored per block: ~2 MB of float32 codes at r = 64, so a block stays in cache.
BLOCK_PIXELS = 8192


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
    projected = torch.from_numpy(np.ascontiguousarray(query_space(ds, vectors).T))
    for window, raw in iter_raw_chunks(ds, rows, cols):
        yield window, _chunk_scores(raw, projected), raw["valid"].astype(bool)


def iter_probabilities(
    ds: xr.Dataset,
    concepts: np.ndarray,
    background: np.ndarray,
    logit_scale: float,
    rows: slice | None = None,
    cols: slice | None = None,
) -> Iterator[tuple[ChunkWindow, np.ndarray]]:
    """Probability of each concept against the background at every pixel, chunk by chunk.

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
    m = len(concepts)
    classes = np.concatenate([np.atleast_2d(concepts), np.atleast_2d(background)]).astype(np.float32)
    projected = torch.from_numpy(np.ascontiguousarray(query_space(ds, classes).T * np.float32(logit_scale)))
    for window, raw in iter_raw_chunks(ds, rows, cols):
        logits = _chunk_scores(raw, projected, m)
        logits[~raw["valid"].astype(bool)] = np.nan
        yield window, logits


def _chunk_scores(
    raw: dict[str, np.ndarray], projected: torch.Tensor, n_concepts: int | None = None
) -> np.ndarray:
    """One chunk's scores (h, w, m), or with ``n_concepts`` the concepts' probabilities (h, w, n_concepts)."""
    values = raw["code"] if "code" in raw else raw["embedding"]
    h, w, width = values.shape
    flat = torch.from_numpy(np.ascontiguousarray(values).reshape(-1, width))
    scale = torch.from_numpy(raw["scale"].reshape(-1)) if "scale" in raw else None
    n_out = projected.shape[1] if n_concepts is None else n_concepts
    out = torch.empty((flat.shape[0], n_out), dtype=torch.float32)
    for start in range(0, flat.shape[0], BLOCK_PIXELS):
        block = flat[start : start + BLOCK_PIXELS].to(torch.float32)
        scores = block @ projected
        if scale is not None:
            scores *= scale[start : start + BLOCK_PIXELS, None]
        if n_concepts is not None:
            rest = torch.logsumexp(scores[:, n_concepts:].contiguous(), dim=1, keepdim=True)  # 3x faster
            scores = torch.sigmoid(scores[:, :n_concepts] - rest)
        out[start : start + BLOCK_PIXELS] = scores
    result = out.numpy().reshape(h, w, n_out)
    if n_concepts is None:
        result[~raw["valid"].astype(bool)] = 0
    return result
