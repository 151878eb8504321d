"""Indicators of a concept per area (NUTS regions, LAU municipalities, parcels, ...).

:func:`aggregate` streams a cube chunk by chunk: each chunk's probabilities are computed, the polygons
that reach the chunk are rasterised onto its window, and per-polygon sums are accumulated with
``np.bincount``, so memory holds one chunk and a few numbers per polygon (a continent fits). The sums
add up over cubes: :func:`aggregate_shards` (``ShardedSession.aggregate``) accumulates each shard the
polygons touch into one set of sums, so polygons may straddle shards.

Pixel rule: a pixel belongs to a polygon when its centre lies inside it (``all_touched=False``). Each
pixel belongs to at most one polygon: polygons are burnt in file order, so where polygons overlap the
later one in the file wins; polygons that share an edge split the pixels along it.

Areas are pixel counts times the grid's nominal pixel area (exact in an equal-area CRS such as
EPSG:3035; within 0.1 % in UTM). Columns of the result, one row per polygon in file order:

- the id column (``id_field``, or ``id``);
- ``pixels``: pixels whose centre lies in the polygon (inside the cube); ``area_ha``: their area;
- ``valid_pixels`` and ``valid_share`` (``valid_pixels / pixels``; NaN without pixels);
- ``mean_probability``: mean over valid pixels (NaN without any);
- ``expected_area_ha``: sum over valid pixels of ``p x pixel area``, in hectares;
- ``area_above_threshold_ha``: area of the valid pixels with ``p > threshold``.

Polygon files: GeoJSON read as JSON (WGS84 lon/lat per RFC 7946, or the CRS named by a legacy
``crs`` member, as GISCO publishes NUTS in EPSG:3035), or any file OGR reads through ``pyogrio``
(GeoPackage, Shapefile, FlatGeobuf), which must carry a CRS. Polygons are reprojected to the cube's CRS.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr
from pyproj import CRS

from landprompt.calibration import Calibration
from landprompt.errors import BadInputError
from landprompt.geo import WGS84, Grid, mosaic_grid, parse_crs
from landprompt.query.classes import DEFAULT_STYLE, PixelCounter, ProgressFn
from landprompt.query.scorer import ConceptScorer

if TYPE_CHECKING:
    from landprompt.embedder.clip import ClipModel
    from landprompt.embedder.cube import ChunkWindow

GeoJSONGeometry = dict[str, Any]
#: Indicator columns of :func:`aggregate`, after the id column.
INDICATORS = (
    "pixels",
    "area_ha",
    "valid_pixels",
    "valid_share",
    "mean_probability",
    "expected_area_ha",
    "area_above_threshold_ha",
)
_POLYGONAL = ("Polygon", "MultiPolygon")
_GEOJSON_SUFFIXES = (".geojson", ".json")


# --- polygons --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Units:
    """Polygons to aggregate over, in file order.

    Attributes:
        ids: One id per polygon (unique).
        geometries: GeoJSON-like Polygon / MultiPolygon geometries in ``crs`` (``None`` for an empty one).
        crs: CRS of the coordinates.
        id_field: Name of the id column of the results.
        source: The file read.
        properties: The polygons' other fields, one mapping per polygon (empty when not read).
    """

    ids: list[Any]
    geometries: list[GeoJSONGeometry | None]
    crs: CRS
    id_field: str = "id"
    source: Path | None = None
    properties: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def reprojected(self, crs: Any) -> list[GeoJSONGeometry | None]:
        """The geometries in another CRS."""
        from rasterio.warp import transform_geom

        target = parse_crs(crs)
        if target == self.crs:
            return list(self.geometries)
        src, dst = self.crs.to_wkt(), target.to_wkt()
        return [None if g is None else dict(transform_geom(src, dst, g)) for g in self.geometries]


def read_units(path: str | os.PathLike[str], id_field: str | None = None, layer: str | None = None) -> Units:
    """Read polygons from a GeoJSON file, or a GeoPackage / any OGR vector file (with ``pyogrio``).

    Args:
        path: The file.
        id_field: Property holding each polygon's id; default: the GeoJSON feature ``id`` (GeoPackage:
            the feature id), or the polygon's position in the file when not every feature has one.
        layer: Layer of a multi-layer file.

    Raises:
        BadInputError: for a missing or unreadable file, a missing id field, repeated ids, a geometry
            that is not a (Multi)Polygon, or a file without a CRS (GeoJSON defaults to WGS84).
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"polygon file {path} does not exist")
    if path.suffix.lower() in _GEOJSON_SUFFIXES:
        ids, geometries, crs, properties = _read_geojson(path, id_field)
    else:
        ids, geometries, crs, properties = _read_ogr(path, id_field, layer)
    if not ids:
        raise BadInputError(f"{path} holds no features")
    _check_unique_ids(ids, path)
    for i, geometry in enumerate(geometries):
        if geometry is not None and geometry.get("type") not in _POLYGONAL:
            raise BadInputError(
                f"{path}: feature {ids[i]!r} is a {geometry.get('type')}, not a Polygon or MultiPolygon"
            )
    return Units(ids, geometries, crs, id_field or "id", path, properties)


