"""Spatial keys of places: EEA reference-grid cells, split blocks and fetch partitions.

- **Cells** and **blocks** are squares of the EEA reference grid (EPSG:3035, ETRS89-LAEA), named as the
  EEA names them: ``1kmE3262N3587`` is the 1 km cell whose south-west corner is at easting 3262 km,
  northing 3587 km; ``10kmE326N358`` the 10 km block around it.
- **Splits** are drawn per block, never per row: a block's split comes from a hash of the seed and
  the block name (:func:`block_split`), so neighbouring places share a split, adding places never moves
  a block, and the same seed gives the same splits everywhere.
- **Partitions** group samples for the satellite fetch: the UTM zone of the place, its 100 km square
  in that zone and the year (``32632/5/50/2022``), roughly one Sentinel-2 tile-year.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from landprompt.errors import BadInputError
from landprompt.geo import EUROPE_CRS, WGS84, transform_points, utm_epsg

SPLITS: tuple[str, str, str] = ("train", "val", "test")
PARTITION_SIZE_M = 100_000.0


def laea_xy(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """EPSG:3035 easting and northing in metres of lon/lat points."""
    return transform_points(lon, lat, WGS84, EUROPE_CRS)


def cell_names(x: np.ndarray, y: np.ndarray, size_m: float) -> np.ndarray:
    """EEA grid names (``1kmE3262N3587``, ``10kmE326N358``, ``100mE32620N35870``) of EPSG:3035 points."""
    if size_m <= 0:
        raise BadInputError(f"cell size must be positive, got {size_m} m")
    label = f"{size_m / 1000:g}km" if size_m >= 1000 else f"{size_m:g}m"
    east = np.floor(np.asarray(x, float) / size_m).astype(np.int64)
    north = np.floor(np.asarray(y, float) / size_m).astype(np.int64)
    return np.array([f"{label}E{e}N{n}" for e, n in zip(east, north, strict=True)], dtype=object)


def block_split(block: str, seed: int, fractions: Sequence[float]) -> tuple[str, float]:
    """The split of a block and the uniform draw ``u`` in [0, 1) that chose it.

    ``u`` is the first 8 bytes of ``sha256("<seed>:<block>")`` over 2**64: the same on every machine.
    The block goes to ``train`` if ``u < f_train``, ``val`` if ``u < f_train + f_val``, else ``test``.
    """
    digest = hashlib.sha256(f"{seed}:{block}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    edges = np.cumsum(fractions)
    index = int(np.searchsorted(edges, u, side="right"))
    return SPLITS[min(index, len(SPLITS) - 1)], u


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validate train/val/test fractions (three non-negative numbers summing to 1)."""
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or min(values) < 0 or not np.isclose(sum(values), 1.0):
        raise BadInputError(f"split fractions must be 3 non-negative numbers summing to 1, got {values}")
    return values[0], values[1], values[2]


def partition_keys(lon: np.ndarray, lat: np.ndarray, year: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Partition names ``<epsg>/<x100km>/<y100km>/<year>`` and a spatial sort key within each.

    The sort key orders places by 2.56 km squares of their zone, so consecutive samples (and the
    store rows they get) are close together on the ground.
    """
    lon, lat, year = np.asarray(lon, float), np.asarray(lat, float), np.asarray(year, np.int64)
    epsg = utm_epsg(lon, lat)
    x, y = np.empty_like(lon), np.empty_like(lat)
    for code in np.unique(epsg):
        sel = epsg == code
        x[sel], y[sel] = transform_points(lon[sel], lat[sel], WGS84, f"EPSG:{code}")
    bx, by = np.floor(x / PARTITION_SIZE_M).astype(np.int64), np.floor(y / PARTITION_SIZE_M).astype(np.int64)
    names = np.array(
        [f"{e}/{i}/{j}/{t}" for e, i, j, t in zip(epsg, bx, by, year, strict=True)], dtype=object
    )
    square = 2560.0
    order = np.floor(-y / square) * 1e6 + np.floor(x / square)
    return names, order


def partition_epsg(name: str) -> int:
    """The EPSG code of a partition name."""
    return int(name.split("/", 1)[0])
