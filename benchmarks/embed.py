"""Embedding-run benchmark: encoder throughput vs a plain matmul, chunk input reads vs raw rasterio.

In one run it measures:

* ``sits`` (Presto-size backbone + a 512-d head) pixels/s on the CPU over a 12-month composite, and the
  FLOP rate that implies (FLOPs counted by ``torch.utils.flop_counter``), against the FLOP rate of a plain
  float32 ``torch.matmul`` of 2048 x 2048 matrices on the same threads (goal >= 40%);
* the chunk-input read rate of a local GeoTIFF stack (``LocalSource.composite``: read, mask clouds,
  monthly medians) against raw rasterio window reads of the same files and pixels (no masking, no
  compositing).

Each figure is one JSON line with its yardstick and their ratio. Usage:
``python benchmarks/embed.py [--pixels 4096] [--size 512] [--dates 24]``.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import rasterio
import torch
from affine import Affine
from pyproj import CRS
from torch.utils.flop_counter import FlopCounterMode

from _common import best_time, emit
from landprompt.embedder.models import create_encoder, pixel_latlon
from landprompt.eo.bands import S1_BAND_NAMES, S2_BAND_NAMES
from landprompt.eo.local import LocalSource
from landprompt.geo import Grid

YEAR = 2022


def matmul_flops_per_s(n: int = 2048) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)  # warm-up
    return 2 * n**3 / best_time(lambda: torch.matmul(a, b), 5)


def write_stack(folder: Path, grid: Grid, dates: int) -> None:
    """A local GeoTIFF stack: ``dates`` S2 scenes (10 bands + SCL, a cloud in each) and as many S1."""
    rng = np.random.default_rng(0)
    profile = {
        "driver": "GTiff",
        "height": grid.rows,
        "width": grid.cols,
        "crs": grid.crs,
        "transform": grid.transform,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
    }
    for i in range(dates):
        day = f"{YEAR}{1 + i * 12 // dates:02d}{1 + (i * 7) % 27:02d}"
        s2 = rng.integers(300, 5000, (11, grid.rows, grid.cols), dtype=np.uint16)
        s2[10] = 4  # SCL vegetation
        s2[10, : grid.rows // 8] = 9  # a cloud band
        with rasterio.open(
            folder / f"s2_{day}.tif", "w", count=11, dtype="uint16", nodata=0, **profile
        ) as dst:
            dst.write(s2)
            dst.descriptions = (*S2_BAND_NAMES, "SCL")
        s1 = rng.uniform(-25, -5, (2, grid.rows, grid.cols)).astype(np.float32)
        with rasterio.open(
            folder / f"s1_{day}.tif", "w", count=2, dtype="float32", nodata=np.nan, **profile
        ) as dst:
            dst.write(s1)
            dst.descriptions = S1_BAND_NAMES


@contextmanager
def local_stack(size: int, dates: int) -> Iterator[tuple[Grid, LocalSource, Path]]:
    """A temporary :func:`write_stack` on a square 10 m UTM grid of ``size`` pixels: grid, source, folder."""
    grid = Grid(CRS.from_epsg(32632), Affine(10.0, 0, 600_000.0, 0, -10.0, 4_800_000.0), (size, size))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_stack(folder, grid, dates)
        yield grid, LocalSource(folder), folder


def raw_reads(folder: Path) -> None:
    for path in sorted(folder.glob("*.tif")):
        with rasterio.open(path) as src:
            src.read()


def bench_encoder(pixels: int, source: LocalSource, grid: Grid) -> dict:
    side = int(np.sqrt(pixels))
    # below the cloud band: pixels observed by S2 and S1 every month (85 tokens), as in a clear year
    top = grid.rows // 4
    sub = grid.window(slice(top, top + side), slice(0, side))
    composite = source.composite(sub, YEAR)
    latlon = pixel_latlon(sub)
    torch.manual_seed(0)
    encoder = create_encoder("sits", clip_dim=512, pool_size=5)
    encoder.embed_dense(composite, latlon, batch_size=1024)  # warm-up
    seconds = best_time(lambda: encoder.embed_dense(composite, latlon, batch_size=1024), 2)
    with FlopCounterMode(display=False) as counter:
        encoder.embed_dense(composite, latlon, batch_size=1024)
    flops = counter.get_total_flops()
    model_rate = flops / seconds
    matmul_rate = matmul_flops_per_s()
    return {
        "benchmark": "sits_encoder_cpu",
        "pixels": side * side,
        "threads": torch.get_num_threads(),
        "pixels_per_s": round(side * side / seconds, 1),
        "gflop_per_pixel": round(flops / (side * side) / 1e9, 4),
        "model_gflops": round(model_rate / 1e9, 2),
        "yardstick": "torch.matmul 2048x2048 float32, same threads",
        "matmul_gflops": round(matmul_rate / 1e9, 2),
        "ratio": round(model_rate / matmul_rate, 3),
    }


def bench_reads(source: LocalSource, grid: Grid, folder: Path) -> dict:
    source.composite(grid, YEAR)  # warm the page cache for both
    composite_s = best_time(lambda: source.composite(grid, YEAR), 2)
    raw_s = best_time(lambda: raw_reads(folder), 2)
    n_bytes = sum(p.stat().st_size for p in folder.glob("*.tif"))
    return {
        "benchmark": "chunk_input_reads",
        "pixels": grid.rows * grid.cols,
        "files": len(list(folder.glob("*.tif"))),
        "composite_mpixels_per_s": round(grid.rows * grid.cols / composite_s / 1e6, 3),
        "yardstick": "raw rasterio reads of the same files (all bands, no masking or compositing)",
        "raw_mpixels_per_s": round(grid.rows * grid.cols / raw_s / 1e6, 3),
        "ratio": round(raw_s / composite_s, 3),
        "stack_mb": round(n_bytes / 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixels", type=int, default=4096)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--dates", type=int, default=24)
    args = parser.parse_args()
    with local_stack(args.size, args.dates) as (grid, source, folder):
        emit(**bench_encoder(args.pixels, source, grid))
        emit(**bench_reads(source, grid, folder))


if __name__ == "__main__":
    main()
