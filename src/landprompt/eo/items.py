"""Bulk STAC: stac-geoparquet item tables searched with DuckDB, in place of a STAC API.

Large fetches ask a STAC API once per partition task: tens of thousands of searches for Europe, each
paged and rate-limited. Providers publish the same items as `stac-geoparquet`_ tables (Planetary
Computer: one set of Parquet files per collection). An :class:`ItemTable` answers pystac-client's
``search(collections=, bbox=, datetime=, query=, max_items=)`` from such files: the collection, bbox and
time filters run in DuckDB (Parquet row-group statistics skip most of a continent), ``query`` filters
on the returned items' properties. It is a catalog for :class:`~landprompt.eo.stac.StacSource`::

    source = StacSource(catalog=ItemTable(["s2-2022.parquet", "s1-2022.parquet"]),
                        signer=planetary_computer.sign_inplace)

Only the paths travel to Dask workers; each task reads its rows and signs its items then, so signed
URLs are fresh. Layout read (stac-geoparquet 1.0): ``id``, ``collection``, ``geometry`` (WKB),
``bbox`` (struct ``xmin, ymin, xmax, ymax``), ``assets`` (struct of structs), ``links``,
``stac_extensions``, ``datetime`` (timestamp) and every other column as an item property.
:func:`write_item_table` writes items in that layout (snapshots of a search, tests).

.. _stac-geoparquet: https://github.com/stac-utils/stac-geoparquet
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pystac
import shapely
from shapely.geometry import mapping, shape

from landprompt.eo.stac import matches_query, parse_interval  # the static catalog's filter semantics
from landprompt.errors import BadInputError

TOP_LEVEL = (
    "type",
    "stac_version",
    "stac_extensions",
    "id",
    "geometry",
    "bbox",
    "links",
    "assets",
    "collection",
)
_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}


@dataclass(frozen=True)
class ItemTable:
    """STAC items from stac-geoparquet files (see the module docstring).

    Args:
        paths: Parquet files (globs allowed, as DuckDB's ``read_parquet`` takes them).
    """

    paths: tuple[str, ...]

    def __init__(self, paths: str | Path | Iterable[str | Path]) -> None:
        items = [paths] if isinstance(paths, str | Path) else list(paths)
        if not items:
            raise BadInputError("an item table needs at least one Parquet file")
        object.__setattr__(self, "paths", tuple(str(p) for p in items))

    def search(
        self,
        *,
        collections: Iterable[str] | str | None = None,
        bbox: Sequence[float] | None = None,
        datetime: str | None = None,
        query: Mapping[str, Any] | None = None,
        max_items: int | None = None,
        **_: Any,
    ) -> _Found:
        """Items matching every given filter (same semantics as a STAC API item search)."""
        where: list[str] = []
        params: list[Any] = []
        wanted = [collections] if isinstance(collections, str) else list(collections or [])
        if wanted:
            where.append(f"collection IN ({', '.join('?' * len(wanted))})")
            params += wanted
        if bbox is not None:
            where.append("bbox.xmin <= ? AND bbox.xmax >= ? AND bbox.ymin <= ? AND bbox.ymax >= ?")
            params += [bbox[2], bbox[0], bbox[3], bbox[1]]
        start, end = parse_interval(datetime)
        if start is not None:
            where.append('"datetime" >= ?')
            params.append(start)
        if end is not None:
            where.append('"datetime" <= ?')
            params.append(end)
        sql = "SELECT * FROM read_parquet(?, union_by_name = true)"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += ' ORDER BY "datetime", id'
        con = duckdb.connect(config=_CONFIG)
        try:
            result = con.execute(sql, [list(self.paths), *params])
            names = [d[0] for d in result.description]
            rows = result.fetchall()
        except duckdb.Error as exc:
            raise BadInputError(f"cannot search the item table {', '.join(self.paths)}: {exc}") from exc
        finally:
            con.close()
        found = []
        for row in rows:
            item = row_to_item(dict(zip(names, row, strict=True)))
            if matches_query(item.properties, query or {}):
                found.append(item)
                if max_items is not None and len(found) >= max_items:
                    break
        return _Found(found)


@dataclass(frozen=True)
class _Found:
    found: list[pystac.Item]

    def items(self) -> Iterator[pystac.Item]:
        return iter(self.found)


def row_to_item(row: Mapping[str, Any]) -> pystac.Item:
    """A stac-geoparquet row (column -> value) as a :class:`pystac.Item`."""
    geometry = row.get("geometry")
    if isinstance(geometry, bytes | bytearray):
        geometry = mapping(shapely.from_wkb(bytes(geometry)))
    elif isinstance(geometry, str):
        geometry = json.loads(geometry)
    box = row.get("bbox")
    bbox = [box["xmin"], box["ymin"], box["xmax"], box["ymax"]] if isinstance(box, Mapping) else box
    properties = {k: _plain(v) for k, v in row.items() if k not in TOP_LEVEL and v is not None}
    assets = {k: _plain(v) for k, v in (row.get("assets") or {}).items() if v is not None}
    item = {
        "type": "Feature",
        "stac_version": row.get("stac_version") or pystac.get_stac_version(),
        "stac_extensions": list(row.get("stac_extensions") or []),
        "id": row["id"],
        "collection": row.get("collection"),
        "geometry": _plain(geometry),
        "bbox": list(bbox) if bbox is not None else None,
        "properties": properties,
        "assets": assets,
        "links": [_plain(link) for link in row.get("links") or []],
    }
    return pystac.Item.from_dict(item, preserve_dict=False)


def _plain(value: Any) -> Any:
    """JSON-like Python values: dicts without nulls, lists, ISO times, Python numbers."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        text = value.isoformat()
        return text.replace("+00:00", "Z") if value.utcoffset() is not None else text + "Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_item_table(items: Iterable[pystac.Item], path: str | Path) -> Path:
    """Write items as a stac-geoparquet file (WKB geometry, struct bbox, flattened properties)."""
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        lines = Path(tmp) / "items.jsonl"
        with lines.open("w") as f:
            for item in items:
                item = item.clone()
                item.make_asset_hrefs_absolute()
                data = item.to_dict(include_self_link=False, transform_hrefs=False)
                xmin, ymin, xmax, ymax = data["bbox"]
                row = {
                    **{k: v for k, v in data.items() if k in TOP_LEVEL},
                    **data["properties"],
                    "geometry": shapely.to_wkb(shape(data["geometry"]), hex=True),
                    "bbox": {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax},
                }
                f.write(json.dumps(row) + "\n")
        con = duckdb.connect(config=_CONFIG)
        try:
            con.execute(
                'COPY (SELECT * REPLACE (CAST("datetime" AS TIMESTAMPTZ) AS "datetime", '
                "unhex(geometry)::BLOB AS geometry) FROM read_json(?, format = 'newline_delimited')) "
                "TO ? (FORMAT parquet)",
                [str(lines), str(path)],
            )
        finally:
            con.close()
    return path
