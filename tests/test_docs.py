"""The docs' examples stay true: the batch block validates, Python blocks import real names, public ones."""

from __future__ import annotations

import ast
import importlib
import re
import textwrap
from pathlib import Path

import pytest
import yaml

import landprompt
from landprompt.batch.spec import parse_batch

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def fenced(text: str, language: str) -> list[str]:
    """The fenced blocks of ``language`` in Markdown text, dedented (blocks inside list items too)."""
    pattern = rf"^( *)```{language}\n(.*?)^\1```$"
    return [textwrap.dedent(m.group(2)) for m in re.finditer(pattern, text, re.MULTILINE | re.DOTALL)]


def test_the_analytics_batch_block_validates() -> None:
    text = (ROOT / "docs" / "analytics.md").read_text()
    block = fenced(text[text.index("## Batch jobs") :], "yaml")[0]
    spec = parse_batch(yaml.safe_load(block))
    assert spec.kind == "aggregate" and spec.id_field == "NUTS_ID"
    assert spec.units == Path("NUTS_RG_01M_2021_3035.geojson") and spec.cube == Path("cubes/2024.zarr")
    assert [c.prompt for c in spec.concepts] == ["hedgerows", "olive groves"]
    defaults = spec.defaults
    assert (
        defaults.threshold == 0.5 and defaults.formats == ["csv", "geojson"] and defaults.calibrated is True
    )
    assert defaults.versus == ["arable land", "pasture", "forest"]


def _imports(path: Path) -> list[tuple[str, str]]:
    """``(module, name)`` of every ``from landprompt... import name`` in the file's Python blocks."""
    found = []
    for block in fenced(path.read_text(), "python"):
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "landprompt":
                found += [(node.module or "", alias.name) for alias in node.names]
    return found


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_python_examples_import_names_that_exist_by_their_public_path(path: Path) -> None:
    imports = _imports(path)
    missing = [f"{m}.{n}" for m, n in imports if not hasattr(importlib.import_module(m), n)]
    assert missing == [], f"{path.name} imports names that do not exist"
    long_paths = [f"{m}.{n}" for m, n in imports if m != "landprompt" and n in landprompt.__all__]
    assert long_paths == [], f"{path.name}: import these from landprompt"


def test_the_docs_have_python_examples() -> None:
    assert {p.name for p in DOCS if _imports(p)} >= {"README.md", "analytics.md", "evaluation.md"}
