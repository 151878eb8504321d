"""Vector outputs by file extension through pyogrio (GDAL/OGR): GeoJSON, GeoPackage, FlatGeobuf, CSV.

:func:`write_vector` writes a table with one geometry per row in the format its suffix names, atomically,
with the CRS recorded the way each format records it; a CSV gets a ``.crs.json`` sidecar naming the CRS
of its coordinate columns, since CSV has no place for one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from landprompt.errors import BadInputError
from landprompt.files import atomic_path

#: Suffix -> OGR driver of the vector formats landprompt writes.
VECTOR_DRIVERS = {".geojson": "GeoJSON", ".json": "GeoJSON", ".gpkg": "GPKG", ".fgb": "FlatGeobuf"}
#: Every suffix :func:`write_vector` accepts.
VECTOR_SUFFIXES = (".csv", *VECTOR_DRIVERS)


def vector_suffix(path: str | os.PathLike[str], what: str) -> str:
    """The lower-case suffix of an output path, or a :class:`BadInputError` naming the formats."""
    suffix = Path(path).suffix.lower()
    if suffix not in VECTOR_SUFFIXES:
        raise BadInputError(
            f"{what} are written as {', '.join(VECTOR_SUFFIXES)} (chosen by the extension), "
            f"got {Path(path).name!r}"
        )
    return suffix


def write_vector(
    table: pd.DataFrame,
    geometries: Sequence[Mapping[str, Any] | None],
    crs: str,
    path: str | os.PathLike[str],
    csv_crs: Mapping[str, str] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write rows with GeoJSON-like geometries in the format the suffix of ``path`` names.

    Args:
        table: One row per feature; its columns become the attribute fields.
        geometries: GeoJSON geometry mappings (or None), one per row, in ``crs``.
        crs: CRS of the geometries, e.g. ``"EPSG:4326"``.
        path: ``.geojson``/``.json``, ``.gpkg``, ``.fgb`` or ``.csv`` (the table only, no geometry).
        csv_crs: For CSV: coordinate columns -> their CRS, written to ``<path>.crs.json``.
        metadata: Layer metadata (GeoPackage only; e.g. provenance tags).

    Returns:
        The written path.
    """
    import shapely
    from pyogrio.raw import write

    path = Path(path)
    suffix = vector_suffix(path, "tables")
    if len(geometries) != len(table):
        raise BadInputError(f"{len(geometries)} geometries for {len(table)} rows")
    if suffix == ".csv":
        with atomic_path(path) as tmp:
            table.to_csv(tmp, index=False)
        if csv_crs:
            with atomic_path(path.with_name(path.name + ".crs.json")) as tmp:
                tmp.write_text(json.dumps({"columns": dict(csv_crs)}, indent=1))
        return path
    shapes = [None if g is None else shapely.geometry.shape(g) for g in geometries]
    wkb = np.array([None if s is None else shapely.to_wkb(s) for s in shapes], dtype=object)
    kinds = {s.geom_type for s in shapes if s is not None}
    geometry_type = kinds.pop() if len(kinds) == 1 else "Unknown"
    fields = [str(c) for c in table.columns]
    data = [_column(table[c]) for c in table.columns]
    driver = VECTOR_DRIVERS[suffix]
    with atomic_path(path) as tmp:
        tmp.unlink(missing_ok=True)  # OGR creates the file itself
        write(
            str(tmp),
            wkb,
            data,
            fields,
            driver=driver,
            geometry_type=geometry_type,
            crs=crs,
            layer=path.stem,
            layer_metadata=dict(metadata) if metadata and driver == "GPKG" else None,
        )
    return path


def _column(values: pd.Series) -> np.ndarray:
    """A field array OGR can write: numbers as they are, everything else as strings (None for missing)."""
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return values.to_numpy()
    return np.array([None if pd.isna(v) else str(v) for v in values], dtype=object)
