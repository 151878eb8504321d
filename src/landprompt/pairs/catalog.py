"""The pairs catalog: one DuckDB file holding photos, places, samples, splits and provenance.

Schema version 1 (``meta.schema_version``). Plain SQL on lat/lon columns and EEA grid-cell names: no
DuckDB extension that downloads (spatial, httpfs) is used, and autoloading is switched off.

``meta`` (key, value)
    ``format`` = ``landprompt-pairs-catalog``, ``schema_version``, ``catalog_id`` (a UUID that sample
    stores and photo embeddings record, so they cannot be mixed up with another catalog),
    ``created_at``, the split settings ``split_seed``, ``split_fractions`` (JSON train/val/test),
    ``block_m`` (split block size, default 10 km) and ``cell_m`` (cell size, default 1 km).
``provenance`` one row per ingest
    ``ingest_id``, ``source`` (``lucas``, ``yfcc``, ``flickr``, ``table:<name>``), ``input`` (file path
    or API query), ``input_sha256`` (of the input file's bytes, or of the canonical query), ``params``
    (JSON filters), ``licence_note`` (the source's terms), ``started_at``, ``finished_at``, ``counts``
    (JSON report of the last run), ``landprompt_version``. Unique on (source, input_sha256, params):
    ingesting the same input with the same filters again reuses the row.
``photos`` one row per photo; natural key (source, source_id)
    ``photo_id`` (dense from 0: the row of the photo-embedding array), ``source``, ``source_id``,
    ``lat``, ``lon`` (WGS84 degrees), ``taken_at`` (local capture time as the source gives it, no time
    zone), ``year`` (capture year, or the survey year), ``path`` (local file), ``url``, ``licence``
    (canonical id, :mod:`~landprompt.pairs.licences`), ``author``, ``user_id``, ``title``, ``tags``
    (comma-separated), ``sha256`` (of the photo bytes, when read at ingest), ``direction`` (LUCAS
    ``N``/``S``/``E``/``W``/``point``/``cover``), ``cell_id`` (1 km cell), ``metadata`` (JSON),
    ``ingest_id``, ``embed_status`` (``pending``/``done``/``missing``/``corrupt``), ``embed_error``.
``locations`` one row per place; natural key (source, loc_key)
    ``loc_id`` (dense from 0), ``source``, ``loc_key`` (LUCAS ``<point_id>-<year>``, else the
    coordinates rounded to 1e-5 degrees), ``lat``, ``lon``, ``cell_id`` (``1kmE..N..``), ``block_id``
    (``10kmE..N..``), ``country`` (when known, e.g. LUCAS ``nuts0``), ``labels`` (JSON: LUCAS
    ``lc1``/``lu1`` with labels, coordinate provenance, ...), ``ingest_id``.
``photo_locations`` (photo_id, loc_id)
    Which place each photo shows.
``splits`` (block_id, split, u)
    Train/val/test per spatial block (:func:`~landprompt.pairs.cells.block_split`): never per row.
``samples`` one satellite sample per place and year; key (loc_id, year)
    ``store_row`` (unique: the row of the sample store, fixed when the sample is planned), ``part`` (the
    fetch partition, :func:`~landprompt.pairs.cells.partition_keys`), ``status``
    (``pending``/``done``/``failed``/``no_data``), ``error``, ``updated_at``.
``cursors`` (name, value JSON, updated_at)
    Resume points of paged sources (the Flickr page reached per query).
``pairs`` (view)
    Every photo with every sample of its place, split and statuses, and ``year_gap`` between them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from landprompt import __version__
from landprompt.errors import BadInputError
from landprompt.pairs.cells import block_split, check_fractions

FORMAT_NAME = "landprompt-pairs-catalog"
SCHEMA_VERSION = 1
SAMPLE_STATUSES = ("pending", "done", "failed", "no_data")
PHOTO_STATUSES = ("pending", "done", "missing", "corrupt")

_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}

_SCHEMA = """
CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
CREATE TABLE provenance (
    ingest_id INTEGER PRIMARY KEY, source VARCHAR NOT NULL, input VARCHAR NOT NULL,
    input_sha256 VARCHAR NOT NULL, params VARCHAR NOT NULL, licence_note VARCHAR,
    started_at TIMESTAMP, finished_at TIMESTAMP, counts JSON, landprompt_version VARCHAR,
    UNIQUE (source, input_sha256, params));
