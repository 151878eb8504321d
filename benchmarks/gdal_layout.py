"""Cost of the Zarr v2 (GDAL-readable) cube layout against the default Zarr v3 layout.

One run writes the same synthetic cube twice through :class:`~landprompt.embedder.cube.CubeWriter`, in the
default layout (zstd + CRC32C chunks) and with ``zarr_format=2`` (zlib chunks, checked as whole zlib
streams on read), then measures on both, alternating so both see the same machine load:

* writing the cube (the whole ``CubeWriter`` run), median of repeats;
* then a full probability map (``probability_map`` over every chunk, the user's read path), median of
  repeats;
* the bytes on disk.

Each figure is one JSON line: the v2 figure, its yardstick (the v3 figure of the same run) and their ratio.
Other work may share the CPU. Usage: ``python benchmarks/gdal_layout.py [--size 1024] [--dim 64]
[--repeats 3] [--workdir DIR]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

import numpy as np

from _common import disk_bytes, emit, random_cube, seconds
from landprompt.embedder.cube import ZarrFormat, open_cube
from landprompt.query.probability import probability_map


def write(path: Path, size: int, dim: int, zarr_format: ZarrFormat) -> float:
    """Write the synthetic cube at ``path``; returns the seconds it took."""
    shutil.rmtree(path, ignore_errors=True)
    return seconds(lambda: random_cube(path, size, dim, zarr_format))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1024, help="Cube side in pixels.")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="landprompt-gdal-layout-"))
    cubes: dict[ZarrFormat, Path] = {3: workdir / "v3.zarr", 2: workdir / "v2.zarr"}
    rng = np.random.default_rng(0)
    concept, versus = rng.normal(size=args.dim), rng.normal(size=(8, args.dim))
    times: dict[str, dict[int, list[float]]] = {"write": {2: [], 3: []}, "map": {2: [], 3: []}}
    for _ in range(
        args.repeats
    ):  # writes first, then maps: a map right after a write competes with its writeback
        for fmt, cube in cubes.items():
            times["write"][fmt].append(write(cube, args.size, args.dim, fmt))
    for _ in range(args.repeats):
        for fmt, cube in cubes.items():
            run = seconds(
                lambda c=cube: probability_map(open_cube(c), concept, versus=versus, logit_scale=100.0)
            )
            times["map"][fmt].append(run)
    shape = f"{args.size}x{args.size}x{args.dim} fp16, chunk 256"
    for what in ("write", "map"):
        v2, v3 = (statistics.median(times[what][fmt]) for fmt in (2, 3))
        emit(
            benchmark=f"gdal_layout.{what}",
            cube=shape,
            zarr_v2_s=round(v2, 3),
            yardstick_zarr_v3_s=round(v3, 3),
            ratio=round(v2 / v3, 3),
            zarr_v2_mpix_per_s=round(args.size**2 / v2 / 1e6, 2),
        )
    v2_bytes, v3_bytes = (disk_bytes(cubes[fmt]) for fmt in (2, 3))
    emit(
        benchmark="gdal_layout.disk",
        cube=shape,
        zarr_v2_bytes=v2_bytes,
        yardstick_zarr_v3_bytes=v3_bytes,
        ratio=round(v2_bytes / v3_bytes, 3),
    )
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
