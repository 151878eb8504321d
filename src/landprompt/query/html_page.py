"""A self-contained Leaflet page: the map overlay, legend and title work offline.

Leaflet's script and style sheet (vendored in ``landprompt/query/assets``, BSD-2-Clause) are inlined,
and the overlay is a PNG data URI, so the page needs no network; the OpenStreetMap base map loads
only where there is one (offline its tiles just stay blank).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from importlib.resources import files

#: Leaflet release vendored in ``assets/``.
LEAFLET_VERSION = "1.9.4"
_OSM_TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
_OSM_ATTRIBUTION = "&copy; OpenStreetMap contributors"

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="landprompt {version}">
{meta}<title>{title}</title>
<style>{leaflet_css}</style>
<style>
html, body, #map {{ height: 100%; margin: 0; }}
.lp-box {{ background: rgba(255,255,255,0.9); padding: 4px 8px; border-radius: 4px; font: 13px sans-serif; }}
.lp-title {{ font-weight: bold; font-size: 15px; }}
.lp-bar {{ width: 180px; height: 12px; background: linear-gradient(to right, {gradient}); }}
.lp-ticks {{ display: flex; justify-content: space-between; }}
</style>
<script>{leaflet_js}</script>
</head>
<body>
<div id="map"></div>
<script>
var map = L.map("map", {{zoomSnap: 0.25}});
var base = L.tileLayer({tiles}, {{maxZoom: 19, attribution: {attribution}}}).addTo(map);
var overlay = L.imageOverlay({image}, {bounds}, {{opacity: 0.8, className: "lp-overlay"}}).addTo(map);
L.control.layers({{"OpenStreetMap": base}}, {{{label}: overlay}}, {{collapsed: false}}).addTo(map);
L.control.scale().addTo(map);
var title = L.control({{position: "topright"}});
title.onAdd = function () {{
  var div = L.DomUtil.create("div", "lp-box lp-title"); div.textContent = {label}; return div;
}};
title.addTo(map);
var legend = L.control({{position: "bottomleft"}});
legend.onAdd = function () {{
  var div = L.DomUtil.create("div", "lp-box lp-legend");
  div.innerHTML = '<div>' + {caption} + '</div><div class="lp-bar"></div>'
    + '<div class="lp-ticks"><span>0</span><span>0.5</span><span>1</span></div>';
  return div;
}};
legend.addTo(map);
map.fitBounds(overlay.getBounds());
</script>
</body>
</html>
"""


def _asset(name: str) -> str:
    return (files("landprompt.query") / "assets" / name).read_text(encoding="utf-8")


def leaflet_page(
    title: str,
    image_uri: str,
    bounds: list[list[float]],
    colours: list[str],
    caption: str = "probability",
    meta: Mapping[str, str] | None = None,
) -> str:
    """The HTML of an offline map page.

    Args:
        title: Page and map title.
        image_uri: The overlay, a ``data:image/png;base64,...`` URI in Web Mercator.
        bounds: Leaflet bounds ``[[south, west], [north, east]]`` of the overlay.
        colours: Colours (``#rrggbb``) of the legend, from 0 to 1.
        caption: Legend caption.
        meta: ``<meta name=... content=...>`` tags of the page head (e.g. provenance).

    Returns:
        The page, with Leaflet inlined.
    """
    from landprompt import __version__

    return _PAGE.format(
        version=__version__,
        meta="".join(
            f'<meta name="{html.escape(k)}" content="{html.escape(v)}">\n' for k, v in (meta or {}).items()
        ),
        title=html.escape(title),
        leaflet_css=_asset("leaflet.css"),
        leaflet_js=_asset("leaflet.js").replace("</script", "<\\/script"),
        gradient=", ".join(colours),
        bounds=json.dumps(bounds),
        tiles=json.dumps(_OSM_TILES),
        attribution=json.dumps(_OSM_ATTRIBUTION),
        image=json.dumps(image_uri),
        label=json.dumps(title),
        caption=json.dumps(html.escape(caption)),
    )
