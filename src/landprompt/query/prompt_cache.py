"""Encoded prompts kept on disk, so that a prompt asked again needs no text tower (and no torch import).

A prompt-ensemble embedding depends on the CLIP model and its weights, the style's templates and the
prompt. Each is one ``.npy`` file named by a sha256 of all of them (and of the open_clip and torch
versions), under ``$LANDPROMPT_CACHE_DIR/prompts`` (default ``~/.cache/landprompt/prompts``). Only a
model a cube names in its attrs is cached: a pretrained tag, random weights (seeded), or a weights file,
which enters the key with its size and modification time; ``hf-hub:`` and ``local-dir:`` names are not
cached. Next to the prompts, ``models/<sha256>.json`` keeps what a query needs of the model besides its
prompts (:class:`ModelFacts`: its logit scale and provenance id), so a query whose prompts are all cached
loads no text tower at all. A cache that cannot be read or written is skipped: it never fails a query.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from landprompt.embedder.recorded import recorded_clip
from landprompt.files import atomic_path, write_json

#: Environment variable naming the cache folder (default ``~/.cache/landprompt``).
CACHE_ENV = "LANDPROMPT_CACHE_DIR"


def cache_root() -> Path:
    """The folder encoded prompts are kept in: ``$LANDPROMPT_CACHE_DIR/prompts``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "landprompt") / "prompts"


class PromptCache:
    """Encoded prompts of one model, style and embedding width on disk.

    Args:
        model: What identifies the model and its weights (:func:`model_identity`).
        templates: The style's templates.
        dim: Embedding width; a stored vector of another shape is ignored.
    """

    def __init__(self, model: str, templates: Sequence[str], dim: int) -> None:
        self.prefix = json.dumps([model, list(templates), _versions()])
        self.dim = dim
        self.root = cache_root()

    @classmethod
    def for_cube(cls, attrs: Mapping[str, Any], templates: Sequence[str], dim: int) -> PromptCache | None:
        """The cache of the model a cube's attrs name, or None when it names none (or one not cached)."""
        model = model_identity(attrs)
        return None if model is None else cls(model, templates, dim)

    def path(self, prompt: str) -> Path:
        """The file of a prompt: ``<root>/<2 hex>/<sha256>.npy``."""
        digest = hashlib.sha256(json.dumps([self.prefix, prompt]).encode()).hexdigest()
        return self.root / digest[:2] / f"{digest}.npy"

    def load(self, prompt: str) -> np.ndarray | None:
        """The stored embedding (dim,) of a prompt, or None."""
        try:
            vector = np.load(self.path(prompt), allow_pickle=False)
        except (OSError, ValueError):
            return None
        ok = vector.shape == (self.dim,) and vector.dtype == np.float32 and bool(np.isfinite(vector).all())
        return vector if ok else None

    def save(self, prompt: str, vector: np.ndarray) -> None:
        """Store a prompt's embedding atomically; skipped when the cache cannot be written."""
        try:
            with atomic_path(self.path(prompt)) as tmp, open(tmp, "wb") as f:
                np.save(f, np.asarray(vector, np.float32), allow_pickle=False)
        except OSError:
            return


@dataclass(frozen=True)
class ModelFacts:
    """What a query needs of a CLIP model besides its prompts.

    Attributes:
        logit_scale: The model's softmax temperature (``ClipModel.logit_scale``).
        id: The model's provenance id (``ClipModel.id``), recorded with calibrations.
    """

    logit_scale: float
    id: str


def facts_path(attrs: Mapping[str, Any]) -> Path | None:
    """The file of the facts of the model a cube's attrs name (None where not cached)."""
    model = model_identity(attrs)
    if model is None:
        return None
    digest = hashlib.sha256(json.dumps([model, _versions()]).encode()).hexdigest()
    return cache_root() / "models" / f"{digest}.json"


def load_facts(attrs: Mapping[str, Any]) -> ModelFacts | None:
    """The stored facts of the model a cube's attrs name, or None."""
    path = facts_path(attrs)
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        facts = ModelFacts(float(data["logit_scale"]), str(data["id"]))
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return facts if np.isfinite(facts.logit_scale) and facts.logit_scale > 0 else None


def save_facts(attrs: Mapping[str, Any], facts: ModelFacts) -> None:
    """Store the facts of the model a cube's attrs name; skipped when not cached or not writable."""
    path = facts_path(attrs)
    if path is None:
        return
    try:
        write_json(path, asdict(facts))
    except OSError:
        return


def model_identity(attrs: Mapping[str, Any]) -> str | None:
    """The model and weights a cube's attrs name, as a cache key part; None where not cacheable."""
    named = recorded_clip(attrs)
    if named is None or named[0].startswith(("hf-hub:", "local-dir:")):
        return None
    name, pretrained = named
    if pretrained is None:
        return json.dumps([name, "random(0)"])  # what load_clip(name) gives: seed 0
    try:
        stat = os.stat(pretrained)
    except OSError:
        return json.dumps([name, pretrained])  # a pretrained tag
    return json.dumps([name, os.path.abspath(pretrained), stat.st_size, stat.st_mtime_ns])


@cache
def _versions() -> list[str]:
    return [f"{d}=={_version(d)}" for d in ("open_clip_torch", "torch")]


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "none"
