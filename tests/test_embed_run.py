from pathlib import Path

import numpy as np
import pytest

from kill import run_killed
from landprompt.embedder.cube import chunk_windows, content_hash, open_cube, read_window
from landprompt.embedder.models import create_encoder, save_checkpoint
from landprompt.embedder.run import embed_run, plan_grid
from landprompt.eo.local import LocalSource
from landprompt.eo.stac import StacSource
from landprompt.errors import BadInputError


def store_files(path: Path) -> dict[str, bytes]:
    return {
        str(f.relative_to(path)): f.read_bytes()
        for f in sorted(path.rglob("*"))
        if f.is_file() and ".landprompt_progress" not in f.parts
    }


@pytest.fixture(scope="module")
def tiny_sits(tmp_path_factory) -> Path:
    """A small random sits encoder saved as a checkpoint (what `--model CKPT` takes)."""
    import torch

    torch.manual_seed(0)
    encoder = create_encoder("sits", clip_dim=16, embed_dim=32, depth=1, num_heads=2, pool_size=3)
    return save_checkpoint(encoder, tmp_path_factory.mktemp("ckpt") / "tiny_sits")


def embed(aoi, source, out, model, **kwargs):
    return embed_run(aoi, 2022, str(model), source, out, progress=False, **kwargs)


@pytest.fixture(scope="module")
def corner(stac_fixture):
    """The fixture grid's north-west 32 x 32 pixels: a quarter of the work for tests comparing two runs."""
    return stac_fixture.grid.window(slice(0, 32), slice(0, 32))


def test_stac_and_local_stack_give_the_same_cube(stac_fixture, tiny_sits, tmp_path):
    stac = embed(
        stac_fixture.grid,
        StacSource(catalog=stac_fixture.catalog),
        tmp_path / "stac.zarr",
        tiny_sits,
        chunk=32,
    )
    local = embed(
        stac_fixture.grid, LocalSource(stac_fixture.stack), tmp_path / "local.zarr", tiny_sits, chunk=32
    )
    a, b = open_cube(stac), open_cube(local)
    assert a.sizes["y"] == 64 and a.sizes["d"] == 16
    assert a.rio.crs == stac_fixture.grid.crs
    for x, y in zip(
        read_window(a, slice(None), slice(None)), read_window(b, slice(None), slice(None)), strict=True
    ):
        np.testing.assert_array_equal(x, y)
    assert content_hash(a) == content_hash(b)
    emb, valid = read_window(a, slice(None), slice(None))
    assert valid.all() and np.isfinite(emb).all()
    np.testing.assert_allclose(np.linalg.norm(emb, axis=-1), 1, atol=2e-3)
    assert a.attrs["year"] == 2022 and a.attrs["model"].startswith("sits")
    assert a.attrs["checkpoint_sha256"]


def test_chunked_run_equals_one_pass(stac_fixture, corner, tiny_sits, tmp_path):
    source = LocalSource(stac_fixture.stack)
    chunked = embed(corner, source, tmp_path / "c16.zarr", tiny_sits, chunk=16)
    whole = embed(corner, source, tmp_path / "c32.zarr", tiny_sits, chunk=32)
    a = read_window(open_cube(chunked), slice(None), slice(None))[0]
    b = read_window(open_cube(whole), slice(None), slice(None))[0]
    np.testing.assert_allclose(a, b, atol=2e-3)  # fp16 storage; the halo makes pooled borders agree


def test_zarr_v2_run_is_the_default_run_in_a_layout_gdal_reads(stac_fixture, corner, tiny_sits, tmp_path):
    import rasterio

    source = LocalSource(stac_fixture.stack)
    default = embed(corner, source, tmp_path / "v3.zarr", tiny_sits, chunk=16)
    gdal = embed(corner, source, tmp_path / "v2.zarr", tiny_sits, chunk=16, zarr_format=2)
    assert (gdal / ".zgroup").is_file() and not (gdal / "zarr.json").exists()
    assert open_cube(gdal).attrs["content_hash"] == open_cube(default).attrs["content_hash"]
    ds = open_cube(gdal)
    with rasterio.open(f'ZARR:"{gdal}":/embedding') as src:
        assert (src.count, src.height, src.width) == (ds.sizes["d"], ds.sizes["y"], ds.sizes["x"])
        assert src.crs == corner.crs and src.transform == corner.transform


