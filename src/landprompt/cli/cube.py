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
