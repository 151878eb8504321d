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


def open_source(spec: str, dilate: int = 0, l2a_offset: str = "auto") -> SceneSource:
    """The scene source a ``--source`` string names (see :data:`SOURCE_HELP`).

    Args:
        spec: The ``--source`` string.
        dilate: Pixels by which SCL masks grow.
        l2a_offset: ``auto``, ``0`` or ``-1000`` (:mod:`landprompt.eo.l2a`); STAC sources take ``auto``
            only (their items state the processing baseline).

    Raises:
        BadInputError: for anything else, naming the accepted forms.
    """
    key = spec.strip()
    path = Path(key).expanduser()
    if path.exists() and not (path.is_file() and path.suffix == ".json"):
        return LocalSource(path, dilate=dilate, l2a_offset=l2a_offset)
    if str(l2a_offset).strip().lower() != "auto":
        raise BadInputError(
            f"an L2A offset ({l2a_offset}) applies to local stacks; a STAC source ({spec!r}) states each "
            "item's processing baseline, so leave l2a_offset at auto"
        )
    if key.lower() in ("pc", "planetary-computer"):
        return StacSource.planetary_computer(dilate=dilate)
    if key.lower() == "earth-search":
        return StacSource.earth_search(dilate=dilate)
    if key.lower().startswith("stac:"):
        return StacSource(catalog=key[5:], dilate=dilate)
    if path.is_file() and path.suffix == ".json":
        return StacSource(catalog=path, dilate=dilate)
    raise BadInputError(f"unknown source {spec!r}: give {SOURCE_HELP}")
