"""A planted version-2 cube for the tile server tests (fixed seed), with its overviews.

256 x 256 pixels of 10 m (UTM 32N, near 43.3 N 11.2 E), chunks of 64: "olive groves" planted in
``BLOCK`` (rows 64:128, cols 128:192), "sea" on the left half and "a forest" on the right elsewhere,
each along its dual-basis vector so the concept wins exactly where it is planted; row 0 is no-data.
Stored in a PCA basis (format version 2, int8 codes) with the overview pyramid written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine

SHAPE = (256, 256)
CHUNK = 64
BLOCK = (slice(64, 128), slice(128, 192))
CONCEPT = "olive groves"
VERSUS = ("sea", "a forest")


@dataclass(frozen=True)
class ServedCubeFixture:
    path: Path
    grid: object
    planted: np.ndarray  # bool [256, 256]
    valid: np.ndarray


def generate(folder: Path, clip: object, seed: int = 0) -> ServedCubeFixture:
    from landprompt.embedder.basis import fit_pca
    from landprompt.embedder.cube import write_cube
    from landprompt.embedder.overviews import build_overviews
    from landprompt.geo import Grid
    from landprompt.query.probability import concept_embedding

    grid = Grid("EPSG:32632", Affine(10.0, 0, 680_000.0, 0, -10.0, 4_800_000.0), SHAPE)
    vectors = np.stack([concept_embedding(clip, name) for name in (CONCEPT, *VERSUS)])
    dual = np.linalg.solve(vectors @ vectors.T, vectors)
    dual /= np.linalg.norm(dual, axis=1, keepdims=True)
    labels = np.where(np.arange(SHAPE[1])[None, :] < SHAPE[1] // 2, 1, 2) * np.ones((SHAPE[0], 1), int)
    labels[BLOCK] = 0
    rng = np.random.default_rng(seed)
    emb = dual[labels] + rng.normal(0, 0.02, (*SHAPE, dual.shape[1]))
    emb = (emb / np.linalg.norm(emb, axis=-1, keepdims=True)).astype(np.float32)
    valid = np.ones(SHAPE, bool)
    valid[0] = False
    sample = emb[::4, ::4].reshape(-1, emb.shape[-1])
    basis = fit_pca(sample, rank=8, min_variance=None, seed=seed)
    attrs = {"clip_model": clip.name, "clip_pretrained": ""}  # type: ignore[attr-defined]
    path = write_cube(
        folder / "planted.zarr", emb, grid, valid=valid, chunk=CHUNK, dtype="int8", attrs=attrs, basis=basis
    )
    build_overviews(path)
    return ServedCubeFixture(path, grid, labels == 0, valid)
