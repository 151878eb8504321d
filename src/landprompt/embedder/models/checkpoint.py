"""Encoder checkpoints: safetensors weights + a JSON config that says how to rebuild the encoder.

A checkpoint is two files side by side, ``<name>.safetensors`` (the state dict, and under ``statistics.``
the data statistics the encoder keeps beside its weights, e.g. a linear head's input moments) and
``<name>.json``::

    {
      "format": "landprompt-encoder-checkpoint", "format_version": 1,
      "encoder": "sits",                      # registry name
      "arguments": {...},                     # factory arguments (rebuilt with pretrained=False)
      "spec": {...},                          # EncoderSpec: bands, normalisation, input kind, stride, window
      "clip": {"model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"},
      "embed_dim": 512,
      "weights": {"file": "sits.safetensors", "sha256": "...", "parameters": 822682},
      "config": {...},                        # training configuration, free-form
      "provenance": {...},                    # training provenance, free-form
      "versions": {"landprompt": ..., "torch": ...}
    }

Loading never unpickles: the weights are read with safetensors, and checked against the sha256 recorded in
the JSON and against the names and shapes of the rebuilt architecture.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from landprompt.embedder.device import choose_device
from landprompt.embedder.models.base import Encoder, to_jsonable
from landprompt.embedder.models.presto import state_dict_mismatch
from landprompt.embedder.models.registry import create_encoder, encoder_factory, is_encoder, list_encoders
from landprompt.errors import BadInputError, MissingWeightsError
from landprompt.files import atomic_path, file_sha256, write_json

CHECKPOINT_FORMAT = "landprompt-encoder-checkpoint"
CHECKPOINT_VERSION = 1
WEIGHTS_SUFFIX = ".safetensors"
CONFIG_SUFFIX = ".json"
#: Name prefix of the encoder's data statistics (:meth:`Encoder.statistics`) in the weights file.
STATISTICS_PREFIX = "statistics."


def checkpoint_paths(path: str | Path, name: str | None = None) -> tuple[Path, Path]:
    """The weights and JSON paths of a checkpoint.

    Args:
        path: A directory (files ``<name>.*`` inside), or a prefix, or either file of the pair.
        name: File stem used inside a directory.

    Returns:
        ``(weights, config)`` paths.
    """
    path = Path(path)
    if path.is_dir():
        if name is None:
            stems = sorted({p.stem for p in path.glob(f"*{CONFIG_SUFFIX}")})
            if len(stems) != 1:
                raise BadInputError(f"{path} holds {len(stems)} checkpoint configs (*.json); name the file")
            name = stems[0]
        path = path / name
    elif path.suffix in (WEIGHTS_SUFFIX, CONFIG_SUFFIX):
        path = path.with_suffix("")
    return path.with_name(path.name + WEIGHTS_SUFFIX), path.with_name(path.name + CONFIG_SUFFIX)


def checkpoint_hash(path: str | Path) -> str:
    """sha256 (hex) of a checkpoint's weights file; ``path`` as in :func:`checkpoint_paths`."""
    weights, _ = checkpoint_paths(path)
    if not weights.is_file():
        raise MissingWeightsError(f"checkpoint weights not found: {weights}")
    return file_sha256(weights)


