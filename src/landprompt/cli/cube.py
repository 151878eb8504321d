"""``landprompt cube``: inspect embedding cubes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from landprompt.cli.common import console, sub_app

app = sub_app("Inspect embedding cubes.")


@app.command("info")
def cube_info(path: Annotated[Path, typer.Argument(help="Embedding cube (.zarr).")]) -> None:
    """Summarise an embedding cube: grid, CRS, dtype, valid fraction, provenance."""
    from landprompt.embedder.cube import describe, open_cube

    summary = describe(open_cube(path))
    table = Table(title=str(path), show_header=False)
    for key, value in summary.items():
        table.add_row(key, str(value))
    console.print(table)


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
    """Recompute every chunk's digest against the recorded ones and the content hash; non-zero exit on damage."""
    from landprompt.embedder.cube import mark_for_repair, verify
    from landprompt.errors import DamagedCubeError

    report = verify(path)
    if report.problems:
        table = Table(title=f"damaged chunks of {path}")
        for column in ("chunk", "status", "where", "detail"):
            table.add_column(column)
        for problem in report.problems:
            table.add_row(str(problem.index), problem.status, problem.where, problem.detail)
        console.print(table)
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
