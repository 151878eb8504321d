"""CLIP text and image towers through open_clip.

:func:`load_clip` builds a :class:`ClipModel` from an open_clip model name and a weights source: a pretrained
tag (from the hub or its local cache), a local weights file, or ``None`` for a seeded random initialisation.
Importing this module registers the tiny ``landprompt-tiny`` architecture used by tests and offline demos.

Example:
    >>> from landprompt.embedder.prompts import get_templates
    >>> clip = load_clip("ViT-B-32", "laion2b_s34b_b79k")  # doctest: +SKIP
    >>> clip.encode_prompts(["vineyards", "olive groves"], get_templates("satellite")).shape  # doctest: +SKIP
    (2, 512)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import open_clip
import torch
from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
from open_clip.pretrained import download_pretrained_from_hf
from PIL import Image

from landprompt.embedder.device import choose_device
from landprompt.embedder.prompts import expand
from landprompt.embedder.recorded import HF_HUB_PREFIX as HF_HUB_PREFIX
from landprompt.embedder.recorded import LOCAL_DIR_PREFIX as LOCAL_DIR_PREFIX
from landprompt.embedder.recorded import brings_own_weights
from landprompt.embedder.recorded import recorded_clip as recorded_clip  # its home before; kept importable
from landprompt.errors import BadInputError, MissingWeightsError, did_you_mean
from landprompt.files import file_sha256

TINY_MODEL = "landprompt-tiny"
"""Name of the tiny architecture (32-d, one layer per tower) registered with open_clip at import."""

_PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")
_PASS_FILE = "--pretrained /path/to/file (pretrained='/path/to/file' in Python)."
_T = TypeVar("_T")

open_clip.add_model_config(Path(__file__).parent / "model_configs" / f"{TINY_MODEL}.json")


@dataclass(eq=False)
class ClipModel:
    """An open_clip model in eval mode with its tokenizer and eval transform.

    All ``encode_*`` methods return L2-normalised float32 arrays of shape ``(n, embed_dim)``.

    Attributes:
        name: open_clip model name, e.g. ``"ViT-B-32"``.
        pretrained: Pretrained tag or weights file path; ``None`` for random weights and ``hf-hub:`` names.
        id: Provenance id: ``"ViT-B-32/laion2b_s34b_b79k"``, ``"ViT-B-32/file:<sha256[:12]>"``,
            ``"<name>/random(<seed>)"``, or the ``hf-hub:`` name itself.
        weights: Human-readable description of where the weights came from.
        is_random: True when the weights are a seeded random initialisation.
        embed_dim: Dimension of the joint embedding space.
        model: The open_clip module.
        preprocess: Eval transform, PIL image -> float tensor ``(3, H, W)``.
        tokenizer: open_clip tokenizer, list of strings -> token tensor.
        device: Device the model runs on.
    """

    name: str
    pretrained: str | None
    id: str
    weights: str
    is_random: bool
    embed_dim: int
    model: Any = field(repr=False)  # open_clip CLIP / CustomTextCLIP (untyped torch.nn.Module)
    preprocess: Callable[[Image.Image], torch.Tensor] = field(repr=False)
    tokenizer: Callable[[list[str]], torch.Tensor] = field(repr=False)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def logit_scale(self) -> float:
        """Temperature multiplying cosine similarities (``exp`` of the learnt log-scale)."""
        return float(self.model.logit_scale.detach().exp().item())

    def describe(self) -> dict[str, Any]:
        """Return JSON-serialisable provenance for file attributes (id, weights, dims, versions)."""
        return {
            "id": self.id,
            "name": self.name,
            "pretrained": self.pretrained,
            "weights": self.weights,
            "is_random": self.is_random,
            "embed_dim": self.embed_dim,
            "logit_scale": self.logit_scale,
            "open_clip_version": open_clip.__version__,
        }

    def encode_text(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Embed texts with the text tower.

        Args:
            texts: Prompts; none may be blank.
            batch_size: Texts per forward pass.

        Returns:
            Array ``(len(texts), embed_dim)``, float32, rows of unit norm.

        Raises:
            BadInputError: If ``texts`` is a single string or holds a blank or non-string prompt.
        """
        if isinstance(texts, str):
            raise BadInputError(f"texts must be a list of strings, not a single string: {texts!r}")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise BadInputError(f"prompt at position {i} is not a string: {text!r}")
            if not text.strip():
                raise BadInputError(f"empty prompt at position {i}: {text!r}; every prompt needs some words")
        batches = (self.tokenizer(list(chunk)) for chunk in _chunks(texts, batch_size))
        return self._encode(self.model.encode_text, batches)

    def encode_images(self, images: Sequence[Image.Image], batch_size: int = 64) -> np.ndarray:
        """Embed PIL images with the image tower, after the model's eval transform.

        Args:
            images: Images of any size and mode (converted to RGB by the transform).
            batch_size: Images per forward pass.

        Returns:
            Array ``(len(images), embed_dim)``, float32, rows of unit norm.
        """
        batches = (
            torch.stack([self.preprocess(im) for im in chunk]) for chunk in _chunks(images, batch_size)
        )
        return self._encode(self.model.encode_image, batches)

    def encode_prompts(self, class_names: Sequence[str], templates: Sequence[str] = ("{}",)) -> np.ndarray:
        """Embed each class as the re-normalised mean of its templated prompts (CLIP prompt ensembling).

        Args:
            class_names: Class names or concepts.
            templates: Templates with one ``{}`` each, e.g. ``get_templates("satellite")``.

        Returns:
            Array ``(len(class_names), embed_dim)``, float32, rows of unit norm.

        Raises:
            BadInputError: If a class name is blank or a template lacks its ``{}``.
        """
        if isinstance(class_names, str):
            raise BadInputError(
                f"class_names must be a list of strings, not a single string: {class_names!r}"
            )
        prompts = [prompt for name in class_names for prompt in expand(name, templates)]
        if not prompts:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        mean = self.encode_text(prompts).reshape(len(class_names), len(templates), -1).mean(axis=1)
        return mean / np.linalg.norm(mean, axis=1, keepdims=True)

    @torch.inference_mode()
    def _encode(self, encode: Callable[..., torch.Tensor], batches: Iterator[torch.Tensor]) -> np.ndarray:
        out = [encode(batch.to(self.device), normalize=True).float().cpu() for batch in batches]
        return torch.cat(out).numpy() if out else np.zeros((0, self.embed_dim), dtype=np.float32)


