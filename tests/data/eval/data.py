#!/usr/bin/env python3
"""Generate tiny zero-shot benchmarks in the real formats, with planted answers (fixed seed).

TorchGeo-style test-data script: ``python tests/data/eval/data.py OUT_DIR`` writes every benchmark; the
test suite calls the ``make_*`` functions into temporary folders instead of committing binaries.

- ``make_eurosat_ms``: EuroSAT multispectral folders ``<Class>/<Class>_<n>.tif``, 13 bands uint16 in
  EuroSAT's order (B1 ... B12, B8A last), UTM 32N, no nodata. Planted values: file band ``j`` (0-based)
  holds ``100 * (j + 1) + 10 * noise + class_index`` with a random noise digit per pixel, so
  ``value % 10`` is the class and ``value // 100 - 1`` the file band it came from.
- ``make_eurosat_rgb``: the RGB release, ``<Class>/<Class>_<n>.jpg``, one colour per class plus noise.
- ``make_bigearthnet``: BigEarthNet-MM S2 patch folders (12 band files at 10/20/60 m, uint16, labels
  metadata with CORINE names and ``acquisition_date``) and their S1 partners (VV, VH float32 dB,
  ``corresponding_s2_patch``, ``acquisition_time``). Planted values: every S2 band of patch ``i`` holds
  ``i + 1`` (:func:`patch_code`); S1 holds ``-(i + 1)`` dB.
- ``make_lucas``: a LUCAS survey table with the 2018 columns a reader needs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from affine import Affine
from PIL import Image

SEED = 0
EPSG = 32632
LEFT, TOP = 500_000.0, 5_000_000.0
EUROSAT_CLASSES = (
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
EUROSAT_BANDS = 13
BEN_BANDS = {  # file band -> resolution in metres
    "B01": 60,
    "B02": 10,
    "B03": 10,
    "B04": 10,
    "B05": 20,
    "B06": 20,
    "B07": 20,
    "B08": 10,
    "B8A": 20,
    "B09": 60,
    "B11": 20,
    "B12": 20,
}

#: CORINE labels of the synthetic BigEarthNet patches (the last one has only a dropped class).
BEN_LABELS: tuple[tuple[str, ...], ...] = (
    ("Non-irrigated arable land", "Pastures"),
    ("Coniferous forest",),
    ("Discontinuous urban fabric", "Broad-leaved forest", "Water courses"),
    ("Sea and ocean", "Beaches, dunes, sands"),
    ("Vineyards", "Olive groves", "Complex cultivation patterns"),
    ("Peatbogs", "Moors and heathland", "Mixed forest"),
    ("Road and rail networks and associated land",),
)
BEN_DATES = ("2017-06-17 11:33:21", "2017-12-21 11:25:01", "2018-03-02 10:10:00")


def _write_tif(path: Path, data: np.ndarray, transform: Affine, epsg: int = EPSG) -> None:
    profile = {
        "driver": "GTiff",
        "dtype": data.dtype.name,
        "count": data.shape[0],
        "height": data.shape[1],
        "width": data.shape[2],
        "crs": f"EPSG:{epsg}",
        "transform": transform,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def make_eurosat_ms(
    root: Path, per_class: int = 4, size: int = 8, classes: Sequence[str] = EUROSAT_CLASSES, seed: int = SEED
) -> Path:
    """EuroSAT multispectral folders with planted values; returns ``root``."""
    rng = np.random.default_rng(seed)
    for k, name in enumerate(classes):
        for n in range(1, per_class + 1):
            noise = rng.integers(0, 10, size=(EUROSAT_BANDS, size, size))
            bands = 100 * (np.arange(EUROSAT_BANDS)[:, None, None] + 1) + 10 * noise + k
            transform = Affine(10.0, 0, LEFT + 1000 * n, 0, -10.0, TOP - 1000 * k)
            _write_tif(root / name / f"{name}_{n}.tif", bands.astype(np.uint16), transform)
    return root


def make_eurosat_rgb(root: Path, per_class: int = 2, size: int = 16, seed: int = SEED) -> Path:
    """EuroSAT RGB folders: one JPEG colour per class plus noise; returns ``root``."""
    rng = np.random.default_rng(seed)
    for k, name in enumerate(EUROSAT_CLASSES):
        colour = np.array([25 * k, 255 - 25 * k, 120])
        for n in range(1, per_class + 1):
            pixels = np.clip(colour + rng.normal(0, 10, size=(size, size, 3)), 0, 255).astype(np.uint8)
            (root / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / name / f"{name}_{n}.jpg", quality=95)
    return root


def patch_code(index: int) -> int:
    """The value planted in every S2 band of synthetic BigEarthNet patch ``index``."""
    return index + 1


def ben_names(index: int) -> tuple[str, str]:
    """S2 and S1 folder names of synthetic patch ``index``, in BigEarthNet's naming."""
    date = BEN_DATES[index % len(BEN_DATES)].replace("-", "").replace(":", "").replace(" ", "T")
    return f"S2A_MSIL2A_{date}_{index}_1", f"S1A_IW_GRDH_1SDV_{date}_32TNS_{index}_1"


