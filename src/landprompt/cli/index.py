"""``landprompt index``: FAISS indexes over embedding cubes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from landprompt.cli.common import CubeArgument, console, sub_app

app = sub_app("Build FAISS indexes over embedding cubes.")


@app.command("build")
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
    verify: Annotated[
        bool,
        typer.Option(
            "--verify/--no-verify", help="Verify the cube's chunks first (recorded in the sidecar)."
        ),
    ] = True,
) -> None:
    """Build a FAISS index over a cube's valid pixels (streamed chunk by chunk).

    Examples:
        landprompt index build tuscany.zarr

        landprompt index build tuscany.zarr --factory "IVF4096,SQ8" -o tuscany.faiss
    """
    from landprompt.index.build import build_index, default_index_path

    info = build_index(cube, out, factory=factory, seed=seed, gpu=gpu, verify=verify)
    console.print(
        f"indexed {info.ntotal:,} pixels of {info.dim}-d with [bold]{info.factory}[/bold] "
        f"-> {out or default_index_path(cube)}"
    )
