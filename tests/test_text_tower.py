"""The text tower of a cube's queries: what it reads from the prompt cache on disk, and how often."""

import numpy as np
import pytest
from affine import Affine

from landprompt.embedder.cube import open_cube, write_cube
from landprompt.geo import Grid
from landprompt.query import prompt_cache
from landprompt.query import text as text_module
from landprompt.query.text import TextTower

GRID = Grid(3035, Affine(10.0, 0.0, 4_000_000.0, 0.0, -10.0, 3_000_000.0), (8, 8))


@pytest.fixture
def tiny_cube(tmp_path, monkeypatch):
    """A cube naming the tiny CLIP model (random weights), and an empty prompt cache folder."""
    from landprompt.embedder.clip import TINY_MODEL

    monkeypatch.setenv(prompt_cache.CACHE_ENV, str(tmp_path / "cache"))
    emb = np.random.default_rng(0).normal(size=(*GRID.shape, 32)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
    return write_cube(tmp_path / "t.zarr", emb, GRID, chunk=8, attrs={"clip_model": TINY_MODEL})


def test_the_model_facts_are_read_from_disk_once_a_tower(tiny_cube, monkeypatch):
    first = TextTower(open_cube(tiny_cube))
    _, _, _, scale = first.classes(["olive groves"], ["water", "towns"])  # loads the model, stores its facts
    reads = []
    load = prompt_cache.load_facts
    monkeypatch.setattr(prompt_cache, "load_facts", lambda attrs: (reads.append(1), load(attrs))[1])
    monkeypatch.setattr(text_module, "clip_for_cube", lambda *a: pytest.fail("text tower loaded"))
    tower = TextTower(open_cube(tiny_cube))  # another process: prompts and facts from disk
    for _ in range(3):
        assert tower.classes(["olive groves"], ["water", "towns"])[3] == scale
        assert tower.settings("olive groves", ["water", "towns"], "ground", scale).clip == first.facts.id
    assert reads == [1] and tower.loaded is None
