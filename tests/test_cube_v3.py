"""Cubes of format versions 2 and 3 (int8 codes ``[u, a t]`` with a per-pixel scale) still read."""

import numpy as np
import pytest
from affine import Affine

import landprompt
from landprompt.embedder.cube import cube_basis, iter_raw_chunks, open_cube, read_window
from landprompt.embedder.overviews import build_overviews, open_overviews
from landprompt.geo import Grid
from landprompt.index.build import build_index
from landprompt.query.probability import class_matrix, concept_probability, probability_map

GRID = Grid(3035, Affine(10.0, 0.0, 4_000_000.0, 0.0, -10.0, 3_000_000.0), (32, 40))
DIM, RANK = 48, 16


def unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def clip_like(seed=0):
    """Unit embeddings (32, 40, DIM) as CLIP's: a large shared mean plus small rank-RANK variations."""
    rng = np.random.default_rng(seed)
    mean = unit(rng.normal(size=DIM))
    axes = np.linalg.qr(rng.normal(size=(DIM, RANK)))[0]
    z = rng.normal(size=(*GRID.shape, RANK)) * np.linspace(0.3, 0.05, RANK)
    return unit(mean + z @ axes.T)


@pytest.mark.parametrize(("version", "scale_dtype"), [(2, np.float32), (3, np.float16)])
def test_old_versions_decode_score_and_build_overviews(tmp_path, cube_data, version, scale_dtype):
    emb = clip_like(seed=version)
    path = cube_data.legacy_cube(tmp_path / f"v{version}.zarr", emb, GRID, version, RANK + 1)
    ds = open_cube(path)
    assert ds.attrs["format_version"] == version and ds["scale"].dtype == scale_dtype
    assert ds.sizes["k"] == RANK + 2 and cube_basis(ds).weights is None
    assert cube_basis(ds).norm_scale == (1.0 if version == 2 else pytest.approx(0.4, abs=0.35))
    _, raw = next(iter_raw_chunks(ds))
    assert set(raw) == {"code", "valid", "scale"}
    decoded, ok = read_window(ds, slice(None), slice(None))
    assert ok.all() and np.abs(decoded - emb).max() < 0.02
    rng = np.random.default_rng(4)
    concept, versus = unit(rng.normal(size=DIM)), unit(rng.normal(size=(3, DIM)))
    got = probability_map(path, concept, versus=versus, logit_scale=10.0).to_numpy()
    np.testing.assert_allclose(got, concept_probability(emb, class_matrix(concept, versus), 10.0), atol=0.02)
    build_index(path, progress=False)
    found = landprompt.top_k(path, emb[5, 7], k=1)
    assert (int(found["row"][0]), int(found["col"][0])) == (5, 7)
    build_overviews(path)
    level = open_overviews(path)[0]
    assert level.attrs["format_version"] == 4  # levels are written in the current format
    coarse, _ = read_window(level, slice(0, 1), slice(0, 1))
    np.testing.assert_allclose(coarse[0, 0], unit(emb[:2, :2].reshape(4, -1).mean(axis=0)), atol=0.02)
