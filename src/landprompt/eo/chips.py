"""Chips: P x P pixel windows centred on places, and readers that build their monthly composites.

A chip is P x P pixels of 10 m on the *lattice* of the place's UTM zone (pixel edges at multiples of
10 m, as Sentinel-2 tiles have them): the pixel holding the place and ``P // 2`` pixels each side (for
an even P the place is in the pixel right of and below the centre). A :class:`ChipSet` holds the chips of
one zone; a :class:`ChipReader` turns it into monthly composites, float32
``s2`` [n, 12, 10, P, P] (reflectance x 1e4) and ``s1`` [n, 12, 2, P, P] (dB), NaN = no data.

Readers (:func:`chip_reader` picks one for a scene source):

- :class:`StackChipReader` (local GeoTIFF stacks) and :class:`StacChipReader` (STAC items) read only the
  chips' pixels: each file or asset is opened once per call, each chip's window read from it (directly
  when the file is on the same lattice, through one GDAL warped VRT per file otherwise), the windows
  laid side by side in a mosaic, and the mosaic masked and composited by the same code as every other
  composite (:func:`landprompt.eo.masks.mask_scenes`, :func:`landprompt.eo.composite.monthly_composites`).
  Chips are read with a halo of the source's mask dilation, so results equal those of a composite of a
  grid covering the chips. The STAC reader searches once per call (signing the items then, so signed
  URLs are fresh for each task) and fuses items of one solar day like odc-stac's ``groupby="solar_day"``.
- :class:`CompositeChipReader` works with any :class:`~landprompt.eo.source.SceneSource`: one
  ``composite`` call per window of nearby chips (slower: a whole grid per call).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import timedelta
from functools import partial
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import pystac
import rasterio
import xarray as xr
from affine import Affine
from pyproj import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from landprompt.eo.bands import (
    S1_BAND_NAMES,
    S1_BANDS,
    S2_BAND_NAMES,
    S2_BANDS,
    SCL_ASSETS,
    SCL_BAND,
    Sensor,
    detect_provider,
    harmonize_s2,
    linear_to_db,
    s2_boa_offset,
)
from landprompt.eo.composite import MONTHS, monthly_composites
from landprompt.eo.local import LocalSource, list_geotiff_stack, stack_band_names
from landprompt.eo.masks import mask_scenes
from landprompt.eo.source import SceneSource
from landprompt.eo.stac import StacSource, default_modifier
from landprompt.errors import BadInputError
from landprompt.geo import WGS84, Grid, transform_points, utm_epsg

RESOLUTION_M = 10.0
GDAL_ENV = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MAX_RETRY": "5",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "GDAL_HTTP_MULTIRANGE": "YES",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "VSI_CACHE": "TRUE",
}
"""GDAL settings of every read: no directory listings, retries of transient HTTP errors, header cache."""


# --- chips ------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ChipSet:
    """Chips of one UTM zone.

    Attributes:
        epsg: EPSG code of the zone.
        left: Map x of each chip's left edge (a multiple of ``resolution``).
        top: Map y of each chip's top edge (a multiple of ``resolution``).
        size: Chip size P in pixels.
        resolution: Pixel size in metres.
    """

    epsg: int
    left: np.ndarray
    top: np.ndarray
    size: int
    resolution: float = RESOLUTION_M

    @classmethod
    def around(
        cls, lon: Any, lat: Any, size: int = 5, epsg: int | None = None, resolution: float = RESOLUTION_M
    ) -> ChipSet:
        """Chips centred on lon/lat points, in ``epsg`` (default: the UTM zone of the first point)."""
        lon, lat = np.atleast_1d(np.asarray(lon, float)), np.atleast_1d(np.asarray(lat, float))
        if size < 1:
            raise BadInputError(f"chip size must be >= 1 pixel, got {size}")
        if epsg is None:
            epsg = int(utm_epsg(lon[:1], lat[:1])[0])
        x, y = transform_points(lon, lat, WGS84, f"EPSG:{epsg}")
        half = size // 2
        left = (np.floor(x / resolution) - half) * resolution
        top = (np.floor(y / resolution) + 1 + half) * resolution
        return cls(int(epsg), left, top, size, resolution)

    def __len__(self) -> int:
        return len(self.left)

    @property
    def crs(self) -> CRS:
        """The zone's CRS."""
        return CRS.from_epsg(self.epsg)

    def subset(self, index: Any) -> ChipSet:
        """The chips at ``index``."""
        return replace(self, left=self.left[index], top=self.top[index])

    def grid(self, i: int, halo: int = 0) -> Grid:
        """The grid of chip ``i`` grown by ``halo`` pixels each side."""
        r, pad = self.resolution, halo * self.resolution
        return Grid(
            self.crs, Affine(r, 0, self.left[i] - pad, 0, -r, self.top[i] + pad), (self.size + 2 * halo,) * 2
        )

    def cover(self, halo: int = 0) -> Grid:
        """The smallest lattice grid covering every chip (grown by ``halo`` pixels)."""
        r, pad = self.resolution, halo * self.resolution
        left, top = float(self.left.min()) - pad, float(self.top.max()) + pad
        right = float(self.left.max()) + self.size * r + pad
        bottom = float(self.top.min()) - self.size * r - pad
        shape = (round((top - bottom) / r), round((right - left) / r))
        return Grid(self.crs, Affine(r, 0, left, 0, -r, top), shape)

    def windows(self, pixels: int) -> Iterator[np.ndarray]:
        """Indices of the chips in each square of ``pixels`` x ``pixels`` of the lattice."""
        step = pixels * self.resolution
        keys = np.floor(self.left / step) * 1e9 + np.floor(-self.top / step)
        for key in np.unique(keys):
            yield np.flatnonzero(keys == key)


