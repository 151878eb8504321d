"""``landprompt serve``: the map page and tile server of embedding cubes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from landprompt.cli.common import (
    PretrainedOption,
    QueryClipOption,
    clip_or_none,
    console,
    err_console,
)


def serve(
    cube: Annotated[Path, typer.Argument(help="An embedding cube (.zarr) or a folder of cubes.")],
    host: Annotated[
        str, typer.Option(help="Address to bind; other machines reach it only if told.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Tile/top-k requests computed at once.")] = 4,
    clip: QueryClipOption = None,
    pretrained: PretrainedOption = None,
) -> None:
    """Serve a cube's concept maps: a page at http://HOST:PORT/, tiles, top-k, points, OpenAPI at /docs.

    Examples:
        landprompt serve cube.zarr

        landprompt serve cubes/ --port 8080
    """
    import torch
    import uvicorn

    from landprompt.query.topk import cube_paths
    from landprompt.serve.app import Limits, create_app
    from landprompt.serve.layer import ServedCube

    paths = cube_paths(cube)
    model = clip_or_none(clip, pretrained, paths[0])
    with err_console.status(f"opening {len(paths)} cube(s)...", spinner="dots"):
        cubes = [ServedCube(path, model) for path in paths]
        app = create_app(cubes, Limits(workers=workers))
    for served in cubes:
        if served.needs_overviews:
            err_console.print(
                f"[bold yellow]warning:[/bold yellow] {served.path} has no overviews: zoomed-out tiles are "
                f"refused; run `landprompt cube overviews {served.path}` for them",
                highlight=False,
                soft_wrap=True,
            )
    torch.set_num_threads(1)  # requests run in parallel threads: one torch thread each (measured 1.9x faster)
    console.print(f"serving {', '.join(p.name for p in paths)} at http://{host}:{port}/ (Ctrl-C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
