"""``landprompt train``: contrastive training of a satellite encoder into CLIP's image space.

Register on the root app with ``app.command("train")(train)``. The module also runs on its own, which is
how torchrun starts one process per GPU without the console script::

    torchrun --nproc-per-node 4 -m landprompt.cli.train configs/train_example.yaml
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from landprompt.cli.common import LandpromptCommand, LandpromptGroup, console


def train(
    config: Annotated[
        Path | None, typer.Argument(help="Training configuration (YAML; --example prints a documented one).")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a key, e.g. --set optim.lr=1e-3 (repeatable; values are YAML)."),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option("--resume", help="auto (latest checkpoint of run.out), none, or a checkpoint folder."),
    ] = None,
    stop_at: Annotated[
        int | None,
        typer.Option(
            "--stop-at",
            min=1,
            help="Stop with a checkpoint after this step; the schedule still spans run.steps.",
        ),
    ] = None,
    example: Annotated[
        bool,
        typer.Option("--example", help="Print the example configuration (every key documented) and exit."),
    ] = False,
    schema: Annotated[
        bool,
        typer.Option(
            "--schema", help="Print the configuration's JSON Schema (every key described) and exit."
        ),
    ] = False,
) -> None:
    """Train a satellite encoder into CLIP's image space (one process, or one per GPU under torchrun).

    Examples:
        landprompt train --example > train.yaml

        landprompt train --schema > train.schema.json

        landprompt train train.yaml --set optim.lr=1e-3 --resume auto
    """
    from landprompt.errors import BadInputError

    if example:
        from landprompt.examples import example_text

        print(example_text("train"), end="")
        return
    if schema:
        import json

        from landprompt.train.config import json_schema

        print(json.dumps(json_schema(), indent=2))
        return
    if config is None:
        raise BadInputError("give a training configuration (YAML); 'landprompt train --example' prints one")
    from landprompt.train import load_config
    from landprompt.train import train as run_training

    overrides = list(set_ or [])
    if resume is not None:
        overrides.append("run.resume=null" if resume.lower() == "none" else f"run.resume={resume!r}")
    result = run_training(load_config(config, overrides), stop_at=stop_at)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    table = Table(title=f"landprompt train: step {result.step}", show_header=False)
    table.add_row("run folder", str(result.out))
    table.add_row("checkpoint", str(result.checkpoint))
    table.add_row("samples/s (this run)", f"{result.samples_per_s:,.1f}")
    for key in ("loss", "val_sat2photo_r1", "val_sat2photo_r10", "val_photo2sat_r1", "val_photo2sat_r10"):
        if key in result.metrics:
            table.add_row(key, f"{result.metrics[key]:.4f}")
    console.print(table)


app = typer.Typer(cls=LandpromptGroup, add_completion=False, pretty_exceptions_enable=False)
app.command(cls=LandpromptCommand)(train)

if __name__ == "__main__":
    app()
