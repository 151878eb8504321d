"""``landprompt pairs``: photos -> catalog, S1/S2 chip time series -> sample store, photo embeddings."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.table import Table

from landprompt.cli.common import (
    BBoxArgument,
    ClipOption,
    RequiredPretrainedOption,
    check_outputs,
    console,
    named_clip,
    sub_app,
)

if TYPE_CHECKING:
    from landprompt.eo.stac import StacSource
    from landprompt.pairs.ingest import IngestReport
    from landprompt.pairs.sources.base import PhotoSource

app = sub_app(
    "Paired data: photos -> DuckDB catalog, S1/S2 chip time series -> sample store, CLIP embeddings."
)
ingest_app = sub_app("Read a photo source into the catalog (idempotent: ingesting twice adds nothing).")
app.add_typer(ingest_app, name="ingest")

CatalogOption = Annotated[Path, typer.Option("--catalog", help="The pairs catalog (DuckDB file).")]
InputArgument = Annotated[Path, typer.Argument(help="Input file.")]
LicenceOption = Annotated[
    list[str] | None,
    typer.Option(
        "--licence", help="Keep only these licences (repeat): CC-BY, CC0, PDM, 'CC-BY*', public-domain, open."
    ),
]
BurstMetresOption = Annotated[
    float, typer.Option("--burst-metres", min=0.0, help="Burst radius (0: no burst thinning).")
]
BurstMinutesOption = Annotated[
    float, typer.Option("--burst-minutes", min=0.0, help="Burst duration in minutes.")
]
MaxPerCellOption = Annotated[
    int | None, typer.Option("--max-per-cell", min=1, help="Most photos per 1 km cell.")
]
SplitSeedOption = Annotated[
    int, typer.Option("--split-seed", help="Seed of the spatial splits (new catalogs).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the report as one JSON line.")]
NoHashOption = Annotated[
    bool, typer.Option("--no-hash", help="Do not hash local photo files (no byte dedupe).")
]
AccuracyOption = Annotated[
    int, typer.Option("--min-accuracy", min=1, max=16, help="Lowest Flickr geo accuracy (16 street).")
]


def _ingest(
    catalog: Path,
    source: PhotoSource,
    licence: list[str] | None,
    burst_metres: float,
    burst_minutes: float,
    max_per_cell: int | None,
    split_seed: int,
    as_json: bool,
) -> None:
    from landprompt.errors import BadInputError
    from landprompt.pairs.catalog import Catalog
    from landprompt.pairs.ingest import IngestOptions, ingest
    from landprompt.pairs.licences import LicenceFilter

    options = IngestOptions(LicenceFilter.parse(licence), burst_metres, burst_minutes, max_per_cell)
    check_outputs(catalog)
    created = not catalog.exists()
    try:
        with Catalog.open(catalog, split_seed=split_seed) as cat:
            report = ingest(cat, source, options)
            if report.read == report.skipped.get("bad_row", 0):
                raise BadInputError(
                    f"{report.input}: none of its {report.read} rows reads as {report.source} data "
                    "(empty, or another kind of file): give the right file"
                )
            counts = cat.counts()
    except BaseException:
        if created and not _holds_photos(catalog):  # no empty catalog left to block the corrected run;
            for path in (catalog, catalog.with_name(catalog.name + ".wal")):  # committed batches are kept
                path.unlink(missing_ok=True)
        raise
    _print_report(report, counts, as_json)


def _holds_photos(catalog: Path) -> bool:
    """Whether a catalog a failed ingest leaves behind already holds committed photos (a resumable run)."""
    from landprompt.pairs.catalog import Catalog

    if not catalog.exists():
        return False
    try:
        with Catalog.open(catalog, read_only=True, create=False) as cat:
            return int(cat.scalar("SELECT count(*) FROM photos")) > 0
    except Exception:  # unreadable: nothing worth keeping was committed
        return False


def _print_report(report: IngestReport, counts: dict[str, int], as_json: bool) -> None:
    if as_json:
        print(json.dumps({**report.to_dict(), "catalog": counts}))
        return
    table = Table(title=f"ingest {report.source}: {report.input}", show_header=False)
    table.add_row("rows read", f"{report.read:,}")
    table.add_row("photos added", f"{report.added_photos:,}")
    table.add_row("places added", f"{report.added_locations:,}")
    for reason, n in sorted(report.skipped.items()):
        if n:
            table.add_row(f"skipped: {reason}", f"{n:,}")
    table.add_row("catalog", ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    console.print(table)


@ingest_app.command("lucas")
def ingest_lucas(
    path: InputArgument,
    catalog: CatalogOption,
    photos_root: Annotated[
        Path | None, typer.Option(help="Folder of the photos (default: the table's).")
    ] = None,
    max_gps_offset: Annotated[float, typer.Option(help="Largest plausible GPS offset in metres.")] = 1000.0,
    licence: LicenceOption = None,
    burst_metres: BurstMetresOption = 100.0,
    burst_minutes: BurstMinutesOption = 15.0,
    max_per_cell: MaxPerCellOption = None,
    split_seed: SplitSeedOption = 0,
    no_hash: NoHashOption = False,
    as_json: JsonOption = False,
) -> None:
    """A LUCAS survey table (e.g. metadata_2018.csv) and its N/S/E/W/point/cover photos.

    Examples:
        landprompt pairs ingest lucas metadata_2018.csv --catalog pairs.duckdb
    """
    from landprompt.pairs.sources import LucasSource

    source = LucasSource(path, photos_root, max_gps_offset, hash_files=not no_hash)
    _ingest(catalog, source, licence, burst_metres, burst_minutes, max_per_cell, split_seed, as_json)


@ingest_app.command("yfcc")
def ingest_yfcc(
    path: InputArgument,
    catalog: CatalogOption,
    min_accuracy: AccuracyOption = 14,
    licence: LicenceOption = None,
    burst_metres: BurstMetresOption = 100.0,
    burst_minutes: BurstMinutesOption = 15.0,
    max_per_cell: MaxPerCellOption = None,
    split_seed: SplitSeedOption = 0,
    as_json: JsonOption = False,
) -> None:
    """A YFCC100M metadata dump (tab-separated, 25 columns; .bz2/.gz/.xz read as they are).

    Examples:
        landprompt pairs ingest yfcc yfcc100m_dataset.bz2 --catalog pairs.duckdb --licence CC-BY --licence CC0
    """
    from landprompt.pairs.sources import YfccSource

    source = YfccSource(path, min_accuracy=min_accuracy)
    _ingest(catalog, source, licence, burst_metres, burst_minutes, max_per_cell, split_seed, as_json)


@ingest_app.command("flickr")
def ingest_flickr(
    bbox: BBoxArgument,
    catalog: CatalogOption,
    min_taken: Annotated[str | None, typer.Option(help="Earliest capture date YYYY-MM-DD.")] = None,
    max_taken: Annotated[str | None, typer.Option(help="Latest capture date YYYY-MM-DD.")] = None,
    per_page: Annotated[int, typer.Option(min=1, max=500, help="Photos per page (at most 500).")] = 250,
    max_pages: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many pages (resume later).")
    ] = None,
    rate: Annotated[float, typer.Option(help="API requests per second.")] = 1.0,
    api_licences: Annotated[
        str | None, typer.Option(help="Flickr licence ids to ask for, e.g. 4,9,10.")
    ] = None,
    min_accuracy: AccuracyOption = 14,
    licence: LicenceOption = None,
    burst_metres: BurstMetresOption = 100.0,
    burst_minutes: BurstMinutesOption = 15.0,
    max_per_cell: MaxPerCellOption = None,
    split_seed: SplitSeedOption = 0,
    as_json: JsonOption = False,
) -> None:
    """Geotagged photos from the Flickr API (key in $FLICKR_API_KEY); rerun to resume.

    Examples:
        landprompt pairs ingest flickr 11.0,43.1,11.5,43.5 --catalog pairs.duckdb --licence CC-BY
    """
    from landprompt.pairs.http import TokenBucket
    from landprompt.pairs.sources import FlickrSource

    source = FlickrSource(
        bbox,
        min_taken=min_taken,
        max_taken=max_taken,
        per_page=per_page,
        max_pages=max_pages,
        min_accuracy=min_accuracy,
        licences=api_licences,
        bucket=TokenBucket(rate=rate, capacity=max(1.0, 5 * rate)),
    )
    _ingest(catalog, source, licence, burst_metres, burst_minutes, max_per_cell, split_seed, as_json)


@ingest_app.command("table")
def ingest_table(
    path: InputArgument,
    catalog: CatalogOption,
    lat: Annotated[str, typer.Option("--lat", help="Latitude column.")] = "lat",
    lon: Annotated[str, typer.Option("--lon", help="Longitude column.")] = "lon",
    id_col: Annotated[str | None, typer.Option("--id", help="Photo id column.")] = None,
    time_col: Annotated[str | None, typer.Option("--time", help="Capture time column.")] = None,
    path_col: Annotated[str | None, typer.Option("--path", help="Local photo path column.")] = None,
    url_col: Annotated[str | None, typer.Option("--url", help="Photo URL column.")] = None,
    licence_col: Annotated[str | None, typer.Option("--licence-column", help="Licence column.")] = None,
    author_col: Annotated[str | None, typer.Option("--author", help="Author column.")] = None,
    user_col: Annotated[
        str | None, typer.Option("--user", help="User id column (bursts are per user).")
    ] = None,
    title_col: Annotated[str | None, typer.Option("--title", help="Title column.")] = None,
    tags_col: Annotated[str | None, typer.Option("--tags", help="Tags column.")] = None,
    name: Annotated[str | None, typer.Option(help="Source name: table:<name> (default: file stem).")] = None,
    default_licence: Annotated[str | None, typer.Option(help="Licence of rows without one.")] = None,
    licence: LicenceOption = None,
    burst_metres: BurstMetresOption = 100.0,
    burst_minutes: BurstMinutesOption = 15.0,
    max_per_cell: MaxPerCellOption = None,
    split_seed: SplitSeedOption = 0,
    no_hash: NoHashOption = False,
    as_json: JsonOption = False,
) -> None:
    """Any CSV/TSV/Parquet table with latitude and longitude (+ time, path/url, licence ...).

    Examples:
        landprompt pairs ingest table my_photos.parquet --catalog pairs.duckdb
    """
    from landprompt.pairs.sources import TableColumns, TableSource

    columns = TableColumns(
        lat, lon, id_col, time_col, path_col, url_col, licence_col, author_col, user_col, title_col, tags_col
    )
    source = TableSource(path, columns, name=name, licence=default_licence, hash_files=not no_hash)
    _ingest(catalog, source, licence, burst_metres, burst_minutes, max_per_cell, split_seed, as_json)


@app.command("fetch")
def fetch(
    catalog: CatalogOption,
    store: Annotated[Path, typer.Option("--store", help="The sample store (.zarr), created on first use.")],
    source: Annotated[
        str,
        typer.Option(
            "--source", help="pc, earth-search, stac:URL, a static catalog.json, or a local stack path."
        ),
    ] = "pc",
    year: Annotated[
        int | None, typer.Option(help="One satellite year for all places (default: photo years).")
    ] = None,
    max_year: Annotated[
        int | None, typer.Option(help="Latest satellite year (default: last full year).")
    ] = None,
    default_year: Annotated[int | None, typer.Option(help="Year of photos without a date.")] = None,
    chip: Annotated[int, typer.Option(min=1, help="Chip size in 10 m pixels.")] = 5,
    task_rows: Annotated[int, typer.Option(min=1, help="Most samples per task.")] = 500,
    batch_rows: Annotated[int, typer.Option(min=1, help="Samples written and marked together.")] = 256,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address, or 'local'.")] = None,
    dilate: Annotated[int, typer.Option(min=0, help="Grow cloud/shadow masks by N pixels.")] = 0,
    items: Annotated[
        list[Path] | None,
        typer.Option("--items", help="stac-geoparquet item tables (repeat), searched instead of --source."),
    ] = None,
    sign: Annotated[
        Literal["pc", "none"], typer.Option(help="Sign item hrefs: 'pc' (Planetary Computer) or 'none'.")
    ] = "none",
    retry_failed: Annotated[bool, typer.Option(help="Fetch failed samples again.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    as_json: JsonOption = False,
) -> None:
    """Monthly S1/S2 chip time series at every place into the sample store; rerun to resume.

    Examples:
        landprompt pairs fetch --catalog pairs.duckdb --store samples.zarr --source pc

        landprompt pairs fetch --catalog pairs.duckdb --store samples.zarr --source pc --scheduler tcp://host:8786
    """
    from landprompt.eo.open import open_source
    from landprompt.pairs.catalog import Catalog
    from landprompt.pairs.fetch import fetch_samples

    check_outputs(store, folder=True)
    last_full_year = date.today().year - 1
    scenes = _item_source(items, sign, dilate) if items else open_source(source, dilate)
    with Catalog.open(catalog, create=False) as cat:
        report = fetch_samples(
            cat,
            store,
            scenes,
            year=year,
            max_year=max_year if max_year is not None else last_full_year,
            default_year=default_year,
            chip=chip,
            task_rows=task_rows,
            batch_rows=batch_rows,
            scheduler=scheduler,
            retry_failed=retry_failed,
            progress=progress,
        )
    _print_dict(f"fetch -> {store}", report.to_dict(), as_json)
    if report.failed:
        raise typer.Exit(1)


def _item_source(items: list[Path], sign: str, dilate: int) -> StacSource:
    """A STAC source over stac-geoparquet tables, signing hrefs for the Planetary Computer if asked."""
    from landprompt.eo.items import ItemTable
    from landprompt.eo.stac import StacSource

    signer = None
    if sign == "pc":
        import planetary_computer

        signer = planetary_computer.sign_inplace
    return StacSource(catalog=ItemTable(items), signer=signer, dilate=dilate)


@app.command("photos")
def photos(
    catalog: CatalogOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Photo embeddings (.zarr).")],
    clip: ClipOption = "ViT-B-32",
    pretrained: RequiredPretrainedOption = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 64,
    cache: Annotated[Path | None, typer.Option(help="Download cache (default: <out>.cache).")] = None,
    device: Annotated[
        str | None, typer.Option(help="Torch device (default: cuda:$LOCAL_RANK or cpu).")
    ] = None,
    threads: Annotated[int, typer.Option(min=1, help="Image loading threads.")] = 8,
    retry_missing: Annotated[bool, typer.Option(help="Try photos marked missing again.")] = False,
    sync_only: Annotated[
        bool, typer.Option(help="Only copy statuses into the catalog (after torchrun).")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    as_json: JsonOption = False,
) -> None:
    """CLIP image embeddings of the photos (sharded by $RANK/$WORLD_SIZE under torchrun).

    Examples:
        landprompt pairs photos --catalog pairs.duckdb -o photos.zarr --pretrained laion2b_s34b_b79k
    """
    import os

    from landprompt.embedder.device import choose_device
    from landprompt.embedder.photos import embed_photos, rank_and_world, sync_status

    if sync_only:
        _print_dict(f"photo statuses <- {out}", sync_status(catalog, out), as_json)
        return
    check_outputs(out, folder=True)
    rank, world = rank_and_world()
    local = choose_device(device, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    model = named_clip(clip, pretrained, device=str(local))
    report = embed_photos(
        catalog,
        out,
        model,
        batch_size=batch_size,
        cache_dir=cache,
        threads=threads,
        retry_missing=retry_missing,
        progress=progress and rank == 0,
    )
    _print_dict(f"photos -> {out} (rank {rank}/{world})", report.to_dict(), as_json)
    if world > 1 and rank == 0 and not as_json:
        console.print(
            "after every rank has finished, copy the statuses: landprompt pairs photos ... --sync-only"
        )


@app.command("stats")
def stats(
    catalog: CatalogOption,
    store: Annotated[Path | None, typer.Option("--store", help="Sample store, for month coverage.")] = None,
    png: Annotated[Path | None, typer.Option("--png", help="Write a map of the places (PNG).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Counts per source, country, split, status; month coverage; a map of the places.

    Examples:
        landprompt pairs stats --catalog pairs.duckdb --store samples.zarr --png places.png
    """
    from landprompt.pairs.catalog import Catalog
    from landprompt.pairs.stats import pair_stats, plot_locations

    check_outputs(png)

    with Catalog.open(catalog, read_only=True) as cat:
        result = pair_stats(cat, store).to_dict()
        if png is not None:
            result["map"] = str(plot_locations(cat, png))
    _print_dict(f"pairs in {catalog}", result, as_json)


def _print_dict(title: str, values: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(values, default=str))
        return
    table = Table(title=title, show_header=False)
    for key, value in values.items():
        if isinstance(value, dict):
            value = (
                ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in value.items()) or "-"
            )
        elif isinstance(value, float):
            value = f"{value:,.3f}"
        table.add_row(key, str(value))
    console.print(table)
