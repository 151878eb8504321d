"""``landprompt cube``: inspect embedding cubes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from landprompt.cli.common import CubeDtype, ZarrFormatOption, check_outputs, console, err_console, sub_app
from landprompt.embedder.basis import DEFAULT_RANK, DEFAULT_VARIANCE
from landprompt.progress import progress_bar

app = sub_app("Inspect embedding cubes.")


@app.command("info")
def cube_info(
    path: Annotated[Path, typer.Argument(help="Embedding cube (.zarr).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
) -> None:
    """Summarise an embedding cube: grid, CRS, dtype, valid fraction, provenance.

    Examples:
        landprompt cube info cube.zarr

        landprompt cube info cube.zarr --json | jq .crs
    """
    from landprompt.embedder.cube import describe, open_cube

    summary = describe(open_cube(path))
    if as_json:
        print(json.dumps(summary, default=str))
        return
    table = Table(title=str(path), show_header=False)
    for key, value in summary.items():
        table.add_row(key, str(value))
    console.print(table)


@app.command("export")
def cube_export(
    path: Annotated[Path, typer.Argument(help="Embedding cube (.zarr).")],
    out: Annotated[Path, typer.Argument(help="Output multi-band COG (.tif).")],
) -> None:
    """Export a cube as a multi-band COG (one float32 band per dimension) for GDAL and QGIS.

    Examples:
        landprompt cube export cube.zarr cube.tif

        gdalinfo cube.tif   # band descriptions embedding_000 ..., cube attrs in the metadata
    """
    from landprompt.embedder.cube import open_cube
    from landprompt.embedder.export import export_cube

    ds = open_cube(path)
    check_outputs(out)
    pixels = int(ds.sizes["y"] * ds.sizes["x"])
    with progress_bar("exporting", pixels, unit="pixels", transient=True, console=err_console) as advance:
        export_cube(ds, out, progress=advance)
    console.print(f"wrote {int(ds.sizes['d'])} bands of {path} to {out}")


@app.command("verify")
def cube_verify(
    path: Annotated[Path, typer.Argument(help="Embedding cube (.zarr).")],
    repair_list: Annotated[
        bool,
        typer.Option(
            "--repair-list",
            help="Mark the damaged chunks for rewriting: 'embed run' with the same arguments rewrites them.",
        ),
    ] = False,
) -> None:
    """Recompute every chunk's digest against the recorded ones and the content hash.

    Verifies the overview pyramid too when there is one (every level's chunks and valid fractions).
    Exits non-zero on any missing, changed or extra chunk.

    Examples:
        landprompt cube verify tuscany.zarr

        landprompt cube verify tuscany.zarr --repair-list
    """
    from landprompt.embedder.cube import mark_for_repair, verify
    from landprompt.embedder.overviews import overviews_summary, verify_overviews
    from landprompt.errors import DamagedCubeError

    report = verify(path)
    levels = verify_overviews(path)
    for checked in (report, *levels):
        if checked.problems:
            table = Table(title=f"damaged chunks of {checked.cube}")
            for column in ("chunk", "status", "where", "detail"):
                table.add_column(column)
            for problem in checked.problems:
                table.add_row(str(problem.index), problem.status, problem.where, problem.detail)
            console.print(table)
    if levels and report.ok and not all(level.ok for level in levels):
        raise DamagedCubeError(overviews_summary(path, levels))
    if levels:  # the cube's own damage is the error below
        console.print(overviews_summary(path, levels))
    if report.ok:
        console.print(report.summary())
        return
    if repair_list:
        pending = mark_for_repair(path, report)
        console.print(
            f"marked {len(pending)} chunks {pending} for rewriting: run 'landprompt embed run' with the "
            "arguments that wrote the cube"
        )
    raise DamagedCubeError(report.summary())


@app.command("convert")
def cube_convert(
    old: Annotated[Path, typer.Argument(help="A finished version-1 cube (.zarr).")],
    new: Annotated[Path, typer.Argument(help="The cube to write in a basis (.zarr); re-run to resume.")],
    rank: Annotated[
        int, typer.Option(min=1, help="PCA basis rank (grown to keep 99.9 % of the variance).")
    ] = DEFAULT_RANK,
    dtype: Annotated[
        CubeDtype | None, typer.Option(help="Code storage: int8 or fp16 (default: OLD's).")
    ] = None,
    exact_rank: Annotated[bool, typer.Option(help="Keep exactly --rank, whatever the variance.")] = False,
    zarr_format: ZarrFormatOption = 3,
) -> None:
    """Rewrite a version-1 cube in a PCA basis (format version 4, r + 1 values a pixel).

    Examples:
        landprompt cube convert tuscany.zarr tuscany_pca.zarr --rank 64

        landprompt cube convert tuscany.zarr tuscany_gdal.zarr --zarr-format 2
    """
    from landprompt.embedder.convert import convert_cube
    from landprompt.embedder.cube import describe, open_cube

    check_outputs(new, folder=True)
    variance = None if exact_rank else DEFAULT_VARIANCE
    path = convert_cube(old, new, rank, dtype, variance, zarr_format=zarr_format)  # type: ignore[arg-type]
    summary = describe(open_cube(path))
    explained = summary["attrs"]["basis"]["info"]["explained_variance"]
    console.print(f"wrote {path}: rank {summary['rank']}, explained variance {explained:.5f}")


@app.command("overviews")
def cube_overviews(
    path: Annotated[Path, typer.Argument(help="A finished embedding cube (.zarr); re-run to resume.")],
) -> None:
    """Write the cube's overview pyramid (2x, 4x, ... coarser levels), used by tiles and `serve`.

    Examples:
        landprompt cube overviews cube.zarr
    """
    from landprompt.embedder.overviews import build_overviews

    with progress_bar("writing overviews", unit="chunks", transient=True, console=err_console) as bar:
        levels = build_overviews(path, progress=bar.to)
    console.print(f"wrote {len(levels)} overview levels of {path} in {path / 'overviews'}")
