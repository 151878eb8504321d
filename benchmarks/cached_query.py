"""A probability map and a served point in a new process whose prompts are all in the prompt cache.

Times, per call in a new Python process, on a small cube made for the tiny CLIP model (random weights: a
pretrained model adds loading its weights, so the gain there is larger):

* ``map``: ``landprompt.probability_map(CUBE, "olive groves", versus=[...])``;
* ``point``: ``ServedCube(CUBE).point(lon, lat, served.query("olive groves"))`` (what ``/point`` does);

against ``python -c pass`` and ``import landprompt.query.session`` (the import a query pays anyway), with
the prompts asked before in another process. Each run says whether open_clip was imported (the CLIP text
tower loaded; torch itself is imported by the scoring kernel). ``--src`` runs the same calls against other
source trees too (e.g. the code before a change), interleaved, for a before/after ratio.

Usage: ``python benchmarks/cached_query.py [--repeats 5] [--side 256] [--src PATH ...]``. The CPU is shared
with other work on a small machine: read the ratios, not the times.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import _common
import landprompt
from _common import europe_grid, unit

VERSUS = ["water", "towns", "forest", "grassland"]
MAP = (
    "import sys, landprompt\n"
    f"landprompt.probability_map(sys.argv[1], 'olive groves', versus={VERSUS!r})\n"
    "print('open_clip imported:', 'open_clip' in sys.modules)\n"
)
POINT = (
    "import sys\nfrom landprompt.serve.layer import ServedCube\n"
    "served = ServedCube(sys.argv[1])\n"
    "lon, lat = served.grid.rowcol_to_lonlat(10, 10)\n"
    "served.point(float(lon), float(lat), served.query('olive groves'))\n"
    "print('open_clip imported:', 'open_clip' in sys.modules)\n"
)


def main() -> None:
    from landprompt.embedder.clip import TINY_MODEL
    from landprompt.query.prompt_cache import CACHE_ENV

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--src", type=Path, nargs="*", default=[])
    args = parser.parse_args()
    trees = [Path(landprompt.__file__).parents[1], *args.src]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rng = np.random.default_rng(0)
        cube = landprompt.write_cube(
            work / "c.zarr",
            unit(rng.normal(size=(args.side, args.side, 32))),
            europe_grid(args.side),
            chunk=128,
            attrs={"clip_model": TINY_MODEL},
        )
        runs = {"python_pass": ([sys.executable, "-c", "pass"], trees[0])}
        for tree in trees:
            runs[f"import_session {tree}"] = ([sys.executable, "-c", "import landprompt.query.session"], tree)
            runs[f"map {tree}"] = ([sys.executable, "-c", MAP, str(cube)], tree)
            runs[f"point {tree}"] = ([sys.executable, "-c", POINT, str(cube)], tree)

        def run(name: str) -> tuple[float, str]:
            command, tree = runs[name]
            env = {**os.environ, CACHE_ENV: str(work / "cache"), "PYTHONPATH": str(tree.resolve())}
            start = time.perf_counter()
            done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
            return time.perf_counter() - start, done.stdout

        for name in runs:  # the prompts' first calls fill the cache
            run(name)
        times: dict[str, list[float]] = {name: [] for name in runs}
        loaded: dict[str, bool] = {}
        for _ in range(args.repeats):  # interleaved
            for name in runs:
                elapsed, out = run(name)
                times[name].append(elapsed)
                loaded[name] = "open_clip imported: True" in out
        median = {name: float(np.median(t)) for name, t in times.items()}
        for tree in trees:
            for call in ("map", "point"):
                name = f"{call} {tree}"
                _common.emit(
                    figure=f"cached_{call}",
                    src=str(tree),
                    cells=args.side**2,
                    seconds=round(median[name], 2),
                    yardstick_python_pass_s=round(median["python_pass"], 2),
                    yardstick_import_session_s=round(median[f"import_session {tree}"], 2),
                    vs_python_pass=round(median[name] / median["python_pass"], 1),
                    vs_import_session=round(median[name] / median[f"import_session {tree}"], 2),
                    vs_first_tree=round(median[name] / median[f"{call} {trees[0]}"], 2),
                    clip_loaded=loaded[name],
                    repeats=args.repeats,
                    load_avg_1min=round(os.getloadavg()[0], 1),
                )


if __name__ == "__main__":
    main()
