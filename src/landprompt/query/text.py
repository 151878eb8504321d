"""The text side of a cube's queries: prompts encoded once, a concept assembled against its background.

:class:`TextTower` is the one place a concept query is put together: the concept's prompt-ensemble
embedding, the background it competes with (:func:`~landprompt.query.classes.background_prompts`),
the logit scale and the CLIP model's id (:meth:`TextTower.classes`, :meth:`TextTower.settings`), from
which :meth:`~landprompt.query.scorer.ConceptScorer.from_tower` makes a scorer. Sessions, the served
tiles, the batch jobs and ``ConceptScorer.from_text`` all go through it.

Prompts are kept in memory (the :data:`PROMPT_CACHE_SIZE` most recently used) and, with the model the
cube names, on disk (:mod:`~landprompt.query.prompt_cache`), with the model's logit scale and id: the CLIP
text tower is loaded only when a prompt is in neither cache, so a query with cached prompts, in any
process, loads no torch model.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from landprompt.checks import same_width
from landprompt.errors import BadInputError
from landprompt.query import prompt_cache
from landprompt.query.classes import (
    DEFAULT_STYLE,
    background_prompts,
    clip_for_cube,
    resolve_logit_scale,
    unit_rows,
)

if TYPE_CHECKING:
    from landprompt.calibration import QuerySettings
    from landprompt.embedder.clip import ClipModel

#: Encoded prompts a tower keeps in memory (least recently used dropped first): 1024 CLIP-512 vectors
#: are 2 MiB.
PROMPT_CACHE_SIZE = 1024


class TextTower:
    """A cube's CLIP text tower, loaded only for a prompt not cached, and the concept queries it assembles.

    Args:
        ds: The cube; its attrs name its CLIP model and its ``d`` size is the embedding width. ``None``
            with ``clip`` (prompts then are not kept on disk).
        clip: A CLIP model to use instead of the one the cube names; its prompts are not kept on disk.

    Raises:
        BadInputError: With neither a cube nor a CLIP model.
    """

    def __init__(self, ds: xr.Dataset | None, clip: ClipModel | None = None) -> None:
        if ds is None and clip is None:
            raise BadInputError("give a CLIP model (clip=) or the cube that names one")
        self.ds = ds
        self.dim = int(ds.sizes["d"]) if ds is not None else int(clip.embed_dim)  # type: ignore[union-attr]
        self.given = clip
        self._clip = clip
        self._attrs = dict(ds.attrs) if ds is not None and clip is None else {}  # {}: not kept on disk
        self._prompts: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._facts: prompt_cache.ModelFacts | None = None  # kept once known
        self._lock = threading.RLock()  # threads of a server share the tower

    # --- the model -----------------------------------------------------------------------------
    @property
    def loaded(self) -> ClipModel | None:
        """The CLIP model if it is loaded (or was given), else None."""
        return self._clip

    @property
    def clip(self) -> ClipModel:
        """The CLIP model, loaded on first use (its logit scale and id are then kept on disk)."""
        with self._lock:
            if self._clip is None:
                assert self.ds is not None
                self._clip = clip_for_cube(self.ds)
                facts = prompt_cache.ModelFacts(self._clip.logit_scale, self._clip.id)
                prompt_cache.save_facts(self._attrs, facts)
            if self.ds is not None:
                same_width(self._clip, self.ds, self.ds.encoding.get("source", ""))
            return self._clip

    @property
    def facts(self) -> prompt_cache.ModelFacts:
        """The model's logit scale and id: from the model if loaded, else from disk, else by loading it.

        Kept once known, so a query reads the disk at most once a tower.
        """
        with self._lock:
            if self._facts is None:
                stored = None if self._clip is not None else prompt_cache.load_facts(self._attrs)
                if stored is None:
                    clip = self.clip
                    stored = prompt_cache.ModelFacts(clip.logit_scale, clip.id)
                self._facts = stored
            return self._facts

    # --- prompts -------------------------------------------------------------------------------
    def encode(self, prompts: str | Sequence[str], style: str = DEFAULT_STYLE) -> np.ndarray:
        """Prompt-ensemble embeddings (n, d) of prompts, each encoded once while it stays cached.

        Raises:
            BadInputError: If there is no prompt or a prompt is blank.
        """
        names = [prompts] if isinstance(prompts, str) else list(prompts)
        names = [n.strip() for n in names]
        if not names or not all(names):
            raise BadInputError("empty prompt: give the concept in plain words, e.g. 'olive groves'")
        keys = [(n, style) for n in dict.fromkeys(names)]
        with self._lock:
            missing = [key[0] for key in keys if key not in self._prompts]
            if missing:
                self._encode_new(missing, style)
            vectors = {name: self._prompts[(name, style)] for name, _ in keys}
            for key in keys:  # most recently used last; the least recently used beyond the size dropped
                self._prompts.move_to_end(key)
            while len(self._prompts) > PROMPT_CACHE_SIZE:
                self._prompts.popitem(last=False)
        return np.stack([vectors[n] for n in names])

    def _encode_new(self, names: list[str], style: str) -> None:
        """Encode prompts into the memory cache: from disk where kept there, else with the tower."""
        from landprompt.embedder.prompts import get_templates

        templates = get_templates(style)
        stored = prompt_cache.PromptCache.for_cube(self._attrs, templates, self.dim)
        todo = []
        for name in names:
            vector = stored.load(name) if stored is not None else None
            if vector is None:
                todo.append(name)
            else:
                self._prompts[(name, style)] = vector
        if todo:
            for name, vector in zip(todo, self.clip.encode_prompts(todo, templates), strict=True):
                self._prompts[(name, style)] = np.array(vector, np.float32)
                if stored is not None:
                    stored.save(name, self._prompts[(name, style)])

    # --- queries -------------------------------------------------------------------------------
    def classes(
        self,
        concepts: Sequence[str] | np.ndarray,
        versus: Sequence[str] | np.ndarray | None = None,
        style: str = DEFAULT_STYLE,
        logit_scale: float | None = None,
    ) -> tuple[list[str], np.ndarray, np.ndarray, float]:
        """Concepts and the background they compete with, as unit rows, and the logit scale.

        Args:
            concepts: Concepts in plain words, or their embeddings (m, d) (named ``embedding <i>``).
            versus: Background prompts (default: the shipped vocabulary without the concepts) or
                embeddings (k, d).
            style: Prompt template style.
            logit_scale: Softmax temperature; default: the CLIP model's where a prompt is text, else as
                :func:`~landprompt.query.classes.resolve_logit_scale` says (no tower loaded).

        Returns:
            Concept names, concept rows (m, d), background rows (k, d) and the logit scale.
        """
        if isinstance(concepts, np.ndarray):
            vectors = unit_rows(concepts)
            names = [f"embedding {i}" for i in range(len(vectors))]
        else:
            names = [c.strip() for c in concepts]
            vectors = self.encode(names, style)
        if isinstance(versus, np.ndarray):
            background = unit_rows(versus)
        else:
            background = self.encode(background_prompts(names, versus), style)
        uses_text = not (isinstance(concepts, np.ndarray) and isinstance(versus, np.ndarray))
        if logit_scale is None and uses_text:
            logit_scale = self.facts.logit_scale
        return names, vectors, background, resolve_logit_scale(self.ds, self.given, logit_scale)

    def settings(
        self, concept: str, versus: Sequence[str] | None, style: str, logit_scale: float
    ) -> QuerySettings:
        """The query settings of a concept in words against background prompts (as a calibration records)."""
        from landprompt.calibration import QuerySettings

        given = None if versus is None else tuple(v.strip() for v in versus if v.strip())
        return QuerySettings(concept.strip(), given, style, logit_scale, self.facts.id)
