"""What every photo source provides: batches of canonical photo rows, with provenance and resume points.

A batch is a :class:`pandas.DataFrame` with the columns of :data:`SOURCE_COLUMNS` (:func:`photo_frame`
fills the ones a source lacks):

==============  ===========================================================================
column          meaning
==============  ===========================================================================
``source_id``   the photo's id in its source (unique per source; the natural key)
``lat, lon``    WGS84 degrees (NaN when the source row has none: counted and skipped)
``taken_at``    capture time as the source gives it (local time, no time zone), or NaT
``year``        capture year (LUCAS: the survey year), or missing
``path, url``   local file and/or download URL
``licence``     canonical licence id (:mod:`landprompt.pairs.licences`)
``author``      credit line; ``user_id`` the uploader's account (bursts are per user)
``title, tags`` as the source gives them (tags comma-separated)
``sha256``      of the photo bytes, when the source read them
``direction``   LUCAS N/S/E/W/point/cover
``metadata``    dict of anything else worth keeping (JSON in the catalog)
``loc_key``     the place the photo belongs to (default: coordinates rounded to 1e-5 degrees)
``labels``      dict of the place's labels (LUCAS lc1/lu1), ``country`` when known
==============  ===========================================================================
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

SOURCE_COLUMNS = (
    "source_id",
    "lat",
    "lon",
    "taken_at",
    "year",
    "path",
    "url",
    "licence",
    "author",
    "user_id",
    "title",
    "tags",
    "sha256",
    "direction",
    "metadata",
    "loc_key",
    "labels",
    "country",
)
_TYPED = ("lat", "lon", "taken_at", "year", "metadata", "labels")
_TEXT = tuple(c for c in SOURCE_COLUMNS if c not in _TYPED)


@dataclass(frozen=True)
class SourceBatch:
    """One batch read from a source.

    Attributes:
        frame: Canonical photo rows (:func:`photo_frame`).
        skipped: Rows the source itself dropped, by reason (``video``, ``low_accuracy``, ``bad_row``...).
        cursor: Resume point to store with this batch (paged sources), or None.
    """

    frame: pd.DataFrame
    skipped: Mapping[str, int] = field(default_factory=dict)
    cursor: dict[str, Any] | None = None


class PhotoSource(ABC):
    """A source of geo-located photos (subclasses: LUCAS, YFCC100M, Flickr API, tables).

    Attributes:
        name: Source name stored with every photo (``lucas``, ``yfcc``, ``flickr``, ``table:<name>``).
        licence_note: The source's terms, kept in the provenance table.
        cursor_name: Catalog cursor that makes a paged source resumable; None for files.
    """

    name: str
    licence_note: str = ""
    cursor_name: str | None = None

    @abstractmethod
    def describe(self) -> tuple[str, str]:
        """The input (path or query) and its sha256 (of the file bytes, or of the canonical query)."""

    def params(self) -> dict[str, Any]:
        """Source settings recorded in the provenance (filters that change what is read)."""
        return {}

    @abstractmethod
    def batches(self, cursor: dict[str, Any] | None = None) -> Iterator[SourceBatch]:
        """Read the input in batches, starting after ``cursor`` (paged sources)."""


def photo_frame(n: int, **columns: Any) -> pd.DataFrame:
    """A canonical batch of ``n`` rows: the given columns, every other :data:`SOURCE_COLUMNS` empty.

    ``lat``/``lon`` become float (NaN when missing), ``taken_at`` datetime (NaT when unparsable),
    ``year`` a nullable integer (from ``taken_at`` when not given), text columns strings or None,
    ``metadata``/``labels`` dicts; ``loc_key`` defaults to the rounded coordinates.
    """
    unknown = set(columns) - set(SOURCE_COLUMNS)
    if unknown:
        raise ValueError(f"unknown photo columns {sorted(unknown)}")
    frame = pd.DataFrame({c: columns.get(c, [None] * n) for c in SOURCE_COLUMNS}, index=range(n))
    for col in ("lat", "lon"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    frame["taken_at"] = pd.to_datetime(frame["taken_at"], errors="coerce").astype("datetime64[us]")
    year = pd.to_numeric(frame["year"], errors="coerce")
    frame["year"] = year.fillna(frame["taken_at"].dt.year).astype("Int16")
    for col in _TEXT:
        frame[col] = frame[col].astype(object).where(frame[col].notna() & (frame[col] != ""), None)
    for col in ("metadata", "labels"):
        frame[col] = [v if isinstance(v, dict) else {} for v in frame[col]]
    missing_key = frame["loc_key"].isna()
    frame.loc[missing_key, "loc_key"] = coordinate_keys(frame["lat"][missing_key], frame["lon"][missing_key])
    return frame


def coordinate_keys(lat: pd.Series, lon: pd.Series) -> list[str | None]:
    """Place keys from coordinates rounded to 1e-5 degrees (about 1 m): photos at one spot share a place."""
    return [
        None if not (np.isfinite(a) and np.isfinite(o)) else f"{a:.5f},{o:.5f}"
        for a, o in zip(lat.to_numpy(float), lon.to_numpy(float), strict=True)
    ]


def to_json(values: pd.Series) -> list[str]:
    """Dict column -> JSON text column (sorted keys, NaN as null)."""
    return [json.dumps(_clean(v), sort_keys=True, default=str) for v in values]


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def text_sha256(text: str) -> str:
    """sha256 of a text (canonical API queries)."""
    return hashlib.sha256(text.encode()).hexdigest()
