"""Edge-value checks at the entry of public functions: each refuses a bad value with one clear line.

The same checks serve the Python API and the command line (whose options end in these functions), so a
NaN, a non-integer or negative count or a CLIP model of another width than the cube is refused
the same way everywhere, before any work.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from landprompt.errors import BadInputError

if TYPE_CHECKING:
    import xarray as xr


class EmbeddingModel(Protocol):
    """What :func:`same_width` reads of a CLIP model (a structural type: this module imports no stage)."""

    @property
    def name(self) -> str:
        """The model's name, for the message."""

    @property
    def embed_dim(self) -> int:
        """Width of its embeddings."""


def count(name: str, value: Any, minimum: int = 1) -> int:
    """An integer count of at least ``minimum`` (``True``/``False`` and ``2.5`` are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise BadInputError(f"{name} must be a whole number, got {value!r}")
    if value < minimum:
        raise BadInputError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def finite(
    name: str, value: Any, minimum: float | None = None, *, positive: bool = False, optional: bool = False
) -> float | None:
    """A finite number (not NaN or infinite), at least ``minimum`` and, with ``positive``, above 0.

    ``optional`` lets ``None`` through (meaning "the default").
    """
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise BadInputError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise BadInputError(f"{name} must be at least {minimum:g}, got {value:g}")
    if positive and value <= 0:
        raise BadInputError(f"{name} must be above 0, got {value:g}")
    return float(value)


def same_width(model: EmbeddingModel, ds: xr.Dataset, cube: str | Path) -> None:
    """Refuse a CLIP model whose embedding width differs from the cube's (e.g. 512 against 32)."""
    dim = int(ds.sizes["d"])
    if model.embed_dim != dim:
        where = f"cube {cube}" if str(cube) else "the cube"
        raise BadInputError(
            f"CLIP model {model.name} embeds in {model.embed_dim} dimensions but {where} holds {dim}-d "
            "embeddings: use a CLIP model of the cube's width (cube info CUBE names the one it was made with)"
        )
