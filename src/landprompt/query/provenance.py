"""Provenance tags for map outputs: what cube, model, prompts and settings made a map, and when.

:func:`provenance_tags` returns flat string tags that :func:`landprompt.query.maps.write_cog` stores as
GDAL metadata (``gdalinfo`` and QGIS show them), so a map shared with a colleague says where it came from.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import xarray as xr

import landprompt

if TYPE_CHECKING:
    from landprompt.embedder.clip import ClipModel

#: Prefix of every provenance tag, so they stand apart from GDAL's own metadata.
PREFIX = "landprompt_"


def provenance_tags(
    cube: str | os.PathLike[str] | xr.Dataset,
    clip: ClipModel,
    concept: str,
    versus: Sequence[str] | None = None,
    style: str = "ground",
    calibration: str | None = None,
) -> dict[str, str]:
    """Tags naming the inputs and settings of a map.

    Args:
        cube: The cube's path, or the Dataset from ``open_cube`` (its source path is recorded).
        clip: The CLIP model whose text tower encoded the prompts.
        concept: The concept in plain words.
        versus: Background prompts; ``None`` records the shipped land-cover vocabulary.
        style: Prompt template style.
        calibration: What calibration was applied (a path or ``"cube"``), or ``None`` for none.

    Returns:
        ``landprompt_*`` tag -> string value: cube path and content hash, encoder, CLIP model and
        weights, concept, background prompts (JSON list), style, calibration, version and UTC date.
    """
    from landprompt.embedder.cube import open_cube
    from landprompt.query.probability import default_vocabulary

    ds = cube if isinstance(cube, xr.Dataset) else open_cube(cube)
    source = str(cube) if not isinstance(cube, xr.Dataset) else str(ds.encoding.get("source", ""))
    background = list(versus) if versus else default_vocabulary()
    values = {
        "cube": os.path.abspath(source) if source else "",
        "cube_content_hash": str(ds.attrs.get("content_hash", "")),
        "encoder": str(ds.attrs.get("model") or "unknown (the cube does not record it)"),
        "encoder_checkpoint_sha256": str(ds.attrs.get("checkpoint_sha256") or ""),
        "clip_model": clip.id,
        "clip_weights": clip.weights,
        "clip_random_weights": str(clip.is_random).lower(),
        "concept": concept.strip(),
        "background": json.dumps(background),
        "style": style,
        "calibration": calibration or "none",
        "version": landprompt.__version__,
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return {PREFIX + key: value for key, value in values.items()}
