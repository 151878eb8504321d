"""Cube format version 2: embeddings in a stored basis, scored in the basis, queried through a session."""

import numpy as np
import pytest
from affine import Affine
from typer.testing import CliRunner

import landprompt
from landprompt.cli import app
from landprompt.embedder.basis import Basis, fit_pca, linear_head_basis
from landprompt.embedder.convert import convert_cube
from landprompt.embedder.cube import CubeWriter, cube_basis, open_cube, read_window, write_cube
from landprompt.errors import BadInputError, NotACubeError
from landprompt.geo import Grid
from landprompt.index.build import build_index
from landprompt.query.classes import class_matrix, concept_probability
from landprompt.query.probability import probability_map
from landprompt.query.session import open_session

GRID = Grid(3035, Affine(10.0, 0.0, 4_000_000.0, 0.0, -10.0, 3_000_000.0), (40, 50))


@pytest.fixture
def planted(cube_data):
    """``planted(rank, dim, seed)``: ``(z, weight, bias, embeddings)`` of a linear head on GRID: unit
    embeddings (40, 50, dim) that lie (before normalising) in a rank-``rank`` affine subspace."""
    return lambda rank=8, dim=32, seed=0: cube_data.linear_head_embeddings(GRID.shape, dim, rank, seed)


def test_basis_rejects_bad_shapes_nan_and_ranks():
    with pytest.raises(BadInputError, match=r"shape \(d, r\) with 1 <= r <= d"):
        Basis(np.zeros((4, 8)), np.zeros(4), "pca")
    with pytest.raises(BadInputError, match="offset must have shape"):
        Basis(np.zeros((8, 4)), np.zeros(5), "pca")
    with pytest.raises(BadInputError, match="NaN"):
        Basis(np.full((8, 4), np.nan), np.zeros(8), "pca")
    with pytest.raises(BadInputError, match="between 1 and the embedding dimension 8"):
        fit_pca(np.ones((10, 8)), rank=9)


@pytest.mark.parametrize(("dtype", "tol"), [("fp16", 2e-3), ("int8", 2e-2)])
def test_exact_linear_head_layout_decodes_the_head_output(tmp_path, dtype, tol, planted):
    z, weight, bias, expected = planted()
    basis = linear_head_basis(weight, bias, {"head": "test"})
    writer = CubeWriter(tmp_path / "c.zarr", GRID, 32, dtype, chunk=16, basis=basis)
    valid = np.ones(GRID.shape, bool)
    valid[0, 0] = False
    for w in writer.windows():
        writer.write_chunk(w, z[w.rows, w.cols], valid[w.rows, w.cols], features=True)
    ds = open_cube(writer.finalize())
    assert ds.attrs["format_version"] == 4 and ds.sizes["k"] == 9 and ds.sizes["d"] == 32
    assert cube_basis(ds).kind == "linear_head"
    decoded, ok = read_window(ds, slice(0, 40), slice(0, 50))
    assert not ok[0, 0] and ok.sum() == 40 * 50 - 1 and np.all(decoded[0, 0] == 0)
    assert np.abs(decoded[ok] - expected[ok]).max() < tol
    with pytest.raises(BadInputError, match=r"chunk features must have shape \(16, 16, 8\)"):
        writer.write_chunk(writer.windows()[0], expected[:16, :16], features=True)


def test_pca_basis_records_variance_and_grows_its_rank(tmp_path, planted):
    _, _, _, emb = planted(rank=8)
    basis = fit_pca(emb.reshape(-1, 32), rank=4, min_variance=0.999, max_rank=16)
    assert 4 < basis.rank <= 9 and basis.info["explained_variance"] >= 0.999  # unit vectors span 9 dims
    capped = fit_pca(emb.reshape(-1, 32), rank=4, min_variance=0.999)
    assert capped.rank == 8  # at most twice the requested rank
    fixed = fit_pca(emb.reshape(-1, 32), rank=4, min_variance=None)
    assert fixed.rank == 4 and fixed.info["explained_variance"] < 0.999
    path = write_cube(
        tmp_path / "p.zarr", emb, GRID, dtype="fp16", chunk=16, basis=fit_pca(emb.reshape(-1, 32), 32)
    )
    decoded, _ = read_window(open_cube(path), slice(0, 40), slice(0, 50))
    assert np.abs(decoded - emb).max() < 2e-3  # full rank: exact up to float16
    assert open_cube(path).attrs["basis"]["info"]["explained_variance"] > 0.9999


