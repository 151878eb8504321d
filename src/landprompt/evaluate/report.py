"""Evaluation reports: JSON (every setting and number), Markdown (tables) and confusion-matrix PNGs.

Files of an output folder:

- ``report.json``: the report dict of :func:`~landprompt.evaluate.harness.run_evaluation` (NaN -> null);
- ``report.md``: settings, one results row per prompt setting, per-class tables;
- ``confusion_<setting>.png``: row-normalised confusion matrix (single-label benchmarks);
- ``predictions.csv``: per sample, its true and predicted labels for every setting.

Every file is written to a temporary sibling and renamed into place.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from landprompt import files
from landprompt.files import atomic_path

REPORT_FORMAT = "landprompt-zero-shot-report"
REPORT_VERSION = 1


def setting_slug(setting: str) -> str:
    """A file-name-safe form of a prompt setting (``aerial+ground`` stays as it is)."""
    return re.sub(r"[^A-Za-z0-9+_.-]", "_", setting)


def jsonable(value: Any) -> Any:
    """NaN and infinities to None, NumPy to Python, tuples to lists, recursively."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(report: dict[str, Any], path: Path) -> Path:
    """Write the report as JSON (indent 2, NaN as null)."""
    return files.write_json(path, jsonable(report), allow_nan=False)


def write_markdown(report: dict[str, Any], path: Path) -> Path:
    """Write the report as Markdown: settings, results table, per-class tables."""
    return _atomic(path, lambda tmp: Path(tmp).write_text(markdown(report), encoding="utf-8"))


CHANCE_KEYS = {"top1": "top1_majority"}
"""Results columns whose chance level the report's ``chance`` stores under another key."""


def markdown(report: dict[str, Any]) -> str:
    """The Markdown text of a report."""
    dataset, results = report["dataset"], report["results"]
    multilabel = dataset["multilabel"]
    lines = [f"# Zero-shot evaluation: {dataset['name']}", "", "## Settings", ""]
    lines += markdown_table(["setting", "value"], [[k, f"`{v}`"] for k, v in _settings_rows(report)])
    columns = ["mAP", "micro_f1", "macro_f1"] if multilabel else ["top1", "balanced_accuracy"]
    lines += ["", "## Results", ""]
    rows = [[f"`{r['setting']}`", *(_pct(r[c]) for c in columns)] for r in results]
    chance = report.get("chance", {})
    if chance:
        keys = [CHANCE_KEYS.get(c, c) for c in columns]
        rows.append(["chance", *(_pct(chance[k]) if k in chance else "" for k in keys)])
    lines += markdown_table(["prompts", *(f"{c} (%)" for c in columns)], rows)
    per_class = "per_class_ap" if multilabel else "per_class_recall"
    names = list(results[0][per_class]) if results else []
    counts = dataset.get("samples_per_class", {})
    lines += ["", f"## Per class ({'average precision' if multilabel else 'recall'})", ""]
    body = [
        [n, str(counts.get(key, "")), *(_pct(r[per_class][n]) for r in results)]
        for key, n in zip(dataset["classes"], names, strict=True)
    ]
    lines += markdown_table(["class", "samples", *(f"`{r['setting']}`" for r in results)], body)
    pngs = [r["confusion_png"] for r in results if r.get("confusion_png")]
    if pngs:
        lines += ["", "## Confusion matrices", ""] + [f"![{p}]({p})" for p in pngs]
    return "\n".join(lines) + "\n"


def _settings_rows(report: dict[str, Any]) -> list[tuple[str, Any]]:
    dataset, model, clip = report["dataset"], report["model"], report["clip"]
    return [
        ("dataset", dataset["name"]),
        ("root", dataset["root"]),
        (
            "samples",
            f"{dataset['samples_scored']} scored of {dataset['samples_drawn']} drawn "
            f"({dataset['samples_available']} available)",
        ),
        ("limit / seed", f"{dataset['limit']} / {dataset['seed']}"),
        ("model", model["argument"]),
        ("model id", model.get("model")),
        ("baseline", model.get("baseline")),
        ("checkpoint sha256", model.get("checkpoint_sha256")),
        ("CLIP", clip["id"]),
        ("prompts", ", ".join(report["prompts"]["settings"])),
        ("prompt set", report["prompts"]["source"]),
        ("protocol", report["protocol"]["prediction"]),
        ("score normalisation", report["protocol"]["score_normalisation"]),
        ("landprompt", report["versions"].get("landprompt")),
        ("created", report["created"]),
    ]


def plot_confusion(confusion: np.ndarray, class_names: Sequence[str], path: Path, title: str) -> Path:
    """A confusion matrix as a PNG: rows (true classes) normalised to recall, counts in the cells."""
    confusion = np.asarray(confusion)
    support = confusion.sum(axis=1, keepdims=True)
    share = np.divide(confusion, support, out=np.zeros(confusion.shape), where=support > 0)
    size = 2.5 + 0.45 * len(class_names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size), dpi=100)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, [_short(n) for n in class_names], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(ticks, [_short(n) for n in class_names], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    for (i, j), count in np.ndenumerate(confusion):
        if count:
            ax.text(
                j,
                i,
                str(count),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if share[i, j] > 0.5 else "black",
            )
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    fig.tight_layout()
    try:
        return _atomic(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)


def write_predictions(table: pd.DataFrame, path: Path) -> Path:
    """Write per-sample predictions as CSV."""
    return _atomic(path, lambda tmp: table.to_csv(tmp, index=False))


def _short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def _pct(value: float | None) -> str:
    return (
        ""
        if value is None or (isinstance(value, float) and not math.isfinite(value))
        else f"{100 * value:.1f}"
    )


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """The lines of a Markdown table (``|`` in cells escaped)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]


def _atomic(path: Path, write: Callable[[str], object]) -> Path:
    """Write through a temporary file in the same folder, then rename it onto ``path``."""
    with atomic_path(path) as tmp:
        write(str(tmp))
    return path
