"""The search behind top-k: an index search or an exact streamed scan, spatial NMS and the places table.

Neighbouring pixels of one field or lake all score alike; non-maximum suppression keeps the best pixel
and drops every other candidate within ``min_distance_m`` of a kept one, so k results are k distinct
places. Candidates are drawn in growing batches until k places survive or the cube is exhausted.
:class:`~landprompt.query.session.QuerySession` and :func:`~landprompt.query.topk.top_k` (above it)
both search through :func:`search_top_k`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from pyproj import Transformer

from landprompt import checks
from landprompt.errors import BadInputError
from landprompt.geo import EUROPE_CRS, WGS84, BBox, Grid, transform_points
from landprompt.index.search import CubeIndex
from landprompt.query.classes import ProgressFn, unit_rows

#: Columns of a places table, in order.
PLACE_COLUMNS = ["rank", "row", "col", "lon", "lat", "x", "y", "score"]


def search_top_k(
    ds: xr.Dataset,
    grid: Grid,
    places: PlaceTable,
    vector: np.ndarray,
    k: int,
    min_distance_m: float = 0.0,
    bbox: BBox | str | Sequence[float] | None = None,
    searcher: CubeIndex | None = None,
    progress: ProgressFn | None = None,
) -> pd.DataFrame:
    """Top-k of a unit query vector (d,) over an opened cube, its grid and places table.

    Searches ``searcher`` when given (then ``bbox`` must be None), else scans the cube (or the bbox's
    window of it) exactly.
    """
    k = checks.count("k", k)
    min_distance_m = checks.finite("min distance (metres)", min_distance_m, 0.0) or 0.0
    radius = _radius_pixels(grid, min_distance_m)
    if searcher is not None:
        rows, cols, scores = _nms_over_index(searcher, vector, k, radius)
        if progress is not None:
            progress(grid.rows * grid.cols, grid.rows * grid.cols)
    else:
        window = grid.slices_of_bbox(bbox) if bbox is not None else (slice(0, grid.rows), slice(0, grid.cols))
        rows, cols, scores = _nms_over_scan(ds, window, vector, k, radius, progress)
    return places(rows, cols, scores)


def merge_places(tables: Sequence[pd.DataFrame], k: int, min_distance_m: float = 0.0) -> pd.DataFrame:
    """The places of several cubes (shards) merged into one top-k list.

    The tables are merged by score and suppressed again across the cubes' borders, in EPSG:3035 metres
    (so shards in different CRSs merge too); ranks are renumbered from 1.
    """
    merged = pd.concat(tables, ignore_index=True).sort_values("score", ascending=False, kind="stable")
    x, y = transform_points(merged["lon"].to_numpy(), merged["lat"].to_numpy(), WGS84, EUROPE_CRS)
    kept = merged.iloc[spatial_nms(y, x, k, min_distance_m)].reset_index(drop=True)
    return kept.assign(rank=np.arange(1, len(kept) + 1))


def query_embedding(ds: xr.Dataset, query: np.ndarray) -> np.ndarray:
    """A query embedding (d,) as a unit float32 vector, checked against the cube's dimension."""
    vector = unit_rows(query)
    if vector.shape != (1, ds.sizes["d"]):
        raise BadInputError(f"query embedding must have shape ({ds.sizes['d']},), got {np.shape(query)}")
    return vector[0]


def _radius_pixels(grid: Grid, min_distance_m: float) -> float:
    if min_distance_m == 0:
        return 0.0
    if not grid.crs.is_projected:
        raise BadInputError("a minimum distance in metres needs a cube in a projected CRS (UTM, EPSG:3035)")
    return min_distance_m / min(grid.resolution)


def resolve_index(cube: str | Path | xr.Dataset, index: str | Path | CubeIndex | None) -> CubeIndex | None:
    """The index ``top_k``'s ``index`` argument names for a cube (None: an exact scan)."""
    if index is None or isinstance(index, CubeIndex):
        return index
    path = _cube_path(cube)
    if index == "auto":
        return CubeIndex.for_cube(path) if path is not None else None
    return CubeIndex.open(index, path)


def _cube_path(cube: str | Path | xr.Dataset) -> str | Path | None:
    """The cube's path; for an opened Dataset the store it was opened from, if known."""
    if not isinstance(cube, xr.Dataset):
        return cube
    source = cube.encoding.get("source")
    return Path(source) if source and Path(source).is_dir() else None


