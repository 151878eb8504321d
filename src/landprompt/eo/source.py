"""What every satellite source provides: scenes on a grid, and their monthly composites.

A source (:class:`~landprompt.eo.stac.StacSource`, :class:`~landprompt.eo.local.LocalSource`) reads the
scenes of a year onto a :class:`~landprompt.geo.Grid`; masking and compositing are shared, so two sources
holding the same data give identical composites.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

import xarray as xr

from landprompt.eo.aoi import check_grid
from landprompt.eo.composite import monthly_composites
from landprompt.eo.masks import mask_scenes
from landprompt.geo import Grid


class Scenes(NamedTuple):
    """Per-scene data of one grid, one variable per band name with dims (time, y, x), float32.

    Attributes:
        s2: B2 ... B12 reflectance x 1e4 (baseline offset removed), NaN no data, and the ``SCL``
            classes when the source has them (clouds not yet masked); None without Sentinel-2 data.
        s1: VV, VH in dB, NaN no data; None without Sentinel-1 data.
    """

    s2: xr.Dataset | None
    s1: xr.Dataset | None


class SceneSource(ABC):
    """A source of Sentinel-1/2 scenes; subclasses implement :meth:`scenes`.

    Attributes:
        dilate: Pixels by which SCL cloud/shadow/snow masks grow before compositing.
    """

    dilate: int = 0

    @abstractmethod
    def scenes(self, grid: Grid, year: int, *, force: bool = False) -> Scenes:
        """The scenes of ``year`` read onto ``grid`` (see :class:`Scenes`)."""

    def composite(self, grid: Grid, year: int, *, force: bool = False) -> xr.Dataset:
        """Monthly median composites of ``year`` on ``grid`` (layout: :mod:`landprompt.eo.composite`).

        Args:
            grid: Output grid; its CRS must be projected in metres.
            year: Calendar year (12 monthly steps).
            force: Allow grids over :data:`~landprompt.eo.aoi.MAX_PIXELS` pixels.
        """
        check_grid(grid, force=force)
        s2, s1 = self.scenes(grid, year, force=force)
        if s2 is not None:
            s2 = mask_scenes(s2, dilate=self.dilate)
        return monthly_composites(s2, s1, year, grid)
