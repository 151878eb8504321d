"""LUCAS survey tables (Eurostat's Land Use/Cover Area frame Survey) and their ground photos.

Each row of a survey table (``metadata_2018.csv`` and alike) is a visit of a survey point: one place
(``loc_key`` ``<point_id>-<year>``) with up to six photos, ``N``, ``S``, ``E``, ``W`` (looking north ...
from the point), ``point`` (the point itself, file letter ``P``) and ``cover`` (the land cover, ``C``).

**Coordinates.** The theoretical point ``th_lat``/``th_long`` is signed. The surveyor's GPS fix has an
*unsigned* longitude ``gps_long`` with its hemisphere in ``gps_ew`` (``East``/``West``; ``E``/``W``
accepted): West makes the longitude negative, East positive, whatever sign the table stored. The GPS
fix is used when it is present, not LUCAS's placeholder (88.888888), inside valid ranges and within
``max_gps_offset_m`` (default 1 km) of the theoretical point; otherwise the theoretical point is used.
``labels.coordinates`` says which one was taken. (The shared 2018 sample: GPS 54.43836 N, 8.108829
``West`` -> -8.108829, 35 m from the theoretical point, as the table's ``th_gps_dist`` says.)

**Columns** are matched case-insensitively: Eurostat's yearly tables spell them ``POINT_ID``,
``TH_LAT``, ``TH_LONG``, ``GPS_EW`` ...; the harmonised tables ``point_id``, ``th_lat``, ... The 2022
survey's ``SURVEY_*`` / ``POINT_*`` names are mapped to the harmonised ones (``SURVEY_LC1`` -> ``lc1``,
``POINT_LAT`` / ``POINT_LON`` -> ``th_lat`` / ``th_long``, ``POINT_NUTS0`` -> ``nuts0``; ``POINT_ID``
and ``SURVEY_DATE`` keep their names): :func:`normalised_columns`, which the LUCAS concept benchmark
(``evaluate concepts``) reads its tables with too.

**Photos.** For each direction the photo is looked for locally below ``photos_root`` (default: the
table's folder), in the layouts the survey years use. The relative path is the ``file_path_gisco_*``
URL's part below ``/photos/`` (e.g. ``2018/UK/316/036/31603628N.jpg``), or, for tables without URL
columns (2006-2015), the same GISCO scheme built from the year, ``nuts0`` and the point id
(``<year>/<nuts0>/<id[:3]>/<id[3:6]>/<id><letter>.jpg``). It is tried as it is, under ``LUCAS<year>/``
in place of ``<year>/`` (the layout of the survey's ``filepaths`` tables and photo downloads, e.g.
``LUCAS2018/UK/316/036/31603628N.jpg``), without the year (``UK/316/036/...``), and finally as
``<photos_root>/<point_id><letter>.jpg`` and ``<photos_root>/<year>/<point_id><letter>.jpg``. A photo
without a local file is kept with its URL when the table has one and its ``photo_*`` column does not
say it was not taken; the cover photo has no URL column and is kept only when found locally.

**Kept as labels** of the place: ``lc1``, ``lc1_label``, ``lu1``, ``lu1_label`` (and ``lc1_spec``,
``lu1_type``, ``obs_type``, ``obs_dist`` when present), the NUTS codes, both coordinate pairs and
``th_gps_dist``; ``country`` is ``nuts0``. Photo time is the survey date (``dd/mm/yy``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from landprompt.errors import BadInputError
from landprompt.files import file_sha256
from landprompt.pairs.sources.base import PhotoSource, SourceBatch, photo_frame

LICENCE = "EU-REUSE"
LICENCE_NOTE = (
    "LUCAS survey, (c) European Union; reuse authorised provided the source is acknowledged "
    "(Commission Decision 2011/833/EU)"
)
GPS_PLACEHOLDER = 88.888888
"""LUCAS's code for a missing or not relevant value."""
DIRECTIONS: tuple[tuple[str, str, str | None], ...] = (
    ("N", "N", "north"),
    ("S", "S", "south"),
    ("E", "E", "east"),
    ("W", "W", "west"),
    ("P", "point", "point"),
    ("C", "cover", None),
)
"""(file letter, direction, suffix of the ``file_path_gisco_*`` / ``photo_*`` columns)."""
REQUIRED = ("point_id", "th_lat", "th_long")
LABELS = (
    "lc1",
    "lc1_label",
    "lc1_spec",
    "lu1",
    "lu1_label",
    "lu1_type",
    "obs_type",
    "obs_dist",
    "nuts0",
    "nuts1",
    "nuts2",
    "nuts3",
    "th_gps_dist",
)
_EARTH_RADIUS_M = 6_371_008.8
#: The 2022 table's names of harmonised columns that its ``SURVEY_`` / ``POINT_`` rule does not give.
ALIASES_2022 = {"point_lat": "th_lat", "point_long": "th_long", "point_lon": "th_long"}
_PREFIXES = ("survey_", "point_")
#: Harmonised names that start with one of those prefixes (kept as they are).
_KEEP = frozenset({"point_id", "survey_date"})


