"""Cube format version 4 (codes in a diagonal norm form, no per-pixel scale, r codes for a bias-free head).

Versions 2 and 3 (int8 codes ``[u, a t]`` with a per-pixel scale) still read.
"""

import numpy as np
import pytest
import zarr
from affine import Affine
from typer.testing import CliRunner

import landprompt
from landprompt.cli import app
from landprompt.embedder.basis import Basis, fit_pca, linear_head_basis, random_rotation
from landprompt.embedder.cube import (
    CubeWriter,
    cube_basis,
    iter_raw_chunks,
    open_cube,
    read_window,
    write_cube,
)
from landprompt.embedder.overviews import build_overviews, open_overviews
from landprompt.errors import BadInputError, NotACubeError
from landprompt.geo import Grid
from landprompt.index.build import build_index
from landprompt.query.classes import class_matrix, concept_probability
from landprompt.query.probability import probability_map

GRID = Grid(3035, Affine(10.0, 0.0, 4_000_000.0, 0.0, -10.0, 3_000_000.0), (32, 40))
DIM, RANK = 48, 16


@pytest.fixture
def clip_like(cube_data):
    """``clip_like(seed)``: unit embeddings (32, 40, DIM) as CLIP's (see tests/data/cube/data.py)."""
    return lambda seed=0: cube_data.clip_like(GRID.shape, DIM, RANK, seed)


@pytest.fixture
def head(cube_data):
    """``head(seed, bias)``: ``(z, weight, bias, embeddings)`` of a linear head on GRID (bias of sd 0.5,
    or none), see tests/data/cube/data.py."""
    return lambda seed=0, bias=True: cube_data.linear_head_embeddings(
        GRID.shape, DIM, RANK, seed, 0.5 if bias else None
    )


def write_head(path, z, basis, dtype):
    writer = CubeWriter(path, GRID, DIM, dtype, chunk=16, basis=basis)
    for w in writer.windows():
        writer.write_chunk(w, z[w.rows, w.cols], features=True)
    return open_cube(writer.finalize())


@pytest.mark.parametrize("bias", [False, True])
def test_head_codes_carry_no_scale_and_a_bias_free_head_stores_r_codes(tmp_path, bias, head, unit):
    z, weight, b, exact = head(bias=bias)
    ds = write_head(tmp_path / "c.zarr", z, linear_head_basis(weight, b), "int8")
    k = RANK + int(bias)
    assert ds.attrs["format_version"] == 4 and ds.sizes["k"] == k and "scale" not in ds
    assert ds.attrs["basis"]["weights"][:RANK] == [1.0] * RANK and len(ds.attrs["basis"]["weights"]) == k
    _, raw = next(iter_raw_chunks(ds))
    assert set(raw) == {"code", "valid"} and np.abs(raw["code"]).max(axis=-1).min() == 127
    chunk_file = tmp_path / "c.zarr" / "code" / "c" / "0" / "0" / "0"
    assert chunk_file.stat().st_size == 16 * 16 * k + 4  # k bytes a pixel and the chunk's CRC32C
    decoded, ok = read_window(ds, slice(None), slice(None))
    assert ok.all()
    np.testing.assert_allclose(np.linalg.norm(decoded, axis=-1), 1, atol=1e-5)
    assert np.abs(decoded - exact).max() < 0.02
    rng = np.random.default_rng(1)
    concept, versus = unit(rng.normal(size=DIM)), unit(rng.normal(size=(3, DIM)))
    got = probability_map(ds, concept, versus=versus, logit_scale=10.0).to_numpy()
    want = concept_probability(exact, class_matrix(concept, versus), 10.0)
    np.testing.assert_allclose(got, want, atol=0.01)


def test_diagonal_form_is_orthonormal_rotated_and_keeps_codes_decoding_and_projection_consistent(
    clip_like, unit
):
    emb = clip_like().reshape(-1, DIM)
    basis = fit_pca(emb, RANK + 1, min_variance=None)
    # the unit vectors span RANK + 1 dimensions, the mean among them: RANK axes orthogonal to it and t
    assert basis.weights is not None and basis.rank == RANK and basis.code_size == RANK + 1
    np.testing.assert_allclose(basis.matrix.T @ basis.matrix, np.eye(RANK), atol=1e-5)
    assert np.abs(basis.matrix.T @ basis.offset).max() < 1e-5
    assert basis.weights[-1] == pytest.approx(float(basis.offset @ basis.offset), rel=1e-5)
    codes = basis.codes_from_embeddings(emb)
    # the gain keeps the last code as large as the others' largest at the median pixel
    assert np.median(np.abs(codes[:, -1]) / np.abs(codes[:, :-1]).max(axis=1)) == pytest.approx(1, rel=0.05)
    np.testing.assert_allclose(np.square(codes) @ basis.weights, 1, atol=1e-5)
    decoded = basis.decode(codes)
    np.testing.assert_allclose(decoded, emb, atol=1e-4)
    c = unit(np.random.default_rng(1).normal(size=(3, DIM)))
    np.testing.assert_allclose(codes @ basis.project(c).T, decoded @ c.T, atol=1e-5)
    rotated, unrotated = (fit_pca(emb, RANK, None, rotation_seed=seed) for seed in (0, None))
    assert "rotation_seed" not in unrotated.info and rotated.info["rotation_seed"] == 0
    rms = [
        np.sqrt(np.mean(np.square(b.codes_from_embeddings(emb)[:, :-1]), axis=0))
        for b in (rotated, unrotated)
    ]
    assert rms[0].max() / rms[0].min() < rms[1].max() / rms[1].min() / 2  # the energy spread evenly
    again = fit_pca(emb, RANK + 1, min_variance=None)
    assert np.array_equal(again.matrix, basis.matrix) and np.array_equal(again.offset, basis.offset)
    r = random_rotation(8, 3)
    np.testing.assert_allclose(r @ r.T, np.eye(8), atol=1e-12)


