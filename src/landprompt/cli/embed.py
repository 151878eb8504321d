"""``landprompt eo`` (Sentinel inputs) and ``landprompt embed`` (dense embedding runs)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from landprompt.cli.common import (
    Basis,
    BatchSizeOption,
    CubeDtype,
    L2aOffset,
    ZarrFormatOption,
    bbox_option,
    check_outputs,
    clip_option,
    console,
    pretrained_option,
    sub_app,
)

eo_app = sub_app("Sentinel-1/2 inputs: band specs, monthly composites, offline stacks.")
app = sub_app("Dense embedding runs: an encoder over an area -> an embedding cube.")

AoiOption = Annotated[str, bbox_option("--aoi")]
YearOption = Annotated[int, typer.Option("--year", help="Calendar year of the monthly composites.")]
SourceOption = Annotated[
    str,
    typer.Option(
        "--source",
        help="pc (Planetary Computer), earth-search, stac:URL, a static catalog.json, or a local stack path.",
    ),
]
ResolutionOption = Annotated[float, typer.Option("--resolution", help="Pixel size in metres.")]
CrsOption = Annotated[str | None, typer.Option("--crs", help="Grid CRS, e.g. EPSG:3035 (default: UTM zone).")]
ForceOption = Annotated[bool, typer.Option("--force", help="Allow an area beyond 10^8 pixels.")]
DilateOption = Annotated[int, typer.Option("--dilate", min=0, help="Grow cloud/shadow masks by N pixels.")]
L2aOffsetOption = Annotated[
    L2aOffset,
    typer.Option(
        "--l2a-offset",
        help="Local stacks: DN offset of Sentinel-2 L2A files, auto (tags, processing baseline, else "
        "refuse files never below 1000), 0 or -1000.",
    ),
]
EncoderClipOption = Annotated[str | None, clip_option("clip_rgb only; default ViT-B-32")]
EncoderPretrainedOption = Annotated[str | None, pretrained_option("clip_rgb only", random=False)]
PrestoWeightsOption = Annotated[
    Path | None,
    typer.Option("--presto-weights", help="sits: the official Presto weights (default_model.pt)."),
]
SeedOption = Annotated[
    int,
    typer.Option("--seed", help="Seed of whatever the encoder's weights leave random (e.g. the sits head)."),
]
RandomWeightsOption = Annotated[
    bool, typer.Option("--random-weights", help="Embed with seeded random weights (for tests: no concept).")
]


@eo_app.command("bands")
def eo_bands() -> None:
    """The Sentinel-1/2 bands landprompt reads, with their units and normalisation.

    Examples:
        landprompt eo bands
    """
    from landprompt.eo.bands import BANDS

    table = Table(title="bands")
    for column in ("band", "sensor", "resolution (m)", "units", "normalised as"):
        table.add_column(column)
    for spec in BANDS.values():
        table.add_row(
            spec.name, spec.sensor, f"{spec.resolution:g}", spec.units, f"(x + {spec.shift:g}) / {spec.div:g}"
        )
    console.print(table)


@eo_app.command("composite")
def eo_composite(
    aoi: AoiOption,
    year: YearOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .zarr or .nc file.")],
    source: SourceOption = "pc",
    resolution: ResolutionOption = 10.0,
    crs: CrsOption = None,
    dilate: DilateOption = 0,
    l2a_offset: L2aOffsetOption = "auto",
    force: ForceOption = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out (atomically).")] = False,
) -> None:
    """Monthly median S1/S2 composites of one year over an area (s2, s1: [time, band, y, x]).

    Examples:
        landprompt eo composite --aoi 11.0,43.1,11.1,43.2 --year 2023 --source stack/ --out composites.nc
    """
    from landprompt.embedder.run import plan_grid
    from landprompt.eo.open import open_source
    from landprompt.errors import BadInputError
    from landprompt.files import part_path, place_exclusively, remove_stale_parts, swap_into_place

    if out.suffix not in (".zarr", ".nc"):
        raise BadInputError(f"--out must end in .zarr or .nc, got {out.name!r}")
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise BadInputError(f"{out} already exists: choose another --out or add --overwrite")
    check_outputs(out, folder=out.suffix == ".zarr")
    grid = plan_grid(aoi, resolution, crs, force)
    scenes = open_source(source, dilate, l2a_offset)
    scenes.check_coverage(grid, year)
    composite = scenes.composite(grid, year, force=force)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(out.parent)
    tmp = part_path(out)
    try:  # written aside, then swapped in whole: a kill never leaves a half store at --out
        if out.suffix == ".nc":
            composite.to_netcdf(tmp)
        else:
            composite.to_zarr(tmp, mode="w-", zarr_format=3)
        (swap_into_place if overwrite else place_exclusively)(tmp, out)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
    console.print(f"wrote {dict(composite.sizes)} composites of {year} to {out}")


@eo_app.command("fetch")
def eo_fetch(
    aoi: AoiOption,
    year: YearOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (GeoTIFF stack) or .zarr/.nc.")],
    source: SourceOption = "pc",
    resolution: ResolutionOption = 10.0,
    crs: CrsOption = None,
    l2a_offset: L2aOffsetOption = "auto",
    force: ForceOption = False,
) -> None:
    """Download a year of scenes once into a local stack, for offline runs (--source PATH later).

    Examples:
        landprompt eo fetch --aoi 11.0,43.1,11.1,43.2 --year 2023 --source pc --out stack/
    """
    from landprompt.embedder.run import plan_grid
    from landprompt.eo.local import write_geotiff_stack, write_scene_cube
    from landprompt.eo.open import open_source

    check_outputs(out, folder=out.suffix != ".nc")
    grid = plan_grid(aoi, resolution, crs, force)
    scenes = open_source(source, l2a_offset=l2a_offset).scenes(grid, year, force=force)
    if out.suffix in (".zarr", ".nc"):
        console.print(f"wrote {write_scene_cube(scenes, out)}")
    else:
        console.print(f"wrote {len(write_geotiff_stack(scenes, out))} GeoTIFFs to {out}")


@app.command("run")
def embed_run_command(
    aoi: AoiOption,
    year: YearOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output embedding cube (.zarr).")],
    model: Annotated[
        str, typer.Option("--model", help="Encoder name (sits, clip_rgb) or checkpoint.")
    ] = "clip_rgb",
    source: SourceOption = "pc",
    clip: EncoderClipOption = None,
    pretrained: EncoderPretrainedOption = None,
    presto_weights: PrestoWeightsOption = None,
    seed: SeedOption = 0,
    random_weights: RandomWeightsOption = False,
    resolution: ResolutionOption = 10.0,
    crs: CrsOption = None,
    chunk: Annotated[int, typer.Option(min=1, help="Cube chunk size in output pixels.")] = 256,
    dtype: Annotated[CubeDtype, typer.Option(help="Cube storage: fp16 or int8.")] = "fp16",
    batch_size: BatchSizeOption = 1024,
    device: Annotated[str | None, typer.Option(help="Torch device (default: cuda if available).")] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="Dask scheduler address, or 'local'; default: run here.")
    ] = None,
    dilate: DilateOption = 0,
    l2a_offset: L2aOffsetOption = "auto",
    force: ForceOption = False,
    basis: Annotated[
        Basis,
        typer.Option(
            help="'auto': 'head' for a linear head, else 'pca' when d > --rank, else 'none'; a run "
            "begun at --out keeps its layout. 'head': a linear head's exact basis (format 4, r values a "
            "pixel, + 1 for a biased head); 'pca': a PCA basis fitted on a sample of the run's own "
            "embeddings (format 4, via a version-1 staging cube next to --out); 'none': version 1 (d "
            "values a pixel)."
        ),
    ] = "auto",
    rank: Annotated[
        int, typer.Option(min=1, help="Rank of a PCA basis (grown to keep 99.9 % variance).")
    ] = 64,
    zarr_format: ZarrFormatOption = 3,
) -> None:
    """Embed an area for one year into a cube; the same command resumes a killed run.

    Examples:
        landprompt embed run --aoi 11.0,43.1,11.2,43.3 --year 2023 --model runs/sits.json -o tuscany.zarr

        landprompt embed run --aoi area.geojson --year 2023 --source stack/ -o area.zarr --zarr-format 2
    """
    from landprompt.embedder.run import embed_run
    from landprompt.eo.open import open_source

    with weights_flags():
        path = embed_run(
            aoi,
            year,
            model,
            open_source(source, dilate, l2a_offset),
            out,
            resolution=resolution,
            encoder_args=encoder_arguments(model, clip, pretrained, presto_weights),
            seed=seed,
            random_weights=random_weights,
            crs=crs,
            chunk=chunk,
            dtype=dtype,
            batch_size=batch_size,
            device=device,
            scheduler=scheduler,
            force=force,
            basis=basis,
            rank=rank,
            zarr_format=zarr_format,  # type: ignore[arg-type]
        )
    console.print(f"wrote the embedding cube {path}")


#: The options of ``embed run`` that stand for the encoder arguments an
#: :class:`~landprompt.embedder.recipe.EncoderWeightsError` names (its template's fields).
WEIGHTS_FLAGS = {
    "random_weights": "--random-weights",
    "presto_weights": "--presto-weights",
    "clip_pretrained": "--pretrained",
    "checkpoint": "--model CHECKPOINT",
}


@contextmanager
def weights_flags() -> Iterator[None]:
    """Re-raise an encoder weights error with the command line's option names in its message."""
    from landprompt.embedder.recipe import PYTHON_SPELLINGS, EncoderWeightsError
    from landprompt.errors import BadInputError

    try:
        yield
    except EncoderWeightsError as exc:
        raise BadInputError(exc.spelled({**PYTHON_SPELLINGS, **WEIGHTS_FLAGS})) from None


