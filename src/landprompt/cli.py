"""The ``landprompt`` command line: parses, validates, prints. The work happens in the stage modules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from landprompt import __version__
from landprompt.errors import LandpromptError

console = Console()
err_console = Console(stderr=True)


class _LandpromptGroup(TyperGroup):
    """Root command group: a :class:`LandpromptError` becomes one line on stderr and its exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except LandpromptError as exc:
            message = " ".join(str(exc).split())
            err_console.print(f"[bold red]error:[/bold red] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    cls=_LandpromptGroup,
    help="Map any concept in plain words from Sentinel-1/2 time series aligned with CLIP.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
cube_app = typer.Typer(help="Inspect embedding cubes.", no_args_is_help=True)
index_app = typer.Typer(help="Build FAISS indexes over embedding cubes.", no_args_is_help=True)
query_app = typer.Typer(help="Text prompts -> probability maps and top-k places.", no_args_is_help=True)
app.add_typer(cube_app, name="cube")
app.add_typer(index_app, name="index")
app.add_typer(query_app, name="query")

ClipOption = Annotated[str, typer.Option("--clip", help="open_clip model name, e.g. ViT-B-32.")]
CubeArgument = Annotated[Path, typer.Argument(help="Embedding cube (.zarr).")]
PromptArgument = Annotated[str, typer.Argument(help="The concept in plain words, e.g. 'olive groves'.")]
BBoxOption = Annotated[
    str | None, typer.Option("--bbox", help="Lon/lat window 'minlon,minlat,maxlon,maxlat' or a GeoJSON file.")
]
QueryClipOption = Annotated[
    str | None, typer.Option("--clip", help="open_clip model name (default: the one named by the cube).")
]
StyleOption = Annotated[str, typer.Option("--style", help="Prompt template style: ground, satellite, ...")]
PretrainedOption = Annotated[
    str | None,
    typer.Option(
        "--pretrained",
        help="open_clip pretrained tag (e.g. laion2b_s34b_b79k) or a local weights file; "
        "omit for random weights.",
    ),
]


def _version(value: bool) -> None:
    if value:
        console.print(f"landprompt {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Map any concept in plain words from Sentinel-1/2 time series aligned with CLIP."""


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("demo-output"),
    concept: Annotated[str, typer.Option(help="Concept to map (one of the planted land covers).")] = "a lake",
    clip: ClipOption = "landprompt-tiny",
    pretrained: PretrainedOption = None,
    seed: Annotated[int, typer.Option(help="Seed of the planting noise.")] = 0,
) -> None:
    """Offline demo: synthetic planted embeddings -> cube -> probability map (COG + PNG)."""
    from landprompt.demo import LAND_COVERS, run_demo

    with console.status("building the synthetic region, its cube and the map..."):
        result = run_demo(out, concept=concept, clip_name=clip, pretrained=pretrained, seed=seed)
    console.print(
        "[bold yellow]Synthetic embeddings:[/bold yellow] each pixel is planted from the CLIP text "
        f"embedding of its land cover ({', '.join(LAND_COVERS)}) plus noise; no satellite data was read."
    )
    console.print(f"CLIP text tower: {result.clip}")
    table = Table(title=f"landprompt demo: P({result.concept})", show_header=False)
    table.add_row("embedding cube", str(result.cube))
    table.add_row("probability map (COG)", str(result.cog))
    table.add_row("quicklook (PNG)", str(result.png))
    table.add_row("planted pixels", f"{result.planted_pixels:,}")
    table.add_row("pixels with p > 0.5", f"{result.mapped_pixels:,}")
    table.add_row("mean p inside / outside", f"{result.mean_inside:.3f} / {result.mean_outside:.3f}")
    table.add_row("agreement with the planting", f"{result.agreement:.1%}")
    console.print(table)
    for note in result.notes:
        console.print(f"- {note}")


@cube_app.command("info")
def cube_info(path: Annotated[Path, typer.Argument(help="Embedding cube (.zarr).")]) -> None:
    """Summarise an embedding cube: grid, CRS, dtype, valid fraction, provenance."""
    from landprompt.embedder.cube import describe, open_cube

    summary = describe(open_cube(path))
    table = Table(title=str(path), show_header=False)
    for key, value in summary.items():
        table.add_row(key, str(value))
    console.print(table)


def _clip_or_none(name: str | None, pretrained: str | None):  # type: ignore[no-untyped-def]
    if name is None:
        return None
    from landprompt.embedder.clip import load_clip

    return load_clip(name, pretrained)


@index_app.command("build")
def index_build(
    cube: CubeArgument,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Index file (default: CUBE with .faiss).")
    ] = None,
    factory: Annotated[
        str | None, typer.Option(help="FAISS factory string, e.g. 'IVF4096,SQ8' (default: chosen by size).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the training sample.")] = 0,
    gpu: Annotated[
        bool | None, typer.Option("--gpu/--cpu", help="Use GPUs (default: when FAISS has them).")
    ] = None,
) -> None:
    """Build a FAISS index over a cube's valid pixels (streamed chunk by chunk)."""
    from landprompt.index.build import build_index, default_index_path

    info = build_index(cube, out, factory=factory, seed=seed, gpu=gpu)
    console.print(
        f"indexed {info.ntotal:,} pixels of {info.dim}-d with [bold]{info.factory}[/bold] "
        f"-> {out or default_index_path(cube)}"
    )


