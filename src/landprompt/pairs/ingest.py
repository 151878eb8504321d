"""Ingest: a photo source's batches, filtered, into the catalog; idempotent and resumable.

Every batch goes through these rules, in order; each dropped row is counted under its reason in the
:class:`IngestReport`:

1. ``no_coordinates``: latitude or longitude missing or out of range.
2. ``outside_europe``: outside :data:`landprompt.geo.EUROPE_BBOX`.
3. ``licence``: rejected by the ``--licence`` filter (:class:`~landprompt.pairs.licences.LicenceFilter`).
4. ``duplicate_id``: the same source id earlier in the input.
5. ``already_in_catalog``: the source id is in the catalog (so ingesting twice adds nothing).
6. ``duplicate_bytes``: the same photo bytes (sha256, when known) earlier or in the catalog.
7. ``burst``: the same user took a kept photo within ``burst_m`` metres and ``burst_minutes`` minutes
   (kept photos of earlier batches and ingests count): one photo per burst is kept, the earliest.
8. ``thinned``: the 1 km cell already holds ``max_per_cell`` photos; within a cell, photos are taken in
   the order of a hash of their source id (an even spread over users and times, reproducible).

Sources add their own reasons (``video``, ``low_accuracy``, ``bad_row``, ``no_photo``). A batch and
its cursor are committed in one transaction, so a stopped ingest resumes after its last batch.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from landprompt.errors import BadInputError
from landprompt.geo import EUROPE_BBOX
from landprompt.pairs.catalog import Catalog
from landprompt.pairs.cells import cell_names, laea_xy
from landprompt.pairs.licences import LicenceFilter
from landprompt.pairs.sources.base import PhotoSource, to_json

SKIP_REASONS = (
    "no_coordinates",
    "outside_europe",
    "licence",
    "duplicate_id",
    "already_in_catalog",
    "duplicate_bytes",
    "burst",
    "thinned",
)


@dataclass(frozen=True)
class IngestOptions:
    """Filters of an ingest (recorded in the provenance).

    Args:
        licences: Licences to keep; None keeps all.
        burst_m: Burst radius in metres (0 disables burst thinning).
        burst_minutes: Burst duration in minutes.
        max_per_cell: Most photos per catalog cell (1 km); None disables thinning.
    """

    licences: LicenceFilter | None = None
    burst_m: float = 100.0
    burst_minutes: float = 15.0
    max_per_cell: int | None = None

    def __post_init__(self) -> None:
        if self.burst_m < 0 or self.burst_minutes < 0:
            raise BadInputError("burst distance and duration must be >= 0")
        if self.max_per_cell is not None and self.max_per_cell < 1:
            raise BadInputError(f"max_per_cell must be >= 1, got {self.max_per_cell}")

    def params(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return {
            "licences": list(self.licences.terms) if self.licences else None,
            "burst_m": self.burst_m,
            "burst_minutes": self.burst_minutes,
            "max_per_cell": self.max_per_cell,
        }


@dataclass
class IngestReport:
    """What an ingest read, added and skipped."""

    source: str
    input: str
    ingest_id: int
    read: int = 0
    added_photos: int = 0
    added_locations: int = 0
    batches: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report."""
        return {
            "source": self.source,
            "input": self.input,
            "ingest_id": self.ingest_id,
            "read": self.read,
            "added_photos": self.added_photos,
            "added_locations": self.added_locations,
            "batches": self.batches,
            "skipped": {k: v for k, v in sorted(self.skipped.items()) if v},
        }


def ingest(
    catalog: Catalog,
    source: PhotoSource,
    options: IngestOptions | None = None,
    on_batch: Callable[[IngestReport], None] | None = None,
) -> IngestReport:
    """Read a source into the catalog by the rules of the module docstring.

    Args:
        catalog: An open, writable catalog.
        source: The photo source.
        options: Filters (default: all licences, 100 m / 15 min bursts, no thinning).
        on_batch: Called with the running report after each committed batch.

    Returns:
        The report (also stored in the provenance row).
    """
    options = options or IngestOptions()
    label, digest = source.describe()
    ingest_id = catalog.start_ingest(
        source.name, label, digest, {**options.params(), **source.params()}, source.licence_note
    )
    report = IngestReport(source.name, label, ingest_id)
    cursor = catalog.cursor(source.cursor_name) if source.cursor_name else None
    for batch in source.batches(cursor):
        skipped: Counter[str] = Counter({k: v for k, v in batch.skipped.items() if v})
        report.read += len(batch.frame) + sum(batch.skipped.values())
        rows = filter_batch(batch.frame, source.name, catalog, options, skipped)
        with catalog.transaction():
            photos, places = catalog.insert_photos(rows, ingest_id)
            if batch.cursor is not None and source.cursor_name:
                catalog.set_cursor(source.cursor_name, batch.cursor)
        report.added_photos += photos
        report.added_locations += places
        report.skipped.update(skipped)
        report.batches += 1
        if on_batch is not None:
            on_batch(report)
    catalog.finish_ingest(ingest_id, report.to_dict())
    return report