def spatial_nms(rows: np.ndarray, cols: np.ndarray, k: int, radius: float) -> list[int]:
    """Greedy non-maximum suppression over candidates sorted best first.

    Keeps a candidate unless it lies within ``radius`` (Euclidean, in the units of the coordinates:
    pixels, or metres) of a kept one, or repeats a kept position; stops at ``k`` kept. Kept positions
    are hashed into cells of ``radius`` so each check looks at 3 x 3 cells.

    Returns:
        Positions of the kept candidates.
    """
    cell = max(radius, 1.0)
    kept: list[int] = []
    buckets: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for i, (row, col) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
        key = (math.floor(row / cell), math.floor(col / cell))
        neighbours = (buckets.get((key[0] + dr, key[1] + dc), []) for dr in (-1, 0, 1) for dc in (-1, 0, 1))
        if any(
            (row - r) ** 2 + (col - c) ** 2 < radius**2 or (row, col) == (r, c)
            for bucket in neighbours
            for r, c in bucket
        ):
            continue
        buckets.setdefault(key, []).append((row, col))
        kept.append(i)
        if len(kept) == k:
            break
    return kept


def _nms_over_index(
    searcher: CubeIndex, vector: np.ndarray, k: int, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    total = int(searcher.index.ntotal)
    # the index returns each pixel once, so without a radius the first k hits are k distinct places
    n_candidates = min(total, k if radius == 0 else max(64, 8 * k))
    while True:
        hits = searcher.search(vector[None], n_candidates)
        found = hits.rows[0] >= 0
        rows, cols, scores = hits.rows[0][found], hits.cols[0][found], hits.scores[0][found]
        kept = list(range(min(k, len(rows)))) if radius == 0 else spatial_nms(rows, cols, k, radius)
        if len(kept) == k or n_candidates >= total:
            return rows[kept], cols[kept], scores[kept]
        n_candidates = min(total, n_candidates * 8)


def _nms_over_scan(
    ds: xr.Dataset,
    window: tuple[slice, slice],
    vector: np.ndarray,
    k: int,
    radius: float,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact scan of a window, streamed by chunk into one score raster, then NMS."""
    from landprompt.query.scoring import iter_scores  # imports torch: not needed by an index search

    rows_w, cols_w = window
    scores = np.full((rows_w.stop - rows_w.start, cols_w.stop - cols_w.start), -np.inf, dtype=np.float32)
    done, total = 0, scores.size
    for chunk, chunk_scores_m, valid in iter_scores(ds, vector[None], rows_w, cols_w):
        done += chunk.shape[0] * chunk.shape[1]
        if progress is not None:
            progress(done, total)
        chunk_scores = chunk_scores_m[..., 0]
        chunk_scores[~valid] = -np.inf
        scores[
            chunk.rows.start - rows_w.start : chunk.rows.stop - rows_w.start,
            chunk.cols.start - cols_w.start : chunk.cols.stop - cols_w.start,
        ] = chunk_scores
    flat = scores.ravel()
    total = int(np.isfinite(flat).sum())
    n_candidates = min(total, max(64, 8 * k))
    while n_candidates > 0:
        top = (
            np.argpartition(-flat, n_candidates - 1)[:n_candidates]
            if n_candidates < flat.size
            else np.arange(flat.size)
        )
        top = top[np.argsort(-flat[top], kind="stable")]
        top = top[np.isfinite(flat[top])]
        rows, cols = np.divmod(top, scores.shape[1])
        kept = spatial_nms(rows, cols, k, radius)
        if len(kept) == k or n_candidates >= total:
            return rows[kept] + rows_w.start, cols[kept] + cols_w.start, flat[top[kept]]
        n_candidates = min(total, n_candidates * 8)
    return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)


class PlaceTable:
    """Builds the places table of one grid: (rows, cols, scores) -> the :data:`PLACE_COLUMNS` DataFrame.

    The CRS string and the transformer to lon/lat are made once, so a table of ten places costs well
    under a millisecond (a query session keeps one).
    """

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.crs = grid.crs.to_string()  # the CRS of x, y, for writers
        self._to_lonlat = Transformer.from_crs(grid.crs, WGS84, always_xy=True)

    def __call__(self, rows: np.ndarray, cols: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
        """The places, best first, ranked from 1."""
        x, y = self.grid.rowcol_to_xy(rows, cols)
        lon, lat = self._to_lonlat.transform(x, y)
        places = pd.DataFrame(
            {
                "rank": np.arange(1, len(rows) + 1),
                "row": rows.astype(np.int64),
                "col": cols.astype(np.int64),
                "lon": np.asarray(lon),
                "lat": np.asarray(lat),
                "x": x,
                "y": y,
                "score": scores.astype(np.float32),
            },  # in PLACE_COLUMNS order (faster than reindexing by columns=)
            index=pd.RangeIndex(len(rows)),  # given, not inferred: a third faster for ten rows
        )
        places.attrs["crs"] = self.crs
        return places
