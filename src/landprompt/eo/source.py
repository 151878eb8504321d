"""What every satellite source provides: scenes on a grid, and their monthly composites.

A source (:class:`~landprompt.eo.stac.StacSource`, :class:`~landprompt.eo.local.LocalSource`) reads the
scenes of a year onto a :class:`~landprompt.geo.Grid`; masking and compositing are shared, so two sources
holding the same data give identical composites.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import NamedTuple

import xarray as xr

from landprompt.eo.aoi import check_grid
from landprompt.eo.bands import SCL_BAND
from landprompt.eo.composite import monthly_composites
from landprompt.eo.masks import mask_scenes
from landprompt.geo import Grid

log = logging.getLogger(__name__)
_noted: set[str] = set()


def note_once(message: str) -> None:
    """Log ``warning: message`` once per process (a run's chunks read the same files again and again)."""
    if message not in _noted:
        _noted.add(message)
        log.warning("warning: %s", message)


def no_cloud_mask_note(label: str, year: int) -> None:
    """The one warning line of a source whose Sentinel-2 scenes have no SCL band."""
    note_once(
        f"{label}: the Sentinel-2 scenes of {year} have no SCL band, so clouds are not masked "
        "(recorded as cloud_mask: none)"
    )


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

    @property
    def label(self) -> str:
        """How messages name this source."""
        return type(self).__name__

    def cloud_mask(self, year: int) -> str:
        """``"SCL"`` when the year's Sentinel-2 scenes carry SCL classes, else ``"none"`` (with a warning)."""
        return "SCL"

    def check_coverage(self, grid: Grid, year: int) -> None:
        """Raise a :class:`~landprompt.errors.BadInputError` if no scene of ``year`` touches ``grid``.

        The default checks nothing (a STAC search with no items is an error of its own).
        """
        return None

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
        mask = "SCL" if s2 is not None and SCL_BAND in s2.data_vars else "none"
        if mask == "none":
            no_cloud_mask_note(self.label, year)
        if s2 is not None:
            s2 = mask_scenes(s2, dilate=self.dilate)
        composite = monthly_composites(s2, s1, year, grid)
        composite.attrs["cloud_mask"] = mask
        return composite
