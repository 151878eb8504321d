"""Rewrite a version-1 cube (full-dimension embeddings) as a cube in a PCA basis (format version 4).

The basis is fitted on a reproducible sample of the cube's own valid embeddings (a fixed number of
pixels drawn per chunk with a generator seeded by the chunk's index), so a killed conversion fitted
again gives the same basis and the :class:`~landprompt.embedder.cube.CubeWriter` resumes it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import xarray as xr

from landprompt.embedder.basis import DEFAULT_RANK, DEFAULT_VARIANCE, Basis, fit_pca
from landprompt.embedder.cube import (
    CubeDtype,
    CubeWriter,
    ZarrFormat,
    content_hash,
    cube_basis,
    cube_grid,
    iter_chunks,
    open_cube,
    read_window,
    require_intact,
    user_attrs,
)
from landprompt.errors import BadInputError
from landprompt.progress import progress_bar

#: Embeddings the PCA basis of a conversion is fitted on.
SAMPLE_SIZE = 50_000


def pca_sample(ds: xr.Dataset, size: int = SAMPLE_SIZE, seed: int = 0) -> np.ndarray:
    """About ``size`` valid embeddings (n, d) of a cube: an equal share drawn from every chunk."""
    chunks = list(iter_chunks(ds))
    share = max(1, math.ceil(size / max(len(chunks), 1)))
    picked = []
    for window, embedding, valid in chunks:
        vectors = embedding[valid]
        rng = np.random.default_rng([seed, *window.index])
        picked.append(vectors[rng.permutation(len(vectors))[:share]])
    sample = np.concatenate(picked) if picked else np.empty((0, int(ds.sizes["d"])), np.float32)
    if len(sample) < 2:
        raise BadInputError("the cube has fewer than 2 valid pixels: nothing to fit a basis on")
    return sample


def cube_pca_basis(
    ds: xr.Dataset, rank: int = DEFAULT_RANK, min_variance: float | None = DEFAULT_VARIANCE, seed: int = 0
) -> Basis:
    """The PCA basis of a version-1 cube's embeddings (see :func:`~landprompt.embedder.basis.fit_pca`)."""
    dim = int(ds.sizes["d"])
    if not 1 <= rank <= dim:
        raise BadInputError(f"basis rank must be between 1 and the embedding dimension {dim}, got {rank}")
    return fit_pca(pca_sample(ds, seed=seed), rank, min_variance, seed=seed)


def convert_cube(
    src: str | Path,
    dst: str | Path,
    rank: int = DEFAULT_RANK,
    dtype: CubeDtype | None = None,
    min_variance: float | None = DEFAULT_VARIANCE,
    seed: int = 0,
    progress: bool = True,
    zarr_format: ZarrFormat = 3,
) -> Path:
    """Rewrite the finished version-1 cube ``src`` in a PCA basis at ``dst``; re-running resumes.

    Args:
        src: A finished version-1 cube.
        dst: The new cube (``.zarr``).
        rank: Requested basis rank (grown to keep ``min_variance`` of the variance, at most 2x).
        dtype: Code storage (default: the source's).
        min_variance: Explained variance to keep, or None for exactly ``rank``.
        seed: Seed of the PCA sample.
        progress: Show a progress bar.
        zarr_format: Zarr layout of ``dst``: 3, or 2 for GDAL (see
            :class:`~landprompt.embedder.cube.CubeWriter`).

    Raises:
        NotACubeError: if ``src`` is not a finished cube.
        DamagedCubeError: if a chunk of ``src`` is missing or differs from its recorded digest.
        BadInputError: if ``src`` is already in a basis, the rank is out of range, or ``dst`` holds
            another run.
    """
    ds = open_cube(src)
    if cube_basis(ds) is not None:
        raise BadInputError(f"{src} is already a cube in a basis (format version 2-4): nothing to convert")
    if Path(src).resolve() == Path(dst).resolve():
        raise BadInputError("convert writes a new cube: give a NEW path different from OLD")
    require_intact(src, progress)  # a damaged chunk must not be fitted or rewritten as data
    basis = cube_pca_basis(ds, rank, min_variance, seed)
    grid = cube_grid(ds)
    attrs = {**user_attrs(ds.attrs), "converted_from": {"path": str(src), "content_hash": content_hash(ds)}}
    chunk = int(ds["valid"].encoding.get("chunks", (grid.rows,))[0])
    writer = CubeWriter(dst, grid, basis.dim, dtype or ds.attrs["dtype"], chunk, attrs, basis, zarr_format)
    bar = progress_bar(
        "converting chunks", len(writer.windows()), progress, done=writer.n_done, transient=True
    )
    with bar as advance:
        for window in writer.pending():
            writer.write_chunk(window, *read_window(ds, window.rows, window.cols))
            advance()
    return writer.finalize()
