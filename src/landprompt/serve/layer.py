"""A served cube: its query session, overview levels and the concept probabilities of map tiles.

A :class:`ServedCube` holds one :class:`~landprompt.query.session.QuerySession` (prompts encoded once
and cached; a query is the session's :class:`~landprompt.query.scorer.ConceptScorer`) and the sessions
of the cube's overview levels. A Web Mercator tile's probabilities are computed on the fly: the tile's
pixel centres are taken to the cube's CRS, the coarsest overview whose pixels are no larger than the
tile's is chosen, and each tile pixel takes the probability of the level pixel it falls in (nearest
pixel), through :meth:`QuerySession.probability_window`.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import morecantile
import numpy as np
import pandas as pd

from landprompt.embedder.overviews import open_fraction, open_overviews
from landprompt.errors import BadInputError
from landprompt.geo import Grid, transform_points
from landprompt.query.classes import DEFAULT_STYLE
from landprompt.query.scorer import ConceptScorer
from landprompt.query.session import QuerySession


class NotServedError(BadInputError):
    """A cube or file the server was not started with."""


#: The tile matrix set of the map tiles (morecantile's WebMercatorQuad, 256 px tiles).
TMS = morecantile.tms.get("WebMercatorQuad")
TILE_SIZE = 256
#: Most cube pixels one tile may read (a tile far coarser than the cube's coarsest level is refused).
MAX_TILE_PIXELS = 4 * 1024 * 1024
#: Queries (concept, versus, calibrated) kept scored per cube, least recently used dropped first.
MAX_QUERIES = 256
_KNOTS = 17


#: Each pixel centre's left knot and its weight towards the next knot (linear interpolation).
_POSITION = np.arange(TILE_SIZE) / (TILE_SIZE - 1) * (_KNOTS - 1)
_LEFT = np.minimum(_POSITION.astype(int), _KNOTS - 2)
_RIGHT_WEIGHT = _POSITION - _LEFT


def _interpolate(knots: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of (17, 17) knot values to the (256, 256) pixel centres (no BLAS)."""
    across = knots[:, _LEFT] * (1 - _RIGHT_WEIGHT) + knots[:, _LEFT + 1] * _RIGHT_WEIGHT
    return across[_LEFT] * (1 - _RIGHT_WEIGHT)[:, None] + across[_LEFT + 1] * _RIGHT_WEIGHT[:, None]


class TileOutOfRangeError(BadInputError):
    """A tile index that is no tile of the tile matrix set."""


class TileTooCoarseError(BadInputError):
    """A tile whose pixels are far larger than the coarsest level the cube has."""


class OutsideCubeError(BadInputError):
    """A tile or point that does not touch the cube."""


@dataclass(frozen=True)
class Footprint:
    """What a tile reads.

    Attributes:
        tile: The tile.
        level: Overview level (0: the cube itself).
        session: That level's session.
        window: Its pixel rows and columns the tile covers.
        rows: Level row under each tile pixel centre (256, 256).
        cols: Level column under each tile pixel centre.
        inside: Whether that pixel lies inside the level's grid.
    """

    tile: morecantile.Tile
    level: int
    session: QuerySession
    window: tuple[slice, slice]
    rows: np.ndarray
    cols: np.ndarray
    inside: np.ndarray


