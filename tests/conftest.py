"""Shared fixtures. Heavy imports (torch, open_clip) happen inside fixtures, not at collection."""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from threadpoolctl import threadpool_limits

if TYPE_CHECKING:
    from landprompt.embedder.clip import ClipModel

# One OpenMP/BLAS thread per test process. The test models and arrays are tiny, so threads gain nothing,
# and on a busy machine (or beside a second pytest-xdist worker) idle OpenMP threads spin for the CPU:
# 2 threads measured 4x the CPU time of 1 on the embed-run tests. The variables reach torch and faiss,
# which load later, and the subprocesses the tests start; numpy's BLAS is already loaded (by zarr's
# pytest plugin), so threadpoolctl limits it. Set OMP_NUM_THREADS yourself to test with more threads.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
threadpool_limits(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True, scope="session")
def one_click_command_per_app() -> Iterator[None]:
    """typer's ``CliRunner.invoke`` rebuilds the whole click command tree from the Typer app at every call
    (0.2 s for landprompt's, two thirds of a typical failing command); build it once per app, as the
    ``landprompt`` entry point does once per process. Apps are kept by identity, so a test's own app is
    built for itself."""
    import typer.testing

    build = typer.testing._get_command
    built: dict[typer.Typer, Any] = {}

    def get_command(app: typer.Typer) -> Any:
        if app not in built:
            built[app] = build(app)
        return built[app]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(typer.testing, "_get_command", get_command)
        yield


@pytest.fixture(scope="session", autouse=True)
def prompt_cache_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Encoded prompts are kept on disk in a folder of the test session, not the user's cache."""
    from landprompt.query.prompt_cache import CACHE_ENV

    folder = tmp_path_factory.mktemp("landprompt-cache")
    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(folder)
    yield folder
    if before is None:
        del os.environ[CACHE_ENV]
    else:
        os.environ[CACHE_ENV] = before


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
    return load_generator("stac").generate(tmp_path_factory.mktemp("stac"))


@pytest.fixture(scope="session")
def eval_data():  # type: ignore[no-untyped-def]
    """tests/data/eval/data.py as a module: ``make_eurosat_ms``, ``make_bigearthnet``, ... generators."""
    return load_generator("eval")


@pytest.fixture(scope="session")
def cube_data():  # type: ignore[no-untyped-def]
    """tests/data/cube/data.py as a module: planted-cube helpers and generators."""
    return load_generator("cube")


@pytest.fixture(scope="session")
def unit(cube_data):  # type: ignore[no-untyped-def]
    """``unit(x)``: ``x`` scaled to unit length along the last axis, float32 (tests/data/cube/data.py)."""
    return cube_data.unit


@pytest.fixture(scope="session")
def analytics_cubes(  # type: ignore[no-untyped-def]
    tmp_path_factory: pytest.TempPathFactory, tiny_clip: ClipModel, cube_data
):
    """Planted cubes for the concept analytics (tests/test_analytics*.py), built once: see
    ``analytics_cubes`` in tests/data/cube/data.py."""
    return cube_data.analytics_cubes(tmp_path_factory.mktemp("analytics"), tiny_clip)


@pytest.fixture(scope="session")
def pairs_data():  # type: ignore[no-untyped-def]
    """tests/data/pairs/data.py as a module: generators of YFCC dumps, Flickr recordings and photos."""
    return load_generator("pairs")


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
    return load_generator("l2a").generate(tmp_path_factory.mktemp("l2a"))


@pytest.fixture(scope="session")
def units_file():  # type: ignore[no-untyped-def]
    """``units_file(folder, name)``: the two aggregate test squares (tests/data/units/data.py)."""
    return load_generator("units").units_file


@pytest.fixture(scope="session")
def lucas_columns():  # type: ignore[no-untyped-def]
    """tests/data/lucas_columns/data.py: the documented LUCAS columns of each survey year."""
    return load_generator("lucas_columns")


@cache
def load_generator(name: str):  # type: ignore[no-untyped-def]
    """The module tests/data/NAME/data.py, imported by path (it is no package), once per session."""
    import importlib.util
    import sys

    path = Path(__file__).parent / "data" / name / "data.py"
    spec = importlib.util.spec_from_file_location(f"landprompt_test_{name}_data", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module
