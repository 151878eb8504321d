"""The zero-shot evaluation harness: a benchmark, a model, prompt settings -> metrics and a report.

:func:`run_evaluation` reads the benchmark (optionally a stratified subset), embeds every sample once
with the model (raster benchmarks) or reads the points' embeddings from a cube (LUCAS), embeds the class
prompts of every prompt setting with CLIP's text tower, scores by cosine similarity and computes the
metrics of :mod:`landprompt.evaluate.zeroshot`. With ``out_dir`` it writes the report files of
:mod:`landprompt.evaluate.report`.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from landprompt.embedder.clip import ClipModel, clip_named_in
from landprompt.embedder.cube import content_hash, open_cube
from landprompt.errors import BadInputError
from landprompt.evaluate.baselines import BASELINES, load_model
from landprompt.evaluate.datasets import Benchmark, Lucas, RasterBenchmark, open_benchmark, point_embeddings
from landprompt.evaluate.prompts import class_embeddings, load_prompt_set, parse_setting, parse_settings
from landprompt.evaluate.report import (
    REPORT_FORMAT,
    REPORT_VERSION,
    plot_confusion,
    setting_slug,
    write_json,
    write_markdown,
    write_predictions,
)
from landprompt.evaluate.zeroshot import (
    DenseEncoder,
    ImageEncoder,
    chance_levels,
    embed_samples,
    multilabel_results,
    normalise_scores,
    single_label_results,
)

PREDICTION_RULE = {
    False: "single-label: the class of highest cosine similarity (argmax)",
    True: "multi-label: classes whose softmax(logit_scale * cosine) probability exceeds 1 / num_classes",
}
_PACKAGES = ("landprompt", "numpy", "torch", "open_clip_torch", "rasterio", "xarray", "zarr")
_CUBE_ATTRS = ("model", "encoder", "checkpoint", "checkpoint_sha256", "clip_model", "clip_pretrained")


def run_evaluation(
    dataset: str,
    root: str | Path,
    encoder: str | Path | DenseEncoder | ImageEncoder | None = None,
    clip: ClipModel | None = None,
    styles: str | Sequence[str] = "classname",
    limit: int | None = None,
    out_dir: str | Path | None = None,
    *,
    cube: str | Path | None = None,
    prompt_file: str | Path | None = None,
    seed: int = 0,
    batch_size: int = 1024,
    window: int = 1,
    score_norm: str = "none",
    device: str | None = None,
    progress: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Zero-shot land-cover classification of a benchmark.

    Args:
        dataset: ``eurosat``, ``eurosat-rgb``, ``bigearthnet`` or ``lucas``.
        root: The benchmark's data (see :mod:`landprompt.evaluate.datasets`).
        encoder: Raster benchmarks: an encoder object, or a model argument for
            :func:`~landprompt.evaluate.baselines.load_model` (``clip_rgb``, ``random``, a registered
            name, a checkpoint). Not used for ``lucas``.
        clip: CLIP model of the text embeddings; default the one the encoder's spec (or the cube) names.
        styles: Prompt settings, ``"aerial,ground,aerial+ground"`` or a list (see
            :mod:`landprompt.evaluate.prompts`).
        limit: Evaluate a stratified random subset of this many samples (None: all).
        out_dir: Write ``report.json``, ``report.md``, confusion PNGs and ``predictions.csv`` here.
        cube: ``lucas``: the embedding cube the points are read from.
        prompt_file: A YAML or JSON prompt file extending the shipped prompt set.
        seed: Seed of the subset draw and of random baselines.
        batch_size: Pixels or patches per forward pass.
        window: ``lucas``: odd side in pixels of the window averaged around each point.
        score_norm: ``none`` (cosine scores as they are) or ``class-mean`` (each class's scores divided
            by their mean over the samples, as SenCLIP's evaluation does).
        device: Device of models loaded here (default: CUDA when available).
        progress: Show a progress bar while embedding.
        **options: Reader options: ``month`` (eurosat), ``s1_root``, ``use_s1``, ``split`` (bigearthnet),
            ``coordinates`` (lucas).

    Returns:
        The report (see :mod:`landprompt.evaluate.report`); ``report["results"]`` has one entry per setting.

    Raises:
        BadInputError: For an unknown benchmark, style, option or model, a model whose embedding size
            differs from CLIP's, or a missing model or cube.
    """
    start = time.perf_counter()
    settings = parse_settings(styles)
    normalise_scores(np.zeros((1, 1)), score_norm)  # fail on an unknown method before any work
    prompt_set = load_prompt_set(dataset, prompt_file)
    benchmark = open_benchmark(dataset, root, **options)
    available = benchmark.available
    benchmark = benchmark.limit(limit, seed)
    for setting in settings:  # fail on a bad style before the long part
        for style in parse_setting(setting):
            prompt_set.prompts(style, benchmark.classes)
    if isinstance(benchmark, Lucas):
        embeddings, valid, clip, model = _cube_embeddings(benchmark, cube, clip, window, device)
    elif isinstance(benchmark, RasterBenchmark):
        if encoder is None:
            raise BadInputError(
                f"{dataset} needs a model: a checkpoint, a registered encoder, clip_rgb or random"
            )
        model_obj, clip, model = _model(encoder, clip, benchmark, seed, device)
        embeddings, valid = embed_samples(benchmark, model_obj, batch_size, progress)
    else:  # pragma: no cover - every reader is one of the two
        raise BadInputError(f"cannot evaluate {type(benchmark).__name__}")
    embedding_seconds = time.perf_counter() - start
    if not valid.any():
        raise BadInputError(
            f"none of the {len(benchmark)} {dataset} samples got a valid embedding"
            + (" (do the points fall inside the cube?)" if isinstance(benchmark, Lucas) else "")
        )
    if embeddings.shape[1] != clip.embed_dim:
        raise BadInputError(
            f"the model embeds into {embeddings.shape[1]} dimensions but CLIP {clip.id} into "
            f"{clip.embed_dim}: pass the CLIP model the encoder was trained against"
        )
    labels = benchmark.label_matrix()
    results, predictions = [], _prediction_table(benchmark, valid)
    for setting in settings:
        text = class_embeddings(clip, prompt_set, benchmark.classes, setting)
        scores = normalise_scores(embeddings[valid] @ text.T, score_norm)
        result = _score(benchmark, scores, labels[valid], clip.logit_scale)
        predicted = result.pop("predicted")
        predictions[f"predicted[{setting}]"] = _names(benchmark, predicted, valid)
        results.append({"setting": setting, **result})
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "format_version": REPORT_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": {
            **benchmark.describe(),
            "samples_available": available,
            "samples_drawn": len(benchmark),
            "samples_scored": int(valid.sum()),
            "limit": limit,
            "seed": seed,
        },
        "model": model,
        "clip": clip.describe(),
        "prompts": {"settings": settings, **prompt_set.describe(settings)},
        "protocol": {
            "sample_embedding": "L2-normalised mean of the valid cells of the model's output over the sample",
            "score": "cosine similarity of sample and class embeddings",
            "score_normalisation": score_norm,
            "prompt_ensemble": "class embedding = normalised mean of a style's prompts; '+' averages styles",
            "prediction": PREDICTION_RULE[benchmark.multilabel],
            "unscored": "samples without any valid embedding are left out of the metrics",
            "logit_scale": clip.logit_scale,
        },
        "chance": chance_levels(labels[valid], benchmark.multilabel),
        "results": results,
        "versions": _versions(),
        "seconds": {"embedding": round(embedding_seconds, 3), "total": None},
    }
    report["seconds"]["total"] = round(time.perf_counter() - start, 3)
    if out_dir is not None:
        write_outputs(report, benchmark, predictions, Path(out_dir))
    return report


