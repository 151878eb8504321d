"""Chip-building benchmark: landprompt's chip reader vs raw rasterio window reads of the same pixels.

It writes a year of local Cloud-Optimised GeoTIFFs in the GeoTIFF-stack layout of
:mod:`landprompt.eo.local` (one Sentinel-2 scene a month: 10 bands + SCL, uint16; one Sentinel-1 scene
a month: VV, VH dB, float32; ``--size`` pixels square at 10 m in UTM 32N, 512 x 512 tiles, deflate) and
``--chips`` random places in it, then measures in the same run, best of ``--repeats``:

* **landprompt**: the fetch path of ``landprompt pairs fetch`` without the store write:
  :class:`~landprompt.eo.chips.StackChipReader` over tasks of ``--task-rows`` chips (each file opened
  once per task, each chip window read, SCL-masked, monthly medians) and the conversion to the store's
  dtypes (:class:`~landprompt.pairs.store.ChipArrays`);
* **raw reads** (the yardstick): rasterio ``read(window=...)`` of the same P x P windows from every file,
  each file opened once, values copied out, nothing else.

Prints one JSON line: chips per second of each, and their ratio (goal >= 0.8).

A second line measures the sample store's bytes per pair on real reflectance: 5 x 5 chips cut from the
shared BigEarthNet Sentinel-2/-1 patches (``../shared/data/bigearthnet-tiny``; 20 m bands repeated to
10 m), another patch or place of it each month, 40 % of months dropped as cloudy (0 / NaN), written with
:class:`~landprompt.pairs.store.SampleStore`; its yardstick is the uncompressed size of the same rows.
Usage: ``python benchmarks/pairs.py [--size 1024] [--chips 1000] [--chip 5] [--workdir DIR]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

from _common import emit
from landprompt.eo.bands import S1_BAND_NAMES, S2_BAND_NAMES
from landprompt.eo.chips import ChipSet, StackChipReader
from landprompt.geo import Grid
from landprompt.pairs.store import ChipArrays, SampleStore

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bigearthnet-tiny"

YEAR = 2022
EPSG = 32632
LEFT, TOP = 600_000.0, 5_100_000.0


def smooth_field(rng: np.random.Generator, size: int, low: float, high: float) -> np.ndarray:
    """A land-like field: blocky parcels (64 px) plus per-pixel noise, in [low, high]."""
    parcels = (
        rng.uniform(low, high, (size // 64 + 1, size // 64 + 1)).repeat(64, 0).repeat(64, 1)[:size, :size]
    )
    return np.clip(parcels + rng.normal(0, (high - low) * 0.03, (size, size)), low, high)


def write_stack(folder: Path, size: int, seed: int = 0) -> list[Path]:
    """One S2 and one S1 COG a month (the GeoTIFF-stack layout)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    transform = Affine(10.0, 0, LEFT, 0, -10.0, TOP)
    profile = {
        "driver": "COG",
        "width": size,
        "height": size,
        "crs": f"EPSG:{EPSG}",
        "transform": transform,
        "compress": "deflate",
        "blocksize": 512,
        "overviews": "none",
    }
    written = []
    for month in range(1, 13):
        s2 = np.stack([smooth_field(rng, size, 200, 5000) for _ in S2_BAND_NAMES]).astype(np.uint16)
        scl = np.full((1, size, size), 4, np.uint16)
        scl[0, : size // 8] = 9  # a cloud band across the top
        path = folder / f"s2_{YEAR}{month:02d}15.tif"
        with rasterio.open(path, "w", count=11, dtype="uint16", nodata=0, **profile) as dst:
            dst.write(np.concatenate([s2, scl]))
            for i, name in enumerate([*S2_BAND_NAMES, "SCL"], start=1):
                dst.set_band_description(i, name)
        s1 = np.stack([smooth_field(rng, size, -25, -5) for _ in S1_BAND_NAMES]).astype(np.float32)
        path1 = folder / f"s1_{YEAR}{month:02d}20.tif"
        with rasterio.open(path1, "w", count=2, dtype="float32", nodata=float("nan"), **profile) as dst:
            dst.write(s1)
            for i, name in enumerate(S1_BAND_NAMES, start=1):
                dst.set_band_description(i, name)
        written += [path, path1]
    return written


def landprompt_chips(folder: Path, chips: ChipSet, task_rows: int) -> int:
    """Chips built the way ``pairs fetch`` builds them, task by task; returns the valid S2 months."""
    reader = StackChipReader(str(folder))
    valid = 0
    for start in range(0, len(chips), task_rows):
        part = chips.subset(slice(start, start + task_rows))
        arrays = ChipArrays.from_float(*reader.read(part, YEAR))
        valid += int(arrays.valid[..., 0].sum())
    return valid


def raw_reads(files: list[Path], chips: ChipSet, grid: Grid) -> float:
    """Every chip window of every file, files opened once; returns a checksum."""
    cols = np.round((chips.left - grid.transform.c) / 10).astype(int)
    rows = np.round((grid.transform.f - chips.top) / 10).astype(int)
    total = 0.0
    for path in files:
        with rasterio.open(path) as src:
            out = np.empty((len(chips), src.count, chips.size, chips.size), src.dtypes[0])
            for i, (r, c) in enumerate(zip(rows, cols, strict=True)):
                out[i] = src.read(window=Window(c, r, chips.size, chips.size))
            total += float(out[:, 0, 0, 0].astype(np.float64).sum())
    return total


def _patches(folder: Path, bands: tuple[str, ...]) -> list[np.ndarray]:
    """Each patch folder's bands at 10 m (120 x 120), float32."""
    patches = []
    for patch in sorted(p for p in folder.iterdir() if p.is_dir()):
        layers = []
        for band in bands:
            name = f"B{int(band[1:]):02d}" if band[1:].isdigit() else band
            with rasterio.open(next(patch.glob(f"*_{name}.tif"))) as src:
                data = src.read(1).astype(np.float32)
            factor = 120 // data.shape[0]
            layers.append(data.repeat(factor, 0).repeat(factor, 1))
        patches.append(np.stack(layers))
    return patches


def store_bytes(workdir: Path, chip: int) -> dict[str, object] | None:
    """Bytes per pair of a store of real chips vs their uncompressed size (None without the data)."""
    if not SHARED.is_dir():
        return None
    s2_patches = _patches(SHARED / "s2-tiny", S2_BAND_NAMES)
    s1_patches = _patches(SHARED / "s1-tiny", S1_BAND_NAMES)
    rng = np.random.default_rng(0)
    starts = range(0, 120 - chip + 1, chip)
    sites = [(r, c) for r in starts for c in starts]
    n = len(sites)
    s2 = np.empty((n, 12, len(S2_BAND_NAMES), chip, chip), np.float32)
    s1 = np.empty((n, 12, len(S1_BAND_NAMES), chip, chip), np.float32)
    for i, (r, c) in enumerate(sites):
        for month in range(12):  # another patch, or another place of it, every month
            rr, cc = (r + 37 * month) % (120 - chip), (c + 53 * month) % (120 - chip)
            s2[i, month] = s2_patches[month % len(s2_patches)][:, rr : rr + chip, cc : cc + chip]
            s1[i, month] = s1_patches[month % len(s1_patches)][:, rr : rr + chip, cc : cc + chip]
    s2[rng.random((n, 12)) < 0.4] = np.nan  # cloudy months
    chips = ChipArrays.from_float(s2, s1)
    store = SampleStore.create(workdir / "bytes.zarr", chip=chip, chunk_rows=256)
    store.resize(n)
    store.write_places(np.arange(n), np.full(n, 45.0), np.full(n, 8.0), np.full(n, 2022))
    store.write_chips(np.arange(n), chips)
    on_disk = sum(f.stat().st_size for f in (workdir / "bytes.zarr").rglob("*") if f.is_file())
    raw = sum(store.array(a).nbytes for a in ("s2", "s1", "valid", "months", "latlon", "year"))
    return {
        "benchmark": "pairs.store_bytes",
        "pairs": n,
        "chip_px": chip,
        "bytes_per_pair": round(on_disk / n, 1),
        "uncompressed_bytes_per_pair": round(raw / n, 1),
        "ratio": round(on_disk / raw, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="Stack width and height in pixels.")
    parser.add_argument("--chips", type=int, default=1000, help="Random places.")
    parser.add_argument("--chip", type=int, default=5, help="Chip size in pixels.")
    parser.add_argument("--task-rows", type=int, default=500, help="Chips per task (as pairs fetch).")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        folder = Path(tmp) / "stack"
        files = write_stack(folder, args.size)
        grid = Grid(f"EPSG:{EPSG}", Affine(10.0, 0, LEFT, 0, -10.0, TOP), (args.size, args.size))
        rng = np.random.default_rng(1)
        margin = args.chip
        rows = rng.integers(margin, args.size - margin, args.chips)
        cols = rng.integers(margin, args.size - margin, args.chips)
        lon, lat = grid.rowcol_to_lonlat(rows, cols)
        chips = ChipSet.around(lon, lat, args.chip, epsg=EPSG)
        order = np.lexsort((chips.left, -chips.top))  # pairs fetch plans rows in spatial order
        chips = chips.subset(order)
        ours, raw = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            valid = landprompt_chips(folder, chips, args.task_rows)
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            raw_reads(files, chips, grid)
            raw.append(time.perf_counter() - start)
        sizes = store_bytes(Path(tmp), args.chip)
    ours_rate, raw_rate = args.chips / min(ours), args.chips / min(raw)
    emit(
        benchmark="pairs.chips",
        chips=args.chips,
        chip_px=args.chip,
        files=len(files),
        stack_px=args.size,
        landprompt_chips_per_s=round(ours_rate, 1),
        raw_rasterio_chips_per_s=round(raw_rate, 1),
        ratio=round(ours_rate / raw_rate, 3),
        goal=0.8,
        valid_s2_months=valid,
    )
    if sizes is not None:
        emit(**sizes)


if __name__ == "__main__":
    main()