def _read_geojson(
    path: Path, id_field: str | None
) -> tuple[list[Any], list[GeoJSONGeometry | None], CRS, list[dict[str, Any]]]:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path} is not valid GeoJSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadInputError(f"{path} is not a GeoJSON object")
    if data.get("type") == "FeatureCollection":
        features = data.get("features") or []
    elif data.get("type") == "Feature":
        features = [data]
    else:
        features = [{"type": "Feature", "geometry": data, "properties": {}}]
    crs = _geojson_crs(data, path)
    geometries = [f.get("geometry") for f in features]
    if id_field is not None:
        ids = [_property(f.get("properties") or {}, id_field, path, i) for i, f in enumerate(features)]
    elif features and all(f.get("id") is not None for f in features):
        ids = [f["id"] for f in features]
    else:
        ids = list(range(len(features)))
    if crs == WGS84:
        _check_lonlat(geometries, path)
    return ids, geometries, crs, [dict(f.get("properties") or {}) for f in features]


def _geojson_crs(data: dict[str, Any], path: Path) -> CRS:
    """WGS84 (RFC 7946), or the CRS named by a 2008-style ``crs`` member."""
    member = data.get("crs")
    if member is None:
        return WGS84
    name = (member.get("properties") or {}).get("name") if isinstance(member, dict) else None
    try:
        return CRS.from_user_input(name)
    except Exception:
        raise BadInputError(f"{path}: unknown CRS {member!r} in its 'crs' member") from None


def _check_lonlat(geometries: list[GeoJSONGeometry | None], path: Path) -> None:
    bounds = [_bounds(g) for g in geometries if g is not None]
    if bounds:
        b = np.array(bounds)
        if b[:, 0].min() < -180 or b[:, 2].max() > 180 or b[:, 1].min() < -90 or b[:, 3].max() > 90:
            raise BadInputError(
                f"{path} has coordinates outside lon/lat range: GeoJSON is WGS84 lon/lat (RFC 7946); "
                "name another CRS in a 'crs' member or use a GeoPackage"
            )


