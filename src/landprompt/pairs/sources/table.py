"""Any CSV or Parquet table of geo-located photos, with configurable column names.

Only latitude and longitude are required. An id column gives stable ``source_id`` values; without one
the photo's path, else its URL, else ``row-<n>`` is used. Relative paths are taken relative to the
table's folder. Licences are read from a column (names, ids or URLs; see
:mod:`landprompt.pairs.licences`) or given once for the whole table. Parquet is read with DuckDB.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from landprompt.errors import BadInputError
from landprompt.files import file_sha256
from landprompt.pairs.licences import UNKNOWN, normalise_licence
from landprompt.pairs.sources.base import PhotoSource, SourceBatch, photo_frame


@dataclass(frozen=True)
class TableColumns:
    """Column names of a photo table (None: the table has no such column)."""

    lat: str = "lat"
    lon: str = "lon"
    id: str | None = None
    time: str | None = None
    path: str | None = None
    url: str | None = None
    licence: str | None = None
    author: str | None = None
    user: str | None = None
    title: str | None = None
    tags: str | None = None


class TableSource(PhotoSource):
    """A CSV or Parquet table of photos.

    Args:
        path: ``.csv`` (comma-separated), ``.tsv`` (tab-separated) or ``.parquet``.
        columns: Column names.
        name: Source name suffix (``table:<name>``); default the file stem.
        licence: Licence of every row without a licence column value.
        hash_files: Compute the sha256 of local photos (dedupes identical files).
        chunk_rows: Rows per batch.
    """

    def __init__(
        self,
        path: str | Path,
        columns: TableColumns | None = None,
        name: str | None = None,
        licence: str | None = None,
        hash_files: bool = True,
        chunk_rows: int = 100_000,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise BadInputError(f"photo table {self.path} does not exist")
        if self.path.suffix.lower() not in (".csv", ".tsv", ".parquet"):
            raise BadInputError(f"photo table {self.path.name} must be .csv, .tsv or .parquet")
        self.columns = columns or TableColumns()
        self.name = f"table:{name or self.path.stem}"
        self.licence = normalise_licence(licence) if licence else UNKNOWN
        if licence and self.licence == UNKNOWN:
            raise BadInputError(f"unknown licence {licence!r} for the table: give e.g. CC-BY-4.0 or CC0-1.0")
        self.hash_files = hash_files
        self.chunk_rows = chunk_rows
        self.licence_note = f"as given by {self.path.name}"

    def describe(self) -> tuple[str, str]:
        """The table path and the sha256 of its bytes."""
        return str(self.path.resolve()), file_sha256(self.path)

    def params(self) -> dict[str, Any]:
        """Column mapping and default licence."""
        return {"columns": asdict(self.columns), "licence": self.licence}

    def batches(self, cursor: dict[str, Any] | None = None) -> Iterator[SourceBatch]:
        """One batch per ``chunk_rows`` rows."""
        start = 0
        for chunk in self._chunks():
            self._check(chunk)
            yield SourceBatch(self._frame(chunk, start))
            start += len(chunk)

    def _chunks(self) -> Iterator[pd.DataFrame]:
        if self.path.suffix.lower() == ".parquet":
            con = duckdb.connect(
                config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
            )
            try:
                result = con.execute("SELECT * FROM read_parquet(?)", [str(self.path)])
                while True:
                    chunk = result.fetch_df_chunk(max(1, self.chunk_rows // 2048))
                    if chunk.empty:
                        return
                    yield chunk.astype(object).where(chunk.notna(), None)
            finally:
                con.close()
        sep = "\t" if self.path.suffix.lower() == ".tsv" else ","
        yield from pd.read_csv(
            self.path, dtype=str, keep_default_na=False, sep=sep, chunksize=self.chunk_rows
        )

    def _check(self, chunk: pd.DataFrame) -> None:
        wanted = {k: v for k, v in asdict(self.columns).items() if v is not None}
        missing = [f"{k}={v!r}" for k, v in wanted.items() if v not in chunk.columns]
        if missing:
            raise BadInputError(
                f"{self.path.name} lacks column(s) {', '.join(missing)}; "
                f"it has {', '.join(map(str, chunk.columns))}"
            )

    def _frame(self, chunk: pd.DataFrame, start: int) -> pd.DataFrame:
        c = self.columns
        n = len(chunk)

        def column(name: str | None) -> list[Any]:
            if name is None:
                return [None] * n
            return [None if v is None or str(v).strip() == "" else v for v in chunk[name].tolist()]

        paths = [self._resolve(p) for p in column(c.path)]
        urls = column(c.url)
        ids = column(c.id)
        source_ids = [
            str(i) if i is not None else p if p is not None else u if u is not None else f"row-{start + k}"
            for k, (i, p, u) in enumerate(zip(ids, paths, urls, strict=True))
        ]
        licences = [self.licence if v is None else normalise_licence(str(v)) for v in column(c.licence)]
        hashes = [
            file_sha256(p) if p is not None and self.hash_files and Path(p).is_file() else None for p in paths
        ]
        return photo_frame(
            n,
            source_id=source_ids,
            lat=column(c.lat),
            lon=column(c.lon),
            taken_at=column(c.time),
            path=paths,
            url=urls,
            licence=licences,
            author=column(c.author),
            user_id=column(c.user),
            title=column(c.title),
            tags=column(c.tags),
            sha256=hashes,
        )

    def _resolve(self, value: Any) -> str | None:
        if value is None:
            return None
        path = Path(str(value)).expanduser()
        return str(path if path.is_absolute() else (self.path.parent / path).resolve())
