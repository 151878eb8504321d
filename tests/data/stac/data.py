#!/usr/bin/env python3
"""Generate a tiny Sentinel-1/2 STAC catalog and the same data as a local GeoTIFF stack (fixed seed).

TorchGeo-style test-data script: ``python tests/data/stac/data.py OUT_DIR`` writes the files; the test
suite calls :func:`generate` into a temporary folder instead of committing binaries.

What it writes, on a 64 x 64 px grid at 10 m in UTM 32N (EPSG:32632):

- ``catalog/``: a self-contained pystac catalog with collections ``sentinel-2-l2a`` (Planetary Computer
  asset keys B02 ... B12 and SCL, tiled COGs at their native 10 m / 20 m, projection extension on every
  asset) and ``sentinel-1-rtc`` (``vv``, ``vh`` linear power, nodata -32768). S2 scenes: 2021-12-30
  (outside the year), 2022-01-10 (baseline 03.01), 2022-01-28 and 2022-06-15 (baseline 04.00, DN =
  reflectance + 1000). Jan 28 has a cloud, a shadow and cirrus; Jan 10 a snow strip; Jun 15 covers only
  columns >= 16. S1 scenes: 2022-01-15 and 2022-06-20 (the June one has nodata in columns < 8).
- ``stack/``: the same scenes as a local stack: ``s2_YYYYMMDD.tif`` (B2 ... B12 reflectance x 1e4 with the
  offset removed, then SCL; uint16, nodata 0, all at 10 m) and ``s1_YYYYMMDD.tif`` (VV, VH in dB,
  float32, NaN nodata).

:func:`generate` also returns the expected monthly composites, computed here with NumPy alone.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pystac
import rasterio
from affine import Affine
from pyproj import CRS
from pystac.extensions.eo import EOExtension
from pystac.extensions.projection import ProjectionExtension

from landprompt.eo.bands import S1_BAND_NAMES, S2_BANDS, linear_to_db
from landprompt.geo import Grid, reproject_bounds

SEED = 0
EPSG = 32632
LEFT, TOP = 500_000.0, 5_000_000.0
SIZE = 64
YEAR = 2022
S1_NODATA = -32768.0

#: (datetime, processing baseline) of each S2 scene.
S2_SCENES = (
    ("2021-12-30T10:30:00Z", "03.01"),
    ("2022-01-10T10:30:00Z", "03.01"),
    ("2022-01-28T10:30:00Z", "04.00"),
    ("2022-06-15T10:30:00Z", "04.00"),
)
S1_SCENES = ("2022-01-15T05:40:00Z", "2022-06-20T05:40:00Z")


@dataclass(frozen=True)
class StacFixture:
    """Paths of the generated files and the truth to compare against."""

    root: Path
    catalog: Path
    stack: Path
    grid: Grid
    year: int
    expected_s2: np.ndarray
    """float32 [12, 10, 64, 64] monthly median reflectance x 1e4, NaN missing."""
    expected_s1: np.ndarray
    """float32 [12, 2, 64, 64] monthly median dB, NaN missing."""


def _grid() -> Grid:
    return Grid(CRS.from_epsg(EPSG), Affine(10.0, 0.0, LEFT, 0.0, -10.0, TOP), (SIZE, SIZE))


def _scl(index: int) -> np.ndarray:
    """SCL at 20 m (32 x 32) of S2 scene ``index``: vegetation (4) with that scene's clouds."""
    scl = np.full((SIZE // 2, SIZE // 2), 4, dtype=np.uint8)
    scl[:, 24:] = 6  # water stays valid
    if index == 1:
        scl[28:32, :] = 11  # snow strip
        scl[0:2, 0:4] = 2  # dark area stays valid
    if index == 2:
        scl[4:12, 4:12] = 9  # cloud
        scl[20:24, 20:28] = 3  # its shadow
        scl[28:32, 0:8] = 10  # cirrus over Jan 10's snow: no valid January pixel there
    if index == 3:
        scl[:, 0:8] = 0  # outside the swath
    return scl


def _upsample(a: np.ndarray, factor: int) -> np.ndarray:
    return a.repeat(factor, axis=-2).repeat(factor, axis=-1)


def _write_tif(path: Path, data: np.ndarray, grid_transform: Affine, nodata: float, names: list[str]) -> None:
    """A tiled, deflated GeoTIFF (COG layout) with one band per leading index of ``data``."""
    count, rows, cols = data.shape
    profile = {
        "driver": "COG",
        "width": cols,
        "height": rows,
        "count": count,
        "dtype": data.dtype.name,
        "crs": CRS.from_epsg(EPSG).to_wkt(),
        "transform": grid_transform,
        "nodata": nodata,
        "compress": "deflate",
        "blocksize": 16,
        "overviews": "none",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, name in enumerate(names, start=1):
            dst.set_band_description(i, name)


def _item(item_id: str, when: str, grid: Grid, properties: dict[str, object]) -> pystac.Item:
    left, bottom, right, top = reproject_bounds(grid.bounds, grid.crs, "EPSG:4326")
    geometry = {
        "type": "Polygon",
        "coordinates": [[[left, bottom], [right, bottom], [right, top], [left, top], [left, bottom]]],
    }
    item = pystac.Item(
        item_id,
        geometry,
        [left, bottom, right, top],
        datetime.fromisoformat(when.replace("Z", "+00:00")),
        properties=dict(properties),
    )
    ProjectionExtension.add_to(item)
    ProjectionExtension.ext(item).epsg = EPSG
    return item


def _add_asset(item: pystac.Item, key: str, href: Path, shape: tuple[int, int], transform: Affine) -> None:
    asset = pystac.Asset(str(href), media_type=pystac.MediaType.COG, roles=["data"])
    item.add_asset(key, asset)
    proj = ProjectionExtension.ext(asset)
    proj.epsg = EPSG
    proj.shape = list(shape)
    proj.transform = list(transform)[:6]


def generate(root: Path) -> StacFixture:
    """Write the catalog and the stack under ``root``; return paths and expected composites."""
    rng = np.random.default_rng(SEED)
    root = Path(root)
    grid = _grid()
    t10 = grid.transform
    t20 = t10 * Affine.scale(2)
    catalog = pystac.Catalog("landprompt-test", "Tiny Sentinel-1/2 catalog for landprompt tests")
    s2_items, s1_items = [], []

    s2_month: dict[int, list[np.ndarray]] = {}
    for index, (when, baseline) in enumerate(S2_SCENES):
        stamp = when[:10].replace("-", "")
        item = _item(
            f"S2_{stamp}", when, grid, {"s2:processing_baseline": baseline, "platform": "sentinel-2a"}
        )
        EOExtension.add_to(item)
        EOExtension.ext(item).cloud_cover = 10.0 * index
        offset = 1000 if float(baseline) >= 4 else 0
        scl = _scl(index)
        harmonised = []
        for spec in S2_BANDS:
            factor = int(spec.resolution // 10)
            shape = (SIZE // factor, SIZE // factor)
            reflectance = rng.integers(200, 6000, size=shape).astype(np.uint16)
            dn = reflectance + offset
            if index == 3:
                dn[:, : 16 // factor] = 0  # outside the swath
            href = root / "cogs" / item.id / f"{spec.asset('planetary-computer')}.tif"
            _write_tif(href, dn[None].astype(np.uint16), t10 * Affine.scale(factor), 0, [spec.name])
            _add_asset(item, spec.asset("planetary-computer"), href, shape, t10 * Affine.scale(factor))
            harmonised.append(_upsample(np.where(dn > 0, dn.astype(np.int32) - offset, 0), factor))
        scl_href = root / "cogs" / item.id / "SCL.tif"
        _write_tif(scl_href, scl[None], t20, 0, ["SCL"])
        _add_asset(item, "SCL", scl_href, scl.shape, t20)
        s2_items.append(item)

        stack = np.stack([*harmonised, _upsample(scl, 2)]).astype(np.uint16)
        _write_tif(root / "stack" / f"s2_{stamp}.tif", stack, t10, 0, [b.name for b in S2_BANDS] + ["SCL"])
        if when.startswith(str(YEAR)):
            valid = ~np.isin(stack[-1], [0, 1, 3, 8, 9, 10, 11]) & (stack[0] > 0)
            value = np.where(valid, stack[:-1].astype(np.float32), np.nan)
            s2_month.setdefault(int(when[5:7]), []).append(value)

    s1_month: dict[int, list[np.ndarray]] = {}
    for index, when in enumerate(S1_SCENES):
        stamp = when[:10].replace("-", "")
        item = _item(
            f"S1_{stamp}", when, grid, {"platform": "sentinel-1a", "sar:polarizations": ["VV", "VH"]}
        )
        db = rng.uniform(-25, -5, size=(2, SIZE, SIZE)).astype(np.float32)
        linear = (10 ** (db / 10)).astype(np.float32)
        if index == 1:
            linear[:, :, :8] = S1_NODATA
        for name, band in zip(S1_BAND_NAMES, linear, strict=True):
            href = root / "cogs" / item.id / f"{name.lower()}.tif"
            _write_tif(href, band[None], t10, S1_NODATA, [name])
            _add_asset(item, name.lower(), href, (SIZE, SIZE), t10)
        s1_items.append(item)
        stack_db = linear_to_db(linear)  # NaN where nodata (non-positive)
        _write_tif(root / "stack" / f"s1_{stamp}.tif", stack_db, t10, np.nan, list(S1_BAND_NAMES))
        s1_month.setdefault(int(when[5:7]), []).append(stack_db)

    for collection_id, items in (("sentinel-2-l2a", s2_items), ("sentinel-1-rtc", s1_items)):
        extent = pystac.Extent(
            pystac.SpatialExtent([items[0].bbox]),
            pystac.TemporalExtent([[min(i.datetime for i in items), max(i.datetime for i in items)]]),
        )
        collection = pystac.Collection(collection_id, f"test {collection_id}", extent)
        collection.add_items(items)
        catalog.add_child(collection)
    catalog.normalize_hrefs(str(root / "catalog"))
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)

    return StacFixture(
        root=root,
        catalog=root / "catalog" / "catalog.json",
        stack=root / "stack",
        grid=grid,
        year=YEAR,
        expected_s2=_monthly(s2_month, len(S2_BANDS)),
        expected_s1=_monthly(s1_month, len(S1_BAND_NAMES)),
    )


def _monthly(by_month: dict[int, list[np.ndarray]], bands: int) -> np.ndarray:
    out = np.full((12, bands, SIZE, SIZE), np.nan, dtype=np.float32)
    for month, scenes in by_month.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
            out[month - 1] = np.nanmedian(np.stack(scenes), axis=0)
    return out


if __name__ == "__main__":
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "generated"
    fixture = generate(out_dir)
    print(f"catalog: {fixture.catalog}\nstack: {fixture.stack}")