def write_outputs(
    report: dict[str, Any], benchmark: Benchmark, predictions: pd.DataFrame, out_dir: Path
) -> None:
    """Write the confusion PNGs (single-label), ``predictions.csv``, ``report.json`` and ``report.md``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for result in report["results"]:
        if not benchmark.multilabel:
            name = f"confusion_{setting_slug(result['setting'])}.png"
            title = f"{benchmark.name}, prompts {result['setting']}"
            plot_confusion(np.array(result["confusion_matrix"]), benchmark.class_names, out_dir / name, title)
            result["confusion_png"] = name
    write_predictions(predictions, out_dir / "predictions.csv")
    report["files"] = {
        "folder": str(out_dir),
        "json": "report.json",
        "markdown": "report.md",
        "predictions": "predictions.csv",
    }
    write_json(report, out_dir / "report.json")
    write_markdown(report, out_dir / "report.md")


def _model(
    encoder: str | Path | DenseEncoder | ImageEncoder,
    clip: ClipModel | None,
    benchmark: RasterBenchmark,
    seed: int,
    device: str | None,
) -> tuple[Any, ClipModel, dict[str, Any]]:
    """The encoder object, the CLIP model and the model's provenance for the report."""
    argument = str(encoder) if isinstance(encoder, str | Path) else type(encoder).__name__
    if isinstance(encoder, str | Path):
        encoder = load_model(encoder, clip, sample_size=benchmark.sample_side(), seed=seed, device=device)
    spec = getattr(encoder, "spec", None)
    if clip is None:
        names = {key: getattr(spec, key, None) for key in ("clip_model", "clip_pretrained")}
        clip = clip_named_in(names, argument, device)
    dim = getattr(spec, "embed_dim", clip.embed_dim)
    if dim != clip.embed_dim:  # checked again on the embeddings, for encoders without a spec
        raise BadInputError(
            f"{argument} embeds into {dim} dimensions but CLIP {clip.id} into {clip.embed_dim}: "
            "pass the CLIP model the encoder was trained against"
        )
    describe = getattr(encoder, "describe", None)
    provenance = {"argument": argument, **(describe() if callable(describe) else {})}
    if argument in BASELINES and argument.startswith("random"):
        provenance["baseline"] = f"random initialisation (seed {seed})"
    return encoder, clip, provenance


