"""Overviews of an embedding cube: a pyramid of coarser levels, so a map tile at any zoom reads ~one chunk.

``CUBE/overviews`` is a Zarr v3 group (attrs ``landprompt_format="cube-overviews"``, ``format_version``,
``source_content_hash``, ``levels``, ``complete``) holding one cube per level ``L = 1, 2, ...`` at
``CUBE/overviews/<L>``: pixels ``2**L`` times the base pixel, the same format version, basis, dtype and
chunk size as the base cube, written by :class:`~landprompt.embedder.cube.CubeWriter` (so every level
is resumable and read through the checked store). A level pixel is the mean of the 2 x 2 pixels below it
in the stored space (the unit codes of a cube in a basis, the embeddings of a version-1 cube),
weighted by their valid fraction, and renormalised; each level also stores ``valid_fraction`` float32
[y, x], the share of base pixels under it that are valid, every chunk stored with a CRC32C and listed in
the level's integrity records (``crc_only``), so a damaged fraction chunk is a named error like any other.
Levels stop at the first that fits one chunk. :func:`verify_overviews` checks every level
(``landprompt cube verify``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr
from affine import Affine
from zarr.codecs import Crc32cCodec, ZstdCodec

from landprompt.embedder import integrity
from landprompt.embedder.basis import Basis
from landprompt.embedder.cube import (
    ChunkWindow,
    CubeWriter,
    content_hash,
    cube_basis,
    cube_grid,
    cube_windows,
    open_cube,
    raw_reader,
    read_ahead,
    stored_values,
    user_attrs,
    verify,
)
from landprompt.embedder.integrity import ChunkProblem, VerifyReport
from landprompt.errors import BadInputError, DamagedCubeError, LandpromptError, NotACubeError
from landprompt.geo import Grid

OVERVIEWS_FORMAT = "cube-overviews"
OVERVIEWS_VERSION = 1
OVERVIEWS_DIR = "overviews"
FRACTION = "valid_fraction"


def overviews_path(cube: str | os.PathLike[str]) -> Path:
    """Where a cube keeps its overviews: ``CUBE/overviews``."""
    return Path(cube) / OVERVIEWS_DIR


def level_grid(grid: Grid, level: int) -> Grid:
    """The grid of overview ``level``: pixels ``2**level`` times larger, covering the base grid."""
    factor = 2**level
    shape = (math.ceil(grid.rows / factor), math.ceil(grid.cols / factor))
    return Grid(grid.crs, grid.transform * Affine.scale(factor), shape)


def n_levels(shape: tuple[int, int], chunk: int) -> int:
    """Number of overview levels of a base ``shape``: until a level fits in one ``chunk``."""
    levels = 0
    while max(math.ceil(s / 2**levels) for s in shape) > chunk:
        levels += 1
    return levels


def build_overviews(
    cube: str | os.PathLike[str], progress: Callable[[int, int], None] | None = None
) -> list[Path]:
    """Write (or resume) the overview pyramid of a finished cube.

    Args:
        cube: A finished embedding cube.
        progress: Called with ``(chunks done, chunks in all)`` after every chunk.

    Returns:
        The level cube paths, finest first.

    Raises:
        NotACubeError: if ``cube`` is no finished cube, or holds overviews of another version.
    """
    path = Path(cube)
    base = open_cube(path)
    chunk = int(base["valid"].chunksizes["y"][0])
    grid = cube_grid(base)
    levels = n_levels(grid.shape, chunk)
    group = _overviews_group(path, content_hash(base), levels)
    basis = _level_basis(base)  # once: every level is stored in the same basis
    writers = [
        CubeWriter(
            overviews_path(path) / str(level),
            level_grid(grid, level),
            int(base.sizes["d"]),
            base.attrs["dtype"],
            chunk,
            {**user_attrs(dict(base.attrs)), "overview_level": level},
            basis,
        )
        for level in range(1, levels + 1)
    ]
    total = sum(len(w.windows()) for w in writers)
    done = sum(w.n_done for w in writers)
    below = base
    for writer in writers:
        fraction = _fraction_array(writer)
        below_basis = cube_basis(below)
        # one reader of the level below, and one read-ahead thread, for the whole level
        for window, (values, weight) in read_ahead(writer.pending(), _below_reader(below, below_basis)):
            _write_level_chunk(writer, fraction, below_basis, window, values, weight)
            done += 1
            if progress is not None:
                progress(done, total)
        writer.finalize()
        below = open_cube(writer.path)
    group.attrs.update({"complete": True})
    return [w.path for w in writers]


def open_overviews(cube: str | os.PathLike[str]) -> list[xr.Dataset]:
    """The overview levels of a cube (level 1 first), opened as cubes; empty when it has none.

    Raises:
        NotACubeError: if the overviews are of an unknown version, unfinished, or older than the cube.
    """
    path = Path(cube)
    root = overviews_path(path)
    if not (root / "zarr.json").is_file():
        return []
    attrs: dict[str, Any] = dict(zarr.open_group(str(root), mode="r").attrs)
    _check_version(root, attrs)
    if attrs.get("complete") is not True:
        raise NotACubeError(f"the overviews of {path} are unfinished: run `landprompt cube overviews {path}`")
    if attrs.get("source_content_hash") != content_hash(open_cube(path)):
        raise NotACubeError(
            f"the overviews of {path} were built from another version of the cube: "
            f"run `landprompt cube overviews {path}` again"
        )
    return [open_cube(root / str(level)) for level in range(1, int(attrs["levels"]) + 1)]


def open_fraction(level: str | os.PathLike[str]) -> Any:
    """A level's ``valid_fraction`` Zarr array, read through the checked store (no dask per tile).

    A missing or failing chunk raises :class:`~landprompt.errors.DamagedCubeError` naming it.
    """
    level = Path(level)
    layout = _fraction_layout(level)
    if layout is None:  # overviews written before the records
        return zarr.open_array(str(level / FRACTION), mode="r")
    return zarr.open_group(integrity.CheckedStore(level, layout=layout), mode="r")[FRACTION]


def verify_overviews(cube: str | os.PathLike[str], progress: bool = True) -> list[VerifyReport]:
    """Verify a cube's overview pyramid: every level's chunks as ``cube verify``, and its fractions.

    Each level gets :func:`~landprompt.embedder.cube.verify` (missing, changed and extra chunks against
    its digests) plus the CRC32C of every ``valid_fraction`` chunk (missing, unreadable, extra).

    Returns:
        One report per level, finest first (a pyramid that cannot be opened, or folders that are no
        level, add a report for the ``overviews`` folder itself); empty when the cube has no overviews.
    """
    path = Path(cube)
    root = overviews_path(path)
    if not (root / "zarr.json").is_file():
        return []
    try:
        levels = len(open_overviews(path))
    except LandpromptError as exc:  # unfinished, stale, another version, a level missing or damaged
        return [VerifyReport(root, 0, records=str(exc))]
    reports = [_verify_level(root / str(level), progress) for level in range(1, levels + 1)]
    names = {"zarr.json", *(str(level) for level in range(1, levels + 1))}
    extra = [
        ChunkProblem((-1, -1), "extra", f"{entry} is no level of the pyramid", str(entry))
        for entry in sorted(root.iterdir())
        if entry.name not in names
    ]
    if extra:
        reports.append(VerifyReport(root, 0, problems=extra))
    return reports


def overviews_summary(cube: str | os.PathLike[str], reports: list[VerifyReport]) -> str:
    """One line on :func:`verify_overviews`' reports: intact, or what is damaged and how to rebuild."""
    root = overviews_path(cube)
    if all(report.ok for report in reports):
        n = sum(report.n_chunks for report in reports)
        return f"overviews of {cube}: all {n} chunks of {len(reports)} levels match their records"
    damaged = []
    for report in (r for r in reports if not r.ok):
        parts = [f"{n} {status}" for status, n in sorted(report.counts().items())]
        if report.records != "ok":
            parts.append(report.records)
        name = f"level {report.cube.name}" if report.cube != root else "the pyramid"
        damaged.append(f"{name}: {', '.join(parts)}")
    return (
        f"the overviews of {cube} are damaged ({'; '.join(damaged)}): delete {root} and run "
        f"'landprompt cube overviews {cube}'"
    )


