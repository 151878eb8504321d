"""Fault injection: a damaged cube or index is a one-line error or a verify report, never data."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from affine import Affine
from typer.testing import CliRunner

from landprompt.cli import app
from landprompt.embedder.basis import fit_pca
from landprompt.embedder.cube import (
    CubeWriter,
    content_hash,
    mark_for_repair,
    open_cube,
    read_window,
    verify,
    write_cube,
)
from landprompt.errors import BadInputError, DamagedCubeError, LandpromptError
from landprompt.geo import Grid
from landprompt.index.build import build_index, default_index_path, sidecar_path
from landprompt.query.aggregate import aggregate
from landprompt.query.change import change_map
from landprompt.query.probability import probability_map
from landprompt.query.topk import top_k

X0, Y0 = 680_000.0, 4_800_000.0
GRID = Grid("EPSG:32632", Affine(10.0, 0, X0, 0, -10.0, Y0), (40, 40))
CHUNK = 16  # 3 x 3 chunks; (1, 1) is the damaged one, (2, 2) is all no-data


FORMATS = ["fp16", "int8", "v2-int8"]  # v2: codes in a stored PCA basis (format version 2)


def make_cube(path: Path, fmt: str) -> Path:
    rng = np.random.default_rng(0)
    embedding = rng.normal(size=(*GRID.shape, 32)).astype(np.float32)
    valid = np.ones(GRID.shape, bool)
    valid[32:, 32:] = False  # a whole chunk without data: stored too, so it is not mistaken for damage
    basis = fit_pca(embedding.reshape(-1, 32), 8) if fmt.startswith("v2-") else None
    dtype = fmt.removeprefix("v2-")
    return write_cube(path, embedding, GRID, valid=valid, dtype=dtype, chunk=CHUNK, basis=basis)  # type: ignore[arg-type]


def _values(cube: Path) -> str:
    """The per-pixel values array: ``embedding`` (version 1) or ``code`` (version 2)."""
    return "code" if (cube / "code").is_dir() else "embedding"


def _flip(file: Path) -> None:
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    file.write_bytes(bytes(data))


def _truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: len(file.read_bytes()) // 2])


FAULTS: dict[str, Callable[[Path], None]] = {
    "missing chunk": lambda cube: (cube / _values(cube) / "c/1/1/0").unlink(),
    "truncated chunk": lambda cube: _truncate(cube / _values(cube) / "c/1/1/0"),
    "flipped bytes": lambda cube: _flip(cube / _values(cube) / "c/1/1/0"),
    "missing valid chunk": lambda cube: (cube / "valid/c/1/1").unlink(),
    "truncated array zarr.json": lambda cube: _truncate(cube / _values(cube) / "zarr.json"),
}


def _units(path: Path) -> Path:
    ring = [[X0, Y0], [X0 + 400, Y0], [X0 + 400, Y0 - 400], [X0, Y0 - 400], [X0, Y0]]
    feature = {
        "type": "Feature",
        "properties": {"id": "all"},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }
    path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "crs": {"type": "name", "properties": {"name": "EPSG:32632"}},
                "features": [feature],
            }
        )
    )
    return path


def _read(reader: str, cube: Path, other: Path, clip: Any, tmp: Path) -> Any:
    """Run one reader over ``cube``; returns what it computed."""
    if reader == "map":
        return probability_map(cube, "olive groves", versus=["sea"], clip=clip).to_numpy()
    if reader == "top-k":
        return top_k(cube, np.ones(32, np.float32), k=5, index=None)
    if reader == "index build":
        return build_index(cube, tmp / "i.faiss", progress=False)
    if reader == "index build --no-verify":
        return build_index(cube, tmp / "i.faiss", progress=False, verify=False)
    if reader == "change":
        return change_map(cube, other, "olive groves", versus=["sea"], clip=clip)["diff"].to_numpy()
    if reader == "aggregate":
        return aggregate(cube, "olive groves", _units(tmp / "u.geojson"), versus=["sea"], clip=clip)
    if reader == "window":
        return read_window(open_cube(cube), slice(0, 40), slice(0, 40))
    report = verify(cube, progress=False)
    if report.ok:
        return report
    raise DamagedCubeError(report.summary())


READERS = [
    "map",
    "top-k",
    "index build",
    "index build --no-verify",
    "change",
    "aggregate",
    "window",
    "verify",
]


@pytest.fixture(scope="module")
def intact(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("intact")
    return {dtype: make_cube(root / f"{dtype}.zarr", dtype) for dtype in FORMATS}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("dtype", FORMATS)
def test_intact_cubes_read_and_verify(intact, tiny_clip, tmp_path, dtype, reader) -> None:
    result = _read(reader, intact[dtype], intact[dtype], tiny_clip, tmp_path)
    if reader == "map":
        assert np.isnan(result[32:, 32:]).all() and np.isfinite(result[:32, :32]).all()
    if reader == "verify":
        assert result.ok and result.n_chunks == 9


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("dtype", FORMATS)
def test_every_fault_is_an_error_naming_the_chunk(intact, tiny_clip, tmp_path, dtype, fault, reader) -> None:
    # A copy of the intact cube: make_cube is seeded, so it writes the same bytes again.
    cube = Path(shutil.copytree(intact[dtype], tmp_path / "damaged.zarr"))
    FAULTS[fault](cube)
    with pytest.raises(DamagedCubeError) as caught:
        _read(reader, cube, intact[dtype], tiny_clip, tmp_path)
    message = str(caught.value)
    assert f"cube {cube}" in message and "damaged" in message
    if fault == "truncated array zarr.json":
        assert f"{_values(cube)}/zarr.json" in message and "truncated or not JSON" in message
    elif reader != "verify" and reader != "index build":
        part = "'valid'" if "valid" in fault else f"'{_values(cube)}'"
        assert "chunk (1, 1) (rows 16:32, cols 16:32; lon " in message and part in message
    else:
        assert ("1 missing" if "missing" in fault else "1 unreadable") in message
    assert not (tmp_path / "i.faiss").exists()


def test_verify_reports_changed_and_extra_chunks(tmp_path) -> None:
    cube = make_cube(tmp_path / "c.zarr", "fp16")
    other = make_cube(tmp_path / "o.zarr", "int8")
    # a chunk that passes its checksum but is not what the run wrote: another cube's valid chunk
    (cube / "valid/c/0/0").write_bytes((other / "valid/c/2/2").read_bytes())
    (cube / "embedding/c/7").mkdir()
    (cube / "embedding/c/7/0").mkdir()
    (cube / "embedding/c/7/0/0").write_bytes(b"stray")
    report = verify(cube, progress=False)
    assert not report.ok
    assert [(p.index, p.status) for p in report.problems] == [((0, 0), "changed"), ((7, 0), "extra")]
    assert "1 changed, 1 extra of 9 chunks" in report.summary()


def test_repair_list_rewrites_exactly_the_damaged_chunks(tmp_path) -> None:
    cube = make_cube(tmp_path / "c.zarr", "int8")
    original = content_hash(open_cube(cube))
    (cube / "embedding/c/1/1/0").unlink()
    _flip(cube / "scale/c/0/2")
    pending = mark_for_repair(cube, verify(cube, progress=False))
    assert pending == [(0, 2), (1, 1)]
    with pytest.raises(BadInputError, match="unfinished cube run"):
        open_cube(cube)
    rng = np.random.default_rng(0)
    embedding = rng.normal(size=(*GRID.shape, 32)).astype(np.float32)
    valid = np.ones(GRID.shape, bool)
    valid[32:, 32:] = False
    writer = CubeWriter(cube, GRID, 32, "int8", CHUNK)
    assert [w.index for w in writer.pending()] == [(0, 2), (1, 1)]
    for w in writer.pending():
        writer.write_chunk(w, embedding[w.rows, w.cols], valid[w.rows, w.cols])
    writer.finalize()
    assert verify(cube, progress=False).ok
    assert content_hash(open_cube(cube)) == original


def test_repairing_chunk_1_leaves_chunks_10_and_up_of_its_row(tmp_path) -> None:
    grid = Grid(GRID.crs, GRID.transform, (4, 48))  # 12 chunk columns of 4
    embedding = np.random.default_rng(1).normal(size=(*grid.shape, 8)).astype(np.float32)
    cube = write_cube(tmp_path / "wide.zarr", embedding, grid, dtype="int8", chunk=4)
    _flip(cube / "embedding/c/0/1/0")
    assert mark_for_repair(cube, verify(cube, progress=False)) == [(0, 1)]
    assert not (cube / "embedding/c/0/1/0").exists()  # the damaged chunk is removed for rewriting
    assert all((cube / f"embedding/c/0/{j}/0").is_file() for j in (10, 11))  # "1*" once matched them


def test_cli_verify_exits_non_zero_with_a_report(tmp_path) -> None:
    cube = make_cube(tmp_path / "c.zarr", "fp16")
    runner = CliRunner()
    ok = runner.invoke(app, ["cube", "verify", str(cube)])
    assert ok.exit_code == 0 and "all 9 chunks match" in " ".join(ok.output.split())
    (cube / "valid/c/2/0").unlink()
    bad = runner.invoke(app, ["cube", "verify", str(cube), "--repair-list"])
    assert bad.exit_code == DamagedCubeError.exit_code
    output = " ".join(bad.output.split())
    assert "missing" in output and "marked 1 chunks [(2, 0)] for rewriting" in output
    assert "Traceback" not in bad.output


def test_truncated_root_metadata_says_damaged(tmp_path) -> None:
    cube = make_cube(tmp_path / "c.zarr", "fp16")
    _truncate(cube / "zarr.json")
    with pytest.raises(DamagedCubeError, match=r"zarr.json is truncated or not JSON; restore it or rebuild"):
        open_cube(cube)


def test_index_build_records_whether_it_verified(tmp_path) -> None:
    cube = make_cube(tmp_path / "c.zarr", "fp16")
    assert build_index(cube, progress=False).cube_verified is True
    sidecar = json.loads(sidecar_path(default_index_path(cube)).read_text())
    assert sidecar["cube_verified"] is True
    assert build_index(cube, progress=False, verify=False).cube_verified is False


@pytest.mark.parametrize("edit", ["chunk rewritten in place", "file touched", "untouched"])
def test_an_index_is_refused_once_its_cube_is_edited_in_place(tmp_path, edit) -> None:
    from landprompt.index.search import CubeIndex

    cube = make_cube(tmp_path / "c.zarr", "fp16")
    build_index(cube, progress=False, verify=False)
    chunks = cube / "embedding" / "c"
    if edit == "chunk rewritten in place":  # another chunk's valid bytes (CRC passes, content hash attr kept)
        (chunks / "0/1/0").write_bytes((chunks / "0/0/0").read_bytes())
    elif edit == "file touched":  # same bytes, new mtime (a copy does this): the digests accept it
        os.utime(chunks / "0/1/0", ns=(0, 10**18))
    if edit == "chunk rewritten in place":
        with pytest.raises(BadInputError) as caught:
            CubeIndex.for_cube(cube)
        message = str(caught.value)
        assert "\n" not in message and "is stale" in message
        assert message.endswith(f"rebuild it with 'landprompt index build {cube}'")
        with pytest.raises(BadInputError, match="is stale"):  # the default index of a query too
            top_k(cube, np.ones(32, np.float32), k=3)
    else:
        index = CubeIndex.for_cube(cube)
        assert index is not None and index.index.ntotal == index.info.ntotal


@pytest.mark.parametrize("damage", ["garbage", "truncated", "no sidecar", "bad sidecar"])
def test_an_unreadable_index_is_one_line(tmp_path, damage) -> None:
    cube = make_cube(tmp_path / "c.zarr", "fp16")
    build_index(cube, progress=False)
    index = default_index_path(cube)
    if damage == "garbage":
        index.write_bytes(os.urandom(4096))
    elif damage == "truncated":
        _truncate(index)
    elif damage == "no sidecar":
        sidecar_path(index).unlink()
    else:
        _truncate(sidecar_path(index))
    with pytest.raises(LandpromptError) as caught:
        top_k(cube, np.ones(32, np.float32), k=3)
    message = str(caught.value)
    assert "\n" not in message and "landprompt index build" in message
    result = CliRunner().invoke(app, ["query", "topk", str(cube), "x", "--k", "3"])
    assert result.exit_code != 0 and "Traceback" not in result.output


def test_convert_verifies_its_input_first(tmp_path) -> None:
    from landprompt.embedder.convert import convert_cube

    cube = make_cube(tmp_path / "old.zarr", "int8")
    FAULTS["flipped bytes"](cube)
    with pytest.raises(DamagedCubeError, match="chunk"):
        convert_cube(cube, tmp_path / "new.zarr", 8, progress=False)
    assert not (tmp_path / "new.zarr").exists()
