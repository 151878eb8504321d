"""Training configuration: a YAML file parsed into frozen dataclasses, checked key by key.

Every key is documented in ``configs/train_example.yaml``. A bad value raises
:class:`~landprompt.errors.BadInputError` naming the key (``optim.lr must be > 0, got -1``); an unknown key
names the closest known one.

Example:
    >>> config = load_config("configs/train_example.yaml", overrides=["optim.lr=1e-3"])  # doctest: +SKIP
    >>> config.optim.lr  # doctest: +SKIP
    0.001
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from landprompt.errors import BadInputError

Target = Literal["mean", "sample"]
Precision = Literal["auto", "fp32", "bf16"]
Device = Literal["auto", "cpu", "cuda"]
Switch = Literal["auto", "on", "off"]


def _key(default: Any = dataclasses.MISSING, **checks: Any) -> Any:
    """A dataclass field with range checks (``gt``, ``ge``, ``le``, ``lt``) kept in its metadata."""
    return field(default=default, metadata=checks)


@dataclass(frozen=True)
class RunConfig:
    """Where the run writes, how long it lasts, how often it logs, validates and checkpoints."""

    out: Path
    seed: int = _key(0, ge=0)
    steps: int = _key(10_000, gt=0)
    log_every: int = _key(10, gt=0)
    val_every: int = _key(500, ge=0)
    checkpoint_every: int = _key(1000, ge=0)
    keep_checkpoints: int = _key(3, ge=0)
    resume: str | None = "auto"
    device: Device = "auto"
    precision: Precision = "auto"
    tensorboard: Switch = "auto"
    threads: int | None = _key(None, gt=0)
    progress: bool = True


@dataclass(frozen=True)
class DataConfig:
    """Sample store, catalog, photo embeddings, splits and batching."""

    store: Path
    catalog: Path
    photo_embeddings: Path
    train_split: str = "train"
    val_split: str = "val"
    target: Target = "mean"
    batch_size: int = _key(256, gt=0)
    val_batch_size: int = _key(512, gt=0)
    num_workers: int = _key(2, ge=0)
    in_memory: bool = True
    use_latlon: bool = True
    max_val_samples: int | None = _key(None, gt=0)
    max_year_gap: int | None = _key(None, ge=0)


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities of the training-time dropouts (0 turns one off)."""

    month_dropout: float = _key(0.1, ge=0.0, lt=1.0)
    sensor_dropout: float = _key(0.1, ge=0.0, le=1.0)
    pixel_dropout: float = _key(0.1, ge=0.0, lt=1.0)


@dataclass(frozen=True)
class ModelConfig:
    """The satellite encoder: a registry name, its arguments and optional Presto weights."""

    name: str = "sits"
    presto_weights: Path | None = None
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LossConfig:
    """Symmetric InfoNCE: temperature and the queue of past targets."""

    init_temperature: float = _key(0.07, gt=0.0)
    learn_temperature: bool = True
    max_logit_scale: float = _key(100.0, gt=0.0)
    queue_size: int = _key(0, ge=0)