@runtime_checkable
class ChipReader(Protocol):
    """Builds the monthly composites of chips."""

    def read(self, chips: ChipSet, year: int) -> tuple[np.ndarray, np.ndarray]:
        """float32 ``s2`` [n, 12, 10, P, P] and ``s1`` [n, 12, 2, P, P] of ``year``, NaN = no data."""


def empty_chips(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """All-NaN chips."""
    return (
        np.full((n, MONTHS, len(S2_BAND_NAMES), size, size), np.nan, np.float32),
        np.full((n, MONTHS, len(S1_BAND_NAMES), size, size), np.nan, np.float32),
    )


# --- scenes of files ---------------------------------------------------------------------------------
Convert = Literal["stack", "s2_dn", "s1_linear"]


@dataclass(frozen=True)
class Layer:
    """Bands of one raster file: their names and 1-based indexes in the file."""

    href: str
    bands: tuple[str, ...]
    indexes: tuple[int, ...]


@dataclass(frozen=True)
class Scene:
    """One acquisition: its sensor, time key, layers, and how raw values become composite inputs.

    ``convert``: ``stack`` (values as stored, 0 = no data for reflectance), ``s2_dn`` (Sentinel-2 DNs
    plus ``offset``, :func:`~landprompt.eo.bands.harmonize_s2`), ``s1_linear`` (linear power -> dB).
    Scenes with equal (sensor, time, group) are fused, first valid value wins, in list order.
    """

    sensor: Sensor
    time: pd.Timestamp
    layers: tuple[Layer, ...]
    convert: Convert = "stack"
    offset: float = 0.0
    group: float = 0.0


@dataclass
class _Files:
    """Open rasterio datasets (and warped VRTs) of one read, each opened once."""

    stack: ExitStack = field(default_factory=ExitStack)
    datasets: dict[str, Any] = field(default_factory=dict)
    vrts: dict[str, Any] = field(default_factory=dict)

    def warped(self, href: str, cover: Grid, resampling: str) -> tuple[Any, Grid]:
        """A warped VRT of a file onto the chips' cover grid (made once per file)."""
        if href not in self.vrts:
            src = self.open(href)
            vrt = WarpedVRT(
                src,
                crs=cover.crs.to_wkt(),
                transform=cover.transform,
                width=cover.cols,
                height=cover.rows,
                resampling=Resampling[resampling],
                src_nodata=src.nodata,
                nodata=src.nodata,
            )
            self.vrts[href] = (self.stack.enter_context(vrt), cover)
        return self.vrts[href]

    def open(self, href: str) -> Any:
        if href not in self.datasets:
            try:
                self.datasets[href] = self.stack.enter_context(rasterio.open(href))
            except rasterio.errors.RasterioIOError as exc:
                raise BadInputError(f"cannot read {href}: {exc}") from exc
        return self.datasets[href]


def read_scene_chips(
    scenes: Sequence[Scene], chips: ChipSet, year: int, halo: int, dilate: int, resampling: str = "nearest"
) -> tuple[np.ndarray, np.ndarray]:
    """Composites of chips from scenes: read each chip window, fuse, mask, take monthly medians."""
    size = chips.size + 2 * halo
    groups = read_groups(chips, halo)
    by_key: dict[tuple[Sensor, pd.Timestamp, float], dict[str, np.ndarray]] = {}
    with rasterio.Env(**GDAL_ENV), ExitStack() as stack:
        files = _Files(stack)
        for scene in scenes:
            bands: dict[str, np.ndarray] = {}
            for layer in scene.layers:
                raw = read_windows(files, layer, chips, halo, resampling, groups)
                bands.update(_convert(scene, layer.bands, raw))
            key = (scene.sensor, scene.time, scene.group)
            if key in by_key:
                fused = by_key[key]
                for name, values in bands.items():
                    if name in fused:
                        fused[name] = np.where(np.isnan(fused[name]), values, fused[name])
                    else:
                        fused[name] = values
            else:
                by_key[key] = bands
    datasets: dict[Sensor, xr.Dataset | None] = {"s2": None, "s1": None}
    for sensor in ("s2", "s1"):
        keys = sorted((k for k in by_key if k[0] == sensor), key=lambda k: (k[1], k[2]))
        if keys:
            datasets[sensor] = _mosaic([by_key[k] for k in keys], [k[1] for k in keys], len(chips), size)
    if datasets["s2"] is None and datasets["s1"] is None:
        return empty_chips(len(chips), chips.size)
    s2 = mask_scenes(datasets["s2"], dilate=dilate) if datasets["s2"] is not None else None
    composite = monthly_composites(s2, datasets["s1"], year)
    crop = slice(halo, halo + chips.size)
    return tuple(  # type: ignore[return-value]
        _unmosaic(composite[v].values, len(chips), size)[..., crop, crop] for v in ("s2", "s1")
    )


def _mosaic(scenes: list[dict[str, np.ndarray]], times: list[pd.Timestamp], n: int, size: int) -> xr.Dataset:
    """Scenes of chips [n, S, S] per band laid side by side: variables (time, y=S, x=n*S)."""
    names = sorted({b for s in scenes for b in s})
    empty = np.full((n, size, size), np.nan, np.float32)
    data = {
        b: (
            ("time", "y", "x"),
            np.stack([s.get(b, empty).transpose(1, 0, 2).reshape(size, n * size) for s in scenes]),
        )
        for b in names
    }
    return xr.Dataset(data, coords={"time": pd.DatetimeIndex(times).as_unit("ns")})


def _unmosaic(values: np.ndarray, n: int, size: int) -> np.ndarray:
    """[T, B, S, n*S] -> [n, T, B, S, S]."""
    t, b = values.shape[:2]
    return np.ascontiguousarray(values.reshape(t, b, size, n, size).transpose(3, 0, 1, 2, 4))


def _convert(scene: Scene, names: Sequence[str], raw: np.ndarray) -> dict[str, np.ndarray]:
    """Raw window values [n, bands, S, S] (NaN = file nodata) -> composite inputs per band name."""
    out = {}
    for i, name in enumerate(names):
        values = raw[:, i]
        if name == SCL_BAND:
            out[name] = values
        elif scene.convert == "s2_dn":
            out[name] = harmonize_s2(xr.DataArray(values), scene.offset).values
        elif scene.convert == "s1_linear":
            out[name] = linear_to_db(values)
        else:
            out[name] = np.where(values == 0, np.nan, values) if scene.sensor == "s2" else values
    return out


READ_TILE_PX = 128
"""Chips within one square of this many lattice pixels may share one window read."""
PIXELS_PER_READ = 20_000
"""A GDAL window read costs about as much as copying 20,000 more pixels (per-call overhead), so nearby
chips are read with one covering window when it is smaller than that per read it saves."""


def read_groups(chips: ChipSet, halo: int) -> list[np.ndarray]:
    """Chip indices read with one window each: nearby chips together when that is cheaper."""
    groups: list[np.ndarray] = []
    for index in chips.windows(READ_TILE_PX):
        cover = chips.subset(index).cover(halo)
        if len(index) > 1 and cover.rows * cover.cols <= (len(index) - 1) * PIXELS_PER_READ:
            groups.append(index)
        else:
            groups.extend(index[:, None])
    return groups


def read_windows(
    files: _Files, layer: Layer, chips: ChipSet, halo: int, resampling: str, groups: Sequence[np.ndarray]
) -> np.ndarray:
    """The chip windows (grown by ``halo``) of one file's bands, on the chips' lattice.

    Args:
        files: The open files of this read.
        layer: The file and bands.
        chips: The chips.
        halo: Pixels added on each side of every chip.
        resampling: Resampling of files off the lattice.
        groups: Chip indices read with one window each (:func:`read_groups`).

    Returns:
        float32 [n, bands, S, S], NaN where the file has no data or does not reach.
    """
    src = files.open(layer.href)
    if src.crs is None:
        raise BadInputError(f"{layer.href} has no CRS")
    size, res = chips.size + 2 * halo, chips.resolution
    indexes = None if layer.indexes == tuple(range(1, src.count + 1)) else list(layer.indexes)
    factor = _lattice_factor(src, chips, resampling)
    if factor is not None:
        read = partial(_read_aligned, src, indexes, factor)
    else:
        read = partial(_read_warped, files.warped(layer.href, chips.cover(halo), resampling), indexes)
    out = np.full((len(chips), len(layer.indexes), size, size), np.nan, np.float32)
    for index in groups:
        grid = chips.subset(index).cover(halo)
        block = read(grid)
        for i in index:
            row = round((grid.transform.f - chips.top[i] - halo * res) / res)
            col = round((chips.left[i] - halo * res - grid.transform.c) / res)
            out[i] = block[:, row : row + size, col : col + size]
    if src.nodata is not None and not np.isnan(src.nodata):
        out[out == np.float32(src.nodata)] = np.nan
    return out


def _lattice_factor(src: Any, chips: ChipSet, resampling: str) -> int | None:
    """K when the file is on the chips' lattice at k times its pixel size (direct reads), else None."""
    t = src.transform
    epsg = src.crs.to_epsg()
    if epsg != chips.epsg or t.b != 0 or t.d != 0 or not math.isclose(t.a, -t.e):
        return None
    k = t.a / chips.resolution
    aligned = all(abs(v / chips.resolution - round(v / chips.resolution)) < 1e-6 for v in (t.c, t.f))
    if not aligned or abs(k - round(k)) > 1e-9 or round(k) < 1:
        return None
    if round(k) > 1 and resampling != "nearest":
        return None
    return round(k)


def _read_aligned(src: Any, indexes: list[int] | None, k: int, grid: Grid) -> np.ndarray:
    """A lattice grid's pixels read straight from a file on the lattice at k times the pixel size.

    Each file pixel is repeated k x k times, which is nearest-neighbour resampling on aligned grids.
    Beyond the file the values are its nodata (NaN without one).
    """
    t, res, fres = src.transform, grid.transform.a, src.transform.a
    left, top = grid.transform.c, grid.transform.f
    c0 = math.floor((left - t.c) / fres + 1e-9)
    c1 = math.ceil((left + grid.cols * res - t.c) / fres - 1e-9)
    r0 = math.floor((t.f - top) / fres + 1e-9)
    r1 = math.ceil((t.f - (top - grid.rows * res)) / fres - 1e-9)
    bands = src.count if indexes is None else len(indexes)
    fill = np.nan if src.nodata is None else src.nodata
    block = np.full((bands, r1 - r0, c1 - c0), fill, np.float32)
    rr0, rr1, cc0, cc1 = max(r0, 0), min(r1, src.height), max(c0, 0), min(c1, src.width)
    if rr1 > rr0 and cc1 > cc0:
        window = Window(cc0, rr0, cc1 - cc0, rr1 - rr0)
        block[:, rr0 - r0 : rr1 - r0, cc0 - c0 : cc1 - c0] = src.read(
            indexes, window=window, out_dtype="float32"
        )
    if k > 1:
        block = block.repeat(k, axis=1).repeat(k, axis=2)
    ox, oy = round((left - (t.c + c0 * fres)) / res), round(((t.f - r0 * fres) - top) / res)
    return block[:, oy : oy + grid.rows, ox : ox + grid.cols]


def _read_warped(warped: tuple[Any, Grid], indexes: list[int] | None, grid: Grid) -> np.ndarray:
    """A lattice grid's pixels from a warped VRT of the file onto the chips' cover."""
    vrt, cover = warped
    col = round((grid.transform.c - cover.transform.c) / grid.transform.a)
    row = round((cover.transform.f - grid.transform.f) / grid.transform.a)
    window = Window(col, row, grid.cols, grid.rows)
    return np.asarray(vrt.read(indexes, window=window, out_dtype="float32"))


# --- readers ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StackChipReader:
    """Chips from a local GeoTIFF stack (the layout of :mod:`landprompt.eo.local`).

    Args:
        folder: The stack folder.
        dilate: SCL mask dilation in pixels.
        resampling: Resampling of files off the chips' lattice (and of coarser files when not nearest).
    """

    folder: str
    dilate: int = 0
    resampling: str = "nearest"

    def read(self, chips: ChipSet, year: int) -> tuple[np.ndarray, np.ndarray]:
        """Composites of the chips from the year's files."""
        scenes = []
        for f in list_geotiff_stack(self.folder, year):
            with rasterio.open(f.path) as src:
                names = stack_band_names(f.path, f.sensor, src.descriptions)
            kept = [(name, i) for i, name in enumerate(names, start=1) if name is not None]  # extras dropped
            layer = Layer(str(f.path), tuple(n for n, _ in kept), tuple(i for _, i in kept))
            scenes.append(Scene(f.sensor, f.time, (layer,), "stack"))
        return read_scene_chips(scenes, chips, year, self.dilate, self.dilate, self.resampling)


@dataclass(frozen=True)
class StacChipReader:
    """Chips from a :class:`~landprompt.eo.stac.StacSource`: one search per call, assets read directly.

    Args:
        source: The STAC source (catalog, collections, query, signing, dilation, resampling).
    """

    source: StacSource

    def read(self, chips: ChipSet, year: int) -> tuple[np.ndarray, np.ndarray]:
        """Search the items over the chips once, sign them, read and composite the chips."""
        halo = self.source.dilate
        unsigned = replace(self.source, signer=None, allow_empty=True, chunks=None)
        cover = chips.cover(halo)
        signer = default_modifier(self.source.catalog) if self.source.signer == "auto" else self.source.signer
        scenes = []
        for sensor in ("s2", "s1"):
            for item in unsigned.search(cover, year, sensor):
                item = item.clone()
                if signer is not None:
                    signer(item)
                scenes.append(stac_scene(item, sensor))
        return read_scene_chips(scenes, chips, year, halo, self.source.dilate, self.source.resampling)


def stac_scene(item: pystac.Item, sensor: Sensor) -> Scene:
    """The :class:`Scene` of a Sentinel-2 L2A or Sentinel-1 RTC item (asset keys of its provider).

    Raises:
        BadInputError: if the item lacks an asset of a band.
    """
    provider = detect_provider(item.assets)
    specs = S2_BANDS if sensor == "s2" else S1_BANDS
    keys = {s.name: s.asset(provider) for s in specs}
    if sensor == "s2":
        keys[SCL_BAND] = SCL_ASSETS[provider]
    missing = [f"{b} ({k})" for b, k in keys.items() if k not in item.assets]
    if missing:
        raise BadInputError(f"STAC item {item.id} lacks asset(s) for band {', '.join(missing)}")
    layers = tuple(
        Layer(item.assets[k].get_absolute_href() or item.assets[k].href, (b,), (1,)) for b, k in keys.items()
    )
    offset = s2_boa_offset(item.properties) if sensor == "s2" else 0.0
    return Scene(sensor, solar_day(item), layers, "s2_dn" if sensor == "s2" else "s1_linear", offset, offset)


def solar_day(item: pystac.Item) -> pd.Timestamp:
    """The item's local solar day (UTC time + centre longitude / 15 hours), as odc-stac groups items."""
    when = item.datetime or pd.Timestamp(item.properties["start_datetime"]).to_pydatetime()
    lon = 0.0 if item.bbox is None else (item.bbox[0] + item.bbox[2]) / 2
    local = pd.Timestamp(when).tz_convert(None) if pd.Timestamp(when).tzinfo else pd.Timestamp(when)
    return (local + timedelta(hours=lon / 15)).normalize()


@dataclass(frozen=True)
class CompositeChipReader:
    """Chips from any scene source through its ``composite``, one call per window of nearby chips.

    Args:
        source: The scene source.
        window: Side in pixels of the lattice squares whose chips share one composite call.
    """

    source: SceneSource
    window: int = 256

    def read(self, chips: ChipSet, year: int) -> tuple[np.ndarray, np.ndarray]:
        """Composite each window's covering grid and cut the chips out of it."""
        s2, s1 = empty_chips(len(chips), chips.size)
        for index in chips.windows(self.window):
            part = chips.subset(index)
            grid = part.cover()
            composite = self.source.composite(grid, year, force=True)
            values = {v: composite[v].values for v in ("s2", "s1")}
            for j, i in enumerate(index):
                col = round((part.left[j] - grid.transform.c) / chips.resolution)
                row = round((grid.transform.f - part.top[j]) / chips.resolution)
                window = (slice(row, row + chips.size), slice(col, col + chips.size))
                s2[i] = values["s2"][(..., *window)]
                s1[i] = values["s1"][(..., *window)]
        return s2, s1


def chip_reader(source: SceneSource | ChipReader, window: int = 256) -> ChipReader:
    """The fastest reader for a source: stack or STAC readers for those sources, else composites."""
    if isinstance(source, ChipReader):
        return source
    if type(source) is LocalSource and source.kind == "geotiff":
        return StackChipReader(str(source.path), source.dilate, source.resampling)
    if type(source) is StacSource:
        return StacChipReader(source)
    return CompositeChipReader(source, window)


__all__ = [
    "ChipReader",
    "ChipSet",
    "CompositeChipReader",
    "StacChipReader",
    "StackChipReader",
    "chip_reader",
    "empty_chips",
    "read_scene_chips",
]
