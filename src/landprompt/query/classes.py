"""The classes a concept query scores: prompts, their embeddings, the background and the logit scale.

The lowest layer of the query package: the shipped background vocabulary, prompt-ensemble embeddings,
unit rows and the class matrix (the concept over its background), the softmax of one embedding against
them and the logit scale a query uses. :mod:`~landprompt.query.text`, :mod:`~landprompt.query.scorer`,
:mod:`~landprompt.query.session` and the public functions above them
(:func:`~landprompt.query.probability.probability_map`, :func:`~landprompt.query.topk.top_k`) build on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from landprompt.checks import same_width
from landprompt.errors import BadInputError

if TYPE_CHECKING:
    from landprompt.embedder.clip import ClipModel

#: Prompt style used to encode concepts for a cube in CLIP image space (ground photos).
DEFAULT_STYLE = "ground"
#: CLIP's logit scale (exp of its learned temperature, clamped to 100 in training).
CLIP_LOGIT_SCALE = 100.0
#: A progress callback of the chunk loops: ``(pixels done, pixels in all)`` after each chunk.
ProgressFn = Callable[[int, int], None]


class PixelCounter:
    """Counts the pixels done over several windows or cubes and reports each step to a :data:`ProgressFn`.

    Args:
        progress: Called with ``(pixels done, pixels in all)`` after each step (nothing without one).
        total: Pixels in all.
    """

    def __init__(self, progress: ProgressFn | None, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def __call__(self, pixels: int) -> None:
        """Count ``pixels`` more done."""
        self.done += pixels
        if self.progress is not None:
            self.progress(self.done, self.total)


def default_vocabulary() -> list[str]:
    """The shipped background vocabulary of land covers (one prompt per line in a data file)."""
    text = resources.files("landprompt.query").joinpath("data/background_vocabulary.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def concept_embedding(clip: ClipModel, concept: str, style: str = DEFAULT_STYLE) -> np.ndarray:
    """The L2-normalised prompt-ensemble embedding (d,) of one concept."""
    from landprompt.embedder.prompts import get_templates

    if not concept.strip():
        raise BadInputError("empty prompt: give the concept in plain words, e.g. 'olive groves'")
    return clip.encode_prompts([concept.strip()], get_templates(style))[0]


def background_embeddings(
    clip: ClipModel,
    concept: str,
    versus: Sequence[str] | np.ndarray | None = None,
    style: str = DEFAULT_STYLE,
) -> np.ndarray:
    """Embeddings (k, d) of the background prompts a concept competes with.

    Args:
        clip: CLIP model whose text tower encodes the prompts.
        concept: The concept; dropped from the default vocabulary if it appears there.
        versus: Background prompts, or their embeddings (k, d); default: :func:`default_vocabulary`.
        style: Prompt template style for the ensembles.
    """
    from landprompt.embedder.prompts import get_templates

    if isinstance(versus, np.ndarray):
        return unit_rows(versus)
    return clip.encode_prompts(background_prompts([concept], versus), get_templates(style))


def background_prompts(concepts: Sequence[str], versus: Sequence[str] | None = None) -> list[str]:
    """The prompts concepts compete with: ``versus`` (default :func:`default_vocabulary`) but the concepts.

    Prompts are stripped; blank ones and the concepts themselves (any case) are dropped.

    Raises:
        BadInputError: If no prompt is left.
    """
    lowered = {c.strip().lower() for c in concepts}
    names = [n.strip() for n in (versus if versus is not None else default_vocabulary())]
    names = [n for n in names if n and n.lower() not in lowered]
    if not names:
        raise BadInputError("the background (versus) is empty: give at least one other prompt")
    return names


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Embeddings as L2-normalised float32 rows (k, d); one vector (d,) becomes one row.

    Raises:
        BadInputError: If there is no row, or a row is non-finite or zero.
    """
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    if vectors.ndim != 2 or 0 in vectors.shape:
        raise BadInputError(f"an embedding array needs at least one row, got shape {vectors.shape}")
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    if not np.all(np.isfinite(vectors)) or np.any(norms == 0):
        raise BadInputError("embeddings must be finite and non-zero")
    return vectors / norms


def unit_classes(concepts: np.ndarray, background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concept rows (m, d) and background rows (k, d) as :func:`unit_rows`, checked to be of one width.

    Raises:
        BadInputError: As :func:`unit_rows`, or if the concepts and the background differ in width.
    """
    concepts, background = unit_rows(concepts), unit_rows(background)
    if concepts.shape[1] != background.shape[1]:
        raise BadInputError(
            f"concept has dimension {concepts.shape[1]} but the background has {background.shape[1]}"
        )
    return concepts, background


def class_matrix(concept: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Stack the concept (row 0) over the background rows, all L2-normalised: (1 + k, d)."""
    concepts, background = unit_classes(concept, background)
    return np.concatenate([concepts[:1], background], axis=0)


def concept_probability(embeddings: np.ndarray, classes: np.ndarray, logit_scale: float) -> np.ndarray:
    """Probability of class 0 for each embedding: softmax over ``logit_scale * cos``.

    Scored by the same kernel as the maps (:func:`~landprompt.query.scoring.score_values`).

    Args:
        embeddings: Unit vectors (..., d).
        classes: Unit vectors (1 + k, d) from :func:`class_matrix`; row 0 is the concept.
        logit_scale: The CLIP model's (exponentiated) logit scale.

    Returns:
        float32 array (...) in [0, 1].
    """
    from landprompt.query.scoring import probability_kernel, score_values

    kernel = probability_kernel(classes[:1], classes[1:], logit_scale)
    return score_values(np.asarray(embeddings, np.float32), kernel)[..., 0]


def resolve_logit_scale(ds: xr.Dataset | None, clip: ClipModel | None, logit_scale: float | None) -> float:
    """The softmax temperature: ``logit_scale``, else the text tower's, else the cube's attr, else 100."""
    if logit_scale is not None:
        value = float(logit_scale)
    elif clip is not None:
        value = float(clip.logit_scale)
    else:
        value = float((ds.attrs if ds is not None else {}).get("logit_scale", CLIP_LOGIT_SCALE))
    if not np.isfinite(value) or value <= 0:
        raise BadInputError(f"the logit scale must be a positive number, got {value}")
    return value


def clip_for_cube(ds: xr.Dataset) -> ClipModel:
    """Load the CLIP model named in a cube's attrs (``clip_model``, ``clip_pretrained``)."""
    from landprompt.embedder.clip import clip_named_in

    model = clip_named_in(ds.attrs, "the cube")
    same_width(model, ds, ds.encoding.get("source", ""))
    return model
