"""Encoders the harness compares: a trained checkpoint, ``clip_rgb`` and a randomly initialised one.

:func:`load_model` turns a model argument into an encoder:

- ``"clip_rgb"``: CLIP's image tower (the model that embeds the prompts) on true colour, one patch per
  sample (the patch side is the sample's), or on the JPEGs of an RGB benchmark: the zero-training baseline;
- ``"random"``: a ``sits`` encoder with random weights and a head into CLIP's space (chance level);
  ``"random:clip_rgb"``: CLIP's image tower with random weights;
- anything else: :func:`~landprompt.embedder.models.load_encoder` (a registered name with its default
  arguments, or a checkpoint path).
"""

from __future__ import annotations

from pathlib import Path

import torch

from landprompt.embedder.clip import ClipModel, load_clip
from landprompt.embedder.models import Encoder, create_encoder, load_encoder
from landprompt.embedder.models.clip_rgb import ClipRgbEncoder
from landprompt.errors import BadInputError

BASELINES: tuple[str, ...] = ("clip_rgb", "random", "random:clip_rgb")
"""Model arguments with a meaning of their own here."""

DEFAULT_PATCH = 16


def load_model(
    model: str | Path,
    clip: ClipModel | None = None,
    *,
    sample_size: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> Encoder:
    """The encoder a model argument names (see the module docstring).

    Args:
        model: ``clip_rgb``, ``random``, ``random:clip_rgb``, a registered encoder name or a checkpoint.
        clip: The CLIP model of the text embeddings; baselines are built in its space (required for them).
        sample_size: Side in pixels of the benchmark's samples (``clip_rgb``'s patch; 16 if None).
        seed: Seed of random initialisations.
        device: Device of a loaded encoder (default: CUDA when available).

    Raises:
        BadInputError: If the argument is neither a baseline, a registered name nor a checkpoint, or a
            baseline is asked for without ``clip``.
        MissingWeightsError: If a checkpoint file is missing.
    """
    patch = sample_size or DEFAULT_PATCH
    if str(model) not in BASELINES:
        return load_encoder(model, device)
    if clip is None:
        raise BadInputError(f"the {model} baseline lives in a CLIP model's space: give the CLIP model (clip)")
    if model == "clip_rgb":
        return _clip_rgb(clip, patch)
    if model == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            encoder = create_encoder(
                "sits",
                clip_dim=clip.embed_dim,
                clip_model=clip.name,
                clip_pretrained=clip.pretrained,
                pretrained=False,
            )
        return encoder.to(clip.device).eval()
    return _clip_rgb(load_clip(clip.name, None, device=str(clip.device), seed=seed), patch)


def _clip_rgb(clip: ClipModel, patch: int) -> ClipRgbEncoder:
    """``clip_rgb`` sharing ``clip``'s image tower, recorded as if built by the registry."""
    encoder = ClipRgbEncoder(clip, patch=patch)
    encoder.registry_name = "clip_rgb"
    encoder.arguments = {"clip_model": clip.name, "clip_pretrained": clip.pretrained, "patch": patch}
    return encoder.eval()
