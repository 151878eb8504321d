"""Zero-shot land-use / land-cover evaluation: benchmark readers, prompt sets, metrics and reports.

Example:
    >>> from landprompt.embedder.clip import load_clip
    >>> from landprompt.evaluate import run_evaluation
    >>> clip = load_clip("ViT-B-32", "laion2b_s34b_b79k")  # doctest: +SKIP
    >>> report = run_evaluation("eurosat-rgb", "data/EuroSAT_RGB", "clip_rgb", clip,
    ...                         styles="aerial,ground", out_dir="eval/eurosat-rgb")  # doctest: +SKIP
    >>> report["results"][0]["top1"]  # doctest: +SKIP
"""

from landprompt.evaluate.baselines import BASELINES, load_model
from landprompt.evaluate.datasets import BENCHMARKS, Benchmark, RasterBenchmark, Sample, open_benchmark
from landprompt.evaluate.harness import run_evaluation
from landprompt.evaluate.metrics import binary_metrics, multilabel_predictions
from landprompt.evaluate.prompts import STYLES, PromptSet, class_embeddings, load_prompt_set, parse_settings
from landprompt.evaluate.zeroshot import embed_samples

__all__ = [
    "BASELINES",
    "BENCHMARKS",
    "STYLES",
    "Benchmark",
    "PromptSet",
    "RasterBenchmark",
    "Sample",
    "binary_metrics",
    "class_embeddings",
    "embed_samples",
    "load_model",
    "load_prompt_set",
    "multilabel_predictions",
    "open_benchmark",
    "parse_settings",
    "run_evaluation",
]