def save_checkpoint(
    encoder: Encoder,
    path: str | Path,
    config: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    statistics: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Save an encoder built by :func:`~landprompt.embedder.models.registry.create_encoder` (or loaded).

    Args:
        encoder: The encoder; it must carry ``registry_name`` and ``arguments``.
        path: An existing directory (files named after the encoder) or a prefix (``ckpt/best`` gives
            ``ckpt/best.safetensors`` and ``ckpt/best.json``).
        config: Training configuration to record (JSON-serialisable).
        provenance: Training provenance to record (data, code revision, dates; JSON-serialisable).
        statistics: The data statistics to keep (default the encoder's :meth:`~Encoder.statistics`; a
            training run passes those merged over its processes).

    Returns:
        Path of the JSON config. Both files are written atomically, weights first.

    Raises:
        BadInputError: If the encoder cannot say how to rebuild it, or the config is not JSON-serialisable.
    """
    if encoder.registry_name is None or encoder.arguments is None:
        raise BadInputError(
            f"{type(encoder).__name__} was not built by create_encoder: its architecture cannot be recorded"
        )
    weights, config_path = checkpoint_paths(path, encoder.registry_name)
    state = {key: value.detach().cpu().clone().contiguous() for key, value in encoder.state_dict().items()}
    parameters = sum(t.numel() for t in state.values())
    kept = encoder.statistics() if statistics is None else statistics
    state |= {STATISTICS_PREFIX + k: v.detach().cpu().clone() for k, v in kept.items()}
    spec = encoder.spec
    document = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "encoder": encoder.registry_name,
        "arguments": encoder.arguments,
        "spec": spec.to_dict(),
        "clip": {"model": spec.clip_model, "pretrained": spec.clip_pretrained},
        "embed_dim": spec.embed_dim,
        "weights": {"file": weights.name, "sha256": "", "parameters": parameters},
        "config": to_jsonable(dict(config or {})),
        "provenance": to_jsonable(dict(provenance or {})),
        "versions": {"landprompt": _version("landprompt"), "torch": torch.__version__},
    }
    try:  # fail before writing anything
        json.dumps(document, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise BadInputError(f"checkpoint config or provenance is not JSON-serialisable: {err}") from err
    metadata = {"format": "pt", "landprompt_encoder": encoder.registry_name}
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    document["weights"]["sha256"] = checkpoint_hash(weights)
    return write_json(config_path, document, allow_nan=False)


def read_checkpoint_config(path: str | Path) -> dict[str, Any]:
    """The JSON config of a checkpoint, checked for format and version.

    Raises:
        MissingWeightsError: If the JSON or weights file is missing.
        BadInputError: If the JSON is not a landprompt encoder checkpoint of a known version.
    """
    weights, config_path = checkpoint_paths(path)
    for file in (config_path, weights):
        if not file.is_file():
            raise MissingWeightsError(
                f"checkpoint file not found: {file} (a checkpoint is a .json + .safetensors pair)"
            )
    try:
        document = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadInputError(f"{config_path} is not a readable JSON checkpoint config: {err}") from err
    if not isinstance(document, dict) or document.get("format") != CHECKPOINT_FORMAT:
        raise BadInputError(f"{config_path} is not a landprompt encoder checkpoint config")
    if document.get("format_version") != CHECKPOINT_VERSION:
        raise BadInputError(
            f"{config_path} has checkpoint format version {document.get('format_version')!r}; "
            f"this landprompt reads version {CHECKPOINT_VERSION}"
        )
    for key, kind in (("encoder", str), ("arguments", dict), ("weights", dict)):
        if not isinstance(document.get(key), kind):
            raise BadInputError(f"{config_path}: {key!r} is missing or not a {kind.__name__}")
    return document


def _legacy_arguments(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Recorded arguments with the values of arguments added since, as the checkpoint was built.

    ``sits`` bottlenecks had a biased up-projection before ``bottleneck_bias`` (default False) existed.
    """
    if name == "sits" and arguments.get("bottleneck") and "bottleneck_bias" not in arguments:
        return {**arguments, "bottleneck_bias": True}
    return arguments


def load_checkpoint(path: str | Path, device: str | torch.device | None = None, **overrides: Any) -> Encoder:
    """Rebuild an encoder from a checkpoint and load its weights, without unpickling anything.

    Args:
        path: A checkpoint (either file of the pair, their prefix, or a directory holding one).
        device: Where to put the encoder; default CUDA when available, else CPU.
        **overrides: Arguments replacing the recorded ones (e.g. ``pool_size``); the weights must still fit.

    Returns:
        The encoder in eval mode, with ``checkpoint = {"path", "sha256"}`` set.

    Raises:
        MissingWeightsError: If a file of the pair is missing.
        BadInputError: If the JSON names an unknown encoder, the weights file changed since the JSON was
            written, or the weights are a checkpoint of another model than the JSON describes.
    """
    weights, config_path = checkpoint_paths(path)
    document = read_checkpoint_config(path)
    name = document["encoder"]
    encoder_factory(name)  # unknown names raise, listing the registered ones
    digest = checkpoint_hash(weights)
    if digest != document["weights"].get("sha256"):
        raise BadInputError(
            f"{weights} does not match {config_path}: sha256 {digest[:12]}... != recorded "
            f"{str(document['weights'].get('sha256'))[:12]}... (the weights were changed or swapped)"
        )
    try:
        state = load_file(weights, device="cpu")
    except (SafetensorError, OSError) as err:
        raise BadInputError(f"{weights} is not a safetensors weights file: {err}") from err
    arguments = {**_legacy_arguments(name, document["arguments"]), **overrides}
    encoder = create_encoder(name, **arguments, pretrained=False)
    statistics = {
        k.removeprefix(STATISTICS_PREFIX): state.pop(k)
        for k in list(state)
        if k.startswith(STATISTICS_PREFIX)
    }
    problems = state_dict_mismatch(state, encoder.state_dict())
    if problems:
        raise BadInputError(
            f"{weights} is a checkpoint of another model than the {name!r} encoder its JSON describes "
            f"({'; '.join(problems)})"
        )
    encoder.load_state_dict(state)
    encoder.load_statistics(statistics)
    encoder.checkpoint = {"path": str(config_path), "sha256": digest}
    return encoder.to(choose_device(device)).eval()


def load_encoder(
    name_or_checkpoint: str | Path, device: str | torch.device | None = None, **kwargs: Any
) -> Encoder:
    """An encoder from a registry name or from a checkpoint path.

    Args:
        name_or_checkpoint: A registered name (see ``list_encoders()``) or a checkpoint path.
        device: Where to put the encoder; default CUDA when available, else CPU.
        **kwargs: Factory arguments for a name; argument overrides for a checkpoint.

    Returns:
        The encoder in eval mode on ``device``.

    Raises:
        BadInputError: If the value is neither a registered name nor an existing checkpoint.
    """
    if isinstance(name_or_checkpoint, str) and is_encoder(name_or_checkpoint):
        return create_encoder(name_or_checkpoint, **kwargs).to(choose_device(device)).eval()
    if not _exists(name_or_checkpoint):
        raise BadInputError(
            f"{str(name_or_checkpoint)!r} is neither a registered encoder ({', '.join(list_encoders())}) "
            "nor an existing checkpoint"
        )
    return load_checkpoint(name_or_checkpoint, device, **kwargs)


def _exists(path: str | Path) -> bool:
    path = Path(path)
    return path.exists() or any(
        path.with_name(path.name + s).exists() for s in (WEIGHTS_SUFFIX, CONFIG_SUFFIX)
    )


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None
