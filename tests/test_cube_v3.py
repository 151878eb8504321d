"""Cube format version 3: int8 codes keep the norm code ``a t`` on the scale of ``u``, float16 scales."""

import numpy as np
import pytest
import zarr
from affine import Affine

from landprompt.embedder import cube as cube_module
from landprompt.embedder.basis import Basis, fit_pca
from landprompt.embedder.cube import cube_basis, open_cube, read_window, write_cube
from landprompt.errors import BadInputError
from landprompt.geo import Grid
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


def test_norm_scale_must_be_positive_and_finite():
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(BadInputError, match="norm scale must be finite and > 0"):
            Basis(np.eye(4, 2), np.zeros(4), "pca", norm_scale=bad)


def test_norm_scale_leaves_codes_decoding_and_projection_consistent():
    emb = clip_like().reshape(-1, DIM)
    basis = fit_pca(emb, RANK, min_variance=None)
    assert 0.05 < basis.norm_scale < 1  # the median largest feature, well below t = 1
    codes = basis.codes_from_embeddings(emb)
    assert np.median(codes[:, -1] / np.abs(codes[:, :-1]).max(axis=1)) == pytest.approx(1, rel=0.05)
    plain = Basis(basis.matrix, basis.offset, "pca")
    plain_codes = plain.codes_from_embeddings(emb)
    np.testing.assert_allclose(codes[:, -1], plain_codes[:, -1] * basis.norm_scale, rtol=1e-5)
    decoded = basis.decode(codes)
    np.testing.assert_allclose(decoded, plain.decode(plain_codes), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(decoded, axis=1), 1, atol=1e-5)
    c = unit(np.random.default_rng(1).normal(size=(3, DIM)))
    np.testing.assert_allclose(codes @ basis.project(c).T, decoded @ c.T, atol=1e-5)


def test_int8_pca_codes_are_finer_than_with_the_unscaled_norm(tmp_path):
    emb = clip_like()
    fitted = fit_pca(emb.reshape(-1, DIM), RANK + 1, min_variance=None)  # spans the unit vectors
    unscaled = Basis(fitted.matrix, fitted.offset, "pca", fitted.info)  # t as version 2 stored it
    errors = []
    for name, basis in (("v3", fitted), ("plain", unscaled)):
        ds = open_cube(write_cube(tmp_path / f"{name}.zarr", emb, GRID, dtype="int8", chunk=16, basis=basis))
        assert ds.attrs["format_version"] == 3 and ds["scale"].dtype == np.float16
        assert cube_basis(ds).norm_scale == basis.norm_scale
        decoded, _ = read_window(ds, slice(None), slice(None))
        errors.append(float(np.sqrt(np.mean((decoded - emb) ** 2))))
    assert errors[0] < 1e-3 and errors[0] < errors[1] / 2  # u keeps ~127 levels instead of ~127 max|u| / t


def test_version_2_cubes_still_read(tmp_path, monkeypatch):
    emb = clip_like(seed=2)
    basis = fit_pca(emb.reshape(-1, DIM), RANK + 1, min_variance=None)
    old = Basis(basis.matrix, basis.offset, "pca", basis.info)  # norm scale 1, as version 2 had
    with monkeypatch.context() as patch:  # write what version 2 wrote: float32 scales, no norm_scale
        patch.setattr(cube_module, "BASIS_FORMAT_VERSION", 2)
        patch.setattr(cube_module, "BASIS_SCALE_DTYPE", np.float32)
        path = write_cube(tmp_path / "v2.zarr", emb, GRID, dtype="int8", chunk=16, basis=old)
    group = zarr.open_group(path, mode="r+")
    attrs = dict(group.attrs["basis"])
    del attrs["norm_scale"]
    group.attrs["basis"] = attrs
    ds = open_cube(path)
    assert ds.attrs["format_version"] == 2 and ds["scale"].dtype == np.float32
    assert cube_basis(ds).norm_scale == 1.0
    decoded, ok = read_window(ds, slice(None), slice(None))
    assert ok.all() and np.abs(decoded - emb).max() < 0.02
    rng = np.random.default_rng(4)
    concept, versus = unit(rng.normal(size=DIM)), unit(rng.normal(size=(3, DIM)))
    got = probability_map(path, concept, versus=versus, logit_scale=10.0).to_numpy()
    np.testing.assert_allclose(got, concept_probability(emb, class_matrix(concept, versus), 10.0), atol=0.02)
