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