# --- internals -------------------------------------------------------------------------------------


def _check_version(root: Path, attrs: dict[str, Any]) -> None:
    if attrs.get("landprompt_format") != OVERVIEWS_FORMAT:
        raise NotACubeError(f"{root} is not a landprompt overview pyramid: delete it and rebuild it")
    if attrs.get("format_version") != OVERVIEWS_VERSION:
        raise NotACubeError(
            f"{root} has overview format version {attrs.get('format_version')!r}; this landprompt reads "
            f"version {OVERVIEWS_VERSION}: upgrade landprompt or rebuild the overviews"
        )


def _overviews_group(path: Path, source_hash: str, levels: int) -> Any:
    """The overviews group, created, or reopened when it belongs to this version of the cube."""
    root = overviews_path(path)
    wanted: dict[str, Any] = {
        "landprompt_format": OVERVIEWS_FORMAT,
        "format_version": OVERVIEWS_VERSION,
        "source_content_hash": source_hash,
        "levels": levels,
    }
    if (root / "zarr.json").is_file():
        group = zarr.open_group(str(root), mode="r+")
        attrs: dict[str, Any] = dict(group.attrs)
        _check_version(root, attrs)
        if attrs.get("source_content_hash") == source_hash:
            return group
        raise BadInputError(
            f"{root} holds overviews of another version of the cube: delete that folder and run again"
        )
    group = zarr.open_group(str(root), mode="w-", zarr_format=3)
    group.attrs.update({**wanted, "complete": False})
    return group


