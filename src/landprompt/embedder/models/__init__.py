"""Satellite encoders: a registry (timm-style), the common :class:`Encoder` interface and checkpoints.

Built-in encoders: ``sits`` (Presto-compatible pixel time-series transformer with a head into CLIP's
space) and ``clip_rgb`` (CLIP's image tower on Sentinel-2 true-colour composites).

Example:
    >>> from landprompt.embedder.models import list_encoders, load_encoder
    >>> encoder = load_encoder("sits", clip_dim=512)  # or load_encoder("runs/best.json")  # doctest: +SKIP
    >>> embeddings, valid = encoder.embed_dense(composite, latlon)  # doctest: +SKIP
"""

from landprompt.embedder.models.base import Encoder, EncoderSpec, coarsen_grid, pixel_latlon
from landprompt.embedder.models.checkpoint import (
    checkpoint_hash,
    load_checkpoint,
    load_encoder,
    read_checkpoint_config,
    save_checkpoint,
)
from landprompt.embedder.models.registry import create_encoder, list_encoders, register_encoder

__all__ = [
    "Encoder",
    "EncoderSpec",
    "checkpoint_hash",
    "coarsen_grid",
    "create_encoder",
    "list_encoders",
    "load_checkpoint",
    "load_encoder",
    "pixel_latlon",
    "read_checkpoint_config",
    "register_encoder",
    "save_checkpoint",
]