def _read_ogr(
    path: Path, id_field: str | None, layer: str | None
) -> tuple[list[Any], list[GeoJSONGeometry | None], CRS, list[dict[str, Any]]]:
    try:
        import pyogrio
        import pyogrio.raw
        import shapely
    except ImportError:
        raise BadInputError(
            f"reading {path.suffix} files needs pyogrio and shapely (pip install pyogrio shapely), "
            "or convert the polygons to GeoJSON"
        ) from None
    try:
        layers = pyogrio.list_layers(path)
        if layer is None and len(layers) > 1:
            names = ", ".join(str(n) for n in layers[:, 0])
            raise BadInputError(f"{path} has {len(layers)} layers ({names}): choose one with layer")
        meta, fids, wkb, values = pyogrio.raw.read(path, layer=layer, return_fids=True)
    except pyogrio.errors.DataSourceError as exc:
        raise BadInputError(f"cannot read {path}: {' '.join(str(exc).split())}") from None
    except pyogrio.errors.DataLayerError as exc:
        raise BadInputError(f"{path}: {' '.join(str(exc).split())}") from None
    if not meta.get("crs"):
        raise BadInputError(f"{path} has no CRS: assign one (e.g. ogr2ogr -a_srs EPSG:3035) and try again")
    fields = [str(f) for f in meta["fields"]]
    if id_field is None:
        ids = [int(f) for f in fids]
    elif id_field in fields:
        ids = list(values[fields.index(id_field)].tolist())
    else:
        raise BadInputError(f"{path} has no field {id_field!r}; its fields: {', '.join(fields) or 'none'}")
    shapes = shapely.from_wkb(wkb)
    geometries = [None if s is None or s.is_empty else dict(shapely.geometry.mapping(s)) for s in shapes]
    columns = [list(values[i].tolist()) for i in range(len(fields))]
    properties = [dict(zip(fields, row, strict=True)) for row in zip(*columns, strict=True)] if fields else []
    return ids, geometries, parse_crs(meta["crs"]), properties or [{} for _ in ids]


def _property(properties: dict[str, Any], field: str, path: Path, index: int) -> Any:
    if field not in properties:
        known = ", ".join(properties) or "none"
        raise BadInputError(f"{path}: feature {index} has no property {field!r}; its properties: {known}")
    return properties[field]


def _check_unique_ids(ids: list[Any], path: Path) -> None:
    repeated = [value for value, count in Counter(ids).items() if count > 1]
    if repeated:
        shown = ", ".join(repr(r) for r in sorted(repeated, key=str)[:5])
        raise BadInputError(f"{path}: ids must be unique (one row per polygon), repeated: {shown}")


def _bounds(geometry: GeoJSONGeometry) -> tuple[float, float, float, float]:
    coords = np.array(list(_positions(geometry["coordinates"])), dtype=float).reshape(-1, 2)
    (left, bottom), (right, top) = coords.min(axis=0), coords.max(axis=0)
    return float(left), float(bottom), float(right), float(top)


def _positions(coords: Any) -> Any:
    if coords and isinstance(coords[0], int | float):
        yield coords[:2]
    else:
        for item in coords:
            yield from _positions(item)


# --- aggregation -----------------------------------------------------------------------------------


@dataclass
class _Sums:
    """Per-polygon accumulators (additive over chunks, windows and shards); index 0 is "no polygon"."""

    pixels: np.ndarray
    valid: np.ndarray
    probability: np.ndarray
    above: np.ndarray

    @classmethod
    def zeros(cls, n: int) -> _Sums:
        counts = np.zeros(n + 1, dtype=np.int64)
        return cls(counts, counts.copy(), np.zeros(n + 1), counts.copy())

    def add(self, zones: np.ndarray, prob: np.ndarray, threshold: float) -> None:
        """Add one chunk: zone codes [h, w] (0 = none) and its probabilities (NaN = not valid)."""
        n = self.pixels.size
        self.pixels += np.bincount(zones.ravel(), minlength=n)
        keep = (zones > 0) & ~np.isnan(prob)
        zone, p = zones[keep], prob[keep].astype(np.float64)
        self.valid += np.bincount(zone, minlength=n)
        self.probability += np.bincount(zone, weights=p, minlength=n)
        self.above += np.bincount(zone[p > threshold], minlength=n)


