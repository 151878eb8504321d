"""Local Sentinel-1/2 stacks for offline use: a folder of GeoTIFFs, or a Zarr/NetCDF scene cube.

**GeoTIFF stack**: a folder of ``<sensor>_<YYYYMMDD>[_<anything>].tif`` files, one per acquisition,
``<sensor>`` being ``s2`` or ``s1``.

- ``s2_*``: bands B2, B3, B4, B5, B6, B7, B8, B8A, B11, B12 as L2A reflectance x 1e4 (0 or the file's
  nodata = no data), optionally with ``SCL`` (then clouds are masked like STAC data). Other Sentinel-2
  bands (B1, B9, B10, AOT, WVP, TCI, CLD, SNW) may be there too and are ignored. The processing baseline
  offset is removed as the file's tags say (:mod:`landprompt.eo.l2a`, ``--l2a-offset``). Any dtype;
  :func:`write_geotiff_stack` writes uint16 tagged ``BOA_ADD_OFFSET=0``. Without SCL there is no cloud
  mask: one warning line says so and composites and cubes record ``cloud_mask: none``.
- ``s1_*``: VV, VH backscatter in dB (NaN or the file's nodata = no data), float32.
- Band descriptions name the bands (any order). Without descriptions, or with descriptions that are
  not band names (stackstac writes a hash into each), the order is taken from the band count, with a
  note: 10 (B2 ... B12), 11 (B2 ... B12, SCL), 12 (the L2A product's B1 ... B8, B8A, B9, B11, B12), 13
  (the L1C order with B10); S1: 2 (VV, VH).
- Files of one sensor and date are tiles of one acquisition: they are fused, first valid pixel in
  file-name order. Any CRS and resolution: files are warped onto the grid (nearest by default).

**Scene cube**: a Zarr store (``.zarr``) or NetCDF file (``.nc``) holding one data variable with dims
(time, band, y, x), float32, NaN = no data; ``band`` names any of the bands above plus ``SCL`` (S1 and S2
acquisitions share the time axis, each NaN on the other's dates); CRS as a CF grid mapping
(``spatial_ref``, as rioxarray writes it).

Both give the same composites as :class:`~landprompt.eo.stac.StacSource` for the same data, and
:func:`write_geotiff_stack` / :func:`write_scene_cube` write any :class:`~landprompt.eo.source.Scenes`
(e.g. fetched once from STAC) in these layouts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import rasterio
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from odc.geo.xr import xr_reproject
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from landprompt.eo.aoi import check_grid, grid_geobox, on_grid
from landprompt.eo.bands import S1_BAND_NAMES, S2_BAND_NAMES, SCL_BAND, SENSOR_BANDS, Sensor, band_spec
from landprompt.eo.l2a import dn_scale, parse_l2a_offset
from landprompt.eo.source import Scenes, SceneSource, no_cloud_mask_note, note_once
from landprompt.errors import BadInputError
from landprompt.geo import Grid, parse_crs, reproject_bounds

STACK_FILE = re.compile(r"^(?P<sensor>s[12])_(?P<date>\d{8})(?:_[^/]*)?\.tiff?$", re.IGNORECASE)
"""File names of a GeoTIFF stack: ``s2_20220110.tif``, ``s1_20220115_T32TMR.tif``."""

CUBE_SUFFIXES = (".zarr", ".nc", ".nc4", ".netcdf")
S2_STACK_BANDS: tuple[str, ...] = (*S2_BAND_NAMES, SCL_BAND)
S2_EXTRA_BANDS: frozenset[str] = frozenset(
    {"B1", "B01", "B9", "B09", "B10", "AOT", "WVP", "TCI", "CLD", "SNW"}
)
"""Sentinel-2 bands a stack file may hold that landprompt does not read."""
S2_ORDERS: dict[int, tuple[str, ...]] = {
    10: S2_BAND_NAMES,
    11: S2_STACK_BANDS,
    12: ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12"),
    13: ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"),
}
"""Band order of an S2 stack file without band names, by its band count."""
S1_ORDERS: dict[int, tuple[str, ...]] = {2: S1_BAND_NAMES}


@dataclass(frozen=True)
class StackFile:
    """One GeoTIFF of a stack."""

    path: Path
    sensor: Sensor
    time: pd.Timestamp


def list_geotiff_stack(folder: str | Path, year: int | None = None) -> list[StackFile]:
    """The stack files of a folder (optionally of one year), sorted by sensor, date and name."""
    files = []
    for path in sorted(Path(folder).iterdir()):
        match = STACK_FILE.match(path.name)
        if match is None:
            continue
        try:
            when = pd.Timestamp(pd.to_datetime(match["date"], format="%Y%m%d"))
        except ValueError:
            raise BadInputError(f"{path.name}: {match['date']} is not a date YYYYMMDD") from None
        if year is None or when.year == year:
            files.append(StackFile(path, cast(Sensor, match["sensor"].lower()), when))
    return files


def stack_band_names(path: Path, sensor: Sensor, descriptions: Sequence[str | None]) -> list[str | None]:
    """Band names of a stack file, None for a band landprompt does not read.

    From its descriptions, else the documented order of its band count (see the module docstring).
    """
    read = S2_STACK_BANDS if sensor == "s2" else S1_BAND_NAMES
    names = [_band_name(d) for d in descriptions] if all(descriptions) else None
    if names is not None and "" not in names:
        wrong = [n for n in names if n is not None and n not in read]
        if wrong:
            raise BadInputError(f"{path}: band(s) {', '.join(wrong)} are not {sensor.upper()} bands")
        return names
    orders = S2_ORDERS if sensor == "s2" else S1_ORDERS
    order = orders.get(len(descriptions))
    if order is None:
        counts = ", ".join(f"{n} ({' '.join(o)})" for n, o in orders.items())
        named = (
            f"whose descriptions {tuple(descriptions)} are not all band names" if any(descriptions) else ""
        )
        raise BadInputError(
            f"{path} has {len(descriptions)} bands {named or 'without band names'}: name them in the "
            f"band descriptions, or store one of the documented orders: {counts}"
        )
    if any(descriptions):
        shown = ", ".join(repr(d) for d in descriptions[:2])
        note_once(
            f"{path.parent}: band descriptions such as {shown} are not band names; reading "
            f"{len(descriptions)}-band files in the documented order {' '.join(order)}"
        )
    return [n if n in read else None for n in order]


def _band_name(description: str | None) -> str | None:
    """The landprompt name of a band description; None for a known band it ignores, "" for no band."""
    key = str(description).strip().upper()
    if key == SCL_BAND:
        return SCL_BAND
    if key in S2_EXTRA_BANDS:
        return None
    try:
        return band_spec(key).name
    except BadInputError:
        return ""


def aligned_window(src: rasterio.io.DatasetReader, grid: Grid) -> Window | None:
    """The window of ``src`` whose pixels are exactly ``grid``'s.

    None for another CRS, pixel size or pixel phase, or a grid reaching beyond the file: those are warped.
    """
    a, b = src.transform, grid.transform
    if src.crs != grid.crs or not np.allclose((a.a, a.b, a.d, a.e), (b.a, b.b, b.d, b.e), rtol=0, atol=1e-9):
        return None
    col, row = (b.c - a.c) / a.a, (b.f - a.f) / a.e
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    col, row = round(col), round(row)
    if col < 0 or row < 0 or col + grid.cols > src.width or row + grid.rows > src.height:
        return None
    return Window(col, row, grid.cols, grid.rows)


def read_geotiff(
    path: str | Path,
    grid: Grid,
    sensor: Sensor,
    resampling: str = "nearest",
    l2a_offset: str | float | None = "auto",
) -> xr.Dataset:
    """One stack GeoTIFF warped onto ``grid``: one float32 (y, x) variable per band, NaN = no data.

    Sentinel-2 reflectance comes out as reflectance x 1e4, the L2A offset removed as ``l2a_offset``
    says (:mod:`landprompt.eo.l2a`); bands landprompt does not read are dropped.

    Raises:
        BadInputError: Naming the file, if it cannot be read or its bands or offset are unclear.
    """
    path = Path(path)
    try:
        with rasterio.open(path) as src:
            return _read_geotiff(src, path, grid, sensor, resampling, parse_l2a_offset(l2a_offset))
    except RasterioError as exc:
        raise BadInputError(f"cannot read {path}: {exc}") from exc


def _read_geotiff(
    src: rasterio.io.DatasetReader,
    path: Path,
    grid: Grid,
    sensor: Sensor,
    resampling: str,
    l2a_offset: float | None,
) -> xr.Dataset:
    if src.crs is None:
        raise BadInputError(f"{path} has no CRS: write one (e.g. with rio.write_crs) before using it")
    names = stack_band_names(path, sensor, src.descriptions)
    indexes = [i + 1 for i, n in enumerate(names) if n is not None]
    kept = [n for n in names if n is not None]
    missing = [b for b in SENSOR_BANDS[sensor] if b not in kept]
    if missing:
        raise BadInputError(
            f"{path} lacks band(s) {', '.join(missing)} (it has {', '.join(kept) or 'none'}): "
            f"an {sensor}_ file holds {' '.join(SENSOR_BANDS[sensor])}"
        )
    floating = np.issubdtype(np.dtype(src.dtypes[0]), np.floating)
    nodata = src.nodata if src.nodata is not None else (np.nan if floating else 0)
    window = aligned_window(src, grid)
    if window is not None:  # the grid is a window of the file's pixels: no warp needed
        raw = src.read(indexes, window=window)
    else:
        with WarpedVRT(
            src,
            crs=grid.crs.to_wkt(),
            transform=grid.transform,
            width=grid.cols,
            height=grid.rows,
            resampling=Resampling[resampling],
            src_nodata=nodata,
            nodata=nodata,
        ) as vrt:
            raw = vrt.read(indexes)
    data = raw.astype(np.float32)
    invalid = ~np.isfinite(data) if np.isnan(nodata) else data == np.float32(nodata)
    if sensor == "s2":  # a reflectance of 0 is no data too
        reflectance = np.array([n != SCL_BAND for n in kept])
        invalid[reflectance] |= data[reflectance] == 0
        scale = dn_scale(src, path, names, l2a_offset).pick([i - 1 for i in indexes])
        data = scale.apply(data, invalid, reflectance.tolist())
    data[invalid] = np.nan
    return xr.Dataset({name: (("y", "x"), band) for name, band in zip(kept, data, strict=True)})


def read_geotiff_stack(
    folder: str | Path,
    grid: Grid,
    year: int | None = None,
    resampling: str = "nearest",
    l2a_offset: str | float | None = "auto",
) -> Scenes:
    """The GeoTIFF stack of a folder read onto ``grid`` (see the module docstring for the layout)."""
    files = list_geotiff_stack(folder, year)
    out: dict[str, xr.Dataset | None] = {"s2": None, "s1": None}
    for sensor in ("s2", "s1"):
        by_time: dict[pd.Timestamp, xr.Dataset] = {}
        for f in (f for f in files if f.sensor == sensor):
            scene = read_geotiff(f.path, grid, f.sensor, resampling, l2a_offset)
            by_time[f.time] = by_time[f.time].combine_first(scene) if f.time in by_time else scene
        if by_time:
            times = sorted(by_time)
            scenes = xr.concat([by_time[t] for t in times], dim="time", join="outer")
            out[sensor] = on_grid(scenes.assign_coords(time=pd.DatetimeIndex(times).as_unit("ns")), grid)
    return Scenes(out["s2"], out["s1"])


def _open_cube(path: Path) -> xr.Dataset:
    """A Zarr/NetCDF scene cube, opened lazily (CF scale/offset attributes decoded by xarray)."""
    try:
        if _is_zarr(path):
            return xr.open_zarr(path, consolidated=False, decode_coords="all")
        return xr.open_dataset(path, decode_coords="all")
    except (OSError, ValueError, KeyError) as exc:
        raise BadInputError(f"cannot open scene cube {path}: {exc}") from exc


def read_scene_cube(
    path: str | Path,
    grid: Grid,
    year: int | None = None,
    resampling: str = "nearest",
    l2a_offset: str | float | None = "auto",
) -> Scenes:
    """A Zarr/NetCDF scene cube read onto ``grid`` (see the module docstring for the layout).

    ``l2a_offset`` ``0`` or ``-1000`` is added to the S2 reflectance bands; ``auto`` takes them as they
    decode (a cube's CF ``add_offset`` / ``scale_factor`` are applied by xarray).
    """
    path = Path(path)
    offset = parse_l2a_offset(l2a_offset)
    ds = _open_cube(path)
    variables = [v for v in ds.data_vars if {"time", "band", "y", "x"} <= set(ds[v].dims)]
    if len(variables) != 1:
        raise BadInputError(
            f"{path} needs exactly one variable with dims (time, band, y, x), found {variables}"
        )
    cube = ds[variables[0]]
    crs = cube.rio.crs or ds.rio.crs
    if crs is None:
        raise BadInputError(f"{path} has no CRS: write a grid mapping (rio.write_crs) into the cube")
    cube = cube.rio.write_crs(crs)
    if year is not None:
        cube = cube.isel(time=np.flatnonzero(pd.DatetimeIndex(cube["time"].values).year == year))
    names = [str(b) for b in cube["band"].values]
    for name in names:
        if name != SCL_BAND:
            band_spec(name)  # raises, naming the known bands
    cube = _crop(cube, grid, parse_crs(crs.to_wkt())).astype(np.float32).load()  # only the grid's part
    warped = xr_reproject(cube, grid_geobox(grid), resampling=resampling, dst_nodata=np.nan)
    out: dict[str, xr.Dataset | None] = {}
    for sensor, allowed in (("s2", S2_STACK_BANDS), ("s1", S1_BAND_NAMES)):
        bands = [n for n in allowed if n in names]
        if not bands or (sensor == "s2" and bands == [SCL_BAND]) or warped.sizes["time"] == 0:
            out[sensor] = None
            continue
        data = warped.sel(band=bands)
        observed = data.sel(band=[b for b in bands if b != SCL_BAND]).notnull().any(["band", "y", "x"])
        scenes = data.isel(time=observed.values).to_dataset(dim="band")  # drop the other sensor's dates
        scenes = scenes.drop_vars("spatial_ref", errors="ignore").transpose("time", "y", "x")
        if sensor == "s2" and offset:
            scenes = scenes.map(lambda v: v if v.name == SCL_BAND else (v + np.float32(offset)).clip(min=1))
        out[sensor] = on_grid(scenes, grid)
    return Scenes(out["s2"], out["s1"])


def _is_zarr(path: Path) -> bool:
    return path.suffix == ".zarr" or (path / "zarr.json").exists() or (path / ".zgroup").exists()


def _crop(cube: xr.DataArray, grid: Grid, crs: Any) -> xr.DataArray:
    """The part of ``cube`` (in ``crs``) that covers the grid, with a 2-pixel margin."""
    left, bottom, right, top = reproject_bounds(grid.bounds, grid.crs, crs)
    x, y = cube["x"].values, cube["y"].values
    mx = 2 * abs(float(x[1] - x[0])) if x.size > 1 else 0.0
    my = 2 * abs(float(y[1] - y[0])) if y.size > 1 else 0.0
    cols = np.flatnonzero((x >= left - mx) & (x <= right + mx))
    rows = np.flatnonzero((y >= bottom - my) & (y <= top + my))
    if cols.size == 0 or rows.size == 0:  # no overlap: a NaN corner warps to an all-NaN grid
        return cube.isel(x=slice(0, 2), y=slice(0, 2)).where(False)
    return cube.isel(x=slice(cols[0], cols[-1] + 1), y=slice(rows[0], rows[-1] + 1))


# --- writers ----------------------------------------------------------------------------------------
def write_geotiff_stack(scenes: Scenes, folder: str | Path) -> list[Path]:
    """Write scenes as a GeoTIFF stack (S2 uint16 nodata 0 with SCL if present; S1 float32 dB, NaN).

    Returns:
        The files written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for sensor, data in (("s2", scenes.s2), ("s1", scenes.s1)):
        if data is None:
            continue
        allowed = S2_STACK_BANDS if sensor == "s2" else S1_BAND_NAMES
        names = [n for n in allowed if n in data.data_vars]
        for t in range(data.sizes["time"]):
            scene = data.isel(time=t)
            array = np.stack([scene[n].values for n in names])
            if sensor == "s2":
                array = np.nan_to_num(np.rint(array), nan=0).astype(np.uint16)
            path = folder / f"{sensor}_{pd.Timestamp(scene['time'].values):%Y%m%d}.tif"
            _write_tif(path, array.astype(np.float32) if sensor == "s1" else array, data, names)
            written.append(path)
    return written


def _write_tif(path: Path, array: np.ndarray, like: xr.Dataset, names: Iterable[str]) -> None:
    profile = {
        "driver": "GTiff",
        "height": array.shape[1],
        "width": array.shape[2],
        "count": array.shape[0],
        "dtype": array.dtype.name,
        "crs": like.rio.crs,
        "transform": like.rio.transform(),
        "nodata": 0 if array.dtype == np.uint16 else np.nan,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)
        for i, name in enumerate(names, start=1):
            dst.set_band_description(i, name)
        if array.dtype == np.uint16:  # S2: the baseline offset is already removed
            dst.update_tags(BOA_ADD_OFFSET="0")


def write_scene_cube(scenes: Scenes, path: str | Path) -> Path:
    """Write scenes as one Zarr (``.zarr``) or NetCDF (other suffixes) scene cube; returns ``path``."""
    path = Path(path)
    parts = [d for d in (scenes.s2, scenes.s1) if d is not None]
    if not parts:
        raise BadInputError("no scenes to write")
    crs = parts[0].rio.crs
    arrays = [d.drop_vars("spatial_ref", errors="ignore").to_dataarray(dim="band") for d in parts]
    cube = xr.concat(arrays, dim="band", join="outer").astype(np.float32).transpose("time", "band", "y", "x")
    out = cube.to_dataset(name="data").rio.write_crs(crs)
    out["data"].attrs.update(units="S2 reflectance x 1e4, SCL class, S1 dB")
    if path.suffix == ".zarr":
        out.to_zarr(path, mode="w", consolidated=False)
    else:
        out.to_netcdf(path)
    return path


# --- source -----------------------------------------------------------------------------------------
@dataclass
class LocalSource(SceneSource):
    """Monthly composites from a local GeoTIFF stack or scene cube.

    Args:
        path: A stack folder, a ``.zarr`` store or a NetCDF file.
        dilate: Pixels by which SCL masks grow.
        resampling: Warp resampling onto the grid (``nearest`` matches odc-stac's default).
    """

    path: str | Path
    dilate: int = 0
    resampling: str = "nearest"
    l2a_offset: str = "auto"

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.path.exists():
            raise BadInputError(f"local stack {self.path} does not exist")
        parse_l2a_offset(self.l2a_offset)

    @property
    def label(self) -> str:
        """The stack's path."""
        return str(self.path)

    @property
    def kind(self) -> str:
        """``"cube"`` for a Zarr/NetCDF scene cube, ``"geotiff"`` for a stack folder."""
        path = Path(self.path)
        if _is_zarr(path) or (path.is_file() and path.suffix.lower() in CUBE_SUFFIXES):
            return "cube"
        if path.is_dir() and list_geotiff_stack(path):
            return "geotiff"
        raise BadInputError(
            f"{path} is neither a folder of s2_YYYYMMDD.tif / s1_YYYYMMDD.tif files nor a .zarr/.nc cube"
        )

    def scenes(self, grid: Grid, year: int, *, force: bool = False) -> Scenes:
        """The year's scenes read onto ``grid``.

        Raises:
            BadInputError: If the stack holds no scene of ``year`` (naming the dates it holds).
        """
        check_grid(grid, force=force)
        self._check_year(year)
        if self.kind == "cube":
            return read_scene_cube(self.path, grid, year, self.resampling, self.l2a_offset)
        return read_geotiff_stack(self.path, grid, year, self.resampling, self.l2a_offset)

    def dates(self) -> list[pd.Timestamp]:
        """Acquisition dates of the stack, sorted."""
        if self.kind == "cube":
            with _open_cube(Path(self.path)) as ds:
                return sorted(pd.DatetimeIndex(ds["time"].values))
        return sorted({f.time for f in list_geotiff_stack(self.path)})

    def cloud_mask(self, year: int) -> str:
        """``"SCL"`` when the year's S2 files carry an SCL band, else ``"none"`` (with one warning line)."""
        if self.kind == "cube":
            with _open_cube(Path(self.path)) as ds:
                names = {str(b) for b in ds["band"].values} if "band" in ds.coords else set()
            has_scl = SCL_BAND in names
        else:
            has_scl = any(
                SCL_BAND in _file_band_names(f)
                for f in list_geotiff_stack(self.path, year)
                if f.sensor == "s2"
            )
        if not has_scl:
            no_cloud_mask_note(self.label, year)
        return "SCL" if has_scl else "none"

    def check_coverage(self, grid: Grid, year: int) -> None:
        """Raise if no scene of ``year`` overlaps ``grid``, naming the dates found."""
        self._check_year(year)
        if self.kind == "cube":
            with _open_cube(Path(self.path)) as ds:
                crs = ds.rio.crs
                x, y = ds["x"].values, ds["y"].values
                spans = [(float(x.min()), float(y.min()), float(x.max()), float(y.max()), crs)]
        else:
            spans = []
            for f in list_geotiff_stack(self.path, year):
                try:
                    with rasterio.open(f.path) as src:
                        spans.append((*src.bounds, src.crs))
                except RasterioError as exc:
                    raise BadInputError(f"cannot read {f.path}: {exc}") from exc
        left, bottom, right, top = grid.bounds
        for x0, y0, x1, y1, crs in spans:
            if crs is None:
                continue
            a, b, c, d = reproject_bounds((x0, y0, x1, y1), crs, grid.crs)
            if a < right and c > left and b < top and d > bottom:
                return
        dates = [t for t in self.dates() if t.year == year]
        raise BadInputError(
            f"no scene of {self.path} overlaps the area {tuple(round(v, 4) for v in grid.bbox)}: its scenes "
            f"of {year} ({_dates_text(dates)}) lie elsewhere"
        )

    def _check_year(self, year: int) -> None:
        dates = self.dates()
        if not any(t.year == year for t in dates):
            raise BadInputError(
                f"{self.path} holds no scene of {year}; the dates found are {_dates_text(dates)}: "
                "pick a year it covers"
            )


def _dates_text(dates: Sequence[pd.Timestamp], shown: int = 8) -> str:
    """Dates as ``2021-01-10, 2021-02-03 (+5 more)``, or ``none``."""
    if not dates:
        return "none"
    text = ", ".join(f"{t:%Y-%m-%d}" for t in dates[:shown])
    return text + (f" (+{len(dates) - shown} more)" if len(dates) > shown else "")


def _file_band_names(f: StackFile) -> list[str | None]:
    """The band names of a stack file (header only)."""
    try:
        with rasterio.open(f.path) as src:
            return stack_band_names(f.path, f.sensor, src.descriptions)
    except RasterioError as exc:
        raise BadInputError(f"cannot read {f.path}: {exc}") from exc
