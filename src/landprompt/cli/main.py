"""The ``landprompt`` command line: parses, validates, prints. The work happens in the stage modules.

Each stage has its sub-command group in a module of this package; this module assembles them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from landprompt import __version__
from landprompt.cli.common import (
    RANDOM_WEIGHTS,
    ClipOption,
    LandpromptGroup,
    console,
    named_clip,
    pretrained_option,
)
from landprompt.cli.cube import app as cube_app
from landprompt.cli.embed import app as embed_app
from landprompt.cli.embed import eo_app
from landprompt.cli.evaluate import app as evaluate_app
from landprompt.cli.index import app as index_app
from landprompt.cli.pairs import app as pairs_app
from landprompt.cli.query import app as query_app
from landprompt.cli.serve import serve
from landprompt.cli.train import train

app = typer.Typer(
    cls=LandpromptGroup,
    help="Map any concept in plain words from Sentinel-1/2 time series aligned with CLIP.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(eo_app, name="eo")
app.add_typer(pairs_app, name="pairs")
app.command("train")(train)
app.add_typer(embed_app, name="embed")
app.add_typer(cube_app, name="cube")
app.add_typer(index_app, name="index")
app.add_typer(query_app, name="query")
app.add_typer(evaluate_app, name="evaluate")
app.command("serve")(serve)


def _version(value: bool) -> None:
    if value:
        console.print(f"landprompt {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
    debug: Annotated[
        bool,
        typer.Option("--debug", help="Show the full traceback of every error (or set LANDPROMPT_DEBUG=1)."),
    ] = False,
) -> None:
    """Map any concept in plain words from Sentinel-1/2 time series aligned with CLIP."""


#: The demo's CLIP: ``embedder.clip.TINY_MODEL``, which has no trained weights (named here: no torch import).
DEMO_CLIP = "landprompt-tiny"
DemoPretrainedOption = Annotated[
    str | None,
    pretrained_option(
        f"default for {DEMO_CLIP}: none (the demo plants its pixels from this text tower), else required"
    ),
]


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("demo-output"),
    concept: Annotated[str, typer.Option(help="Concept to map (one of the planted land covers).")] = "a lake",
    clip: ClipOption = DEMO_CLIP,
    pretrained: DemoPretrainedOption = None,
    seed: Annotated[int, typer.Option(help="Seed of the planting noise.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace a cube.zarr in --out that no demo made.")] = False,
) -> None:
    """Offline demo: synthetic planted embeddings -> cube -> probability map (COG + PNG).

    Examples:
        landprompt demo

        landprompt demo --out demo-output --concept "a forest"
    """
    from landprompt.demo import LAND_COVERS, run_demo

    with console.status("building the synthetic region, its cube and the map..."):
        # random weights are the tiny model's documented default: the demo plants its pixels from it
        default = RANDOM_WEIGHTS if clip == DEMO_CLIP else None
        model = named_clip(clip, pretrained, default=default, warn=False)
        result = run_demo(out, concept=concept, clip=model, seed=seed, overwrite=overwrite)
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
