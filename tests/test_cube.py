"""Tests for the embedding cube format (landprompt.embedder.cube)."""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import signal
import textwrap
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr
import zarr
from affine import Affine

from landprompt.embedder.cube import (
    ChunkWindow,
    CubeWriter,
    chunk_windows,
    content_hash,
    cube_grid,
    cube_windows,
    describe,
    iter_chunks,
    open_cube,
    read_window,
    write_cube,
)
from landprompt.errors import BadInputError, NotACubeError
from landprompt.geo import Grid

# 300 x 170 pixels: not a multiple of the 128-pixel chunks used below.
GRID = Grid(32633, Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 6_000_000.0), (300, 170))


def unit_vectors(shape: tuple[int, ...], dim: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(*shape, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def store_files(path: Path) -> dict[str, bytes]:
    """Every file of a store (relative path -> bytes), progress markers excluded."""
    return {
        str(f.relative_to(path)): f.read_bytes()
        for f in sorted(path.rglob("*"))
        if f.is_file() and ".landprompt_progress" not in f.parts
    }


@pytest.fixture(scope="module")
def emb16() -> np.ndarray:
    return unit_vectors(GRID.shape, 16, seed=1)


@pytest.fixture(scope="module")
def fp16_cube(tmp_path_factory: pytest.TempPathFactory, emb16: np.ndarray) -> Path:
    path = tmp_path_factory.mktemp("cube") / "fp16.zarr"
    return write_cube(
        path, emb16, GRID, chunk=128, attrs={"model": "sits-test", "time_range": ["2023-01", "2023-12"]}
    )


# --- round trips -----------------------------------------------------------------------------------


def test_fp16_round_trip(fp16_cube: Path, emb16: np.ndarray) -> None:
    ds = open_cube(fp16_cube)
    assert ds["embedding"].dtype == np.float16
    emb, valid = read_window(ds, slice(None), slice(None))
    assert emb.dtype == np.float32 and emb.shape == (300, 170, 16)
    assert valid.all()
    assert np.abs(emb - emb16).max() <= 1e-3
    np.testing.assert_array_equal(emb, emb16.astype(np.float16).astype(np.float32))


def test_int8_round_trip(tmp_path: Path) -> None:
    grid = GRID.window(slice(0, 40), slice(0, 30))
    emb = unit_vectors(grid.shape, 512, seed=2)
    emb[3, 4] = 0.0  # a zero vector: scale 0, decodes to zeros
    ds = open_cube(write_cube(tmp_path / "c.zarr", emb, grid, dtype="int8", chunk=16))
    assert ds["embedding"].dtype == np.int8 and ds.attrs["dtype"] == "int8"
    scale = ds["scale"].to_numpy()
    np.testing.assert_allclose(scale, np.abs(emb).max(axis=-1) / 127, rtol=1e-6)
    assert scale[3, 4] == 0
    out, valid = read_window(ds, slice(None), slice(None))
    assert valid.all()
    assert np.all(np.abs(out - emb) <= scale[..., None] / 2 * (1 + 1e-5) + 1e-12)
    norms = np.linalg.norm(out, axis=-1) * np.linalg.norm(emb, axis=-1)
    cosine = np.sum(out * emb, axis=-1)[norms > 0] / norms[norms > 0]
    assert cosine.min() >= 0.999
    np.testing.assert_array_equal(out[3, 4], 0)


@pytest.mark.parametrize("dtype", ["fp16", "int8"])
def test_valid_mask_and_nan_round_trip(tmp_path: Path, emb16: np.ndarray, dtype: str) -> None:
    rng = np.random.default_rng(3)
    mask = rng.random(GRID.shape) > 0.2
    emb = emb16.copy()
    emb[10, 20] = np.nan  # a whole NaN vector
    emb[200, 100, 5] = np.nan  # one NaN element is enough
    ds = open_cube(write_cube(tmp_path / "c.zarr", emb, GRID, valid=mask, dtype=dtype, chunk=128))
    out, valid = read_window(ds, slice(None), slice(None))
    expected = mask.copy()
    expected[10, 20] = expected[200, 100] = False
    np.testing.assert_array_equal(valid, expected)
    assert not np.isnan(out).any()
    np.testing.assert_array_equal(out[~expected], 0)
    assert np.abs(out[expected] - emb16[expected]).max() <= 1e-2
    assert describe(ds)["valid_fraction"] == pytest.approx(expected.mean())


def test_open_zarr_reads_crs_coords_and_grid(fp16_cube: Path) -> None:
    plain = xr.open_zarr(fp16_cube)
    assert plain.rio.crs == GRID.crs
    assert "spatial_ref" in plain.coords
    assert plain["embedding"].attrs.get("grid_mapping", plain["embedding"].encoding.get("grid_mapping")) == (
        "spatial_ref"
    )
    ds = open_cube(fp16_cube)
    assert ds.rio.crs == GRID.crs
    assert tuple(ds.rio.transform())[:6] == tuple(GRID.transform)[:6]
    np.testing.assert_array_equal(ds["x"].to_numpy(), GRID.x_coords())
    np.testing.assert_array_equal(ds["y"].to_numpy(), GRID.y_coords())
    assert cube_grid(ds) == GRID
    assert ds.attrs["landprompt_format"] == "embedding-cube" and ds.attrs["format_version"] == 1
    assert ds.attrs["model"] == "sits-test" and ds.attrs["time_range"] == ["2023-01", "2023-12"]
    assert Grid.from_dict(ds.attrs["grid"]) == GRID


def test_cube_grid_of_a_window(fp16_cube: Path) -> None:
    ds = open_cube(fp16_cube).isel(y=slice(130, 200), x=slice(5, 50))
    assert cube_grid(ds) == GRID.window(slice(130, 200), slice(5, 50))


def test_chunking_of_non_multiple_shape(fp16_cube: Path) -> None:
    ds = open_cube(fp16_cube)
    assert ds["embedding"].chunks == ((128, 128, 44), (128, 42), (16,))
    assert ds["valid"].chunks == ((128, 128, 44), (128, 42))
    windows = chunk_windows(GRID.shape, 128)
    assert [w.index for w in windows] == [(i, j) for i in range(3) for j in range(2)]
    assert windows[-1] == ChunkWindow((2, 1), slice(256, 300), slice(128, 170))
    assert windows[-1].shape == (44, 42)


@pytest.mark.parametrize(
    ("rows", "cols"),
    [(slice(0, 300), slice(0, 170)), (slice(100, 140), slice(120, 170)), (slice(255, 257), slice(127, 129))],
)
def test_read_window_equals_slice(fp16_cube: Path, emb16: np.ndarray, rows: slice, cols: slice) -> None:
    emb, valid = read_window(open_cube(fp16_cube), rows, cols)
    np.testing.assert_array_equal(emb, emb16[rows, cols].astype(np.float16).astype(np.float32))
    assert valid.shape == emb.shape[:2] and valid.all()


@pytest.mark.parametrize(("rows", "cols"), [(None, None), (slice(100, 290), slice(3, 100))])
def test_iter_chunks_covers_every_pixel_once(
    fp16_cube: Path, emb16: np.ndarray, rows: slice | None, cols: slice | None
) -> None:
    ds = open_cube(fp16_cube)
    seen = np.zeros(GRID.shape, dtype=int)
    decoded = np.zeros_like(emb16)
    indices = []
    for window, emb, valid in iter_chunks(ds, rows, cols):
        assert emb.shape == (*window.shape, 16) and valid.shape == window.shape
        assert window.shape[0] <= 128 and window.shape[1] <= 128
        seen[window.rows, window.cols] += 1
        decoded[window.rows, window.cols] = emb
        indices.append(window.index)
    expected = np.zeros(GRID.shape, dtype=int)
    expected[rows or slice(None), cols or slice(None)] = 1
    np.testing.assert_array_equal(seen, expected)
    inside = expected == 1
    np.testing.assert_array_equal(decoded[inside], emb16.astype(np.float16).astype(np.float32)[inside])
    assert len(indices) == len(set(indices)) == (6 if rows is None else 3)


def test_iter_chunks_reads_the_windows_given_and_refuses_rows_beside_them(fp16_cube: Path) -> None:
    ds = open_cube(fp16_cube)
    some = cube_windows(ds)[1::2]
    assert [window for window, _, _ in iter_chunks(ds, windows=some)] == some
    with pytest.raises(ValueError, match="not both"):
        next(iter_chunks(ds, slice(0, 10), windows=some))


def test_describe(fp16_cube: Path) -> None:
    info = describe(open_cube(fp16_cube))
    json.dumps(info)  # JSON-able
    assert info["shape"] == [300, 170] and info["dim"] == 16 and info["dtype"] == "fp16"
    assert info["crs"] == "EPSG:32633"
    assert info["bounds"] == [500_000.0, 5_997_000.0, 501_700.0, 6_000_000.0]
    assert info["chunk"] == [128, 128, 16]
    assert info["valid_fraction"] == 1.0
    assert info["attrs"]["model"] == "sits-test"


def test_writer_chunk_by_chunk_equals_write_cube(tmp_path: Path, fp16_cube: Path, emb16: np.ndarray) -> None:
    writer = CubeWriter(
        tmp_path / "w.zarr",
        GRID,
        16,
        chunk=128,
        attrs={"model": "sits-test", "time_range": ["2023-01", "2023-12"]},
    )
    assert len(writer.windows()) == 6 and writer.n_done == 0 and not writer.done
    for w in reversed(writer.pending()):  # order does not matter
        writer.write_chunk(w, emb16[w.rows, w.cols])
    assert writer.done and writer.n_done == 6 and writer.pending() == []
    writer.finalize()
    assert not (tmp_path / "w.zarr" / ".landprompt_progress").exists()
    assert store_files(tmp_path / "w.zarr") == store_files(fp16_cube)
    # reopening a finished cube with the same run is a no-op
    again = CubeWriter(
        tmp_path / "w.zarr",
        GRID,
        16,
        chunk=128,
        attrs={"model": "sits-test", "time_range": ["2023-01", "2023-12"]},
    )
    assert again.done and again.pending() == []


# --- errors ----------------------------------------------------------------------------------------


def test_wrong_embedding_shape_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match=r"shape \(rows, cols, dim\)"):
        write_cube(tmp_path / "c.zarr", np.zeros((300, 171, 8), np.float32), GRID)
    with pytest.raises(BadInputError, match="valid mask"):
        write_cube(
            tmp_path / "c.zarr", np.zeros((300, 170, 8), np.float32), GRID, valid=np.ones((3, 3), bool)
        )
    with pytest.raises(BadInputError, match="reserved"):
        write_cube(tmp_path / "c.zarr", np.zeros((300, 170, 8), np.float32), GRID, attrs={"grid": 1})
    with pytest.raises(BadInputError, match="JSON"):
        write_cube(tmp_path / "c.zarr", np.zeros((300, 170, 8), np.float32), GRID, attrs={"when": object()})
    with pytest.raises(BadInputError, match="float16 range"):
        write_cube(tmp_path / "c.zarr", np.full((300, 170, 8), 1e6, np.float32), GRID)
    with pytest.raises(BadInputError, match="dtype"):
        write_cube(tmp_path / "c.zarr", np.zeros((300, 170, 8), np.float32), GRID, dtype="bf16")
    assert list(tmp_path.iterdir()) == []


def test_failure_mid_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = CubeWriter.write_chunk

    def failing(self: CubeWriter, window: ChunkWindow, *args: object, **kwargs: object) -> None:
        calls.append(window)
        if len(calls) == 3:
            raise OSError("disk full")
        real(self, window, *args, **kwargs)

    monkeypatch.setattr(CubeWriter, "write_chunk", failing)
    with pytest.raises(OSError, match="disk full"):
        write_cube(tmp_path / "c.zarr", unit_vectors(GRID.shape, 4), GRID, chunk=128)
    assert list(tmp_path.iterdir()) == []


def test_existing_path_needs_overwrite(tmp_path: Path, emb16: np.ndarray) -> None:
    path = write_cube(tmp_path / "c.zarr", emb16, GRID, chunk=128)
    before = store_files(path)
    with pytest.raises(BadInputError, match="already exists"):
        write_cube(path, -emb16, GRID, chunk=128)
    assert store_files(path) == before
    write_cube(path, -emb16, GRID, chunk=128, overwrite=True)
    emb, _ = read_window(open_cube(path), slice(0, 5), slice(0, 5))
    np.testing.assert_array_equal(emb, (-emb16[:5, :5]).astype(np.float16).astype(np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.zarr"]  # no temp or old copies left


def test_open_cube_errors(tmp_path: Path, fp16_cube: Path) -> None:
    with pytest.raises(NotACubeError, match="does not exist"):
        open_cube(tmp_path / "missing.zarr")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("hello")
    with pytest.raises(NotACubeError, match="not a Zarr store"):
        open_cube(plain)
    with pytest.raises(NotACubeError, match="not a Zarr store"):
        open_cube(plain / "notes.txt")
    other = zarr.open_group(tmp_path / "other.zarr", mode="w", zarr_format=3)
    other.create_array("a", shape=(4,), dtype="int8")
    with pytest.raises(NotACubeError, match="not a landprompt embedding cube"):
        open_cube(tmp_path / "other.zarr")
    future = tmp_path / "future.zarr"
    write_cube(future, np.zeros((300, 170, 2), np.float32), GRID, chunk=128)
    zarr.open_group(future, mode="r+").attrs["format_version"] = 5
    with pytest.raises(NotACubeError, match="version 5; this landprompt reads versions 1, 2, 3, 4"):
        open_cube(future)
    zarr.open_group(future, mode="r+").attrs["format_version"] = 2  # a version-2 cube needs its basis
    with pytest.raises(NotACubeError, match="version-2 cube without its basis"):
        open_cube(future)
    for version in (3, 4):
        zarr.open_group(future, mode="r+").attrs["format_version"] = version
        with pytest.raises(NotACubeError, match=f"version-{version} cube without its basis"):
            open_cube(future)
    CubeWriter(tmp_path / "unfinished.zarr", GRID, 4, chunk=128)
    with pytest.raises(NotACubeError, match=r"unfinished.*resume"):
        open_cube(tmp_path / "unfinished.zarr")
    assert isinstance(open_cube(fp16_cube), xr.Dataset)


def test_writer_refuses_foreign_paths_and_other_runs(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("hello")
    with pytest.raises(BadInputError, match="not a landprompt embedding cube"):
        CubeWriter(plain, GRID, 8)
    assert [p.name for p in plain.iterdir()] == ["notes.txt"]

    path = tmp_path / "run.zarr"
    CubeWriter(path, GRID, 8, chunk=128, attrs={"model": "a"})
    before = store_files(path)
    with pytest.raises(BadInputError, match=r"another run \(different dim\).*use another path or delete it"):
        CubeWriter(path, GRID, 16, chunk=128, attrs={"model": "a"})
    with pytest.raises(BadInputError, match=r"different grid, dtype, chunk, attrs"):
        CubeWriter(path, GRID.window(slice(0, 10), slice(0, 10)), 8, "int8", 64, {"model": "b"})
    assert store_files(path) == before
    same = CubeWriter(path, GRID, 8, chunk=128, attrs={"model": "a"})  # same fingerprint: resumes
    assert same.n_done == 0 and len(same.pending()) == 6


def test_writer_chunk_errors(tmp_path: Path) -> None:
    writer = CubeWriter(tmp_path / "c.zarr", GRID, 8, chunk=128)
    w = writer.windows()[0]
    with pytest.raises(BadInputError, match="chunk embedding must have shape"):
        writer.write_chunk(w, np.zeros((128, 128, 7), np.float32))
    with pytest.raises(BadInputError, match="not a chunk window"):
        writer.write_chunk(
            ChunkWindow((0, 0), slice(0, 100), slice(0, 128)), np.zeros((100, 128, 8), np.float32)
        )
    with pytest.raises(BadInputError, match=r"6 of 6 chunks .* not written"):
        writer.finalize()
    assert writer.n_done == 0


# --- kill and resume -------------------------------------------------------------------------------

RUN_SCRIPT = textwrap.dedent(
    '''
    """Writes a 12-chunk cube with CubeWriter; optionally SIGKILLs itself while writing the 3rd chunk."""
    import os
    import pathlib
    import signal

    import numpy as np
    from affine import Affine

    from landprompt.embedder.cube import CubeWriter
    from landprompt.geo import Grid

    GRID = Grid(3035, Affine(20.0, 0.0, 4_000_000.0, 0.0, -20.0, 3_000_000.0), (45, 60))  # 3 x 4 chunks of 16
    DIM, CHUNK, ATTRS = 8, 16, {"model": "sits-test", "checkpoint_sha256": "abc123"}


    def chunk_data(window):
        rng = np.random.default_rng([1234, *window.index])
        emb = rng.normal(size=(*window.shape, DIM)).astype(np.float32)
        valid = rng.random(window.shape) > 0.1
        return emb, valid


    def die():
        os.kill(os.getpid(), signal.SIGKILL)


    def run(path, dtype, mode="none", kill_at=3, only=None):
        writer = CubeWriter(path, GRID, DIM, dtype, CHUNK, ATTRS)
        windows = writer.pending()
        if only is not None:
            windows = [w for w in windows if (w.index[0] * 4 + w.index[1]) % 2 == only]
        for n, window in enumerate(windows, start=1):
            if n == kill_at and mode == "before_marker":  # data written, marker not
                writer._mark_done = lambda window, digest: die()
            if n == kill_at and mode == "between_arrays":  # embedding written, valid not
                real = writer._array("embedding")

                class KillAfterWrite:
                    def __setitem__(self, key, value):
                        real[key] = value
                        die()

                writer._arrays["embedding"] = KillAfterWrite()
            if n == kill_at and mode == "inside_file_write":  # zarr's temp chunk file written, not renamed
                def replace(self, target):
                    if self.name.endswith(".partial"):
                        die()
                    return original_replace(self, target)

                original_replace = pathlib.Path.replace
                pathlib.Path.replace = replace
            writer.write_chunk(window, *chunk_data(window))
            if n == kill_at and mode == "after_chunk":
                die()
        return writer
    '''
)


@pytest.fixture
def run_script(tmp_path: Path) -> tuple[Path, ModuleType]:
    script = tmp_path / "cube_run.py"
    script.write_text(RUN_SCRIPT)
    spec = importlib.util.spec_from_file_location("cube_run", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return script, module


def run_forked(helper: ModuleType, path: Path, dtype: str, mode: str, only: int | None = None) -> BaseProcess:
    """``helper.run`` in a forked process: a writer process of its own, without an interpreter start-up."""
    proc = multiprocessing.get_context("fork").Process(
        target=helper.run, args=(path, dtype, mode), kwargs={"only": only}, daemon=True
    )
    proc.start()
    return proc


@pytest.mark.parametrize(
    ("dtype", "mode", "n_done"),
    [
        ("int8", "after_chunk", 3),
        ("fp16", "after_chunk", 3),
        ("int8", "before_marker", 2),
        ("int8", "between_arrays", 2),
        ("int8", "inside_file_write", 2),
    ],
)
def test_killed_run_resumes_bitwise_identical(
    tmp_path: Path, run_script: tuple[Path, ModuleType], dtype: str, mode: str, n_done: int
) -> None:
    _, helper = run_script
    killed = tmp_path / "killed.zarr"
    proc = run_forked(helper, killed, dtype, mode)
    proc.join(timeout=120)
    assert proc.exitcode == -signal.SIGKILL, proc.exitcode

    with pytest.raises(NotACubeError, match="unfinished"):
        open_cube(killed)
    writer = CubeWriter(killed, helper.GRID, helper.DIM, dtype, helper.CHUNK, helper.ATTRS)
    assert writer.n_done == n_done
    pending = writer.pending()
    assert len(pending) == 12 - n_done
    done = {w.index for w in writer.windows()} - {w.index for w in pending}
    assert done == {w.index for w in writer.windows()[:n_done]}
    if mode == "inside_file_write":
        assert list(killed.rglob("*.partial")), "the kill should leave a temp chunk file behind"

    for window in pending:  # resume in-process: only the pending chunks
        writer.write_chunk(window, *helper.chunk_data(window))
    writer.finalize()

    reference = helper.run(tmp_path / "reference.zarr", dtype).finalize()
    assert not (killed / ".landprompt_progress").exists()
    assert not list(killed.rglob("*.partial"))
    resumed_files, reference_files = store_files(killed), store_files(reference)
    assert resumed_files.keys() == reference_files.keys()
    assert resumed_files == reference_files
    a, b = open_cube(killed), open_cube(reference)
    assert content_hash(a) == content_hash(b)
    for x, y in zip(
        read_window(a, slice(None), slice(None)), read_window(b, slice(None), slice(None)), strict=True
    ):
        np.testing.assert_array_equal(x, y)
    emb, valid = read_window(a, slice(None), slice(None))
    for window in writer.windows():
        expected_emb, expected_valid = helper.chunk_data(window)
        np.testing.assert_array_equal(valid[window.rows, window.cols], expected_valid)
        tol = 1e-2 if dtype == "fp16" else 0.05
        assert (
            np.abs(emb[window.rows, window.cols][expected_valid] - expected_emb[expected_valid]).max() < tol
        )


def test_processes_writing_different_chunks_concurrently(
    tmp_path: Path, run_script: tuple[Path, ModuleType]
) -> None:
    _, helper = run_script
    path = tmp_path / "shared.zarr"
    procs = [run_forked(helper, path, "int8", "none", only) for only in (0, 1)]  # even / odd chunks
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0, proc.exitcode
    writer = CubeWriter(path, helper.GRID, helper.DIM, "int8", helper.CHUNK, helper.ATTRS)
    assert writer.done
    writer.finalize()
    reference = helper.run(tmp_path / "reference.zarr", "int8").finalize()
    assert store_files(path) == store_files(reference)


def test_content_hash_follows_the_data(tmp_path: Path, emb16: np.ndarray, fp16_cube: Path) -> None:
    same = write_cube(
        tmp_path / "same.zarr",
        emb16,
        GRID,
        chunk=128,
        attrs={"model": "sits-test", "time_range": ["2023-01", "2023-12"]},
    )
    changed_emb = emb16.copy()
    changed_emb[299, 169, 0] += 0.25  # one value in the last chunk
    changed = write_cube(
        tmp_path / "changed.zarr",
        changed_emb,
        GRID,
        chunk=128,
        attrs={"model": "sits-test", "time_range": ["2023-01", "2023-12"]},
    )
    reference = content_hash(open_cube(fp16_cube))
    assert len(reference) == 64
    assert content_hash(open_cube(same)) == reference
    assert content_hash(open_cube(changed)) != reference
    with pytest.raises(NotACubeError, match="content_hash"):
        content_hash(xr.Dataset())


def test_a_cube_smaller_than_one_chunk(tmp_path: Path) -> None:
    grid = GRID.window(slice(0, 40), slice(0, 300 - 170 + 30))  # 40 x 160 pixels, default chunk 256
    emb = unit_vectors(grid.shape, 8)
    path = write_cube(tmp_path / "small.zarr", emb, grid)
    np.testing.assert_allclose(read_window(open_cube(path), slice(None), slice(None))[0], emb, atol=1e-3)
    writer = CubeWriter(tmp_path / "run.zarr", grid, 8)
    assert CubeWriter(tmp_path / "run.zarr", grid, 8).n_done == 0  # reopening resumes
    with pytest.raises(BadInputError, match="different chunk"):
        CubeWriter(tmp_path / "run.zarr", grid, 8, chunk=32)
    assert len(writer.windows()) == 1


def test_chunk_windows_of_a_span_are_found_by_bisection_as_by_a_scan() -> None:
    """`cube_windows` finds the chunks overlapping a span by bisection, as a scan of every chunk would."""
    import itertools
    import random

    from landprompt.embedder.cube import _overlapping

    rng = random.Random(0)
    for _ in range(500):
        sizes = [rng.randint(1, 5) for _ in range(rng.randint(1, 6))]
        edges = [0, *itertools.accumulate(sizes)]
        start, stop = rng.randint(0, edges[-1]), rng.randint(0, edges[-1])
        scan = [i for i, (a, b) in enumerate(itertools.pairwise(edges)) if max(a, start) < min(b, stop)]
        assert list(_overlapping(edges, start, stop)) == scan
