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