def normalised_columns(columns: Sequence[str]) -> dict[str, str]:
    """Harmonised (lower-case) name of each column of a LUCAS table of any survey year: original -> name."""
    lower = [str(c).strip().lower() for c in columns]
    taken = set(lower)
    out = {}
    for original, name in zip(columns, lower, strict=True):
        if name in ALIASES_2022:
            name = ALIASES_2022[name]
        elif name.startswith(_PREFIXES) and name not in _KEEP:
            stripped = name.split("_", 1)[1]
            name = stripped if stripped not in taken else name
        out[str(original)] = name
    return out


def lucas_coordinates(frame: pd.DataFrame, max_gps_offset_m: float = 1000.0) -> pd.DataFrame:
    """Coordinates of LUCAS rows by the rule of the module docstring.

    Returns:
        ``lat``, ``lon`` (NaN when neither pair is usable), ``coordinates`` (``gps``/``th``/None) and the
        signed ``gps_lon``, aligned with ``frame``.
    """
    th_lat, th_lon = _number(frame, "th_lat"), _number(frame, "th_long")
    gps_lat, gps_lon = _number(frame, "gps_lat"), _number(frame, "gps_long")
    hemisphere = (
        frame.get("gps_ew", pd.Series("", index=frame.index)).astype(str).str.strip().str[:1].str.upper()
    )
    gps_lon = np.where(
        hemisphere == "W", -np.abs(gps_lon), np.where(hemisphere == "E", np.abs(gps_lon), gps_lon)
    )
    th_ok = _usable(th_lat, th_lon)
    gps_ok = _usable(gps_lat, gps_lon)
    offset = haversine_m(th_lat, th_lon, gps_lat, gps_lon)
    gps_ok &= ~th_ok | (offset <= max_gps_offset_m)
    lat = np.where(gps_ok, gps_lat, np.where(th_ok, th_lat, np.nan))
    lon = np.where(gps_ok, gps_lon, np.where(th_ok, th_lon, np.nan))
    used = np.where(gps_ok, "gps", np.where(th_ok, "th", "")).astype(object)
    used[used == ""] = None
    return pd.DataFrame({"lat": lat, "lon": lon, "coordinates": used, "gps_lon": gps_lon}, index=frame.index)