@dataclass(frozen=True)
class OptimConfig:
    """AdamW, cosine schedule with linear warm-up, gradient clipping."""

    lr: float = _key(5e-4, gt=0.0)
    min_lr: float = _key(0.0, ge=0.0)
    weight_decay: float = _key(0.05, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = _key(1e-6, gt=0.0)
    warmup_steps: int = _key(500, ge=0)
    grad_clip: float | None = _key(1.0, gt=0.0)


@dataclass(frozen=True)
class TrainConfig:
    """The whole training configuration (one section per dataclass)."""

    run: RunConfig
    data: DataConfig
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        if self.optim.min_lr > self.optim.lr:
            raise BadInputError(
                f"optim.min_lr ({self.optim.min_lr}) must not exceed optim.lr ({self.optim.lr})"
            )
        if self.optim.warmup_steps > self.run.steps:
            raise BadInputError(
                f"optim.warmup_steps ({self.optim.warmup_steps}) must not exceed run.steps ({self.run.steps})"
            )
        if not all(0.0 <= b < 1.0 for b in self.optim.betas):
            raise BadInputError(f"optim.betas must both lie in [0, 1), got {list(self.optim.betas)}")
        if self.loss.max_logit_scale < 1.0 / self.loss.init_temperature:
            raise BadInputError(
                f"loss.max_logit_scale ({self.loss.max_logit_scale}) is below 1 / loss.init_temperature "
                f"({1.0 / self.loss.init_temperature:g})"
            )
        reserved = {"pretrained", "presto_weights"} & set(self.model.arguments)
        if reserved:
            raise BadInputError(
                f"model.arguments must not set {sorted(reserved)}: "
                "use model.presto_weights for initial weights"
            )
        self._check_bottleneck()

    def _check_bottleneck(self) -> None:
        """``model.arguments.bottleneck``: a whole number >= 1 with ``head: linear`` (a compact cube)."""
        arguments = self.model.arguments
        if arguments.get("bottleneck") is None:
            return
        value = arguments["bottleneck"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadInputError(f"model.arguments.bottleneck must be a whole number >= 1, got {value!r}")
        if arguments.get("head", "linear") != "linear":
            raise BadInputError(
                f"model.arguments.bottleneck needs head: linear, got head: {arguments['head']!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON/YAML-serialisable copy (paths as strings, tuples as lists)."""
        return _plain(dataclasses.asdict(self))


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> TrainConfig:
    """Read a YAML training configuration and apply ``section.key=value`` overrides.

    Args:
        path: The YAML file.
        overrides: Strings like ``optim.lr=1e-3``; the value is parsed as YAML.

    Raises:
        BadInputError: If the file is missing or malformed, or a key or value is invalid.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"training config not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise BadInputError(f"{path} is not a readable YAML file: {err}") from err
    if not isinstance(raw, dict):
        raise BadInputError(f"{path} must hold a mapping of sections (run, data, ...)")
    return config_from_dict(apply_overrides(raw, overrides))


def apply_overrides(raw: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of ``raw`` with ``dotted.key=value`` overrides applied (values parsed as YAML)."""
    out: dict[str, Any] = _deep_copy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise BadInputError(f"override {item!r} must look like section.key=value")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise BadInputError(f"override {item!r}: the value is not valid YAML: {err}") from err
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise BadInputError(f"override {item!r}: {'.'.join(parts[: i + 1])} is not a section")
            node = child
        node[parts[-1]] = value
    return out


def config_from_dict(raw: Mapping[str, Any]) -> TrainConfig:
    """Build and check a :class:`TrainConfig` from nested mappings (a parsed YAML file).

    Raises:
        BadInputError: Naming the first missing, unknown or invalid key.
    """
    return typing.cast(TrainConfig, _build(TrainConfig, raw, ""))


def _build(cls: type, raw: Any, prefix: str) -> Any:
    """Build dataclass ``cls`` from mapping ``raw``; ``prefix`` names the section in errors."""
    where = prefix.rstrip(".") or "the config"
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise BadInputError(f"{where} must be a mapping of keys, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"; did you mean {prefix}{close[0]}?" if close else f"; known keys: {', '.join(fields)}"
            raise BadInputError(f"unknown key {prefix}{key} in {where}{hint}")
    values = {}
    for name, f in fields.items():
        key = f"{prefix}{name}"
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                kind = "section" if dataclasses.is_dataclass(hints[name]) else "key"
                raise BadInputError(
                    f"missing {kind} {key} (required; see configs/train_example.yaml for every key)"
                )
            continue
        kind = hints[name]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            values[name] = _build(kind, raw[name], f"{key}.")
        else:
            values[name] = _check_range(key, _convert(key, raw[name], kind), f.metadata)
    return cls(**values)


def _convert(key: str, value: Any, kind: Any) -> Any:
    """``value`` converted to type ``kind`` (int, float, bool, str, Path, Literal, Optional, tuple, dict)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = (a for a in args if a is not type(None))
        return _convert(key, value, inner)
    if origin is Literal:
        if value not in args:
            raise BadInputError(f"{key} must be one of {', '.join(map(str, args))}; got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise BadInputError(f"{key} must be a list of {len(args)} values, got {value!r}")
        return tuple(_convert(f"{key}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin is dict:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise BadInputError(f"{key} must be a mapping of names to values, got {value!r}")
        return dict(value)
    if kind is bool:
        if not isinstance(value, bool):
            raise BadInputError(f"{key} must be true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadInputError(f"{key} must be an integer, got {value!r}")
        return value
    if kind is float:
        return _float(key, value)
    if kind in (str, Path):
        if not isinstance(value, str) or not value:
            raise BadInputError(f"{key} must be a non-empty string, got {value!r}")
        return kind(value)
    raise TypeError(f"unsupported config type {kind!r} for {key}")  # a bug in the dataclasses above


def _float(key: str, value: Any) -> float:
    """A float from a number or a numeric string (YAML 1.1 reads ``1e-3`` as a string)."""
    if isinstance(value, bool):
        raise BadInputError(f"{key} must be a number, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise BadInputError(f"{key} must be a number, got {value!r}")


_CHECKS = {
    "gt": (lambda v, b: v > b, "> {}"),
    "ge": (lambda v, b: v >= b, ">= {}"),
    "lt": (lambda v, b: v < b, "< {}"),
    "le": (lambda v, b: v <= b, "<= {}"),
}


def _check_range(key: str, value: Any, checks: Mapping[str, Any]) -> Any:
    """``value`` if it passes every check of ``checks``; None passes."""
    if value is None:
        return value
    for name, bound in checks.items():
        test, text = _CHECKS[name]
        if not test(value, bound):
            raise BadInputError(f"{key} must be {text.format(bound)}, got {value!r}")
    return value


def _plain(value: Any) -> Any:
    """Paths to strings and tuples to lists, recursively."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _deep_copy(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Copy nested mappings (leaves are shared)."""
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in raw.items()}
