"""Cost of the cube integrity checks: open time and full-map throughput, with checks against without.

One run writes a synthetic cube (``landprompt`` writer: every chunk stored, CRC32C per chunk, integrity
records) and measures it with its checks against without, alternating:

* ``--layout fp16`` (version 1, zstd): against a copy with the checks stripped (no ``crc32c`` codec, the
  checksum bytes cut from each chunk, no ``integrity`` attr: what cubes were before);
* ``--layout v2-int8`` (version 2, int8 codes of a rank-64 basis stored raw, read straight from the chunk
  files): against the same cube read with the CRC32C computation switched off (the only work the checks
  add to that read path; a missing chunk file fails the read either way).

The figures:

* ``open_cube`` (metadata parse of every ``zarr.json``, coordinate check, store set-up), median of repeats;
* a full probability map (``probability_map`` over every chunk), median of repeats;
* the CRC32C of every chunk file (held in memory) against the full map with checks: the checks' own work;
* ``cube verify`` (every chunk re-read and its sha256 recomputed) against the full map on the checked cube;
* ``CubeIndex.open`` of a Flat index over the cube with its freshness check (content hash and the file
  fingerprint: names, sizes, mtimes of the cube's files) against the same open with the fingerprint check
  switched off, and the open of a cube whose files were touched (the fingerprint differs, so every chunk's
  digest is recomputed) against the same yardstick. ``--only index-open`` prints just these.

Each figure is one JSON line with its yardstick and their ratio. Other work may share the CPU.
Usage: ``python benchmarks/integrity.py [--layout v2-int8] [--size 1024] [--dim 64] [--repeats 5]
[--only index-open]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np

from _common import emit, europe_grid, median_time, random_cube
from landprompt.embedder import integrity
from landprompt.embedder.basis import linear_head_basis
from landprompt.embedder.cube import CubeWriter, open_cube, verify
from landprompt.index import search
from landprompt.index.build import build_index
from landprompt.query.probability import probability_map


def make_v2_cube(path: Path, size: int, dim: int, rank: int = 64) -> Path:
    """A version-2 int8 cube of rank ``rank`` (a random linear head into ``dim``), chunk 256."""
    rng = np.random.default_rng(1)
    basis = linear_head_basis(rng.normal(size=(dim, rank)), 0.1 * rng.normal(size=dim))
    writer = CubeWriter(path, europe_grid(size), dim, "int8", chunk=256, basis=basis)
    for window in writer.pending():
        features = np.random.default_rng([2, *window.index]).normal(size=(*window.shape, rank))
        writer.write_chunk(window, features.astype(np.float32), features=True)
    return writer.finalize()


@contextmanager
def crc_off() -> Iterator[None]:
    """Reads with the CRC32C computation switched off (every chunk passes)."""
    real = integrity.crc_ok
    integrity.crc_ok = lambda data: True  # type: ignore[assignment]
    try:
        yield
    finally:
        integrity.crc_ok = real


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


def fingerprint_off(recorded: str) -> Any:
    """Index opens with the file fingerprint check switched off (the fingerprint always matches)."""
    return patch.object(search, "files_fingerprint", lambda cube: recorded)


def index_open_figures(cube: Path, described: str, repeats: int) -> None:
    """Print the cost of the index freshness check at open, against an open without it."""
    index = cube.with_suffix(".faiss")
    info = build_index(cube, index, factory="Flat", progress=False, verify=False)
    search.CubeIndex.open(index)  # warm-up
    times: dict[str, list[float]] = {"checked": [], "plain": []}
    for _ in range(repeats):  # alternate, so both see the same machine load
        times["checked"].append(median_time(lambda: search.CubeIndex.open(index), 3))
        with fingerprint_off(info.cube_files):
            times["plain"].append(median_time(lambda: search.CubeIndex.open(index), 3))
    fingerprint_s = median_time(lambda: integrity.files_fingerprint(cube), 5 * repeats)
    checked, plain = statistics.median(times["checked"]), statistics.median(times["plain"])
    base = {"cube": described, "index": f"Flat, {info.ntotal} vectors of {info.dim}-d", "repeats": repeats}
    figure = {"with_fingerprint_s": round(checked, 4), "without_fingerprint_s": round(plain, 4)}
    emit(benchmark="integrity.index_open", **base, **figure, ratio=round(checked / plain, 3))
    emit(
        benchmark="integrity.index_fingerprint",
        what="the file fingerprint alone, against an index open without it",
        files=sum(1 for f in cube.rglob("*") if f.is_file()),
        fingerprint_s=round(fingerprint_s, 5),
        open_without_s=round(plain, 4),
        ratio=round(fingerprint_s / plain, 4),
    )
    some_chunk = next(f for f in sorted((cube / "valid" / "c").rglob("*")) if f.is_file())
    os.utime(some_chunk)  # same bytes, new mtime (as a copy): the chunk digests decide
    touched_s = median_time(lambda: search.CubeIndex.open(index), 1)
    emit(
        benchmark="integrity.index_open_touched",
        what="open after a cube file was touched (all digests recomputed), against a plain open",
        **base,
        touched_open_s=round(touched_s, 3),
        without_fingerprint_s=round(plain, 4),
        ratio=round(touched_s / plain, 2),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--layout", choices=("v2-int8", "fp16"), default="v2-int8")
    parser.add_argument("--size", type=int, default=1024, help="Cube side in pixels.")
    parser.add_argument("--dim", type=int, default=64, help="Embedding dimension (v2-int8: d, rank 64).")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--only", choices=("index-open",), default=None, help="Print only these figures.")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="landprompt-integrity-"))
    if args.layout == "fp16":
        checked = random_cube(workdir / "checked.zarr", args.size, args.dim)
        plain = strip_checks(checked, workdir / "plain.zarr")
        variants: tuple[tuple[str, Path, Any], ...] = (
            ("checked", checked, nullcontext),
            ("plain", plain, nullcontext),
        )
        described = f"{args.size}x{args.size}x{args.dim} fp16, chunk 256"
    else:
        checked = make_v2_cube(workdir / "checked.zarr", args.size, args.dim)
        variants = (("checked", checked, nullcontext), ("plain", checked, crc_off))
        described = f"{args.size}x{args.size} v2 int8 codes (rank 64 of d = {args.dim}), chunk 256"
    if args.only == "index-open":
        index_open_figures(checked, described, args.repeats)
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
        return
    rng = np.random.default_rng(0)
    concept, versus = rng.normal(size=args.dim), rng.normal(size=(8, args.dim))

    def full_map(cube: Path) -> None:
        probability_map(open_cube(cube), concept, versus=versus, logit_scale=100.0)

    full_map(checked)  # warm-up: imports and first-call set-up are no part of either figure
    times: dict[str, dict[str, list[float]]] = {"open": {}, "map": {}}
    for _ in range(args.repeats):  # alternate, so both see the same machine load
        for label, cube, context in variants:
            with context():
                times["open"].setdefault(label, []).append(median_time(lambda c=cube: open_cube(c), 5))
                times["map"].setdefault(label, []).append(median_time(lambda c=cube: full_map(c), 1))
    pixels = args.size * args.size
    for what, unit in (("open", "s"), ("map", "s")):
        with_checks = statistics.median(times[what]["checked"])
        without = statistics.median(times[what]["plain"])
        figure = {
            "benchmark": f"integrity.{what}",
            "cube": described,
            "repeats": args.repeats,
            f"with_checks_{unit}": round(with_checks, 4),
            f"without_checks_{unit}": round(without, 4),
            "ratio": round(with_checks / without, 3),
        }
        if what == "map":
            figure["with_checks_mpix_per_s"] = round(pixels / with_checks / 1e6, 2)
            figure["without_checks_mpix_per_s"] = round(pixels / without / 1e6, 2)
        emit(**figure)
    attrs = json.loads((checked / "zarr.json").read_text())["attributes"]
    recorded = attrs[integrity.INTEGRITY_ATTR]["arrays"]
    files = [f for name in recorded for f in sorted((checked / name / "c").rglob("*")) if f.is_file()]
    chunks = [np.fromfile(f, dtype=np.uint8) for f in files]
    crc_s = median_time(lambda: all(integrity.crc_ok(c) for c in chunks), args.repeats)
    emit(
        benchmark="integrity.crc_share",
        what="CRC32C of every chunk file held in memory, against a full map with checks",
        chunk_bytes=int(sum(c.size for c in chunks)),
        crc_s=round(crc_s, 4),
        full_map_s=round(statistics.median(times["map"]["checked"]), 4),
        ratio=round(crc_s / statistics.median(times["map"]["checked"]), 4),
    )
    verify_s = median_time(lambda: verify(checked, progress=False), 1)
    map_s = median_time(lambda: full_map(checked), 1)
    emit(
        benchmark="integrity.verify",
        verify_s=round(verify_s, 3),
        full_map_s=round(map_s, 3),
        ratio=round(verify_s / map_s, 3),
    )
    index_open_figures(checked, described, args.repeats)
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