@dataclass(frozen=True)
class _Polygons:
    """The polygons in a grid's CRS, with their bounds (NaN for an empty one), burnt window by window."""

    geometries: list[GeoJSONGeometry | None]
    bounds: np.ndarray

    @classmethod
    def of(cls, units: Units, crs: CRS) -> _Polygons:
        geometries = units.reprojected(crs)
        bounds = np.array([_bounds(g) if g is not None else (np.nan,) * 4 for g in geometries], dtype=float)
        if np.isnan(bounds).all():
            raise BadInputError(f"{units.source or 'the units'}: every geometry is empty")
        return cls(geometries, bounds)

    def span(self, grid: Grid) -> tuple[slice, slice] | None:
        """Rows and columns of the grid the bounds of the polygons meeting it cover (None if none do)."""
        near = _near(self.bounds, grid)
        if not near.any():
            return None
        left, bottom = self.bounds[near, :2].min(axis=0)
        right, top = self.bounds[near, 2:].max(axis=0)
        inverse = ~grid.transform
        c0, r0 = inverse @ (left, top)
        c1, r1 = inverse @ (right, bottom)
        r0, c0 = max(0, math.floor(r0)), max(0, math.floor(c0))
        r1, c1 = min(grid.rows, math.ceil(r1)), min(grid.cols, math.ceil(c1))
        return (slice(r0, r1), slice(c0, c1)) if r1 > r0 and c1 > c0 else None

    def reached(self, ds: xr.Dataset, grid: Grid) -> list[tuple[ChunkWindow, np.ndarray]]:
        """The chunk windows of a cube (on ``grid``), within :meth:`span`, some polygon's bounds meet.

        Each with the indices of the polygons whose bounds meet it (for :meth:`zones`).
        """
        from landprompt.embedder.cube import cube_windows

        span = self.span(grid)
        if span is None:
            return []
        found = []
        for w in cube_windows(ds, *span):
            near = np.flatnonzero(_near(self.bounds, grid.window(w.rows, w.cols)))
            if near.size:
                found.append((w, near))
        return found

    def zones(self, window: Grid, near: np.ndarray) -> np.ndarray:
        """Zone codes (polygon index + 1; 0 = none) of a window's pixels; later polygons win.

        ``near``: the indices of the polygons whose bounds meet the window (as :meth:`reached` gives).
        """
        from rasterio.features import rasterize

        shapes = [(self.geometries[i], int(i) + 1) for i in near]
        if not shapes:
            return np.zeros(window.shape, dtype=np.int64)
        zones = rasterize(
            shapes,
            out_shape=window.shape,
            transform=window.transform,
            fill=0,
            all_touched=False,
            dtype="int32",
        )
        return zones.astype(np.int64)


def _near(bounds: np.ndarray, grid: Grid) -> np.ndarray:
    """Which of the bounds (n, 4: left, bottom, right, top; NaN for none) meet a grid's bounds."""
    left, bottom, right, top = grid.bounds
    with np.errstate(invalid="ignore"):
        return (
            (bounds[:, 0] <= right)
            & (bounds[:, 2] >= left)
            & (bounds[:, 1] <= top)
            & (bounds[:, 3] >= bottom)
        )


#: Which pixels of a chunk a cube counts (rows, columns of the chunk in the cube, its valid mask) -> bool.
OwnedFn = Callable[[slice, slice, np.ndarray], np.ndarray]


