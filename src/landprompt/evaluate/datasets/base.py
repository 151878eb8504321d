"""The common benchmark interface: samples with labels, a deterministic order and stratified subsets.

A :class:`Benchmark` is a list of :class:`Sample` s over a fixed class list. Raster benchmarks
(:class:`RasterBenchmark`) also load a sample's input: a 12-month composite in the layout of
:mod:`landprompt.embedder.models.base` or, for JPEG benchmarks, a PIL image. Single-date benchmarks fill
only the acquisition month of the composite and leave the other eleven months NaN (missing), so a
time-series encoder sees one step at the right month (:func:`single_date_composite`).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
import xarray as xr
from PIL import Image

from landprompt.embedder.models.base import S1_BANDS, S2_BANDS
from landprompt.errors import BadInputError
from landprompt.geo import Grid

MONTHS = 12


@dataclass(frozen=True)
class Sample:
    """One benchmark sample.

    Attributes:
        id: Stable identifier (file stem, patch name, LUCAS point id).
        labels: Indices into the benchmark's classes (exactly one for single-label benchmarks).
        path: File or folder the sample is read from.
        location: (lon, lat) in degrees for point benchmarks, else None.
    """

    id: str
    labels: tuple[int, ...]
    path: Path
    location: tuple[float, float] | None = None


@dataclass(frozen=True)
class SampleInput:
    """What an encoder eats for one sample: a composite with pixel lat/lon, or an RGB image."""

    composite: xr.Dataset | None = None
    latlon: np.ndarray | None = None
    image: Image.Image | None = None


class Benchmark(ABC):
    """A labelled benchmark: classes, samples in a deterministic order, reader settings.

    Args:
        root: Where the data was read from.
        classes: Class keys, in class-index order (folder names, 19-class names, LUCAS letters).
        samples: The samples, in a deterministic order.
        class_names: Display names of the classes (default: the keys).
    """

    name: ClassVar[str]
    multilabel: ClassVar[bool] = False

    def __init__(
        self,
        root: Path,
        classes: Sequence[str],
        samples: Sequence[Sample],
        class_names: Sequence[str] | None = None,
    ) -> None:
        self.root = root
        self.classes = tuple(classes)
        self.class_names = tuple(class_names or classes)
        self.samples = list(samples)
        self.available = len(self.samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def settings(self) -> dict[str, Any]:
        """Reader settings recorded in reports (none by default)."""
        return {}

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable summary: name, root, classes, sample counts, settings."""
        counts = self.label_matrix().sum(axis=0)
        return {
            "name": self.name,
            "root": str(self.root),
            "multilabel": self.multilabel,
            "classes": list(self.classes),
            "samples_available": self.available,
            "samples": len(self),
            "samples_per_class": {c: int(n) for c, n in zip(self.classes, counts, strict=True)},
            "settings": self.settings(),
        }

    def label_matrix(self) -> np.ndarray:
        """Labels as a bool matrix [samples, classes]."""
        matrix = np.zeros((len(self), len(self.classes)), dtype=bool)
        for i, sample in enumerate(self.samples):
            matrix[i, list(sample.labels)] = True
        return matrix

    def targets(self) -> np.ndarray:
        """The class index of every sample, int64 [samples] (single-label benchmarks)."""
        if self.multilabel:
            raise BadInputError(f"{self.name} is multi-label: use label_matrix(), not targets()")
        return np.array([s.labels[0] for s in self.samples], dtype=np.int64)

    def limit(self, n: int | None, seed: int = 0) -> Self:
        """A copy with ``n`` samples drawn at random within classes, in proportion to class sizes.

        Multi-label samples are stratified by their rarest label. The drawn samples keep the
        benchmark's order; the same ``n`` and ``seed`` always draw the same samples.

        Args:
            n: Samples to keep; None (or at least ``len(self)``) keeps them all.
            seed: Seed of the draw.

        Raises:
            BadInputError: If ``n`` is not positive.
        """
        if n is not None and n < 1:
            raise BadInputError(f"limit must be a positive number of samples, got {n}")
        subset = copy.copy(self)
        if n is not None and n < len(self):
            keep = stratified_indices(self._strata(), n, seed)
            subset.samples = [self.samples[i] for i in keep]
        return subset

    def _strata(self) -> np.ndarray:
        """Stratum of every sample: its label, or its rarest label when multi-label."""
        matrix = self.label_matrix()
        frequency = np.where(matrix, matrix.sum(axis=0), np.iinfo(np.int64).max)
        return np.argmin(frequency, axis=1)


