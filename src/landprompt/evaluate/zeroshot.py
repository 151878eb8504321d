"""Zero-shot classification: sample embeddings against class text embeddings, and their metrics.

A sample's embedding is the L2-normalised mean of the valid cells of the encoder's dense output over
the patch (a pixel model's pooled pixels, ``clip_rgb``'s patches); a sample without any valid cell is
not scored. Its score for a class is the cosine similarity with the class's text embedding:
single-label benchmarks predict the best class, multi-label ones threshold softmax probabilities
(:func:`~landprompt.evaluate.metrics.multilabel_predictions`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import xarray as xr
from PIL import Image
from sklearn import metrics

from landprompt.errors import BadInputError
from landprompt.evaluate.datasets.base import RasterBenchmark
from landprompt.evaluate.metrics import multilabel_predictions
from landprompt.progress import progress_bar

IMAGE_BATCH = 64
SCORE_NORMS: tuple[str, ...] = ("none", "class-mean")
"""Score normalisations: ``class-mean`` divides each class's scores by their mean over the samples
(as SenCLIP's evaluation script does), a transductive calibration of prompt biases."""


@runtime_checkable
class DenseEncoder(Protocol):
    """What the harness needs of an encoder (:class:`~landprompt.embedder.models.base.Encoder` has it)."""

    def embed_dense(
        self, composite: xr.Dataset, latlon: np.ndarray | None = None, batch_size: int = 1024
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings [rows, cols, d] and validity [rows, cols] of one composite."""
        ...


@runtime_checkable
class ImageEncoder(Protocol):
    """An encoder of RGB images (``clip_rgb``), used on JPEG benchmarks."""

    def embed_images(self, images: list[Image.Image]) -> Any:
        """Embeddings [images, d] of PIL images."""
        ...


def pool(embeddings: np.ndarray, valid: np.ndarray) -> np.ndarray | None:
    """L2-normalised mean of the valid cells of a dense output, or None if none is valid (or it is zero)."""
    cells = embeddings[valid]
    if not len(cells):
        return None
    mean = cells.astype(np.float64).mean(axis=0)
    norm = np.linalg.norm(mean)
    return (mean / norm).astype(np.float32) if norm > 0 else None


def embed_samples(
    benchmark: RasterBenchmark,
    encoder: DenseEncoder | ImageEncoder,
    batch_size: int = 1024,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Embed every sample of a raster benchmark.

    Args:
        benchmark: The samples.
        encoder: Embeds composites (``embed_dense``) or, for image benchmarks, images (``embed_images``).
        batch_size: Passed to ``embed_dense`` (pixels or patches per forward pass).
        progress: Show a progress bar.

    Returns:
        Embeddings float32 [samples, d] (zero where invalid) and validity bool [samples].

    Raises:
        BadInputError: If the encoder cannot read the benchmark's inputs.
    """
    vectors: list[np.ndarray | None] = []
    images: list[Image.Image] = []
    with progress_bar(f"embedding {benchmark.name}", len(benchmark), progress) as advance:
        for sample in benchmark:
            data = benchmark.load(sample)
            if data.image is not None:
                if not isinstance(encoder, ImageEncoder):
                    raise BadInputError(
                        f"{benchmark.name} holds RGB images only: use an image encoder such as clip_rgb "
                        f"(got {type(encoder).__name__})"
                    )
                images.append(data.image)
                if len(images) == IMAGE_BATCH:
                    vectors += _embed_images(encoder, images)
                    images = []
            else:
                if data.composite is None or not isinstance(encoder, DenseEncoder):
                    name = type(encoder).__name__
                    raise BadInputError(f"{name} cannot embed the samples of {benchmark.name}")
                vectors.append(pool(*encoder.embed_dense(data.composite, data.latlon, batch_size)))
            advance()
    if images:
        vectors += _embed_images(encoder, images)  # type: ignore[arg-type]
    dim = next((len(v) for v in vectors if v is not None), 0)
    out = np.zeros((len(vectors), dim), dtype=np.float32)
    valid = np.array([v is not None for v in vectors], dtype=bool)
    for i in np.flatnonzero(valid):
        out[i] = vectors[i]
    return out, valid


def _embed_images(encoder: ImageEncoder, images: list[Image.Image]) -> list[np.ndarray | None]:
    with torch.inference_mode():
        result = encoder.embed_images(images)
    array = result.float().cpu().numpy() if isinstance(result, torch.Tensor) else np.asarray(result)
    return [pool(row[None], np.ones(1, dtype=bool)) for row in array.astype(np.float32)]


def normalise_scores(scores: np.ndarray, method: str = "none") -> np.ndarray:
    """Apply a score normalisation of :data:`SCORE_NORMS` to cosine scores [samples, classes].

    Raises:
        BadInputError: If the method is unknown.
    """
    if method == "none":
        return scores
    if method == "class-mean":
        return scores / (scores.mean(axis=0, keepdims=True) + 1e-6)
    raise BadInputError(f"unknown score normalisation {method!r}; use one of {', '.join(SCORE_NORMS)}")


def single_label_results(
    scores: np.ndarray, targets: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """Top-1 and balanced accuracy, per-class recall and the confusion matrix of argmax predictions.

    Args:
        scores: Cosine similarities [samples, classes].
        targets: True class indices [samples].
        class_names: Names of the classes, in index order.
    """
    predicted, classes = scores.argmax(axis=1), np.arange(len(class_names))
    confusion = metrics.confusion_matrix(targets, predicted, labels=classes)
    recall = metrics.recall_score(targets, predicted, labels=classes, average=None, zero_division=np.nan)
    return {
        "top1": float(metrics.accuracy_score(targets, predicted)),
        "balanced_accuracy": float(np.nanmean(recall)),  # balanced_accuracy_score: classes with samples
        "per_class_recall": dict(zip(class_names, recall.tolist(), strict=True)),
        "confusion_matrix": confusion.tolist(),
        "predicted": predicted,
    }


def multilabel_results(
    scores: np.ndarray, labels: np.ndarray, class_names: Sequence[str], logit_scale: float
) -> dict[str, Any]:
    """mAP, micro and macro F1 (softmax > 1 / classes), per-class AP and F1, labels per sample.

    Args:
        scores: Cosine similarities [samples, classes].
        labels: True labels bool [samples, classes].
        class_names: Names of the classes, in index order.
        logit_scale: CLIP's temperature for the softmax.
    """
    predicted, positive = multilabel_predictions(scores, logit_scale), labels.any(axis=0)
    with warnings.catch_warnings(action="ignore"):  # AP of a class without positives: NaN below
        ap = np.where(positive, metrics.average_precision_score(labels, scores, average=None), np.nan)
    f1 = np.where(positive, metrics.f1_score(labels, predicted, average=None, zero_division=np.nan), np.nan)
    return {
        "mAP": float(np.nanmean(ap)),
        "micro_f1": float(metrics.f1_score(labels, predicted, average="micro", zero_division=np.nan)),
        "macro_f1": float(np.nanmean(f1)),
        "per_class_ap": dict(zip(class_names, ap.tolist(), strict=True)),
        "per_class_f1": dict(zip(class_names, f1.tolist(), strict=True)),
        "labels_per_sample": {
            "true": float(labels.sum(axis=1).mean()),
            "predicted": float(predicted.sum(axis=1).mean()),
        },
        "predicted": predicted,
    }


def chance_levels(benchmark_labels: np.ndarray, multilabel: bool) -> dict[str, float]:
    """What a model without information scores: for reading results against.

    Single-label: top-1 of always predicting the largest class, balanced accuracy ``1 / classes present``.
    Multi-label: mAP of random scores, the mean prevalence of the classes present.
    """
    present = benchmark_labels.any(axis=0)
    if not present.any():
        return {}
    if multilabel:
        return {"mAP": float(benchmark_labels.mean(axis=0)[present].mean())}
    counts = benchmark_labels.sum(axis=0)
    return {
        "balanced_accuracy": 1.0 / int(present.sum()),
        "top1_majority": float(counts.max() / counts.sum()),
    }