def aggregate(
    cube: str | os.PathLike[str] | xr.Dataset,
    concept: str | ConceptScorer,
    units: str | os.PathLike[str] | Units,
    id_field: str | None = None,
    threshold: float = 0.5,
    versus: Sequence[str] | None = None,
    clip: ClipModel | None = None,
    style: str = DEFAULT_STYLE,
    logit_scale: float | None = None,
    calibration: Calibration | str | os.PathLike[str] | bool | None = None,
    progress: ProgressFn | None = None,
) -> pd.DataFrame:
    """Indicators of a concept per polygon: mean probability, expected area, area above a threshold.

    Args:
        cube: Path of a cube, or the Dataset from ``open_cube``.
        concept: The concept in plain words, or a :class:`ConceptScorer` (then ``versus``, ``clip``,
            ``style`` and ``logit_scale`` are unused).
        units: A polygon file (see :func:`read_units`) or :class:`Units`.
        id_field: Property naming each polygon (when ``units`` is a path).
        threshold: Probability above which a pixel counts in ``area_above_threshold_ha``.
        versus: Background prompts (default: the shipped land-cover vocabulary).
        clip: CLIP model; default: the one the cube names.
        style: Prompt template style.
        logit_scale: Softmax temperature; default: the CLIP model's.
        calibration: ``True`` for the cube's own calibration of the concept, a :class:`Calibration`,
            or a calibration JSON file.
        progress: Called with ``(pixels done, pixels in all)`` after each chunk.

    Returns:
        One row per polygon in file order: the id column then :data:`INDICATORS` (see the module
        docstring); ``attrs`` hold the query, threshold, pixel area and CRS.

    Raises:
        BadInputError: for a bad polygon file, a threshold outside [0, 1), a grid not in metres, or
            polygons that do not overlap the cube.
    """
    from landprompt.embedder.cube import open_cube

    units = _checked_units(units, id_field, threshold)
    ds = cube if isinstance(cube, xr.Dataset) else open_cube(cube)

    @functools.cache
    def scorer_of(_: int) -> ConceptScorer:  # made once the polygons are known to overlap the cube
        scorer = ConceptScorer.of(concept, versus, clip, style, logit_scale, cube=ds)
        return scorer.calibrated_for(cube, calibration)

    return _aggregate([ds], scorer_of, units, threshold, progress)


def aggregate_shards(
    cubes: Sequence[xr.Dataset],
    scorer: ConceptScorer,
    units: str | os.PathLike[str] | Units,
    id_field: str | None = None,
    threshold: float = 0.5,
    calibration: Calibration | str | os.PathLike[str] | bool | None = None,
    progress: ProgressFn | None = None,
) -> pd.DataFrame:
    """Indicators of a concept per polygon over the mosaic of shards, as :func:`aggregate` over one cube.

    Polygons may straddle shards: each shard adds the pixels of its chunks some polygon's bounds reach
    (no other chunk is read) to one set of per-polygon sums, and the table is built once from them.
    Where shards overlap a pixel counts once, by the mosaic rule of
    :meth:`.ShardedSession.probability_maps`: the last shard (in ``cubes`` order) holding it valid, else
    the last one covering it.

    Args:
        cubes: The shards (from ``open_cube``), on one grid CRS, resolution and pixel lattice
            (:func:`~landprompt.geo.mosaic_grid`).
        scorer: The concept's scorer, without calibration.
        units: A polygon file (see :func:`read_units`) or :class:`Units`.
        id_field: Property naming each polygon (when ``units`` is a path).
        threshold: Probability above which a pixel counts in ``area_above_threshold_ha``.
        calibration: ``True`` applies each shard's own calibration of the concept (of the shards the
            polygons touch); a :class:`Calibration` or its JSON file applies to all.
        progress: Called with ``(pixels done, pixels in all)`` after each chunk.

    Raises:
        BadInputError: as :func:`aggregate`, and for shards not on one pixel lattice.
    """
    units = _checked_units(units, id_field, threshold)

    @functools.cache
    def calibrated(i: int) -> ConceptScorer:
        return scorer.calibrated_for(cubes[i], calibration)

    return _aggregate(
        cubes, lambda i: calibrated(i if calibration is True else 0), units, threshold, progress
    )


def _checked_units(units: str | os.PathLike[str] | Units, id_field: str | None, threshold: float) -> Units:
    if not 0 <= threshold < 1:
        raise BadInputError(f"the threshold must be in [0, 1), got {threshold}")
    return units if isinstance(units, Units) else read_units(units, id_field)


