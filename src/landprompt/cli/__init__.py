"""The ``landprompt`` command line (Typer); :data:`app` is the entry point."""

from landprompt.cli.main import app

__all__ = ["app"]