@pytest.mark.slow  # over 1 s; the full suite (make test, CI) runs it
def test_pca_basis_run_equals_the_full_run_in_its_basis(stac_fixture, corner, tiny_sits, tmp_path):
    source = LocalSource(stac_fixture.stack)
    full = embed(corner, source, tmp_path / "full.zarr", tiny_sits, chunk=16, dtype="fp16")
    pca = embed(
        corner,
        source,
        tmp_path / "pca.zarr",
        tiny_sits,
        chunk=16,
        dtype="fp16",
        basis="pca",
        rank=16,
    )
    a, b = open_cube(full), open_cube(pca)
    assert "code" in b and b.attrs["format_version"] == 4 and "embedding" not in b
    assert not (tmp_path / ".pca.zarr.v1-staging").exists()
    ea, va = read_window(a, slice(None), slice(None))
    eb, vb = read_window(b, slice(None), slice(None))
    np.testing.assert_array_equal(va, vb)
    np.testing.assert_allclose(eb[vb], ea[va], atol=5e-3)  # rank 16 = d: the basis is exact up to fp16


def test_pixels_without_any_observation_are_invalid_not_nan(stac_fixture, tiny_sits, tmp_path):
    grid = stac_fixture.grid
    wider = grid.window(slice(0, 64), slice(0, 64))
    from affine import Affine

    from landprompt.geo import Grid

    wider = Grid(
        grid.crs, grid.transform @ Affine.translation(-16, 0), (64, 80)
    )  # 16 columns west of the data
    cube = embed(wider, LocalSource(stac_fixture.stack), tmp_path / "wide.zarr", tiny_sits, chunk=32)
    emb, valid = read_window(open_cube(cube), slice(None), slice(None))
    assert not valid[:, :16].any() and valid[:, 16:].all()
    assert np.isfinite(emb).all() and not emb[:, :16].any()


@pytest.mark.slow  # a run killed mid-write, then resumed and compared
def test_killed_run_resumes_bitwise_identical(stac_fixture, tiny_sits, tmp_path):
    body = f"""
        import json
        from landprompt.embedder.run import embed_run
        from landprompt.eo.local import LocalSource
        from landprompt.geo import Grid
        grid = Grid.from_dict(json.loads({json_grid(stac_fixture.grid)!r}))
        embed_run(grid, 2022, {str(tiny_sits)!r}, LocalSource({str(stac_fixture.stack)!r}),
                  {str(tmp_path / "killed.zarr")!r}, chunk=16, progress=False)
    """
    run_killed(tmp_path, "landprompt.embedder.cube:CubeWriter.write_chunk", 3, body)
    source = LocalSource(stac_fixture.stack)
    resumed = embed(stac_fixture.grid, source, tmp_path / "killed.zarr", tiny_sits, chunk=16)
    reference = embed(stac_fixture.grid, source, tmp_path / "reference.zarr", tiny_sits, chunk=16)
    assert store_files(resumed) == store_files(reference)


def json_grid(grid) -> str:
    import json

    return json.dumps(grid.to_dict())


def test_bad_input(stac_fixture, tiny_sits, tmp_path):
    source = LocalSource(stac_fixture.stack)
    with pytest.raises(BadInputError, match="pixels is over"):
        plan_grid("5,40,15,50", resolution=10)
    with pytest.raises(BadInputError, match="not projected in metres"):
        plan_grid("9.0,45.0,9.01,45.01", crs="EPSG:4326")
    with pytest.raises(BadInputError, match="Sentinel era"):
        embed_run(stac_fixture.grid, 1990, str(tiny_sits), source, tmp_path / "x.zarr", progress=False)
    with pytest.raises(BadInputError):
        embed(stac_fixture.grid, source, tmp_path / "y.zarr", tmp_path / "missing.json")
    assert not (tmp_path / "x.zarr").exists() and not (tmp_path / "y.zarr").exists()
    embed(stac_fixture.grid, source, tmp_path / "z.zarr", tiny_sits, chunk=32)
    with pytest.raises(BadInputError, match="another run"):
        embed(stac_fixture.grid, source, tmp_path / "z.zarr", tiny_sits, chunk=16)


