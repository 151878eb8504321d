"""Band specifications, units and normalisation of the Sentinel-1 and Sentinel-2 inputs.

Every satellite array in landprompt uses the band *names* below (``B2`` ... ``B12``, ``VV``, ``VH``),
whatever a catalog calls its assets:

- Sentinel-2 L2A: surface reflectance x 1e4 (a DN of 0 is no data). Since processing baseline 04.00
  (25 January 2022, and every Collection-1 reprocessing) the DNs carry a +1000 offset
  (``BOA_ADD_OFFSET = -1000``); :func:`s2_boa_offset` says, from an item's properties, what to add.
- Sentinel-1: backscatter VV, VH in dB. Catalogs serve linear power (Planetary Computer
  ``sentinel-1-rtc``), converted with :func:`linear_to_db`.
- Model inputs are normalised Presto-style, ``(x + shift) / div`` (:func:`normalize`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, TypeVar

import numpy as np
import xarray as xr

from landprompt.errors import BadInputError

Sensor = Literal["s2", "s1"]
Provider = Literal["planetary-computer", "earth-search"]
ArrayT = TypeVar("ArrayT", np.ndarray, xr.DataArray, xr.Dataset)

S2_NODATA = 0
"""Sentinel-2 DN that marks no data (before and after the baseline offset)."""

S2_BASELINE_OFFSET = -1000.0
"""``BOA_ADD_OFFSET`` of Sentinel-2 L2A processing baselines >= 04.00, in DN (reflectance x 1e4)."""


@dataclass(frozen=True)
class BandSpec:
    """One input band.

    Args:
        name: landprompt band name (``B2``, ``VV``, ...).
        sensor: ``"s2"`` or ``"s1"``.
        resolution: Native pixel size in metres.
        wavelength_nm: Central wavelength (Sentinel-2A) in nanometres; None for radar.
        assets: STAC asset key per provider.
        units: Units of the values landprompt keeps.
        shift: Normalisation shift, ``(x + shift) / div``.
        div: Normalisation divisor.
    """

    name: str
    sensor: Sensor
    resolution: float
    wavelength_nm: float | None
    assets: Mapping[Provider, str]
    units: str
    shift: float
    div: float

    def asset(self, provider: Provider) -> str:
        """STAC asset key of this band in a provider's catalog."""
        return self.assets[provider]


def _s2(name: str, resolution: float, wavelength: float, pc: str, es: str) -> BandSpec:
    assets: Mapping[Provider, str] = MappingProxyType({"planetary-computer": pc, "earth-search": es})
    return BandSpec(name, "s2", resolution, wavelength, assets, "reflectance x 1e4", 0.0, 10_000.0)


def _s1(name: str) -> BandSpec:
    key = name.lower()
    assets: Mapping[Provider, str] = MappingProxyType({"planetary-computer": key, "earth-search": key})
    return BandSpec(name, "s1", 10.0, None, assets, "dB", 25.0, 25.0)


S2_BANDS: tuple[BandSpec, ...] = (
    _s2("B2", 10, 492.4, "B02", "blue"),
    _s2("B3", 10, 559.8, "B03", "green"),
    _s2("B4", 10, 664.6, "B04", "red"),
    _s2("B5", 20, 704.1, "B05", "rededge1"),
    _s2("B6", 20, 740.5, "B06", "rededge2"),
    _s2("B7", 20, 782.8, "B07", "rededge3"),
    _s2("B8", 10, 832.8, "B08", "nir"),
    _s2("B8A", 20, 864.7, "B8A", "nir08"),
    _s2("B11", 20, 1613.7, "B11", "swir16"),
    _s2("B12", 20, 2202.4, "B12", "swir22"),
)
"""The 10 Sentinel-2 L2A bands, in the order of every ``s2`` array."""

S1_BANDS: tuple[BandSpec, ...] = (_s1("VV"), _s1("VH"))
"""The Sentinel-1 polarisations, in the order of every ``s1`` array."""