@dataclass(frozen=True)
class _Source:
    """Where weights come from, as ``open_clip.create_model`` wants it, plus provenance."""

    kind: str  # "tag", "file", "random" or "schema" (hf-hub: / local-dir: names)
    pretrained: str | None
    label: str
    weights: str
    create_kwargs: dict[str, Any] = field(default_factory=dict)


def clip_named_in(attrs: Mapping[str, Any], owner: str, device: str | None = None) -> ClipModel:
    """Load the CLIP model that ``attrs`` (a cube's, a photo group's, an encoder spec's) name.

    The one lookup of "the CLIP model this cube was made with": :func:`recorded_clip`, then
    :func:`load_clip`.

    Args:
        attrs: Attributes with ``clip_model`` (and ``clip_pretrained``).
        owner: What the attrs belong to, for the error (``"the cube"``, a path).
        device: Torch device; defaults as in :func:`load_clip`.

    Raises:
        BadInputError: If the attrs name no CLIP model.
    """
    named = recorded_clip(attrs)
    if named is None:
        raise BadInputError(f"{owner} does not name its CLIP model: pass clip= (or --clip and --pretrained)")
    return load_clip(*named, device)


def load_clip(
    name: str,
    pretrained: str | Path | None = None,
    device: str | None = None,
    *,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> ClipModel:
    """Load an open_clip model for embedding text and images.

    Args:
        name: open_clip model name (see ``open_clip.list_models()``), :data:`TINY_MODEL`, or an
            ``hf-hub:org/repo`` name (config and weights from that repo; ``pretrained`` must be None).
        pretrained: A pretrained tag of ``name`` (see ``open_clip.list_pretrained_tags_by_model(name)``),
            a local weights file (.safetensors, or a .pt/.pth/.bin state dict read with
            ``weights_only=True``), or None for random weights.
        device: Torch device; defaults to CUDA when available, else CPU.
        seed: Seed of the random initialisation; two random loads with one seed have identical weights.
        cache_dir: Download cache for pretrained tags; defaults to open_clip's / huggingface_hub's.

    Returns:
        The model in eval mode.

    Raises:
        BadInputError: If the model name, tag, device or weights file is invalid.
        MissingWeightsError: If a weights file is missing, or a tag's weights are neither cached nor
            downloadable; the message names what to download.
    """
    cache = None if cache_dir is None else str(cache_dir)
    source = _resolve_source(name, pretrained, cache, seed)
    dev = choose_device(device)
    try:
        with torch.random.fork_rng(devices=[]), _quiet_random_init():
            torch.manual_seed(seed)
            model, _, preprocess = open_clip.create_model_and_transforms(
                name,
                pretrained=source.pretrained,
                device=dev,
                cache_dir=cache,
                pretrained_image=False,
                pretrained_text=False,
                require_pretrained=source.kind != "random",
                weights_only=True,
                **source.create_kwargs,
            )
    except Exception as e:
        if source.kind == "file":
            raise BadInputError(f"cannot load weights file {pretrained} into {name}: {e}") from e
        raise
    model.eval()
    tokenizer = _tokenizer(name, cache)
    with torch.inference_mode():
        embed_dim = int(model.encode_text(tokenizer(["a"]).to(dev)).shape[-1])
    return ClipModel(
        name=name,
        pretrained=None if pretrained is None else str(pretrained),
        id=source.label if source.kind == "schema" else f"{name}/{source.label}",
        weights=source.weights,
        is_random=source.kind == "random",
        embed_dim=embed_dim,
        model=model,
        preprocess=preprocess,
        tokenizer=tokenizer,
        device=dev,
    )


@lru_cache(maxsize=8)
def _tokenizer(name: str, cache_dir: str | None) -> Callable[[list[str]], torch.Tensor]:
    """open_clip's tokenizer of ``name``, built once a process.

    Reading the BPE vocabulary takes 0.1-0.2 s, most of loading the tiny model. A tokenizer's only state is a
    memo of encoded words, so loads may share it.
    """
    return open_clip.get_tokenizer(name, cache_dir=cache_dir)


@contextmanager
def _quiet_random_init() -> Iterator[None]:
    """Drop open_clip's root-logger warning that a model was initialised randomly (we record it)."""

    def keep(record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _resolve_source(name: str, pretrained: str | Path | None, cache_dir: str | None, seed: int) -> _Source:
    """Validate ``name`` and ``pretrained`` and make sure the weights are on disk."""
    if brings_own_weights(name):
        if pretrained is not None:
            raise BadInputError(f"{name} brings its own weights; leave pretrained unset (got {pretrained!r})")
        return _schema_source(name, cache_dir)
    check_model_name(name)
    if pretrained is None:
        return _Source("random", None, f"random({seed})", f"random initialisation (seed {seed})")
    if isinstance(pretrained, Path) or _looks_like_path(pretrained):
        return _file_source(name, Path(pretrained))
    return _tag_source(name, pretrained, cache_dir)


def check_model_name(name: str) -> None:
    """Refuse a model name open_clip does not know, naming the closest ones (``hf-hub:`` names pass).

    Raises:
        BadInputError: If ``name`` is unknown.
    """
    if not brings_own_weights(name) and name not in open_clip.list_models():
        hint = did_you_mean(name, open_clip.list_models(), n=3, show=str, before=" ", sentence=True)
        raise BadInputError(
            f"unknown CLIP model {name!r}; list the names with python -c "
            f"'import open_clip; print(open_clip.list_models())'.{hint}"
        )


def _looks_like_path(value: str) -> bool:
    # Pretrained tags are lower-case words joined by underscores: no separators, no dots.
    return "/" in value or os.sep in value or "." in value or Path(value).exists()


def _file_source(name: str, path: Path) -> _Source:
    """Weights from a local file, with the preprocessing every pretrained tag of ``name`` agrees on."""
    if not path.exists():
        raise MissingWeightsError(f"weights file not found: {path}")
    if not path.is_file():
        raise BadInputError(f"pretrained must be a weights file, got a directory: {path}")
    sha = file_sha256(path)
    tag_cfgs = [open_clip.get_pretrained_cfg(name, t) for t in open_clip.list_pretrained_tags_by_model(name)]
    shared = {k: tag_cfgs[0].get(k) for k in _PREPROCESS_KEYS} if tag_cfgs else {}
    agree = bool(shared) and all({k: c.get(k) for k in _PREPROCESS_KEYS} == shared for c in tag_cfgs)
    return _Source(
        "file",
        str(path),
        f"file:{sha[:12]}",
        f"file {path} (sha256 {sha})",
        create_kwargs={f"image_{k}": v for k, v in shared.items()} if agree else {},
    )


def _tag_source(name: str, tag: str, cache_dir: str | None) -> _Source:
    """Weights of a pretrained tag, downloaded now (or found in the cache) so failures are clear."""
    tags = open_clip.list_pretrained_tags_by_model(name)
    if not open_clip.is_pretrained_cfg(name, tag):
        known = f"valid tags: {', '.join(tags)}" if tags else "it has no pretrained tags"
        raise BadInputError(
            f"unknown pretrained tag {tag!r} for {name}; {known}. "
            "Or pass a local weights file, or no pretrained for random weights."
        )
    cfg = open_clip.get_pretrained_cfg(name, tag)
    canonical = tag.lower().replace("-", "_")  # open_clip's own tag normalisation
    try:
        open_clip.download_pretrained(cfg, cache_dir=cache_dir)
    except Exception as e:
        what = _download_hint(cfg)
        model_cfg = open_clip.get_model_config(name) or {}
        if cfg.get("quick_gelu", False) and not model_cfg.get("quick_gelu", False):
            what += f", and load it with model name {name}-quickgelu"
        raise MissingWeightsError(
            _missing_message(f"{name}/{canonical}", f"Download {what}, then pass the file as {_PASS_FILE}", e)
        ) from e
    # Tags trained with QuickGELU need it even when the base config (e.g. ViT-B-32) does not use it.
    return _Source(
        "tag",
        canonical,
        canonical,
        f"open_clip pretrained tag {canonical}",
        create_kwargs={"force_quick_gelu": bool(cfg.get("quick_gelu", False))},
    )


def _schema_source(name: str, cache_dir: str | None) -> _Source:
    """Check an ``hf-hub:`` repo's config and weights are reachable, or a ``local-dir:`` folder exists."""
    if name.startswith(LOCAL_DIR_PREFIX):
        folder = Path(name.removeprefix(LOCAL_DIR_PREFIX))
        if not (folder / "open_clip_config.json").is_file():
            raise MissingWeightsError(f"{name}: no open_clip_config.json in folder {folder}")
        return _Source("schema", None, name, f"local folder {folder}")
    repo = name.removeprefix(HF_HUB_PREFIX)
    try:
        download_pretrained_from_hf(repo, filename="open_clip_config.json", cache_dir=cache_dir)
        download_pretrained_from_hf(repo, cache_dir=cache_dir)
    except Exception as e:
        how = (
            f"Download open_clip_config.json and {HF_SAFE_WEIGHTS_NAME} (or {HF_WEIGHTS_NAME}) from "
            f"https://huggingface.co/{repo} into a folder, then load it as local-dir:/path/to/folder"
        )
        raise MissingWeightsError(_missing_message(name, how, e)) from e
    return _Source("schema", None, name, f"Hugging Face Hub repo {repo}")


def _download_hint(cfg: dict[str, Any]) -> str:
    """Say which file to download for a pretrained config: a hub repo file, else a URL."""
    if cfg.get("hf_hub"):
        repo, filename = os.path.split(cfg["hf_hub"])
        files = filename or f"{HF_SAFE_WEIGHTS_NAME} (or {HF_WEIGHTS_NAME})"
        return f"{files} from https://huggingface.co/{repo} (hf-hub repo {repo})"
    return str(cfg["url"])


def _missing_message(what: str, how: str, error: Exception) -> str:
    return (
        f"weights for {what} are not in the local cache and could not be downloaded "
        f"({type(error).__name__}; offline?). {how}"
    )


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    if size < 1:
        raise BadInputError(f"batch_size must be at least 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]
