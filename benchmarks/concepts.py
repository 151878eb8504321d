"""Cost of the LUCAS concept benchmark per concept and prompt style, against one ``evaluate points`` run.

One run writes a synthetic cube (random unit vectors, EPSG:3035, 10 m pixels, the tiny CLIP's width) and a
synthetic LUCAS 2018 table of ``--points`` rows inside it (``lc1`` drawn among the codes of the suite's land
cover concepts, ``lu1`` among its land use codes), then times what the user calls:

* ``evaluate_concepts(table, cube, suite)`` over the shipped suite's land cover and land use concepts (those
  the synthetic table has columns for), one prompt style, with and without the block bootstrap;
* the yardstick: ``evaluate_points(cube, "olive groves", points.csv)`` on the same points (one concept, the
  existing validation at points, no bootstrap).

Figures are JSON lines: seconds per scored concept and style, the yardstick's seconds, and their ratio.
Other work may share the CPU. Usage: ``python benchmarks/concepts.py [--points 10000] [--bootstrap 100]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _common import emit, europe_grid, seconds
from landprompt.embedder.clip import TINY_MODEL, load_clip
from landprompt.embedder.cube import write_cube
from landprompt.evaluate.concept_suite import ConceptSuite, load_suite
from landprompt.evaluate.concepts import evaluate_concepts
from landprompt.evaluate.points import evaluate_points
from landprompt.geo import EUROPE_CRS, WGS84, transform_points

LC_CODES = [
    "B11",
    "B13",
    "B14",
    "B15",
    "B16",
    "B17",
    "B21",
    "B22",
    "B31",
    "B32",
    "B33",
    "B34",
    "B36",
    "B41",
    "B42",
    "B45",
    "B52",
    "B55",
    "B71",
    "B74",
    "B76",
    "B81",
    "B82",
    "B83",
    "C10",
    "C20",
    "C30",
    "D10",
    "D20",
    "E10",
    "E20",
    "E30",
    "H11",
    "H12",
    "A12",
    "A13",
]
LU_CODES = ["U110", "U120", "U140", "U210", "U220", "U310", "U320", "U340", "U350", "U360", "U370", "U420"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--bootstrap", type=int, default=100)
    args = parser.parse_args()
    clip = load_clip(TINY_MODEL, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        grid = europe_grid(args.size)
        rng = np.random.default_rng(0)
        vectors = rng.normal(size=(args.size, args.size, clip.embed_dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=-1, keepdims=True)
        attrs = {"clip_model": clip.name, "clip_pretrained": ""}
        cube = write_cube(work / "cube.zarr", vectors, grid, chunk=256, attrs=attrs)
        rows, cols = rng.integers(0, args.size, (2, args.points))
        x, y = grid.transform * (cols + 0.5, rows + 0.5)
        lon, lat = transform_points(np.asarray(x), np.asarray(y), EUROPE_CRS, WGS84)
        lc1 = rng.choice(LC_CODES, args.points)
        table = pd.DataFrame(
            {
                "point_id": np.arange(args.points),
                "year": 2018,
                "th_lat": lat,
                "th_long": lon,
                "lc1": lc1,
                "lu1": rng.choice(LU_CODES, args.points),
            }
        )
        table.to_csv(work / "lucas.csv", index=False)
        pd.DataFrame({"lon": lon, "lat": lat, "present": (lc1 == "B81").astype(int)}).to_csv(
            work / "points.csv", index=False
        )
        shipped = load_suite()
        suite = ConceptSuite(
            shipped.version,
            tuple(c for c in shipped.concepts if c.group in ("land cover", "land use")),
            shipped.source,
        )

        yardstick = seconds(
            lambda: evaluate_points(cube, "olive groves", work / "points.csv", clip=clip, save=False)
        )
        for bootstrap in (0, args.bootstrap):
            start = time.perf_counter()
            report = evaluate_concepts(
                work / "lucas.csv", cube, suite, "classname", clip=clip, bootstrap=bootstrap
            )
            total = time.perf_counter() - start
            scored = sum(e["status"] == "scored" for e in report["concepts"])
            per = total / scored
            emit(
                benchmark="evaluate concepts, per scored concept and style",
                points=args.points,
                concepts_scored=scored,
                bootstrap=bootstrap,
                seconds_total=round(total, 3),
                seconds_per_concept=round(per, 4),
                yardstick="evaluate_points, one concept, same points",
                yardstick_seconds=round(yardstick, 3),
                ratio=round(per / yardstick, 3),
            )


if __name__ == "__main__":
    main()
