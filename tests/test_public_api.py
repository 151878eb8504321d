"""The public facade: the first names a user needs import from ``landprompt``, lazily, as the same objects."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import landprompt

#: The long path of each short name (the one the README used before).
LONG_PATHS = [
    "landprompt.embedder.clip.load_clip",
    "landprompt.embedder.cube.open_cube",
    "landprompt.embedder.cube.write_cube",
    "landprompt.query.session.open_session",
    "landprompt.query.probability.probability_map",
    "landprompt.query.topk.top_k",
    "landprompt.query.maps.write_cog",
    "landprompt.query.maps.write_png",
    "landprompt.query.maps.write_html",
]
PUBLIC = dict(reversed(path.rsplit(".", 1)) for path in LONG_PATHS)


@pytest.mark.parametrize(("name", "module"), sorted(PUBLIC.items()))
def test_each_public_name_is_the_function_of_its_module(name: str, module: str) -> None:
    short = getattr(landprompt, name)
    assert short is getattr(importlib.import_module(module), name)
    assert callable(short) and short.__module__ == module
    namespace: dict[str, object] = {}
    exec(f"from landprompt import {name}", namespace)  # the form the README uses
    assert namespace[name] is short


def test_all_and_dir_list_exactly_the_public_names() -> None:
    assert set(landprompt.__all__) == {"__version__", *PUBLIC} == {"__version__", *landprompt._PUBLIC}
    assert set(PUBLIC) <= set(dir(landprompt))


def test_an_unknown_name_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'probability_maps'"):
        landprompt.probability_maps  # noqa: B018


def test_importing_the_package_imports_no_stage() -> None:
    heavy = "m.startswith('landprompt.') or m in ('torch', 'open_clip', 'xarray')"
    code = f"import sys, landprompt; print(sorted(m for m in sys.modules if {heavy}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


#: Helpers moved below the query session (issue 15, no import cycle): old path -> the module they live in.
MOVED = {
    "landprompt.query.probability": (
        "landprompt.query.classes",
        [
            "DEFAULT_STYLE",
            "background_embeddings",
            "class_matrix",
            "clip_for_cube",
            "concept_embedding",
            "concept_probability",
            "default_vocabulary",
            "resolve_logit_scale",
            "unit_rows",
        ],
    ),
    "landprompt.query.topk": (
        "landprompt.query.search",
        ["PLACE_COLUMNS", "PlaceTable", "query_embedding", "resolve_index", "search_top_k", "spatial_nms"],
    ),
}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_moved_helpers_still_import_from_their_old_module(old: str) -> None:
    new, names = MOVED[old]
    old_module, new_module = importlib.import_module(old), importlib.import_module(new)
    for name in names:
        assert getattr(old_module, name) is getattr(new_module, name), name
        assert name in old_module.__all__