def _aggregate(
    cubes: Sequence[xr.Dataset],
    scorer_of: Callable[[int], ConceptScorer],
    units: Units,
    threshold: float,
    progress: ProgressFn | None,
) -> pd.DataFrame:
    """The indicator table of cubes on one pixel lattice (``scorer_of(i)`` scores cube ``i``)."""
    from landprompt.embedder.cube import cube_grid

    grids = [cube_grid(ds) for ds in cubes]
    _, offsets = mosaic_grid(grids)
    pixel_area = grids[0].pixel_area_m2
    polygons = _Polygons.of(units, grids[0].crs)
    windows = [polygons.reached(ds, grid) for ds, grid in zip(cubes, grids, strict=True)]
    touched = [i for i, reached in enumerate(windows) if reached]
    if not touched:
        where = "the cube" if len(cubes) == 1 else f"any of the {len(cubes)} shards"
        raise BadInputError(
            f"none of the {len(units)} polygons of {units.source or 'the units'} overlaps {where} "
            f"(cube CRS {grids[0].crs.to_string()}, polygons read in {units.crs.to_string()}): "
            "check their CRS"
        )
    sums = _Sums.zeros(len(units))
    tick = PixelCounter(progress, sum(_size(w.rows, w.cols) for reached in windows for w, _ in reached))
    for i in touched:
        owned = _owned(i, cubes, grids, offsets)
        _accumulate(sums, cubes[i], scorer_of(i), polygons, threshold, windows[i], owned, tick)
    table = _table(units, sums, pixel_area)
    table.attrs.update(
        scorer_of(touched[0]).attrs(),
        threshold=float(threshold),
        pixel_area_m2=pixel_area,
        crs=grids[0].crs.to_string(),
    )
    return table


def _accumulate(
    sums: _Sums,
    ds: xr.Dataset,
    scorer: ConceptScorer,
    polygons: _Polygons,
    threshold: float,
    reached: list[tuple[ChunkWindow, np.ndarray]],
    owned: OwnedFn | None = None,
    tick: Callable[[int], None] | None = None,
) -> None:
    """Add the pixels of a cube's chunk windows (:meth:`_Polygons.reached`) to per-polygon sums.

    Only the pixels ``owned`` keeps count (all without it); chunks no polygon covers are not scored.
    ``tick`` is called with each chunk's pixel count.
    """
    from landprompt.embedder.cube import cube_grid, iter_chunks

    grid = cube_grid(ds)
    chunks = iter_chunks(ds, windows=[window for window, _ in reached])
    for (window, embedding, valid), (_, near) in zip(chunks, reached, strict=True):
        zones = polygons.zones(grid.window(window.rows, window.cols), near)
        if owned is not None and zones.any():
            zones[~owned(window.rows, window.cols, valid)] = 0
        if zones.any():
            sums.add(zones, scorer.score(embedding, valid), threshold)
        if tick is not None:
            tick(window.shape[0] * window.shape[1])


def _owned(
    i: int, cubes: Sequence[xr.Dataset], grids: Sequence[Grid], offsets: Sequence[tuple[int, int]]
) -> OwnedFn | None:
    """The pixels cube ``i`` counts in the mosaic of ``cubes`` (None: all of its own, no cube overlaps it).

    A pixel is counted by the last cube holding it valid, else (valid in none) by the last covering it:
    the mosaic rule of :func:`~landprompt.geo.mosaic`.
    """
    (r0, c0), (h, w) = offsets[i], grids[i].shape
    others = [
        j
        for j in range(len(cubes))
        if j != i
        and offsets[j][0] < r0 + h
        and r0 < offsets[j][0] + grids[j].rows
        and offsets[j][1] < c0 + w
        and c0 < offsets[j][1] + grids[j].cols
    ]
    if not others:
        return None

    def owned(rows: slice, cols: slice, valid: np.ndarray) -> np.ndarray:
        top, left = r0 + rows.start, c0 + cols.start  # the chunk's corner in the mosaic
        covered_later, valid_later, valid_earlier = (np.zeros(valid.shape, bool) for _ in range(3))
        for j in others:
            (rj, cj), grid = offsets[j], grids[j]
            y0, y1 = max(top, rj), min(top + valid.shape[0], rj + grid.rows)
            x0, x1 = max(left, cj), min(left + valid.shape[1], cj + grid.cols)
            if y1 <= y0 or x1 <= x0:
                continue
            part = slice(y0 - top, y1 - top), slice(x0 - left, x1 - left)
            theirs = cubes[j]["valid"].isel(y=slice(y0 - rj, y1 - rj), x=slice(x0 - cj, x1 - cj))
            (valid_later if j > i else valid_earlier)[part] |= np.asarray(theirs.values, dtype=bool)
            if j > i:
                covered_later[part] = True
        mine = np.asarray(valid, dtype=bool)
        return (mine & ~valid_later) | (~mine & ~covered_later & ~valid_earlier)

    return owned


