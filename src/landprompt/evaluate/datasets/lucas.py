"""LUCAS survey points (Eurostat's Land Use/Cover Area frame Survey) as a land-cover benchmark.

Each row of a LUCAS survey table (``metadata_2018.csv`` and alike) is a point with its land cover
``lc1`` (a code such as ``D10``); its first letter is the top-level class (``data/lucas_lc1.yaml``:
A Artificial land, B Cropland, C Woodland, D Shrubland, E Grassland, F Bare land and lichens/moss,
G Water areas, H Wetlands). Rows whose code starts with another character are not evaluated.

Points are evaluated against an embedding cube (:func:`point_embeddings`): a point's location is the
survey's theoretical point ``th_lat`` / ``th_long`` (signed degrees), or with ``coordinates="gps"`` the
surveyor's GPS fix, whose ``gps_long`` is unsigned with the hemisphere in ``gps_ew`` (``East`` /
``West``, so West negates it); a missing or placeholder fix (88.888888) falls back to the theoretical
point. Samples keep the table's row order.
"""

from __future__ import annotations

from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import xarray as xr

from landprompt.embedder.cube import cube_grid, read_window
from landprompt.errors import BadInputError
from landprompt.evaluate.datasets.base import Benchmark, Sample
from landprompt.evaluate.resources import packaged_yaml

Coordinates = Literal["th", "gps"]

REQUIRED_COLUMNS = ("point_id", "th_lat", "th_long", "lc1")
OPTIONAL_COLUMNS = ("year", "gps_lat", "gps_long", "gps_ew", "survey_date")
GPS_PLACEHOLDER = 88.888888
"""LUCAS's code for a value that is missing or not relevant."""


@cache
def lucas_classes() -> dict[str, str]:
    """LUCAS top-level land-cover classes: letter -> name (``data/lucas_lc1.yaml``)."""
    return dict(packaged_yaml("lucas_lc1.yaml")["classes"])


