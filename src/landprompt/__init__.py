"""landprompt: map any concept in plain words from Sentinel-1/2 time series aligned with CLIP."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "open_cube", "open_session", "probability_map", "top_k"]

_PUBLIC = {
    "open_cube": "landprompt.embedder.cube",
    "open_session": "landprompt.query.session",
    "probability_map": "landprompt.query.probability",
    "top_k": "landprompt.query.topk",
}

if TYPE_CHECKING:
    from landprompt.embedder.cube import open_cube
    from landprompt.query.probability import probability_map
    from landprompt.query.session import open_session
    from landprompt.query.topk import top_k


def __getattr__(name: str) -> Any:
    """Import the public functions on first use, so ``import landprompt`` stays light."""
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'landprompt' has no attribute {name!r}")
