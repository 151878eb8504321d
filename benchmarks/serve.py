"""``landprompt serve`` benchmark: tile latency against reading the tile's bytes, and 8 panning clients.

Builds (or resumes) a planted version-2 cube of ``--side`` x ``--side`` pixels (default 10^4 x 10^4 =
10^8) of 10 m in UTM 32N, d = 32 (the tiny CLIP text tower's space) stored as r + 1 = 33 int8 codes in a
full-rank PCA basis, chunks of 256, with its overviews (``landprompt cube overviews``). It then starts
``landprompt serve`` in a subprocess and, over HTTP:

* ``tile_latency`` at three zooms (the cube's native zoom, 3 and 6 zooms out: the cube and two overview
  levels): p50/p95 of a warm concept's tiles (prompts already encoded; every tile computed, there is no
  tile cache) and of a new concept's first tile (its text encoded by the tiny text tower, then the tile),
  against the yardstick: reading and decompressing the same tile's stored bytes (the chunks of the
  footprint the server reads, through the checked store) in this process;
* ``concurrency``: ``--clients`` threads panning (each a random walk of tiles at the three zooms) for
  ``--duration`` seconds: requests, errors, p50/p95 and the server's resident memory sampled every second.

Prints one JSON line a figure. The machine is small (2 cores) and shared with other work: read the
ratios, not the times. Usage: ``python benchmarks/serve.py [--side 10000] [--workdir DIR]``.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import morecantile
import numpy as np
from affine import Affine

from _common import emit
from landprompt.embedder.basis import fit_pca
from landprompt.embedder.clip import TINY_MODEL, load_clip
from landprompt.embedder.cube import CubeWriter, iter_raw_chunks
from landprompt.embedder.overviews import build_overviews
from landprompt.geo import Grid
from landprompt.query.classes import concept_embedding, default_vocabulary
from landprompt.serve.layer import TMS, ServedCube

CHUNK = 256
BLOCK = 64  # pixels of one planted land cover patch
CONCEPT = "olive groves"
NEW_WORDS = [
    "vineyards", "rice paddies", "salt marsh", "quarry", "wind farm", "greenhouses", "orchards",
    "peat bog", "sand dunes", "solar park", "hedgerows", "terraced fields", "ski slopes", "reservoir",
    "glacier", "heathland", "landfill", "airport", "harbour", "golf course",
]  # fmt: skip


def percentiles(values: list[float]) -> dict[str, float]:
    ms = np.asarray(values) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
    }


def build(path: Path, side: int, seed: int = 0) -> Path:
    """The planted cube (resumed if a run was cut) and its overviews."""
    clip = load_clip(TINY_MODEL, None, device="cpu")
    covers = [CONCEPT, *default_vocabulary()[:11]]
    vectors = np.stack([concept_embedding(clip, name) for name in covers])
    grid = Grid("EPSG:32632", Affine(10.0, 0, 600_000.0, 0, -10.0, 5_000_000.0), (side, side))

    def chunk_embeddings(rows: slice, cols: slice) -> np.ndarray:
        r = np.arange(rows.start, rows.stop)[:, None] // BLOCK
        c = np.arange(cols.start, cols.stop)[None, :] // BLOCK
        labels = (r * 7919 + c * 104_729 + (r * c) % 13) % len(covers)
        rng = np.random.default_rng((seed, rows.start, cols.start))
        emb = vectors[labels] + rng.normal(0, 0.05, (*labels.shape, vectors.shape[1])).astype(np.float32)
        return emb / np.linalg.norm(emb, axis=-1, keepdims=True)

    sample = chunk_embeddings(slice(0, 512), slice(0, 512)).reshape(-1, vectors.shape[1])
    basis = fit_pca(sample, rank=vectors.shape[1], min_variance=None, seed=seed)
    attrs = {"clip_model": TINY_MODEL, "clip_pretrained": "", "planted": covers}
    writer = CubeWriter(path, grid, vectors.shape[1], "int8", CHUNK, attrs, basis)
    start, pending = time.perf_counter(), writer.pending()
    for n, window in enumerate(pending):
        writer.write_chunk(window, chunk_embeddings(window.rows, window.cols))
        if n % 200 == 0:
            print(f"  cube: {n}/{len(pending)} chunks", file=sys.stderr, flush=True)
    writer.finalize()
    written = time.perf_counter() - start
    start = time.perf_counter()
    levels = build_overviews(path)
    emit(
        figure="cube",
        pixels=side * side,
        shape=[side, side],
        codes_per_pixel=basis.code_size,
        chunk=CHUNK,
        overview_levels=len(levels),
        store_gb=round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e9, 2),
        write_s=round(written, 1),
        overviews_s=round(time.perf_counter() - start, 1),
    )
    return path


def start_server(cube: Path, port: int, workers: int) -> subprocess.Popen:
    command = [
        sys.executable,
        "-c",
        "from landprompt.cli import app; app()",
        "serve",
        str(cube),
        "--port",
        str(port),
    ]
    server = subprocess.Popen([*command, "--workers", str(workers)], stdout=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/cubes", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError("the server did not start")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def random_tiles(cube: ServedCube, z: int, n: int, rng: random.Random) -> list[morecantile.Tile]:
    tiles: dict[tuple[int, int], morecantile.Tile] = {}
    for _ in range(50 * n):
        lon, lat = cube.grid.rowcol_to_lonlat(rng.randrange(cube.grid.rows), rng.randrange(cube.grid.cols))
        tile = TMS.tile(float(lon), float(lat), z)
        tiles.setdefault((tile.x, tile.y), tile)
        if len(tiles) == n:
            break
    return list(tiles.values())


def get_tile(client: httpx.Client, base: str, tile: morecantile.Tile, concept: str) -> httpx.Response:
    url = f"{base}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"
    return client.get(url, params={"concept": concept})


def read_time(cube: ServedCube, tile: morecantile.Tile) -> float:
    """The yardstick: read and decompress the stored arrays of the tile's footprint."""
    where = cube.footprint(tile.z, tile.x, tile.y)
    start = time.perf_counter()
    for _ in iter_raw_chunks(where.session.ds, *where.window):
        pass
    return time.perf_counter() - start


