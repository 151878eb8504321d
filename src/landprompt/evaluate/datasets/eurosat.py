"""EuroSAT (Helber et al. 2019): 27,000 Sentinel-2 patches of 64 x 64 pixels in 10 land-use classes.

Two releases, one folder per class, ``<Class>/<Class>_<n>.<ext>``:

- multispectral (:class:`EuroSAT`): GeoTIFFs with 13 bands, Sentinel-2 L1C top-of-atmosphere
  reflectance x 1e4 (uint16), in the order B1, B2, B3, B4, B5, B6, B7, B8, B9, B10, B11, B12, B8A
  (B8A is last; see github.com/phelber/EuroSAT/issues/7 and torchgeo/torchgeo#2480). The encoder's ten
  bands are taken by name (:data:`EUROSAT_MS_BANDS`); L1C values are fed as they are, without
  atmospheric correction, and 0 is read as no data;
- RGB (:class:`EuroSATRGB`): the same patches as 8-bit true-colour JPEGs, embedded directly by image
  encoders (``clip_rgb``).

EuroSAT carries no acquisition dates: a patch is placed at month ``month`` (default July) of the
12-month composite, the other months missing. Samples are ordered by class, then by the file's number.
``root`` may be the folder of class folders or any folder above it (e.g. the unpacked archive).
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import rasterio
from PIL import Image

from landprompt.embedder.models.base import S2_BANDS, pixel_latlon
from landprompt.errors import BadInputError
from landprompt.evaluate.datasets.base import RasterBenchmark, Sample, SampleInput, single_date_composite
from landprompt.geo import Grid

EUROSAT_CLASSES: tuple[str, ...] = (
    "AnnualCrop",
    "Forest",
    "HerbaceousVegetation",
    "Highway",
    "Industrial",
    "Pasture",
    "PermanentCrop",
    "Residential",
    "River",
    "SeaLake",
)
"""EuroSAT's class folder names, in class-index order."""

EUROSAT_MS_BANDS: tuple[str, ...] = (
    "B1",
    "B2",
    "B3",
    "B4",
    "B5",
    "B6",
    "B7",
    "B8",
    "B9",
    "B10",
    "B11",
    "B12",
    "B8A",
)
"""Band order of EuroSAT's multispectral GeoTIFFs."""

DEFAULT_MONTH = 7
"""Month (1-12) a dateless EuroSAT patch is placed at."""

DEFAULT_YEAR = 2017
"""Year of the composite's time coordinate (EuroSAT patches date from 2015-2017; only the month matters)."""

_MAX_DEPTH = 6
_NUMBER = re.compile(r"_(\d+)$")


class EuroSAT(RasterBenchmark):
    """EuroSAT multispectral GeoTIFFs as single-date composites.

    Args:
        root: Folder of the class folders, or a folder above it.
        month: Month (1-12) the patches are placed at.

    Raises:
        BadInputError: If no class folder with images is found, or ``month`` is not 1-12.
    """

    name: ClassVar[str] = "eurosat"
    suffixes: ClassVar[tuple[str, ...]] = (".tif", ".tiff")

    def __init__(self, root: str | Path, month: int = DEFAULT_MONTH) -> None:
        if not 1 <= month <= 12:
            raise BadInputError(f"month must be 1-12, got {month}")
        self.month = month
        folder = find_class_root(Path(root), EUROSAT_CLASSES, self.suffixes)
        super().__init__(folder, EUROSAT_CLASSES, scan_class_folders(folder, EUROSAT_CLASSES, self.suffixes))

    def settings(self) -> dict[str, Any]:
        """Band order read and the month patches are placed at."""
        return {"file_bands": list(EUROSAT_MS_BANDS), "bands": list(S2_BANDS), "month": self.month}

    def load(self, sample: Sample) -> SampleInput:
        """Read a patch as a composite with only month ``month`` filled, plus its pixel lat/lon."""
        with rasterio.open(sample.path) as src:
            if src.count != len(EUROSAT_MS_BANDS):
                raise BadInputError(
                    f"{sample.path} has {src.count} bands; EuroSAT multispectral patches have 13 "
                    f"({', '.join(EUROSAT_MS_BANDS)}). For the RGB JPEG release use eurosat-rgb."
                )
            data = src.read([EUROSAT_MS_BANDS.index(b) + 1 for b in S2_BANDS]).astype(np.float32)
            grid = Grid(src.crs, src.transform, src.shape)
        data[data == 0] = np.nan
        composite = single_date_composite(grid, s2=data, s2_date=date(DEFAULT_YEAR, self.month, 1))
        return SampleInput(composite=composite, latlon=pixel_latlon(grid))


class EuroSATRGB(EuroSAT):
    """EuroSAT RGB JPEGs, for image encoders.

    Args:
        root: Folder of the class folders, or a folder above it.
    """

    name: ClassVar[str] = "eurosat-rgb"
    suffixes: ClassVar[tuple[str, ...]] = (".jpg", ".jpeg")

    def __init__(self, root: str | Path) -> None:
        super().__init__(root)

    def settings(self) -> dict[str, Any]:
        """The JPEGs are embedded as they are."""
        return {"input": "8-bit true-colour JPEG"}

    def load(self, sample: Sample) -> SampleInput:
        """Read a patch as an RGB PIL image."""
        with Image.open(sample.path) as image:
            return SampleInput(image=image.convert("RGB"))


def find_class_root(root: Path, classes: tuple[str, ...], suffixes: tuple[str, ...]) -> Path:
    """The first folder at or below ``root`` (breadth first) holding class folders with images.

    Raises:
        BadInputError: If ``root`` is missing or no such folder exists within a few levels.
    """
    if not root.is_dir():
        raise BadInputError(f"dataset root {root} is not a folder")
    level = [root]
    for _ in range(_MAX_DEPTH + 1):
        for folder in level:
            if any(_has_images(folder / name, suffixes) for name in classes):
                return folder
        level = sorted(p for folder in level for p in folder.iterdir() if p.is_dir())
    raise BadInputError(
        f"no class folders ({', '.join(classes[:3])}, ...) with {'/'.join(suffixes)} files under {root}"
    )


def scan_class_folders(folder: Path, classes: tuple[str, ...], suffixes: tuple[str, ...]) -> list[Sample]:
    """Samples of ``<Class>/<Class>_<n>.<ext>`` files, ordered by class index, then number, then name.

    Raises:
        BadInputError: If ``folder`` holds a folder of images that is not one of ``classes``.
    """
    unknown = sorted(
        p.name for p in folder.iterdir() if p.is_dir() and p.name not in classes and _has_images(p, suffixes)
    )
    if unknown:
        raise BadInputError(f"{folder} has folders of unknown classes {unknown}; known: {', '.join(classes)}")
    samples: list[Sample] = []
    for index, name in enumerate(classes):
        if (folder / name).is_dir():
            files = sorted((p for p in (folder / name).iterdir() if p.suffix.lower() in suffixes), key=_order)
            samples += [Sample(id=path.stem, labels=(index,), path=path) for path in files]
    return samples


def _order(path: Path) -> tuple[int, str]:
    match = _NUMBER.search(path.stem)
    return (int(match.group(1)) if match else -1, path.name)


def _has_images(folder: Path, suffixes: tuple[str, ...]) -> bool:
    return folder.is_dir() and any(p.suffix.lower() in suffixes for p in folder.iterdir())
