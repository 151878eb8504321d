"""Grids, bounding boxes and coordinate conversions.

A :class:`Grid` is a north-up raster grid: a CRS, an affine transform (pixel corner -> map
coordinates) and a shape ``(rows, cols)``. Embedding cubes, probability maps and the Europe-wide
EPSG:3035 grid are all :class:`Grid` objects, so pixels, map coordinates and lon/lat convert through
one place.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from affine import Affine
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from landprompt.errors import BadInputError

WGS84 = CRS.from_epsg(4326)
EUROPE_CRS = CRS.from_epsg(3035)


class BBox(NamedTuple):
    """A lon/lat bounding box in degrees (WGS84)."""

    minlon: float
    minlat: float
    maxlon: float
    maxlat: float

    def validate(self) -> BBox:
        """Return self, or raise :class:`BadInputError` if the box is not a real lon/lat box."""
        if not all(math.isfinite(v) for v in self):
            raise BadInputError(f"bbox {tuple(self)} has a non-finite value")
        if not (-180 <= self.minlon < self.maxlon <= 180):
            raise BadInputError(
                "bbox longitudes must satisfy -180 <= minlon < maxlon <= 180, "
                f"got {self.minlon}, {self.maxlon}"
            )
        if not (-90 <= self.minlat < self.maxlat <= 90):
            raise BadInputError(
                f"bbox latitudes must satisfy -90 <= minlat < maxlat <= 90, got {self.minlat}, {self.maxlat}"
            )
        return self

    @property
    def center(self) -> tuple[float, float]:
        """Centre (lon, lat) of the box."""
        return (self.minlon + self.maxlon) / 2, (self.minlat + self.maxlat) / 2


#: Europe, from the Azores and the Canaries to the Urals' foothills and North Cape (lon/lat).
EUROPE_BBOX = BBox(-31.5, 27.5, 45.0, 71.5)


def parse_crs(value: Any) -> CRS:
    """Parse a CRS from an EPSG code, ``"EPSG:3035"``, WKT, a pyproj CRS or a rasterio CRS."""
    try:
        return CRS.from_user_input(value)
    except CRSError as exc:
        raise BadInputError(f"unknown CRS {value!r}: give an EPSG code such as EPSG:3035") from exc


def parse_bbox(value: str | Path | Sequence[float]) -> BBox:
    """Parse a lon/lat bbox from ``"minlon,minlat,maxlon,maxlat"``, a GeoJSON file or a sequence.

    A GeoJSON file (Geometry, Feature or FeatureCollection) gives the bounds of all its coordinates.
    """
    if isinstance(value, str | Path) and _looks_like_path(value):
        return _bbox_of_geojson(Path(value))
    if isinstance(value, str):
        parts = [p for p in value.replace(" ", ",").split(",") if p]
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            raise BadInputError(
                f"bbox {value!r} is neither 'minlon,minlat,maxlon,maxlat' nor an existing GeoJSON file"
            ) from None
    elif isinstance(value, Path):
        raise BadInputError(f"bbox file {value} must be a .json or .geojson file")
    else:
        numbers = [float(v) for v in value]
    if len(numbers) != 4:
        raise BadInputError(f"bbox needs 4 numbers minlon,minlat,maxlon,maxlat, got {len(numbers)}")
    return BBox(*numbers).validate()


def _looks_like_path(value: str | Path) -> bool:
    text = str(value)
    return isinstance(value, Path) or text.lower().endswith((".json", ".geojson")) or Path(text).exists()


def _bbox_of_geojson(path: Path) -> BBox:
    if not path.is_file():
        raise BadInputError(f"GeoJSON file {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path} is not valid GeoJSON: {exc}") from exc
    coords = np.array(list(_iter_positions(data)), dtype=float).reshape(-1, 2)
    if coords.size == 0:
        raise BadInputError(f"GeoJSON file {path} has no coordinates")
    (minlon, minlat), (maxlon, maxlat) = coords.min(axis=0), coords.max(axis=0)
    return BBox(float(minlon), float(minlat), float(maxlon), float(maxlat)).validate()


def _iter_positions(obj: Any) -> Iterator[tuple[float, float]]:
    """Yield every (lon, lat) position of a GeoJSON object."""
    if isinstance(obj, dict):
        if obj.get("type") == "FeatureCollection":
            for feature in obj.get("features", []):
                yield from _iter_positions(feature)
        elif obj.get("type") == "Feature":
            yield from _iter_positions(obj.get("geometry"))
        elif obj.get("type") == "GeometryCollection":
            for geometry in obj.get("geometries", []):
                yield from _iter_positions(geometry)
        elif "coordinates" in obj:
            yield from _iter_positions(obj["coordinates"])
    elif isinstance(obj, list) and obj:
        if isinstance(obj[0], int | float):
            yield float(obj[0]), float(obj[1])
        else:
            for item in obj:
                yield from _iter_positions(item)


@lru_cache(maxsize=64)
def _transformer(src: str, dst: str) -> Transformer:
    return Transformer.from_crs(CRS.from_user_input(src), CRS.from_user_input(dst), always_xy=True)


def transform_points(xs: Any, ys: Any, src_crs: Any, dst_crs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Transform point coordinates (x=lon/easting, y=lat/northing) between CRSs."""
    src, dst = parse_crs(src_crs), parse_crs(dst_crs)
    tx, ty = _transformer(src.to_wkt(), dst.to_wkt()).transform(np.asarray(xs, float), np.asarray(ys, float))
    return np.asarray(tx), np.asarray(ty)


