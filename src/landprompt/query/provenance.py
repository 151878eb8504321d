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
    cube: str | os.PathLike[str] | xr.Dataset | Sequence[str | os.PathLike[str]],
    clip: ClipModel,
    concept: str,
    versus: Sequence[str] | None = None,
    style: str = "ground",
    calibration: str | None = None,
    datasets: Sequence[xr.Dataset] | None = None,
) -> dict[str, str]:
    """Tags naming the inputs and settings of a map.

    Args:
        cube: The cube's path, the Dataset from ``open_cube`` (its source path is recorded), or the
            list of a folder's shards (:func:`~landprompt.query.session.cube_paths`; see
            :func:`source_tags`).
        clip: The CLIP model whose text tower encoded the prompts.
        concept: The concept in plain words.
        versus: Background prompts; ``None`` records the shipped land-cover vocabulary.
        style: Prompt template style.
        calibration: What calibration was applied (a path or ``"cube"``), or ``None`` for none.
        datasets: The cubes already open (e.g. a session's), in ``cube``'s order; default: each cube
            opened once here.

    Returns:
        ``landprompt_*`` tag -> string value: cube path and content hash (of shards, see
        :func:`source_tags`), encoder, CLIP model and weights, concept, background prompts (JSON list),
        style, calibration, version and UTC date. The encoder is the (first) cube's.
    """
    from landprompt.embedder.cube import open_cube
    from landprompt.query.classes import default_vocabulary

    if datasets is None:
        datasets = [cube] if isinstance(cube, xr.Dataset) else [open_cube(path) for path in _shards(cube)]
    ds = datasets[0]  # the first shard's attrs
    background = list(versus) if versus else default_vocabulary()
    values = {
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
    return source_tags(cube, datasets=datasets) | {PREFIX + key: value for key, value in values.items()}


def source_tags(
    cube: str | os.PathLike[str] | xr.Dataset | Sequence[str | os.PathLike[str]],
    key: str = "cube",
    datasets: Sequence[xr.Dataset] | None = None,
) -> dict[str, str]:
    """The tags naming the cube (or shards) a product was made from: ``landprompt_<key>`` and more.

    One cube (a path, a list of one, or a Dataset from ``open_cube``): ``<key>`` is its absolute path and
    ``<key>_content_hash`` its content hash. Several shards (a list, e.g. a folder's
    :func:`~landprompt.query.session.cube_paths`): ``<key>`` is the first one's folder,
    ``<key>_content_hash`` their content hashes and ``<key>_shards`` their file names (JSON lists, in
    the shards' order). The names come from the paths; the hashes from ``datasets`` (the cubes already
    open, in the same order) where given, else from each cube opened.
    """
    if isinstance(cube, xr.Dataset):
        source = str(cube.encoding.get("source", ""))
        return {
            PREFIX + key: os.path.abspath(source) if source else "",
            PREFIX + f"{key}_content_hash": _content_hash(cube),
        }
    shards = _shards(cube)
    hashes = [_content_hash(c) for c in (shards if datasets is None else datasets)]
    if len(shards) == 1:
        return {PREFIX + key: os.path.abspath(shards[0]), PREFIX + f"{key}_content_hash": hashes[0]}
    return {
        PREFIX + key: os.path.abspath(shards[0].parent),
        PREFIX + f"{key}_content_hash": json.dumps(hashes),
        PREFIX + f"{key}_shards": json.dumps([Path(c).name for c in shards]),
    }


def with_cube_b(
    tags: Mapping[str, str],
    cube_b: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    datasets: Sequence[xr.Dataset] | None = None,
) -> dict[str, str]:
    """The tags of a change map: cube A's ``tags`` plus cube B's (a cube, or a list of shards).

    ``datasets``: cube B's cubes already open, as :func:`source_tags` takes them.
    """
    return {**tags, **source_tags(cube_b, "cube_b", datasets)}


def search_tags(
    cubes: Sequence[str | os.PathLike[str]], clip: ClipModel, concept: str, style: str = "ground"
) -> dict[str, str]:
    """Provenance tags of a top-k search over one cube or the shards of a folder.

    A search ranks by similarity, with no background: ``landprompt_background`` says so. Several shards
    are named as :func:`source_tags` names them.
    """
    return {**provenance_tags(cubes, clip, concept, None, style), PREFIX + "background": json.dumps([])}


def provenance_of(attrs: Mapping[str, object]) -> dict[str, str]:
    """The provenance tags among a map's attrs (those :func:`provenance_tags` added), as strings."""
    return {key: str(value) for key, value in attrs.items() if key.startswith(PREFIX)}


def _shards(cube: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    """A cube path, or a list of shards, as a list of paths."""
    return [Path(cube)] if isinstance(cube, (str, os.PathLike)) else [Path(c) for c in cube]


def _content_hash(cube: str | os.PathLike[str] | xr.Dataset) -> str:
    """The content hash a cube (a path, or a Dataset from ``open_cube``) records; "" when none."""
    from landprompt.embedder.cube import open_cube

    return str((cube if isinstance(cube, xr.Dataset) else open_cube(cube)).attrs.get("content_hash", ""))
