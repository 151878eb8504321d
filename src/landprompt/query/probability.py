"""Concept probability: a text prompt against a background vocabulary, per embedding.

The probability of a concept at a pixel is the softmax, at the CLIP model's logit scale, of the
pixel's cosine similarity to the concept's prompt-ensemble embedding against the embeddings of a
background set of prompts (the shipped land-cover vocabulary, or ``versus`` prompts).

:func:`probability_map` sits above :mod:`~landprompt.query.session`: it maps through a path's cached
session (a Dataset's :class:`~landprompt.query.session.DatasetSession`), the one place maps are assembled;
the helpers it builds on live in :mod:`~landprompt.query.classes` and are importable from here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from landprompt.geo import BBox
from landprompt.query.classes import (
    CLIP_LOGIT_SCALE,
    DEFAULT_STYLE,
    ProgressFn,
    background_embeddings,
    background_prompts,
    class_matrix,
    clip_for_cube,
    concept_embedding,
    concept_probability,
    default_vocabulary,
    resolve_logit_scale,
    unit_rows,
)

if TYPE_CHECKING:
    from landprompt.embedder.clip import ClipModel

#: The helpers of :mod:`~landprompt.query.classes`, importable from here as before.
__all__ = [
    "CLIP_LOGIT_SCALE",
    "DEFAULT_STYLE",
    "ProgressFn",
    "background_embeddings",
    "background_prompts",
    "class_matrix",
    "clip_for_cube",
    "concept_embedding",
    "concept_probability",
    "default_vocabulary",
    "probability_map",
    "resolve_logit_scale",
    "unit_rows",
]


def probability_map(
    cube: str | Path | xr.Dataset,
    concept: str | np.ndarray,
    versus: Sequence[str] | np.ndarray | None = None,
    bbox: BBox | str | Sequence[float] | None = None,
    clip: ClipModel | None = None,
    style: str = DEFAULT_STYLE,
    logit_scale: float | None = None,
    progress: ProgressFn | None = None,
) -> xr.DataArray:
    """Probability of a concept at every pixel of a cube (or of a lon/lat ``bbox`` within it).

    Streams the cube chunk by chunk, so memory holds one chunk of embeddings at a time.

    Args:
        cube: Path of an embedding cube, or the Dataset from :func:`~landprompt.embedder.cube.open_cube`;
            a folder of shards maps the mosaic of the shards (:class:`.session.ShardedSession`).
        concept: A prompt in plain words, or a concept embedding (d,).
        versus: Background prompts or embeddings (default: the shipped land-cover vocabulary).
        bbox: Optional lon/lat window ("minlon,minlat,maxlon,maxlat", a GeoJSON file or 4 numbers).
        clip: CLIP model for the text tower; default: the model named in the cube's attrs, loaded only
            for a prompt not cached (:class:`~landprompt.query.text.TextTower`).
        style: Prompt template style of the ensembles.
        logit_scale: Softmax temperature; default: the CLIP model's logit scale when a text tower is
            used, else the ``logit_scale`` recorded in the cube's attrs, else CLIP's 100
            (:data:`CLIP_LOGIT_SCALE`). With both ``concept`` and ``versus`` given as embeddings no text
            tower is loaded.
        progress: Called with ``(pixels done, pixels in all)`` after each chunk.

    Returns:
        float32 DataArray [y, x] named ``probability`` with NaN where the cube is not valid, carrying
        the cube's CRS (rioxarray) and the query settings in its attrs.
    """
    from landprompt.query.session import DatasetSession, ShardedSession, open_session

    if isinstance(cube, xr.Dataset):
        session: DatasetSession | ShardedSession = DatasetSession(cube, clip)
    else:
        session = open_session(cube)  # the cached session of the path (cube or folder of shards)
        if clip is not None and session.text.given is not clip:  # another text tower, the same cube(s)
            session = (
                open_session(cube, clip)
                if isinstance(session, ShardedSession)
                else DatasetSession(session.ds, clip)
            )
    return session.probability_map(concept, versus, bbox, style, logit_scale, progress)
