"""Top-k places for a prompt: the public functions, over a cube path's cached query session or shards.

:func:`top_k` of a cube path searches through the path's cached
:class:`~landprompt.query.session.QuerySession` (its index and encoded prompts kept); the search itself
(index or exact scan, spatial non-maximum suppression, the places table) is
:mod:`~landprompt.query.search`, whose names are importable from here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from landprompt.embedder.cube import cube_grid
from landprompt.errors import BadInputError
from landprompt.geo import BBox
from landprompt.index.search import CubeIndex
from landprompt.query.classes import DEFAULT_STYLE, ProgressFn, clip_for_cube, concept_embedding
from landprompt.query.search import (
    PLACE_COLUMNS,
    PlaceTable,
    merge_places,
    query_embedding,
    resolve_index,
    search_top_k,
    spatial_nms,
)
from landprompt.query.session import QuerySession, Session, cube_paths, open_session

if TYPE_CHECKING:
    from landprompt.embedder.clip import ClipModel

#: The search helpers of :mod:`~landprompt.query.search`, importable from here as before.
__all__ = [
    "PLACE_COLUMNS",
    "PlaceTable",
    "cube_paths",
    "merge_places",
    "places_geojson",
    "query_embedding",
    "resolve_index",
    "search_top_k",
    "spatial_nms",
    "top_k",
    "top_k_shards",
    "write_places",
]


def top_k(
    cube: str | Path | xr.Dataset,
    query: str | np.ndarray,
    k: int = 20,
    min_distance_m: float = 0.0,
    bbox: BBox | str | Sequence[float] | None = None,
    clip: ClipModel | None = None,
    style: str = DEFAULT_STYLE,
    index: str | Path | CubeIndex | None = "auto",
    progress: ProgressFn | None = None,
) -> pd.DataFrame:
    """The ``k`` best-matching distinct places of a cube for a prompt or an embedding.

    Args:
        cube: Embedding cube path, folder of shards (searched as :func:`top_k_shards` searches them,
            with a ``cube`` column) or opened Dataset.
        query: A prompt in plain words (encoded as a prompt ensemble) or an embedding (d,).
        k: Number of places.
        min_distance_m: Minimum distance between two results, in metres (0: distinct pixels).
        bbox: Restrict the search to a lon/lat window (searched exactly, without the index).
        clip: CLIP model for a text query (default: the one named in the cube's attrs).
        style: Prompt template style.
        index: ``"auto"`` (the cube's default index if it has one, else an exact scan), an index path
            or :class:`~landprompt.index.search.CubeIndex`, or None (exact scan); a folder of shards
            takes ``"auto"`` or None.
        progress: Called with ``(pixels done, pixels in all)`` after each chunk of an exact scan (once,
            at the end, of an index search); over shards, ``(shards done, shards in all)``.

    Returns:
        A DataFrame with columns rank, row, col, lon, lat, x, y, score (cosine), best first.
    """
    if isinstance(cube, xr.Dataset):
        grid = cube_grid(cube)
        searcher = resolve_index(cube, index) if bbox is None else None
        vector = _query_vector(cube, query, clip, style)
        return search_top_k(cube, grid, PlaceTable(grid), vector, k, min_distance_m, bbox, searcher, progress)
    session = open_session(cube)  # the cached session of the path: cube(s), index, text tower, prompts
    return _session_top_k(session, query, k, min_distance_m, bbox, clip, style, index, progress)


def top_k_shards(
    cubes: Sequence[str | Path],
    query: str | np.ndarray,
    k: int = 20,
    min_distance_m: float = 0.0,
    clip: ClipModel | None = None,
    style: str = DEFAULT_STYLE,
    progress: ProgressFn | None = None,
    bbox: BBox | str | Sequence[float] | None = None,
) -> pd.DataFrame:
    """Top-k over several cubes (shards of one region, e.g. Europe's tiles), merged into one list.

    Searched through the cached :class:`~landprompt.query.session.ShardedSession` of the list: each
    shard with its own index (or scanned, inside a ``bbox``: only the shards it touches), the query
    encoded once; the shards' results are merged by score and suppressed again across shard borders in
    EPSG:3035 metres. ``top_k(folder, ...)`` does the same for a folder of shards.

    ``progress`` is called with ``(shards done, shards in all)`` after each shard.

    Returns:
        The :func:`top_k` columns plus ``cube``, the shard each place comes from.
    """
    session = open_session(list(cubes))
    return _session_top_k(session, query, k, min_distance_m, bbox, clip, style, "auto", progress)


def _session_top_k(
    session: Session,
    query: str | np.ndarray,
    k: int,
    min_distance_m: float,
    bbox: BBox | str | Sequence[float] | None,
    clip: ClipModel | None,
    style: str,
    index: str | Path | CubeIndex | None,
    progress: ProgressFn | None,
) -> pd.DataFrame:
    """Top-k through a session; a prompt with another ``clip`` is encoded by that model instead."""
    if isinstance(query, str) and clip is not None:
        ds = session.ds if isinstance(session, QuerySession) else session.shards[0].ds
        query = _query_vector(ds, query, clip, style)
    return session.top_k(query, k, min_distance_m, bbox, style, index=index, progress=progress)


def _query_vector(ds: xr.Dataset, query: str | np.ndarray, clip: ClipModel | None, style: str) -> np.ndarray:
    if isinstance(query, str):
        model = clip or clip_for_cube(ds)
        if model.embed_dim != ds.sizes["d"]:
            from landprompt.embedder.clip import recorded_clip

            made_for = (recorded_clip(ds.attrs) or ("(unnamed)",))[0]
            raise BadInputError(
                f"CLIP {model.id} embeds text in {model.embed_dim} dimensions, but the cube holds "
                f"{ds.sizes['d']}-dimensional embeddings made for CLIP {made_for}: "
                "query with the cube's CLIP model (leave clip out)"
            )
        return concept_embedding(model, query, style)
    return query_embedding(ds, query)


def write_places(
    places: pd.DataFrame, path: str | Path, fmt: str | None = None, metadata: dict[str, str] | None = None
) -> Path:
    """Write a places table as points in lon/lat, in the format the suffix names.

    ``.csv``, ``.geojson``, ``.gpkg``, ``.fgb`` or ``.parquet``; ``fmt`` (``csv`` or ``geojson``) must
    agree with the suffix. A CSV gets a ``.crs.json`` sidecar naming the CRS of ``lon``/``lat`` and
    ``x``/``y``. ``metadata`` (e.g. provenance tags) is stored as :mod:`~landprompt.query.vectors` says.
    """
    from landprompt.query.vectors import vector_suffix, write_vector

    path = Path(path)
    suffix = vector_suffix(path, "places")
    if fmt is not None and fmt != {".csv": "csv", ".json": "geojson"}.get(suffix, suffix.lstrip(".")):
        raise BadInputError(f"fmt {fmt!r} does not match the file {path.name!r}: the extension chooses")
    points = [
        {"type": "Point", "coordinates": [float(lon), float(lat)]}
        for lon, lat in zip(places["lon"], places["lat"], strict=True)
    ]
    csv_crs = {"lon,lat": "EPSG:4326"}
    if "crs" in places.attrs:
        csv_crs["x,y"] = str(places.attrs["crs"])
    return write_vector(places, points, "EPSG:4326", path, csv_crs=csv_crs, metadata=metadata)


def places_geojson(places: pd.DataFrame) -> dict:
    """A GeoJSON FeatureCollection of places (lon/lat points, every column as a property)."""
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [float(rec["lon"]), float(rec["lat"])]},
            "properties": {
                key: (value.item() if hasattr(value, "item") else value) for key, value in rec.items()
            },
        }
        for rec in places.to_dict("records")
    ]
    return {"type": "FeatureCollection", "features": features}
