"""Cube overviews: the weighted mean of the level below in the stored space, resumable, versioned."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from landprompt.embedder.basis import fit_pca
from landprompt.embedder.cube import open_cube, read_window, write_cube
from landprompt.embedder.overviews import (
    build_overviews,
    level_grid,
    n_levels,
    open_fraction,
    open_overviews,
    overviews_summary,
    verify_overviews,
)
from landprompt.errors import DamagedCubeError, NotACubeError
from landprompt.geo import Grid

GRID = Grid("EPSG:32632", Affine(10.0, 0, 680_000.0, 0, -10.0, 4_800_000.0), (70, 50))


def cube(path: Path, version: int) -> Path:
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(3, 16))
    emb = centres[rng.integers(0, 3, GRID.shape)] + rng.normal(0, 0.1, (*GRID.shape, 16))
    emb = (emb / np.linalg.norm(emb, axis=-1, keepdims=True)).astype(np.float32)
    valid = np.ones(GRID.shape, bool)
    valid[:5] = False
    valid[10, 11] = False
    basis = fit_pca(emb.reshape(-1, 16), rank=16, min_variance=None) if version == 2 else None
    return write_cube(path, emb, GRID, valid=valid, chunk=16, dtype="fp16", basis=basis)


@pytest.mark.parametrize("version", [1, 2])
def test_level_one_is_the_renormalised_valid_mean(tmp_path: Path, version: int) -> None:
    path = cube(tmp_path / "cube.zarr", version)
    paths = build_overviews(path)
    assert [p.name for p in paths] == ["1", "2", "3"] and n_levels(GRID.shape, 16) == 3
    levels = open_overviews(path)
    assert levels[2].sizes["y"] == 9 and levels[2].sizes["x"] == 7
    assert open_cube(paths[0]).attrs["format_version"] == {1: 1, 2: 4}[version]  # 2: in a basis
    base, valid = read_window(open_cube(path), slice(0, 70), slice(0, 50))
    level, level_valid = read_window(levels[0], slice(0, 35), slice(0, 25))
    weights = valid.reshape(35, 2, 25, 2)
    mean = (base.reshape(35, 2, 25, 2, 16) * weights[..., None]).sum(axis=(1, 3))
    mean /= np.maximum(np.linalg.norm(mean, axis=-1, keepdims=True), 1e-12)
    fraction = levels[0]["valid_fraction"].to_numpy()
    assert np.array_equal(fraction, weights.sum(axis=(1, 3)) / 4)
    assert np.array_equal(level_valid, fraction > 0)
    assert np.all((level * mean).sum(-1)[level_valid] > 0.999)
    assert level_grid(GRID, 1).transform.a == 20 and level_grid(GRID, 1).bounds == GRID.bounds


@pytest.mark.slow  # over 1 s; the full suite (make test, CI) runs it
def test_overviews_resume_to_the_same_bytes(tmp_path: Path) -> None:
    whole = cube(tmp_path / "whole.zarr", 2)
    build_overviews(whole)
    cut = cube(tmp_path / "cut.zarr", 2)

    def stop(done: int, total: int) -> None:
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_overviews(cut, progress=stop)
    with pytest.raises(NotACubeError, match="unfinished"):
        open_overviews(cut)
    seen: list[int] = []
    build_overviews(cut, progress=lambda done, total: seen.append(done))
    assert seen[0] == 6  # the 5 finished chunks were not rewritten
    for a, b in zip(open_overviews(whole), open_overviews(cut), strict=True):
        assert a.attrs["content_hash"] == b.attrs["content_hash"]
        assert np.array_equal(a["valid_fraction"].to_numpy(), b["valid_fraction"].to_numpy())


def test_unknown_overview_versions_and_stale_overviews_are_refused(tmp_path: Path) -> None:
    path = cube(tmp_path / "cube.zarr", 1)
    assert open_overviews(path) == []
    build_overviews(path)
    meta = path / "overviews" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["format_version"] = 99
    meta.write_text(json.dumps(doc))
    with pytest.raises(NotACubeError, match="overview format version 99"):
        open_overviews(path)
    doc["attributes"]["format_version"] = 1
    doc["attributes"]["source_content_hash"] = "0" * 64
    meta.write_text(json.dumps(doc))
    with pytest.raises(NotACubeError, match="another version of the cube"):
        open_overviews(path)


def test_cli_writes_overviews(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from landprompt.cli.main import app

    path = cube(tmp_path / "cube.zarr", 2)
    result = CliRunner().invoke(app, ["cube", "overviews", str(path)])
    assert result.exit_code == 0, result.output
    assert "3 overview levels" in result.output and len(open_overviews(path)) == 3
    missing = CliRunner().invoke(app, ["cube", "overviews", str(tmp_path / "none.zarr")])
    assert missing.exit_code != 0 and "does not exist" in missing.output


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_a_damaged_fraction_chunk_is_a_named_error(tmp_path: Path, damage: str) -> None:
    path = cube(tmp_path / "cube.zarr", 1)
    build_overviews(path)
    chunk = path / "overviews" / "1" / "valid_fraction" / "c" / "1" / "0"  # rows 16:32, cols 0:16
    if damage == "truncated":
        chunk.write_bytes(chunk.read_bytes()[:-3])
    else:
        chunk.unlink()
    what = "fails its checksum" if damage == "truncated" else "is missing"
    for read in (
        lambda: open_overviews(path)[0]["valid_fraction"].to_numpy(),
        lambda: open_fraction(path / "overviews" / "1")[16:32, 0:16],
    ):
        with pytest.raises(DamagedCubeError) as caught:
            read()
        message = str(caught.value)
        assert "chunk (1, 0) (rows 16:32, cols 0:16" in message and "of 'valid_fraction' " + what in message
        assert "\n" not in message
    assert open_fraction(path / "overviews" / "1")[:16].shape == (16, 25)  # other chunks still read


def _values(level: Path) -> str:
    return "code" if (level / "code").is_dir() else "embedding"


@pytest.mark.slow  # over 1 s; the full suite (make test, CI) runs it
def test_verify_checks_every_overview_level(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from landprompt.cli.main import app

    path = cube(tmp_path / "cube.zarr", 2)
    build_overviews(path)
    intact = CliRunner().invoke(app, ["cube", "verify", str(path)])
    assert intact.exit_code == 0, intact.output
    assert "overviews of" in intact.output and "of 3 levels match their records" in intact.output
    one, two, three = (path / "overviews" / str(level) for level in (1, 2, 3))
    values = one / _values(one) / "c"
    (values / "0" / "1" / "0").write_bytes((values / "0" / "0" / "0").read_bytes())  # valid bytes, moved
    fraction = one / "valid_fraction" / "c" / "1" / "0"
    fraction.write_bytes(fraction.read_bytes()[:-3])
    (two / "valid" / "c" / "1" / "0").unlink()
    (three / "valid_fraction" / "c" / "0" / "5").write_bytes(b"x")
    (path / "overviews" / "junk").mkdir()
    reports = verify_overviews(path, progress=False)
    found = [[(p.index, p.status) for p in report.problems] for report in reports]
    assert found == [
        [((0, 1), "changed"), ((1, 0), "unreadable")],
        [((1, 0), "missing")],
        [((0, 5), "extra")],
        [((-1, -1), "extra")],
    ]
    assert "'valid_fraction' fails its checksum" in reports[0].problems[1].detail
    summary = overviews_summary(path, reports)
    assert "level 1: 1 changed, 1 unreadable; level 2: 1 missing; level 3: 1 extra" in summary
    assert summary.endswith(f"delete {path / 'overviews'} and run 'landprompt cube overviews {path}'")
    result = CliRunner().invoke(app, ["cube", "verify", str(path)])
    assert result.exit_code == 4 and "the overviews of" in result.output and "Traceback" not in result.output


def test_verify_names_unfinished_overviews(tmp_path: Path) -> None:
    path = cube(tmp_path / "cube.zarr", 1)
    assert verify_overviews(path) == []

    def stop(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_overviews(path, progress=stop)
    (report,) = verify_overviews(path, progress=False)
    assert not report.ok and "unfinished" in report.records


def test_a_build_makes_one_reader_a_level_and_one_basis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cube_data
) -> None:  # type: ignore[no-untyped-def]
    from concurrent import futures

    from landprompt.embedder import basis as basis_module
    from landprompt.embedder import cube as cube_module

    emb = cube_data.clip_like(GRID.shape, 16, 4)
    path = cube_data.legacy_cube(tmp_path / "v2.zarr", emb, GRID, 2, 4)  # its basis needs refitting
    pools, fits = [], []
    pool = futures.ThreadPoolExecutor
    monkeypatch.setattr(cube_module, "ThreadPoolExecutor", lambda *a, **k: pools.append(1) or pool(*a, **k))
    diagonal = basis_module.Basis.diagonal
    monkeypatch.setattr(
        basis_module.Basis,
        "diagonal",
        lambda self, *a: fits.append(self.weights is None) or diagonal(self, *a),
    )
    from landprompt.embedder import overviews as overviews_module

    bases = []
    cube_basis = overviews_module.cube_basis
    monkeypatch.setattr(overviews_module, "cube_basis", lambda ds: bases.append(1) or cube_basis(ds))
    build_overviews(path)  # 3 levels of 6, 2 and 1 chunks
    assert len(pools) == 3  # one read-ahead thread a level
    assert fits.count(True) == 1  # the version-4 form of the cube's basis is fitted once a build
    assert len(bases) == 1 + 3  # the levels' basis, then each level's below once


def test_reading_a_version_4_window_normalises_its_codes_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from landprompt.embedder import basis as basis_module

    ds = open_cube(cube(tmp_path / "cube.zarr", 2))
    calls = []
    unit_scale = basis_module.Basis.unit_scale
    monkeypatch.setattr(
        basis_module.Basis, "unit_scale", lambda self, v: calls.append(v.shape) or unit_scale(self, v)
    )
    emb, valid = read_window(ds, slice(16, 32), slice(0, 16))
    assert calls == [(16, 16, 16)]
    norms = np.linalg.norm(emb, axis=-1)
    np.testing.assert_allclose(norms[valid], 1.0, atol=1e-3)
