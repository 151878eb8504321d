"""The colours of probability maps: one colour map (matplotlib's), one lookup table, one legend ramp.

PNG quicklooks, HTML pages, QGIS styles, the tiles and page of ``landprompt serve`` all take their
colours from matplotlib's colour map (:data:`COLORMAP`, magma): HTML overlays and tiles colour a
probability ``p`` as ``colour_lut(cmap)[round(p * 255)]`` (:func:`probability_rgba`), and every legend
and QGIS ramp is drawn from :func:`legend_colours`.
"""

from __future__ import annotations

from functools import cache

import numpy as np

#: The colour map of probability maps.
COLORMAP = "magma"


@cache
def colour_lut(cmap: str = COLORMAP) -> np.ndarray:
    """RGBA uint8 [256, 4] of a matplotlib colour map at 0, 1/255, ..., 1 (read-only)."""
    from matplotlib import colormaps

    lut = np.asarray(colormaps[cmap](np.linspace(0, 1, 256), bytes=True), dtype=np.uint8)
    lut.flags.writeable = False
    return lut


def probability_rgba(values: np.ndarray, cmap: str = COLORMAP) -> np.ndarray:
    """Colour probabilities [..] in [0, 1] into RGBA uint8 [.., 4]; NaN becomes transparent black."""
    finite = np.isfinite(values)
    index = np.rint(np.clip(np.where(finite, values, 0), 0, 1) * 255).astype(np.uint8)
    rgba = colour_lut(cmap)[index]
    rgba[~finite] = 0
    return rgba


def legend_colours(cmap: str = COLORMAP, steps: int = 11) -> list[str]:
    """``#rrggbb`` of the colour map at ``steps`` evenly spaced values from 0 to 1 (legends, ramps)."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    return [to_hex(colormaps[cmap](t)) for t in np.linspace(0, 1, steps)]
