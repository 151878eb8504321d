"""Cube format version 2 benchmark: size, fidelity, map speed and public-API top-k, each with its yardstick.

Prints one JSON line a figure, every figure beside a yardstick measured in the same run (the ``v2_*``
layouts are cubes in a basis, written in the current format, version 3):

* ``size``: bytes a pixel on disk (all files of the store / pixels) of version-1 int8 and fp16 cubes at
  d = 512, and version-2 cubes: the exact linear-head layout (``v2_head``: r + 1 codes; r = 128 on Presto
  features, 64 on the planted cube) and PCA-64 of the 512-d embeddings, int8 and fp16 codes;
* ``fidelity``: against exact float32 scores in the 512-d space, for 50 random query vectors and 50 pixel
  embeddings as queries: top-100 recall and the probability error at logit scale 100 against 16 background
  vectors (mean, 99th percentile, max), on (a) real pixels: the official Presto backbone
  (``../shared/data/presto``) over the BigEarthNet Sentinel-2 patches of ``../shared/data`` (one step each)
  with a random linear head into 512-d, and (b) a planted rank-64 cube;
* ``speed``: ``probability_map`` over a >= 10^7-pixel version-2 cube against a numpy streaming read of an
  in-memory array of the bytes the map reads, and against version-1 d = 512 int8 throughput (the three
  interleaved in rounds, best of each, with the load average); 16 concepts in one pass against one;
* ``topk``: ``landprompt.top_k(path, vector, k=10)`` (second call onward) on a 10^6-cell cube against the
  exact numpy scan of the same vectors in memory, with recall@10.

Usage: ``python benchmarks/cube_v2.py [--workdir DIR] [--speed-side 3200] [--topk-side 1000]``.
The CPU is shared with other work on a small machine: read the ratios, not the times.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from affine import Affine

import landprompt
from landprompt.embedder.basis import fit_pca, linear_head_basis
from landprompt.embedder.cube import CubeWriter, read_window, write_cube
from landprompt.geo import Grid
from landprompt.index.build import build_index
from landprompt.query.scoring import iter_scores
from landprompt.query.session import open_session

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
S2 = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")


RECORDS: list[dict[str, object]] = []


def emit(**record: object) -> None:
    RECORDS.append(record)
    print(json.dumps(record), flush=True)


def fidelity_table(records: list[dict[str, object]]) -> str:
    """The fidelity records as a Markdown table (one row a data set and layout)."""
    rows = [r for r in records if r.get("figure") == "fidelity" and "layout" in r]
    head = (
        "| data | layout | rank | explained var. | B/px | top-100 recall "
        "| p err mean | p err p99 | p err max |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    lines = [
        f"| {r['data']} | {r['layout']} | {r['rank'] or '-'} | "
        f"{'-' if r['explained_variance'] is None else format(r['explained_variance'], '.5f')} | "
        f"{r['pixel_array_bytes_per_pixel']} | {r['top100_recall']:.3f} | {r['prob_err_mean']:.5f} | "
        f"{r['prob_err_p99']:.4f} | {r['prob_err_max']:.3f} |"
        for r in rows
    ]
    return "\n".join([head, *lines])


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def grid(rows: int, cols: int) -> Grid:
    return Grid(3035, Affine(10.0, 0.0, 4_000_000.0, 0.0, -10.0, 3_000_000.0), (rows, cols))


def store_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def pixel_bytes(path: Path) -> int:
    """Bytes of the per-pixel arrays (values, scale, valid): what a pixel costs at Europe scale."""
    return sum(
        store_bytes(path / name) for name in ("embedding", "code", "scale", "valid") if (path / name).exists()
    )


def write_features(path: Path, g: Grid, features: np.ndarray, basis, dtype: str, chunk: int = 512) -> Path:
    writer = CubeWriter(path, g, basis.dim, dtype, chunk, basis=basis)  # type: ignore[arg-type]
    for w in writer.windows():
        writer.write_chunk(w, features[w.rows, w.cols], features=True)
    return writer.finalize()


# --- data ------------------------------------------------------------------------------------------


def presto_features(stride: int = 2) -> np.ndarray | None:
    """Presto backbone embeddings (n, 128) of the BigEarthNet S2 patches' pixels (every ``stride``-th)."""
    from landprompt.embedder.models.presto import load_presto_encoder
    from landprompt.embedder.models.sits import presto_inputs

    weights = DATA / "presto" / "default_model.pt"
    patches = sorted((DATA / "bigearthnet-tiny" / "s2-tiny").glob("S2*"))
    if not weights.is_file() or not patches:
        return None
    encoder = load_presto_encoder(weights).eval()
    out = []
    for patch in patches:
        bands = []
        for band in S2:
            with rasterio.open(next(patch.glob(f"*_{band}.tif"))) as src:
                values = src.read(1).astype(np.float64)
            bands.append(np.kron(values, np.ones((120 // values.shape[0],) * 2))[::stride, ::stride])
        s2 = np.stack(bands, -1).reshape(-1, 1, len(S2))  # one monthly step a pixel
        x, mask = presto_inputs(s2=s2)
        with torch.no_grad():
            emb = encoder(
                torch.from_numpy(x),
                mask=torch.from_numpy(mask),
                latlon=torch.tensor([[45.0, 5.0]]).expand(len(x), 2),
                month=6,
            )
        out.append(emb.numpy())
    return np.concatenate(out).astype(np.float32)


def planted(n: int, rank: int, dim: int, rng: np.random.Generator, clusters: int = 0):
    """Features (n, rank) (clustered if asked), a random linear head (dim, rank) + bias into ``dim``."""
    if clusters:
        centres = rng.normal(size=(clusters, rank))
        z = centres[rng.integers(clusters, size=n)] + 0.3 * rng.normal(size=(n, rank))
    else:
        z = rng.normal(size=(n, rank))
    weight = rng.normal(size=(dim, rank)) / np.sqrt(rank)
    bias = 0.3 * rng.normal(size=dim)
    return z.astype(np.float32), weight.astype(np.float32), bias.astype(np.float32)


# --- fidelity --------------------------------------------------------------------------------------


def fidelity(name: str, work: Path, z: np.ndarray, weight: np.ndarray, bias: np.ndarray, rng) -> None:
    """Recall and probability error of each layout against exact float32 scores in 512-d."""
    n = len(z)
    side = int(np.floor(np.sqrt(n)))
    z = z[: side * side]
    exact = unit(z @ weight.T + bias)
    g = grid(side, side)
    queries = np.concatenate([unit(rng.normal(size=(50, exact.shape[1]))), exact[rng.choice(len(exact), 50)]])
    background = exact[rng.choice(len(exact), 16, replace=False)]
    truth_scores = exact @ queries.T
    layouts = {
        "v1_int8_d512": lambda p: write_cube(p, exact.reshape(side, side, -1), g, dtype="int8", chunk=512),
        "v2_head_int8": lambda p: write_features(
            p, g, z.reshape(side, side, -1), linear_head_basis(weight, bias), "int8"
        ),
        "v2_head_fp16": lambda p: write_features(
            p, g, z.reshape(side, side, -1), linear_head_basis(weight, bias), "fp16"
        ),
        "v2_pca64_int8": lambda p: write_cube(
            p,
            exact.reshape(side, side, -1),
            g,
            dtype="int8",
            chunk=512,
            basis=fit_pca(exact[:: max(1, len(exact) // 50_000)], 64, None),
        ),
        "v2_pca64_fp16": lambda p: write_cube(
            p,
            exact.reshape(side, side, -1),
            g,
            dtype="fp16",
            chunk=512,
            basis=fit_pca(exact[:: max(1, len(exact) // 50_000)], 64, None),
        ),
        "v2_pca_var999_int8": lambda p: write_cube(
            p,
            exact.reshape(side, side, -1),
            g,
            dtype="int8",
            chunk=512,
            basis=fit_pca(exact[:: max(1, len(exact) // 50_000)], 64, 0.999),
        ),
    }
    for layout, make in layouts.items():
        path = make(work / f"{name}_{layout}.zarr")
        ds = landprompt.open_cube(path)
        scores = np.concatenate([s.reshape(-1, len(queries)) for _, s, _ in iter_scores(ds, queries)])
        recall = np.mean(
            [
                len(np.intersect1d(np.argsort(-scores[:, q])[:100], np.argsort(-truth_scores[:, q])[:100]))
                / 100
                for q in range(len(queries))
            ]
        )
        session = open_session(path)
        errors = []
        for q in range(len(queries)):
            got = session.probability_window(
                slice(0, side), slice(0, side), queries[q : q + 1], background, 100.0
            )
            logits = 100.0 * np.concatenate([truth_scores[:, q : q + 1], exact @ background.T], axis=1)
            logits -= logits.max(axis=1, keepdims=True)
            want = np.exp(logits[:, 0]) / np.exp(logits).sum(axis=1)
            errors.append(np.abs(got.reshape(-1) - want))
        err = np.concatenate(errors)
        emit(
            figure="fidelity",
            data=name,
            layout=layout,
            pixels=side * side,
            rank=ds.sizes.get("r"),
            explained_variance=ds.attrs.get("basis", {}).get("info", {}).get("explained_variance"),
            top100_recall=round(float(recall), 4),
            prob_err_mean=round(float(err.mean()), 5),
            prob_err_p99=round(float(np.percentile(err, 99)), 5),
            prob_err_max=round(float(err.max()), 4),
            yardstick="exact float32 scores in the 512-d space",
            bytes_per_pixel=round(store_bytes(path) / side**2, 1),
            pixel_array_bytes_per_pixel=round(pixel_bytes(path) / side**2, 1),
        )


# --- speed -----------------------------------------------------------------------------------------


def map_rate(path: Path, concept: np.ndarray, background: np.ndarray) -> float:
    """Pixels a second of one probability_map call."""
    start = time.perf_counter()
    out = landprompt.probability_map(path, concept, versus=background, logit_scale=100.0)
    return out.size / (time.perf_counter() - start)


def bandwidth(arr: np.ndarray) -> float:
    """Bytes a second of a numpy streaming read (bitwise-or reduce over uint64) of an in-memory array."""
    start = time.perf_counter()
    np.bitwise_or.reduce(arr)
    return arr.nbytes / (time.perf_counter() - start)


def _divisor_chunk(side: int, target: int = 1024) -> int:
    """The chunk size nearest ``target`` that divides ``side`` (no padded edge chunks in the figures)."""
    return min((c for c in range(256, 2049) if side % c == 0), key=lambda c: abs(c - target), default=target)


def speed(work: Path, side: int, rng, rounds: int = 3) -> None:
    z, weight, bias = planted(side * side, 64, 128, rng)
    v2 = write_features(
        work / "speed_v2.zarr",
        grid(side, side),
        z.reshape(side, side, 64),
        linear_head_basis(weight, bias),
        "int8",
        chunk=_divisor_chunk(side),
    )
    del z
    read_bytes = pixel_bytes(v2)
    concept, background = unit(rng.normal(size=128)), unit(rng.normal(size=(16, 128)))
    # version 1, d = 512, int8: a 512 x 512 cube (the rate per pixel does not depend on the size)
    z1, w1, b1 = planted(512 * 512, 64, 512, rng)
    v1 = write_cube(
        work / "speed_v1.zarr",
        unit(z1 @ w1.T + b1).reshape(512, 512, 512),
        grid(512, 512),
        dtype="int8",
        chunk=256,
    )
    concept1, background1 = unit(rng.normal(size=512)), unit(rng.normal(size=(16, 512)))
    arr = np.random.default_rng(0).integers(0, 255, size=read_bytes // 8 * 8, dtype=np.uint8).view(np.uint64)
    load = os.getloadavg()[0]
    landprompt.probability_map(v2, concept, versus=background, logit_scale=100.0)  # opens the session
    rates_v2, rates_bw, rates_v1 = [], [], []
    for _ in range(rounds):  # interleaved, so each yardstick meets the same load; best of the rounds
        rates_v2.append(map_rate(v2, concept, background))
        rates_bw.append(bandwidth(arr))
        rates_v1.append(map_rate(v1, concept1, background1))
    del arr
    rate_v2, bw, rate_v1 = max(rates_v2), max(rates_bw), max(rates_v1)
    emit(
        figure="speed",
        pixels=side * side,
        map_pixels_per_s=round(rate_v2),
        map_pixels_per_s_rounds=[round(r) for r in rates_v2],
        bytes_per_pixel_read=round(read_bytes / side**2, 1),
        map_bytes_per_s=round(rate_v2 * read_bytes / side**2),
        yardstick_numpy_read_bytes_per_s=round(bw),
        fraction_of_bandwidth=round(rate_v2 * read_bytes / side**2 / bw, 3),
        v1_int8_d512_pixels_per_s=round(rate_v1),
        speedup_vs_v1=round(rate_v2 / rate_v1, 1),
        threads=torch.get_num_threads(),
        load_average=[round(load, 1), round(os.getloadavg()[0], 1)],
    )
    session = open_session(v2)
    rows, cols = slice(0, side), slice(0, side)
    times: dict[int, list[float]] = {1: [], 16: []}
    for _ in range(rounds):
        for m in (1, 16):
            concepts = unit(rng.normal(size=(m, 128)))
            start = time.perf_counter()
            session.probability_window(rows, cols, concepts, background, 100.0)
            times[m].append(time.perf_counter() - start)
    one, sixteen = min(times[1]), min(times[16])
    emit(
        figure="speed_16_concepts",
        seconds_1=round(one, 2),
        seconds_16=round(sixteen, 2),
        ratio_16_vs_1=round(sixteen / one, 2),
        yardstick="one concept, same pass",
    )


# --- top-k -----------------------------------------------------------------------------------------


def topk(work: Path, side: int, rng, n_queries: int = 30, dtypes: tuple[str, ...] = ("int8", "fp16")) -> None:
    """Public-API top-k on a 10^6-cell cube against the exact numpy scan of the same vectors in memory.

    Recall@10 is given against the float32 vectors the cube was written from (what the user asked) and
    against an exact scan of the cube's own decoded vectors (what the index alone loses).
    """
    z, weight, bias = planted(side * side, 64, 128, rng, clusters=512)
    vectors = unit(z @ weight.T + bias)  # the same vectors, exact float32, in memory
    queries = vectors[rng.choice(len(vectors), n_queries)] + 0.05 * rng.normal(size=(n_queries, 128))
    queries = unit(queries.astype(np.float32))
    for dtype in dtypes:
        path = write_features(
            work / f"topk_{dtype}.zarr",
            grid(side, side),
            z.reshape(side, side, 64),
            linear_head_basis(weight, bias),
            dtype,
        )
        info = build_index(path, progress=False)
        decoded = read_window(landprompt.open_cube(path), slice(0, side), slice(0, side))[0].reshape(
            side**2, -1
        )
        landprompt.top_k(path, queries[0], k=10)  # first call: opens the session
        api_times, scan_times, recalls, recalls_cube = [], [], [], []
        for q in queries:
            start = time.perf_counter()
            places = landprompt.top_k(path, q, k=10)
            api_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            scores = vectors @ q
            top = np.argpartition(-scores, 10)[:10]
            top = top[np.argsort(-scores[top])]
            scan_times.append(time.perf_counter() - start)
            got = set((places["row"] * side + places["col"]).tolist())
            recalls.append(len(got & set(top.tolist())) / 10)
            cube_top = np.argpartition(-(decoded @ q), 10)[:10]
            recalls_cube.append(len(got & set(cube_top.tolist())) / 10)
        api, scan = float(np.median(api_times)), float(np.median(scan_times))
        emit(
            figure="topk",
            cells=side * side,
            codes=dtype,
            factory=info.factory,
            nprobe=info.nprobe,
            space=info.space,
            api_ms=round(api * 1e3, 2),
            yardstick_numpy_scan_ms=round(scan * 1e3, 2),
            speedup=round(scan / api, 1),
            recall_at_10=round(float(np.mean(recalls)), 3),
            recall_at_10_vs_cube_scan=round(float(np.mean(recalls_cube)), 3),
            index_bytes_per_cell=round(path.with_suffix(".faiss").stat().st_size / side**2, 1),
            repeats=n_queries,
        )
        del decoded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--speed-side", type=int, default=3200)
    parser.add_argument("--topk-side", type=int, default=1000)
    parser.add_argument("--only", nargs="*", default=["fidelity", "speed", "topk"])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        if "fidelity" in args.only:
            features = presto_features()
            head = rng.normal(size=(512, 128)).astype(np.float32) / np.sqrt(128)
            bias = (0.1 * rng.normal(size=512)).astype(np.float32)
            if features is None:
                emit(
                    figure="fidelity",
                    data="presto",
                    skipped="../shared/data/presto or bigearthnet-tiny missing",
                )
            else:
                fidelity("presto_bigearthnet", work, features, head, bias, rng)
            fidelity("planted_rank64", work, *planted(256 * 256, 64, 512, rng), rng)
        if "speed" in args.only:
            speed(work, args.speed_side, rng)
        if "topk" in args.only:
            topk(work, args.topk_side, rng)
    if any(r.get("figure") == "fidelity" for r in RECORDS):
        print(fidelity_table(RECORDS))


if __name__ == "__main__":
    main()