def _fraction_layout(level: Path) -> integrity.ChunkLayout | None:
    """The level's integrity layout when its records list ``valid_fraction`` (``crc_only``), else None."""
    group = zarr.open_group(str(level), mode="r")
    chunks = group["valid"].chunks  # type: ignore[union-attr]
    layout = integrity.layout_of(level, dict(group.attrs), (int(chunks[0]), int(chunks[1])))
    return None if layout is None or FRACTION not in layout.crc_only else layout


def _verify_level(level: Path, progress: bool) -> VerifyReport:
    """:func:`verify` of one level, plus the CRC32C of each of its ``valid_fraction`` chunks."""
    report = verify(level, progress)
    layout = _fraction_layout(level)
    if layout is None:
        return report
    n_rows, n_cols = layout.n_chunks
    for index in ((i, j) for i in range(n_rows) for j in range(n_cols)):
        try:
            layout.read_chunk(FRACTION, index, 2)
        except DamagedCubeError as exc:
            status = "missing" if "is missing" in str(exc) else "unreadable"
            report.problems.append(
                ChunkProblem(index, status, str(exc).split("; run")[0], layout.where(index))
            )
    report.problems.sort(key=lambda p: (p.index, p.status))
    return report


def _fraction_array(writer: CubeWriter) -> Any:
    """The level's ``valid_fraction`` array (created beside the writer's arrays on first use).

    The level's integrity records list it (``crc_only``) before its first chunk is written.
    """
    group = zarr.open_group(str(writer.path), mode="r+")
    attrs: dict[str, Any] = dict(group.attrs)
    record = dict(attrs.get(integrity.INTEGRITY_ATTR) or {})
    if record and record.get(integrity.CRC_ONLY_KEY) != [FRACTION]:
        group.attrs[integrity.INTEGRITY_ATTR] = {**record, integrity.CRC_ONLY_KEY: [FRACTION]}
    if FRACTION in group:
        return group[FRACTION]
    array = group.create_array(
        FRACTION,
        shape=writer.grid.shape,
        chunks=(writer.chunk, writer.chunk),
        dtype="float32",
        fill_value=0.0,
        compressors=(ZstdCodec(), Crc32cCodec()),
        dimension_names=("y", "x"),
        attributes={"coordinates": "spatial_ref"},
    )
    return array.with_config({"write_empty_chunks": True})


