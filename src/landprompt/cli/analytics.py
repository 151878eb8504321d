"""Concept analytics commands: change maps and indicators per area, validation against field points.

The groups register them: ``landprompt query change`` and ``query aggregate``
(:mod:`landprompt.cli.query`), ``landprompt evaluate points`` (:mod:`landprompt.cli.evaluate`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from landprompt.cli.common import (
    BBoxOption,
    CubeArgument,
    CubesArgument,
    FitMethod,
    PretrainedOption,
    PromptArgument,
    QueryClipOption,
    StyleOption,
    check_outputs,
    clip_or_none,
    console,
    err_console,
    query_session,
)
from landprompt.errors import BadInputError
from landprompt.progress import progress_bar

VersusOption = Annotated[
    list[str] | None,
    typer.Option("--versus", help="Background prompt (repeat); default: land-cover vocabulary."),
]
CalibratedOption = Annotated[
    bool,
    typer.Option(
        "--calibrated",
        help="Apply the cube's saved calibration of the concept (<cube>.calibration/<concept>.json).",
    ),
]


def query_change(
    cube_a: Annotated[
        Path, typer.Argument(help="The earlier embedding cube (.zarr), or a folder of cube shards.")
    ],
    cube_b: Annotated[
        Path,
        typer.Argument(help="The later cube, on the same grid (or folder of shards, paired by file name)."),
    ],
    prompt: PromptArgument,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output COG of the change (.tif).")],
    threshold: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Change in probability that counts as a gain (or, negated, a loss), in [0, 1).",
        ),
    ] = 0.2,
    png: Annotated[bool, typer.Option("--png", help="Also write a PNG quicklook (RdBu, -1 to 1).")] = False,
    bbox: BBoxOption = None,
    versus: VersusOption = None,
    calibrated: CalibratedOption = False,
    calibration: Annotated[
        Path | None, typer.Option("--calibration", help="A calibration JSON to apply to both cubes.")
    ] = None,
    clip: QueryClipOption = None,
    pretrained: PretrainedOption = None,
    style: StyleOption = "ground",
) -> None:
    """Change map of a prompt between two cubes: OUT (p_b - p_a), OUT_class.tif (0 stable, 1 gain, 2 loss).

    Two folders of shards give the change over the mosaic of their shards, paired by file name.

    Examples:
        landprompt query change cube2019.zarr cube2024.zarr "olive groves" -o olives_change.tif --png

        landprompt query change europe2019/ europe2024/ "olive groves" -o olives_change.tif
    """
    from landprompt.query.change import change_paths, change_summary, write_change
    from landprompt.query.provenance import provenance_tags, with_cube_b
    from landprompt.query.session import check_pairable, cube_paths, open_session

    paths = change_paths(out)
    if not png:
        del paths["png"]
    check_outputs(*paths.values())
    if calibrated and calibration is not None:
        raise BadInputError("give --calibrated (each cube's own calibration) or --calibration FILE, not both")
    check_pairable(cube_a, cube_b)
    session = query_session(cube_a, clip, pretrained)
    clip_model = session.text.clip
    calibrate = calibration if calibration is not None else calibrated
    with progress_bar("scoring both cubes", unit="pixels", transient=True, console=err_console) as bar:
        # of two folders, each shard paired with the later folder's of its file name
        ds = session.change(cube_b, prompt, versus or None, threshold, bbox, style, None, calibrate, bar.to)
    applied = str(calibration) if calibration is not None else ("cube" if calibrated else None)
    tags = provenance_tags(cube_paths(cube_a), clip_model, prompt, versus, style, applied, session.datasets)
    later = open_session(cube_b).datasets  # opened by the change: the hashes read from its open cubes
    tags = with_cube_b(tags, cube_paths(cube_b), later)  # of folders: the folders, their shards and hashes
    written = write_change(ds, paths, title=f"change in P({prompt})", tags=tags)
    summary = change_summary(ds)
    table = Table(title=f"change in P({prompt}), threshold {threshold:g}")
    table.add_column("class")
    table.add_column("pixels", justify="right")
    table.add_column("hectares", justify="right")
    for name, pixels in summary["pixels"].items():
        hectares = summary.get("hectares", {}).get(name)
        table.add_row(name, f"{pixels:,}", "" if hectares is None else f"{hectares:,.1f}")
    console.print(table)
    console.print("wrote " + ", ".join(map(str, written)))


def query_aggregate(
    cube: CubesArgument,
    prompt: PromptArgument,
    units: Annotated[Path, typer.Option("--units", help="Polygons: GeoJSON, GeoPackage (NUTS, LAU, ...).")],
    id_field: Annotated[
        str | None, typer.Option("--id-field", help="Property naming each polygon, e.g. NUTS_ID.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Write .csv, .geojson, .gpkg, .fgb or .parquet; default: print a table."
        ),
    ] = None,
    threshold: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Probability above which a pixel counts as present, in [0, 1)."),
    ] = 0.5,
    layer: Annotated[str | None, typer.Option(help="Layer of a multi-layer polygon file.")] = None,
    keep_fields: Annotated[
        bool,
        typer.Option("--keep-fields", help="Keep the polygons' other fields (names, codes) in the output."),
    ] = False,
    versus: VersusOption = None,
    calibrated: CalibratedOption = False,
    clip: QueryClipOption = None,
    pretrained: PretrainedOption = None,
    style: StyleOption = "ground",
) -> None:
    """Indicators of a prompt per polygon: mean probability, expected area, area above a threshold.

    CUBE may be a folder of cube shards: polygons may straddle shards, and a pixel counts once.

    Examples:
        landprompt query aggregate cube.zarr "olive groves" --units nuts3.gpkg -o olives.gpkg

        landprompt query aggregate europe/ "olive groves" --units nuts3.gpkg --id-field NUTS_ID -o olives.csv
    """
    from landprompt.query.aggregate import read_units, with_unit_fields, write_indicators
    from landprompt.query.provenance import provenance_tags
    from landprompt.query.session import cube_paths
    from landprompt.query.vectors import vector_suffix

    if out is not None:
        vector_suffix(out, "indicators")
    check_outputs(out)
    polygons = read_units(units, id_field, layer)
    session = query_session(cube, clip, pretrained)
    clip_model = session.text.clip
    label = f"aggregating over {len(polygons)} polygons"
    with progress_bar(label, unit="pixels", transient=True, console=err_console) as bar:
        # of a folder of shards, polygons may straddle shards: each pixel counted once
        table = session.aggregate(
            prompt, polygons, None, threshold, versus or None, style, None, calibrated, bar.to
        )
    if keep_fields:
        table = with_unit_fields(table, polygons)
    if out is not None:
        applied = "cube" if calibrated else None
        tags = provenance_tags(cube_paths(cube), clip_model, prompt, versus, style, applied, session.datasets)
        write_indicators(table, out, polygons, metadata=tags)
        console.print(f"wrote indicators of {len(table)} polygons to {out}")
        return
    view = Table(title=f"P({prompt}) per polygon of {units.name}, threshold {threshold:g}")
    for column in table.columns:
        view.add_column(column, justify="right")
    for record in table.itertuples(index=False):
        view.add_row(*(f"{v:,.3f}" if isinstance(v, float) else str(v) for v in record))
    console.print(view)


def evaluate_points_command(
    cube: CubeArgument,
    prompt: PromptArgument,
    points: Annotated[Path, typer.Option("--points", help="CSV of lon, lat (WGS84) and a presence label.")],
    label_field: Annotated[
        str, typer.Option("--label-field", help="Label column: 1/0, true/false or yes/no.")
    ] = "present",
    fit: Annotated[
        FitMethod | None, typer.Option("--fit", help="Learn a recalibration: platt or isotonic.")
    ] = None,
    block_km: Annotated[
        float, typer.Option("--block-km", min=0.0, help="Spatial CV block side (km, above 0).")
    ] = 10.0,
    folds: Annotated[int, typer.Option(min=2, help="Cross-validation folds.")] = 5,
    bins: Annotated[
        int, typer.Option(min=1, help="Equal-width bins of the ECE and reliability diagram.")
    ] = 10,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the report as JSON.")] = None,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Reliability diagram PNG; default with -o: <out>_reliability.png."),
    ] = None,
    calibrated: CalibratedOption = False,
    versus: VersusOption = None,
    clip: QueryClipOption = None,
    pretrained: PretrainedOption = None,
    style: StyleOption = "ground",
) -> None:
    """Score a prompt's map at field points (AUC, AP, ECE); --fit learns and saves a recalibration.

    Examples:
        landprompt evaluate points cube.zarr "olive groves" --points survey.csv --fit platt
    """
    from landprompt.embedder.cube import open_cube
    from landprompt.evaluate.points import evaluate_points, write_points_report, write_reliability_png
    from landprompt.query.classes import clip_for_cube
    from landprompt.query.provenance import provenance_tags

    if out is not None and out.suffix.lower() != ".json":
        raise BadInputError(f"--out must be a .json file, got {out.name!r}")
    plot = plot if plot is not None or out is None else out.with_name(f"{out.stem}_reliability.png")
    check_outputs(out, plot)
    clip_model = clip_or_none(clip, pretrained, cube) or clip_for_cube(open_cube(cube))
    report = evaluate_points(
        cube,
        prompt,
        points,
        label_field=label_field,
        fit=fit,
        block_km=block_km,
        n_folds=folds,
        bins=bins,
        versus=versus or None,
        clip=clip_model,
        style=style,
        calibrated=calibrated,
    )
    applied = "cube" if calibrated else None
    report["provenance"] = provenance_tags(cube, clip_model, prompt, versus, style, applied)
    console.print(_metrics_table(report, prompt))
    counts = report["counts"]
    console.print(
        f"{counts['used']} of {counts['points']} points used ({counts['outside_cube']} outside the cube, "
        f"{counts['on_nodata']} on no-data); {counts['present']} present, {counts['absent']} absent"
    )
    written = [write_points_report(report, out)] if out is not None else []
    if plot is not None:
        written.append(write_reliability_png(report, plot))
    if report.get("calibration", {}).get("path"):
        written.append(Path(report["calibration"]["path"]))
    if written:
        console.print("wrote " + ", ".join(map(str, written)))


def _metrics_table(report: dict[str, Any], prompt: str) -> Table:
    rows = {"all points": report["metrics"]}
    if "cross_validation" in report:
        cv = report["cross_validation"]
        rows = {"held out, raw": cv["before"], f"held out, {cv['method']}": cv["after"]}
    table = Table(title=f"P({prompt}) at field points")
    for column in ("", "AUC", "AP", "ECE", "Brier"):
        table.add_column(column, justify="right")
    for name, m in rows.items():
        table.add_row(name, *(f"{m[k]:.3f}" for k in ("auc", "average_precision", "ece", "brier")))
    return table