def _cube_embeddings(
    benchmark: Lucas, cube: str | Path | None, clip: ClipModel | None, window: int, device: str | None
) -> tuple[np.ndarray, np.ndarray, ClipModel, dict[str, Any]]:
    """The points' embeddings from a cube, the CLIP model and the cube's provenance."""
    if cube is None:
        raise BadInputError("lucas is evaluated against an embedding cube: pass cube= (--cube CUBE.zarr)")
    ds = open_cube(cube)
    attrs = {k: ds.attrs[k] for k in _CUBE_ATTRS if k in ds.attrs}
    if clip is None:
        clip = clip_named_in(attrs, str(cube), device)
    embeddings, valid = point_embeddings(ds, benchmark.lonlat(), window)
    model = {
        "argument": str(cube),
        "cube": str(cube),
        "content_hash": content_hash(ds),
        "window": window,
        **attrs,
    }
    return embeddings, valid, clip, model


def _score(
    benchmark: Benchmark, scores: np.ndarray, labels: np.ndarray, logit_scale: float
) -> dict[str, Any]:
    if benchmark.multilabel:
        return multilabel_results(scores, labels, benchmark.class_names, logit_scale)
    return single_label_results(scores, labels.argmax(axis=1), benchmark.class_names)


def _prediction_table(benchmark: Benchmark, valid: np.ndarray) -> pd.DataFrame:
    names = np.array(benchmark.class_names)
    return pd.DataFrame(
        {
            "id": [s.id for s in benchmark],
            "true": [";".join(names[list(s.labels)]) for s in benchmark],
            "scored": valid,
        }
    )


def _names(benchmark: Benchmark, predicted: np.ndarray, valid: np.ndarray) -> list[str]:
    """Predicted class names of every sample ('' for unscored ones)."""
    names = np.array(benchmark.class_names)
    rows = predicted if predicted.ndim == 2 else np.eye(len(names), dtype=bool)[predicted]
    out = [""] * len(valid)
    for i, row in zip(np.flatnonzero(valid), rows, strict=True):
        out[i] = ";".join(names[row])
    return out


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in _PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found
