"""``landprompt cube``: inspect embedding cubes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from landprompt.cli.common import console, sub_app
from landprompt.embedder.basis import DEFAULT_RANK, DEFAULT_VARIANCE

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


@app.command("convert")
def cube_convert(
    old: Annotated[Path, typer.Argument(help="A finished version-1 cube (.zarr).")],
    new: Annotated[Path, typer.Argument(help="The version-2 cube to write (.zarr); re-run to resume.")],
    rank: Annotated[
        int, typer.Option(help="PCA basis rank (grown to keep 99.9 % of the variance).")
    ] = DEFAULT_RANK,
    dtype: Annotated[str | None, typer.Option(help="Code storage: int8 or fp16 (default: OLD's).")] = None,
    exact_rank: Annotated[bool, typer.Option(help="Keep exactly --rank, whatever the variance.")] = False,
) -> None:
    """Rewrite a version-1 cube in a PCA basis (format version 2, r + 1 values a pixel)."""
    from landprompt.embedder.convert import convert_cube
    from landprompt.embedder.cube import describe, open_cube

    path = convert_cube(old, new, rank, dtype, None if exact_rank else DEFAULT_VARIANCE)  # type: ignore[arg-type]
    summary = describe(open_cube(path))
    explained = summary["attrs"]["basis"]["info"]["explained_variance"]
    console.print(f"wrote {path}: rank {summary['rank']}, explained variance {explained:.5f}")