def reproject_bounds(
    bounds: Sequence[float], src_crs: Any, dst_crs: Any, densify: int = 21
) -> tuple[float, float, float, float]:
    """Reproject (left, bottom, right, top) bounds, densifying the edges so curved edges stay inside."""
    src, dst = parse_crs(src_crs), parse_crs(dst_crs)
    left, bottom, right, top = (float(b) for b in bounds)
    return tuple(_transformer(src.to_wkt(), dst.to_wkt()).transform_bounds(left, bottom, right, top, densify))  # type: ignore[return-value]


def utm_crs(lon: float, lat: float) -> CRS:
    """The WGS84 / UTM zone CRS for a lon/lat point (EPSG:326xx north, 327xx south)."""
    zone = min(int((lon + 180) // 6) + 1, 60)
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def utm_epsg(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """EPSG code of the WGS84 / UTM zone of each point (326xx north, 327xx south; no Norway exceptions)."""
    zone = np.clip(np.floor((np.asarray(lon, float) + 180) / 6).astype(np.int64) + 1, 1, 60)
    return np.where(np.asarray(lat) >= 0, 32600, 32700) + zone


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid.

    Args:
        crs: Coordinate reference system of the map coordinates.
        transform: Affine transform from (col, row) pixel-corner coordinates to map (x, y).
        shape: ``(rows, cols)``.
    """

    crs: CRS
    transform: Affine
    shape: tuple[int, int]

    def __post_init__(self) -> None:
        object.__setattr__(self, "crs", parse_crs(self.crs))
        object.__setattr__(self, "transform", Affine(*tuple(self.transform)[:6]))
        object.__setattr__(self, "shape", (int(self.shape[0]), int(self.shape[1])))
        t = self.transform
        if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
            raise BadInputError(f"only north-up grids are supported, got transform {tuple(t)[:6]}")
        if self.shape[0] <= 0 or self.shape[1] <= 0:
            raise BadInputError(f"grid shape must be positive, got {self.shape}")

    # --- construction ------------------------------------------------------------------------------
    @classmethod
    def from_bounds(
        cls, bounds: Sequence[float], crs: Any, resolution: float, snap: float | None = None
    ) -> Grid:
        """A grid covering map bounds (left, bottom, right, top) at ``resolution`` map units per pixel.

        The bounds are snapped outward to multiples of ``snap`` (default: the resolution), so grids at
        the same resolution line up pixel for pixel.
        """
        if resolution <= 0:
            raise BadInputError(f"resolution must be positive, got {resolution}")
        step = snap or resolution
        left, bottom, right, top = (float(b) for b in bounds)
        left, bottom = math.floor(left / step) * step, math.floor(bottom / step) * step
        right, top = math.ceil(right / step) * step, math.ceil(top / step) * step
        cols = max(1, round((right - left) / resolution))
        rows = max(1, round((top - bottom) / resolution))
        return cls(parse_crs(crs), Affine(resolution, 0, left, 0, -resolution, top), (rows, cols))

    @classmethod
    def from_bbox(cls, bbox: BBox | str | Sequence[float], resolution: float = 10.0, crs: Any = None) -> Grid:
        """A grid covering a lon/lat bbox; ``crs`` defaults to the UTM zone of the bbox centre."""
        box = bbox if isinstance(bbox, BBox) else parse_bbox(bbox)
        target = parse_crs(crs) if crs is not None else utm_crs(*box.center)
        return cls.from_bounds(reproject_bounds(box, WGS84, target), target, resolution)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Grid:
        """Inverse of :meth:`to_dict`."""
        return cls(parse_crs(data["crs"]), Affine(*data["transform"]), tuple(data["shape"]))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description (CRS as WKT, transform as 6 numbers, shape)."""
        return {
            "crs": self.crs.to_wkt(),
            "transform": list(tuple(self.transform)[:6]),
            "shape": list(self.shape),
        }

    # --- properties --------------------------------------------------------------------------------
    @property
    def rows(self) -> int:
        """Number of rows."""
        return self.shape[0]

    @property
    def cols(self) -> int:
        """Number of columns."""
        return self.shape[1]

    @property
    def resolution(self) -> tuple[float, float]:
        """Pixel size (x, y) in map units, both positive."""
        return self.transform.a, -self.transform.e

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """Map bounds (left, bottom, right, top)."""
        left, top = self.transform.c, self.transform.f
        return left, top + self.transform.e * self.rows, left + self.transform.a * self.cols, top

    @property
    def bbox(self) -> BBox:
        """Lon/lat bounding box of the grid."""
        return BBox(*reproject_bounds(self.bounds, self.crs, WGS84))

    @property
    def pixel_area_m2(self) -> float:
        """Area of one pixel in square metres (projected CRSs in metres only)."""
        if not self.crs.is_projected:
            raise BadInputError("pixel area needs a projected CRS in metres")
        rx, ry = self.resolution
        return rx * ry

    def x_coords(self) -> np.ndarray:
        """Map x of the pixel-column centres."""
        return self.transform.c + self.transform.a * (np.arange(self.cols) + 0.5)

    def y_coords(self) -> np.ndarray:
        """Map y of the pixel-row centres (decreasing)."""
        return self.transform.f + self.transform.e * (np.arange(self.rows) + 0.5)

    # --- conversions -------------------------------------------------------------------------------
    def xy_to_rowcol(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """Rows and columns (int) of the pixels containing map points; may fall outside the grid."""
        col = np.floor((np.asarray(x, float) - self.transform.c) / self.transform.a).astype(np.int64)
        row = np.floor((np.asarray(y, float) - self.transform.f) / self.transform.e).astype(np.int64)
        return row, col

    def rowcol_to_xy(self, row: Any, col: Any) -> tuple[np.ndarray, np.ndarray]:
        """Map coordinates of pixel centres."""
        x = self.transform.c + self.transform.a * (np.asarray(col, float) + 0.5)
        y = self.transform.f + self.transform.e * (np.asarray(row, float) + 0.5)
        return x, y

    def lonlat_to_rowcol(self, lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
        """Rows and columns of the pixels containing lon/lat points."""
        return self.xy_to_rowcol(*transform_points(lon, lat, WGS84, self.crs))

    def rowcol_to_lonlat(self, row: Any, col: Any) -> tuple[np.ndarray, np.ndarray]:
        """Lon/lat of pixel centres."""
        return transform_points(*self.rowcol_to_xy(row, col), self.crs, WGS84)

    def contains(self, row: Any, col: Any) -> np.ndarray:
        """Whether (row, col) lies inside the grid."""
        row, col = np.asarray(row), np.asarray(col)
        return (row >= 0) & (row < self.rows) & (col >= 0) & (col < self.cols)

    # --- sub-grids ---------------------------------------------------------------------------------
    def window(self, rows: slice, cols: slice) -> Grid:
        """The sub-grid of a window of rows and columns (clipped to the grid)."""
        r0, r1, _ = rows.indices(self.rows)
        c0, c1, _ = cols.indices(self.cols)
        if r1 <= r0 or c1 <= c0:
            raise BadInputError(
                f"window rows {r0}:{r1}, cols {c0}:{c1} is empty in a grid of shape {self.shape}"
            )
        return Grid(self.crs, self.transform @ Affine.translation(c0, r0), (r1 - r0, c1 - c0))

    def slices_of_bbox(self, bbox: BBox | str | Sequence[float]) -> tuple[slice, slice]:
        """Row and column slices of the pixels covered by a lon/lat bbox, clipped to the grid.

        Raises:
            BadInputError: if the bbox does not overlap the grid.
        """
        box = bbox if isinstance(bbox, BBox) else parse_bbox(bbox)
        left, bottom, right, top = reproject_bounds(box, WGS84, self.crs)
        inv = ~self.transform
        c0, r0 = inv @ (left, top)
        c1, r1 = inv @ (right, bottom)
        r0, c0 = max(0, math.floor(r0)), max(0, math.floor(c0))
        r1, c1 = min(self.rows, math.ceil(r1)), min(self.cols, math.ceil(c1))
        if r1 <= r0 or c1 <= c0:
            raise BadInputError(
                f"bbox {tuple(box)} lies outside the grid (lon/lat bounds {tuple(self.bbox)})"
            )
        return slice(r0, r1), slice(c0, c1)


def europe_grid(resolution: float = 10.0) -> Grid:
    """The EPSG:3035 (ETRS89-LAEA) grid over :data:`EUROPE_BBOX`, snapped to 10 km so resolutions nest."""
    bounds = reproject_bounds(EUROPE_BBOX, WGS84, EUROPE_CRS)
    return Grid.from_bounds(bounds, EUROPE_CRS, resolution, snap=10_000.0)


def mosaic_grid(grids: Sequence[Grid]) -> tuple[Grid, list[tuple[int, int]]]:
    """The grid covering several grids of one CRS, resolution and pixel lattice (e.g. a region's shards).

    Returns:
        The mosaic grid and each grid's (row, col) offset in it.

    Raises:
        BadInputError: If the grids differ in CRS or resolution, or their pixels do not line up.
    """
    if not grids:
        raise BadInputError("no grids to mosaic")
    first = grids[0]
    rx, ry = first.resolution
    for grid in grids[1:]:
        if grid.crs != first.crs:
            raise BadInputError(
                f"the shards are in different CRSs ({first.crs.to_string()} and {grid.crs.to_string()}): "
                "a mosaic needs one grid CRS"
            )
        if not np.allclose(grid.resolution, first.resolution, rtol=1e-9, atol=0):
            raise BadInputError(
                f"the shards differ in resolution ({first.resolution} and {grid.resolution} map units a "
                "pixel): a mosaic needs one resolution"
            )
    left = min(g.transform.c for g in grids)
    top = max(g.transform.f for g in grids)
    offsets = []
    for grid in grids:
        col, row = (grid.transform.c - left) / rx, (top - grid.transform.f) / ry
        if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
            raise BadInputError(
                f"the shards' pixels do not line up (origin {grid.transform.c}, {grid.transform.f} is "
                f"{col:.3f}, {row:.3f} pixels from {left}, {top}): a mosaic needs one pixel lattice"
            )
        offsets.append((round(row), round(col)))
    rows = max(r + g.rows for (r, _), g in zip(offsets, grids, strict=True))
    cols = max(c + g.cols for (_, c), g in zip(offsets, grids, strict=True))
    return Grid(first.crs, Affine(rx, 0.0, left, 0.0, -ry, top), (rows, cols)), offsets


def mosaic(
    grids: Sequence[Grid], fill: Callable[[int, np.ndarray | None], np.ndarray], bands: int
) -> tuple[Grid, np.ndarray]:
    """Values (h, w, bands) on aligned grids placed in their mosaic: NaN where none covers them.

    Where grids overlap, a later grid's pixel replaces the earlier one's where all its values are valid
    (none NaN): a pixel's values all come from one grid (a change map never pairs one shard's earlier
    probability with another's later one).

    Args:
        grids: Grids of one CRS, resolution and pixel lattice (checked by :func:`mosaic_grid` first).
        fill: ``fill(i, out)`` computes grid ``i``'s float32 values, NaN where not valid, into ``out``
            and returns it; ``out`` is the grid's place in the mosaic when no earlier grid covers any of
            it (no copy), else None (return a new array).
        bands: Values a pixel.

    Returns:
        The mosaic grid and the float32 values (rows, cols, bands) on it.
    """
    grid, offsets = mosaic_grid(grids)
    out = np.full((*grid.shape, bands), np.nan, dtype=np.float32)
    covered = np.zeros(grid.shape, bool)  # pixels an earlier grid holds
    for i, (part, (r0, c0)) in enumerate(zip(grids, offsets, strict=True)):
        place = np.s_[r0 : r0 + part.rows, c0 : c0 + part.cols]
        if not covered[place].any():  # its pixels, NaN where not valid, written in place
            fill(i, out[place])
        else:  # over an earlier grid: only this one's wholly valid pixels replace its
            values = fill(i, None)
            np.copyto(out[place], values, where=~np.isnan(values).any(axis=-1, keepdims=True))
        covered[place] = True
    return grid, out
