"""Query-engine benchmark: FAISS top-10 vs an exact numpy scan, and map throughput vs a raw read.

For synthetic cubes of 10^6 and 10^7 cells with clustered embeddings (spatial patches drawn from a few
hundred cluster centres, like land-cover parcels), it measures in one run:

* top-10 latency of the index that ``landprompt index build`` chooses for the cube's size, one query
  at a time (median over the query stream), against the exact scan (numpy brute force over the same
  vectors, already in memory) answering the same stream;
  recall@10 of the index's ids against the exact ids;
* probability-map throughput (``probability_map``, streamed chunk by chunk) against a numpy
  streaming read of the same chunks (zarr decode into arrays, no scoring).

Each figure is printed as one JSON line with its yardstick and their ratio. Usage:
``python benchmarks/query.py [--cells 1e6 1e7] [--dim 64] [--queries 50] [--workdir DIR]``.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

from _common import emit, europe_grid, unit
from landprompt.embedder.cube import CubeWriter, iter_chunks, open_cube
from landprompt.index.build import build_index
from landprompt.index.search import CubeIndex
from landprompt.query.probability import probability_map

N_CLUSTERS = 256
PATCH = 32  # pixels per side of one land-cover patch


def make_cube(path: Path, cells: int, dim: int, centres: np.ndarray) -> Path:
    """A square-ish cube of ``cells`` pixels: patches of one cluster each, plus per-pixel noise."""
    rows = int(math.sqrt(cells))
    cols = cells // rows
    writer = CubeWriter(path, europe_grid(rows, cols), dim, chunk=256)
    for window in writer.pending():
        rng = np.random.default_rng([1, *window.index])
        r = np.arange(window.rows.start, window.rows.stop) // PATCH
        c = np.arange(window.cols.start, window.cols.stop) // PATCH
        patch_id = (r[:, None] * 7919 + c[None, :] * 104_729) % N_CLUSTERS
        noise = rng.normal(0, 0.35 / math.sqrt(dim), (*window.shape, dim)).astype(np.float32)
        writer.write_chunk(window, unit(centres[patch_id] + noise))
    return writer.finalize()


def all_vectors(ds) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Every pixel as float32 rows in id order (row * cols + col) for the exact scan."""
    rows, cols, dim = ds.sizes["y"], ds.sizes["x"], ds.sizes["d"]
    out = np.empty((rows, cols, dim), np.float32)
    for window, embedding, _ in iter_chunks(ds):
        out[window.rows, window.cols] = embedding
    return out.reshape(-1, dim)


def exact_top10(vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    scores = vectors @ query
    top = np.argpartition(-scores, 10)[:10]
    return top[np.argsort(-scores[top])]


def bench_topk(cube: Path, centres: np.ndarray, n_queries: int) -> dict:
    t0 = time.perf_counter()
    info = build_index(cube, progress=False)
    build_s = time.perf_counter() - t0
    index = CubeIndex.open(cube.with_suffix(".faiss"), cube)
    vectors = all_vectors(open_cube(cube))
    rng = np.random.default_rng(5)
    queries = unit(
        centres[rng.integers(0, N_CLUSTERS, n_queries)]
        + rng.normal(0, 0.5 / 8, (n_queries, centres.shape[1]))
    )
    # each method answers the whole query stream in turn (as ann-benchmarks does): interleaving them
    # would flush the index's cache-sized working set with every 4 d-byte-per-cell exact scan
    exact_s, index_s, truths, recalls = [], [], [], []
    for q in queries:
        t = time.perf_counter()
        truths.append(exact_top10(vectors, q))
        exact_s.append(time.perf_counter() - t)
    cols = index.grid.cols
    for q, truth in zip(queries, truths, strict=True):
        t = time.perf_counter()
        hits = index.search(q[None], 10)
        index_s.append(time.perf_counter() - t)
        found = hits.rows[0] * cols + hits.cols[0]
        recalls.append(len(set(found.tolist()) & set(truth.tolist())) / 10)
    exact_ms, index_ms = 1e3 * float(np.median(exact_s)), 1e3 * float(np.median(index_s))
    return {
        "benchmark": "top10_latency",
        "cells": int(vectors.shape[0]),
        "dim": int(vectors.shape[1]),
        "factory": info.factory,
        "nprobe": info.nprobe,
        "index_ms": round(index_ms, 3),
        "yardstick": "exact numpy scan (in-memory float32 matrix-vector + argpartition)",
        "exact_ms": round(exact_ms, 3),
        "speedup": round(exact_ms / index_ms, 1),
        "recall_at_10": round(float(np.mean(recalls)), 4),
        "index_build_s": round(build_s, 1),
    }


def bench_map(cube: Path, centres: np.ndarray) -> dict:
    ds = open_cube(cube)
    group = zarr.open_group(str(cube), mode="r")
    t = time.perf_counter()
    n_bytes = 0
    rows, cols = ds.sizes["y"], ds.sizes["x"]
    for r in range(0, rows, 256):
        for c in range(0, cols, 256):
            emb = group["embedding"][r : r + 256, c : c + 256].astype(np.float32)
            valid = group["valid"][r : r + 256, c : c + 256]
            n_bytes += emb.nbytes // 2 + valid.nbytes
    read_s = time.perf_counter() - t
    concept, background = centres[0], centres[1:17]
    t = time.perf_counter()
    prob = probability_map(ds, concept, versus=background, logit_scale=100.0)
    map_s = time.perf_counter() - t
    cells = rows * cols
    return {
        "benchmark": "probability_map_throughput",
        "cells": cells,
        "dim": int(ds.sizes["d"]),
        "map_mcells_per_s": round(cells / map_s / 1e6, 2),
        "yardstick": "numpy streaming read of the same zarr chunks (decode to float32, no scoring)",
        "read_mcells_per_s": round(cells / read_s / 1e6, 2),
        "ratio": round(read_s / map_s, 3),
        "read_gb": round(n_bytes / 1e9, 2),
        "valid_mean_p": round(float(np.nanmean(prob.values)), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=float, nargs="+", default=[1e6, 1e7])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    centres = unit(np.random.default_rng(0).normal(size=(N_CLUSTERS, args.dim)))
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for cells in args.cells:
            cube = make_cube(Path(tmp) / f"bench_{int(cells)}.zarr", int(cells), args.dim, centres)
            emit(**bench_topk(cube, centres, args.queries))
            emit(**bench_map(cube, centres))


if __name__ == "__main__":
    main()
