"""The package import graph, read statically with ``ast``: no cycle and no import against the flow.

The flow (DESIGN.md): ``pairs / eo -> embedder -> train -> index -> calibration -> query -> evaluate
-> batch / serve / demo -> cli``; shared helpers (``errors``, ``files``, ``geo``, ``checks``, ...) may be
imported by all and import no stage. Every import counts, also one inside a function or under
``TYPE_CHECKING``: a lazy import still ties the two modules together. The package root
(``landprompt/__init__.py``) is the public facade: it may name any stage (lazily), so its own imports
are not edges; importing ``landprompt`` (for ``__version__``) is allowed everywhere. No module imports
another module's ``_private`` names: what two modules share is public in one of them.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import pytest

import landprompt

ROOT = Path(landprompt.__file__).parent

#: Layer of each top-level package or module of ``landprompt``: a module may import its own layer's
#: modules or lower ones. Shared helpers are layer 0.
LAYERS = {
    **dict.fromkeys(
        ["errors", "files", "geo", "checks", "retry", "distributed", "examples", "schema", "progress"], 0
    ),
    "eo": 1,
    "pairs": 1,
    "embedder": 2,
    "train": 3,
    "index": 4,
    "calibration": 5,
    "query": 6,
    "evaluate": 7,
    **dict.fromkeys(["batch", "serve", "demo"], 8),
    "cli": 9,
}

#: Imports against the flow that are known and still to be removed (issue 15): (importer, imported).
KNOWN_AGAINST_FLOW: set[tuple[str, str]] = set()

#: Private names still imported across modules (issue 15): ``module._name`` -> the importers. The query
#: scoring modules are being merged into one scoring path (issue 15), which makes this one go.
KNOWN_PRIVATE_IMPORTS: dict[str, set[str]] = {}


def module_name(path: Path) -> str:
    """``landprompt.a.b`` of a source file (a package's ``__init__`` is the package)."""
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(source: str, package: str) -> set[str]:
    """Every ``landprompt`` name a module's source imports, anywhere in it (relative imports resolved).

    Args:
        source: Python source.
        package: The package the module is in (``landprompt.query`` for ``landprompt/query/x.py``).
    """
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = source_module(node, package)
            # `from a import b` imports module a.b when b is a module, else a name of a
            names.update(f"{module}.{alias.name}" for alias in node.names)
            names.add(module)
    return {name for name in names if name == "landprompt" or name.startswith("landprompt.")}


def source_module(node: ast.ImportFrom, package: str) -> str:
    """The absolute module a ``from ... import`` reads (relative ones resolved against ``package``)."""
    parts = package.split(".")
    base = parts[: len(parts) - node.level + 1] if node.level else []
    return ".".join([*base, *([node.module] if node.module else [])])


def private_imports(source: str, package: str) -> set[str]:
    """``module._name`` for every private name a module's source imports from a ``landprompt`` module.

    A name is private when it starts with one underscore (dunders such as ``__version__`` are public).
    """
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            module = source_module(node, package)
            if module == "landprompt" or module.startswith("landprompt."):
                found.update(
                    f"{module}.{alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                )
        elif isinstance(node, ast.Import):
            found.update(
                alias.name
                for alias in node.names
                if alias.name.startswith("landprompt.")
                and any(p.startswith("_") and not p.startswith("__") for p in alias.name.split("."))
            )
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of the package it imports (the root facade's own imports left out)."""
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        if name == "landprompt":
            graph[name] = set()
            continue
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = {t for t in imported_names(path.read_text(encoding="utf-8"), package) if t in modules}
        graph[name] = {t for t in targets if t != name}
    return graph


def stage(module: str) -> str:
    """The top-level package or module a module belongs to (``landprompt`` for the root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "landprompt"


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(component)
    return found


def edges(graph: dict[str, set[str]]) -> Iterable[tuple[str, str]]:
    """Every (importer, imported) pair."""
    return ((a, b) for a, targets in graph.items() for b in targets)


GRAPH = import_graph()


def test_every_stage_has_a_layer() -> None:
    stages = {stage(m) for m in GRAPH} - {"landprompt"}
    assert stages - LAYERS.keys() == set(), "place the new package in LAYERS (the flow) of this test"


def test_no_import_against_the_flow() -> None:
    against = {
        (a, b) for a, b in edges(GRAPH) if stage(b) != "landprompt" and LAYERS[stage(b)] > LAYERS[stage(a)]
    }
    assert against - KNOWN_AGAINST_FLOW == set(), "these imports go against the flow"
    assert KNOWN_AGAINST_FLOW - against == set(), "fixed: remove them from KNOWN_AGAINST_FLOW"


def test_shared_helpers_import_no_stage() -> None:
    shared = {s for s, layer in LAYERS.items() if layer == 0}
    assert {(a, b) for a, b in edges(GRAPH) if stage(a) in shared and LAYERS.get(stage(b), 0) > 0} == set()


def test_no_cycle_between_stages() -> None:
    stages: dict[str, set[str]] = defaultdict(set)
    for a, b in edges(GRAPH):
        if stage(a) != stage(b) and "landprompt" not in (stage(a), stage(b)):
            stages[stage(a)].add(stage(b))
    graph = {s: stages.get(s, set()) for s in {stage(m) for m in GRAPH}}
    assert cycles(graph) == []


def test_no_module_imports_another_modules_private_names() -> None:
    found: dict[str, set[str]] = defaultdict(set)
    for path in ROOT.rglob("*.py"):
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for private in private_imports(path.read_text(encoding="utf-8"), package):
            found[private].add(name)
    new = {k: v - KNOWN_PRIVATE_IMPORTS.get(k, set()) for k, v in found.items()}
    assert {k: v for k, v in new.items() if v} == {}, "make them public, or move the code that needs them"
    fixed = {k: v - found.get(k, set()) for k, v in KNOWN_PRIVATE_IMPORTS.items()}
    assert {k: v for k, v in fixed.items() if v} == {}, "fixed: remove them from KNOWN_PRIVATE_IMPORTS"


def test_the_private_import_reader_finds_private_names() -> None:
    source = """
from landprompt.eo.stac import _matches, open_catalog
from .report import _table
from landprompt import __version__
from numpy import _private_numpy_name
import landprompt.query._hidden
"""
    assert private_imports(source, "landprompt.evaluate") == {
        "landprompt.eo.stac._matches",
        "landprompt.evaluate.report._table",
        "landprompt.query._hidden",
    }


def test_no_cycle_between_modules() -> None:
    assert cycles(GRAPH) == [], "these modules import each other"


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [{"a", "b", "c"}]),
        ({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c"}}, [{"a", "b"}, {"c", "d"}]),
    ],
)
def test_the_cycle_finder_finds_cycles(graph: dict[str, set[str]], expected: list[set[str]]) -> None:
    assert sorted(cycles(graph), key=sorted) == expected


def test_the_reader_finds_relative_lazy_and_type_only_imports() -> None:
    source = """
import numpy
from typing import TYPE_CHECKING
from landprompt import errors
from . import maps
from ..embedder.cube import open_cube
if TYPE_CHECKING:
    from landprompt.embedder.clip import ClipModel
def f():
    import landprompt.index.search
"""
    names = imported_names(source, "landprompt.query")
    assert {
        "landprompt.errors",
        "landprompt.query.maps",
        "landprompt.embedder.cube",
        "landprompt.embedder.clip",
        "landprompt.index.search",
    } <= names
    assert not any(name.startswith(("numpy", "typing")) for name in names)
    assert ("landprompt.query.scorer", "landprompt.calibration") in set(edges(GRAPH))