def test_cli_embed_run_and_eo_commands(stac_fixture, tiny_sits, tmp_path):
    from typer.testing import CliRunner

    from landprompt.cli import app

    runner = CliRunner()
    lon0, lat0, lon1, lat1 = stac_fixture.grid.bbox
    inner = f"{lon0 + 0.001},{lat0 + 0.001},{lon1 - 0.001},{lat1 - 0.001}"
    out = tmp_path / "cli.zarr"
    args = [
        "embed",
        "run",
        "--aoi",
        inner,
        "--year",
        "2022",
        "--out",
        str(out),
        "--model",
        str(tiny_sits),
        "--source",
        str(stac_fixture.stack),
        "--chunk",
        "32",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert open_cube(out).sizes["d"] == 16
    again = runner.invoke(app, args)  # a finished run: nothing left to do, same cube
    assert again.exit_code == 0, again.output

    result = runner.invoke(
        app,
        [
            "eo",
            "composite",
            "--aoi",
            inner,
            "--year",
            "2022",
            "--out",
            str(tmp_path / "c.nc"),
            "--source",
            str(stac_fixture.catalog),
        ],
    )
    assert result.exit_code == 0, result.output
    import xarray as xr

    with xr.open_dataset(tmp_path / "c.nc") as composite:
        assert composite["s2"].shape[:2] == (12, 10)
    assert "B8A" in runner.invoke(app, ["eo", "bands"]).output
    bad = runner.invoke(
        app,
        [
            "embed",
            "run",
            "--aoi",
            inner,
            "--year",
            "2022",
            "--out",
            str(tmp_path / "b.zarr"),
            "--source",
            "nowhere",
        ],
    )
    assert bad.exit_code == 2 and "unknown source" in bad.output
    assert not (tmp_path / "b.zarr").exists()


def test_run_on_a_local_dask_cluster_equals_a_run_here(stac_fixture, corner, tiny_sits, tmp_path):
    source = LocalSource(stac_fixture.stack)
    here = embed(corner, source, tmp_path / "here.zarr", tiny_sits, chunk=16)
    dask = embed(corner, source, tmp_path / "dask.zarr", tiny_sits, chunk=16, scheduler="local")
    assert content_hash(open_cube(here)) == content_hash(open_cube(dask))


@pytest.fixture(scope="module")
def bottleneck_sits(tmp_path_factory) -> Path:
    """A small random sits encoder whose linear head goes through a 64-wide bottleneck (clip_dim 96)."""
    import torch

    torch.manual_seed(1)
    encoder = create_encoder(
        "sits", clip_dim=96, embed_dim=32, depth=1, num_heads=2, pool_size=3, head="linear", bottleneck=64
    )
    return save_checkpoint(encoder, tmp_path_factory.mktemp("ckpt") / "bottleneck_sits")


@pytest.mark.parametrize("dtype, atol", [("int8", 0.02), ("fp16", 2e-3)])
def test_bottleneck_checkpoint_writes_r64_codes_with_exact_scores(
    stac_fixture, bottleneck_sits, tmp_path, dtype, atol
):
    from landprompt.embedder.recipe import EncoderRecipe
    from landprompt.embedder.run import EmbedTask, embed_window
    from landprompt.query.classes import concept_probability
    from landprompt.query.probability import probability_map
    from landprompt.query.scoring import iter_scores

    source = LocalSource(stac_fixture.stack)
    cube = open_cube(embed(stac_fixture.grid, source, tmp_path / "c.zarr", bottleneck_sits, dtype=dtype))
    assert cube.attrs["format_version"] == 4 and cube.attrs["basis"]["kind"] == "linear_head"
    assert cube.sizes["r"] == 64 and cube.sizes["k"] == 64 and cube.sizes["d"] == 96  # no bias: no t
    assert "embedding" not in cube and "scale" not in cube
    assert cube["code"].dtype == (np.int8 if dtype == "int8" else np.float16)

    # the full-dimension float32 path: the same encoder's unit embeddings, one window for the whole grid
    task = EmbedTask(EncoderRecipe.of(str(bottleneck_sits)), source, stac_fixture.grid, 2022)
    rows, cols = stac_fixture.grid.shape
    full, valid = embed_window(task, chunk_windows((rows, cols), max(rows, cols))[0])
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(5, 96)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    scores = np.zeros((rows, cols, 5), np.float32)
    for window, chunk_scores, chunk_valid in iter_scores(cube, queries):
        scores[window.rows, window.cols] = chunk_scores
        np.testing.assert_array_equal(chunk_valid, valid[window.rows, window.cols])
    assert valid.any()
    np.testing.assert_allclose(scores[valid], full[valid] @ queries.T, atol=atol)

    got = probability_map(cube, queries[0], versus=queries[1:], logit_scale=10.0).to_numpy()
    want = concept_probability(full, np.concatenate([queries[:1], queries[1:]]), 10.0)
    np.testing.assert_allclose(got[valid], want[valid], atol=atol)
    assert np.isnan(got[~valid]).all()


def test_bottleneck_checkpoints_with_a_bias_still_load_and_store_one_more_code(tmp_path):
    import json

    import torch

    from landprompt.embedder.models.checkpoint import checkpoint_paths, load_checkpoint

    torch.manual_seed(2)
    arguments = dict(
        clip_dim=24, embed_dim=32, depth=1, num_heads=2, pool_size=3, head="linear", bottleneck=8
    )
    new = create_encoder("sits", **arguments)
    assert new.head[1].bias is None and new.head_basis().code_size == 8
    old = create_encoder("sits", **arguments, bottleneck_bias=True)
    ckpt = save_checkpoint(old, tmp_path / "old")
    config = checkpoint_paths(ckpt)[1]
    document = json.loads(config.read_text())
    del document["arguments"]["bottleneck_bias"]  # as written before the argument existed
    config.write_text(json.dumps(document))
    loaded = load_checkpoint(ckpt, device="cpu")
    basis = loaded.head_basis()
    assert basis.code_size == 9 and basis.rank == 8
    torch.testing.assert_close(loaded.head[1].bias, old.head[1].bias)
    z = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    with torch.no_grad():
        want = loaded.head[1](torch.from_numpy(z)).numpy()
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(basis.decode(basis.codes_from_features(z)), want, atol=1e-5)


def test_basis_head_needs_a_linear_head_and_none_keeps_version_1(stac_fixture, bottleneck_sits, tmp_path):
    import torch

    source = LocalSource(stac_fixture.stack)
    v1 = open_cube(embed(stac_fixture.grid, source, tmp_path / "v1.zarr", bottleneck_sits, basis="none"))
    assert v1.attrs["format_version"] == 1 and v1.sizes["d"] == 96
    torch.manual_seed(0)
    mlp = create_encoder("sits", clip_dim=16, embed_dim=32, depth=1, num_heads=2, pool_size=3, head="mlp")
    ckpt = save_checkpoint(mlp, tmp_path / "mlp")
    with pytest.raises(BadInputError, match="basis='head' needs an encoder with a linear head"):
        embed(stac_fixture.grid, source, tmp_path / "h.zarr", ckpt, basis="head")
    with pytest.raises(BadInputError, match="bottleneck needs head 'linear'"):
        create_encoder("sits", clip_dim=16, embed_dim=32, depth=1, num_heads=2, head="mlp", bottleneck=8)
    with pytest.raises(BadInputError, match=r"^basis must be one of"):
        embed(stac_fixture.grid, source, tmp_path / "b.zarr", ckpt, basis="bogus")