S2_BAND_NAMES: tuple[str, ...] = tuple(b.name for b in S2_BANDS)
S1_BAND_NAMES: tuple[str, ...] = tuple(b.name for b in S1_BANDS)

SCL_BAND = "SCL"
"""Name of the Sentinel-2 scene classification band (20 m, uint8; see :mod:`landprompt.eo.masks`)."""

SCL_ASSETS: Mapping[Provider, str] = MappingProxyType({"planetary-computer": "SCL", "earth-search": "scl"})

BANDS: Mapping[str, BandSpec] = MappingProxyType({b.name: b for b in (*S2_BANDS, *S1_BANDS)})
"""Every known band by name."""

SENSOR_BANDS: Mapping[Sensor, tuple[str, ...]] = MappingProxyType({"s2": S2_BAND_NAMES, "s1": S1_BAND_NAMES})


def band_spec(name: str) -> BandSpec:
    """The spec of a band by name (case-insensitive, ``B02`` accepted for ``B2``).

    Raises:
        BadInputError: naming the known bands, if ``name`` is not one.
    """
    key = name.strip().upper()
    if key.startswith("B0"):
        key = "B" + key[2:]
    if key not in BANDS:
        raise BadInputError(f"unknown band {name!r}: known bands are {', '.join(BANDS)}")
    return BANDS[key]


def band_specs(names: Iterable[str], sensor: Sensor | None = None) -> tuple[BandSpec, ...]:
    """Specs of several bands, optionally checking they all belong to ``sensor``."""
    specs = tuple(band_spec(n) for n in names)
    if not specs:
        raise BadInputError("no bands given")
    if sensor is not None:
        wrong = [s.name for s in specs if s.sensor != sensor]
        if wrong:
            known = ", ".join(SENSOR_BANDS[sensor])
            raise BadInputError(f"bands {', '.join(wrong)} are not {sensor.upper()} bands: use {known}")
    return specs


PROVIDERS: tuple[Provider, ...] = ("planetary-computer", "earth-search")


def detect_provider(asset_keys: Iterable[str]) -> Provider:
    """Which provider's asset naming a set of STAC asset keys follows (``B02`` vs ``blue``).

    Sentinel-1 keys (``vv``, ``vh``) are the same everywhere; the default is Planetary Computer.
    """
    keys = set(asset_keys)
    for provider in PROVIDERS:
        if SCL_ASSETS[provider] in keys or any(b.asset(provider) in keys for b in S2_BANDS):
            return provider
    return "planetary-computer"


# --- Sentinel-2 processing baseline ----------------------------------------------------------------
_BASELINE_KEYS = ("s2:processing_baseline", "sentinel:processing_baseline")
_OFFSET_APPLIED_KEYS = ("earthsearch:boa_offset_applied", "sentinel:boa_offset_applied")


def s2_boa_offset(properties: Mapping[str, Any]) -> float:
    """The value to add to a Sentinel-2 L2A item's DNs to get reflectance x 1e4.

    The rule, from the item's properties:

    1. ``earthsearch:boa_offset_applied`` (or Earth Search v0's ``sentinel:boa_offset_applied``) true:
       the catalog already removed the offset, add 0.
    2. otherwise a processing baseline (``s2:processing_baseline``, or ``sentinel:processing_baseline``)
       >= 04.00: add ``-1000`` (Planetary Computer serves the original DNs, so every baseline >= 04.00 item
       there takes this branch).
    3. no baseline given, or an older one: add 0.
    """
    for key in _OFFSET_APPLIED_KEYS:
        if properties.get(key) is True:
            return 0.0
    for key in _BASELINE_KEYS:
        value = properties.get(key)
        if value is not None:
            try:
                baseline = float(value)
            except (TypeError, ValueError):
                raise BadInputError(f"{key} {value!r} is not a processing baseline such as '04.00'") from None
            return S2_BASELINE_OFFSET if baseline >= 4.0 else 0.0
    return 0.0


