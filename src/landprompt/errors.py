"""User-facing errors.

Every error a user can cause (bad bbox, missing weights, a path that is not a cube, ...) is raised as a
:class:`LandpromptError` subclass whose message says what to do. The CLI prints the message on one line
and exits with the error's ``exit_code``.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager


class LandpromptError(Exception):
    """Base class of errors a user can cause and fix."""

    exit_code: int = 1


class BadInputError(LandpromptError, ValueError):
    """An argument or input file is malformed or out of range."""

    exit_code = 2


class MissingWeightsError(LandpromptError, FileNotFoundError):
    """Model weights are not available locally and cannot be downloaded."""

    exit_code = 3


class NotACubeError(BadInputError):
    """A path given as an embedding cube is not one (or is an unsupported format version)."""


class DamagedCubeError(NotACubeError):
    """An embedding cube's chunk or metadata file is missing, truncated or altered."""

    exit_code = 4


class ServiceUnavailableError(LandpromptError):
    """A remote service (a STAC API, a photo source) kept failing after every retry."""

    exit_code = 4


def did_you_mean(
    word: str,
    known: Iterable[str],
    *,
    n: int = 1,
    show: Callable[[str], str] = repr,
    before: str = "; ",
    sentence: bool = False,
) -> str:
    """The hint for a misspelt name: ``"; did you mean 'sits'?"``, or ``""`` when nothing is close.

    Args:
        word: What the user wrote.
        known: The valid names.
        n: Most suggestions.
        show: How a suggestion is written (quoted by default).
        before: Text before the hint.
        sentence: Start the hint with a capital (it follows a full stop).
    """
    close = difflib.get_close_matches(word, list(known), n=n)
    if not close:
        return ""
    return f"{before}{'Did' if sentence else 'did'} you mean {', '.join(map(show, close))}?"


@contextmanager
def about_file(path: str | os.PathLike[str]) -> Iterator[None]:
    """Name ``path`` on an error raised while reading it: its ``filename``, where it has none.

    For a library reader whose errors do not say which file they are about (a JSON or text decode error,
    a codec failure): the command line's one-line message names the file from ``filename``.
    """
    try:
        yield
    except Exception as exc:
        if not isinstance(exc, LandpromptError) and not getattr(exc, "filename", None):
            setattr(exc, "filename", os.fspath(path))  # noqa: B010  (not every exception declares it)
        raise
