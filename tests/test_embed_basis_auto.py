"""`embed run --basis auto` (the default): head basis, else PCA, else version 1; begun runs keep theirs."""

from pathlib import Path

import numpy as np
import pytest

from landprompt.embedder.cube import content_hash, open_cube, read_window
from landprompt.embedder.models import create_encoder, save_checkpoint
from landprompt.embedder.run import embed_run
from landprompt.eo.local import LocalSource
from landprompt.errors import BadInputError


def checkpoint(folder: Path, name: str, **arguments) -> Path:
    import torch

    torch.manual_seed(0)
    encoder = create_encoder(
        "sits", embed_dim=arguments.pop("embed_dim", 32), depth=1, num_heads=2, pool_size=3, **arguments
    )
    return save_checkpoint(encoder, folder / name)


@pytest.fixture(scope="module")
def linear_sits(tmp_path_factory) -> Path:
    """A plain linear head (biased) from the default backbone width 128 into 160-d."""
    return checkpoint(tmp_path_factory.mktemp("ckpt"), "linear", embed_dim=128, clip_dim=160, head="linear")


@pytest.fixture(scope="module")
def mlp_sits(tmp_path_factory) -> Path:
    """A head that is not linear, into 16-d."""
    return checkpoint(tmp_path_factory.mktemp("ckpt"), "mlp", clip_dim=16, head="mlp")


@pytest.fixture(scope="module")
def corner(stac_fixture):
    return stac_fixture.grid.window(slice(0, 32), slice(0, 32))


def embed(corner, source, out, model, **kwargs):
    return embed_run(corner, 2022, str(model), source, out, progress=False, chunk=16, **kwargs)


