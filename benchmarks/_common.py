"""What every benchmark script shares: one JSON line per figure, timings, the test grid, unit vectors.

The scripts run as ``python benchmarks/NAME.py``; Python then puts this folder first on the path, so
they import this module as ``_common``. Run on its own, it does nothing.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
from affine import Affine

from landprompt.geo import EUROPE_CRS, Grid


def emit(**record: object) -> dict[str, object]:
    """Print one figure as a JSON line, flushed at once (a long run shows each figure as it comes)."""
    print(json.dumps(record), flush=True)
    return record


def seconds(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call of ``fn``."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``repeats`` calls of ``fn``."""
    return statistics.median(seconds(fn) for _ in range(repeats))


def best_time(fn: Callable[[], object], repeats: int = 3) -> float:
    """Fastest seconds of ``repeats`` calls of ``fn`` (the least disturbed by other work)."""
    return min(seconds(fn) for _ in range(repeats))


def europe_grid(rows: int, cols: int | None = None) -> Grid:
    """A 10 m grid of ``rows`` x ``cols`` (default: square) pixels in the European LAEA projection."""
    return Grid(EUROPE_CRS, Affine(10.0, 0, 4_000_000.0, 0, -10.0, 3_000_000.0), (rows, cols or rows))


def unit(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit length, as float32."""
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def disk_bytes(path: Path) -> int:
    """Bytes of all files under ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def random_cube(path: Path, size: int, dim: int, zarr_format: Literal[2, 3] = 3) -> Path:
    """A ``size`` x ``size`` fp16 cube of seeded random unit vectors (chunk 256) on :func:`europe_grid`."""
    from landprompt.embedder.cube import CubeWriter

    writer = CubeWriter(path, europe_grid(size), dim, chunk=256, zarr_format=zarr_format)
    for window in writer.pending():
        rng = np.random.default_rng([2, *window.index])
        writer.write_chunk(window, unit(rng.normal(size=(*window.shape, dim))))
    return writer.finalize()
