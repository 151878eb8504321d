"""Cost of the cube integrity checks: open time and full-map throughput, with checks against without.

One run writes a synthetic cube (``landprompt`` writer: every chunk stored, CRC32C per chunk, integrity
records) and a copy of it with the checks stripped (no ``crc32c`` codec, the checksum bytes cut from each
chunk, no ``integrity`` attr: what cubes were before), then measures on both, alternating:

* ``open_cube`` (metadata parse of every ``zarr.json``, coordinate check, store set-up), median of repeats;
* a full probability map (``probability_map`` over every chunk), median of repeats;
* ``cube verify`` (every chunk re-read and its sha256 recomputed) against the full map on the checked cube.

Each figure is one JSON line with its yardstick and their ratio. Other work may share the CPU.
Usage: ``python benchmarks/integrity.py [--size 1024] [--dim 64] [--repeats 5] [--workdir DIR]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from affine import Affine

from landprompt.embedder import integrity
from landprompt.embedder.cube import CubeWriter, open_cube, verify
from landprompt.geo import Grid
from landprompt.query.probability import probability_map


def make_cube(path: Path, size: int, dim: int) -> Path:
    grid = Grid("EPSG:3035", Affine(10.0, 0, 4_000_000.0, 0, -10.0, 3_000_000.0), (size, size))
    writer = CubeWriter(path, grid, dim, chunk=256)
    for window in writer.pending():
        rng = np.random.default_rng([2, *window.index])
        vectors = rng.normal(size=(*window.shape, dim)).astype(np.float32)
        writer.write_chunk(window, vectors / np.linalg.norm(vectors, axis=-1, keepdims=True))
    return writer.finalize()


def strip_checks(cube: Path, out: Path) -> Path:
    """A copy of ``cube`` as written before integrity checks: no CRC32C codec, no integrity records."""
    shutil.copytree(cube, out)
    root = json.loads((out / "zarr.json").read_text())
    arrays = root["attributes"].pop(integrity.INTEGRITY_ATTR)["arrays"]
    for name in arrays:
        meta = json.loads((out / name / "zarr.json").read_text())
        meta["codecs"] = [c for c in meta["codecs"] if c["name"] != "crc32c"]
        (out / name / "zarr.json").write_text(json.dumps(meta))
        root["consolidated_metadata"]["metadata"][name]["codecs"] = meta["codecs"]
        for chunk in (out / name / "c").rglob("*"):
            if chunk.is_file():
                chunk.write_bytes(chunk.read_bytes()[:-4])
    (out / "zarr.json").write_text(json.dumps(root))
    return out


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1024, help="Cube side in pixels.")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="landprompt-integrity-"))
    checked = make_cube(workdir / "checked.zarr", args.size, args.dim)
    plain = strip_checks(checked, workdir / "plain.zarr")
    rng = np.random.default_rng(0)
    concept, versus = rng.normal(size=args.dim), rng.normal(size=(8, args.dim))

    def full_map(cube: Path) -> None:
        probability_map(open_cube(cube), concept, versus=versus, logit_scale=100.0)

    times: dict[str, dict[str, list[float]]] = {"open": {}, "map": {}}
    for _ in range(args.repeats):  # alternate, so both see the same machine load
        for label, cube in (("checked", checked), ("plain", plain)):
            times["open"].setdefault(label, []).append(median_time(lambda c=cube: open_cube(c), 5))
            times["map"].setdefault(label, []).append(median_time(lambda c=cube: full_map(c), 1))
    pixels = args.size * args.size
    for what, unit in (("open", "s"), ("map", "s")):
        with_checks = statistics.median(times[what]["checked"])
        without = statistics.median(times[what]["plain"])
        figure = {
            "benchmark": f"integrity.{what}",
            "cube": f"{args.size}x{args.size}x{args.dim} fp16, chunk 256",
            f"with_checks_{unit}": round(with_checks, 4),
            f"without_checks_{unit}": round(without, 4),
            "ratio": round(with_checks / without, 3),
        }
        if what == "map":
            figure["with_checks_mpix_per_s"] = round(pixels / with_checks / 1e6, 2)
            figure["without_checks_mpix_per_s"] = round(pixels / without / 1e6, 2)
        print(json.dumps(figure))
    verify_s = median_time(lambda: verify(checked, progress=False), 1)
    map_s = median_time(lambda: full_map(checked), 1)
    print(
        json.dumps(
            {
                "benchmark": "integrity.verify",
                "verify_s": round(verify_s, 3),
                "full_map_s": round(map_s, 3),
                "ratio": round(verify_s / map_s, 3),
            }
        )
    )
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
