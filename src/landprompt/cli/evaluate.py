"""``landprompt evaluate``: zero-shot land-cover benchmarks (one sub-command each) and field points."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from landprompt.cli.analytics import evaluate_points_command
from landprompt.cli.common import (
    BatchSizeOption,
    Coordinates,
    ScoreNorm,
    check_outputs,
    clip_option,
    clip_or_none,
    console,
    pretrained_option,
    sub_app,
)
from landprompt.cli.concepts import evaluate_concepts_command
from landprompt.cli.embed import presto_arguments

app = sub_app("Zero-shot land-cover benchmarks, and maps against field observations.")

EvalClipOption = Annotated[
    str | None, clip_option("of the prompts; default: the one the checkpoint or cube names")
]
EvalPretrainedOption = Annotated[
    str | None, pretrained_option("default (lucas): the tag --cube records for that model, else required")
]


def _benchmark_command(dataset: str) -> Callable[..., None]:
    def command(
        root: Annotated[
            Path, typer.Option("--root", help="The benchmark's data (lucas: a LUCAS CSV or folder).")
        ],
        model: Annotated[
            str | None, typer.Option("--model", help="Checkpoint, registered encoder, clip_rgb or random.")
        ] = None,
        prompts: Annotated[
            str,
            typer.Option(
                "--prompts", help="Styles, comma-separated; '+' ensembles: aerial,ground,aerial+ground."
            ),
        ] = "classname",
        limit: Annotated[
            int | None, typer.Option("--limit", min=1, help="A stratified random subset of N samples.")
        ] = None,
        out: Annotated[
            Path | None, typer.Option("--out", "-o", help="Report folder (default evaluation/DATASET).")
        ] = None,
        cube: Annotated[
            Path | None, typer.Option("--cube", help="lucas: the embedding cube to read.")
        ] = None,
        clip: EvalClipOption = None,
        pretrained: EvalPretrainedOption = None,
        prompt_file: Annotated[
            Path | None, typer.Option("--prompt-file", help="YAML/JSON prompts extending the shipped set.")
        ] = None,
        score_norm: Annotated[
            ScoreNorm, typer.Option("--score-norm", help="none, or class-mean (SenCLIP's).")
        ] = "none",
        seed: Annotated[int, typer.Option(help="Seed of --limit and of random baselines.")] = 0,
        month: Annotated[
            int | None, typer.Option(min=1, max=12, help="eurosat: month 1-12 of the dateless patches (7).")
        ] = None,
        split: Annotated[
            Path | None, typer.Option(help="bigearthnet: CSV listing the patches to keep.")
        ] = None,
        s1_root: Annotated[
            Path | None, typer.Option("--s1-root", help="bigearthnet: folder of S1 patches.")
        ] = None,
        coordinates: Annotated[Coordinates | None, typer.Option(help="lucas: th (default) or gps.")] = None,
        window: Annotated[int, typer.Option(min=1, help="lucas: odd window of cube pixels per point.")] = 1,
        batch_size: BatchSizeOption = 1024,
        device: Annotated[
            str | None, typer.Option(help="Torch device (default: CUDA when available).")
        ] = None,
        presto_weights: Annotated[
            Path | None,
            typer.Option("--presto-weights", help="--model sits from the official Presto weights file."),
        ] = None,
    ) -> None:
        from landprompt.embedder.recipe import EncoderRecipe
        from landprompt.evaluate.harness import run_evaluation

        check_outputs(out, folder=True)
        # only lucas reads --cube: the text tower's tag (and its random-weights warning) come from it
        text_tower = clip_or_none(clip, pretrained, cube if dataset == "lucas" else None, device=device)
        encoder: Any = model
        if presto_weights is not None:  # the official Presto weights, its head seeded as in ``embed run``
            options = presto_arguments(model or "sits", presto_weights)
            if text_tower is not None:
                options.update(clip_dim=text_tower.embed_dim, clip_model=text_tower.name)
            encoder = EncoderRecipe.of("sits", options, seed).build(device)
        report = run_evaluation(
            dataset,
            root,
            encoder,
            text_tower,
            prompts,
            limit,
            out or Path("evaluation") / dataset,
            cube=cube,
            prompt_file=prompt_file,
            seed=seed,
            batch_size=batch_size,
            window=window,
            score_norm=score_norm,
            device=device,
            progress=True,
            month=month,
            split=split,
            s1_root=s1_root,
            coordinates=coordinates,
        )
        console.print(summary_table(report))
        console.print(f"report: {Path(report['files']['folder']) / 'report.md'}")

    command.__doc__ = (
        f"Zero-shot classification of {dataset}: metrics, JSON + Markdown report, confusion matrix PNG."
        f"\n\nExamples:\n    {_EXAMPLES[dataset]}\n"
    )
    return command


def summary_table(report: dict[str, Any]) -> Table:
    """One row per prompt setting with the headline metrics (percent), plus chance."""
    dataset = report["dataset"]
    columns = ["mAP", "micro_f1", "macro_f1"] if dataset["multilabel"] else ["top1", "balanced_accuracy"]
    table = Table(
        title=f"{dataset['name']}: {dataset['samples_scored']} samples, model {report['model']['argument']}, "
        f"CLIP {report['clip']['id']}"
    )
    table.add_column("prompts")
    for column in columns:
        table.add_column(f"{column} (%)", justify="right")
    for result in report["results"]:
        table.add_row(result["setting"], *(_pct(result[c]) for c in columns))
    chance = report.get("chance") or {}
    if chance:
        table.add_row("[dim]chance[/dim]", *(_pct(chance.get(c)) for c in columns))
    return table


def _pct(value: float | None) -> str:
    return "" if value is None or value != value else f"{100 * value:.1f}"


#: An example command line of each benchmark (shown by its ``--help``).
_EXAMPLES = {
    "eurosat": "landprompt evaluate eurosat --root EuroSAT_MS/ --model runs/sits.json --prompts aerial",
    "eurosat-rgb": "landprompt evaluate eurosat-rgb --root EuroSAT_RGB/ --model clip_rgb --clip ViT-B-32",
    "bigearthnet": "landprompt evaluate bigearthnet --root BigEarthNet-S2/ --model random --limit 2000",
    "lucas": "landprompt evaluate lucas --root lucas_2018.csv --cube region.zarr --prompts descriptive",
}

#: The benchmarks of ``landprompt.evaluate.datasets.BENCHMARKS``, named here so that the command line
#: starts without importing torch (a test keeps the two in step).
BENCHMARK_NAMES = ("eurosat", "eurosat-rgb", "bigearthnet", "lucas")

for _name in BENCHMARK_NAMES:
    app.command(_name)(_benchmark_command(_name))
app.command("points")(evaluate_points_command)
app.command("concepts")(evaluate_concepts_command)
