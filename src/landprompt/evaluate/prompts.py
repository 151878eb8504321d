"""Prompt sets of the benchmarks and the class text embeddings they give.

A prompt set (``data/prompts/<dataset>.yaml``) names each class for the prompt templates (``name``) and
describes it in a few sentences (``descriptive``). Styles:

==============  ==========================================================================
``classname``   the name alone
``generic``     "a satellite image of {}."
``satellite``   the satellite-image ensemble of :mod:`landprompt.embedder.prompts`
``aerial``      the aerial-photo ensemble of :mod:`landprompt.embedder.prompts`
``ground``      the ground-level photo ensemble ("a photo of {}.", ...)
``descriptive`` the class's sentences, used as they are
==============  ==========================================================================

A class's embedding is the re-normalised mean of its prompts' embeddings (CLIP prompt ensembling). A
*setting* joins styles with ``+`` (``aerial+ground``): the mean of the styles' class embeddings, each
style weighing the same, re-normalised.

A user's prompt file (YAML or JSON, same schema) extends the shipped set (:func:`load_prompt_set`): it
may rename classes, add template styles under ``templates:``, and add sentence styles as further lists
under its classes, e.g. the per-class prompt lists of a paper::

    templates:
      rs: ["a remote sensing image of {}."]
    classes:
      AnnualCrop:
        name: Annual Crop Land
        senclip_aerial: ["Aerial view showing alternating rows of green and brown fields.", ...]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from landprompt.embedder.clip import ClipModel
from landprompt.embedder.prompts import expand, get_templates
from landprompt.errors import BadInputError
from landprompt.evaluate.resources import packaged_yaml
from landprompt.schema import read_yaml

GENERIC: tuple[str, ...] = ("a satellite image of {}.",)
STYLES: tuple[str, ...] = ("classname", "generic", "satellite", "aerial", "ground", "descriptive")
"""Prompt styles every prompt set has."""

PROMPT_SETS: dict[str, str] = {
    "eurosat": "eurosat",
    "eurosat-rgb": "eurosat",
    "bigearthnet": "bigearthnet",
    "lucas": "lucas",
}
"""Shipped prompt set of each benchmark."""


@dataclass(frozen=True)
class PromptSet:
    """Class names, template styles and sentence styles of one benchmark.

    Attributes:
        dataset: Benchmark the set is for.
        names: Class key -> name filled into templates.
        templates: Template style -> templates (each with one ``{}``).
        sentences: Sentence style (``descriptive``, or a file's own) -> class key -> sentences.
        sources: Where the set was read from (the shipped file, then a user's file).
    """

    dataset: str
    names: Mapping[str, str]
    templates: Mapping[str, tuple[str, ...]]
    sentences: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    sources: tuple[str, ...] = ()

    @property
    def styles(self) -> tuple[str, ...]:
        """Styles this set can embed."""
        return (*self.templates, *self.sentences)

    def prompts(self, style: str, classes: Sequence[str]) -> list[list[str]]:
        """The prompts of every class in one style.

        Raises:
            BadInputError: If the style is unknown or a class has no name or sentences in the set.
        """
        missing = [c for c in classes if c not in self.names]
        if missing:
            raise BadInputError(f"prompt set {' + '.join(self.sources)} has no entry for class(es) {missing}")
        if style in self.sentences:
            empty = [c for c in classes if not self.sentences[style].get(c)]
            if empty:
                raise BadInputError(f"prompt style {style!r} has no sentences for class(es) {empty}")
            return [list(self.sentences[style][c]) for c in classes]
        if style not in self.templates:
            raise BadInputError(f"unknown prompt style {style!r}; known: {', '.join(self.styles)}")
        return [expand(self.names[c], self.templates[style]) for c in classes]

    def describe(self, settings: Sequence[str]) -> dict[str, Any]:
        """Sources, class names, and the templates of the template styles in ``settings`` (for reports)."""
        used = {s for setting in settings for s in parse_setting(setting)}
        return {
            "source": " + ".join(self.sources),
            "names": dict(self.names),
            "templates": {s: list(t) for s, t in self.templates.items() if s in used},
            "sentence_styles": sorted(used & set(self.sentences)),
        }


def default_templates() -> dict[str, tuple[str, ...]]:
    """Templates of the shipped template styles (all of :data:`STYLES` but ``descriptive``)."""
    shipped = {s: tuple(get_templates(s)) for s in ("classname", "satellite", "aerial", "ground")}
    return {"classname": shipped["classname"], "generic": GENERIC, **shipped}


def load_prompt_set(dataset: str, path: str | Path | None = None) -> PromptSet:
    """The shipped prompt set of a benchmark, extended or overridden by a user's YAML (or JSON) file.

    A user's file has the shipped schema; every key is optional. Its class ``name`` s replace the
    shipped ones, its ``templates`` add or replace template styles, and any list under a class other
    than ``name`` is a sentence style (replacing a template style of the same name).

    Args:
        dataset: Benchmark name (see :data:`PROMPT_SETS`).
        path: A user's prompt file.

    Raises:
        BadInputError: If there is neither a shipped set for ``dataset`` nor a file, or a file does not
            follow the schema.
    """
    names: dict[str, str] = {}
    templates = default_templates()
    sentences: dict[str, dict[str, tuple[str, ...]]] = {}
    sources = []
    if dataset in PROMPT_SETS:
        name = f"prompts/{PROMPT_SETS[dataset]}.yaml"
        sources.append(f"landprompt/evaluate/data/{name}")
        _merge(packaged_yaml(name), sources[-1], names, templates, sentences)
    elif path is None:
        raise BadInputError(f"no prompt set for {dataset!r}; known: {', '.join(PROMPT_SETS)}")
    if path is not None:
        sources.append(str(path))
        _merge(read_yaml(path, "prompt set"), sources[-1], names, templates, sentences)
    for style in sentences:
        templates.pop(style, None)
    return PromptSet(dataset, names, templates, sentences, tuple(sources))


def _merge(
    document: Any,
    source: str,
    names: dict[str, str],
    templates: dict[str, tuple[str, ...]],
    sentences: dict[str, dict[str, tuple[str, ...]]],
) -> None:
    """Merge one prompt file into the collected names, templates and sentences (checking the schema)."""
    if not isinstance(document, dict) or not isinstance(document.get("classes", {}), dict):
        raise BadInputError(
            f"{source}: a prompt set is a mapping with 'classes' (class key -> name, sentences)"
        )
    for style, items in (document.get("templates") or {}).items():
        if isinstance(items, str) or not isinstance(items, list) or not items:
            raise BadInputError(f"{source}: templates of style {style!r} must be a non-empty list")
        templates[str(style)] = tuple(str(t) for t in items)
    for key, entry in (document.get("classes") or {}).items():
        entry = {"name": entry} if isinstance(entry, str) else entry
        if not isinstance(entry, dict) or not isinstance(entry.get("name", ""), str):
            raise BadInputError(f"{source}: class {key!r} must map to a name and lists of sentences")
        if "name" in entry:
            names[str(key)] = entry["name"]
        for style, items in entry.items():
            if style == "name":
                continue
            if isinstance(items, str) or not isinstance(items, list) or not items:
                raise BadInputError(
                    f"{source}: {key!r}: style {style!r} must be a non-empty list of sentences"
                )
            sentences.setdefault(str(style), {})[str(key)] = tuple(str(t) for t in items)


def parse_settings(value: str | Sequence[str]) -> list[str]:
    """Split ``"aerial,ground,aerial+ground"`` (or a list) into settings; each is checked by name.

    Raises:
        BadInputError: If no setting is given or one is blank.
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    settings = [s.strip().lower() for s in items]
    if not settings or any(not parse_setting(s) for s in settings):
        raise BadInputError(f"prompt styles must be names joined by ',' (and '+' to ensemble), got {value!r}")
    return list(dict.fromkeys(settings))


def parse_setting(setting: str) -> list[str]:
    """The styles of one setting: ``"aerial+ground"`` -> ``["aerial", "ground"]`` (blank parts dropped)."""
    parts = [p.strip() for p in setting.split("+")]
    return [] if any(not p for p in parts) else parts


def class_embeddings(
    clip: ClipModel, prompt_set: PromptSet, classes: Sequence[str], setting: str
) -> np.ndarray:
    """Text embedding of every class in one setting.

    Args:
        clip: The CLIP model whose text tower embeds the prompts.
        prompt_set: The benchmark's prompt set.
        classes: Class keys, in class-index order.
        setting: One style or several joined by ``+``.

    Returns:
        float32 [classes, embed_dim], rows of unit norm.
    """
    means = []
    for style in parse_setting(setting):
        prompts = prompt_set.prompts(style, classes)
        if style not in prompt_set.sentences:
            names = [prompt_set.names[c] for c in classes]
            means.append(clip.encode_prompts(names, prompt_set.templates[style]))
        else:
            flat = clip.encode_text([p for group in prompts for p in group])
            ends = np.cumsum([len(group) for group in prompts])
            means.append(_unit(np.stack([part.mean(axis=0) for part in np.split(flat, ends[:-1])])))
    return _unit(np.mean(means, axis=0))


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
