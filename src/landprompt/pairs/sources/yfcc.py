"""YFCC100M metadata dumps (``yfcc100m_dataset``): tab-separated, 25 columns, no header.

Columns (0-based) and what is kept:

====  ==========================  =====================================================
 #    column                      use
====  ==========================  =====================================================
 0    line number                 -
 1    photo/video id              ``source_id``
 2    photo/video hash            ``metadata.yfcc_hash`` (not a hash of the bytes)
 3    user NSID                   ``user_id`` (bursts are per user)
 4    user nickname               ``author`` (URL-decoded)
 5    date taken                  ``taken_at`` (``YYYY-MM-DD HH:MM:SS[.0]``, local time)
 6    date uploaded (epoch)       ``metadata.uploaded``
 7    capture device              -
 8    title                       ``title`` (URL-decoded)
 9    description                 -
 10   user tags                   ``tags`` (URL-decoded, comma-separated)
 11   machine tags                -
 12   longitude                   ``lon`` (empty: no coordinates)
 13   latitude                    ``lat``
 14   accuracy (1 world - 16 street)  rows below ``min_accuracy`` are skipped (``low_accuracy``)
 15   photo page URL              ``metadata.page_url``
 16   photo download URL          ``url``
 17   licence name                ``licence`` with column 18
 18   licence URL                 ``licence`` (canonical id from the URL)
 19-23 server, farm, secrets, ext  -
 24   marker (0 photo, 1 video)   videos are skipped (``video``)
====  ==========================  =====================================================

Lines without 25 fields are skipped (``bad_row``). ``.bz2``, ``.gz`` and ``.xz`` dumps are read
compressed.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote_plus

import pandas as pd

from landprompt.errors import BadInputError
from landprompt.files import file_sha256
from landprompt.pairs.licences import normalise_licence
from landprompt.pairs.sources.base import PhotoSource, SourceBatch, photo_frame

N_COLUMNS = 25
COLUMNS = {
    "id": 1,
    "hash": 2,
    "user": 3,
    "nickname": 4,
    "taken": 5,
    "uploaded": 6,
    "title": 8,
    "tags": 10,
    "lon": 12,
    "lat": 13,
    "accuracy": 14,
    "page_url": 15,
    "download_url": 16,
    "licence_name": 17,
    "licence_url": 18,
    "marker": 24,
}
LICENCE_NOTE = (
    "YFCC100M (Yahoo Flickr Creative Commons 100M): each photo under its own Creative Commons licence"
)


class YfccSource(PhotoSource):
    """A YFCC100M metadata dump.

    Args:
        path: The dump (plain or ``.bz2``/``.gz``/``.xz``).
        min_accuracy: Lowest Flickr geo accuracy kept (16 street, ~11 city; 0 keeps all).
        chunk_rows: Lines per batch.
    """

    name = "yfcc"
    licence_note = LICENCE_NOTE

    def __init__(self, path: str | Path, min_accuracy: int = 14, chunk_rows: int = 100_000) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise BadInputError(f"YFCC100M dump {self.path} does not exist")
        self.min_accuracy = min_accuracy
        self.chunk_rows = chunk_rows

    def describe(self) -> tuple[str, str]:
        """The dump path and the sha256 of its bytes."""
        return str(self.path.resolve()), file_sha256(self.path)

    def params(self) -> dict[str, Any]:
        """The accuracy threshold."""
        return {"min_accuracy": self.min_accuracy}

    def batches(self, cursor: dict[str, Any] | None = None) -> Iterator[SourceBatch]:
        """One batch per ``chunk_rows`` lines."""
        rows: list[list[str]] = []
        bad = 0
        with _open_text(self.path) as lines:
            for line in lines:
                fields = line.rstrip("\n").rstrip("\r").split("\t")
                if len(fields) != N_COLUMNS:
                    bad += line.strip() != ""
                    continue
                rows.append(fields)
                if len(rows) >= self.chunk_rows:
                    yield self._batch(rows, bad)
                    rows, bad = [], 0
        if rows or bad:
            yield self._batch(rows, bad)

    def _batch(self, rows: list[list[str]], bad: int) -> SourceBatch:
        table = (
            pd.DataFrame(rows, columns=range(N_COLUMNS), dtype=object)
            if rows
            else pd.DataFrame(columns=range(N_COLUMNS), dtype=object)
        )
        col = {name: table[i] for name, i in COLUMNS.items()}
        video = col["marker"].str.strip() == "1"
        accuracy = pd.to_numeric(col["accuracy"], errors="coerce").fillna(0)
        has_coords = col["lat"].str.strip().ne("") & col["lon"].str.strip().ne("")
        low = ~video & has_coords & (accuracy < self.min_accuracy)
        keep = ~(video | low)
        table = table[keep]
        col = {name: table[i] for name, i in COLUMNS.items()}
        licences = [
            normalise_licence(n, u) for n, u in zip(col["licence_name"], col["licence_url"], strict=True)
        ]
        metadata = [
            {"yfcc_hash": h, "uploaded": u, "page_url": p, "accuracy": a}
            for h, u, p, a in zip(col["hash"], col["uploaded"], col["page_url"], col["accuracy"], strict=True)
        ]
        frame = photo_frame(
            len(table),
            source_id=col["id"].str.strip().to_numpy(),
            lat=col["lat"].to_numpy(),
            lon=col["lon"].to_numpy(),
            taken_at=col["taken"].str.replace(r"\.0$", "", regex=True).to_numpy(),
            url=col["download_url"].to_numpy(),
            licence=licences,
            author=col["nickname"].map(unquote_plus).to_numpy(),
            user_id=col["user"].to_numpy(),
            title=col["title"].map(unquote_plus).to_numpy(),
            tags=col["tags"].map(unquote_plus).to_numpy(),
            metadata=metadata,
        )
        skipped = {"video": int(video.sum()), "low_accuracy": int(low.sum()), "bad_row": bad}
        return SourceBatch(frame, skipped)


def _open_text(path: Path) -> IO[str]:
    opener: Any = {".bz2": bz2.open, ".gz": gzip.open, ".xz": lzma.open}.get(path.suffix.lower(), open)
    stream: IO[str] = opener(path, "rt", encoding="utf-8", errors="replace", newline="")
    return stream
