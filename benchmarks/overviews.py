"""Cost of building a cube's overview pyramid and of decoding a version-4 window, against a raw read.

One run writes a synthetic version-4 int8 cube (unit embeddings around a shared mean, in a PCA basis)
and times, best of ``--repeats``:

* ``build_overviews`` (every level written again from scratch);
* ``read_window`` of the whole cube (decoded to float32 embeddings);

each against the yardstick ``iter_raw_chunks`` over the whole cube (the stored arrays read, not decoded),
timed before and after them. Each figure is one JSON line with its yardstick and their ratio. Other work
may share the CPU. Usage: ``python benchmarks/overviews.py [--size 1024] [--chunk 64] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np

from _common import best_time, emit, europe_grid, unit
from landprompt.embedder.basis import fit_pca
from landprompt.embedder.cube import iter_raw_chunks, open_cube, read_window, write_cube
from landprompt.embedder.overviews import build_overviews, overviews_path


def make_cube(path: Path, size: int, chunk: int, dim: int = 32, rank: int = 16) -> Path:
    """A ``size`` x ``size`` version-4 int8 cube of unit vectors around a shared mean (seed 0)."""
    rng = np.random.default_rng(0)
    emb = unit(rng.normal(size=(size, size, dim)) + 3 * rng.normal(size=dim))
    basis = fit_pca(emb[::8, ::8].reshape(-1, dim), rank)
    return write_cube(path, emb, europe_grid(size), dtype="int8", chunk=chunk, basis=basis)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1024, help="Cube side in pixels.")
    parser.add_argument("--chunk", type=int, default=64, help="Chunk side (small: many overview chunks).")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="landprompt-overviews-"))
    cube = make_cube(workdir / "cube.zarr", args.size, args.chunk)

    def raw() -> None:
        for _ in iter_raw_chunks(open_cube(cube)):
            pass

    def overviews() -> None:
        shutil.rmtree(overviews_path(cube), ignore_errors=True)
        build_overviews(cube)

    def decode() -> None:
        read_window(open_cube(cube), slice(None), slice(None))

    described = f"{args.size}x{args.size} v4 int8 (rank 16 of d = 32), chunk {args.chunk}"
    for name, work in (("build_overviews", overviews), ("read_window_whole_cube", decode)):
        yardstick = best_time(raw, args.repeats)
        seconds = best_time(work, args.repeats)
        yardstick = min(yardstick, best_time(raw, args.repeats))
        emit(
            figure=name,
            cube=described,
            seconds=round(seconds, 4),
            yardstick="iter_raw_chunks over the whole cube",
            yardstick_seconds=round(yardstick, 4),
            ratio=round(seconds / yardstick, 2),
        )
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
