"""landprompt: map any concept in plain words from Sentinel-1/2 time series aligned with CLIP."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