def make_bigearthnet(
    root: Path,
    labels: Sequence[Sequence[str]] = BEN_LABELS,
    size: int = 12,
    with_s1: Sequence[int] | None = None,
) -> Path:
    """BigEarthNet-MM S2 folders under ``root/s2`` and S1 partners under ``root/s1``; returns ``root``.

    Args:
        root: Output folder.
        labels: CORINE labels of each patch.
        size: Side of the 10 m bands (a multiple of 6).
        with_s1: Patches that get an S1 partner (default: all).
    """
    for i, patch_labels in enumerate(labels):
        s2_name, s1_name = ben_names(i)
        left, top = LEFT + 2000 * i, TOP
        acquired = BEN_DATES[i % len(BEN_DATES)]
        for band, resolution in BEN_BANDS.items():
            side = size * 10 // resolution
            data = np.full((1, side, side), patch_code(i), dtype=np.uint16)
            transform = Affine(resolution, 0, left, 0, -resolution, top)
            _write_tif(root / "s2" / s2_name / f"{s2_name}_{band}.tif", data, transform)
        coordinates = {"ulx": left, "uly": top, "lrx": left + 10 * size, "lry": top - 10 * size}
        metadata = {"labels": list(patch_labels), "coordinates": coordinates, "projection": f"EPSG:{EPSG}"}
        s2_meta = {**metadata, "tile_source": "synthetic", "acquisition_date": acquired}
        (root / "s2" / s2_name / f"{s2_name}_labels_metadata.json").write_text(json.dumps(s2_meta))
        if with_s1 is not None and i not in with_s1:
            continue
        for band in ("VV", "VH"):
            data = np.full((1, size, size), -float(patch_code(i)), dtype=np.float32)
            _write_tif(
                root / "s1" / s1_name / f"{s1_name}_{band}.tif", data, Affine(10, 0, left, 0, -10, top)
            )
        s1_meta = {
            **metadata,
            "corresponding_s2_patch": s2_name,
            "acquisition_time": acquired.replace(" ", "T"),
        }
        (root / "s1" / s1_name / f"{s1_name}_labels_metadata.json").write_text(json.dumps(s1_meta))
    return root


def make_lucas(path: Path, rows: Sequence[dict[str, object]]) -> Path:
    """A LUCAS 2018-style survey table; each row gives ``point_id``, ``th_lat``, ``th_long``, ``lc1``."""
    defaults = {"year": 2018, "gps_lat": 88.888888, "gps_ew": "East", "gps_long": 88.888888}
    frame = pd.DataFrame([{**defaults, **row} for row in rows])
    frame["lc1_label"] = "synthetic"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "eval-data")
    make_eurosat_ms(out / "eurosat-ms")
    make_eurosat_rgb(out / "eurosat-rgb")
    make_bigearthnet(out / "bigearthnet")
    make_lucas(
        out / "lucas" / "metadata_2018.csv", [{"point_id": 1, "th_lat": 45.1, "th_long": 9.0, "lc1": "B11"}]
    )
    print(f"wrote synthetic benchmarks under {out}")
