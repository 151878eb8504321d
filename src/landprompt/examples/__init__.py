"""Example files shipped with the package: a batch-export YAML and a training configuration.

``landprompt query export --example`` and ``landprompt train --example`` print them; the repository's
``examples/batch_maps.yaml`` and ``configs/train_example.yaml`` are links to these files.
"""

from __future__ import annotations

from importlib.resources import files

#: Example name -> file in this package.
EXAMPLES = {"batch": "batch_maps.yaml", "train": "train_example.yaml"}


def example_text(name: str) -> str:
    """The text of a shipped example (``batch`` or ``train``)."""
    return (files(__name__) / EXAMPLES[name]).read_text(encoding="utf-8")
