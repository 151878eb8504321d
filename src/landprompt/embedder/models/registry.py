"""Encoder registry, in the manner of timm's ``register_model`` / ``create_model``.

Factories are registered by name with :func:`register_encoder`; :func:`create_encoder` builds one and
records its name and arguments on the encoder, so that a checkpoint can say how to rebuild it.

Every factory takes a keyword ``pretrained: bool = True``: whether to fetch the initial weights its other
arguments name (Presto weights, a CLIP tag). Loading a checkpoint builds with ``pretrained=False`` and then
loads the checkpoint's weights.

Example:
    >>> list_encoders()  # doctest: +SKIP
    ['clip_rgb', 'sits']
    >>> encoder = create_encoder("sits", clip_dim=512, pool_size=5)  # doctest: +SKIP
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from landprompt.embedder.models.base import Encoder, to_jsonable
from landprompt.errors import BadInputError, did_you_mean

EncoderFactory = Callable[..., Encoder]
_F = TypeVar("_F", bound=EncoderFactory)

_REGISTRY: dict[str, EncoderFactory] = {}
_BUILTIN_MODULES = ("landprompt.embedder.models.sits", "landprompt.embedder.models.clip_rgb")


def register_encoder(name: str) -> Callable[[_F], _F]:
    """Register an encoder factory under ``name`` (decorator).

    The factory must take a ``pretrained`` keyword and return an :class:`Encoder`.

    Raises:
        ValueError: If the name is taken or the factory takes no ``pretrained`` keyword.
    """

    def decorator(factory: _F) -> _F:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"an encoder named {name!r} is already registered")
        if "pretrained" not in inspect.signature(factory).parameters:
            raise ValueError(f"encoder factory {name!r} must take a 'pretrained' keyword")
        _REGISTRY[name] = factory
        return factory

    return decorator


def list_encoders(pattern: str | None = None) -> list[str]:
    """Sorted names of the registered encoders, optionally filtered by a shell-style ``pattern``."""
    _import_builtins()
    names = sorted(_REGISTRY)
    return names if pattern is None else fnmatch.filter(names, pattern)


def is_encoder(name: str) -> bool:
    """Whether ``name`` is a registered encoder."""
    _import_builtins()
    return name in _REGISTRY


def encoder_factory(name: str) -> EncoderFactory:
    """The factory registered under ``name``.

    Raises:
        BadInputError: If no encoder has that name; the message lists the names.
    """
    _import_builtins()
    if name not in _REGISTRY:
        hint = did_you_mean(name, _REGISTRY, before=" ", sentence=True)
        raise BadInputError(
            f"unknown encoder {name!r}; registered encoders: {', '.join(sorted(_REGISTRY))}.{hint}"
        )
    return _REGISTRY[name]


def create_encoder(name: str, **kwargs: Any) -> Encoder:
    """Build the encoder registered under ``name``.

    Args:
        name: Registered name (see :func:`list_encoders`).
        **kwargs: Arguments of the factory; ``pretrained=False`` skips fetching initial weights.

    Returns:
        The encoder (on the CPU, in training mode, like a freshly built module), with ``registry_name``
        and ``arguments`` (the factory's arguments with defaults filled in, ``pretrained`` left out) set.

    Raises:
        BadInputError: If the name is unknown or an argument is not one the factory takes.
    """
    factory = encoder_factory(name)
    signature = inspect.signature(factory)
    try:
        bound = signature.bind(**kwargs)
    except TypeError as err:
        accepted = ", ".join(p for p in signature.parameters if p != "pretrained")
        raise BadInputError(f"encoder {name!r}: {err}; it takes {accepted} and pretrained") from err
    bound.apply_defaults()
    encoder = factory(**kwargs)
    if not isinstance(encoder, Encoder):
        raise TypeError(f"encoder factory {name!r} returned {type(encoder).__name__}, not an Encoder")
    arguments = {key: value for key, value in bound.arguments.items() if key != "pretrained"}
    encoder.registry_name = name
    encoder.arguments = to_jsonable({**arguments, **encoder.resolved_arguments()})
    return encoder


def _import_builtins() -> None:
    """Import the modules whose factories register the built-in encoders."""
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