CREATE TABLE photos (
    photo_id BIGINT PRIMARY KEY, source VARCHAR NOT NULL, source_id VARCHAR NOT NULL,
    lat DOUBLE NOT NULL, lon DOUBLE NOT NULL, taken_at TIMESTAMP, year SMALLINT,
    path VARCHAR, url VARCHAR, licence VARCHAR NOT NULL, author VARCHAR, user_id VARCHAR,
    title VARCHAR, tags VARCHAR, sha256 VARCHAR, direction VARCHAR, cell_id VARCHAR NOT NULL,
    metadata JSON, ingest_id INTEGER NOT NULL,
    embed_status VARCHAR NOT NULL DEFAULT 'pending', embed_error VARCHAR,
    UNIQUE (source, source_id));
CREATE TABLE locations (
    loc_id BIGINT PRIMARY KEY, source VARCHAR NOT NULL, loc_key VARCHAR NOT NULL,
    lat DOUBLE NOT NULL, lon DOUBLE NOT NULL, cell_id VARCHAR NOT NULL, block_id VARCHAR NOT NULL,
    country VARCHAR, labels JSON, ingest_id INTEGER NOT NULL,
    UNIQUE (source, loc_key));
CREATE TABLE photo_locations (
    photo_id BIGINT NOT NULL, loc_id BIGINT NOT NULL, PRIMARY KEY (photo_id, loc_id));
CREATE TABLE splits (block_id VARCHAR PRIMARY KEY, split VARCHAR NOT NULL, u DOUBLE NOT NULL);
CREATE TABLE samples (
    loc_id BIGINT NOT NULL, year SMALLINT NOT NULL, store_row BIGINT NOT NULL UNIQUE,
    part VARCHAR NOT NULL, status VARCHAR NOT NULL DEFAULT 'pending', error VARCHAR,
    updated_at TIMESTAMP, PRIMARY KEY (loc_id, year));
CREATE TABLE cursors (name VARCHAR PRIMARY KEY, value JSON NOT NULL, updated_at TIMESTAMP);
CREATE VIEW pairs AS
    SELECT p.photo_id, l.loc_id, s.store_row, s.year AS sample_year, p.year AS photo_year,
           abs(s.year - p.year) AS year_gap, sp.split, p.source, p.licence,
           s.status AS sample_status, p.embed_status
    FROM photos p JOIN photo_locations USING (photo_id) JOIN locations l USING (loc_id)
    JOIN samples s USING (loc_id) JOIN splits sp ON sp.block_id = l.block_id;
