"""Fetch: plan one sample per place and year, read its chips partition by partition, fill the store.

1. **Plan** (:func:`plan_samples`): every place gets a sample for each year its photos were taken in
   (clamped to ``min_year`` = 2017, the first full year of Sentinel-1/2 together, and to ``max_year``),
   or for one ``year`` given for all. Photos without a year use ``default_year`` (or give no sample).
   New samples get their store rows now, ordered by partition (UTM zone, 100 km square, year) and by
   position inside it, so a partition's rows are contiguous and nearby places are nearby rows. The
   store grows to hold them and records their ``latlon``, ``year`` and ``months``.
2. **Read**: pending samples are grouped into tasks: one partition each, split into pieces of at most
   ``task_rows`` samples. A task opens each file (COG) of its partition once and reads all its chips
   (:mod:`landprompt.eo.chips`); tasks run here one after the other, or on a Dask cluster
   (``scheduler="local"`` or an address), and return arrays, not files.
3. **Write**: this process writes finished tasks to the store in batches of about ``batch_rows`` rows
   and only then marks them ``done`` (any valid month) or ``no_data`` in the catalog; a task that fails
   marks its samples ``failed`` with the error. Killed at any point, a rerun plans nothing new,
   fetches only pending samples and ends with the same arrays as an uninterrupted run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from landprompt import checks
from landprompt.distributed import run_each
from landprompt.eo.chips import ChipReader, ChipSet, chip_reader
from landprompt.eo.source import SceneSource
from landprompt.errors import BadInputError
from landprompt.pairs.catalog import Catalog
from landprompt.pairs.cells import partition_epsg, partition_keys
from landprompt.pairs.store import DEFAULT_CHIP, DEFAULT_CHUNK_ROWS, ChipArrays, SampleStore
from landprompt.progress import progress_bar

MIN_YEAR = 2017
"""First full year with both Sentinel-1 (A+B) and Sentinel-2 (A+B) data."""


@dataclass(frozen=True, eq=False)
class FetchTask:
    """The pending samples of one partition piece (picklable: numbers only)."""

    part: str
    year: int
    rows: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    chip: int = DEFAULT_CHIP

    def chips(self) -> ChipSet:
        """The samples' chips in the partition's UTM zone."""
        return ChipSet.around(self.lon, self.lat, self.chip, epsg=partition_epsg(self.part))


@dataclass(frozen=True, eq=False)
class TaskResult:
    """A finished task: store-ready chips and a status per row, or the error that failed them all."""

    rows: np.ndarray
    chips: ChipArrays | None
    statuses: list[str]
    error: str | None = None
    seconds: float = 0.0


@dataclass
class FetchReport:
    """What a fetch planned, wrote and marked."""

    planned: int = 0
    pending: int = 0
    done: int = 0
    no_data: int = 0
    failed: int = 0
    batches: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report (with chips per second)."""
        rate = (self.done + self.no_data) / self.seconds if self.seconds else 0.0
        return {**self.__dict__, "chips_per_s": round(rate, 2)}


def plan_samples(
    catalog: Catalog,
    *,
    year: int | None = None,
    min_year: int = MIN_YEAR,
    max_year: int | None = None,
    default_year: int | None = None,
) -> pd.DataFrame:
    """Add the samples places still lack (step 1 of the module docstring).

    Returns:
        The new samples: ``store_row``, ``loc_id``, ``year``, ``part``, ``lat``, ``lon``, by store row.
    """
    if year is not None and year < min_year:
        raise BadInputError(f"year {year} is before {min_year}: Sentinel-1/2 composites start then")
    photos = catalog.query_df(
        "SELECT DISTINCT l.loc_id, l.lat, l.lon, p.year AS photo_year FROM locations l "
        "JOIN photo_locations USING (loc_id) JOIN photos p USING (photo_id)"
    )
    if year is not None:
        years = pd.Series(year, index=photos.index, dtype="Int64")
    else:
        years = photos["photo_year"].astype("Int64")
        if default_year is not None:
            years = years.fillna(default_year)
        years = years.clip(lower=min_year, upper=max_year)
    wanted = photos.assign(year=years).dropna(subset=["year"]).drop_duplicates(["loc_id", "year"])
    wanted = wanted.astype({"year": np.int64})
    known = catalog.query_df("SELECT loc_id, year FROM samples").astype({"year": np.int64})
    wanted = wanted.merge(known, on=["loc_id", "year"], how="left", indicator=True)
    wanted = wanted[wanted["_merge"] == "left_only"].drop(columns="_merge")
    if wanted.empty:
        return wanted.assign(store_row=[], part=[])[["store_row", "loc_id", "year", "part", "lat", "lon"]]
    part, order = partition_keys(
        wanted["lon"].to_numpy(), wanted["lat"].to_numpy(), wanted["year"].to_numpy()
    )
    wanted = wanted.assign(part=part, order=order).sort_values(["part", "order", "loc_id"], kind="stable")
    wanted["store_row"] = catalog.next_store_row() + np.arange(len(wanted))
    new = wanted[["store_row", "loc_id", "year", "part", "lat", "lon"]].reset_index(drop=True)
    catalog.add_samples(new)
    return new


