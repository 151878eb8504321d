"""Prompt templates for CLIP text embeddings.

A template is a string with one ``{}`` placeholder for the class name. Styles group templates by the kind
of picture a prompt describes: the bare class name, a ground-level photo, a satellite image or an aerial
photo. :meth:`landprompt.embedder.clip.ClipModel.encode_prompts` averages the embeddings of a style's
templates per class (CLIP's prompt ensembling).
"""

from __future__ import annotations

from collections.abc import Sequence

from landprompt.errors import BadInputError

PLACEHOLDER = "{}"

CLASS_NAME: tuple[str, ...] = ("{}",)

# Ground-level photos, in the spirit of CLIP's ImageNet templates; LUCAS and Flickr photos are landscapes.
GROUND: tuple[str, ...] = (
    "a photo of {}.",
    "a photo of a {}.",
    "a photo of the {}.",
    "a landscape photo of {}.",
    "a photo of a landscape with {}.",
)

# CLIP's EuroSAT templates ("a centered satellite photo of ...") plus RemoteCLIP/SenCLIP-style phrasings.
SATELLITE: tuple[str, ...] = (
    "a centered satellite photo of {}.",
    "a centered satellite photo of a {}.",
    "a satellite image of {}.",
    "a satellite photo of {}.",
    "a Sentinel-2 satellite image of {}.",
    "a remote sensing image of {}.",
)

AERIAL: tuple[str, ...] = (
    "an aerial photo of {}.",
    "an aerial photo of a {}.",
    "an aerial image of {}.",
    "an aerial view of {}.",
    "a top-down aerial photo of {}.",
)

TEMPLATES: dict[str, tuple[str, ...]] = {
    "classname": CLASS_NAME,
    "ground": GROUND,
    "satellite": SATELLITE,
    "aerial": AERIAL,
}


def get_templates(style: str) -> list[str]:
    """Return the templates of a prompt style.

    Args:
        style: One of the keys of :data:`TEMPLATES` (case-insensitive).

    Returns:
        A new list of templates, each with one ``{}`` placeholder.

    Raises:
        BadInputError: If the style is unknown.
    """
    key = style.strip().lower()
    if key not in TEMPLATES:
        raise BadInputError(f"unknown prompt style {style!r}; known styles: {', '.join(TEMPLATES)}")
    return list(TEMPLATES[key])


def expand(name: str, templates: Sequence[str]) -> list[str]:
    """Fill each template with a class name.

    The placeholder is replaced literally, so braces in ``name`` or in the rest of a template are kept.

    Args:
        name: Class name or concept, e.g. ``"olive groves"``.
        templates: Templates, each containing ``{}`` exactly once.

    Returns:
        One prompt per template, in template order.

    Raises:
        BadInputError: If the name is blank, ``templates`` is a single string or empty, or a template does
            not contain exactly one ``{}``.
    """
    if not name.strip():
        raise BadInputError("empty prompt: the class name is blank")
    if isinstance(templates, str) or not templates:
        raise BadInputError(f"templates must be a non-empty list of strings, got {templates!r}")
    for template in templates:
        if template.count(PLACEHOLDER) != 1:
            raise BadInputError(f"prompt template {template!r} must contain '{{}}' exactly once")
    return [template.replace(PLACEHOLDER, name.strip()) for template in templates]