@query_app.command("topk")
def query_topk(
    cube: CubeArgument,
    prompt: PromptArgument,
    k: Annotated[int, typer.Option("-k", help="Number of places.")] = 20,
    min_distance: Annotated[float, typer.Option("--min-distance", help="Metres between two places.")] = 0.0,
    bbox: BBoxOption = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or geojson.")] = "table",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write csv/geojson to this file.")] = None,
    clip: QueryClipOption = None,
    pretrained: PretrainedOption = None,
    style: StyleOption = "ground",
) -> None:
    """The k best-matching distinct places for a prompt (CUBE may be a folder of cube shards)."""
    import json

    from landprompt.errors import BadInputError
    from landprompt.query.topk import cube_paths, places_geojson, top_k, top_k_shards, write_places

    if fmt not in ("table", "csv", "geojson"):
        raise BadInputError(f"--format must be table, csv or geojson, got {fmt!r}")
    shards = cube_paths(cube)
    clip_model = _clip_or_none(clip, pretrained)
    if len(shards) > 1:
        if bbox is not None:
            raise BadInputError("--bbox applies to one cube: give the shard's path instead of the folder")
        places = top_k_shards(shards, prompt, k=k, min_distance_m=min_distance, clip=clip_model, style=style)
    else:
        places = top_k(cube, prompt, k=k, min_distance_m=min_distance, bbox=bbox, clip=clip_model, style=style)
    if out is not None:
        write_places(places, out, None if fmt == "table" else fmt)
        console.print(f"wrote {len(places)} places to {out}")
    elif fmt == "csv":
        print(places.to_csv(index=False), end="")
    elif fmt == "geojson":
        print(json.dumps(places_geojson(places)))
    else:
        table = Table(title=f"top {len(places)} places: {prompt!r}")
        for column in places.columns:
            table.add_column(column, justify="right")
        for record in places.itertuples(index=False):
            table.add_row(*(f"{v:.5f}" if isinstance(v, float) else str(v) for v in record))
        console.print(table)


@query_app.command("map")
def query_map(
    cube: CubeArgument,
    prompt: PromptArgument,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output COG (.tif).")],
    bbox: BBoxOption = None,
    versus: Annotated[
        list[str] | None,
        typer.Option("--versus", help="Background prompt (repeat); default: land-cover vocabulary."),
    ] = None,
    png: Annotated[bool, typer.Option("--png", help="Also write a PNG quicklook next to the COG.")] = False,
    html: Annotated[bool, typer.Option("--html", help="Also write a self-contained HTML map.")] = False,
    dtype: Annotated[str, typer.Option(help="COG data type: float32 or uint8.")] = "float32",
    clip: QueryClipOption = None,
    pretrained: PretrainedOption = None,
    style: StyleOption = "ground",
) -> None:
    """Probability map of a prompt: a COG, optionally a PNG quicklook and an HTML map."""
    from landprompt.query.maps import write_cog, write_html, write_png
    from landprompt.query.probability import probability_map

    if out.suffix.lower() not in (".tif", ".tiff"):
        from landprompt.errors import BadInputError

        raise BadInputError(f"--out must be a .tif file, got {out.name!r}")
    prob = probability_map(cube, prompt, versus=versus or None, bbox=bbox,
                           clip=_clip_or_none(clip, pretrained), style=style)  # fmt: skip
    written = [write_cog(prob, out, dtype=dtype)]  # type: ignore[arg-type]
    if png:
        written.append(write_png(prob, out.with_suffix(".png"), title=f"P({prompt})"))
    if html:
        written.append(write_html(prob, out.with_suffix(".html"), title=f"P({prompt})"))
    console.print(f"mean probability {float(prob.mean()):.3f}; wrote " + ", ".join(map(str, written)))


@query_app.command("export")
def query_export(
    jobs: Annotated[Path, typer.Argument(help="Batch YAML: concepts x areas x options (see examples/).")],
    scheduler: Annotated[
        str | None, typer.Option(help="Dask scheduler address, or 'local' for a local cluster.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Rewrite maps that already exist.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Export every map of a batch YAML file, skipping maps already written."""
    from landprompt.query.jobs import load_jobs, run_jobs

    report = run_jobs(load_jobs(jobs), scheduler=scheduler, progress=progress, overwrite=overwrite)
    console.print(report.summary())
    for key, message in report.failed.items():
        err_console.print(f"[red]failed[/red] {key}: {message}")
    if not report.ok:
        raise typer.Exit(1)


if __name__ == "__main__":  # pragma: no cover
    app()