def make_tasks(pending: pd.DataFrame, chip: int, task_rows: int) -> list[FetchTask]:
    """Tasks of pending samples: one per partition piece of at most ``task_rows``, in store-row order.

    Args:
        pending: ``store_row``, ``year``, ``part``, ``lat``, ``lon`` of the samples.
        chip: Chip size in pixels.
        task_rows: Most samples per task.
    """
    if task_rows < 1:
        raise BadInputError(f"task_rows must be >= 1, got {task_rows}")
    tasks = []
    for part, group in pending.sort_values("store_row").groupby("part", sort=False):
        for start in range(0, len(group), task_rows):
            piece = group.iloc[start : start + task_rows]
            tasks.append(
                FetchTask(
                    str(part),
                    int(piece["year"].iat[0]),
                    piece["store_row"].to_numpy(np.int64),
                    piece["lon"].to_numpy(float),
                    piece["lat"].to_numpy(float),
                    chip,
                )
            )
    return tasks


def run_task(task: FetchTask, reader: ChipReader) -> TaskResult:
    """Read one task's chips; any exception fails the task's samples with a one-line error."""
    start = time.perf_counter()
    try:
        s2, s1 = reader.read(task.chips(), task.year)
        chips = ChipArrays.from_float(s2, s1)
    except Exception as exc:
        message = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500]
        return TaskResult(task.rows, None, ["failed"] * len(task.rows), message, time.perf_counter() - start)
    statuses = ["done" if v else "no_data" for v in np.asarray(chips.valid.any(axis=(1, 2))).tolist()]
    return TaskResult(task.rows, chips, statuses, None, time.perf_counter() - start)


def fetch_samples(
    catalog: Catalog,
    store: str | Path,
    source: SceneSource | ChipReader,
    *,
    year: int | None = None,
    max_year: int | None = None,
    default_year: int | None = None,
    chip: int = DEFAULT_CHIP,
    task_rows: int = 500,
    batch_rows: int = DEFAULT_CHUNK_ROWS,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    scheduler: str | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    on_batch: Callable[[FetchReport], None] | None = None,
) -> FetchReport:
    """Plan, read and store the samples of a catalog (the module docstring's three steps).

    Args:
        catalog: An open, writable catalog.
        store: The sample store path (created on first use; tied to this catalog).
        source: Scene source (``open_source(...)``) or a chip reader.
        year: One satellite year for every place (default: each photo's year).
        max_year: Latest satellite year (later photo years are clamped to it).
        default_year: Year of photos without a date.
        chip: Chip size in pixels (fixed per store).
        task_rows: Most samples per task.
        batch_rows: Rows written (and marked) together.
        chunk_rows: Store chunk rows (new stores only).
        scheduler: None to read here, ``"local"`` or a Dask scheduler address.
        retry_failed: Fetch failed samples again.
        progress: Show a progress bar.
        on_batch: Called with the running report after each committed batch.
    """
    if year is not None and year < MIN_YEAR:  # checked before the store is created
        raise BadInputError(f"year {year} is before {MIN_YEAR}: Sentinel-1/2 composites start then")
    for name, value in (("chip", chip), ("task_rows", task_rows), ("batch_rows", batch_rows)):
        checks.count(name, value)
    started = time.perf_counter()
    report = FetchReport()
    sample_store = SampleStore.open_or_create(store, chip, catalog.catalog_id, chunk_rows)
    new = plan_samples(catalog, year=year, max_year=max_year, default_year=default_year)
    report.planned = len(new)
    sample_store.resize(max(catalog.next_store_row(), sample_store.n_rows))
    if not new.empty:
        sample_store.write_places(
            new["store_row"], new["lat"].to_numpy(), new["lon"].to_numpy(), new["year"].to_numpy()
        )
    statuses = ("pending", "failed") if retry_failed else ("pending",)
    pending = catalog.samples_with_status(statuses)
    if year is not None:
        pending = pending[pending["year"] == year]
    report.pending = len(pending)
    tasks = make_tasks(pending, chip, task_rows)
    reader = chip_reader(source) if not isinstance(source, ChipReader) else source
    buffer: list[TaskResult] = []
    with progress_bar("fetching chips", report.pending, progress) as advance:
        for result in run_each(run_task, tasks, scheduler, reader=reader):
            buffer.append(result)
            advance(len(result.rows))
            if sum(len(r.rows) for r in buffer) >= batch_rows:
                _commit(buffer, sample_store, catalog, report, on_batch)
                buffer = []
        if buffer:
            _commit(buffer, sample_store, catalog, report, on_batch)
    report.seconds = time.perf_counter() - started
    return report


def _commit(
    results: list[TaskResult],
    store: SampleStore,
    catalog: Catalog,
    report: FetchReport,
    on_batch: Callable[[FetchReport], None] | None,
) -> None:
    """Write a batch's arrays, then mark its samples (so nothing is marked before it is on disk)."""
    written = [r for r in results if r.chips is not None]
    if written:
        rows = np.concatenate([r.rows for r in written])
        chips = ChipArrays(
            *(np.concatenate([getattr(r.chips, n) for r in written]) for n in ("s2", "s1", "valid"))
        )
        store.write_chips(rows, chips)
    rows = np.concatenate([r.rows for r in results])
    statuses = [s for r in results for s in r.statuses]
    errors = [r.error for r in results for _ in r.rows]
    catalog.mark_samples(rows, statuses, errors)
    report.done += statuses.count("done")
    report.no_data += statuses.count("no_data")
    report.failed += statuses.count("failed")
    for error in (r.error for r in results if r.error):
        if error not in report.errors and len(report.errors) < 20:
            report.errors.append(error)
    report.batches += 1
    if on_batch is not None:
        on_batch(report)
