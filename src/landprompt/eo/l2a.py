"""How a local Sentinel-2 L2A file's numbers become reflectance x 1e4: offset and scale tags, baselines.

Since processing baseline 04.00 an L2A DN is reflectance x 1e4 **+ 1000** (``BOA_ADD_OFFSET = -1000``).
A local GeoTIFF says how to undo that in one of several ways; ``--l2a-offset auto`` (the default) takes
the first that a file has:

1. GDAL offset/scale tags on its bands (``value = DN * scale + offset``, as rasterio's ``offsets`` and
   ``scales`` read them). A scale of 1 means the tags are in DN; a scale below 0.01 means they give
   reflectance (e.g. scale 1e-4, offset -0.1), which is multiplied by 1e4.
2. A ``BOA_ADD_OFFSET`` dataset tag, in DN (landprompt's own stacks carry ``BOA_ADD_OFFSET=0``).
3. The processing baseline, from a dataset tag ``s2:processing_baseline`` / ``PROCESSING_BASELINE``
   (``earthsearch:boa_offset_applied`` respected) or from a STAC item saved next to the file
   (``s2_20220110.json``); the rule is :func:`~landprompt.eo.bands.s2_boa_offset`'s.
4. Nothing: the file is taken as offset-free, unless none of its reflectance bands ever goes below 1000
   (sampled on at most 1024 x 1024 pixels) - the mark of an offset left in - which is refused, naming the
   file and ``--l2a-offset``.

``--l2a-offset 0`` or ``-1000`` overrides all of this: the value is added to every DN of every file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling

from landprompt.eo.bands import S2_BAND_NAMES, S2_NODATA, s2_boa_offset
from landprompt.errors import BadInputError

L2A_OFFSET_CHOICES = ("auto", "0", "-1000")
OFFSET_FREE_MIN = 1000.0
"""An L2A file whose reflectance bands never go below this still carries the baseline offset."""
SAMPLE_SIDE = 1024
_TAG_ALIASES = {
    "s2:processing_baseline": "s2:processing_baseline",
    "processing_baseline": "s2:processing_baseline",
    "sentinel:processing_baseline": "sentinel:processing_baseline",
    "earthsearch:boa_offset_applied": "earthsearch:boa_offset_applied",
    "boa_offset_applied": "earthsearch:boa_offset_applied",
}


def parse_l2a_offset(value: str | float | None) -> float | None:
    """The ``--l2a-offset`` value: None for ``auto``, else the DN offset to add.

    Raises:
        BadInputError: For anything but ``auto``, ``0`` and ``-1000``.
    """
    if value is None or str(value).strip().lower() == "auto":
        return None
    try:
        offset = float(value)
    except ValueError:
        offset = float("nan")
    if offset not in (0.0, -1000.0):
        raise BadInputError(f"l2a_offset must be one of {', '.join(L2A_OFFSET_CHOICES)}, got {value!r}")
    return offset


@dataclass(frozen=True)
class DnScale:
    """``reflectance x 1e4 = DN * scale + offset`` of one file's bands, and where that came from."""

    scale: tuple[float, ...]
    offset: tuple[float, ...]
    origin: str

    def pick(self, bands: Sequence[int]) -> DnScale:
        """The scale of some bands (0-based indexes)."""
        return DnScale(tuple(self.scale[i] for i in bands), tuple(self.offset[i] for i in bands), self.origin)

    def apply(self, dn: np.ndarray, invalid: np.ndarray, reflectance: Sequence[bool]) -> np.ndarray:
        """Scale the reflectance bands of ``dn`` [band, y, x]; valid values stay >= 1 (0 is no data)."""
        out = dn.astype(np.float32, copy=True)
        for i, is_reflectance in enumerate(reflectance):
            if is_reflectance and (self.scale[i] != 1 or self.offset[i] != 0):
                band = out[i] * np.float32(self.scale[i]) + np.float32(self.offset[i])
                out[i] = np.where(invalid[i], out[i], np.maximum(band, 1))
        return out


