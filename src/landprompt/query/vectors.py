"""Vector outputs by file extension: GeoJSON, GeoPackage, FlatGeobuf (pyogrio), GeoParquet, CSV.

:func:`write_vector` writes a table with one geometry per row in the format its suffix names, atomically,
with the CRS recorded the way each format records it; a CSV gets a ``.crs.json`` sidecar naming the CRS
of its coordinate columns, since CSV has no place for one. GeoParquet is written by geopandas/pyarrow
(the GDAL in pyogrio's wheels has no Parquet driver). Metadata (provenance tags) goes into GeoPackage and
FlatGeobuf layer metadata, a ``landprompt`` member of a GeoJSON FeatureCollection, the ``landprompt``
key of a GeoParquet file's schema metadata, or the ``provenance`` key of a CSV's sidecar.
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
from landprompt.files import atomic_path, write_json

#: Suffix -> OGR driver of the vector formats landprompt writes.
VECTOR_DRIVERS = {".geojson": "GeoJSON", ".json": "GeoJSON", ".gpkg": "GPKG", ".fgb": "FlatGeobuf"}
#: Every suffix :func:`write_vector` accepts.
VECTOR_SUFFIXES = (".csv", *VECTOR_DRIVERS, ".parquet")
#: Key of the metadata in a GeoParquet file's schema metadata and in a GeoJSON FeatureCollection.
METADATA_KEY = "landprompt"


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
        path: ``.geojson``/``.json``, ``.gpkg``, ``.fgb``, ``.parquet`` or ``.csv`` (the table only).
        csv_crs: For CSV: coordinate columns -> their CRS, written to ``<path>.crs.json``.
        metadata: String metadata, e.g. provenance tags, stored as the module docstring says.

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
        if csv_crs or metadata:
            sidecar = {"columns": dict(csv_crs or {}), **({"provenance": dict(metadata)} if metadata else {})}
            write_json(path.with_name(path.name + ".crs.json"), sidecar, indent=1)
        return path
    shapes = [None if g is None else shapely.geometry.shape(g) for g in geometries]
    if suffix == ".parquet":
        return _write_geoparquet(table, shapes, crs, path, metadata)
    wkb = np.array([None if s is None else shapely.to_wkb(s) for s in shapes], dtype=object)
    kinds = {s.geom_type for s in shapes if s is not None}
    geometry_type = kinds.pop() if len(kinds) == 1 else "Unknown"
    fields = [str(c) for c in table.columns]
    data = [_column(table[c]) for c in table.columns]
    driver = VECTOR_DRIVERS[suffix]
    options = {}
    if metadata and driver == "GeoJSON":
        options["FOREIGN_MEMBERS_COLLECTION"] = json.dumps({METADATA_KEY: dict(metadata)})
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
            layer_metadata=dict(metadata) if metadata and driver != "GeoJSON" else None,
            layer_options=options or None,
        )
    return path


def _write_geoparquet(
    table: pd.DataFrame, shapes: list[Any], crs: str, path: Path, metadata: Mapping[str, str] | None
) -> Path:
    """Write a GeoParquet file (geopandas: ``geo`` metadata with the CRS), metadata in the schema."""
    import geopandas as gpd
    import pyarrow.parquet as pq

    frame = gpd.GeoDataFrame(table.reset_index(drop=True), geometry=shapes, crs=crs)
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
        if metadata:  # geopandas takes no extra schema metadata: add it to what it wrote
            written = pq.read_table(tmp)
            schema = {**(written.schema.metadata or {}), METADATA_KEY.encode(): json.dumps(dict(metadata))}
            pq.write_table(written.replace_schema_metadata(schema), tmp)
    return path


def _column(values: pd.Series) -> np.ndarray:
    """A field array OGR can write: numbers as they are, everything else as strings (None for missing)."""
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return values.to_numpy()
    return np.array([None if pd.isna(v) else str(v) for v in values], dtype=object)
