"""Cubes in a basis (format version 4) benchmark: size, fidelity, map speed and public-API top-k.

Prints one JSON line a figure, every figure beside a yardstick measured in the same run (the ``v4_*``
layouts are cubes in a basis, written in the current format, version 4):

* ``size``: bytes a pixel on disk of the per-pixel arrays (values, valid, scale if any, over the pixels) of
  version-1 int8 cubes at d = 512 and cubes in a basis: the exact linear-head layout (``v4_head``: r + 1
  codes with a bias, r without; r = 128 on Presto features, 64 on the planted cube; the ``bottleneck64``
  data: a head through a 64-d bottleneck without bias) and PCA-64 of the 512-d embeddings, int8 and fp16
  codes (``_norot``: without the basis's seeded rotation; ``_centered``: the head's offset code along the
  mean embedding of other pixels than the evaluated ones, what ``embed run`` writes for a checkpoint that
  recorded its head input's moments, instead of along the bias; ``_centered_patchN``: on Presto, with the
  moments of the other pixels of patch N alone, one land cover for the three patches scored;
  ``presto_patchN``: patch N's pixels alone, centred on the moments of all the patches' other pixels, as
  a tile's cube on a broader training set's moments, or of its own other pixels, ``_own``);
* ``fidelity``: against exact float32 scores in the 512-d space, for 50 random query vectors and 50 pixel
  embeddings as queries: top-100 recall and the probability error at logit scale 100 against 16 background
  vectors (mean, 99th percentile, max), on (a) real pixels: the official Presto backbone
  (``../shared/data/presto``) over the BigEarthNet Sentinel-2 patches of ``../shared/data`` (one step each)
  with a random linear head into 512-d, and (b) a planted rank-64 cube;
* ``speed``: ``probability_map`` over a >= 10^7-pixel version-4 cube against a numpy streaming read of an
  in-memory array of the bytes the map reads, and against version-1 d = 512 int8 throughput (interleaved
  in rounds, best of each, with the load average), by the fused kernel and by the torch path alone
  (``torch_path_*``: the code before it), with the CPU time a pixel of each; 16 concepts in one pass
  against one, by both; one concept against 17 (the shipped vocabulary) and 32 background columns
  against 16, by both;
* ``topk``: ``landprompt.top_k(path, vector, k=10)`` (second call onward) on a 10^6-cell cube against the
  exact numpy scan of the same vectors in memory, with recall@10 against that scan and against a scan of
  the cube's own (decoded) vectors; ``topk_nprobe``: the same for other IVF ``nprobe`` values.
* ``topk_shards``: the same over a folder of 4 shards of that cube (``landprompt.top_k(folder, ...)``, each
  shard with its own index), against the same numpy scan, with recall@10 against it.

* ``topk_cli``: ``landprompt query topk CUBE PROMPT`` per call (a new process), for a prompt new to the
  prompt cache and one asked before, against ``python -c pass`` and ``import landprompt.cli``.

Usage: ``python benchmarks/cube_v2.py [--workdir DIR] [--speed-side 3200] [--topk-side 1000]
[--only fidelity speed topk topk_shards topk_cli] [--seed 0]`` (``--seed``: the speed and top-k data;
each figure draws its own, so a figure does not depend on which ran before it).
The CPU is shared with other work on a small machine: read the ratios, not the times.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
import torch

import _common
import landprompt
from _common import disk_bytes, europe_grid, seconds, unit
from landprompt.embedder.basis import ROTATION_SEED, fit_pca, linear_head_basis
from landprompt.embedder.cube import CubeWriter, read_window, write_cube
from landprompt.geo import Grid
from landprompt.index.build import build_index
from landprompt.query import fused, scoring
from landprompt.query.scoring import iter_scores
from landprompt.query.session import open_session

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
S2 = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")


RECORDS: list[dict[str, object]] = []
#: The layouts of a head without bias (its cube stores r codes a pixel).
HEAD_LAYOUTS = ("v1_int8_d512", "v4_head_")


def emit(**record: object) -> None:
    RECORDS.append(_common.emit(**record))


def fidelity_table(records: list[dict[str, object]]) -> str:
    """The fidelity records as a Markdown table (one row a data set and layout)."""
    rows = [r for r in records if r.get("figure") == "fidelity" and "layout" in r]
    head = (
        "| data | layout | rank | codes | explained var. | B/px | top-100 recall "
        "| p err mean | p err p99 | p err max |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [
        f"| {r['data']} | {r['layout']} | {r['rank'] or '-'} | {r['codes'] or '-'} | "
        f"{'-' if r['explained_variance'] is None else format(r['explained_variance'], '.5f')} | "
        f"{r['pixel_array_bytes_per_pixel']} | {r['top100_recall']:.3f} | {r['prob_err_mean']:.5f} | "
        f"{r['prob_err_p99']:.4f} | {r['prob_err_max']:.3f} |"
        for r in rows
    ]
    return "\n".join([head, *lines])


def pixel_bytes(path: Path) -> int:
    """Bytes of the per-pixel arrays (values, scale, valid): what a pixel costs at Europe scale."""
    return sum(
        disk_bytes(path / name) for name in ("embedding", "code", "scale", "valid") if (path / name).exists()
    )


def write_features(path: Path, g: Grid, features: np.ndarray, basis, dtype: str, chunk: int = 512) -> Path:
    writer = CubeWriter(path, g, basis.dim, dtype, chunk, basis=basis)  # type: ignore[arg-type]
    for w in writer.windows():
        writer.write_chunk(w, features[w.rows, w.cols], features=True)
    return writer.finalize()


# --- data ------------------------------------------------------------------------------------------


def presto_patches() -> list[Path]:
    """The BigEarthNet S2 patch folders (120 x 120 pixels at 10 m each)."""
    return sorted((DATA / "bigearthnet-tiny" / "s2-tiny").glob("S2*"))


def presto_features(stride: int = 2, start: int = 0) -> np.ndarray | None:
    """Presto backbone embeddings (n, 128) of the BigEarthNet S2 patches' pixels (every ``stride``-th
    from ``start``: ``start=1`` gives pixels disjoint from ``start=0``'s)."""
    from landprompt.embedder.models.presto import load_presto_encoder
    from landprompt.embedder.models.sits import presto_inputs

    weights = DATA / "presto" / "default_model.pt"
    patches = presto_patches()
    if not weights.is_file() or not patches:
        return None
    encoder = load_presto_encoder(weights).eval()
    out = []
    for patch in patches:
        bands = []
        for band in S2:
            with rasterio.open(next(patch.glob(f"*_{band}.tif"))) as src:
                values = src.read(1).astype(np.float64)
            bands.append(
                np.kron(values, np.ones((120 // values.shape[0],) * 2))[start::stride, start::stride]
            )
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


def fidelity(
    name: str,
    work: Path,
    z: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    rng,
    held_out: dict[str, np.ndarray],
    only: tuple[str, ...] | None = None,
) -> None:
    """Recall and probability error of each layout against exact float32 scores in 512-d.

    ``held_out``: features of other pixels than ``z``'s by a layout suffix, whose mean and covariance
    centre the ``_centered`` head layouts (as a checkpoint's recorded moments do in ``embed run``);
    ``only``: the prefixes of the layouts to measure (default all).
    """
    n = len(z)
    side = int(np.floor(np.sqrt(n)))
    z = z[: side * side]
    exact = unit(z @ weight.T + (0 if bias is None else bias))
    g = europe_grid(side)
    queries = np.concatenate([unit(rng.normal(size=(50, exact.shape[1]))), exact[rng.choice(len(exact), 50)]])
    background = exact[rng.choice(len(exact), 16, replace=False)]
    truth_scores = exact @ queries.T
    cube, sample = exact.reshape(side, side, -1), exact[:: max(1, len(exact) // 50_000)]

    def head(dtype: str, seed: int | None = ROTATION_SEED, centered: np.ndarray | None = None):
        moments = (
            {} if centered is None else {"mean": centered.mean(axis=0), "covariance": np.cov(centered.T)}
        )
        basis = linear_head_basis(weight, bias, rotation_seed=seed, **moments)
        return lambda p: write_features(p, g, z.reshape(side, side, -1), basis, dtype)

    def pca(dtype: str, variance: float | None = None, seed: int | None = ROTATION_SEED):
        basis = fit_pca(sample, 64, variance, rotation_seed=seed)
        return lambda p: write_cube(p, cube, g, dtype=dtype, chunk=512, basis=basis)  # type: ignore[arg-type]

    layouts = {
        "v1_int8_d512": lambda p: write_cube(p, cube, g, dtype="int8", chunk=512),
        "v4_head_int8": head("int8"),
        "v4_head_int8_norot": head("int8", None),
        "v4_head_fp16": head("fp16"),
        "v4_head_int8_centered": head("int8", centered=held_out[""]),
        "v4_head_int8_centered_norot": head("int8", None, centered=held_out[""]),
        **{f"v4_head_int8_centered{k}": head("int8", centered=v) for k, v in held_out.items() if k},
        "v4_pca64_int8": pca("int8"),
        "v4_pca64_int8_norot": pca("int8", seed=None),
        "v4_pca64_fp16": pca("fp16"),
        "v4_pca_var999_int8": pca("int8", 0.999),
    }
    for layout, make in layouts.items():
        if only is not None and not layout.startswith(only):
            continue
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
        errors: dict[str, list[np.ndarray]] = {"fused": [], "fma": []}
        between = []  # the two paths' probabilities apart
        got: dict[str, np.ndarray] = {}
        for q in range(len(queries)):
            logits = 100.0 * np.concatenate([truth_scores[:, q : q + 1], exact @ background.T], axis=1)
            logits -= logits.max(axis=1, keepdims=True)
            want = np.exp(logits[:, 0]) / np.exp(logits).sum(axis=1)
            for by, found in errors.items():  # the integer kernel's query rounding against float32's
                with scoring_path(by):
                    got[by] = session.probability_window(
                        slice(0, side), slice(0, side), queries[q : q + 1], background, 100.0
                    ).reshape(-1)
                found.append(np.abs(got[by] - want))
            between.append(np.abs(got["fused"] - got["fma"]))
        err, err_fma = (np.concatenate(errors[by]) for by in ("fused", "fma"))
        emit(
            figure="fidelity",
            data=name,
            layout=layout,
            pixels=side * side,
            rank=ds.sizes.get("r"),
            codes=ds.sizes.get("k"),
            explained_variance=ds.attrs.get("basis", {}).get("info", {}).get("explained_variance"),
            top100_recall=round(float(recall), 4),
            prob_err_mean=round(float(err.mean()), 5),
            prob_err_p99=round(float(np.percentile(err, 99)), 5),
            prob_err_max=round(float(err.max()), 4),
            fma_path_prob_err_mean=round(float(err_fma.mean()), 5),
            fma_path_prob_err_p99=round(float(np.percentile(err_fma, 99)), 5),
            fma_path_prob_err_max=round(float(err_fma.max()), 4),
            fused_vs_fma_path_p_diff_mean=float(f"{np.concatenate(between).mean():.2g}"),
            fused_vs_fma_path_p_diff_max=float(f"{np.concatenate(between).max():.2g}"),
            yardstick="exact float32 scores in the 512-d space",
            bytes_per_pixel=round(disk_bytes(path) / side**2, 1),
            pixel_array_bytes_per_pixel=round(pixel_bytes(path) / side**2, 1),
        )


# --- speed -----------------------------------------------------------------------------------------

#: The scoring paths timed: the fused kernel by integer products (AVX512-VNNI, where the CPU has it, else
#: the same as ``fma``), by float32 FMA, and the torch path alone (the code before the fused kernel).
PATHS = ("fused", "fma", "torch")


@contextlib.contextmanager
def scoring_path(path: str) -> Iterator[None]:
    """Score by one of :data:`PATHS` inside the block (the defaults after it)."""
    scoring.USE_FUSED, fused.USE_VNNI = path != "torch", path == "fused"
    try:
        yield
    finally:
        scoring.USE_FUSED, fused.USE_VNNI = True, True


def map_rate(
    path: Path, concept: np.ndarray, background: np.ndarray, by: str = "fused"
) -> tuple[float, float]:
    """Pixels a second (wall) and CPU ns a pixel (all threads) of one probability_map call, ``by`` a path."""
    ds = landprompt.open_cube(path)
    call = lambda: landprompt.probability_map(path, concept, versus=background, logit_scale=100.0)  # noqa: E731
    with scoring_path(by):
        cpu = time.process_time()
        wall = seconds(call)
        cpu = time.process_time() - cpu
    pixels = ds.sizes["y"] * ds.sizes["x"]
    return pixels / wall, cpu / pixels * 1e9


def bandwidth(arr: np.ndarray) -> float:
    """Bytes a second of a numpy streaming read (bitwise-or reduce over uint64) of an in-memory array."""
    return arr.nbytes / seconds(lambda: np.bitwise_or.reduce(arr))


def _divisor_chunk(side: int, target: int = 1024) -> int:
    """The chunk size nearest ``target`` that divides ``side`` (no padded edge chunks in the figures)."""
    return min((c for c in range(256, 2049) if side % c == 0), key=lambda c: abs(c - target), default=target)


def speed(work: Path, side: int, rng, rounds: int = 3) -> None:
    z, weight, bias = planted(side * side, 64, 128, rng)
    v2 = write_features(
        work / "speed_v2.zarr",
        europe_grid(side),
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
        europe_grid(512),
        dtype="int8",
        chunk=256,
    )
    concept1, background1 = unit(rng.normal(size=512)), unit(rng.normal(size=(16, 512)))
    arr = np.random.default_rng(0).integers(0, 255, size=read_bytes // 8 * 8, dtype=np.uint8).view(np.uint64)
    load = os.getloadavg()[0]
    landprompt.probability_map(v2, concept, versus=background, logit_scale=100.0)  # opens the session
    runs: dict[str, list[tuple[float, float]]] = {"v2": [], "v2_fma": [], "v2_torch": [], "v1": []}
    rates_bw = []
    for _ in range(rounds):  # interleaved, so each yardstick meets the same load; best of the rounds
        runs["v2"].append(map_rate(v2, concept, background))
        runs["v2_fma"].append(map_rate(v2, concept, background, by="fma"))
        runs["v2_torch"].append(map_rate(v2, concept, background, by="torch"))
        rates_bw.append(bandwidth(arr))
        runs["v1"].append(map_rate(v1, concept1, background1))
    del arr
    rate_v2, rate_fma, rate_torch = (max(r for r, _ in runs[k]) for k in ("v2", "v2_fma", "v2_torch"))
    bw, rate_v1 = max(rates_bw), max(runs["v1"])[0]
    emit(
        figure="speed",
        pixels=side * side,
        map_pixels_per_s=round(rate_v2),
        map_pixels_per_s_rounds=[round(r) for r, _ in runs["v2"]],
        map_cpu_ns_per_pixel=round(min(c for _, c in runs["v2"]), 1),
        bytes_per_pixel_read=round(read_bytes / side**2, 1),
        map_bytes_per_s=round(rate_v2 * read_bytes / side**2),
        yardstick_numpy_read_bytes_per_s=round(bw),
        fraction_of_bandwidth=round(rate_v2 * read_bytes / side**2 / bw, 3),
        integer_products=fused.integer_products(),
        fma_path_pixels_per_s=round(rate_fma),
        fma_path_cpu_ns_per_pixel=round(min(c for _, c in runs["v2_fma"]), 1),
        fma_path_fraction_of_bandwidth=round(rate_fma * read_bytes / side**2 / bw, 3),
        speedup_vs_fma_path=round(rate_v2 / rate_fma, 3),
        torch_path_pixels_per_s=round(rate_torch),
        torch_path_cpu_ns_per_pixel=round(min(c for _, c in runs["v2_torch"]), 1),
        torch_path_fraction_of_bandwidth=round(rate_torch * read_bytes / side**2 / bw, 3),
        speedup_vs_torch_path=round(rate_v2 / rate_torch, 2),
        v1_int8_d512_pixels_per_s=round(rate_v1),
        speedup_vs_v1=round(rate_v2 / rate_v1, 1),
        threads=torch.get_num_threads(),
        load_average=[round(load, 1), round(os.getloadavg()[0], 1)],
    )
    session = open_session(v2)
    rows, cols = slice(0, side), slice(0, side)
    times: dict[tuple[int, str], list[float]] = {(m, by): [] for m in (1, 16) for by in PATHS}
    for _ in range(rounds):
        for m, by in times:
            concepts = unit(rng.normal(size=(m, 128)))
            with scoring_path(by):
                times[m, by].append(
                    seconds(lambda c=concepts: session.probability_window(rows, cols, c, background, 100.0))
                )
    best = {key: min(value) for key, value in times.items()}
    emit(
        figure="speed_16_concepts",
        seconds_1=round(best[1, "fused"], 2),
        seconds_16=round(best[16, "fused"], 2),
        ratio_16_vs_1=round(best[16, "fused"] / best[1, "fused"], 2),
        fma_path_seconds_1=round(best[1, "fma"], 2),
        fma_path_seconds_16=round(best[16, "fma"], 2),
        fma_path_ratio_16_vs_1=round(best[16, "fma"] / best[1, "fma"], 2),
        speedup_vs_fma_path={m: round(best[m, "fma"] / best[m, "fused"], 3) for m in (1, 16)},
        torch_path_seconds_1=round(best[1, "torch"], 2),
        torch_path_seconds_16=round(best[16, "torch"], 2),
        torch_path_ratio_16_vs_1=round(best[16, "torch"] / best[1, "torch"], 2),
        yardstick="one concept, same pass",
    )
    background_columns(session, rows, cols, rng, rounds)


def background_columns(session, rows: slice, cols: slice, rng, rounds: int) -> None:
    """One concept against 16, 17 (the shipped vocabulary) and 32 background columns, fused and by torch."""
    concept = unit(rng.normal(size=(1, 128)))
    backgrounds = {k: unit(rng.normal(size=(k, 128))) for k in (16, 17, 32)}
    times: dict[tuple[int, str], list[float]] = {(k, by): [] for k in backgrounds for by in PATHS}
    for _ in range(rounds):  # interleaved, best of the rounds
        for k, by in times:
            call = lambda b=backgrounds[k]: session.probability_window(rows, cols, concept, b, 100.0)  # noqa: E731
            with scoring_path(by):
                times[k, by].append(seconds(call))
    best = {key: min(value) for key, value in times.items()}
    emit(
        figure="speed_background_columns",
        seconds_16=round(best[16, "fused"], 3),
        seconds_17=round(best[17, "fused"], 3),
        seconds_32=round(best[32, "fused"], 3),
        ratio_17_vs_16=round(best[17, "fused"] / best[16, "fused"], 2),
        ratio_32_vs_16=round(best[32, "fused"] / best[16, "fused"], 2),
        fma_path_seconds={k: round(best[k, "fma"], 3) for k in backgrounds},
        speedup_vs_fma_path={k: round(best[k, "fma"] / best[k, "fused"], 3) for k in backgrounds},
        torch_path_seconds={k: round(best[k, "torch"], 3) for k in backgrounds},
        speedup_vs_torch_path={k: round(best[k, "torch"] / best[k, "fused"], 2) for k in backgrounds},
        yardstick="16 background columns, fused, same run",
    )


# --- top-k -----------------------------------------------------------------------------------------


def topk(work: Path, side: int, rng, n_queries: int = 30, dtypes: tuple[str, ...] = ("int8", "fp16")) -> None:
    """Public-API top-k on a 10^6-cell cube against the exact numpy scan of the same vectors in memory.

    Recall@10 is given against the float32 vectors the cube was written from (what the user asked) and
    against an exact scan of the cube's own decoded vectors (what the index alone loses); then both
    again for each IVF ``nprobe`` (lists searched a query), with the call's time against the same scan.
    """
    z, weight, bias = planted(side * side, 64, 128, rng, clusters=512)
    vectors = unit(z @ weight.T + bias)  # the same vectors, exact float32, in memory
    queries = vectors[rng.choice(len(vectors), n_queries)] + 0.05 * rng.normal(size=(n_queries, 128))
    queries = unit(queries.astype(np.float32))
    exact = [_top10(vectors @ q) for q in queries]
    for dtype in dtypes:
        path = write_features(
            work / f"topk_{dtype}.zarr",
            europe_grid(side),
            z.reshape(side, side, 64),
            linear_head_basis(weight, bias),
            dtype,
        )
        info = build_index(path, progress=False)
        decoded = read_window(landprompt.open_cube(path), slice(0, side), slice(0, side))[0].reshape(
            side**2, -1
        )
        own = [_top10(decoded @ q) for q in queries]
        del decoded
        landprompt.top_k(path, queries[0], k=10)  # first call: opens the session
        index = open_session(path).index
        assert index is not None
        for nprobe in sorted({info.nprobe, 1, 4, 16, 32}):
            index.nprobe = nprobe
            api, scan, got = _time_top_k(path, vectors, queries, side)
            emit(
                figure="topk" if nprobe == info.nprobe else "topk_nprobe",
                cells=side * side,
                codes=dtype,
                factory=info.factory,
                nprobe=nprobe,
                space=info.space,
                api_ms=round(api * 1e3, 3),
                yardstick_numpy_scan_ms=round(scan * 1e3, 2),
                speedup=round(scan / api, 1),
                recall_at_10=_recall(got, exact),
                recall_at_10_vs_cube_scan=_recall(got, own),
                index_bytes_per_cell=round(path.with_suffix(".faiss").stat().st_size / side**2, 1),
                repeats=n_queries,
                load_avg_1min=round(os.getloadavg()[0], 1),
            )
        index.nprobe = info.nprobe


def topk_shards(work: Path, side: int, rng, n_queries: int = 30, tiles: int = 2) -> None:
    """Public-API top-k over a folder of shards: the 10^6-cell cube cut into ``tiles`` x ``tiles`` cubes.

    ``landprompt.top_k(folder, vector, k=10)`` (second call onward: the folder's cached
    :class:`~landprompt.query.session.ShardedSession`, each shard with its own index) against the exact
    numpy scan of the same vectors in memory, recall@10 against that scan; int8 codes.
    """
    z, weight, bias = planted(side * side, 64, 128, rng, clusters=512)
    vectors = unit(z @ weight.T + bias)
    queries = vectors[rng.choice(len(vectors), n_queries)] + 0.05 * rng.normal(size=(n_queries, 128))
    queries = unit(queries.astype(np.float32))
    exact = [_top10(vectors @ q) for q in queries]
    grid, step, basis = europe_grid(side), side // tiles, linear_head_basis(weight, bias)
    features = z.reshape(side, side, 64)
    folder = work / "shards"
    for r0 in range(0, side, step):
        for c0 in range(0, side, step):
            rows, cols = slice(r0, min(r0 + step, side)), slice(c0, min(c0 + step, side))
            path = folder / f"r{r0}_c{c0}.zarr"
            write_features(path, grid.window(rows, cols), features[rows, cols], basis, "int8")
            build_index(path, progress=False)
    landprompt.top_k(folder, queries[0], k=10)  # first call: opens the session

    def ids(places: pd.DataFrame) -> pd.Series:  # a shard's rows and columns from its name's origin
        origin = places["cube"].str.extract(r"r(\d+)_c(\d+)\.zarr$").astype(int)
        return (places["row"] + origin[0]) * side + places["col"] + origin[1]

    api, scan, got = _time_top_k(folder, vectors, queries, side, ids)
    emit(
        figure="topk_shards",
        cells=side * side,
        shards=len(list(folder.glob("*.zarr"))),
        codes="int8",
        api_ms=round(api * 1e3, 3),
        yardstick_numpy_scan_ms=round(scan * 1e3, 2),
        speedup=round(scan / api, 1),
        recall_at_10=_recall(got, exact),
        repeats=n_queries,
        load_avg_1min=round(os.getloadavg()[0], 1),
    )


def _top10(scores: np.ndarray) -> np.ndarray:
    top = np.argpartition(-scores, 10)[:10]
    return top[np.argsort(-scores[top])]


def _recall(got: list[set[int]], truth: list[np.ndarray]) -> float:
    return round(float(np.mean([len(g & set(t.tolist())) / 10 for g, t in zip(got, truth, strict=True)])), 3)


def _time_top_k(
    path: Path,
    vectors: np.ndarray,
    queries: np.ndarray,
    side: int,
    ids: Callable[[pd.DataFrame], pd.Series] | None = None,
) -> tuple[float, float, list[set[int]]]:
    """Median seconds of ``landprompt.top_k(path, q, k=10)`` and of the numpy scan, interleaved; the ids.

    ``ids`` gives each place's cell number (default: ``row * side + col``, one cube).
    """
    api_times, scan_times, got = [], [], []
    for q in queries:
        start = time.perf_counter()
        places = landprompt.top_k(path, q, k=10)
        api_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        _top10(vectors @ q)
        scan_times.append(time.perf_counter() - start)
        got.append(set((ids(places) if ids else places["row"] * side + places["col"]).tolist()))
    return float(np.median(api_times)), float(np.median(scan_times)), got


def topk_cli(work: Path, side: int = 256, repeats: int = 3) -> None:
    """``landprompt query topk CUBE PROMPT`` per call (a new process) against ``python -c pass``.

    On a small indexed cube made for the tiny CLIP model (random weights: a pretrained model adds loading
    its weights): a prompt new to the prompt cache (the text tower is loaded) and one asked before (read
    from the cache, no torch import), against ``python -c pass`` and ``import landprompt.cli``.
    """
    from landprompt.embedder.clip import TINY_MODEL
    from landprompt.query.prompt_cache import CACHE_ENV

    rng = np.random.default_rng(1)
    path = landprompt.write_cube(
        work / "topk_cli.zarr",
        unit(rng.normal(size=(side, side, 32))),
        europe_grid(side, side),
        chunk=128,
        attrs={"clip_model": TINY_MODEL},
    )
    build_index(path, progress=False, factory="Flat")
    run = "import sys; from landprompt.cli import app; sys.argv[0] = 'landprompt'; app()"
    query = [sys.executable, "-c", run, "query", "topk", str(path), "olive groves", "-k", "10"]
    commands = {
        "python_pass": ([sys.executable, "-c", "pass"], None),
        "import_cli": ([sys.executable, "-c", "import landprompt.cli"], None),
        "new_prompt": (query, "new"),
        "cached_prompt": (query, work / "prompt-cache"),
    }
    warm = {**os.environ, CACHE_ENV: str(work / "prompt-cache")}
    subprocess.run(query, check=True, capture_output=True, env=warm)  # the cached prompt's first call
    times: dict[str, list[float]] = {name: [] for name in commands}
    for repeat in range(repeats):  # interleaved
        for name, (command, cache) in commands.items():
            folder = work / f"prompt-cache-{repeat}" if cache == "new" else cache
            env = {**os.environ, **({CACHE_ENV: str(folder)} if folder is not None else {})}
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, env=env)
            times[name].append(time.perf_counter() - start)
    median = {name: float(np.median(t)) for name, t in times.items()}
    emit(
        figure="topk_cli",
        cells=side * side,
        new_prompt_s=round(median["new_prompt"], 2),
        cached_prompt_s=round(median["cached_prompt"], 2),
        yardstick_python_pass_s=round(median["python_pass"], 2),
        yardstick_import_cli_s=round(median["import_cli"], 2),
        new_prompt_vs_python_pass=round(median["new_prompt"] / median["python_pass"], 1),
        cached_prompt_vs_python_pass=round(median["cached_prompt"] / median["python_pass"], 1),
        cached_vs_new=round(median["cached_prompt"] / median["new_prompt"], 2),
        repeats=repeats,
        load_avg_1min=round(os.getloadavg()[0], 1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--speed-side", type=int, default=3200)
    parser.add_argument("--topk-side", type=int, default=1000)
    parser.add_argument("--only", nargs="*", default=["fidelity", "speed", "topk", "topk_shards", "topk_cli"])
    parser.add_argument("--seed", type=int, default=0, help="Seed of the speed and top-k figures' data.")
    args = parser.parse_args()
    rng = np.random.default_rng(0)  # the fidelity figures' data
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
                others = presto_features(start=1)  # the other pixels of the patches
                assert others is not None
                held_out = {"": others} | {  # and of one patch alone: moments of another land cover
                    f"_patch{i}": part for i, part in enumerate(np.split(others, len(presto_patches())))
                }
                fidelity("presto_bigearthnet", work, features, head, bias, rng, held_out)
                # a sits head through a 64-d bottleneck without bias (the default cube: 64 codes a pixel)
                down = rng.normal(size=(128, 64)).astype(np.float32) / np.sqrt(128)
                up = rng.normal(size=(512, 64)).astype(np.float32) / np.sqrt(64)
                fidelity(
                    "presto_bottleneck64",
                    work,
                    features @ down,
                    up,
                    None,
                    rng,
                    {k: v @ down for k, v in held_out.items()},
                    HEAD_LAYOUTS,
                )
                # one patch (one land cover) scored alone, centred on the moments of all the patches' other
                # pixels (as a cube of a tile, on moments of a broader training set) or of its own
                patch_rng = np.random.default_rng(2)  # the main rng's draws (and figures) stay as they were
                parts = zip(*(np.split(a, len(presto_patches())) for a in (features, others)), strict=True)
                for i, (part, own) in enumerate(parts):
                    moments = {"": others, "_own": own}
                    bottleneck = {k: v @ down for k, v in moments.items()}
                    for name, data in (
                        (f"presto_patch{i}", (part, head, bias, patch_rng, moments)),
                        (f"presto_patch{i}_bottleneck64", (part @ down, up, None, patch_rng, bottleneck)),
                    ):
                        fidelity(name, work, *data, only=("v4_head_int8",))
            z, weight, bias = planted(256 * 256, 64, 512, rng)
            held_out = {"": np.random.default_rng(1).normal(size=z.shape)}  # other pixels of the same law
            fidelity("planted_rank64", work, z, weight, bias, rng, held_out)
            fidelity("planted_bottleneck64", work, z, weight, None, rng, held_out, HEAD_LAYOUTS)
        # each figure draws from its own generator: its data do not hang on which figures ran before it
        if "speed" in args.only:
            speed(work, args.speed_side, np.random.default_rng(args.seed))
        if "topk" in args.only:
            topk(work, args.topk_side, np.random.default_rng(args.seed))
        if "topk_shards" in args.only:
            topk_shards(work, args.topk_side, np.random.default_rng(args.seed))
        if "topk_cli" in args.only:
            topk_cli(work)
    if any(r.get("figure") == "fidelity" for r in RECORDS):
        print(fidelity_table(RECORDS))


if __name__ == "__main__":
    main()
