"""Training configuration: a YAML file (:func:`load_config`) validated into frozen pydantic dataclasses.

Every key is described in ``configs/train_example.yaml`` and the JSON Schema (``landprompt train --schema``).
A bad value raises a one-line :class:`~landprompt.errors.BadInputError` naming the key
(``optim.lr must be > 0.0, got -1``); an unknown key names the closest known one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, field_validator, model_validator
from pydantic.dataclasses import dataclass

from landprompt import schema
from landprompt.errors import BadInputError
from landprompt.schema import FilePath, Flag, Int, Real, Section, Text, checked, key, read_yaml, validated

Target = Literal["mean", "sample"]
EXAMPLE = "configs/train_example.yaml"
_SECTION = ConfigDict(extra="forbid")


@dataclass(frozen=True, config=_SECTION)
class RunConfig:
    """Where the run writes, how long it lasts, how often it logs, validates and checkpoints."""

    out: FilePath = key(..., "Run folder: config.yaml, metrics.csv, tensorboard/, checkpoints/.")
    seed: Int = key(0, "Seeds model init, data order, augmentations and photo draws.", ge=0)
    steps: Int = key(10_000, "Optimisation steps in all (one step = one global batch).", gt=0)
    log_every: Int = key(10, "Write a metrics row every N steps.", gt=0)
    val_every: Int = key(500, "Validate every N steps and at the last (0: last only).", ge=0)
    checkpoint_every: Int = key(1000, "Checkpoint every N steps and at the last step.", ge=0)
    keep_checkpoints: Int = key(3, "Keep the newest N checkpoints (0: keep all).", ge=0)
    resume: Text | None = key("auto", "auto, null (start afresh) or a checkpoint folder.")
    device: Literal["auto", "cpu", "cuda"] = key("auto", "auto (CUDA if available), cpu or cuda.")
    precision: Literal["auto", "fp32", "bf16"] = key("auto", "auto (bf16 autocast on GPU), fp32 or bf16.")
    tensorboard: Literal["auto", "on", "off"] = key("auto", "auto (when installed), on (required) or off.")
    threads: Int | None = key(None, "torch CPU threads per process (null: default).", gt=0)
    progress: Flag = key(True, "Show a progress bar (rank 0).")


@dataclass(frozen=True, config=_SECTION)
class DataConfig:
    """Sample store, catalog, photo embeddings, splits and batching."""

    store: FilePath = key(..., "Sample store: S1/S2 chip time series per sample (Zarr).")
    catalog: FilePath = key(..., "Pairs catalog: photos, places, samples, splits (DuckDB).")
    photo_embeddings: FilePath = key(..., "Photo embeddings; their CLIP model sets clip_dim.")
    train_split: Text = key("train", "Catalog split to train on.")
    val_split: Text = key("val", "Catalog split to validate on (retrieval R@1/R@10).")
    target: Target = key("mean", "mean of a place's photos, or one sample drawn per visit.")
    batch_size: Int = key(256, "GLOBAL batch over all processes (divisible by them).", gt=0)
    val_batch_size: Int = key(512, "Samples per validation forward pass, per process.", gt=0)
    num_workers: Int = key(2, "Data-loader workers per process (0: main process).", ge=0)
    in_memory: Flag = key(True, "Read the splits into memory at start (false: from Zarr).")
    use_latlon: Flag = key(True, "Feed the place's latitude/longitude token to the encoder.")
    max_val_samples: Int | None = key(None, "Validate on at most N samples (null: all).", gt=0)
    max_year_gap: Int | None = key(None, "Pair photos within N years only (null: any).", ge=0)


@dataclass(frozen=True, config=_SECTION)
class AugmentConfig:
    """Probabilities of the training-time dropouts (0 turns one off)."""

    month_dropout: Real = key(0.1, "Drop each observed month (both sensors).", ge=0.0, lt=1.0)
    sensor_dropout: Real = key(0.1, "Drop a whole sensor where both are.", ge=0.0, le=1.0)
    pixel_dropout: Real = key(0.1, "Drop each observed pixel of the window.", ge=0.0, lt=1.0)


@dataclass(frozen=True, config=_SECTION)
class ModelConfig:
    """The satellite encoder: a registry name, its arguments and optional Presto weights."""

    name: Text = key("sits", "Registry encoder with forward_window.")
    presto_weights: FilePath | None = key(None, "Start the backbone from Presto weights.")
    arguments: dict[str, Any] = key(description="Encoder factory arguments.", default_factory=dict)

    @field_validator("arguments")
    @classmethod
    def _arguments(cls, arguments: dict[str, Any]) -> dict[str, Any]:
        """No reserved names; ``bottleneck`` (a compact cube): a whole number >= 1, with ``head: linear``."""
        if reserved := sorted({"pretrained", "presto_weights"} & set(arguments)):
            raise ValueError(f"model.arguments must not set {reserved}: use model.presto_weights for weights")
        width, head = arguments.get("bottleneck"), arguments.get("head", "linear")
        if width is not None and (type(width) is not int or width < 1):
            raise ValueError(f"model.arguments.bottleneck must be a whole number >= 1, got {width!r}")
        if width is not None and head != "linear":
            raise ValueError(f"model.arguments.bottleneck needs head: linear, got head: {head!r}")
        return arguments


@dataclass(frozen=True, config=_SECTION)
class LossConfig:
    """Symmetric InfoNCE: temperature and the queue of past targets."""

    init_temperature: Real = key(0.07, "Starting temperature (logit scale 1 / T).", gt=0.0)
    learn_temperature: Flag = key(True, "Learn the logit scale.")
    max_logit_scale: Real = key(100.0, "Clamp of the logit scale (CLIP's 100).", gt=0.0)
    queue_size: Int = key(0, "Past targets kept as extra negatives (0: none).", ge=0)


@dataclass(frozen=True, config=_SECTION)
class OptimConfig:
    """AdamW, cosine schedule with linear warm-up, gradient clipping."""

    lr: Real = key(5e-4, "Peak learning rate (AdamW), for the global batch.", gt=0.0)
    min_lr: Real = key(0.0, "Learning rate at the end of the cosine decay.", ge=0.0)
    weight_decay: Real = key(0.05, "AdamW weight decay (not on biases, norms...).", ge=0.0)
    betas: Annotated[
        tuple[Real, Real],
        checked(
            lambda v: isinstance(v, list | tuple) and len(v) == 2, "optim.betas must be a list of 2 values"
        ),
    ] = key((0.9, 0.98), "AdamW betas, both in [0, 1).")
    eps: Real = key(1e-6, "AdamW epsilon.", gt=0.0)
    warmup_steps: Int = key(500, "Linear warm-up steps, then cosine decay to min_lr.", ge=0)
    grad_clip: Real | None = key(1.0, "Clip the global gradient norm (null: none).", gt=0.0)


@dataclass(frozen=True, config=_SECTION)
class TrainConfig:
    """The whole training configuration (one section per dataclass)."""

    run: Section[RunConfig]
    data: Section[DataConfig]
    augment: Section[AugmentConfig] = key(default_factory=AugmentConfig)
    model: Section[ModelConfig] = key(default_factory=ModelConfig)
    loss: Section[LossConfig] = key(default_factory=LossConfig)
    optim: Section[OptimConfig] = key(default_factory=OptimConfig)

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        """Keys that bound one another."""
        optim, loss, steps = self.optim, self.loss, self.run.steps
        if optim.min_lr > optim.lr:
            raise ValueError(f"optim.min_lr ({optim.min_lr}) must not exceed optim.lr ({optim.lr})")
        if not all(0 <= beta < 1 for beta in optim.betas):
            raise ValueError(f"optim.betas must both lie in [0, 1), got {list(optim.betas)}")
        if optim.warmup_steps > steps:
            raise ValueError(f"optim.warmup_steps ({optim.warmup_steps}) must not exceed run.steps ({steps})")
        if loss.max_logit_scale < 1 / loss.init_temperature:
            raise ValueError(
                f"loss.max_logit_scale ({loss.max_logit_scale}) is below 1 / loss.init_temperature"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON/YAML-serialisable copy (paths as strings, tuples as lists)."""
        return _ADAPTER.dump_python(self, mode="json")


_ADAPTER = schema.adapter(TrainConfig)
json_schema = _ADAPTER.json_schema
"""The JSON Schema of the training configuration (``landprompt train --schema``)."""


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> TrainConfig:
    """Read a YAML training configuration and apply ``section.key=value`` overrides (values read as YAML).

    Raises:
        BadInputError: If the file is missing or malformed, or a key or value is invalid.
    """
    raw = read_yaml(path, "training config", overrides)
    if not isinstance(raw, dict):
        raise BadInputError(f"{path} must hold a mapping of sections (run, data, ...)")
    return config_from_dict(raw)


def config_from_dict(raw: Mapping[str, Any]) -> TrainConfig:
    """Build and check a :class:`TrainConfig` from nested mappings (a parsed YAML file).

    Raises:
        BadInputError: Naming the first missing, unknown or invalid key.
    """
    return validated(TrainConfig, raw, see=EXAMPLE)
