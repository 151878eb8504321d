"""The default cube layout of ``embed run`` (``--basis auto``) against version 1 (``--basis none``).

For a ``sits`` encoder (Presto-size backbone, 128 wide, random weights) with a linear head into 512-d
(``auto`` = its exact head basis) and with an MLP head (``auto`` = PCA-64 of the run's own embeddings,
through a version-1 staging cube), it measures, against a ``--basis none`` run of the same encoder in the
same process: bytes a pixel of the per-pixel arrays on disk (int8) and the wall time of the run (the
PCA default pays the staging cube, the fit and the rewrite). One JSON line per encoder. Usage:
``python benchmarks/embed_basis.py [--size 128] [--dates 12]`` (a multiple of the 64-pixel chunk).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import emit, seconds
from cube_v2 import pixel_bytes
from embed import YEAR, local_stack
from landprompt.embedder.cube import open_cube
from landprompt.embedder.run import embed_run
from landprompt.eo.local import LocalSource
from landprompt.geo import Grid

HEADS = {"linear": None, "mlp": {"head": "mlp"}}
REPEATS = 2


def bench_head(name: str, source: LocalSource, grid: Grid, folder: Path) -> dict[str, object]:
    """Size and time of the default run against a version-1 run, for one head."""

    def run(basis: str, repeat: int) -> Path:
        return embed_run(
            grid, YEAR, "sits", source, folder / f"{name}-{basis}{repeat}.zarr", encoder_args=HEADS[name],
            random_weights=True, dtype="int8", chunk=64, progress=False, basis=basis, device="cpu",
        )  # fmt: skip

    times: dict[str, list[float]] = {"none": [], "auto": []}
    for repeat in range(REPEATS):  # alternated, the best of each: the least disturbed by other work
        for basis in times:
            times[basis].append(seconds(lambda b=basis, r=repeat: run(b, r)))
    yardstick, default = min(times["none"]), min(times["auto"])
    cube = open_cube(folder / f"{name}-auto0.zarr")
    pixels = grid.rows * grid.cols
    v1_bytes = pixel_bytes(folder / f"{name}-none0.zarr") / pixels
    auto_bytes = pixel_bytes(folder / f"{name}-auto0.zarr") / pixels
    return {
        "figure": f"embed run default layout, sits {name} head",
        "kind": (cube.attrs.get("basis") or {}).get("kind"),
        "format_version": cube.attrs["format_version"],
        "values_a_pixel": int(cube.sizes["k"]) if "k" in cube.sizes else int(cube.sizes["d"]),
        "bytes_per_pixel": round(auto_bytes, 1),
        "yardstick_v1_bytes_per_pixel": round(v1_bytes, 1),
        "size_ratio": round(auto_bytes / v1_bytes, 3),
        "seconds": round(default, 2),
        "yardstick_v1_seconds": round(yardstick, 2),
        "time_ratio": round(default / yardstick, 3),
        "pixels": pixels,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--dates", type=int, default=12)
    args = parser.parse_args()
    with local_stack(args.size, args.dates) as (grid, source, folder):
        for name in HEADS:  # build the encoders and warm torch up on full batches first
            embed_run(
                grid, YEAR, "sits", source, folder / f"warm-{name}.zarr", encoder_args=HEADS[name],
                random_weights=True, progress=False, basis="none", device="cpu",
            )  # fmt: skip
        for name in HEADS:
            emit(**bench_head(name, source, grid, folder))


if __name__ == "__main__":
    main()
