"""Turn a ``--source`` string into a scene source."""

from __future__ import annotations

from pathlib import Path

from landprompt.eo.local import LocalSource
from landprompt.eo.source import SceneSource
from landprompt.eo.stac import StacSource
from landprompt.errors import BadInputError

SOURCE_HELP = (
    "'pc' (Planetary Computer), 'earth-search', 'stac:URL' (any STAC API), a static STAC catalog.json, "
    "or a local stack (a folder of s2_/s1_YYYYMMDD.tif, a .zarr or .nc scene cube)"
)


def open_source(spec: str, dilate: int = 0) -> SceneSource:
    """The scene source a ``--source`` string names (see :data:`SOURCE_HELP`).

    Raises:
        BadInputError: for anything else, naming the accepted forms.
    """
    key = spec.strip()
    if key.lower() in ("pc", "planetary-computer"):
        return StacSource.planetary_computer(dilate=dilate)
    if key.lower() == "earth-search":
        return StacSource.earth_search(dilate=dilate)
    if key.lower().startswith("stac:"):
        return StacSource(catalog=key[5:], dilate=dilate)
    path = Path(key).expanduser()
    if path.is_file() and path.suffix == ".json":
        return StacSource(catalog=path, dilate=dilate)
    if path.exists():
        return LocalSource(path, dilate=dilate)
    raise BadInputError(f"unknown source {spec!r}: give {SOURCE_HELP}")
