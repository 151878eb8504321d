"""User-facing errors.

Every error a user can cause (bad bbox, missing weights, a path that is not a cube, ...) is raised as a
:class:`LandpromptError` subclass whose message says what to do. The CLI prints the message on one line
and exits with the error's ``exit_code``.
"""

from __future__ import annotations


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
