"""The chunk-wise scorer of a concept over a cube, with an optional calibration.

:class:`ConceptScorer` is what the analytics (change maps, indicators per area, validation at points)
stream cube chunks through: the concept's class matrix and logit scale (assembled by a
:class:`~landprompt.query.text.TextTower`), scored by the kernel
:func:`~landprompt.query.probability.probability_map` uses (:mod:`landprompt.query.scoring`), plus an
optional :class:`~landprompt.calibration.Calibration`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from landprompt.calibration import Calibration, QuerySettings, resolve_calibration
from landprompt.query.classes import DEFAULT_STYLE, class_matrix, concept_probability
from landprompt.query.text import TextTower

if TYPE_CHECKING:
    from landprompt.embedder.clip import ClipModel
    from landprompt.embedder.cube import ChunkWindow


@dataclass(frozen=True, eq=False)
class ConceptScorer:
    """Scores embeddings for one concept: softmax against a background, then an optional calibration.

    Attributes:
        classes: Unit rows (1 + k, d): the concept, then the background (see ``class_matrix``).
        query: The query settings these probabilities mean.
        calibration: Applied after the softmax; checked against ``query`` when the scorer is made.
    """

    classes: np.ndarray
    query: QuerySettings
    calibration: Calibration | None = None

    def __post_init__(self) -> None:
        if self.calibration is not None:
            self.calibration.check(self.query)

    @classmethod
    def from_text(
        cls,
        concept: str,
        versus: Sequence[str] | None = None,
        clip: ClipModel | None = None,
        style: str = DEFAULT_STYLE,
        logit_scale: float | None = None,
        calibration: Calibration | None = None,
        cube: xr.Dataset | None = None,
    ) -> ConceptScorer:
        """Encode a concept and its background prompts (default: the shipped vocabulary).

        Assembled by :meth:`from_tower` with a new :class:`.TextTower`: with the cube's own model,
        prompts cached on disk load no text tower.

        Args:
            concept: The concept in plain words.
            versus: Background prompts.
            clip: CLIP model; default: the one ``cube`` names.
            style: Prompt template style.
            logit_scale: Softmax temperature; default: the CLIP model's (see
                :func:`~landprompt.query.classes.resolve_logit_scale`).
            calibration: Optional calibration (must match the query).
            cube: The cube, to find its CLIP model when ``clip`` is ``None``.
        """
        return cls.from_tower(TextTower(cube, clip), concept, versus, style, logit_scale, calibration)

    @classmethod
    def from_tower(
        cls,
        tower: TextTower,
        concept: str,
        versus: Sequence[str] | None = None,
        style: str = DEFAULT_STYLE,
        logit_scale: float | None = None,
        calibration: Calibration | None = None,
    ) -> ConceptScorer:
        """The scorer of a concept against its background, assembled by a text tower.

        Args:
            tower: The text tower (a session's keeps its encoded prompts).
            concept: The concept in plain words.
            versus: Background prompts (default: the shipped vocabulary without the concept).
            style: Prompt template style.
            logit_scale: Softmax temperature (default: the CLIP model's).
            calibration: Optional calibration, checked against the query.
        """
        names, vectors, background, scale = tower.classes([concept], versus, style, logit_scale)
        query = tower.settings(names[0], versus, style, scale)
        return cls(class_matrix(vectors, background), query, calibration)

    @classmethod
    def of(
        cls,
        concept: str | ConceptScorer,
        versus: Sequence[str] | None = None,
        clip: ClipModel | None = None,
        style: str = DEFAULT_STYLE,
        logit_scale: float | None = None,
        cube: xr.Dataset | None = None,
    ) -> ConceptScorer:
        """``concept`` itself if it is a scorer (other arguments unused), else :meth:`from_text`."""
        if isinstance(concept, ConceptScorer):
            return concept
        return cls.from_text(concept, versus, clip, style, logit_scale, cube=cube)

    def with_calibration(self, calibration: Calibration | None) -> ConceptScorer:
        """The same scorer with another calibration."""
        return ConceptScorer(self.classes, self.query, calibration)

    def calibrated_for(
        self,
        cube: xr.Dataset | str | os.PathLike[str],
        calibration: Calibration | str | os.PathLike[str] | bool | None,
    ) -> ConceptScorer:
        """The same scorer with the calibration meant for a cube: ``True`` the cube's own of this concept.

        See :func:`~landprompt.calibration.resolve_calibration`; a calibration or its file is the same for
        every cube, ``None`` or ``False`` none.
        """
        return self.with_calibration(resolve_calibration(calibration, cube, self.query.concept))

    def score(self, embeddings: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """Probabilities (float32, shape of ``embeddings`` without its last axis), NaN where not valid."""
        p = concept_probability(embeddings, self.classes, self.query.logit_scale)
        if valid is not None:
            p[~np.asarray(valid, dtype=bool)] = np.nan
        return self.calibrate(p)

    def calibrate(self, p: np.ndarray) -> np.ndarray:
        """Raw probabilities through the scorer's calibration (themselves without one)."""
        return self.calibration.apply(p) if self.calibration is not None else p

    def iter_chunks(
        self, ds: xr.Dataset, rows: slice | None = None, cols: slice | None = None
    ) -> Iterator[tuple[ChunkWindow, np.ndarray]]:
        """Stream a cube (or a window of it): each chunk window and its probabilities [h, w].

        The cube's stored values are scored as :func:`~landprompt.query.probability.probability_map`
        scores them (:func:`~landprompt.query.scoring.iter_probabilities`), then calibrated.
        """
        from landprompt.query.scoring import iter_probabilities

        concept, background = self.classes[:1], self.classes[1:]
        for window, p in iter_probabilities(ds, concept, background, self.query.logit_scale, rows, cols):
            yield window, self.calibrate(p[..., 0])

    def attrs(self) -> dict[str, Any]:
        """Attributes describing the query (:meth:`QuerySettings.to_attrs`), for maps and tables."""
        attrs: dict[str, Any] = {**self.query.to_attrs(), "n_background": int(self.classes.shape[0] - 1)}
        if self.calibration is not None:
            attrs["calibration"] = self.calibration.method
        return attrs