def _level_basis(base: xr.Dataset) -> Basis | None:
    """The basis of the levels: the cube's, in the version-4 form, taking codes as its features."""
    basis = cube_basis(base)
    return None if basis is None else replace(basis.diagonal(), feature_map=None, feature_offset=None)


def _write_level_chunk(
    writer: CubeWriter,
    fraction: Any,
    basis: Basis | None,
    window: ChunkWindow,
    values: np.ndarray,
    weight: np.ndarray,
) -> None:
    """One chunk of a level: the weighted 2 x 2 mean of the level below, renormalised.

    Args:
        writer: The level's writer.
        fraction: The level's ``valid_fraction`` array.
        basis: The basis of the level below (None for version 1).
        window: The chunk.
        values: The stored values and valid weights of the 2 x 2 window below (:func:`_below_reader`).
        weight: Their valid weights.
    """
    h, w = window.shape
    weighted = (values * weight[..., None]).reshape(h, 2, w, 2, -1).sum(axis=(1, 3))
    total = weight.reshape(h, 2, w, 2).sum(axis=(1, 3))
    mean = weighted / np.maximum(total, 1e-12)[..., None]
    if basis is not None:  # the mean codes are those of the mean embedding (linear in the codes)
        ok = (total > 0) & np.any(mean != 0, axis=-1)
        if basis.weights is None:  # versions 2, 3: [u, a t] with t > 0; written as embeddings B u + b t
            ok &= mean[..., -1] > 0
        fraction[window.rows, window.cols] = np.where(ok, total / 4, 0).astype(np.float32)
        if basis.weights is None:
            writer.write_chunk(window, basis.decode(mean), ok)
        else:
            writer.write_chunk(window, mean, ok, features=True)
        return
    norm = np.linalg.norm(mean, axis=-1)
    ok = (total > 0) & (norm > 0)
    fraction[window.rows, window.cols] = np.where(ok, total / 4, 0).astype(np.float32)
    writer.write_chunk(window, mean / np.where(ok, norm, 1)[..., None], ok)


def _below_reader(
    ds: xr.Dataset, basis: Basis | None
) -> Callable[[slice, slice], tuple[np.ndarray, np.ndarray]]:
    """A reader of the 2 x 2 window below a chunk window of the level above ``ds`` (whose basis is ``basis``).

    It gives the stored values (scale applied) and valid weights, zero-padded past the edge. Made once
    per level: the arrays and the fractions of ``ds`` are opened once, and each chunk below is read on
    its own (straight from its chunk file where it can be).
    """
    read = raw_reader(ds)
    width = int(ds.sizes["k"] if "code" in ds else ds.sizes["d"])
    fractions = open_fraction(ds.encoding["source"]) if FRACTION in ds else None

    def read_below(rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray]:
        shape = (2 * (rows.stop - rows.start), 2 * (cols.stop - cols.start))
        values = np.zeros((*shape, width), np.float32)
        weight = np.zeros(shape, np.float32)
        for below in cube_windows(
            ds, slice(2 * rows.start, 2 * rows.stop), slice(2 * cols.start, 2 * cols.stop)
        ):
            r, c = below.rows, below.cols
            raw = read(r, c)
            valid = raw["valid"].astype(bool)
            at = (
                slice(r.start - 2 * rows.start, r.stop - 2 * rows.start),
                slice(c.start - 2 * cols.start, c.stop - 2 * cols.start),
            )
            values[at] = np.where(valid[..., None], stored_values(raw, basis), 0)
            weight[at] = valid if fractions is None else np.where(valid, fractions[r, c], 0)
        return values, weight

    return read_below
