"""The pairs steps' progress bar: :func:`landprompt.progress.progress_bar` (kept for ``pairs/photos.py``)."""

from landprompt.progress import progress_bar

__all__ = ["progress_bar"]
