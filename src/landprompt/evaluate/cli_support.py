"""The body of ``landprompt evaluate``: load what the options name, run the harness.

The CLI module (:mod:`landprompt.cli.evaluate`) parses options and prints the summary;
:func:`evaluate_command` does the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from landprompt.embedder.clip import ClipModel
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
    text_tower: ClipModel | None = None,
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

    ``text_tower`` is the CLIP model of the prompts; without it, the one the model's spec
    (or the cube) names. ``presto_weights`` builds ``--model sits`` from the official Presto weights
    (its head seeded by ``seed``, as in ``embed run``). Reader options not given (None) are left to the
    reader's defaults.

    Returns:
        The report of :func:`~landprompt.evaluate.harness.run_evaluation`, written to ``out``
        (default ``evaluation/<dataset>``).
    """
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