def latency(base: str, cube: ServedCube, zooms: list[int], n_tiles: int, rng: random.Random) -> None:
    words = iter(f"{w} {i}" for i in range(100) for w in NEW_WORDS)
    with httpx.Client(timeout=120) as client:
        get_tile(client, base, random_tiles(cube, zooms[0], 1, rng)[0], CONCEPT)  # background encoded
        for z in zooms:
            tiles = random_tiles(cube, z, n_tiles, rng)
            warm, cold, read = [], [], []
            for tile in tiles:
                start = time.perf_counter()
                assert get_tile(client, base, tile, CONCEPT).status_code == 200
                warm.append(time.perf_counter() - start)
                start = time.perf_counter()
                assert get_tile(client, base, tile, next(words)).status_code == 200
                cold.append(time.perf_counter() - start)
                read.append(read_time(cube, tile))
            level = cube.footprint(tiles[0].z, tiles[0].x, tiles[0].y).level
            w, c, r = percentiles(warm), percentiles(cold), percentiles(read)
            emit(
                figure="tile_latency",
                zoom=z,
                overview_level=level,
                tiles=len(tiles),
                warm=w,
                new_concept_first_tile=c,
                yardstick_read_tile_bytes=r,
                warm_p95_over_read_p95=round(w["p95_ms"] / max(r["p95_ms"], 1e-3), 2),
                new_p95_over_read_p95=round(c["p95_ms"] / max(r["p95_ms"], 1e-3), 2),
                goals={"warm_p95_ms": 150, "new_concept_first_tile_ms": 1000},
            )


def concurrency(
    base: str, cube: ServedCube, server: subprocess.Popen, zooms: list[int], clients: int, duration: float
) -> None:
    times: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.time() + duration

    def pan(seed: int) -> None:
        rng = random.Random(seed)
        z = rng.choice(zooms)
        tile = random_tiles(cube, z, 1, rng)[0]
        with httpx.Client(timeout=120) as client:
            while time.time() < stop:
                dx, dy = rng.choice([(1, 0), (-1, 0), (0, 1), (0, -1)])
                step = morecantile.Tile(tile.x + dx, tile.y + dy, tile.z)
                lon, lat = TMS.ul(step)
                inside = cube.grid.contains(*cube.grid.lonlat_to_rowcol(lon, lat))
                if not inside or rng.random() < 0.05:  # off the cube, or a jump: start again elsewhere
                    step = random_tiles(cube, rng.choice(zooms), 1, rng)[0]
                tile = step
                start = time.perf_counter()
                response = get_tile(client, base, tile, CONCEPT)
                with lock:
                    times.append(time.perf_counter() - start)
                    if response.status_code != 200:
                        errors.append(f"{response.status_code} {response.text[:120]}")

    memory = [rss_mb(server.pid)]
    threads = [threading.Thread(target=pan, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        time.sleep(1)
        memory.append(rss_mb(server.pid))
    emit(
        figure="concurrency",
        clients=clients,
        seconds=duration,
        requests=len(times),
        errors=len(errors),
        first_errors=errors[:3],
        **percentiles(times),
        tiles_per_s=round(len(times) / duration, 1),
        rss_mb_start=round(memory[0]),
        rss_mb_after_5s=round(memory[min(5, len(memory) - 1)]),
        rss_mb_end=round(memory[-1]),
        rss_mb_max=round(max(memory)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/landprompt-serve-bench"))
    parser.add_argument("--side", type=int, default=10_000)
    parser.add_argument("--tiles", type=int, default=30, help="tiles a zoom for the latencies")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=4, help="the server's --workers")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    path = build(args.workdir / f"planted-{args.side}.zarr", args.side)
    cube = ServedCube(path)
    native = TMS.zoom_for_res(cube.grid.resolution[0] / np.cos(np.radians(cube.grid.bbox.center[1])))
    zooms = [native, native - 3, native - 6]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = start_server(path, port, args.workers)
    try:
        base = f"http://127.0.0.1:{port}"
        rng = random.Random(0)
        latency(base, cube, zooms, args.tiles, rng)
        concurrency(base, cube, server, zooms, args.clients, args.duration)
    finally:
        server.terminate()
        server.wait(timeout=30)
    emit(figure="machine", cpus=os.cpu_count(), note="2 cores shared with other work: read the ratios")


if __name__ == "__main__":
    main()
