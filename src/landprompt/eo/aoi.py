"""The AOI grid as the satellite loaders see it: checks and the odc-geo :class:`GeoBox`.

Every loader reads onto a :class:`~landprompt.geo.Grid` pixel for pixel, so composites of the same grid
from any source line up exactly.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from odc.geo.geobox import GeoBox

from landprompt.errors import BadInputError
from landprompt.geo import Grid

MAX_PIXELS = 10**8
"""Largest grid (rows x cols) loaded in one call without ``force=True``: 10^8 pixels is 100 x 100 km at
10 m, about 90 GB of monthly S1+S2 float32. Europe-wide runs go chunk by chunk."""


def check_grid(grid: Grid, force: bool = False, max_pixels: int = MAX_PIXELS) -> Grid:
    """Return ``grid`` if satellite data can be loaded on it, else raise :class:`BadInputError`.

    The CRS must be projected in metres (a UTM zone, EPSG:3035, ...), and the grid at most
    ``max_pixels`` pixels unless ``force`` is set.
    """
    crs = grid.crs
    units = {axis.unit_name for axis in crs.axis_info}
    if not crs.is_projected or not units <= {"metre", "meter"}:
        name = crs.to_string() if crs.to_epsg() is None else f"EPSG:{crs.to_epsg()}"
        raise BadInputError(
            f"grid CRS {name} is not projected in metres: use a UTM zone or EPSG:3035 for Sentinel data"
        )
    pixels = grid.rows * grid.cols
    if pixels > max_pixels and not force:
        raise BadInputError(
            f"grid of {grid.rows} x {grid.cols} = {pixels:.3g} pixels is over {max_pixels:.0e}: "
            "split it into chunks, or pass force=True"
        )
    return grid


def grid_geobox(grid: Grid) -> GeoBox:
    """The odc-geo GeoBox with the grid's CRS, transform and shape (same pixels, same order)."""
    return GeoBox(grid.shape, grid.transform, grid.crs.to_wkt())


def grid_coords(grid: Grid) -> dict[str, xr.DataArray]:
    """The ``y``, ``x`` pixel-centre coordinates every composite carries."""
    return {
        "y": xr.DataArray(grid.y_coords(), dims="y", attrs={"units": "metre", "axis": "Y"}),
        "x": xr.DataArray(grid.x_coords(), dims="x", attrs={"units": "metre", "axis": "X"}),
    }


def on_grid(data: xr.Dataset, grid: Grid) -> xr.Dataset:
    """Give data read onto ``grid`` the grid's exact ``y``/``x`` coordinates and CRS.

    Raises:
        BadInputError: if the data's y, x shape is not the grid's.
    """
    shape = (data.sizes.get("y"), data.sizes.get("x"))
    if shape != grid.shape:
        raise BadInputError(f"data of y, x shape {shape} does not match the grid {grid.shape}")
    coords = grid_coords(grid)
    tolerance = 1e-3 * min(grid.resolution)
    for name in ("x", "y"):
        if name in data.coords and not np.allclose(data[name].values, coords[name].values, atol=tolerance):
            raise BadInputError(f"data {name} coordinates do not match the grid's")
    data = data.drop_vars("spatial_ref", errors="ignore").assign_coords(coords)
    data = data.assign_coords(spatial_ref=xr.Variable((), 0, attrs=dict(_spatial_ref_attrs(grid))))
    for var in data.data_vars.values():
        var.encoding["grid_mapping"] = "spatial_ref"
    return data


@lru_cache(maxsize=256)
def _spatial_ref_attrs(grid: Grid) -> tuple[tuple[str, object], ...]:
    """The CF ``spatial_ref`` attributes (rioxarray's) of a grid (CRS and GeoTransform), computed once."""
    template = xr.Dataset(coords={"y": [0.5], "x": [0.5]})
    ref = template.rio.write_crs(grid.crs.to_wkt()).rio.write_transform(grid.transform)["spatial_ref"]
    return tuple(ref.attrs.items())