def encoder_arguments(
    model: str, clip: str | None, pretrained: str | None, presto_weights: Path | None
) -> dict[str, object]:
    """Factory arguments of ``--model`` from the weights options, refusing those it does not take.

    Raises:
        BadInputError: If an option does not apply to the model (``--clip``/``--pretrained`` are
            ``clip_rgb``'s, ``--presto-weights`` is ``sits``').
    """
    from landprompt.errors import BadInputError

    given = {"--clip": clip, "--pretrained": pretrained, "--presto-weights": presto_weights}
    takes = {"clip_rgb": ("--clip", "--pretrained"), "sits": ("--presto-weights",)}.get(model, ())
    stray = [flag for flag, value in given.items() if value is not None and flag not in takes]
    if stray:
        raise BadInputError(
            f"{', '.join(stray)} do(es) not apply to --model {model}: --clip/--pretrained build clip_rgb, "
            "--presto-weights builds sits (a checkpoint brings its own weights)"
        )
    if model == "clip_rgb":
        return {"clip_model": clip, "clip_pretrained": pretrained}
    return presto_arguments(model, presto_weights)


def presto_arguments(model: str, presto_weights: Path | None) -> dict[str, object]:
    """``--model sits``'s factory arguments from ``--presto-weights`` (none without it).

    Raises:
        BadInputError: If the file does not exist, or ``--model`` is not sits.
    """
    from landprompt.errors import BadInputError

    if presto_weights is None:
        return {}
    if model != "sits":
        raise BadInputError(f"--presto-weights builds --model sits, not {model!r}")
    if not presto_weights.is_file():
        raise BadInputError(f"--presto-weights {presto_weights} does not exist")
    return {"presto_weights": presto_weights.resolve()}
