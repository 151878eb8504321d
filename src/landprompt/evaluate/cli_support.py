"""The body of ``landprompt evaluate``: load what the options name, run the harness, summarise.

The CLI module only parses options and prints; :func:`evaluate_command` does the rest and
:func:`summary_table` turns the report into the table the command prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from landprompt.embedder.clip import load_clip
from landprompt.embedder.recipe import EncoderRecipe
from landprompt.errors import BadInputError
from landprompt.evaluate.harness import run_evaluation


def evaluate_command(
    dataset: str,
    root: Path,
    model: str | None = None,
    prompts: str = "classname",
    limit: int | None = None,
    out: Path | None = None,
    *,
    clip: str | None = None,
    pretrained: str | None = None,
    cube: Path | None = None,
    prompt_file: Path | None = None,
    seed: int = 0,
    batch_size: int = 1024,
    device: str | None = None,
    month: int | None = None,
    split: Path | None = None,
    s1_root: Path | None = None,
    coordinates: str | None = None,
    window: int = 1,
    score_norm: str = "none",
    presto_weights: Path | None = None,
) -> dict[str, Any]:
    """Run ``landprompt evaluate DATASET``; options as the command's (see ``docs/evaluation.md``).

    ``clip`` / ``pretrained`` name the CLIP model of the prompts; without them, the one the model's spec
    (or the cube) names. ``presto_weights`` builds ``--model sits`` from the official Presto weights
    (its head seeded by ``seed``, as in ``embed run``). Reader options not given (None) are left to the
    reader's defaults.

    Returns:
        The report of :func:`~landprompt.evaluate.harness.run_evaluation`, written to ``out``
        (default ``evaluation/<dataset>``).
    """
    text_tower = load_clip(clip, pretrained, device) if clip is not None else None
    encoder: Any = model
    if presto_weights is not None:
        if model not in (None, "sits"):
            raise BadInputError(f"--presto-weights builds --model sits, not {model!r}")
        if not presto_weights.is_file():
            raise BadInputError(f"--presto-weights {presto_weights} does not exist")
        options: dict[str, Any] = {"presto_weights": presto_weights.resolve()}
        if text_tower is not None:
            options.update(clip_dim=text_tower.embed_dim, clip_model=text_tower.name)
        encoder = EncoderRecipe.of("sits", options, seed).build(device)
    return run_evaluation(
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
