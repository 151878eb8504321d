"""The encoder of an embedding run, built alike in every process: seeded, checked for weights, fingerprinted.

An embedding run builds its encoder once per process (the run itself, a resumed run, every Dask worker),
so an encoder built from a registry name must come out with the same weights each time. An
:class:`EncoderRecipe` says how: the registry name or checkpoint, the factory arguments, and the seed
that initialises whatever the arguments leave random (the ``sits`` head, an untrained backbone, a CLIP
tower without ``clip_pretrained``). :func:`weights_sha256` fingerprints the built weights; the cube
records the recipe and the fingerprint (:meth:`EncoderRecipe.attrs`), so a resume with another encoder
is refused and a worker that built different weights stops.

An encoder with no trained weights at all (``sits`` without ``presto_weights``, ``clip_rgb`` without
``clip_pretrained``) embeds noise; it is refused unless ``random_weights`` is set.

Example:
    >>> recipe = EncoderRecipe.of("sits", {"presto_weights": "default_model.pt"}, seed=0)  # doctest: +SKIP
    >>> encoder = recipe.build("cpu")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from landprompt.embedder.models import Encoder, load_encoder
from landprompt.embedder.models.base import to_jsonable
from landprompt.embedder.models.registry import encoder_factory, is_encoder
from landprompt.errors import BadInputError

WEIGHTS_ARGUMENTS: Mapping[str, tuple[str, str]] = {
    "sits": ("presto_weights", "Presto's default_model.pt"),
    "clip_rgb": ("clip_pretrained", "an open_clip tag or weights file"),
}
"""Per built-in encoder: the factory argument naming its trained weights, and an example value."""


class EncoderWeightsError(BadInputError):
    """An encoder's weights asked for inconsistently (none at all, or random and trained at once).

    The message is a template naming the arguments as ``{random_weights}``, ``{presto_weights}``,
    ``{clip_pretrained}`` and ``{checkpoint}`` fields, filled with :data:`PYTHON_SPELLINGS` for ``str()``,
    so a command line can fill them with its own option names (:meth:`spelled`); user text such as a
    checkpoint path is a value of its own, never rewritten.

    Attributes:
        template: The message with the arguments as ``str.format`` fields.
        values: Fields of user text (``model``), filled in as they are.
    """

    def __init__(self, template: str, values: Mapping[str, str] | None = None) -> None:
        self.template = template
        self.values = dict(values or {})
        super().__init__(self.spelled(PYTHON_SPELLINGS))

    def __reduce__(self) -> tuple[type[EncoderWeightsError], tuple[str, dict[str, str]]]:
        """Pickled as its template and values (an error raised in a worker process comes back whole)."""
        return type(self), (self.template, self.values)

    def spelled(self, spellings: Mapping[str, str]) -> str:
        """The message with each argument spelled as ``spellings`` says.

        Raises:
            KeyError: If ``spellings`` lacks an argument the message names.
        """
        return self.template.format_map({**spellings, **self.values})


PYTHON_SPELLINGS: Mapping[str, str] = {
    "random_weights": "random_weights=True",
    "presto_weights": "presto_weights",
    "clip_pretrained": "clip_pretrained",
    "checkpoint": "model=CHECKPOINT",
}
"""How :class:`EncoderWeightsError` spells the arguments it names, as Python arguments."""


@dataclass(frozen=True)
class EncoderRecipe:
    """How to build a run's encoder (hashable and picklable: it travels with every chunk task).

    Attributes:
        model: A registry name (``sits``, ``clip_rgb``) or a checkpoint path.
        arguments_json: The factory arguments (or checkpoint overrides) as sorted JSON.
        seed: Seed of the random initialisation of whatever the arguments leave untrained.
        random_weights: Accept an encoder without any trained weights.
    """

    model: str
    arguments_json: str = "{}"
    seed: int = 0
    random_weights: bool = False

    @classmethod
    def of(
        cls,
        model: str,
        arguments: Mapping[str, Any] | None = None,
        seed: int = 0,
        random_weights: bool = False,
    ) -> EncoderRecipe:
        """A recipe from plain arguments (None values are dropped: the factory's defaults apply)."""
        kept = {k: v for k, v in (arguments or {}).items() if v is not None}
        return cls(str(model), json.dumps(to_jsonable(kept), sort_keys=True), int(seed), bool(random_weights))

    @property
    def arguments(self) -> dict[str, Any]:
        """The factory arguments (or checkpoint overrides)."""
        return dict(json.loads(self.arguments_json))

    @property
    def is_registry_name(self) -> bool:
        """Whether :attr:`model` names a registered encoder (else it is a checkpoint)."""
        return is_encoder(self.model)

    def build(self, device: str | None = None) -> Encoder:
        """The encoder, in eval mode on ``device``; the same weights in every process.

        Raises:
            BadInputError: If the encoder would have no trained weights and :attr:`random_weights` is not
                set, or ``random_weights`` is combined with a checkpoint or with trained weights.
        """
        kwargs = self._factory_kwargs()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return load_encoder(self.model, device=device, **kwargs)

    def attrs(self, weights_digest: str) -> dict[str, Any]:
        """What a cube records about the encoder beyond its :meth:`Encoder.describe`."""
        return {
            "encoder_seed": self.seed,
            "encoder_options": self.arguments,
            "random_weights": self.random_weights,
            "weights_sha256": weights_digest,
        }

    def _factory_kwargs(self) -> dict[str, Any]:
        kwargs = self.arguments
        if not self.is_registry_name:
            if self.random_weights:
                raise EncoderWeightsError(
                    "{random_weights} builds a registered encoder; {model!r} is a checkpoint",
                    {"model": self.model},
                )
            return kwargs
        if self.model in WEIGHTS_ARGUMENTS:
            argument, example = WEIGHTS_ARGUMENTS[self.model]
            default = inspect.signature(encoder_factory(self.model)).parameters[argument].default
            trained = kwargs.get(argument, default) is not None
            if trained and self.random_weights and argument in kwargs:
                raise EncoderWeightsError(
                    f"{{random_weights}} and {{{argument}}} contradict each other: give one"
                )
            if self.random_weights:
                kwargs[argument] = None
            elif not trained:
                raise EncoderWeightsError(
                    f"the {{model!r}} encoder has no trained weights without {{{argument}}} "
                    "(e.g. {example}): its embeddings would be random projections that match no concept. "
                    "Give the weights, a trained checkpoint as {checkpoint}, or {random_weights} to embed "
                    "with seeded random weights (for tests)",
                    {"model": self.model, "example": example},
                )
        if "seed" in inspect.signature(encoder_factory(self.model)).parameters:
            kwargs.setdefault("seed", self.seed)
        return kwargs


def weights_sha256(module: torch.nn.Module) -> str:
    """sha256 of a module's state dict: every entry's name, dtype, shape and bytes, in order."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        value = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()
