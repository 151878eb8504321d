"""Shared fixtures. Heavy imports (torch, open_clip) happen inside fixtures, not at collection."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from landprompt.embedder.clip import ClipModel


@pytest.fixture(scope="session")
def tiny_clip() -> ClipModel:
    """The tiny open_clip architecture (32-d) with seed-0 random weights, on CPU. Do not mutate."""
    from landprompt.embedder.clip import TINY_MODEL, load_clip

    return load_clip(TINY_MODEL, device="cpu")


@pytest.fixture
def hub_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Hugging Face hub in offline mode with an empty cache; returns that cache folder.

    huggingface_hub reads HF_HUB_OFFLINE and the cache path at import, so the module constants are
    patched as well as the environment.
    """
    import huggingface_hub.constants as hf_constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The offline demo, run once: its DemoResult (cube, COG, PNG in a temp folder)."""
    from landprompt.demo import run_demo

    return run_demo(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="session")
def stac_fixture(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """tests/data/stac/data.py run once: a tiny local STAC catalog, the same data as a GeoTIFF stack,
    and the expected monthly composites (a ``StacFixture``). Do not modify the files."""
    import importlib.util
    import sys

    path = Path(__file__).parent / "data" / "stac" / "data.py"
    spec = importlib.util.spec_from_file_location("landprompt_test_stac_data", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.generate(tmp_path_factory.mktemp("stac"))


@pytest.fixture(scope="session")
def eval_data():  # type: ignore[no-untyped-def]
    """tests/data/eval/data.py as a module: ``make_eurosat_ms``, ``make_bigearthnet``, ... generators."""
    import importlib.util
    import sys

    path = Path(__file__).parent / "data" / "eval" / "data.py"
    spec = importlib.util.spec_from_file_location("landprompt_test_eval_data", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def analytics_cubes(tmp_path_factory: pytest.TempPathFactory, tiny_clip: ClipModel):  # type: ignore[no-untyped-def]
    """Planted cubes for the concept analytics (tests/test_analytics*.py), built once.

    48 x 48 pixels of 10 m (UTM 32N), chunks of 16. "olive groves" competes with "sea" (left half) and
    "a forest" (right half), each planted along its dual-basis vector: ``year1`` has olive groves in
    ``LOSS_BLOCK``, ``year2`` in ``GAIN_BLOCK`` instead; ``mixture`` mixes olive groves and sea with a
    random weight per pixel, so its probabilities spread over (0, 1). Row 0 of year1 and mixture and
    column 47 of year2 are no-data. Returns a ``SimpleNamespace`` of the paths, grid, blocks and masks.
    """
    from types import SimpleNamespace

    import numpy as np
    from affine import Affine

    from landprompt.embedder.cube import write_cube
    from landprompt.geo import Grid
    from landprompt.query.probability import concept_embedding

    grid = Grid("EPSG:32632", Affine(10.0, 0, 680_000.0, 0, -10.0, 4_800_000.0), (48, 48))
    names = ("olive groves", "sea", "a forest")
    vectors = np.stack([concept_embedding(tiny_clip, name) for name in names])
    dual = np.linalg.solve(vectors @ vectors.T, vectors)
    dual /= np.linalg.norm(dual, axis=1, keepdims=True)
    rng = np.random.default_rng(11)
    gain_block, loss_block = (slice(8, 16), slice(4, 20)), (slice(30, 36), slice(30, 40))

    def planted(olive: tuple[slice, slice] | None) -> np.ndarray:
        labels = np.where(np.arange(48)[None, :] < 24, 1, 2) * np.ones((48, 1), int)
        if olive is not None:
            labels[olive] = 0
        emb = dual[labels] + rng.normal(0, 0.02, (48, 48, dual.shape[1]))
        return (emb / np.linalg.norm(emb, axis=-1, keepdims=True)).astype(np.float32)

    weight = rng.uniform(0, 1, (48, 48, 1))
    mixture = weight * dual[0] + (1 - weight) * dual[1]
    mixture = (mixture / np.linalg.norm(mixture, axis=-1, keepdims=True)).astype(np.float32)
    valid_a, valid_b = np.ones((48, 48), bool), np.ones((48, 48), bool)
    valid_a[0], valid_b[:, 47] = False, False
    root = tmp_path_factory.mktemp("analytics")
    attrs = {"clip_model": tiny_clip.name, "clip_pretrained": ""}
    cubes = {
        name: write_cube(root / f"{name}.zarr", emb, grid, valid=valid, chunk=16, attrs=attrs)
        for name, emb, valid in (
            ("year1", planted(loss_block), valid_a),
            ("year2", planted(gain_block), valid_b),
            ("mixture", mixture, valid_a),
        )
    }
    return SimpleNamespace(
        **cubes,
        grid=grid,
        concept=names[0],
        versus=list(names[1:]),
        gain_block=gain_block,
        loss_block=loss_block,
        valid_a=valid_a,
        valid_b=valid_b,
        root=root,
    )


@pytest.fixture(scope="session")
def pairs_data():  # type: ignore[no-untyped-def]
    """tests/data/pairs/data.py as a module: generators of YFCC dumps, Flickr recordings and photos."""
    import importlib.util
    import sys

    path = Path(__file__).parent / "data" / "pairs" / "data.py"
    spec = importlib.util.spec_from_file_location("landprompt_test_pairs_data", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def lucas_sample() -> Path:
    """The shared LUCAS 2018 sample table (read in place); skips when ../shared/data is missing."""
    table = Path(__file__).parents[1].parent / "shared" / "data" / "lucas-sample" / "metadata_2018.csv"
    if not table.is_file():
        pytest.skip(f"shared LUCAS sample not found at {table}")
    return table


@pytest.fixture(scope="session")
def planted_pairs_dataset(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A planted pairs dataset (catalog, sample store, photo embeddings) written through landprompt.pairs:
    640 places in 16 latent classes, 3 x 3 chips, 16-d photo embeddings, spatial train/val splits.
    Returns ``(PairsPaths, PlantedPairs)``. Do not modify the files."""
    from landprompt.train.synthetic import planted_pairs, write_planted_pairs

    pairs = planted_pairs(640, classes=16, window=3, dim=16, seed=0)
    return write_planted_pairs(tmp_path_factory.mktemp("planted-pairs"), pairs), pairs


@pytest.fixture(scope="session")
def l2a_fixture(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """tests/data/l2a/data.py run once: one L2A reflectance set as 12-band stacks stored five ways
    (offset-free, GDAL offset tag, baseline 04.00 with STAC items, stackstac descriptions, scale tag)."""
    return _generator("l2a").generate(tmp_path_factory.mktemp("l2a"))


@pytest.fixture(scope="session")
def units_file():  # type: ignore[no-untyped-def]
    """``units_file(folder, name)``: the two aggregate test squares (tests/data/units/data.py)."""
    return _generator("units").units_file


@pytest.fixture(scope="session")
def lucas_columns():  # type: ignore[no-untyped-def]
    """tests/data/lucas_columns/data.py: the documented LUCAS columns of each survey year."""
    return _generator("lucas_columns")


def _generator(name: str):  # type: ignore[no-untyped-def]
    """The module tests/data/NAME/data.py, imported by path (it is no package)."""
    import importlib.util
    import sys

    path = Path(__file__).parent / "data" / name / "data.py"
    spec = importlib.util.spec_from_file_location(f"landprompt_test_{name}_data", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module
