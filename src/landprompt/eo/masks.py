"""Sentinel-2 cloud, shadow and snow masks from the L2A scene classification (SCL).

SCL classes (Sen2Cor): 0 no data, 1 saturated or defective, 2 dark area pixels, 3 cloud shadows,
4 vegetation, 5 not vegetated, 6 water, 7 unclassified, 8 cloud medium probability, 9 cloud high
probability, 10 thin cirrus, 11 snow or ice.

A pixel is *invalid* when its class is in :data:`SCL_INVALID` (0, 1, 3, 8, 9, 10, 11) or is not a
class at all (NaN, > 11). Dark areas (2) and unclassified pixels (7) stay valid: both are common on
clear ground (dark soils, terrain shade, field edges) and dropping them loses far more good data than
it saves. Invalid areas can be grown by ``dilate`` pixels (a square of side ``2 * dilate + 1``, so a
pixel is dropped within Chebyshev distance ``dilate`` of an invalid one) to catch cloud edges that
Sen2Cor misses.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum
from typing import Any, TypeVar

import dask.array as dsa
import numpy as np
import xarray as xr
from scipy import ndimage

from landprompt.eo.bands import SCL_BAND
from landprompt.errors import BadInputError

MaskT = TypeVar("MaskT", np.ndarray, xr.DataArray)


class SCL(IntEnum):
    """Sentinel-2 L2A scene classification classes."""

    NO_DATA = 0
    SATURATED_OR_DEFECTIVE = 1
    DARK_AREA = 2
    CLOUD_SHADOW = 3
    VEGETATION = 4
    NOT_VEGETATED = 5
    WATER = 6
    UNCLASSIFIED = 7
    CLOUD_MEDIUM_PROBABILITY = 8
    CLOUD_HIGH_PROBABILITY = 9
    THIN_CIRRUS = 10
    SNOW_OR_ICE = 11


SCL_INVALID: frozenset[int] = frozenset(
    {
        SCL.NO_DATA,
        SCL.SATURATED_OR_DEFECTIVE,
        SCL.CLOUD_SHADOW,
        SCL.CLOUD_MEDIUM_PROBABILITY,
        SCL.CLOUD_HIGH_PROBABILITY,
        SCL.THIN_CIRRUS,
        SCL.SNOW_OR_ICE,
    }
)
"""SCL classes masked out by default: no data, defective, cloud shadow, clouds, cirrus, snow."""


def scl_valid(scl: MaskT, invalid: Iterable[int] = SCL_INVALID, dilate: int = 0) -> MaskT:
    """Boolean mask, True where an SCL pixel is usable (clear ground or water).

    Args:
        scl: SCL classes; the last two axes (or the ``y``, ``x`` dims) are the image. NumPy, dask or
            xarray (lazy arrays stay lazy).
        invalid: Classes to mask out.
        dilate: Grow the invalid areas by this many pixels (0: no dilation).

    Returns:
        The mask, same type and shape as ``scl``.
    """
    if dilate < 0:
        raise BadInputError(f"dilate must be >= 0 pixels, got {dilate}")
    classes = np.array(sorted({int(c) for c in invalid}), dtype=np.int64)
    if isinstance(scl, xr.DataArray):
        if scl.dims[-2:] != ("y", "x"):
            scl = scl.transpose(..., "y", "x")
        valid = xr.apply_ufunc(
            _valid_array, scl, kwargs={"classes": classes, "dilate": dilate}, dask="allowed", keep_attrs=False
        )
        return valid.rename(None)
    return _valid_array(scl, classes, dilate)


def _valid_array(scl: Any, classes: np.ndarray, dilate: int) -> Any:
    """NumPy/dask core of :func:`scl_valid`."""
    invalid = ~((scl >= 0) & (scl <= max(SCL)))  # not a class (NaN compares False)
    for c in classes:
        invalid = invalid | (scl == c)
    if dilate:
        invalid = dilate_mask(invalid, dilate)
    return ~invalid


def dilate_mask(mask: Any, pixels: int) -> Any:
    """Grow the True areas of a boolean mask by ``pixels`` (square element) over its last two axes.

    Dask arrays are dilated block-wise with a ``pixels`` overlap, so the result does not depend on chunks.
    """
    if pixels <= 0:
        return mask
    if isinstance(mask, dsa.Array):
        depth = {mask.ndim - 2: pixels, mask.ndim - 1: pixels}
        return mask.map_overlap(dilate_mask, pixels=pixels, depth=depth, boundary=False, dtype=bool)
    structure = np.zeros((3,) * mask.ndim, dtype=bool)
    structure[(1,) * (mask.ndim - 2) + (slice(None), slice(None))] = True
    return ndimage.binary_dilation(np.asarray(mask, dtype=bool), structure=structure, iterations=pixels)


def mask_scenes(
    scenes: xr.Dataset, dilate: int = 0, invalid: Iterable[int] = SCL_INVALID, band: str = SCL_BAND
) -> xr.Dataset:
    """Sentinel-2 scenes with invalid SCL pixels set to NaN and the SCL variable dropped.

    Scenes without an SCL variable are returned unchanged (taken as already masked).
    """
    if band not in scenes.data_vars:
        return scenes
    valid = scl_valid(scenes[band], invalid=invalid, dilate=dilate)
    return apply_mask(scenes.drop_vars(band), valid)


def apply_mask(data: xr.Dataset, valid: xr.DataArray) -> xr.Dataset:
    """Set every variable of ``data`` to NaN where ``valid`` is False (integers become float32)."""
    return data.map(lambda v: _as_float(v).where(valid))


def _as_float(v: xr.DataArray) -> xr.DataArray:
    return v if np.issubdtype(v.dtype, np.floating) else v.astype(np.float32)