def test_probability_map_in_the_basis_matches_exact_scores_and_needs_no_text_tower(tmp_path, planted, unit):
    z, weight, bias, emb = planted()
    rng = np.random.default_rng(1)
    concept, background = unit(rng.normal(size=32)), unit(rng.normal(size=(5, 32)))
    writer = CubeWriter(
        tmp_path / "c.zarr", GRID, 32, "int8", chunk=16, basis=linear_head_basis(weight, bias)
    )
    for w in writer.windows():
        writer.write_chunk(w, z[w.rows, w.cols], features=True)
    path = writer.finalize()
    exact = concept_probability(emb, class_matrix(concept, background), 100.0)
    got = probability_map(path, concept, versus=background)  # no clip, no logit_scale: CLIP's 100
    assert got.attrs["logit_scale"] == 100.0 and got.shape == GRID.shape
    assert np.abs(got.to_numpy() - exact).mean() < 2e-3
    low = probability_map(open_cube(path), concept, versus=background, logit_scale=10.0)
    assert (
        np.abs(low.to_numpy() - concept_probability(emb, class_matrix(concept, background), 10.0)).max()
        < 0.02  # int8 codes of 9 values
    )
    session = open_session(path)
    many = session.probability_maps(np.stack([concept, -concept]), background, logit_scale=100.0)
    assert many.dims == ("concept", "y", "x") and many.shape == (2, 40, 50)
    np.testing.assert_allclose(many[0].to_numpy(), got.to_numpy(), atol=1e-5)
    window = session.probability_window(slice(8, 24), slice(0, 32), concept[None], background, 100.0)
    np.testing.assert_allclose(window[..., 0], got.to_numpy()[8:24, 0:32], atol=1e-5)


def test_cube_attr_logit_scale_is_used_without_a_text_tower(tmp_path, planted, unit):
    _, _, _, emb = planted()
    path = write_cube(tmp_path / "c.zarr", emb, GRID, chunk=16, attrs={"logit_scale": 20.0})
    rng = np.random.default_rng(2)
    got = probability_map(path, unit(rng.normal(size=32)), versus=unit(rng.normal(size=(3, 32))))
    assert got.attrs["logit_scale"] == 20.0


def test_session_is_cached_per_path_and_reopened_when_the_cube_changes(tmp_path, planted):
    _, _, _, emb = planted()
    path = write_cube(tmp_path / "c.zarr", emb, GRID, chunk=16, basis=fit_pca(emb.reshape(-1, 32), 8))
    first = landprompt.open_session(path)
    assert landprompt.open_session(str(path)) is first and first.index is None
    build_index(path, progress=False)
    with_index = landprompt.open_session(path)
    assert with_index is not first and with_index.index is not None and with_index.index.info.space == "code"
    query = emb[7, 9]
    places = landprompt.top_k(path, query, k=3)
    assert (places.loc[0, "row"], places.loc[0, "col"]) == (7, 9) and places.loc[0, "score"] > 0.99
    scan = landprompt.top_k(open_cube(path), query, k=3, index=None)
    assert list(scan["row"]) == list(places["row"]) and list(scan["col"]) == list(places["col"])