class Lucas(Benchmark):
    """LUCAS points with their top-level land cover.

    Args:
        root: A LUCAS CSV table, or a folder whose ``*.csv`` tables are read in name order.
        coordinates: ``"th"`` (theoretical point) or ``"gps"`` (GPS fix, theoretical point where missing).

    Raises:
        BadInputError: If no table is found or a table lacks a required column.
    """

    name: ClassVar[str] = "lucas"

    def __init__(self, root: str | Path, coordinates: Coordinates = "th") -> None:
        if coordinates not in ("th", "gps"):
            raise BadInputError(f"coordinates must be 'th' or 'gps', got {coordinates!r}")
        self.coordinates = coordinates
        root = Path(root)
        tables = sorted(root.glob("*.csv")) if root.is_dir() else [root]
        if not tables or not tables[0].is_file():
            raise BadInputError(f"no LUCAS CSV table at {root}")
        classes = lucas_classes()
        letters = tuple(classes)
        self.skipped = {"lc1_not_a_class": 0, "no_coordinates": 0}
        self.gps_fallbacks = 0
        samples = []
        for table in tables:
            frame = _read_table(table)
            lon, lat, from_gps = self._locate(frame)
            letter = frame["lc1"].astype(str).str.strip().str[:1].str.upper()
            for i, row in enumerate(frame.itertuples(index=False)):
                if letter.iat[i] not in classes:
                    self.skipped["lc1_not_a_class"] += 1
                elif not (np.isfinite(lon[i]) and np.isfinite(lat[i])):
                    self.skipped["no_coordinates"] += 1
                else:
                    ident = _point_id(row.point_id) + (f"_{int(row.year)}" if _has_year(row) else "")
                    location = (float(lon[i]), float(lat[i]))
                    samples.append(Sample(ident, (letters.index(letter.iat[i]),), table, location))
                    self.gps_fallbacks += int(self.coordinates == "gps" and not from_gps[i])
        names = [f"{letter} {name}" for letter, name in classes.items()]
        super().__init__(root, letters, samples, class_names=names)

    def settings(self) -> dict[str, Any]:
        """Coordinates used, class names and rows skipped."""
        return {
            "coordinates": self.coordinates,
            "class_names": dict(lucas_classes()),
            "rows_skipped": dict(self.skipped),
            "gps_fallbacks_to_th": self.gps_fallbacks,
        }

    def lonlat(self) -> np.ndarray:
        """(lon, lat) of every sample, float64 [samples, 2]."""
        return np.array([s.location for s in self.samples], dtype=np.float64).reshape(-1, 2)

    def _locate(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Lon and lat of every row by the chosen convention, and whether they come from a GPS fix."""
        th_lon, th_lat = _numeric(frame, "th_long"), _numeric(frame, "th_lat")
        if self.coordinates == "th":
            return th_lon, th_lat, np.zeros(len(frame), dtype=bool)
        lon, lat = gps_lonlat(frame)
        fix = np.isfinite(lon) & np.isfinite(lat)
        return np.where(fix, lon, th_lon), np.where(fix, lat, th_lat), fix


def gps_lonlat(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Signed GPS lon/lat of LUCAS rows: ``gps_long`` negated where ``gps_ew`` says West.

    Returns:
        lon, lat float64 [rows]; NaN where the fix is missing, a placeholder, out of range, or its
        ``gps_ew`` is neither East nor West.
    """
    for column in ("gps_lat", "gps_long", "gps_ew"):
        if column not in frame:
            raise BadInputError(f"coordinates='gps' needs column {column!r}; use coordinates='th'")
    lat, lon = _numeric(frame, "gps_lat"), np.abs(_numeric(frame, "gps_long"))
    side = frame["gps_ew"].astype(str).str.strip().str.upper().str[:1]
    sign = np.select([side == "E", side == "W"], [1.0, -1.0], np.nan)
    lon = lon * sign
    bad = (np.abs(lat) > 90) | (np.abs(lon) > 180)
    bad |= np.isclose(lat, GPS_PLACEHOLDER) | np.isclose(np.abs(lon), GPS_PLACEHOLDER)
    return np.where(bad, np.nan, lon), np.where(bad, np.nan, lat)


def point_embeddings(cube: xr.Dataset, lonlat: np.ndarray, window: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of points from a cube: the mean of the valid pixels of a window around each point.

    Points are grouped by cube chunk, so each chunk is decoded once.

    Args:
        cube: An embedding cube (:func:`landprompt.embedder.cube.open_cube`).
        lonlat: (lon, lat) degrees [points, 2].
        window: Odd side in pixels of the window averaged around the point's pixel.

    Returns:
        Embeddings float32 [points, d], L2-normalised (zero where invalid), and validity bool [points]:
        the point falls inside the cube and its window has a valid pixel.
    """
    if window < 1 or window % 2 == 0:
        raise BadInputError(f"window must be a positive odd number of pixels, got {window}")
    grid = cube_grid(cube)
    rows, cols = grid.lonlat_to_rowcol(lonlat[:, 0], lonlat[:, 1])
    inside = grid.contains(rows, cols)
    out = np.zeros((len(lonlat), cube.sizes["d"]), dtype=np.float32)
    valid = np.zeros(len(lonlat), dtype=bool)
    chunk_y, chunk_x = (cube.chunksizes.get(dim, (cube.sizes[dim],))[0] for dim in ("y", "x"))
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i in np.flatnonzero(inside).tolist():
        groups[(int(rows[i]) // chunk_y, int(cols[i]) // chunk_x)].append(i)
    half = window // 2
    for (cy, cx), members in groups.items():
        r0, c0 = max(cy * chunk_y - half, 0), max(cx * chunk_x - half, 0)
        r1, c1 = min((cy + 1) * chunk_y + half, grid.rows), min((cx + 1) * chunk_x + half, grid.cols)
        embedding, ok = read_window(cube, slice(r0, r1), slice(c0, c1))
        for i in members:
            r, c = int(rows[i]) - r0, int(cols[i]) - c0
            box = (slice(max(r - half, 0), r + half + 1), slice(max(c - half, 0), c + half + 1))
            pixels = embedding[box][ok[box]]
            if len(pixels):
                mean = pixels.mean(axis=0)
                norm = float(np.linalg.norm(mean))
                if norm > 0:
                    out[i], valid[i] = mean / norm, True
    return out, valid


def _read_table(path: Path) -> pd.DataFrame:
    try:
        header = pd.read_csv(path, nrows=0).columns
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise BadInputError(f"{path} is not a readable CSV table: {err}") from err
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise BadInputError(
            f"{path} lacks LUCAS column(s) {missing} (it needs {', '.join(REQUIRED_COLUMNS)})"
        )
    columns = [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in header]
    return pd.read_csv(path, usecols=columns, dtype={"lc1": str, "gps_ew": str}, low_memory=False)


def _numeric(frame: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)


def _point_id(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _has_year(row: Any) -> bool:
    year = getattr(row, "year", None)
    return year is not None and not pd.isna(year)
