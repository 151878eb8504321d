"""Data files shipped with :mod:`landprompt.evaluate` (nomenclatures, prompt sets)."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any

import yaml


@cache
def packaged_yaml(name: str) -> Any:
    """Parse a YAML file shipped in ``landprompt/evaluate/data`` (``name``: e.g. ``prompts/eurosat.yaml``)."""
    return yaml.safe_load(files("landprompt.evaluate").joinpath("data", name).read_text(encoding="utf-8"))
