"""Generator of the polygon units for aggregate tests: two squares in UTM 32N inside the planted cubes.

'north' covers rows 0-9 and 'south' rows 20-29, cols 0-9 of a 10 m grid at (680000, 4800000); each carries
an id field ``NUTS_ID`` and a second field ``NAME`` (what ``aggregate --keep-fields`` keeps).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

X0, Y0 = 680_000.0, 4_800_000.0
CRS = "EPSG:32632"


def _square(v0: float) -> dict[str, Any]:
    ring = [[X0 + 3, Y0 - v0], [X0 + 97, Y0 - v0], [X0 + 97, Y0 - v0 - 94], [X0 + 3, Y0 - v0 - 94]]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


def units_file(folder: Path, name: str = "regions.geojson") -> Path:
    """Write the two squares as a GeoJSON FeatureCollection named ``name`` in ``folder``."""
    features = [
        {"type": "Feature", "properties": {"NUTS_ID": unit, "NAME": unit.title()}, "geometry": _square(v0)}
        for unit, v0 in (("north", 3), ("south", 203))
    ]
    crs = {"type": "name", "properties": {"name": CRS}}
    path = Path(folder) / name
    path.write_text(json.dumps({"type": "FeatureCollection", "crs": crs, "features": features}))
    return path
