"""Data files shipped with :mod:`landprompt.evaluate` (nomenclatures, prompt sets)."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from landprompt.errors import BadInputError


@cache
def packaged_yaml(name: str) -> Any:
    """Parse a YAML file shipped in ``landprompt/evaluate/data`` (``name``: e.g. ``prompts/eurosat.yaml``)."""
    return yaml.safe_load(files("landprompt.evaluate").joinpath("data", name).read_text(encoding="utf-8"))


def read_yaml(path: str | Path) -> Any:
    """Parse a user's YAML file.

    Raises:
        BadInputError: If the file is missing or not valid YAML.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"YAML file not found: {path}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise BadInputError(f"{path} is not valid YAML: {err}") from err