def test_linear_head_default_is_its_exact_basis_and_scores_as_version_1(
    stac_fixture, corner, linear_sits, tmp_path
):
    source = LocalSource(stac_fixture.stack)
    auto = open_cube(embed(corner, source, tmp_path / "auto.zarr", linear_sits, dtype="int8"))
    v1 = open_cube(embed(corner, source, tmp_path / "v1.zarr", linear_sits, dtype="int8", basis="none"))
    assert auto.attrs["format_version"] == 4 and auto.attrs["basis"]["kind"] == "linear_head"
    assert auto.sizes["r"] == 128 and auto.sizes["k"] == 129 and auto.sizes["d"] == 160  # biased head: +1
    assert "embedding" not in auto and v1.attrs["format_version"] == 1 and "code" not in v1
    ea, va = read_window(auto, slice(None), slice(None))
    eb, vb = read_window(v1, slice(None), slice(None))
    np.testing.assert_array_equal(va, vb)
    assert va.any()
    queries = np.random.default_rng(0).normal(size=(5, 160)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    np.testing.assert_allclose(ea[va] @ queries.T, eb[vb] @ queries.T, atol=0.02)  # int8, both layouts
    assert auto["code"].nbytes < v1["embedding"].nbytes / 1.2


def test_other_heads_default_to_a_pca_basis_and_a_rerun_does_nothing(
    stac_fixture, corner, mlp_sits, tmp_path, monkeypatch
):
    import landprompt.embedder.run as run

    source = LocalSource(stac_fixture.stack)
    out = tmp_path / "pca.zarr"
    full = open_cube(embed(corner, source, tmp_path / "full.zarr", mlp_sits, basis="none"))
    cube = open_cube(embed(corner, source, out, mlp_sits, rank=8))
    assert cube.attrs["format_version"] == 4 and cube.attrs["basis"]["kind"] == "pca"
    assert 8 <= cube.attrs["basis"]["rank"] <= 16 and cube.attrs["basis"]["info"]["explained_variance"] > 0.99
    assert not (tmp_path / ".pca.zarr.v1-staging").exists()
    ea, va = read_window(full, slice(None), slice(None))
    eb, vb = read_window(cube, slice(None), slice(None))
    np.testing.assert_array_equal(va, vb)
    assert np.abs((ea[va] * eb[vb]).sum(-1) - 1).max() < 0.02
    digest = content_hash(cube)

    def refuse(*args, **kwargs):
        raise AssertionError("a finished run was embedded again")

    monkeypatch.setattr(run, "embed_window", refuse)
    (tmp_path / ".pca.zarr.v1-staging" / "embedding").mkdir(parents=True)  # killed while removing it
    assert content_hash(open_cube(embed(corner, source, out, mlp_sits, rank=8))) == digest
    assert not (tmp_path / ".pca.zarr.v1-staging").exists()
    with pytest.raises(BadInputError, match=r"holds another run \(different grid\)"):
        embed(corner.window(slice(0, 16), slice(0, 32)), source, out, mlp_sits, rank=8)
    with pytest.raises(BadInputError, match=r"holds another run \(different layout\)"):  # a finished v1 run
        embed(corner, source, tmp_path / "full.zarr", mlp_sits, basis="pca", rank=8)


def test_a_damaged_pca_default_cube_is_repaired_to_the_same_bytes(stac_fixture, corner, mlp_sits, tmp_path):
    from landprompt.embedder.cube import mark_for_repair, verify

    source = LocalSource(stac_fixture.stack)
    out = embed(corner, source, tmp_path / "pca.zarr", mlp_sits, rank=8)
    digest = content_hash(open_cube(out))
    next(f for f in (out / "code").rglob("*") if f.is_file() and f.parent.name == "0").unlink()
    assert mark_for_repair(out, verify(out, progress=False))
    # the staging cube is embedded again (the same sample, so the same basis), one chunk rewritten
    assert content_hash(open_cube(embed(corner, source, out, mlp_sits, rank=8))) == digest
    assert verify(out, progress=False).ok and not (tmp_path / ".pca.zarr.v1-staging").exists()


def test_embeddings_no_wider_than_the_rank_stay_version_1(stac_fixture, corner, mlp_sits, tmp_path):
    cube = open_cube(embed(corner, LocalSource(stac_fixture.stack), tmp_path / "c.zarr", mlp_sits))
    assert cube.attrs["format_version"] == 1 and cube.sizes["d"] == 16  # d = 16 <= rank 64


def test_a_run_begun_as_version_1_keeps_its_layout_on_resume(
    stac_fixture, corner, linear_sits, tmp_path, monkeypatch
):
    import landprompt.embedder.run as run

    source = LocalSource(stac_fixture.stack)
    out = tmp_path / "begun.zarr"
    whole = run.embed_window
    calls = []

    def dies_after_one(task, window):
        calls.append(window)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return whole(task, window)

    monkeypatch.setattr(run, "embed_window", dies_after_one)
    with pytest.raises(KeyboardInterrupt):
        embed(corner, source, out, linear_sits, basis="none")  # as `auto` wrote it before it meant `head`
    monkeypatch.setattr(run, "embed_window", whole)
    resumed = open_cube(embed(corner, source, out, linear_sits))
    reference = open_cube(embed(corner, source, tmp_path / "v1.zarr", linear_sits, basis="none"))
    assert resumed.attrs["format_version"] == 1
    assert content_hash(resumed) == content_hash(reference)


def test_auto_tells_a_linear_head_without_building_its_basis(linear_sits, mlp_sits, tmp_path, monkeypatch):
    from landprompt.embedder.models import load_checkpoint
    from landprompt.embedder.models.sits import SitsEncoder
    from landprompt.embedder.run import head_basis, resolve_basis

    built = []
    whole = SitsEncoder.head_basis
    monkeypatch.setattr(SitsEncoder, "head_basis", lambda self: built.append(self) or whole(self))
    linear, mlp = (load_checkpoint(path, device="cpu") for path in (linear_sits, mlp_sits))
    assert resolve_basis("auto", linear, tmp_path / "a.zarr") == "head" and not built
    assert resolve_basis("auto", mlp, tmp_path / "b.zarr") == "none" and not built  # d = 16 <= rank
    assert head_basis(linear, "head").kind == "linear_head" and built == [linear]
    with pytest.raises(BadInputError, match="needs an encoder with a linear head"):
        head_basis(mlp, "head")
