"""BigEarthNet-MM (Sumbul et al. 2021): paired Sentinel-2 / Sentinel-1 patches of 1.2 x 1.2 km, multi-label.

Layout of the v1.0 archives (``BigEarthNet-v1.0/``, ``BigEarthNet-S1-v1.0/``), one folder per patch:

- Sentinel-2 ``<patch>/<patch>_B01.tif`` ... ``_B12.tif``, ``_B8A.tif``: L2A reflectance x 1e4, uint16,
  one file per band at its native resolution (120 x 120 at 10 m, 60 x 60 at 20 m, 20 x 20 at 60 m), and
  ``<patch>_labels_metadata.json`` with ``labels`` (CORINE Land Cover names), ``projection``,
  ``coordinates`` and ``acquisition_date``;
- Sentinel-1 ``<patch>/<patch>_VV.tif``, ``_VH.tif``: backscatter in dB, float32, 120 x 120; its
  metadata names its Sentinel-2 partner in ``corresponding_s2_patch`` and has ``acquisition_time``.

A sample is a Sentinel-2 patch: the encoder's ten bands brought to the 10 m grid of B02 by
nearest-neighbour resampling (a 20 m pixel becomes 2 x 2 pixels, as the project's STAC loader does), plus
VV and VH of the paired Sentinel-1 patch when there is one, each placed at its acquisition month of a
12-month composite (other months missing). Labels follow the 19-class nomenclature
(:func:`bigearthnet19`, shipped as ``data/bigearthnet19.yaml``); a patch left without any label is not
evaluated. Patches are ordered by name.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import rasterio
from rasterio.enums import Resampling

from landprompt.embedder.models.base import S1_BANDS, S2_BANDS, pixel_latlon
from landprompt.errors import BadInputError
from landprompt.evaluate.datasets.base import RasterBenchmark, Sample, SampleInput, single_date_composite
from landprompt.evaluate.resources import packaged_yaml
from landprompt.geo import Grid

S2_FILE_BANDS: dict[str, str] = {
    band: f"B{band[1:].zfill(2)}" if band != "B8A" else "B8A" for band in S2_BANDS
}
"""File suffix of each encoder band: ``B2`` -> ``B02``, ``B8A`` -> ``B8A``."""

METADATA_SUFFIX = "_labels_metadata.json"
_NAME_DATE = re.compile(r"_(\d{8})T\d{6}")
_MAX_DEPTH = 2


@dataclass(frozen=True)
class Nomenclature:
    """BigEarthNet's CORINE labels and their 19-class nomenclature.

    Attributes:
        classes: The 19 class names, in the official index order.
        corine: Each of the 43 CORINE names of the metadata -> its 19-class index, or None if dropped.
    """

    classes: tuple[str, ...]
    corine: dict[str, int | None]

    def convert(self, labels: Sequence[str], where: str = "") -> tuple[int, ...]:
        """Sorted 19-class indices of a patch's CORINE labels (dropped labels give none).

        Raises:
            BadInputError: If a label is not one of the 43 CORINE names.
        """
        unknown = [label for label in labels if label not in self.corine]
        if unknown:
            raise BadInputError(f"{where or 'labels'}: unknown BigEarthNet CORINE label(s) {unknown}")
        return tuple(sorted({i for label in labels if (i := self.corine[label]) is not None}))


@cache
def bigearthnet19() -> Nomenclature:
    """The 43 -> 19 class nomenclature of ``data/bigearthnet19.yaml``."""
    document = packaged_yaml("bigearthnet19.yaml")
    corine: dict[str, int | None] = {name: None for name in document["dropped"]}
    for index, entry in enumerate(document["classes"]):
        corine.update(dict.fromkeys(entry["corine"], index))
    return Nomenclature(tuple(entry["name"] for entry in document["classes"]), corine)


@dataclass(frozen=True)
class _Patch:
    folder: Path
    metadata: dict[str, Any]


class BigEarthNet(RasterBenchmark):
    """BigEarthNet-MM Sentinel-2 patches with their Sentinel-1 partners, 19 classes, multi-label.

    Args:
        root: A folder of patch folders, or a folder above such folders (up to two levels): Sentinel-2
            and Sentinel-1 patches found under it are paired.
        s1_root: Another folder to look for Sentinel-1 patches in.
        use_s1: Add the paired Sentinel-1 patch to the composite.
        split: A CSV or text file whose first column lists the Sentinel-2 patches to keep (an official
            split such as BigEarthNet-19's ``test.csv``); None keeps every patch.

    Raises:
        BadInputError: If no Sentinel-2 patch is found, a metadata file is unreadable or has unknown labels.
    """

    name: ClassVar[str] = "bigearthnet"
    multilabel: ClassVar[bool] = True

    def __init__(
        self,
        root: str | Path,
        s1_root: str | Path | None = None,
        use_s1: bool = True,
        split: str | Path | None = None,
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise BadInputError(f"dataset root {root} is not a folder")
        patches = [p for folder in (root, s1_root) if folder is not None for p in _patches(Path(folder))]
        s2 = {p.folder.name: p for p in patches if "corresponding_s2_patch" not in p.metadata}
        if not s2:
            raise BadInputError(
                f"no BigEarthNet Sentinel-2 patch folders (<patch>/<patch>{METADATA_SUFFIX}) under {root}"
            )
        self.s1 = (
            {
                p.metadata["corresponding_s2_patch"]: p
                for p in patches
                if "corresponding_s2_patch" in p.metadata
            }
            if use_s1
            else {}
        )
        self.split = None if split is None else Path(split)
        names = sorted(s2) if split is None else _split_names(Path(split), s2)
        nomenclature = bigearthnet19()
        samples, self.unlabelled, self.dates = [], 0, {}
        for name in names:
            patch = s2[name]
            labels = nomenclature.convert(patch.metadata.get("labels", []), str(patch.folder))
            if not labels:
                self.unlabelled += 1
                continue
            samples.append(Sample(id=name, labels=labels, path=patch.folder))
            self.dates[name] = _acquisition_date(patch, "acquisition_date")
        self.use_s1 = use_s1
        super().__init__(root, nomenclature.classes, samples)

    def settings(self) -> dict[str, Any]:
        """Bands, resampling, Sentinel-1 pairing and split."""
        paired = sum(s.id in self.s1 for s in self.samples)
        return {
            "bands": list(S2_BANDS) + (list(S1_BANDS) if self.use_s1 else []),
            "resampling": "nearest to the 10 m grid of B02",
            "use_s1": self.use_s1,
            "samples_with_s1": paired,
            "split": None if self.split is None else str(self.split),
            "patches_without_19_class_label": self.unlabelled,
            "nomenclature": "BigEarthNet-19 (Sumbul et al. 2021)",
        }

    def load(self, sample: Sample) -> SampleInput:
        """Read a patch as a composite: S2 at its month, the paired S1 at its own, plus pixel lat/lon."""
        folder = sample.path
        with rasterio.open(folder / f"{sample.id}_B02.tif") as ref:
            grid = Grid(ref.crs, ref.transform, ref.shape)
        s2 = np.stack([_read(folder / f"{sample.id}_{S2_FILE_BANDS[b]}.tif", grid.shape) for b in S2_BANDS])
        s2[s2 == 0] = np.nan
        s1 = s1_date = None
        partner = self.s1.get(sample.id)
        if partner is not None:
            s1 = np.stack(
                [_read(partner.folder / f"{partner.folder.name}_{b}.tif", grid.shape) for b in S1_BANDS]
            )
            s1_date = _acquisition_date(partner, "acquisition_time")
        composite = single_date_composite(grid, s2, self.dates[sample.id], s1, s1_date)
        return SampleInput(composite=composite, latlon=pixel_latlon(grid))


def _patches(folder: Path, depth: int = 0) -> Iterator[_Patch]:
    """Patch folders under ``folder`` (sorted), descending into non-patch folders up to two levels."""
    with os.scandir(folder) as entries:
        children = sorted(Path(e.path) for e in entries if e.is_dir())
    for child in children:
        metadata = child / f"{child.name}{METADATA_SUFFIX}"
        if metadata.is_file():
            yield _Patch(child, _read_json(metadata))
        elif depth < _MAX_DEPTH:
            yield from _patches(child, depth + 1)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadInputError(f"{path} is not a readable BigEarthNet metadata file: {err}") from err
    if not isinstance(document, dict):
        raise BadInputError(f"{path} is not a BigEarthNet metadata file (not a JSON object)")
    return document


def _acquisition_date(patch: _Patch, key: str) -> date:
    """The acquisition date from the metadata, else from the patch name (``..._YYYYMMDDThhmmss_...``)."""
    value = patch.metadata.get(key)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).date()
        except ValueError:
            pass
    match = _NAME_DATE.search(patch.folder.name)
    if match is None:
        raise BadInputError(f"{patch.folder}: no acquisition date in its metadata ({key!r}) or its name")
    return datetime.strptime(match.group(1), "%Y%m%d").date()


def _read(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """One band as float32 on ``shape`` (nearest-neighbour resampling when its grid is coarser)."""
    if not path.is_file():
        raise BadInputError(f"missing BigEarthNet band file {path}")
    with rasterio.open(path) as src:
        return src.read(1, out_shape=shape, resampling=Resampling.nearest).astype(np.float32)


def _split_names(path: Path, known: dict[str, _Patch]) -> list[str]:
    """Patch names of a split file's first column that are present, in the file's order.

    Raises:
        BadInputError: If the file is missing or names none of the patches found.
    """
    if not path.is_file():
        raise BadInputError(f"split file not found: {path}")
    names = [line.split(",")[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    present = [n for n in dict.fromkeys(names) if n in known]
    if not present:
        raise BadInputError(f"split file {path} names none of the {len(known)} Sentinel-2 patches found")
    return sorted(present)
