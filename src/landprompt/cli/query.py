"""``landprompt query``: text prompts -> top-k places, probability maps, batch exports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from landprompt.cli.analytics import query_aggregate, query_change
from landprompt.cli.common import (
    BBoxOption,
    CubesArgument,
    MapDtype,
    PretrainedOption,
    PromptArgument,
    QueryClipOption,
    StyleOption,
    check_outputs,
    clip_or_none,
    console,
    err_console,
    query_session,
    sub_app,
)
from landprompt.progress import progress_bar

app = sub_app("Text prompts -> probability maps and top-k places.")


@app.command("topk")
def query_topk(
    cube: CubesArgument,
    prompt: PromptArgument,
    k: Annotated[int, typer.Option("-k", min=1, help="Number of places.")] = 20,
    min_distance: Annotated[
        float, typer.Option("--min-distance", min=0.0, help="Metres between two places.")
    ] = 0.0,
    bbox: BBoxOption = None,
    fmt: Annotated[
        Literal["table", "csv", "geojson"], typer.Option("--format", help="Printed as.")
    ] = "table",
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write .csv, .geojson, .gpkg, .fgb or .parquet (by extension)."),
    ] = None,
    clip: QueryClipOption = None,
    pretrained: PretrainedOption = None,
    style: StyleOption = "ground",
) -> None:
    """The k best-matching distinct places for a prompt (CUBE may be a folder of cube shards).

    Examples:
        landprompt query topk cube.zarr "olive groves" -k 20 --min-distance 500

        landprompt query topk europe/ "wind turbines" -k 50 -o turbines.gpkg
    """
    import json

    from landprompt.query.topk import cube_paths, places_geojson, top_k, top_k_shards, write_places

    check_outputs(out)
    shards = cube_paths(cube)
    clip_model = clip_or_none(clip, pretrained, shards[0])
    if len(shards) > 1:
        with progress_bar("searching", unit="shards", transient=True, console=err_console) as bar:
            places = top_k_shards(
                shards,
                prompt,
                k=k,
                min_distance_m=min_distance,
                clip=clip_model,
                style=style,
                progress=bar.to,
                bbox=bbox,
            )
    else:
        with progress_bar("searching", unit="pixels", transient=True, console=err_console) as bar:
            places = top_k(
                shards[0],
                prompt,
                k=k,
                min_distance_m=min_distance,
                bbox=bbox,
                clip=clip_model,
                style=style,
                progress=bar.to,
            )
    if out is not None:
        from landprompt.query.provenance import search_tags
        from landprompt.query.session import open_session

        tags = search_tags(shards, clip_model or open_session(shards[0]).text.clip, prompt, style)
        write_places(places, out, None if fmt == "table" else fmt, metadata=tags)
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


@app.command("map")
def query_map(
    cube: CubesArgument,
    prompt: PromptArgument,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output COG (.tif).")],
    bbox: BBoxOption = None,
    versus: Annotated[
        list[str] | None,
        typer.Option("--versus", help="Background prompt (repeat); default: land-cover vocabulary."),
    ] = None,
    png: Annotated[bool, typer.Option("--png", help="Also write a PNG quicklook next to the COG.")] = False,
    html: Annotated[bool, typer.Option("--html", help="Also write a self-contained HTML map.")] = False,
    qml: Annotated[
        bool, typer.Option("--qml", help="Also write a QGIS style (.qml) beside the COG.")
    ] = False,
    dtype: Annotated[MapDtype, typer.Option(help="COG data type: float32 or uint8.")] = "float32",
    clip: QueryClipOption = None,
    pretrained: PretrainedOption = None,
    style: StyleOption = "ground",
) -> None:
    """Probability map of a prompt: a COG, optionally a PNG quicklook, an HTML map and a QGIS style.

    CUBE may be a folder of cube shards: the map is then the mosaic of the shards (those the bbox
    touches), and its provenance names the folder, the shards and their content hashes.

    Examples:
        landprompt query map cube.zarr "olive groves" -o olives.tif --png --html --qml

        landprompt query map cube.zarr "vineyards" -o vines.tif --versus "olive groves" --dtype uint8

        landprompt query map europe/ "olive groves" -o olives.tif --bbox "-9.5,36,3.5,44"
    """
    from landprompt.query.maps import check_html_size, write_cog, write_html, write_png
    from landprompt.query.provenance import provenance_tags
    from landprompt.query.session import cube_paths

    if out.suffix.lower() not in (".tif", ".tiff"):
        from landprompt.errors import BadInputError

        raise BadInputError(f"--out must be a .tif file, got {out.name!r}")
    check_outputs(
        out,
        out.with_suffix(".qml") if qml else None,
        out.with_suffix(".png") if png else None,
        out.with_suffix(".html") if html else None,
    )
    session = query_session(cube, clip, pretrained)  # after the cheap checks: it may load CLIP
    if html:
        check_html_size(session.map_grid(bbox).shape)
    with progress_bar("scoring", unit="pixels", transient=True, console=err_console) as bar:
        prob = session.probability_map(prompt, versus or None, bbox, style, progress=bar.to)
    tags = provenance_tags(  # the shards named, their hashes read from the session's open cubes
        cube_paths(cube), session.text.clip, prompt, versus, style, datasets=session.datasets
    )
    prob.attrs.update(tags)  # the PNG and HTML carry them too
    written = [write_cog(prob, out, dtype=dtype, tags=tags)]
    if qml:
        from landprompt.query.maps import UINT8_SCALE
        from landprompt.query.qml import write_qml

        written.append(write_qml(out.with_suffix(".qml"), scale=UINT8_SCALE if dtype == "uint8" else 1.0))
    if png:
        written.append(write_png(prob, out.with_suffix(".png"), title=f"P({prompt})"))
    if html:
        written.append(write_html(prob, out.with_suffix(".html"), title=f"P({prompt})"))
    console.print(f"mean probability {float(prob.mean()):.3f}; wrote " + ", ".join(map(str, written)))


@app.command("export")
def query_export(
    jobs: Annotated[
        Path | None, typer.Argument(help="Batch YAML: concepts x areas x options (--example prints one).")
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="Dask scheduler address, or 'local' for a local cluster.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Rewrite maps that already exist.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override a key, e.g. --set defaults.threshold=0.3 (repeatable; values are YAML)."
        ),
    ] = None,
    example: Annotated[bool, typer.Option("--example", help="Print an example batch file and exit.")] = False,
    schema: Annotated[
        bool,
        typer.Option("--schema", help="Print the batch file's JSON Schema (every key described) and exit."),
    ] = False,
) -> None:
    """Export every map of a batch YAML file, skipping maps already written.

    Examples:
        landprompt query export --example > batch.yaml

        landprompt query export --schema > batch.schema.json

        landprompt query export batch.yaml --scheduler local

        landprompt query export batch.yaml --set out=maps-2024 --set defaults.formats=[cog]
    """
    from landprompt.batch.run import run_jobs
    from landprompt.batch.spec import load_jobs
    from landprompt.errors import BadInputError

    if example:
        from landprompt.examples import example_text

        print(example_text("batch"), end="")
        return
    if schema:
        import json

        from landprompt.batch.spec import json_schema

        print(json.dumps(json_schema(), indent=2))
        return
    if jobs is None:
        raise BadInputError("give a batch YAML file; 'landprompt query export --example' prints one")

    report = run_jobs(
        load_jobs(jobs, set_ or []), scheduler=scheduler, progress=progress, overwrite=overwrite
    )
    console.print(report.summary())
    for key, message in report.failed.items():
        err_console.print(f"[red]failed[/red] {key}: {message}")
    if not report.ok:
        raise typer.Exit(1)


app.command("change")(query_change)
app.command("aggregate")(query_aggregate)