"""

PHOTO_COLUMNS = (
    "photo_id",
    "source",
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
    "cell_id",
    "metadata",
    "ingest_id",
)
LOCATION_COLUMNS = (
    "loc_id",
    "source",
    "loc_key",
    "lat",
    "lon",
    "cell_id",
    "block_id",
    "country",
    "labels",
    "ingest_id",
)


class Catalog:
    """A pairs catalog (DuckDB file); open with :meth:`open`, use as a context manager to close it.

    Attributes:
        path: The DuckDB file.
        con: The DuckDB connection.
        read_only: Whether the connection is read-only (several processes may then read at once).
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, read_only: bool) -> None:
        self.con, self.path, self.read_only = con, path, read_only

    # --- opening ---------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        read_only: bool = False,
        create: bool = True,
        split_seed: int = 0,
        split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
        block_m: float = 10_000.0,
        cell_m: float = 1_000.0,
    ) -> Catalog:
        """Open a catalog, creating it (with these split settings) if it does not exist.

        Args:
            path: DuckDB file.
            read_only: Open for reading only.
            create: Create a missing catalog (else a missing file is an error).
            split_seed: Seed of the block splits (new catalogs only; stored in ``meta``).
            split_fractions: Train, val, test fractions of blocks (new catalogs only).
            block_m: Split block size in metres (new catalogs only).
            cell_m: Grid cell size in metres for thinning and ``cell_id`` (new catalogs only).

        Raises:
            BadInputError: if the file is missing (and not to be created), not a catalog, or of an
                unknown schema version.
        """
        path = Path(path)
        exists = path.exists()
        if not exists and (read_only or not create):
            raise BadInputError(f"no pairs catalog at {path}: build one with 'landprompt pairs ingest'")
        try:
            con = duckdb.connect(str(path), read_only=read_only, config=_CONFIG)
        except duckdb.Error as exc:
            raise BadInputError(
                f"cannot open {path} as a DuckDB catalog: {' '.join(str(exc).split())}"
            ) from exc
        catalog = cls(con, path, read_only)
        if not exists:
            catalog._create(split_seed, check_fractions(split_fractions), block_m, cell_m)
        catalog._check()
        return catalog

    def _create(self, seed: int, fractions: Sequence[float], block_m: float, cell_m: float) -> None:
        if block_m <= 0 or cell_m <= 0:
            raise BadInputError(f"block and cell sizes must be positive, got {block_m} and {cell_m} m")
        meta = {
            "format": FORMAT_NAME,
            "schema_version": str(SCHEMA_VERSION),
            "catalog_id": str(uuid.uuid4()),
            "created_at": _now().isoformat(),
            "split_seed": str(int(seed)),
            "split_fractions": json.dumps(list(fractions)),
            "block_m": repr(float(block_m)),
            "cell_m": repr(float(cell_m)),
            "landprompt_version": __version__,
        }
        with self.transaction():
            self.con.execute(_SCHEMA)
            self.con.executemany("INSERT INTO meta VALUES (?, ?)", list(meta.items()))

    def _check(self) -> None:
        try:
            meta = dict(self.con.execute("SELECT key, value FROM meta").fetchall())
        except duckdb.Error:
            meta = {}
        if meta.get("format") != FORMAT_NAME:
            self.close()
            raise BadInputError(f"{self.path} is a DuckDB file but not a landprompt pairs catalog")
        if meta.get("schema_version") != str(SCHEMA_VERSION):
            self.close()
            raise BadInputError(
                f"{self.path} has catalog schema version {meta.get('schema_version')}; this landprompt "
                f"reads version {SCHEMA_VERSION}: upgrade landprompt or rebuild the catalog"
            )
        self.meta = meta

    def close(self) -> None:
        """Close the connection."""
        self.con.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- settings --------------------------------------------------------------------------------
    @property
    def catalog_id(self) -> str:
        """The UUID stores and embedding arrays record to stay tied to this catalog."""
        return self.meta["catalog_id"]

    @property
    def split_seed(self) -> int:
        """Seed of the block splits."""
        return int(self.meta["split_seed"])

    @property
    def split_fractions(self) -> tuple[float, float, float]:
        """Train, val, test fractions of blocks."""
        return check_fractions(json.loads(self.meta["split_fractions"]))

    @property
    def block_m(self) -> float:
        """Split block size in metres."""
        return float(self.meta["block_m"])

    @property
    def cell_m(self) -> float:
        """Grid cell size in metres (thinning, ``cell_id``)."""
        return float(self.meta["cell_m"])

    # --- helpers ---------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A transaction: committed when the block ends, rolled back on an exception."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def query_df(self, sql: str, params: Sequence[Any] | None = None, **frames: pd.DataFrame) -> pd.DataFrame:
        """Run a query (with DataFrames registered under the given names) and return a DataFrame."""
        with _registered(self.con, frames):
            return self.con.execute(sql, params or []).df()

    def execute(self, sql: str, params: Sequence[Any] | None = None, **frames: pd.DataFrame) -> None:
        """Run a statement with DataFrames registered under the given names."""
        with _registered(self.con, frames):
            self.con.execute(sql, params or [])

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        """The first value of a query's first row (None when empty)."""
        rows = self.con.execute(sql, params or []).fetchall()
        return rows[0][0] if rows else None

    def counts(self) -> dict[str, int]:
        """Rows per table."""
        tables = ("photos", "locations", "photo_locations", "samples", "splits", "provenance")
        return {t: int(self.scalar(f"SELECT count(*) FROM {t}")) for t in tables}

    # --- provenance and cursors -------------------------------------------------------------------
    def start_ingest(
        self, source: str, input_label: str, input_sha256: str, params: dict[str, Any], licence_note: str
    ) -> int:
        """The provenance row of an ingest: a new one, or the existing one for the same input and filters."""
        text = json.dumps(params, sort_keys=True)
        key = (source, input_sha256, text)
        with self.transaction():
            next_id = int(self.scalar("SELECT coalesce(max(ingest_id), 0) + 1 FROM provenance"))
            self.con.execute(
                "INSERT INTO provenance (ingest_id, source, input, input_sha256, params, licence_note, "
                "started_at, landprompt_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [next_id, source, input_label, input_sha256, text, licence_note, _now(), __version__],
            )
        return int(
            self.scalar(
                "SELECT ingest_id FROM provenance WHERE source = ? AND input_sha256 = ? AND params = ?", key
            )
        )

    def finish_ingest(self, ingest_id: int, counts: dict[str, Any]) -> None:
        """Record the end of an ingest run and its report."""
        self.con.execute(
            "UPDATE provenance SET finished_at = ?, counts = ? WHERE ingest_id = ?",
            [_now(), json.dumps(counts, sort_keys=True), ingest_id],
        )

    def cursor(self, name: str) -> dict[str, Any] | None:
        """The stored resume point of a paged source, or None."""
        value = self.scalar("SELECT value FROM cursors WHERE name = ?", [name])
        return None if value is None else dict(json.loads(value))

    def set_cursor(self, name: str, value: dict[str, Any]) -> None:
        """Store a resume point (inside the caller's transaction, with the rows it covers)."""
        self.con.execute(
            "INSERT INTO cursors VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at",
            [name, json.dumps(value, sort_keys=True), _now()],
        )

    # --- photos and places ------------------------------------------------------------------------
    def known_source_ids(self, source: str, ids: pd.Series) -> np.ndarray:
        """Boolean mask of ``ids`` already in ``photos`` for ``source``."""
        frame = pd.DataFrame({"source_id": ids.astype(str).to_numpy()})
        found = self.query_df(
            "SELECT DISTINCT f.source_id FROM ids f "
            "JOIN photos p ON p.source = ? AND p.source_id = f.source_id",
            [source],
            ids=frame,
        )
        return frame["source_id"].isin(set(found["source_id"])).to_numpy()

    def known_sha256(self, hashes: pd.Series) -> np.ndarray:
        """Boolean mask of photo byte hashes already in ``photos``."""
        frame = pd.DataFrame({"sha256": hashes.astype(object).where(hashes.notna(), None).to_numpy()})
        found = self.query_df(
            "SELECT DISTINCT f.sha256 FROM hashes f JOIN photos p ON p.sha256 = f.sha256", hashes=frame
        )
        return frame["sha256"].isin(set(found["sha256"])).to_numpy()

    def user_photos(self, users: Sequence[str], start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """``user_id``, ``taken_at``, ``lat``, ``lon`` of the catalog photos of ``users`` in [start, end]."""
        frame = pd.DataFrame({"user_id": list(users)})
        return self.query_df(
            "SELECT p.user_id, p.taken_at, p.lat, p.lon FROM photos p JOIN users u USING (user_id) "
            "WHERE p.taken_at BETWEEN ? AND ?",
            [start.to_pydatetime(), end.to_pydatetime()],
            users=frame,
        )

    def cell_counts(self, cells: Sequence[str]) -> dict[str, int]:
        """Photos per cell already in the catalog, for the given cells."""
        frame = pd.DataFrame({"cell_id": list(cells)})
        counts = self.query_df(
            "SELECT p.cell_id, count(*) AS n FROM photos p JOIN cells c USING (cell_id) GROUP BY p.cell_id",
            cells=frame,
        )
        return dict(zip(counts["cell_id"], counts["n"].astype(int), strict=True))

    def insert_photos(self, batch: pd.DataFrame, ingest_id: int) -> tuple[int, int]:
        """Insert new photos, their places, links and split blocks (call inside a transaction).

        Args:
            batch: One source's new photos: the ``photos`` columns except ``photo_id``/``ingest_id``,
                plus ``loc_key``, ``labels``, ``country`` and ``block_id`` (filters already applied;
                rows whose natural key exists are skipped by ``ON CONFLICT DO NOTHING``).
            ingest_id: The provenance row.

        Returns:
            Photos and places added.
        """
        if batch.empty:
            return 0, 0
        batch = batch.reset_index(drop=True)
        before = self.counts()
        first_photo = int(self.scalar("SELECT coalesce(max(photo_id) + 1, 0) FROM photos"))
        photos = batch.assign(photo_id=first_photo + np.arange(len(batch)), ingest_id=ingest_id)
        self.execute(
            f"INSERT INTO photos ({', '.join(PHOTO_COLUMNS)}) SELECT {', '.join(PHOTO_COLUMNS)} FROM new "
            "ON CONFLICT DO NOTHING",
            new=photos[list(PHOTO_COLUMNS)],
        )
        places = batch.drop_duplicates("loc_key")
        source = str(batch["source"].iat[0])
        known = self.query_df(
            "SELECT n.loc_key FROM keys n JOIN locations l ON l.source = ? AND l.loc_key = n.loc_key",
            [source],
            keys=places[["loc_key"]],
        )
        places = places[~places["loc_key"].isin(set(known["loc_key"]))]
        first_loc = int(self.scalar("SELECT coalesce(max(loc_id) + 1, 0) FROM locations"))
        places = places.assign(loc_id=first_loc + np.arange(len(places)), ingest_id=ingest_id)
        self.execute(
            f"INSERT INTO locations ({', '.join(LOCATION_COLUMNS)}) SELECT {', '.join(LOCATION_COLUMNS)} "
            "FROM new ON CONFLICT DO NOTHING",
            new=places[list(LOCATION_COLUMNS)],
        )
        self.execute(
            "INSERT INTO photo_locations SELECT p.photo_id, l.loc_id FROM new n "
            "JOIN photos p ON p.source = n.source AND p.source_id = n.source_id "
            "JOIN locations l ON l.source = n.source AND l.loc_key = n.loc_key ON CONFLICT DO NOTHING",
            new=batch[["source", "source_id", "loc_key"]],
        )
        self._add_blocks(places["block_id"].unique())
        after = self.counts()
        return after["photos"] - before["photos"], after["locations"] - before["locations"]

    def _add_blocks(self, blocks: Sequence[str]) -> None:
        known = set(self.query_df("SELECT block_id FROM splits")["block_id"]) if len(blocks) else set()
        rows = [(b, *block_split(b, self.split_seed, self.split_fractions)) for b in blocks if b not in known]
        if rows:
            frame = pd.DataFrame(rows, columns=["block_id", "split", "u"])
            self.execute("INSERT INTO splits SELECT * FROM new ON CONFLICT DO NOTHING", new=frame)

    # --- samples ---------------------------------------------------------------------------------
    def next_store_row(self) -> int:
        """The first store row not yet given to a sample."""
        return int(self.scalar("SELECT coalesce(max(store_row) + 1, 0) FROM samples"))

    def add_samples(self, samples: pd.DataFrame) -> int:
        """Insert planned samples (``loc_id``, ``year``, ``store_row``, ``part``) as pending; return added."""
        if samples.empty:
            return 0
        before = int(self.scalar("SELECT count(*) FROM samples"))
        with self.transaction():
            self.execute(
                "INSERT INTO samples (loc_id, year, store_row, part, status, updated_at) "
                "SELECT loc_id, year, store_row, part, 'pending', now() FROM new ON CONFLICT DO NOTHING",
                new=samples[["loc_id", "year", "store_row", "part"]],
            )
        return int(self.scalar("SELECT count(*) FROM samples")) - before

    def samples_with_status(self, statuses: Sequence[str]) -> pd.DataFrame:
        """Samples in the given statuses with their place: store_row, year, part, lat, lon (by store row)."""
        frame = pd.DataFrame({"status": list(statuses)})
        return self.query_df(
            "SELECT s.store_row, s.year, s.part, l.lat, l.lon FROM samples s JOIN locations l USING (loc_id) "
            "JOIN wanted w ON w.status = s.status ORDER BY s.store_row",
            wanted=frame,
        )

    def mark_samples(
        self, rows: Sequence[int] | np.ndarray, statuses: Sequence[str], errors: Sequence[str | None]
    ) -> None:
        """Set the status (and error) of samples by store row, in one transaction."""
        bad = set(statuses) - set(SAMPLE_STATUSES)
        if bad:
            raise ValueError(f"unknown sample status {sorted(bad)}")
        frame = pd.DataFrame(
            {"store_row": np.asarray(rows, np.int64), "status": list(statuses), "error": list(errors)}
        )
        with self.transaction():
            self.execute(
                "UPDATE samples SET status = u.status, error = u.error, updated_at = now() "
                "FROM upd u WHERE samples.store_row = u.store_row",
                upd=frame,
            )

    # --- photo embeddings ------------------------------------------------------------------------
    def set_photo_status(
        self, photo_ids: Sequence[int] | np.ndarray, statuses: Sequence[str], errors: Sequence[str | None]
    ) -> None:
        """Set ``embed_status`` (and error) of photos by id, in one transaction."""
        bad = set(statuses) - set(PHOTO_STATUSES)
        if bad:
            raise ValueError(f"unknown photo status {sorted(bad)}")
        frame = pd.DataFrame(
            {"photo_id": np.asarray(photo_ids, np.int64), "status": list(statuses), "error": list(errors)}
        )
        with self.transaction():
            self.execute(
                "UPDATE photos SET embed_status = u.status, embed_error = u.error FROM upd u "
                "WHERE photos.photo_id = u.photo_id",
                upd=frame,
            )


@contextmanager
def _registered(con: duckdb.DuckDBPyConnection, frames: dict[str, pd.DataFrame]) -> Iterator[None]:
    for name, frame in frames.items():
        con.register(name, frame)
    try:
        yield
    finally:
        for name in frames:
            con.unregister(name)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
