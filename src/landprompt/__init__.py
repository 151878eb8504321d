"""landprompt: map any concept in plain words from Sentinel-1/2 time series aligned with CLIP.

The names a user needs first are importable from here, as open_clip and TorchGeo expose theirs::

    from landprompt import load_clip, open_cube, probability_map, top_k, write_cog

They are imported on first use, so ``import landprompt`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> module that defines it.
_PUBLIC = {
    "load_clip": "landprompt.embedder.clip",
    "open_cube": "landprompt.embedder.cube",
    "write_cube": "landprompt.embedder.cube",
    "open_session": "landprompt.query.session",
    "probability_map": "landprompt.query.probability",
    "top_k": "landprompt.query.topk",
    "write_cog": "landprompt.query.maps",
    "write_html": "landprompt.query.maps",
    "write_png": "landprompt.query.maps",
}

__all__ = [
    "__version__",
    "load_clip",
    "open_cube",
    "open_session",
    "probability_map",
    "top_k",
    "write_cog",
    "write_cube",
    "write_html",
    "write_png",
]

if TYPE_CHECKING:
    from landprompt.embedder.clip import load_clip
    from landprompt.embedder.cube import open_cube, write_cube
    from landprompt.query.maps import write_cog, write_html, write_png
    from landprompt.query.probability import probability_map
    from landprompt.query.session import open_session
    from landprompt.query.topk import top_k


def __getattr__(name: str) -> Any:
    """Import the public functions on first use, so ``import landprompt`` stays light."""
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'landprompt' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names and the lazily imported public functions (for completion)."""
    return sorted({*globals(), *_PUBLIC})