def harmonize_s2(dn: xr.DataArray, offset: float) -> xr.DataArray:
    """Sentinel-2 DNs to float32 reflectance x 1e4: ``dn + offset``, NaN where ``dn`` is 0 (no data).

    Reflectance <= 0 after the offset (possible over dark water since baseline 04.00) becomes 1, so a
    valid pixel never takes the no-data value 0 of the uint16 formats.
    """
    value = dn.astype(np.float32)
    valid = (value != S2_NODATA) & np.isfinite(value)
    return (value + np.float32(offset)).clip(min=1).where(valid)


# --- Sentinel-1 units ------------------------------------------------------------------------------
def linear_to_db(x: ArrayT) -> ArrayT:
    """Backscatter from linear power to dB, ``10 log10(x)``; non-positive or non-finite values become NaN.

    Floating inputs keep their precision (float32 stays float32); others become float32.
    """
    if isinstance(x, xr.Dataset):
        return x.map(linear_to_db)
    values = x if isinstance(x, xr.DataArray) else np.asarray(x)
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float32)
    positive = (values > 0) & np.isfinite(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        db = 10 * np.log10(values.where(positive) if isinstance(values, xr.DataArray) else values)
    if isinstance(db, xr.DataArray):
        return db.astype(values.dtype, copy=False)  # type: ignore[return-value]
    return np.where(positive, db, np.nan).astype(values.dtype, copy=False)  # type: ignore[return-value]


def db_to_linear(x: ArrayT) -> ArrayT:
    """Backscatter from dB to linear power, ``10 ** (x / 10)``."""
    if isinstance(x, xr.Dataset):
        return x.map(db_to_linear)
    return 10 ** (x / 10)


# --- normalisation ---------------------------------------------------------------------------------
def normalize(x: ArrayT, bands: Sequence[str] | None = None, axis: int = -1) -> ArrayT:
    """Presto normalisation ``(x + shift) / div`` per band; integers become float32.

    Args:
        x: A Dataset with one variable per band name; a DataArray with a band dimension (``band`` or
            ``<sensor>_band``) whose coordinate names the bands; or an array whose ``axis`` runs over
            ``bands``.
        bands: Band names along ``axis`` (arrays only).
        axis: Band axis of an array.
    """
    if isinstance(x, xr.Dataset):
        return x.map(lambda v: _scale(v, (band_spec(str(v.name)),), None))
    if isinstance(x, xr.DataArray):
        dims = [d for d in x.dims if d == "band" or str(d).endswith("_band")]
        if len(dims) != 1:
            raise BadInputError(f"normalize needs one 'band' or '<sensor>_band' dimension, not {x.dims}")
        specs = band_specs(str(b) for b in x[dims[0]].values)
        return _scale(x, specs, x.get_axis_num(dims[0]))
    if bands is None:
        raise BadInputError("normalize needs the band names of an array")
    array = np.asarray(x)
    specs = band_specs(bands)
    if array.shape[axis] != len(specs):
        raise BadInputError(f"axis {axis} has {array.shape[axis]} values but {len(specs)} bands were named")
    return _scale(array, specs, axis)


def _scale(x: Any, specs: Sequence[BandSpec], axis: int | None) -> Any:
    """``(x + shift) / div`` with the specs' constants broadcast along ``axis`` (None: scalars)."""
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float32)
    shift = np.array([s.shift for s in specs], dtype)
    div = np.array([s.div for s in specs], dtype)
    if axis is None:
        shift, div = shift[0], div[0]
    else:
        shape = [1] * x.ndim
        shape[axis] = len(specs)
        shift, div = shift.reshape(shape), div.reshape(shape)
    return ((x.astype(dtype) + shift) / div).astype(dtype)
