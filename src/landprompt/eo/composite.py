"""Monthly median composites of Sentinel-1/2 scenes for one year.

Layout of a composite (the Dataset every source returns, :func:`monthly_composites`):

============  ==============================  =========  ==============================================
variable      dims                            dtype      values
============  ==============================  =========  ==============================================
``s2``        time (12), s2_band (10), y, x   float32    reflectance x 1e4, bands B2 ... B12; NaN missing
``s1``        time (12), s1_band (2), y, x    float32    backscatter in dB, VV, VH; NaN missing
============  ==============================  =========  ==============================================

``time`` holds the first day of each month of the year; ``y``, ``x`` the grid's pixel centres, and
``spatial_ref`` its CRS (rioxarray reads it). A month with no valid observation of a pixel is NaN, so
validity is ``~isnan``; an all-cloud year is all NaN, never an error (the encoder masks missing steps).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from landprompt.eo.aoi import on_grid
from landprompt.eo.bands import S1_BAND_NAMES, S2_BAND_NAMES, Sensor, band_specs
from landprompt.errors import BadInputError
from landprompt.geo import Grid

MONTHS = 12
UNITS: dict[Sensor, str] = {"s2": "reflectance x 1e4", "s1": "dB"}


def month_starts(year: int) -> pd.DatetimeIndex:
    """The first day of each month of ``year`` (the composites' time coordinate)."""
    return pd.date_range(f"{year:04d}-01-01", periods=MONTHS, freq="MS").as_unit("ns")


def monthly_median(scenes: xr.Dataset, year: int) -> xr.Dataset:
    """Per-pixel median of each month's scenes, NaN skipped, over the 12 months of ``year``.

    Args:
        scenes: Variables with a ``time`` dimension (one step per scene), NaN where not observed.
        year: Calendar year; scenes of other years are ignored.

    Returns:
        The same variables with ``time`` = the 12 month starts; months without any valid value are NaN.
    """
    if "time" not in scenes.dims:
        raise BadInputError(f"scenes need a 'time' dimension, got dims {tuple(scenes.dims)}")
    months = month_starts(year)
    times = pd.DatetimeIndex(scenes["time"].values).as_unit("ns")
    scenes = scenes.assign_coords(time=times).isel(time=np.flatnonzero(times.year == year)).sortby("time")
    if scenes.sizes["time"] == 0:
        return scenes.reindex(time=months)  # all NaN
    by_month = scenes.resample(time="1MS")
    lazy = any(var.chunks is not None for var in scenes.data_vars.values())
    monthly = by_month.median(skipna=True) if lazy else by_month.reduce(nanmedian)
    return monthly.reindex(time=months)


SORTING_NETWORK_MAX = 16
"""Longest axis that :func:`nanmedian` sorts with element-wise min/max passes (longer: ``np.sort``)."""


def nanmedian(values: np.ndarray, axis: int | tuple[int, ...] | None = None) -> np.ndarray:
    """``np.nanmedian`` along one axis, vectorised: sort (NaN last), pick the middle valid values.

    numpy's own nanmedian over a short axis goes through masked arrays and warns once per all-NaN
    pixel, about 50 times slower on scene stacks; this gives the same values (NaN where nothing is valid).
    A month holds a few scenes, so the axis is short: up to :data:`SORTING_NETWORK_MAX` steps it is
    sorted by odd-even transposition (element-wise min/max over whole images) instead of ``np.sort``,
    whose cost per pixel dominates for a handful of values.
    """
    if not isinstance(axis, int):
        raise ValueError(f"nanmedian reduces along one axis, got {axis!r}")
    count = np.sum(~np.isnan(values), axis=axis)
    low_rank, high_rank = np.maximum((count - 1) // 2, 0), count // 2
    if values.shape[axis] <= SORTING_NETWORK_MAX:
        ordered = _sort_steps([np.where(np.isnan(v), np.inf, v) for v in np.moveaxis(values, axis, 0)])
        low, high = _pick(ordered, low_rank), _pick(ordered, high_rank)
    else:
        ordered_array = np.sort(values, axis=axis)
        low = np.squeeze(np.take_along_axis(ordered_array, np.expand_dims(low_rank, axis), axis), axis)
        high = np.squeeze(np.take_along_axis(ordered_array, np.expand_dims(high_rank, axis), axis), axis)
    median = (low + high) / np.asarray(2, dtype=values.dtype)
    return np.where(count > 0, median, np.nan).astype(values.dtype)


def _sort_steps(steps: list[np.ndarray]) -> list[np.ndarray]:
    """Sort equally shaped arrays element-wise (odd-even transposition: len(steps) passes of min/max)."""
    n = len(steps)
    for start in range(n):
        for i in range(start % 2, n - 1, 2):
            steps[i], steps[i + 1] = np.minimum(steps[i], steps[i + 1]), np.maximum(steps[i], steps[i + 1])
    return steps


def _pick(ordered: list[np.ndarray], rank: np.ndarray) -> np.ndarray:
    """Element-wise ``ordered[rank]`` (``np.choose`` without its per-element dispatch)."""
    out = ordered[0].copy()
    for r in range(1, len(ordered)):
        np.copyto(out, ordered[r], where=rank == r)
    return out


def stack_bands(scenes: xr.Dataset, sensor: Sensor, bands: Sequence[str] | None = None) -> xr.DataArray:
    """Stack one variable per band into a float32 DataArray with a ``<sensor>_band`` dimension.

    Raises:
        BadInputError: if a band is missing from ``scenes``.
    """
    names = [s.name for s in band_specs(bands or _default_bands(sensor), sensor)]
    missing = [b for b in names if b not in scenes.data_vars]
    if missing:
        found = ", ".join(map(str, scenes.data_vars)) or "none"
        raise BadInputError(f"{sensor.upper()} data lacks band(s) {', '.join(missing)}; it has {found}")
    dim = f"{sensor}_band"
    stacked = xr.concat(
        [scenes[b].astype(np.float32) for b in names], dim=dim, coords="minimal", join="exact"
    )
    stacked = stacked.assign_coords({dim: names}).transpose("time", dim, "y", "x")
    return stacked.chunk({dim: -1}) if stacked.chunks is not None else stacked  # one dask chunk of bands


def monthly_composites(
    s2: xr.Dataset | None,
    s1: xr.Dataset | None,
    year: int,
    grid: Grid | None = None,
    s2_bands: Sequence[str] | None = None,
    s1_bands: Sequence[str] | None = None,
) -> xr.Dataset:
    """Monthly median composites of prepared scenes, in the layout of this module's docstring.

    Args:
        s2: Sentinel-2 scenes, one variable per band (reflectance x 1e4, clouds already NaN); None: no data.
        s1: Sentinel-1 scenes, one variable per band in dB; None: no data.
        year: Calendar year of the composites.
        grid: The grid the scenes are on: sets exact coordinates and the CRS. Needed when both are None.
        s2_bands: Sentinel-2 bands to keep (default all 10).
        s1_bands: Sentinel-1 bands to keep (default VV, VH).
    """
    present = [d for d in (s2, s1) if d is not None]
    if grid is None and not present:
        raise BadInputError("monthly_composites needs scenes or a grid")
    shape = grid.shape if grid is not None else (present[0].sizes["y"], present[0].sizes["x"])
    inputs: tuple[tuple[Sensor, xr.Dataset | None, Sequence[str] | None], ...] = (
        ("s2", s2, s2_bands),
        ("s1", s1, s1_bands),
    )
    variables = {}
    for sensor, scenes, bands in inputs:
        if scenes is None:
            composite = _missing(sensor, bands, year, shape)
        else:
            stacked = stack_bands(scenes, sensor, bands)
            composite = monthly_median(stacked.to_dataset(name=sensor), year)[sensor]
        variables[sensor] = composite.astype(np.float32)
        variables[sensor].attrs = {"units": UNITS[sensor]}  # only these: no loader's attrs leak through
    out = xr.Dataset(variables).drop_vars("spatial_ref", errors="ignore")
    out.attrs = {"year": year, "composite": "monthly median"}
    return on_grid(out, grid) if grid is not None else out


def _default_bands(sensor: Sensor) -> tuple[str, ...]:
    return S2_BAND_NAMES if sensor == "s2" else S1_BAND_NAMES


def _missing(sensor: Sensor, bands: Sequence[str] | None, year: int, shape: tuple[int, int]) -> xr.DataArray:
    """All-NaN composite of a sensor without data."""
    names = [s.name for s in band_specs(bands or _default_bands(sensor), sensor)]
    data = np.full((MONTHS, len(names), *shape), np.nan, dtype=np.float32)
    return xr.DataArray(
        data,
        dims=("time", f"{sensor}_band", "y", "x"),
        coords={"time": month_starts(year), f"{sensor}_band": names},
    )
