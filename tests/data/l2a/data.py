#!/usr/bin/env python3
"""Generate Sentinel-2 L2A GeoTIFF stacks in the layouts users have (fixed seed, no SCL).

TorchGeo-style test-data script: ``python tests/data/l2a/data.py OUT_DIR`` writes the files; the tests
call :func:`generate` into a temporary folder instead of committing binaries.

One set of reflectances (x 1e4, 24 x 24 px at 10 m in UTM 32N, three dates of 2022, nodata 0 in a
corner), stored five ways, each a folder of ``s2_YYYYMMDD.tif`` files of 12 bands in the order of the
L2A product (B1, B2, B3, B4, B5, B6, B7, B8, B8A, B9, B11, B12; uint16, nodata 0):

- ``offset_free/``: the reflectances, bands named;
- ``offset_tag/``: DN = reflectance + 1000 (baseline 04.00), bands named, GDAL offset -1000 on every band;
- ``baseline_0400/``: DN = reflectance + 1000, bands named, no tag; a STAC item JSON next to each file
  (``s2_YYYYMMDD.json``) says ``s2:processing_baseline: "04.00"``;
- ``stackstac/``: DN = reflectance + 1000, each band's description a ``stackstac-<hash>`` (as in
  SSL4EO-S12-style patches), no tag and no item: only ``--l2a-offset -1000`` reads it right;
- ``scale_tag/``: DN = reflectance + 1000, bands named, GDAL scale 1e-4 and offset -0.1 (reflectance).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import CRS

from landprompt.geo import Grid

SEED = 17
EPSG = 32632
SIZE = 24
YEAR = 2022
DATES = ("20220110", "20220415", "20220720")
BANDS_12 = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12")
OFFSET = 1000


@dataclass(frozen=True)
class L2aFixture:
    """Folders of the generated stacks and their common grid."""

    root: Path
    grid: Grid
    offset_free: Path
    offset_tag: Path
    baseline_0400: Path
    stackstac: Path
    scale_tag: Path


def grid() -> Grid:
    """The stacks' 24 x 24 px grid at 10 m."""
    return Grid(CRS.from_epsg(EPSG), Affine(10.0, 0.0, 600_000.0, 0.0, -10.0, 5_100_000.0), (SIZE, SIZE))


def _write(
    path: Path, data: np.ndarray, descriptions: list[str], scale: float = 1.0, offset: float = 0.0
) -> None:
    profile = {
        "driver": "GTiff",
        "width": SIZE,
        "height": SIZE,
        "count": data.shape[0],
        "dtype": "uint16",
        "crs": CRS.from_epsg(EPSG).to_wkt(),
        "transform": grid().transform,
        "nodata": 0,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, text in enumerate(descriptions, start=1):
            dst.set_band_description(i, text)
        if scale != 1.0 or offset != 0.0:
            dst.scales = (scale,) * data.shape[0]
            dst.offsets = (offset,) * data.shape[0]


def _item(path: Path, date: str, baseline: str) -> None:
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": f"S2B_MSIL2A_{date}",
        "properties": {
            "datetime": f"{date[:4]}-{date[4:6]}-{date[6:]}T10:30:00Z",
            "s2:processing_baseline": baseline,
        },
        "geometry": None,
        "links": [],
        "assets": {},
    }
    path.write_text(json.dumps(item))


def generate(root: Path) -> L2aFixture:
    """Write the five stacks under ``root``."""
    rng = np.random.default_rng(SEED)
    root = Path(root)
    folders = {
        name: root / name for name in ("offset_free", "offset_tag", "baseline_0400", "stackstac", "scale_tag")
    }
    named = list(BANDS_12)
    hashed = [f"stackstac-{rng.integers(0, 2**63):016x}" for _ in BANDS_12]
    for date in DATES:
        reflectance = rng.integers(1, 6000, size=(len(BANDS_12), SIZE, SIZE)).astype(np.uint16)
        reflectance[:, :3, :3] = 0  # no data
        dn = np.where(reflectance > 0, reflectance + OFFSET, 0).astype(np.uint16)
        name = f"s2_{date}.tif"
        _write(folders["offset_free"] / name, reflectance, named)
        _write(folders["offset_tag"] / name, dn, named, offset=-OFFSET)
        _write(folders["baseline_0400"] / name, dn, named)
        _item(folders["baseline_0400"] / f"s2_{date}.json", date, "04.00")
        _write(folders["stackstac"] / name, dn, hashed)
        _write(folders["scale_tag"] / name, dn, named, scale=1e-4, offset=-0.1)
    return L2aFixture(root, grid(), *folders.values())


if __name__ == "__main__":
    print(generate(Path(sys.argv[1] if len(sys.argv) > 1 else "l2a-fixture")))
