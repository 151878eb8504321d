"""The map page of ``landprompt serve``: Leaflet (the copy vendored in ``landprompt/query/assets``).

The page loads Leaflet from the server itself, so it works offline; the OpenStreetMap base map is
added when the browser is online and dropped for a plain background when its tiles fail to load.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

from landprompt.query.colours import legend_colours
from landprompt.serve.layer import NotServedError

_ASSETS = {"leaflet.js": "text/javascript", "leaflet.css": "text/css"}


def asset(name: str) -> tuple[bytes, str]:
    """The bytes and media type of a page asset (only the vendored Leaflet files)."""
    if name not in _ASSETS:
        raise NotServedError(f"no asset named {name!r}")
    return (files("landprompt.query") / "assets" / name).read_bytes(), _ASSETS[name]


def page_html(cubes: list[dict[str, Any]]) -> str:
    """The page, with the served cubes' descriptions and the legend colours filled in."""
    template = (files("landprompt.serve") / "index.html").read_text(encoding="utf-8")
    gradient = ", ".join(legend_colours())
    return template.replace("__CUBES__", json.dumps(cubes)).replace("__GRADIENT__", gradient)