def filter_batch(
    frame: pd.DataFrame, source: str, catalog: Catalog, options: IngestOptions, skipped: Counter[str]
) -> pd.DataFrame:
    """Apply rules 1-8 to one batch; returns the rows to insert (with cell, block and JSON columns)."""
    box = EUROPE_BBOX
    checks: list[tuple[str, Callable[[pd.DataFrame], np.ndarray]]] = [
        (
            "no_coordinates",
            lambda f: (
                ~(
                    np.isfinite(f["lat"])
                    & np.isfinite(f["lon"])
                    & (f["lat"].abs() <= 90)
                    & (f["lon"].abs() <= 180)
                ).to_numpy()
            ),
        ),
        (
            "outside_europe",
            lambda f: (
                ~(
                    f["lon"].between(box.minlon, box.maxlon) & f["lat"].between(box.minlat, box.maxlat)
                ).to_numpy()
            ),
        ),
        ("licence", lambda f: _licence_mask(f, options.licences)),
        ("duplicate_id", lambda f: f["source_id"].duplicated().to_numpy()),
        ("already_in_catalog", lambda f: catalog.known_source_ids(source, f["source_id"])),
        ("duplicate_bytes", lambda f: _byte_duplicates(f, catalog)),
    ]
    for reason, check in checks:
        if frame.empty:
            break
        drop = np.asarray(check(frame), dtype=bool)
        skipped[reason] += int(drop.sum())
        frame = frame[~drop]
    if frame.empty:
        return _finish(frame, source, catalog)
    frame = _with_cells(frame, catalog)
    if options.burst_m > 0 and options.burst_minutes > 0:
        drop = burst_mask(frame, catalog, options.burst_m, options.burst_minutes)
        skipped["burst"] += int(drop.sum())
        frame = frame[~drop]
    if options.max_per_cell is not None and not frame.empty:
        drop = thin_mask(frame, catalog.cell_counts(frame["cell_id"].unique().tolist()), options.max_per_cell)
        skipped["thinned"] += int(drop.sum())
        frame = frame[~drop]
    return _finish(frame, source, catalog)


def _licence_mask(frame: pd.DataFrame, licences: LicenceFilter | None) -> np.ndarray:
    if licences is None:
        return np.zeros(len(frame), dtype=bool)
    return ~np.array([licences.accepts(str(v)) for v in frame["licence"]], dtype=bool)


def _byte_duplicates(frame: pd.DataFrame, catalog: Catalog) -> np.ndarray:
    known = frame["sha256"].notna().to_numpy()
    if not known.any():
        return np.zeros(len(frame), dtype=bool)
    earlier = frame["sha256"].duplicated().to_numpy() & known
    return earlier | (catalog.known_sha256(frame["sha256"]) & known)


def _with_cells(frame: pd.DataFrame, catalog: Catalog) -> pd.DataFrame:
    x, y = laea_xy(frame["lon"].to_numpy(float), frame["lat"].to_numpy(float))
    return frame.assign(
        x=x, y=y, cell_id=cell_names(x, y, catalog.cell_m), block_id=cell_names(x, y, catalog.block_m)
    )


def _finish(frame: pd.DataFrame, source: str, catalog: Catalog) -> pd.DataFrame:
    """The insertable batch: source name, JSON columns, cells (for empty frames too)."""
    if "cell_id" not in frame:
        frame = _with_cells(frame, catalog) if not frame.empty else frame.assign(cell_id=[], block_id=[])
    return frame.assign(source=source, metadata=to_json(frame["metadata"]), labels=to_json(frame["labels"]))


def burst_mask(frame: pd.DataFrame, catalog: Catalog, metres: float, minutes: float) -> np.ndarray:
    """True for photos of a burst other than its first (rule 7); needs ``x``, ``y`` (EPSG:3035) columns.

    Greedy in capture order per user: a photo is dropped when a kept photo of the same user (this batch
    or the catalog) lies within ``metres`` and ``minutes`` of it.
    """
    drop = np.zeros(len(frame), dtype=bool)
    timed = frame["user_id"].notna().to_numpy() & frame["taken_at"].notna().to_numpy()
    if not timed.any():
        return drop
    window = pd.Timedelta(minutes=minutes)
    new = frame[timed]
    old = catalog.user_photos(
        new["user_id"].unique().tolist(), new["taken_at"].min() - window, new["taken_at"].max() + window
    )
    ox, oy = laea_xy(old["lon"].to_numpy(float), old["lat"].to_numpy(float))
    kept: dict[str, list[tuple[np.int64, float, float]]] = {}
    for user, t, x, y in zip(
        old["user_id"], old["taken_at"].to_numpy("datetime64[us]").astype(np.int64), ox, oy, strict=True
    ):
        kept.setdefault(user, []).append((t, x, y))
    span = int(window / pd.Timedelta(microseconds=1))
    positions = np.flatnonzero(timed)
    times = new["taken_at"].to_numpy("datetime64[us]").astype(np.int64)
    order = np.lexsort((np.arange(len(new)), times, new["user_id"].to_numpy(str)))
    for i in order:
        user, t, x, y = new["user_id"].iat[i], times[i], new["x"].iat[i], new["y"].iat[i]
        mine = kept.setdefault(user, [])
        if any(abs(t - kt) <= span and np.hypot(x - kx, y - ky) <= metres for kt, kx, ky in mine):
            drop[positions[i]] = True
        else:
            mine.append((t, x, y))
    return drop


def thin_mask(frame: pd.DataFrame, existing: dict[str, int], k: int) -> np.ndarray:
    """True for photos beyond ``k`` per cell (rule 8), counting ``existing`` catalog photos per cell."""
    draw = [int.from_bytes(hashlib.sha256(str(s).encode()).digest()[:8], "big") for s in frame["source_id"]]
    ranked = pd.DataFrame({"cell": frame["cell_id"].to_numpy(), "draw": draw, "pos": np.arange(len(frame))})
    ranked = ranked.sort_values(["cell", "draw", "pos"])
    ranked["rank"] = ranked.groupby("cell").cumcount() + ranked["cell"].map(existing).fillna(0).astype(int)
    drop = np.zeros(len(frame), dtype=bool)
    drop[ranked["pos"].to_numpy()[ranked["rank"].to_numpy() >= k]] = True
    return drop
