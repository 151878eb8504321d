"""QGIS layer style files (``.qml``) for probability COGs: QGIS opens the map already coloured."""

from __future__ import annotations

import os
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from landprompt.files import atomic_path
from landprompt.query.colours import COLORMAP, legend_colours

_QML = """<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22" styleCategories="Symbology">
  <pipe>
    <rasterrenderer type="singlebandpseudocolor" band="1" opacity="1" alphaBand="-1"
                    classificationMin="{vmin}" classificationMax="{vmax}">
      <rastershader>
        <colorrampshader colorRampType="INTERPOLATED" classificationMode="1" clip="0"
                         minimumValue="{vmin}" maximumValue="{vmax}">
{items}
        </colorrampshader>
      </rastershader>
    </rasterrenderer>
  </pipe>
</qgis>
"""


def write_qml(
    path: str | os.PathLike[str],
    cmap: str = COLORMAP,
    vmin: float = 0.0,
    vmax: float = 1.0,
    steps: int = 11,
    scale: float = 1.0,
) -> Path:
    """Write a QGIS pseudocolour style of a one-band map beside it (e.g. ``map.qml`` for ``map.tif``).

    Args:
        path: Output ``.qml`` path (QGIS loads ``<name>.qml`` with ``<name>.tif`` automatically).
        cmap: Matplotlib colormap name.
        vmin: Value of the ramp's first colour.
        vmax: Value of the ramp's last colour.
        steps: Colours on the ramp.
        scale: Stored values per unit (254 for uint8 maps, whose pixels hold ``round(p * 254)``).

    Returns:
        The written path.
    """
    items = "\n".join(
        f"          <item value={quoteattr(f'{v * scale:g}')} color={quoteattr(colour)}"
        f' alpha="255" label={quoteattr(f"{v:.2f}")}/>'
        for colour, v in zip(legend_colours(cmap, steps), np.linspace(vmin, vmax, steps), strict=True)
    )
    text = _QML.format(vmin=f"{vmin * scale:g}", vmax=f"{vmax * scale:g}", items=items)
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
