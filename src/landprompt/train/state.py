"""Training checkpoints without pickle: encoder weights in the DESIGN format plus a training-state pair.

A checkpoint is a folder ``<run.out>/checkpoints/step_<NNNNNNNN>/`` holding

- ``<encoder>.safetensors`` + ``<encoder>.json``: the encoder, written by
  :func:`~landprompt.embedder.models.save_checkpoint` (loadable on its own by ``load_checkpoint``; its JSON
  records the training config and, in ``provenance``, the step and the logit scale);
- ``training_state/state.safetensors`` + ``training_state/state.json``: everything else an exact resume
  needs (optimiser state, the learnable logit scale, the target queue, the step and the RNG states of
  Python, NumPy and torch). Tensors go to safetensors; the JSON holds the structure and the scalars, each
  tensor replaced by ``{"__tensor__": key}``. (A subfolder, so the checkpoint folder holds one ``*.json``
  and ``load_checkpoint(folder)`` finds the encoder.)

The folder is written under a temporary name and renamed, and ``checkpoints/latest`` (a text file naming
the newest folder) is replaced last, so a killed run never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from landprompt.errors import BadInputError, MissingWeightsError
from landprompt.files import write_json

STATE_FORMAT = "landprompt-training-state"
STATE_VERSION = 1
STATE_DIR = "training_state"
STATE_NAME = "state"
LATEST = "latest"

_TAGS = ("__tensor__", "__ndarray__", "__tuple__", "__items__")


def flatten(obj: Any, tensors: dict[str, Tensor], path: str = "") -> Any:
    """A JSON-serialisable copy of ``obj`` whose tensors and arrays are moved into ``tensors``.

    Tensors become ``{"__tensor__": key}``, NumPy arrays ``{"__ndarray__": key, "dtype": ...}``, tuples
    ``{"__tuple__": [...]}`` and mappings with non-string keys ``{"__items__": [[key, value], ...]}``.
    """
    if isinstance(obj, Tensor):
        tensors[path] = obj.detach().cpu().clone().contiguous()
        return {"__tensor__": path}
    if isinstance(obj, np.ndarray):
        tensors[path] = torch.from_numpy(np.ascontiguousarray(obj).copy())
        return {"__ndarray__": path, "dtype": str(obj.dtype)}
    if isinstance(obj, tuple):
        return {"__tuple__": [flatten(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [flatten(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) and k not in _TAGS for k in obj):
            return {k: flatten(v, tensors, f"{path}.{k}") for k, v in obj.items()}
        return {"__items__": [[k, flatten(v, tensors, f"{path}.{k}")] for k, v in obj.items()]}
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot store {type(obj).__name__} at {path!r} in a training state")


def unflatten(obj: Any, tensors: Mapping[str, Tensor]) -> Any:
    """Invert :func:`flatten`."""
    if isinstance(obj, list):
        return [unflatten(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__ndarray__" in obj:
        return tensors[obj["__ndarray__"]].numpy().astype(obj["dtype"], copy=False)
    if "__tuple__" in obj:
        return tuple(unflatten(v, tensors) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {k: unflatten(v, tensors) for k, v in obj["__items__"]}
    return {k: unflatten(v, tensors) for k, v in obj.items()}


def capture_rng() -> dict[str, Any]:
    """The RNG states of Python, NumPy's global generator, torch's CPU generator and every CUDA device."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Restore states captured by :func:`capture_rng` (CUDA states only where CUDA is available)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def save_training_state(folder: Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` as ``training_state/state.safetensors`` + ``state.json`` in ``folder``."""
    folder = folder / STATE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, Tensor] = {}
    document = {"format": STATE_FORMAT, "format_version": STATE_VERSION, "state": flatten(state, tensors)}
    save_file(tensors, folder / f"{STATE_NAME}.safetensors", metadata={"format": "pt"})
    write_json(folder / f"{STATE_NAME}.json", document, indent=1)


def load_training_state(folder: Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a state written by :func:`save_training_state` (no unpickling).

    Raises:
        MissingWeightsError: If a file of the pair is missing.
        BadInputError: If the files are not a training state of a known version.
    """
    folder = folder / STATE_DIR
    weights, meta = folder / f"{STATE_NAME}.safetensors", folder / f"{STATE_NAME}.json"
    for file in (meta, weights):
        if not file.is_file():
            raise MissingWeightsError(f"training state file not found: {file}")
    try:
        document = json.loads(meta.read_text())
        tensors = load_file(weights, device=str(device))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, SafetensorError) as err:
        raise BadInputError(f"{folder} holds an unreadable training state: {err}") from err
    if document.get("format") != STATE_FORMAT or document.get("format_version") != STATE_VERSION:
        raise BadInputError(
            f"{meta} is not a landprompt training state of version {STATE_VERSION} "
            f"(format {document.get('format')!r}, version {document.get('format_version')!r})"
        )
    try:
        return dict(unflatten(document["state"], tensors))
    except KeyError as err:
        raise BadInputError(f"{folder}: the training state lacks tensor {err}") from err


def checkpoint_dir(out: Path, step: int) -> Path:
    """The checkpoint folder of ``step`` in run folder ``out``."""
    return out / "checkpoints" / f"step_{step:08d}"


def staging_dir(final: Path) -> Path:
    """An empty temporary sibling of ``final`` to write a checkpoint into before :func:`publish`."""
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def publish(tmp: Path, final: Path, keep: int = 0) -> None:
    """Rename a written checkpoint into place, point ``latest`` at it and prune to the newest ``keep``.

    Args:
        tmp: The staged folder.
        final: Its final name (replaced if it exists).
        keep: Checkpoints to keep (0 = all).
    """
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    latest = final.parent / LATEST
    latest_tmp = latest.with_name(f".{LATEST}.tmp")
    latest_tmp.write_text(final.name + "\n")
    os.replace(latest_tmp, latest)
    if keep:
        for old in sorted(final.parent.glob("step_*"))[:-keep]:
            if old != final:
                shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(out: Path) -> Path | None:
    """The newest published checkpoint of run folder ``out``, or None."""
    pointer = out / "checkpoints" / LATEST
    if not pointer.is_file():
        return None
    folder = pointer.parent / pointer.read_text().strip()
    return folder if folder.is_dir() else None


def resolve_resume(resume: str | None, out: Path) -> Path | None:
    """The checkpoint folder to resume from, following ``run.resume``.

    Args:
        resume: ``auto`` (the run folder's latest checkpoint, if any), None (start afresh: the run folder
            must hold no checkpoint), or a checkpoint folder.
        out: The run folder.

    Raises:
        BadInputError: If the folder is not a checkpoint, or a fresh start would overwrite checkpoints.
    """
    if resume == "auto":
        return latest_checkpoint(out)
    if resume is None:
        if latest_checkpoint(out) is not None:
            raise BadInputError(
                f"{out} already holds checkpoints; set run.resume to auto to continue, "
                "or pick another run.out"
            )
        return None
    folder = Path(resume)
    if folder.is_dir() and (folder / "checkpoints" / LATEST).is_file():
        folder = latest_checkpoint(folder) or folder
    if not (folder / STATE_DIR / f"{STATE_NAME}.json").is_file():
        raise BadInputError(
            f"run.resume: {folder} is not a training checkpoint (no {STATE_DIR}/{STATE_NAME}.json)"
        )
    return folder
