"""``landprompt evaluate concepts``: the LUCAS concept benchmark (the evaluate group registers it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from landprompt.cli.common import Coordinates, PretrainedOption, QueryClipOption, clip_or_none, console


def evaluate_concepts_command(
    lucas: Annotated[Path, typer.Option("--lucas", help="LUCAS table (CSV or Parquet), any survey year.")],
    cube: Annotated[
        Path | None,
        typer.Option(
            "--cube", help="Embedding cube or folder of shards; without it only labels are counted."
        ),
    ] = None,
    concepts: Annotated[
        Path | None, typer.Option("--concepts", help="Concept suite YAML (default: the shipped suite).")
    ] = None,
    prompts: Annotated[
        str, typer.Option("--prompts", help="Prompt styles, comma-separated; '+' ensembles.")
    ] = "classname,ground,aerial,descriptive",
    coordinates: Annotated[Coordinates, typer.Option(help="th (theoretical point) or gps.")] = "th",
    exclude_catalog: Annotated[
        Path | None,
        typer.Option("--exclude-catalog", help="Pairs catalog: drop points near its training places."),
    ] = None,
    exclude_km: Annotated[
        float, typer.Option("--exclude-km", min=0.0, help="Radius of that exclusion (km, above 0).")
    ] = 2.0,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Report folder: report.json, report.md, auc.png.")
    ] = Path("evaluation/concepts"),
    block_km: Annotated[
        float, typer.Option("--block-km", min=0.0, help="Bootstrap block side (km, above 0).")
    ] = 50.0,
    bootstrap: Annotated[int, typer.Option(min=0, help="Bootstrap replicates (0: no intervals).")] = 200,
    min_class: Annotated[
        int, typer.Option("--min-class", min=1, help="Fewest presences and absences to score a concept.")
    ] = 10,
    versus: Annotated[
        list[str] | None,
        typer.Option("--versus", help="Background prompt (repeat); default: land-cover vocabulary."),
    ] = None,
    clip: QueryClipOption = None,
    pretrained: PretrainedOption = None,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
) -> None:
    """Score concept maps on LUCAS points: AUC and AP per concept and prompt style, with intervals.

    Examples:
        landprompt evaluate concepts --lucas EU_LUCAS_2018.csv --cube europe/ --exclude-catalog pairs.duckdb
    """
    from landprompt.evaluate.concepts import evaluate_concepts
    from landprompt.evaluate.concepts_report import write_concepts_report

    report = evaluate_concepts(
        lucas,
        cube,
        concepts,
        prompts,
        coordinates=coordinates,
        exclude_catalog=exclude_catalog,
        exclude_km=exclude_km,
        versus=versus or None,
        clip=clip_or_none(clip, pretrained, cube) if cube is not None else None,
        block_km=block_km,
        bootstrap=bootstrap,
        min_class=min_class,
        seed=seed,
        progress=True,
    )
    counts = report["counts"]
    console.print(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()))
    if "mean_auc" in report:
        table = Table(
            title=f"mean ROC AUC over {sum(e['status'] == 'scored' for e in report['concepts'])} concepts"
        )
        table.add_column("prompts")
        table.add_column("mean AUC", justify="right")
        for setting, value in report["mean_auc"].items():
            table.add_row(setting, "" if value is None else f"{value:.3f}")
        console.print(table)
    paths = write_concepts_report(report, out)
    console.print("wrote " + ", ".join(str(p) for p in paths.values()))
