"""The CLIP model a cube's attrs name, read without importing torch or open_clip."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

HF_HUB_PREFIX = "hf-hub:"
LOCAL_DIR_PREFIX = "local-dir:"


def brings_own_weights(name: str) -> bool:
    """Whether a CLIP model name (``hf-hub:org/repo``, ``local-dir:/folder``) names its own weights."""
    return name.startswith((HF_HUB_PREFIX, LOCAL_DIR_PREFIX))


def recorded_clip(attrs: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """The CLIP model a cube's (or photo group's) attrs name: ``(clip_model, clip_pretrained or None)``.

    None when the attrs name no model.
    """
    name = attrs.get("clip_model")
    if not name:
        return None
    pretrained = attrs.get("clip_pretrained")
    return str(name), str(pretrained) if pretrained else None
