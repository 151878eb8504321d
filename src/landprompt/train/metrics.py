"""Retrieval recall and the metrics log (CSV, plus TensorBoard when it is installed)."""

from __future__ import annotations

import csv
import importlib.util
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from landprompt.errors import BadInputError

COLUMNS: tuple[str, ...] = (
    "step",
    "epoch",
    "lr",
    "loss",
    "logit_scale",
    "grad_norm",
    "samples_per_s",
    "val_loss",
    "val_sat2photo_r1",
    "val_sat2photo_r10",
    "val_photo2sat_r1",
    "val_photo2sat_r10",
    "val_samples",
)
"""Columns of ``metrics.csv``; a row leaves blank what its step did not measure."""


def retrieval_recall(sat: Tensor, photo: Tensor, ks: Sequence[int] = (1, 10)) -> dict[str, float]:
    """Recall@k of paired embeddings in both directions.

    Row ``i`` of ``sat`` and of ``photo`` are a pair; a query's rank is the number of candidates scoring
    strictly higher than its partner.

    Args:
        sat: Satellite embeddings (V, D), L2-normalised.
        photo: Photo embeddings (V, D), L2-normalised.
        ks: Cut-offs.

    Returns:
        ``sat2photo_r{k}`` and ``photo2sat_r{k}`` in [0, 1].
    """
    scores = sat.float() @ photo.float().T
    diagonal = scores.diagonal()
    out: dict[str, float] = {}
    for name, ranks in (
        ("sat2photo", (scores > diagonal[:, None]).sum(1)),
        ("photo2sat", (scores > diagonal[None, :]).sum(0)),
    ):
        for k in ks:
            out[f"{name}_r{k}"] = float((ranks < k).float().mean())
    return out


def tensorboard_available() -> bool:
    """Whether ``torch.utils.tensorboard`` can be imported (it needs the ``tensorboard`` package)."""
    return importlib.util.find_spec("tensorboard") is not None


class MetricsLogger:
    """Appends metric rows to ``<out>/metrics.csv`` and, when enabled, to TensorBoard event files.

    Args:
        out: The run folder.
        tensorboard: ``auto`` (when installed), ``on`` (required) or ``off``.
        resume_step: When resuming, rows after this step (written by the interrupted run) are dropped.

    Raises:
        BadInputError: If TensorBoard is required but not installed.
    """

    def __init__(self, out: Path, tensorboard: str = "auto", resume_step: int | None = None) -> None:
        self.path = out / "metrics.csv"
        out.mkdir(parents=True, exist_ok=True)
        kept: list[dict[str, str]] = []
        if resume_step is not None and self.path.is_file():
            with self.path.open(newline="") as f:
                kept = [row for row in csv.DictReader(f) if int(row["step"]) <= resume_step]
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, COLUMNS)
            writer.writeheader()
            writer.writerows(kept)
        self._writer: Any = None
        if tensorboard == "on" and not tensorboard_available():
            raise BadInputError("run.tensorboard is on, but the tensorboard package is not installed")
        if tensorboard != "off" and tensorboard_available():
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(out / "tensorboard"), purge_step=resume_step)

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        """Write one row (floats in full precision, so logged losses compare exactly)."""
        unknown = set(metrics) - set(COLUMNS)
        if unknown:
            raise KeyError(f"metrics {sorted(unknown)} are not columns of {self.path.name}")
        row = {k: _text(v) for k, v in metrics.items()}
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, COLUMNS).writerow({"step": str(step), **row})
        if self._writer is not None:
            for key, value in metrics.items():
                if key not in ("step", "epoch"):
                    self._writer.add_scalar(key.replace("val_", "val/"), value, step)
            self._writer.flush()

    def close(self) -> None:
        """Close the TensorBoard writer."""
        if self._writer is not None:
            self._writer.close()


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """The rows of a ``metrics.csv`` (or of a run folder's), blank cells left out."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.csv"
    with path.open(newline="") as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def _text(value: float) -> str:
    """``repr`` of a float (round-trips exactly), integers as integers."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    value = float(value)
    return repr(value) if math.isfinite(value) else str(value)