def dn_scale(
    src: rasterio.io.DatasetReader, path: Path, names: Sequence[str | None], setting: float | None
) -> DnScale:
    """How to turn ``src``'s DNs into reflectance x 1e4 (see the module docstring).

    Args:
        src: The open file.
        path: Its path (for messages and the STAC item next to it).
        names: landprompt band name of each of its bands (None for a band that is not read).
        setting: ``--l2a-offset`` as :func:`parse_l2a_offset` returns it.

    Raises:
        BadInputError: Naming the file and the flag, when ``auto`` finds no offset information and the
            reflectance bands never go below 1000.
    """
    count = len(names)
    if setting is not None:
        return DnScale((1.0,) * count, (setting,) * count, f"--l2a-offset {setting:g}")
    scales, offsets = tuple(float(s) for s in src.scales), tuple(float(o) for o in src.offsets)
    reflectance = [i for i, n in enumerate(names) if n in S2_BAND_NAMES]
    if any(scales[i] != 1 or offsets[i] != 0 for i in reflectance):
        factor = tuple(1e4 if s < 0.01 else 1.0 for s in scales)
        return DnScale(
            tuple(s * f for s, f in zip(scales, factor, strict=True)),
            tuple(o * f for o, f in zip(offsets, factor, strict=True)),
            "offset/scale tags",
        )
    tags = src.tags()
    if "BOA_ADD_OFFSET" in tags:
        try:
            value = float(tags["BOA_ADD_OFFSET"])
        except ValueError:
            raise BadInputError(
                f"{path}: BOA_ADD_OFFSET tag {tags['BOA_ADD_OFFSET']!r} is not a number"
            ) from None
        return DnScale((1.0,) * count, (value,) * count, "BOA_ADD_OFFSET tag")
    properties = _baseline_properties(tags) or _stac_item_properties(path)
    if properties:
        try:
            offset = s2_boa_offset(properties)
        except BadInputError as exc:
            raise BadInputError(f"{path}: {exc}") from None
        return DnScale((1.0,) * count, (offset,) * count, "processing baseline")
    lowest = _sampled_minimum(src, [i + 1 for i in reflectance])
    if lowest is not None and lowest >= OFFSET_FREE_MIN:
        raise BadInputError(
            f"{path}: no reflectance band goes below {OFFSET_FREE_MIN:g} and the file says nothing of "
            "the L2A offset (no offset tag, BOA_ADD_OFFSET or processing baseline): it looks like "
            "baseline 04.00+ data with the +1000 offset still in. Set l2a_offset to -1000 (--l2a-offset "
            "-1000) to remove it, or to 0 if the values are right"
        )
    return DnScale((1.0,) * count, (0.0,) * count, "no offset found")


def _baseline_properties(tags: Mapping[str, str]) -> dict[str, Any]:
    """STAC-style baseline properties from a file's dataset tags."""
    out: dict[str, Any] = {}
    for key, value in tags.items():
        alias = _TAG_ALIASES.get(key.lower())
        if alias is not None:
            out[alias] = value.strip().lower() == "true" if "applied" in alias else value
    return out


def _stac_item_properties(path: Path) -> dict[str, Any]:
    """The baseline properties of the STAC item JSON saved next to ``path`` (``<stem>.json``), if any."""
    item = path.with_suffix(".json")
    if not item.is_file():
        return {}
    try:
        properties = json.loads(item.read_text()).get("properties", {})
    except (OSError, ValueError, AttributeError) as exc:
        raise BadInputError(f"{item} (the STAC item of {path.name}) is not STAC JSON: {exc}") from exc
    keys = {"s2:processing_baseline", "sentinel:processing_baseline", "earthsearch:boa_offset_applied"}
    return {k: v for k, v in properties.items() if k in keys}


def _sampled_minimum(src: rasterio.io.DatasetReader, indexes: list[int]) -> float | None:
    """The smallest valid DN of some bands, read at most :data:`SAMPLE_SIDE` pixels a side."""
    if not indexes:
        return None
    shape = (len(indexes), min(src.height, SAMPLE_SIDE), min(src.width, SAMPLE_SIDE))
    data = src.read(indexes, out_shape=shape, resampling=Resampling.nearest).astype(np.float64)
    nodata = src.nodata
    valid = np.isfinite(data) & (data != S2_NODATA)
    if nodata is not None and np.isfinite(nodata):
        valid &= data != nodata
    return float(data[valid].min()) if valid.any() else None