def test_int8_pca_codes_decode_closely_and_fp16_codes_near_exactly(tmp_path, clip_like):
    emb = clip_like(seed=1)
    basis = fit_pca(emb.reshape(-1, DIM), RANK + 1, min_variance=None)
    errors = {}
    for dtype in ("int8", "fp16"):
        ds = open_cube(write_cube(tmp_path / f"{dtype}.zarr", emb, GRID, dtype=dtype, chunk=16, basis=basis))
        assert ds.sizes["k"] == RANK + 1 and "scale" not in ds
        decoded, _ = read_window(ds, slice(None), slice(None))
        errors[dtype] = float(np.sqrt(np.mean((decoded - emb) ** 2)))
    assert errors["int8"] < 1e-3 and errors["fp16"] < 1e-4


def test_a_plain_basis_is_written_in_the_diagonal_form(tmp_path, clip_like):
    emb = clip_like(seed=2)
    rng = np.random.default_rng(0)
    plain = Basis(np.linalg.qr(rng.normal(size=(DIM, RANK + 1)))[0], emb.reshape(-1, DIM).mean(0), "pca")
    ds = open_cube(write_cube(tmp_path / "c.zarr", emb, GRID, dtype="int8", chunk=16, basis=plain))
    stored = cube_basis(ds)
    assert stored.weights is not None and stored.code_size == RANK + 2
    np.testing.assert_allclose(stored.project(emb[0, :3]), plain.diagonal().project(emb[0, :3]), atol=1e-6)


def corrupt(path, change):
    group = zarr.open_group(str(path), mode="r+")
    attrs = dict(group.attrs["basis"])
    change(attrs, group)
    group.attrs["basis"] = attrs


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a, g: a.update(weights=a["weights"][:-1]), "needs norm weights, one a code"),
        (lambda a, g: a.pop("weights"), "needs norm weights, one a code"),
        (lambda a, g: a.update(weights=[0.0] * len(a["weights"])), "finite values > 0"),
        (lambda a, g: a.update(weights=[2.0] * len(a["weights"])), "not in the version-4 form"),
        (lambda a, g: g["basis"].__setitem__((0, 0), np.nan), "NaN or infinite"),
    ],
)
def test_a_bad_stored_basis_is_refused_in_one_line(tmp_path, change, message, head):
    z, weight, b, _ = head(bias=True)
    path = tmp_path / "c.zarr"
    write_head(path, z, linear_head_basis(weight, b), "int8")
    corrupt(path, change)
    with pytest.raises(NotACubeError, match=message) as err:
        open_cube(path)
    assert "\n" not in str(err.value) and "rebuild the cube" in str(err.value)


def test_bad_bases_and_versions_are_refused(tmp_path, head):
    q = np.linalg.qr(np.random.default_rng(0).normal(size=(6, 3)))[0]
    with pytest.raises(BadInputError, match="3 finite values > 0"):
        Basis(q, np.zeros(6), "pca", weights=np.ones(4))
    with pytest.raises(BadInputError, match="not in the version-4 form"):
        Basis(2 * q, np.zeros(6), "pca", weights=np.ones(3))
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(BadInputError, match="norm scale must be finite and > 0"):
            Basis(q, np.ones(6), "pca", norm_scale=bad)
    z, weight, b, _ = head(bias=False)
    path = tmp_path / "c.zarr"
    write_head(path, z, linear_head_basis(weight, b), "int8")
    group = zarr.open_group(str(path), mode="r+")
    group.attrs["format_version"] = 5
    with pytest.raises(NotACubeError, match="format version 5; this landprompt reads versions 1, 2, 3, 4"):
        open_cube(path)
    group.attrs["format_version"] = 4
    del group["offset"]
    with pytest.raises(NotACubeError, match="version-4 cube without its basis"):
        open_cube(path)
    out = CliRunner().invoke(app, ["cube", "info", str(path)])
    assert out.exit_code != 0 and "without its basis" in out.output


@pytest.mark.parametrize(("version", "scale_dtype"), [(2, np.float32), (3, np.float16)])
def test_old_versions_decode_score_and_build_overviews(
    tmp_path, cube_data, clip_like, version, scale_dtype, unit
):
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