def _size(rows: slice, cols: slice) -> int:
    return (rows.stop - rows.start) * (cols.stop - cols.start)


def _table(units: Units, sums: _Sums, pixel_area_m2: float) -> pd.DataFrame:
    hectares = pixel_area_m2 / 1e4
    pixels, valid = sums.pixels[1:], sums.valid[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame(
            {
                units.id_field: units.ids,
                "pixels": pixels,
                "area_ha": pixels * hectares,
                "valid_pixels": valid,
                "valid_share": np.where(pixels > 0, valid / pixels, np.nan),
                "mean_probability": np.where(valid > 0, sums.probability[1:] / valid, np.nan),
                "expected_area_ha": sums.probability[1:] * hectares,
                "area_above_threshold_ha": sums.above[1:] * hectares,
            }
        )


# --- output ----------------------------------------------------------------------------------------


def write_indicators(
    table: pd.DataFrame,
    path: str | os.PathLike[str],
    units: Units | None = None,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write indicators in the format the suffix names: CSV, or polygons (WGS84) with the indicators.

    Args:
        table: From :func:`aggregate`.
        path: ``.csv``, or ``.geojson`` / ``.json``, ``.gpkg``, ``.fgb``, ``.parquet``
            (see :mod:`~landprompt.query.vectors`).
        units: The polygons the table was computed over (vector output only).
        metadata: Metadata such as provenance tags, stored as :mod:`~landprompt.query.vectors` says.
    """
    from landprompt.query.vectors import vector_suffix, write_vector

    path = Path(path)
    if vector_suffix(path, "indicators") == ".csv":
        return write_vector(table, [None] * len(table), WGS84.to_string(), path, metadata=metadata)
    if units is None or len(units) != len(table):
        raise BadInputError("vector output needs the polygons the table was computed over")
    return write_vector(table, units.reprojected(WGS84), WGS84.to_string(), path, metadata=metadata)


def with_unit_fields(table: pd.DataFrame, units: Units) -> pd.DataFrame:
    """The indicators with the polygons' other fields (from the polygon file) as extra columns.

    Raises:
        BadInputError: If a field's name clashes with an indicator column.
    """
    fields = pd.DataFrame(units.properties or [{} for _ in units.ids]).drop(
        columns=[units.id_field], errors="ignore"
    )
    clash = sorted(set(fields.columns) & set(table.columns))
    if clash:
        raise BadInputError(f"polygon fields {clash} have the names of indicator columns: rename them")
    return pd.concat([table.reset_index(drop=True), fields.reset_index(drop=True)], axis=1)


def indicators_geojson(table: pd.DataFrame, units: Units) -> dict[str, Any]:
    """A FeatureCollection: each polygon (in WGS84) with its row of indicators (NaN as null)."""
    geometries = units.reprojected(WGS84)
    records = table.astype(object).where(table.notna(), None).to_dict(orient="records")
    features = [
        {"type": "Feature", "geometry": geometry, "properties": _jsonable(record)}
        for geometry, record in zip(geometries, records, strict=True)
    ]
    return {"type": "FeatureCollection", "features": features}


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value.item() if isinstance(value, np.generic) else value for key, value in record.items()}