def haversine_m(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> np.ndarray:
    """Great-circle distance in metres (NaN where any input is NaN)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.asarray(lon2, float) - np.asarray(lon1, float))
    h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return np.asarray(2 * _EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(h, 0, 1))))


def _number(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(float)


def _usable(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    finite = np.isfinite(lat) & np.isfinite(lon)
    placeholder = np.isclose(np.abs(lat), GPS_PLACEHOLDER) | np.isclose(np.abs(lon), GPS_PLACEHOLDER)
    in_range = (np.abs(np.nan_to_num(lat, nan=999)) <= 90) & (np.abs(np.nan_to_num(lon, nan=999)) <= 180)
    return finite & ~placeholder & in_range & ~((lat == 0) & (lon == 0))


def survey_dates(values: pd.Series) -> pd.Series:
    """Survey dates from ``dd/mm/yy`` (2018), ``dd/mm/yyyy`` or ISO text; NaT when none fits."""
    text = values.astype(str).str.strip()
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us]")
    for fmt in ("%d/%m/%y", "%d/%m/%Y", "%Y-%m-%d"):
        missing = out.isna()
        if not missing.any():
            break
        out[missing] = pd.to_datetime(text[missing], format=fmt, errors="coerce")
    return out


class LucasSource(PhotoSource):
    """A LUCAS survey table and the photos found next to it or at their GISCO URLs.

    Args:
        table: The survey CSV (e.g. ``metadata_2018.csv``).
        photos_root: Folder the photos are under (default: the table's folder).
        max_gps_offset_m: Largest plausible GPS offset from the theoretical point.
        hash_files: Compute the sha256 of local photos (dedupes identical files).
        chunk_rows: Table rows per batch.
    """

    name = "lucas"
    licence_note = LICENCE_NOTE

    def __init__(
        self,
        table: str | Path,
        photos_root: str | Path | None = None,
        max_gps_offset_m: float = 1000.0,
        hash_files: bool = True,
        chunk_rows: int = 20_000,
    ) -> None:
        self.table = Path(table)
        if not self.table.is_file():
            raise BadInputError(f"LUCAS table {self.table} does not exist: give the survey CSV")
        self._check_table()
        self.photos_root = Path(photos_root) if photos_root is not None else self.table.parent
        self.max_gps_offset_m = max_gps_offset_m
        self.hash_files = hash_files
        self.chunk_rows = chunk_rows

    def describe(self) -> tuple[str, str]:
        """The table path and the sha256 of its bytes."""
        return str(self.table.resolve()), file_sha256(self.table)

    def params(self) -> dict[str, Any]:
        """The GPS plausibility limit."""
        return {"max_gps_offset_m": self.max_gps_offset_m}

    def batches(self, cursor: dict[str, Any] | None = None) -> Iterator[SourceBatch]:
        """One batch of photos per ``chunk_rows`` survey rows."""
        for chunk in self._read(chunksize=self.chunk_rows):
            yield self._batch(chunk)

    def _read(self, **kwargs: Any) -> Iterator[pd.DataFrame]:
        """The table in chunks, column names normalised and checked."""
        try:
            chunks = pd.read_csv(self.table, dtype=str, keep_default_na=False, **kwargs)
        except pd.errors.EmptyDataError:
            raise BadInputError(f"LUCAS table {self.table} is empty: no header, no rows") from None
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise BadInputError(f"LUCAS table {self.table} is not a readable CSV: {exc}") from None
        for chunk in chunks:
            chunk.columns = list(normalised_columns(list(chunk.columns)).values())
            missing = [c for c in REQUIRED if c not in chunk]
            if missing:
                raise BadInputError(
                    f"{self.table} lacks LUCAS column(s) {', '.join(missing)}: is it a LUCAS survey table?"
                )
            yield chunk

    def _check_table(self) -> None:
        """Refuse an empty table or one without the LUCAS columns before anything is written."""
        first = next(self._read(chunksize=1), None)
        if first is None or first.empty:
            raise BadInputError(f"LUCAS table {self.table} has a header but no rows: nothing to ingest")

    def _batch(self, rows: pd.DataFrame) -> SourceBatch:
        coords = lucas_coordinates(rows, self.max_gps_offset_m)
        years = pd.to_numeric(rows.get("year", pd.Series(index=rows.index, dtype=str)), errors="coerce")
        dates = survey_dates(rows.get("survey_date", pd.Series("", index=rows.index)))
        years = years.fillna(dates.dt.year)
        records: list[dict[str, Any]] = []
        no_photo = 0
        for i, row in enumerate(rows.to_dict("records")):
            point, year = str(row["point_id"]).strip(), years.iat[i]
            year_text = "" if pd.isna(year) else str(int(year))
            place = self._place(row, coords.iloc[i], year_text)
            found = [p for p in (self._photo(row, year_text, *d) for d in DIRECTIONS) if p]
            no_photo += len(DIRECTIONS) - len(found)
            for letter, direction, path, url in found:
                records.append(
                    {
                        "source_id": f"{point}-{year_text}-{letter}",
                        "lat": coords["lat"].iat[i],
                        "lon": coords["lon"].iat[i],
                        "taken_at": dates.iat[i],
                        "year": year,
                        "path": path,
                        "url": url,
                        "licence": LICENCE,
                        "author": f"European Union, LUCAS {year_text}".strip(),
                        "sha256": file_sha256(path) if path and self.hash_files else None,
                        "direction": direction,
                        "metadata": {"point_id": point, "letter": letter},
                        **place,
                    }
                )
        columns = {key: [r[key] for r in records] for key in records[0]} if records else {}
        return SourceBatch(photo_frame(len(records), **columns), {"no_photo": no_photo})

    def _place(self, row: dict[str, Any], coords: pd.Series, year: str) -> dict[str, Any]:
        labels = {k: row[k] for k in LABELS if str(row.get(k, "")).strip()}
        labels.update(
            point_id=str(row["point_id"]).strip(),
            year=year,
            coordinates=coords["coordinates"],
            th_lat=_float(row.get("th_lat")),
            th_lon=_float(row.get("th_long")),
            gps_lat=_float(row.get("gps_lat")),
            gps_lon=None if not np.isfinite(coords["gps_lon"]) else float(coords["gps_lon"]),
        )
        country = str(row.get("nuts0", "")).strip() or None
        return {"loc_key": f"{labels['point_id']}-{year}", "labels": labels, "country": country}

    def _photo(
        self, row: dict[str, Any], year: str, letter: str, direction: str, suffix: str | None
    ) -> tuple[str, str, str | None, str | None] | None:
        """(letter, direction, local path, URL) of one photo of a row, or None when there is none."""
        point = str(row["point_id"]).strip()
        url = str(row.get(f"file_path_gisco_{suffix}", "")).strip() or None if suffix else None
        template = url or next(
            (
                str(row[f"file_path_gisco_{s}"]).strip()
                for _, _, s in DIRECTIONS
                if s and row.get(f"file_path_gisco_{s}")
            ),
            None,
        )
        country = str(row.get("nuts0", "")).strip()
        candidates = [self.photos_root / p for p in photo_paths(point, letter, year, country, template)]
        path = next((str(p) for p in candidates if p.is_file()), None)
        taken = str(row.get(f"photo_{suffix}", "")).strip().lower() if suffix else ""
        if path is None and (url is None or taken.startswith(("no", "not"))):
            return None
        return letter, direction, path, url


def photo_paths(point: str, letter: str, year: str, country: str, template: str | None) -> list[str]:
    """Paths relative to the photos root where a photo may lie, in the order tried (module docstring)."""
    name = f"{point}{letter}.jpg"
    relative = urlparse(template).path.partition("/photos/")[2] if template else ""
    if relative:
        relative = relative.rsplit("/", 1)[0] + f"/{name}"
    elif year and country and len(point) >= 6:
        relative = f"{year}/{country}/{point[:3]}/{point[3:6]}/{name}"
    paths = []
    if relative:
        head, _, rest = relative.partition("/")
        paths.append(relative)
        if head.isdigit():
            paths += [f"LUCAS{head}/{rest}", rest]
    paths.append(name)
    if year:
        paths.append(f"{year}/{name}")
    return paths


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None