class RasterBenchmark(Benchmark):
    """A benchmark whose samples are image patches an encoder embeds."""

    @abstractmethod
    def load(self, sample: Sample) -> SampleInput:
        """Read one sample's input."""

    def sample_side(self) -> int | None:
        """Longer side in pixels of the first sample (the patch side of a ``clip_rgb`` baseline)."""
        if not self.samples:
            return None
        data = self.load(self.samples[0])
        if data.composite is not None:
            return max(data.composite.sizes["y"], data.composite.sizes["x"])
        return max(data.image.size) if data.image is not None else None


def stratified_indices(strata: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of ``n`` items drawn at random within strata, in proportion to stratum sizes.

    Allocation by largest remainder; every stratum gets at least one item when ``n`` allows.

    Args:
        strata: Stratum of every item, int [items].
        n: Items to draw (at most ``len(strata)``).
        seed: Seed of the random draw.

    Returns:
        Sorted indices, int64 [n].
    """
    labels, sizes = np.unique(strata, return_counts=True)
    quota = n * sizes / sizes.sum()
    take = np.floor(quota).astype(np.int64)
    order = np.argsort(-(quota - take), kind="stable")
    take[order[: n - take.sum()]] += 1
    if n >= len(labels):  # lift empty strata to one item, taken from the largest allocations
        for empty in np.flatnonzero(take == 0):
            take[np.argmax(take)] -= 1
            take[empty] = 1
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(strata == label), size=k, replace=False)
        for label, k in zip(labels, take, strict=True)
    ]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def single_date_composite(
    grid: Grid,
    s2: np.ndarray | None = None,
    s2_date: date | None = None,
    s1: np.ndarray | None = None,
    s1_date: date | None = None,
) -> xr.Dataset:
    """A 12-month composite holding single acquisitions at their months, NaN everywhere else.

    The composite's year is that of the first date given; a date only sets the month it fills.

    Args:
        grid: Pixel grid of the arrays (sets the ``x``, ``y`` coordinates).
        s2: Sentinel-2 bands B2, B3, B4, B5, B6, B7, B8, B8A, B11, B12, reflectance x 1e4 [10, y, x].
        s2_date: Acquisition date of ``s2``.
        s1: Sentinel-1 VV, VH in dB [2, y, x].
        s1_date: Acquisition date of ``s1``.

    Returns:
        Dataset with ``s2`` [time, s2_band, y, x] and ``s1`` [time, s1_band, y, x] float32.
    """
    dates = [d for d in (s2_date, s1_date) if d is not None]
    if not dates:
        raise BadInputError("a single-date composite needs the date of at least one acquisition")
    time = pd.date_range(f"{dates[0].year:04d}-01-01", periods=MONTHS, freq="MS").astype("datetime64[ns]")
    variables = {}
    for sensor, bands, values, when in (("s2", S2_BANDS, s2, s2_date), ("s1", S1_BANDS, s1, s1_date)):
        cube = np.full((MONTHS, len(bands), *grid.shape), np.nan, dtype=np.float32)
        if values is not None:
            if when is None:
                raise BadInputError(f"{sensor} data needs its acquisition date")
            if values.shape != (len(bands), *grid.shape):
                expected = (len(bands), *grid.shape)
                raise BadInputError(
                    f"{sensor} must have shape {expected} (bands {bands}), got {values.shape}"
                )
            cube[when.month - 1] = values
        variables[sensor] = xr.DataArray(
            cube, dims=("time", f"{sensor}_band", "y", "x"), coords={f"{sensor}_band": list(bands)}
        )
    return xr.Dataset(
        variables, coords={"time": time, "y": grid.y_coords(), "x": grid.x_coords()}, attrs=_crs_attrs(grid)
    )


def _crs_attrs(grid: Grid) -> Mapping[str, Any]:
    return {"crs": grid.crs.to_string(), "transform": list(tuple(grid.transform)[:6])}