class ServedCube:
    """One cube served by ``landprompt serve``: its session, overviews and queries.

    Args:
        path: Embedding cube path.
        clip: CLIP model for the prompts (default: the one the cube names).
    """

    def __init__(self, path: str | Path, clip: Any = None) -> None:
        self.path = Path(path).resolve()
        self.session = QuerySession(self.path, clip)  # the server's own: never closed under it
        self.name = self.path.name.removesuffix(".zarr")
        self.grid: Grid = self.session.grid
        self.levels: list[QuerySession] = [
            QuerySession(ds.encoding["source"], clip) for ds in open_overviews(self.path)
        ]
        self._fractions = [open_fraction(level.path) for level in self.levels]
        self._mercator, self._crs = TMS.crs.to_wkt(), self.grid.crs.to_wkt()
        self._lock = threading.Lock()
        self._queries: OrderedDict[tuple[str, tuple[str, ...] | None, bool], ConceptScorer] = OrderedDict()

    # --- description -----------------------------------------------------------------------------
    @property
    def needs_overviews(self) -> bool:
        """Whether the cube is larger than one chunk and has no overviews (low zooms are refused)."""
        chunk = int(self.session.ds["valid"].chunksizes["y"][0])
        return not self.levels and max(self.grid.shape) > chunk

    def info(self) -> dict[str, Any]:
        """What is served: name, lon/lat bounds, CRS, shape, resolution, CLIP model, dims, overviews."""
        from landprompt.embedder.clip import recorded_clip

        attrs = self.session.ds.attrs
        clip_model, clip_pretrained = recorded_clip(attrs) or (None, None)
        box = self.grid.bbox
        return {
            "name": self.name,
            "bounds": [box.minlon, box.minlat, box.maxlon, box.maxlat],
            "crs": self.grid.crs.to_string(),
            "shape": list(self.grid.shape),
            "resolution": list(self.grid.resolution),
            "clip_model": clip_model,
            "clip_pretrained": clip_pretrained,
            "dim": int(self.session.ds.sizes["d"]),
            "format_version": int(attrs["format_version"]),
            "overview_levels": len(self.levels),
            "maxzoom": self.maxzoom,
        }

    @property
    def maxzoom(self) -> int:
        """Three zooms past the one whose tile pixels match the cube's pixels."""
        _, lat = self.grid.bbox.center
        metres = self.grid.resolution[0] / max(math.cos(math.radians(lat)), 1e-6)
        return min(TMS.maxzoom, TMS.zoom_for_res(metres) + 3)

    # --- queries ---------------------------------------------------------------------------------
    def query(
        self, concept: str, versus: Sequence[str] | None = None, calibrated: bool = False
    ) -> ConceptScorer:
        """The scorer of a concept (:meth:`QuerySession.scorer`, encoded once per cube and cached)."""
        concept = concept.strip()
        wanted = tuple(v.strip() for v in versus if v.strip()) if versus else None
        key = (concept, wanted, calibrated)
        with self._lock:
            if key in self._queries:
                self._queries.move_to_end(key)
                return self._queries[key]
        made = self.session.scorer(concept, wanted, DEFAULT_STYLE, calibrated)  # outside the lock
        with self._lock:
            self._queries[key] = made
            while len(self._queries) > MAX_QUERIES:
                self._queries.popitem(last=False)
        return made

    def footprint(self, z: int, x: int, y: int) -> Footprint:
        """Which level, window and level pixels a Web Mercator tile reads (nearest pixel).

        Raises:
            TileOutOfRangeError: if ``z/x/y`` is no tile of WebMercatorQuad up to :attr:`maxzoom`.
            OutsideCubeError: if the tile does not touch the cube.
        """
        if not (0 <= z <= self.maxzoom and 0 <= x < 2**z and 0 <= y < 2**z):
            raise TileOutOfRangeError(
                f"tile {z}/{x}/{y} is out of range: zoom 0..{self.maxzoom}, x and y 0..2^zoom - 1"
            )
        tile = morecantile.Tile(x, y, z)
        cx, cy = self._pixel_centres(tile)
        spacing = float(np.hypot(cx[0, -1] - cx[0, 0], cy[0, -1] - cy[0, 0])) / (TILE_SIZE - 1)
        ratio = max(spacing / self.grid.resolution[0], 1.0)
        level = int(np.clip(math.floor(math.log2(ratio)), 0, len(self.levels)))
        session = self.session if level == 0 else self.levels[level - 1]
        rows, cols = session.grid.xy_to_rowcol(cx, cy)
        inside = session.grid.contains(rows, cols)
        if not inside.any():
            raise OutsideCubeError(f"tile {z}/{x}/{y} does not touch cube {self.name!r}")
        window = (
            slice(int(rows[inside].min()), int(rows[inside].max()) + 1),
            slice(int(cols[inside].min()), int(cols[inside].max()) + 1),
        )
        pixels = (window[0].stop - window[0].start) * (window[1].stop - window[1].start)
        if pixels > MAX_TILE_PIXELS:
            raise TileTooCoarseError(
                f"tile {z}/{x}/{y} would read {pixels:,} pixels of cube {self.name!r}: zoom in, or give the "
                f"cube overviews with `landprompt cube overviews {self.path}` and restart the server"
            )
        return Footprint(tile, level, session, window, rows, cols, inside)

    def _pixel_centres(self, tile: morecantile.Tile) -> tuple[np.ndarray, np.ndarray]:
        """The tile's 256 x 256 pixel centres in the cube's CRS.

        Exact at a 17 x 17 lattice of the tile's pixel centres and bilinear between them (the projection
        is smooth at tile scale: the error is far below a pixel).
        """
        left, _, right, top = TMS.xy_bounds(tile)
        step = (right - left) / TILE_SIZE
        knots = np.linspace(0, TILE_SIZE - 1, _KNOTS)
        mx, my = np.meshgrid(left + (knots + 0.5) * step, top - (knots + 0.5) * step)
        kx, ky = transform_points(mx, my, self._mercator, self._crs)
        return _interpolate(kx), _interpolate(ky)

    def tile(
        self, z: int, x: int, y: int, query: ConceptScorer
    ) -> tuple[np.ndarray, np.ndarray, morecantile.Tile]:
        """Probabilities (256, 256) of a Web Mercator tile (NaN off the cube) and the valid fraction.

        Raises:
            TileOutOfRangeError: if ``z/x/y`` is no tile of WebMercatorQuad up to :attr:`maxzoom`.
            OutsideCubeError: if the tile does not touch the cube.
        """
        where = self.footprint(z, x, y)
        rows, cols = where.window
        inside = where.inside
        at = (where.rows[inside] - rows.start, where.cols[inside] - cols.start)
        classes = query.classes
        window = where.session.probability_window(
            rows, cols, classes[:1], classes[1:], query.query.logit_scale
        )
        window = window[..., 0]
        values = np.full((TILE_SIZE, TILE_SIZE), np.nan, np.float32)
        values[inside] = window[at]
        fraction = np.zeros((TILE_SIZE, TILE_SIZE), np.float32)
        if where.level == 0:
            fraction[inside] = np.isfinite(values[inside])
        else:
            fraction[inside] = self._fractions[where.level - 1][rows, cols][at]
        fraction[~np.isfinite(values)] = 0
        return query.calibrate(values), fraction, where.tile

    def point(self, lon: float, lat: float, query: ConceptScorer) -> dict[str, Any]:
        """Cosine score and probability of the base pixel at a lon/lat point (one pixel read).

        Raises:
            OutsideCubeError: if the point is off the cube.
        """
        from landprompt.embedder.cube import read_window

        row, col = (int(v) for v in self.grid.lonlat_to_rowcol(lon, lat))
        if not bool(self.grid.contains(row, col)):
            raise OutsideCubeError(
                f"({lon}, {lat}) lies outside cube {self.name!r} (bounds {self.info()['bounds']})"
            )
        embedding, valid = read_window(self.session.ds, slice(row, row + 1), slice(col, col + 1))
        probability = float(query.score(embedding, valid)[0, 0])
        score = float(embedding[0, 0] @ query.classes[0]) if valid[0, 0] else None
        return {
            "cube": self.name,
            "lon": lon,
            "lat": lat,
            "row": row,
            "col": col,
            "valid": bool(valid[0, 0]),
            "score": score,
            "probability": None if math.isnan(probability) else probability,
        }

    def top_k(self, query: ConceptScorer, k: int, min_distance_m: float) -> pd.DataFrame:
        """The k best distinct places of the concept (cosine score), as :meth:`QuerySession.top_k`."""
        return self.session.top_k(query.classes[0], k, min_distance_m)

    def export(self, query: ConceptScorer, bbox: Sequence[float], max_pixels: int) -> Any:
        """The probability map of a lon/lat bbox (a georeferenced DataArray), at most ``max_pixels``."""
        rows, cols = self.grid.slices_of_bbox(bbox)
        n = (rows.stop - rows.start) * (cols.stop - cols.start)
        if n > max_pixels:
            raise BadInputError(
                f"the view covers {n:,} pixels, more than the {max_pixels:,} a served export writes: "
                "zoom in, or export with `landprompt query map`"
            )
        classes = query.classes
        da = self.session.probability_map(
            classes[:1], classes[1:], bbox, DEFAULT_STYLE, logit_scale=query.query.logit_scale
        )
        da = da.copy(data=query.calibrate(da.values))
        da.attrs.update(query.attrs())
        return da