def test_convert_resumes_and_refuses_bad_input(tmp_path, monkeypatch, planted):
    _, _, _, emb = planted(rank=8)
    old = write_cube(tmp_path / "old.zarr", emb, GRID, dtype="int8", chunk=16)
    fresh = convert_cube(old, tmp_path / "fresh.zarr", rank=9, min_variance=None, progress=False)
    reference = open_cube(fresh)
    decoded, _ = read_window(reference, slice(0, 40), slice(0, 50))
    assert np.abs(decoded - emb).max() < 0.05 and reference.attrs["converted_from"]["path"] == str(old)
    # a conversion killed after two chunks: the same command finishes it, bitwise identical
    original, calls = CubeWriter.write_chunk, []

    def dying(self, *args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(CubeWriter, "write_chunk", dying)
    resumed = tmp_path / "resumed.zarr"
    with pytest.raises(KeyboardInterrupt):
        convert_cube(old, resumed, rank=9, min_variance=None, progress=False)
    monkeypatch.setattr(CubeWriter, "write_chunk", original)
    with pytest.raises(NotACubeError, match="unfinished"):
        open_cube(resumed)
    runner = CliRunner()
    result = runner.invoke(app, ["cube", "convert", str(old), str(resumed), "--rank", "9", "--exact-rank"])
    assert result.exit_code == 0, result.output
    assert open_cube(resumed).attrs["content_hash"] == reference.attrs["content_hash"]
    bad = runner.invoke(app, ["cube", "convert", str(old), str(tmp_path / "x.zarr"), "--rank", "33"])
    assert bad.exit_code != 0 and "between 1 and the embedding dimension 32" in bad.output
    assert not (tmp_path / "x.zarr").exists()
    CubeWriter(tmp_path / "unfinished.zarr", GRID, 32, chunk=16)
    with pytest.raises(NotACubeError, match="unfinished"):
        convert_cube(tmp_path / "unfinished.zarr", tmp_path / "y.zarr")
    unfinished = runner.invoke(
        app, ["cube", "convert", str(tmp_path / "unfinished.zarr"), str(tmp_path / "y.zarr")]
    )
    assert unfinished.exit_code == NotACubeError.exit_code, unfinished.output
    assert len(unfinished.output.strip().splitlines()) == 1 and "unfinished" in unfinished.output
    assert not (tmp_path / "y.zarr").exists()
    with pytest.raises(BadInputError, match="already a cube in a basis"):
        convert_cube(fresh, tmp_path / "z.zarr")


@pytest.mark.parametrize("version", [1, 2])
def test_int8_values_are_stored_raw_and_zstd_cubes_still_read_the_same(
    tmp_path, monkeypatch, version, planted, unit
):
    import json

    from zarr.codecs import Crc32cCodec, ZstdCodec

    from landprompt.embedder import cube as cube_module

    z, weight, bias, embeddings = planted()
    basis = linear_head_basis(weight, bias) if version == 2 else None

    def write(path):
        writer = CubeWriter(path, GRID, 32, "int8", chunk=16, basis=basis)
        for w in writer.windows():
            values = z[w.rows, w.cols] if basis is not None else embeddings[w.rows, w.cols]
            writer.write_chunk(w, values, features=basis is not None)
        return writer.finalize()

    new = write(tmp_path / "new.zarr")
    name = "code" if version == 2 else "embedding"
    codecs = [c["name"] for c in json.loads((new / name / "zarr.json").read_text())["codecs"]]
    assert codecs == ["bytes", "crc32c"]  # a chunk file is the int8 bytes and their CRC32C
    chunk = (new / name / "c" / "1" / "2" / "0").read_bytes()
    assert len(chunk) == 16 * 16 * (basis.code_size if basis is not None else 32) + 4
    monkeypatch.setattr(cube_module, "_compressors", lambda name, dtype: (ZstdCodec(), Crc32cCodec()))
    old = write(tmp_path / "old.zarr")  # as cubes were written before: zstd on every array
    assert "zstd" in (old / name / "zarr.json").read_text()

    a, b = open_cube(new), open_cube(old)
    windows = [(slice(None), slice(None)), (slice(3, 9), slice(17, 30)), (slice(16, 32), slice(0, 16))]
    for rows, cols in windows:
        for got, want in zip(read_window(a, rows, cols), read_window(b, rows, cols), strict=True):
            np.testing.assert_array_equal(got, want)
    rng = np.random.default_rng(3)
    concept, versus = unit(rng.normal(size=32)), unit(rng.normal(size=(4, 32)))
    pa = probability_map(new, concept, versus=versus, logit_scale=10.0).to_numpy()
    pb = probability_map(old, concept, versus=versus, logit_scale=10.0).to_numpy()
    np.testing.assert_array_equal(pa, pb)
    exact = concept_probability(embeddings, class_matrix(concept, versus), 10.0)
    np.testing.assert_allclose(pa, exact, atol=0.02)
