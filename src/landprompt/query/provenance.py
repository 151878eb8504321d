"""Provenance tags for every output: what cube, model, prompts and settings made it, and when.

:func:`provenance_tags` returns flat string tags, stored the way each format keeps metadata, so an output
shared with a colleague says where it came from: GDAL metadata in COGs (``gdalinfo`` and QGIS show them),
text chunks in PNGs, ``<meta>`` tags in HTML maps, layer metadata in GeoPackages and FlatGeobufs, a
``landprompt`` member in GeoJSON, schema metadata in GeoParquet and a ``provenance`` key in the
``.crs.json`` sidecar of a CSV.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
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
    from landprompt.query.classes import default_vocabulary

    ds = cube if isinstance(cube, xr.Dataset) else open_cube(cube)
    source = str(cube) if not isinstance(cube, xr.Dataset) else str(ds.encoding.get("source", ""))
    background = list(versus) if versus else default_vocabulary()
    values = {
        "cube": os.path.abspath(source) if source else "",
        "cube_content_hash": _content_hash(ds),
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


def with_cube_b(tags: Mapping[str, str], cube_b: str | os.PathLike[str]) -> dict[str, str]:
    """The tags of a change map: cube A's ``tags`` plus cube B's path and content hash."""
    return {
        **tags,
        PREFIX + "cube_b": os.path.abspath(cube_b),
        PREFIX + "cube_b_content_hash": _content_hash(cube_b),
    }


def search_tags(
    cubes: Sequence[str | os.PathLike[str]], clip: ClipModel, concept: str, style: str = "ground"
) -> dict[str, str]:
    """Provenance tags of a top-k search over one cube or the shards of a folder.

    A search ranks by similarity, with no background: ``landprompt_background`` says so. For several
    shards ``landprompt_cube`` names their folder and ``landprompt_cube_content_hash`` lists their hashes.
    """
    tags = provenance_tags(cubes[0], clip, concept, None, style)
    tags[PREFIX + "background"] = json.dumps([])
    if len(cubes) > 1:
        tags[PREFIX + "cube"] = os.path.abspath(Path(cubes[0]).parent)
        tags[PREFIX + "cube_content_hash"] = json.dumps([_content_hash(c) for c in cubes])
    return tags


def provenance_of(attrs: Mapping[str, object]) -> dict[str, str]:
    """The provenance tags among a map's attrs (those :func:`provenance_tags` added), as strings."""
    return {key: str(value) for key, value in attrs.items() if key.startswith(PREFIX)}


def _content_hash(cube: str | os.PathLike[str] | xr.Dataset) -> str:
    """The content hash a cube (a path, or a Dataset from ``open_cube``) records; "" when none."""
    from landprompt.embedder.cube import open_cube

    return str((cube if isinstance(cube, xr.Dataset) else open_cube(cube)).attrs.get("content_hash", ""))
