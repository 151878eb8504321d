"""Fault matrix: every way a user can get a command wrong ends in one line, a non-zero exit, no traceback,
and an output folder left as it was (categories of issue 18: outputs that cannot be written, corrupt and
mismatched inputs, edge values, clobbering; the read-only folder runs in a forked process without the
override capability, since the tests run as root).

Each case builds its arguments in a fresh output folder ``env.out`` (which may hold files the case puts
there first), runs the command in-process and checks:

* the exit code (and a phrase of the message);
* stderr: exactly one ``error:`` line (warning lines aside), no ``Traceback``;
* ``env.out`` unchanged: no new file, no ``.part`` left, nothing rewritten.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from affine import Affine
from typer.testing import CliRunner

import landprompt as lp
from kill import run_killed
from landprompt.cli import app
from landprompt.geo import WGS84, Grid, transform_points

EXIT_USER, EXIT_IO, EXIT_DAMAGED = 2, 5, 4
TINY_CLIP = ("--clip", "landprompt-tiny", "--pretrained", "none")


@dataclass(frozen=True)
class Case:
    """One fault: ``argv(env)`` builds the command line (and any files the fault needs in ``env.out``)."""

    id: str
    argv: Callable[[SimpleNamespace], list[str]]
    code: int = EXIT_USER
    says: str = ""


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Relative path -> (size, mtime) of everything under a folder (folders as (-1, 0))."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else (-1, 0)
        for p in sorted(folder.rglob("*"))
    }


def check_one_line(code: int, stderr: str, expected: Case) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert "Traceback" not in stderr, stderr
    assert len(errors) == 1 and all(line.startswith(("error:", "warning:")) for line in lines), stderr
    assert code == expected.code, (code, stderr)
    assert expected.says.lower() in errors[0].lower(), errors[0]


# --- the inputs every case may use (built once) -------------------------------------------------------
@pytest.fixture(scope="module")
def inputs(
    analytics_cubes, stac_fixture, planted_pairs_dataset, units_file, tmp_path_factory
) -> SimpleNamespace:  # type: ignore[no-untyped-def]
    from landprompt.embedder.cube import write_cube
    from landprompt.index.build import build_index

    root = tmp_path_factory.mktemp("fault-inputs")
    rng = np.random.default_rng(0)
    attrs = {"clip_model": "landprompt-tiny", "clip_pretrained": ""}
    narrow = write_cube(
        root / "narrow.zarr",
        rng.normal(size=(48, 48, 16)).astype(np.float32),
        analytics_cubes.grid,
        attrs=attrs,
    )
    small_grid = Grid("EPSG:32632", Affine(10.0, 0, 680_000.0, 0, -10.0, 4_800_000.0), (16, 16))
    other_grid = write_cube(
        root / "other.zarr", rng.normal(size=(16, 16, 32)).astype(np.float32), small_grid, attrs=attrs
    )
    not_cube = root / "folder.zarr"
    not_cube.mkdir()
    (not_cube / "notes.txt").write_text("not a cube")
    damaged = root / "damaged.zarr"
    shutil.copytree(analytics_cubes.mixture, damaged)
    (damaged / "zarr.json").write_bytes((damaged / "zarr.json").read_bytes()[:40])
    indexed = {}
    for fault in ("garbage-sidecar", "list-sidecar", "garbage-faiss", "other-cube"):
        cube = root / f"{fault}.zarr"
        shutil.copytree(analytics_cubes.mixture, cube)
        build_index(cube, progress=False, verify=False)
        indexed[fault] = cube
    (root / "garbage-sidecar.faiss.json").write_text("{not json")
    (root / "list-sidecar.faiss.json").write_text("[1, 2, 3]")
    (root / "garbage-faiss.faiss").write_bytes(b"\x00garbage" * 64)
    build_index(other_grid, root / "small.faiss", progress=False, verify=False)
    shutil.copy(root / "small.faiss", root / "other-cube.faiss")
    garbage = root / "garbage.bin"
    garbage.write_bytes(bytes(range(256)) * 8)
    empty = root / "empty.txt"
    empty.write_text("")
    broken_json = root / "catalog.json"
    broken_json.write_text('{"type": "Catalog", "links": [')
    stack = root / "stack"
    shutil.copytree(stac_fixture.stack, stack)
    tif = sorted(stack.rglob("*.tif"))[0]
    tif.write_bytes(tif.read_bytes()[:600])  # truncated GeoTIFF
    lon0, lat0, lon1, lat1 = stac_fixture.grid.bbox
    lon, lat = transform_points([680_100.0], [4_799_900.0], analytics_cubes.grid.crs, WGS84)
    points = root / "points.csv"
    points.write_text(f"lon,lat,present\n{lon[0]},{lat[0]},1\n")
    config = root / "train.yaml"
    config.write_text(CliRunner().invoke(app, ["train", "--example"]).stdout)
    return SimpleNamespace(
        cube=analytics_cubes.mixture,
        cube_b=analytics_cubes.year2,
        narrow=narrow,
        other_grid=other_grid,
        not_cube=not_cube,
        damaged=damaged,
        indexed=indexed,
        units=units_file(root, "units.geojson"),
        points=points,
        garbage=garbage,
        empty=empty,
        broken_json=broken_json,
        stack=stac_fixture.stack,
        broken_stack=stack,
        aoi=f"{lon0 + 0.001},{lat0 + 0.001},{lon1 - 0.001},{lat1 - 0.001}",
        catalog=planted_pairs_dataset[0].catalog,
        store=planted_pairs_dataset[0].store,
        config=config,
    )


@pytest.fixture
def env(inputs: SimpleNamespace, tmp_path: Path) -> SimpleNamespace:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("an earlier result")
    return SimpleNamespace(**vars(inputs), out=out)


# --- builders of output faults ---------------------------------------------------------------------------
def folder_at(e: SimpleNamespace, name: str) -> str:
    """An output path where a folder already is."""
    (e.out / name).mkdir()
    return str(e.out / name)


def under_file(e: SimpleNamespace, name: str) -> str:
    """An output path whose parent is a file."""
    return str(e.out / "keep.txt" / name)


def cube_copy(e: SimpleNamespace, name: str = "existing.zarr") -> str:
    """A copy of the test cube in the output folder (something a command must not clobber)."""
    shutil.copytree(e.cube, e.out / name)
    return str(e.out / name)


# Writing commands: name -> argv taking the output path (each gets the folder and parent-file faults).
WRITERS: dict[str, Callable[[SimpleNamespace, str], list[str]]] = {
    "map": lambda e, o: ["query", "map", str(e.cube), "sea", "-o", o],
    "topk": lambda e, o: ["query", "topk", str(e.cube), "sea", "-k", "2", "-o", o],
    "change": lambda e, o: ["query", "change", str(e.cube), str(e.cube_b), "sea", "-o", o],
    "aggregate": lambda e, o: ["query", "aggregate", str(e.cube), "sea", "--units", str(e.units), "-o", o],
    "points-out": lambda e, o: ["evaluate", "points", str(e.cube), "sea", "--points", str(e.points), "-o", o],
    "points-plot": lambda e, o: [
        "evaluate",
        "points",
        str(e.cube),
        "sea",
        "--points",
        str(e.points),
        "--plot",
        o,
    ],
    "cube-export": lambda e, o: ["cube", "export", str(e.cube), o],
    "index-build": lambda e, o: ["index", "build", str(e.cube), "-o", o],
    "pairs-stats-png": lambda e, o: ["pairs", "stats", "--catalog", str(e.catalog), "--png", o],
}
FILE_NAMES = {
    "map": "map.tif",
    "topk": "places.csv",
    "change": "change.tif",
    "aggregate": "indicators.geojson",
    "points-out": "report.json",
    "points-plot": "plot.png",
    "cube-export": "cube.tif",
    "index-build": "cube.faiss",
    "pairs-stats-png": "places.png",
}


def area_run(e: SimpleNamespace, out: str, *command: str, year: str = "2022") -> list[str]:
    """A command over the test area and a year from the local stack, writing ``out``."""
    return [*command, "--aoi", e.aoi, "--year", year, "--out", out, "--source", str(e.stack)]


# Commands that write a store or folder: name -> argv taking the output path.
STORE_WRITERS: dict[str, Callable[[SimpleNamespace, str], list[str]]] = {
    "embed-run": lambda e, o: [*area_run(e, o, "embed", "run"), "--model", "sits", "--random-weights"],
    "eo-composite": lambda e, o: area_run(e, o, "eo", "composite"),
    "eo-fetch": lambda e, o: area_run(e, o, "eo", "fetch"),
    "cube-convert": lambda e, o: ["cube", "convert", str(e.cube), o, "--rank", "4"],
    "demo": lambda e, o: ["demo", "--out", o],
}


def output_cases() -> list[Case]:
    cases = []
    for name, argv in WRITERS.items():
        file = FILE_NAMES[name]
        cases.append(
            Case(f"{name}-out-is-folder", lambda e, a=argv, f=file: a(e, folder_at(e, f)), says="folder")
        )
        cases.append(
            Case(f"{name}-parent-is-file", lambda e, a=argv, f=file: a(e, under_file(e, f)), says="file")
        )

    def beside(argv: Callable[[SimpleNamespace, str], list[str]], out: str, blocked: str, *flags: str) -> Any:
        """The command writing ``out`` with ``flags``, where a folder sits at its side output ``blocked``."""
        return lambda e: [*argv(e, str(e.out / out)), *flags] if folder_at(e, blocked) else []

    extra = {
        "map-png-is-folder": beside(WRITERS["map"], "m.tif", "m.png", "--png"),
        "map-html-is-folder": beside(WRITERS["map"], "m.tif", "m.html", "--html"),
        "map-qml-is-folder": beside(WRITERS["map"], "m.tif", "m.qml", "--qml"),
        "change-png-is-folder": beside(WRITERS["change"], "c.tif", "c.png", "--png"),
        "change-class-is-folder": beside(WRITERS["change"], "c.tif", "c_class.tif"),
        "points-default-plot-is-folder": beside(WRITERS["points-out"], "r.json", "r_reliability.png"),
    }
    cases += [Case(name, argv, says="folder") for name, argv in extra.items()]
    for name, argv in STORE_WRITERS.items():
        if name != "demo":
            cases.append(
                Case(f"{name}-parent-is-file", lambda e, a=argv: a(e, under_file(e, "x.zarr")), says="file")
            )
        cases.append(Case(f"{name}-out-is-a-file", lambda e, a=argv: a(e, str(e.out / "keep.txt")), says=""))
    return cases


# --- inputs that are damaged, of the wrong kind or do not match ---------------------------------------------
CUBE_READERS: dict[str, Callable[[SimpleNamespace, str], list[str]]] = {
    "map": lambda e, c: ["query", "map", c, "sea", "-o", str(e.out / "m.tif")],
    "topk": lambda e, c: ["query", "topk", c, "sea", "-k", "2"],
    "change-a": lambda e, c: ["query", "change", c, str(e.cube_b), "sea", "-o", str(e.out / "c.tif")],
    "change-b": lambda e, c: ["query", "change", str(e.cube), c, "sea", "-o", str(e.out / "c.tif")],
    "aggregate": lambda e, c: ["query", "aggregate", c, "sea", "--units", str(e.units)],
    "points": lambda e, c: ["evaluate", "points", c, "sea", "--points", str(e.points)],
    "cube-info": lambda e, c: ["cube", "info", c],
    "cube-export": lambda e, c: ["cube", "export", c, str(e.out / "x.tif")],
    "cube-verify": lambda e, c: ["cube", "verify", c],
    "cube-convert": lambda e, c: ["cube", "convert", c, str(e.out / "v2.zarr"), "--rank", "4"],
    "index-build": lambda e, c: ["index", "build", c, "-o", str(e.out / "x.faiss")],
}
# Commands reading a cube with a CLIP text tower: the narrow (16-d) cube names a 32-d model.
TEXT_READERS = ("map", "topk", "change-a", "aggregate", "points")


def input_cases() -> list[Case]:
    cases = []
    for name, argv in CUBE_READERS.items():
        cases.append(Case(f"{name}-not-a-cube", lambda e, a=argv: a(e, str(e.not_cube)), says="not"))
        cases.append(Case(f"{name}-damaged-cube", lambda e, a=argv: a(e, str(e.damaged)), code=EXIT_DAMAGED))
        cases.append(Case(f"{name}-missing-cube", lambda e, a=argv: a(e, str(e.out / "none.zarr"))))
        cases.append(Case(f"{name}-file-as-cube", lambda e, a=argv: a(e, str(e.garbage))))
    for name in TEXT_READERS:
        argv = CUBE_READERS[name]
        cases.append(
            Case(f"{name}-model-narrower-than-cube", lambda e, a=argv: a(e, str(e.narrow)), says="dimension")
        )
        cases.append(
            Case(
                f"{name}-clip-of-another-width",
                lambda e, a=argv: [*a(e, str(e.narrow)), *TINY_CLIP],
                says="dimension",
            )
        )
    for fault, says in (
        ("garbage-sidecar", "sidecar"),
        ("list-sidecar", "sidecar"),
        ("garbage-faiss", "index"),
        ("other-cube", "index"),
    ):
        cases.append(
            Case(
                f"topk-index-{fault}",
                lambda e, f=fault: ["query", "topk", str(e.indexed[f]), "sea"],
                says=says,
            )
        )
    corrupt_files = {
        "aggregate-units": lambda e, f: ["query", "aggregate", str(e.cube), "sea", "--units", f],
        "points-csv": lambda e, f: ["evaluate", "points", str(e.cube), "sea", "--points", f],
        "change-calibration": lambda e, f: [
            "query",
            "change",
            str(e.cube),
            str(e.cube_b),
            "sea",
            "-o",
            str(e.out / "c.tif"),
            "--calibration",
            f,
        ],
        "export-jobs": lambda e, f: ["query", "export", f],
        "train-config": lambda e, f: ["train", f],
        "pairs-stats": lambda e, f: ["pairs", "stats", "--catalog", f],
        "pairs-fetch": lambda e, f: ["pairs", "fetch", "--catalog", f, "--store", str(e.out / "s.zarr")],
        "pairs-photos": _photos,
        "ingest-table": lambda e, f: [
            "pairs",
            "ingest",
            "table",
            f,
            "--catalog",
            str(e.out / "c.duckdb"),
            "--lat",
            "lat",
            "--lon",
            "lon",
        ],
        "ingest-yfcc": lambda e, f: ["pairs", "ingest", "yfcc", f, "--catalog", str(e.out / "c.duckdb")],
        "ingest-lucas": lambda e, f: ["pairs", "ingest", "lucas", f, "--catalog", str(e.out / "c.duckdb")],
    }
    for name, argv in corrupt_files.items():
        cases.append(Case(f"{name}-binary", lambda e, a=argv: a(e, str(e.garbage)), code=-1))
        cases.append(Case(f"{name}-empty", lambda e, a=argv: a(e, str(e.empty)), code=-1))
        cases.append(Case(f"{name}-missing", lambda e, a=argv: a(e, str(e.out / "missing.txt")), code=-1))
    sources = {
        "embed-run": STORE_WRITERS["embed-run"],
        "eo-composite": STORE_WRITERS["eo-composite"],
    }
    for name, argv in sources.items():
        out = "x.zarr"
        cases.append(
            Case(
                f"{name}-truncated-geotiff",
                lambda e, a=argv, o=out: _with_source(a(e, str(e.out / o)), str(e.broken_stack)),
                code=-1,
            )
        )
        cases.append(
            Case(
                f"{name}-broken-stac-catalog",
                lambda e, a=argv, o=out: _with_source(a(e, str(e.out / o)), str(e.broken_json)),
                code=-1,
            )
        )
        cases.append(
            Case(
                f"{name}-empty-source",
                lambda e, a=argv, o=out: _with_source(a(e, str(e.out / o)), folder_at(e, "nothing")),
                code=-1,
            )
        )
    for dataset in ("eurosat", "eurosat-rgb", "bigearthnet", "lucas"):
        cases.append(
            Case(
                f"evaluate-{dataset}-out-is-a-file",
                lambda e, d=dataset: ["evaluate", d, "--root", str(e.garbage), "-o", str(e.out / "keep.txt")],
                says="not a folder",
            )
        )
        cases.append(
            Case(
                f"evaluate-{dataset}-missing-root",
                lambda e, d=dataset: ["evaluate", d, "--root", str(e.out / "none")],
                code=-1,
            )
        )
        cases.append(
            Case(
                f"evaluate-{dataset}-binary-root",
                lambda e, d=dataset: ["evaluate", d, "--root", str(e.garbage)],
                code=-1,
            )
        )
    cases.append(
        Case(
            "change-other-grid",
            lambda e: ["query", "change", str(e.cube), str(e.other_grid), "sea", "-o", str(e.out / "c.tif")],
        )
    )
    return cases


def _photos(e: SimpleNamespace, catalog: str) -> list[str]:
    """``pairs photos`` with the tiny CLIP (the default ViT-B-32 is built before the catalog is read)."""
    return ["pairs", "photos", "--catalog", catalog, "--out", str(e.out / "p.zarr"), *TINY_CLIP]


def _with_source(argv: list[str], source: str) -> list[str]:
    argv = list(argv)
    argv[argv.index("--source") + 1] = source
    return argv


# --- edge values --------------------------------------------------------------------------------------------
Argv = Callable[[SimpleNamespace], list[str]]


def on(base: Argv, *extra: str) -> Argv:
    """The command ``base`` with ``extra`` arguments appended."""
    return lambda e: [*base(e), *extra]


def edge_cases() -> list[Case]:
    def topk(e: SimpleNamespace) -> list[str]:
        return CUBE_READERS["topk"](e, str(e.cube))

    def points(e: SimpleNamespace) -> list[str]:
        return CUBE_READERS["points"](e, str(e.cube))

    def change(e: SimpleNamespace) -> list[str]:
        return CUBE_READERS["change-a"](e, str(e.cube))

    def run(e: SimpleNamespace) -> list[str]:
        return STORE_WRITERS["embed-run"](e, str(e.out / "x.zarr"))

    def index(e: SimpleNamespace) -> list[str]:
        return ["index", "build", str(e.cube), "-o", str(e.out / "x.faiss")]

    def convert(e: SimpleNamespace) -> list[str]:
        return ["cube", "convert", str(e.cube), str(e.out / "v2.zarr")]

    def train(e: SimpleNamespace) -> list[str]:
        return ["train", str(e.config)]

    def map_(e: SimpleNamespace) -> list[str]:
        return ["query", "map", str(e.cube), "sea", "-o", str(e.out / "m.tif")]

    values = {
        "topk-k-0": on(topk, "-k", "0"),
        "topk-k-negative": on(topk, "-k", "-3"),
        "topk-min-distance-nan": on(topk, "--min-distance", "nan"),
        "topk-min-distance-inf": on(topk, "--min-distance", "inf"),
        "topk-min-distance-negative": on(topk, "--min-distance", "-1"),
        "topk-bad-bbox": on(topk, "--bbox", "1,2,3"),
        "topk-bad-format": on(topk, "--format", "xml"),
        "topk-empty-prompt": lambda e: ["query", "topk", str(e.cube), "  "],
        "map-not-tif": lambda e: ["query", "map", str(e.cube), "sea", "-o", str(e.out / "m.png")],
        "map-empty-versus": on(map_, "--versus", " "),
        "change-threshold-nan": on(change, "--threshold", "nan"),
        "change-threshold-above-1": on(change, "--threshold", "1.5"),
        "aggregate-threshold-nan": lambda e: [
            *CUBE_READERS["aggregate"](e, str(e.cube)),
            "--threshold",
            "nan",
        ],
        "points-block-km-nan": on(points, "--block-km", "nan"),
        "points-block-km-0": on(points, "--block-km", "0"),
        "points-block-km-negative": on(points, "--block-km", "-5"),
        "points-folds-1": on(points, "--folds", "1"),
        "points-bins-0": on(points, "--bins", "0"),
        "points-bad-fit": on(points, "--fit", "magic"),
        "embed-batch-size-0": on(run, "--batch-size", "0"),
        "embed-chunk-0": on(run, "--chunk", "0"),
        "embed-zarr-format-4": on(run, "--zarr-format", "4"),
        "embed-rank-0": on(run, "--basis", "pca", "--rank", "0"),
        "embed-year-1990": lambda e: _with_year(run(e), "1990"),
        "embed-bad-dtype": on(run, "--dtype", "fp8"),
        "embed-bad-basis": on(run, "--basis", "svd"),
        "composite-year-1990": lambda e: _with_year(
            area_run(e, str(e.out / "c.zarr"), "eo", "composite"), "1990"
        ),
        "composite-bad-suffix": lambda e: area_run(e, str(e.out / "c.tif"), "eo", "composite"),
        "fetch-year-1990": on(_fetch, "--year", "1990"),
        "fetch-chip-0": on(_fetch, "--chip", "0"),
        "fetch-task-rows-0": on(_fetch, "--task-rows", "0"),
        "fetch-batch-rows-0": on(_fetch, "--batch-rows", "0"),
        "train-stop-at-negative": on(train, "--stop-at", "-1"),
        "train-stop-at-0": on(train, "--stop-at", "0"),
        "train-bad-set": on(train, "--set", "optim.lr=-1"),
        # 10^5 lists for the cube's 2,304 vectors (10^8 lists cost FAISS 2 s to allocate at each parse)
        "index-factory-more-lists-than-vectors": on(index, "--factory", "IVF99999999,Flat"),
        "index-factory-unknown": on(index, "--factory", "Bogus"),
        "index-factory-pq-not-dividing": on(index, "--factory", "IVF8,PQ5"),
        "convert-rank-0": on(convert, "--rank", "0"),
        "convert-bad-dtype": on(convert, "--dtype", "fp8"),
        "demo-unknown-concept": lambda e: ["demo", "--out", str(e.out / "d"), "--concept", "unicorns"],
    }
    return [Case(name, argv) for name, argv in values.items()]


def _with_year(argv: list[str], year: str) -> list[str]:
    argv = list(argv)
    argv[argv.index("--year") + 1] = year
    return argv


def _fetch(e: SimpleNamespace) -> list[str]:
    return [
        "pairs",
        "fetch",
        "--catalog",
        str(e.catalog),
        "--store",
        str(e.out / "s.zarr"),
        "--source",
        str(e.stack),
    ]


# --- clobbering ---------------------------------------------------------------------------------------------
def clobber_cases() -> list[Case]:
    composite = STORE_WRITERS["eo-composite"]
    return [
        Case("composite-onto-a-cube", lambda e: composite(e, cube_copy(e)), says="already exists"),
        Case("composite-onto-a-netcdf", lambda e: composite(e, str(_file(e, "c.nc"))), says="already exists"),
        Case(
            "demo-onto-another-cube",
            lambda e: ["demo", "--out", str(Path(cube_copy(e, "d/cube.zarr")).parent)],
            says="not a demo cube",
        ),
        Case(
            "convert-onto-a-cube",
            lambda e: ["cube", "convert", str(e.cube), cube_copy(e), "--rank", "4"],
            says="use another path",
        ),
        Case("embed-onto-another-cube", lambda e: STORE_WRITERS["embed-run"](e, cube_copy(e)), says=""),
        Case(
            "embed-onto-a-folder",
            lambda e: STORE_WRITERS["embed-run"](e, str(_file(e, "x.zarr/a.txt").parent)),
        ),
    ]


def _file(e: SimpleNamespace, name: str) -> Path:
    path = e.out / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("someone's file")
    return path


CASES = output_cases() + input_cases() + edge_cases() + clobber_cases()


def test_the_matrix_is_large_enough() -> None:
    assert len(CASES) >= 150 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fault(case: Case, env: SimpleNamespace) -> None:
    argv = case.argv(env)
    before = snapshot(env.out)
    result = CliRunner().invoke(app, argv)
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    expected = case if case.code != -1 else Case(case.id, case.argv, result.exit_code, case.says)
    check_one_line(result.exit_code, result.stderr, expected)
    assert snapshot(env.out) == before, result.stderr


def test_a_map_too_big_for_html_is_refused_before_any_file(
    env: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``query map --html`` checks the HTML size limit before the COG and PNG are written."""
    from landprompt.query import maps

    monkeypatch.setattr(maps.check_html_size, "__defaults__", (100,))  # the cube's map is larger than this
    before = snapshot(env.out)
    result = CliRunner().invoke(app, [*WRITERS["map"](env, str(env.out / "m.tif")), "--png", "--html"])
    check_one_line(result.exit_code, result.stderr, Case("html-size", lambda e: [], says="HTML map embeds"))
    assert snapshot(env.out) == before


# --- a folder that cannot be written, without the override capability (as root) ---------------------------
READ_ONLY = {**{name: (argv, FILE_NAMES[name]) for name, argv in WRITERS.items()},
             **{name: (argv, "x.zarr") for name, argv in STORE_WRITERS.items()}}  # fmt: skip


@pytest.fixture(scope="module")
def read_only_results(inputs: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every writer aimed into a read-only folder, in one forked process without CAP_DAC_OVERRIDE (forked,
    not a new interpreter: the imports are done)."""
    root = tmp_path_factory.mktemp("read-only")
    runs = {}
    for name, (argv, target) in READ_ONLY.items():
        folder = root / name
        folder.mkdir()
        (folder / "keep.txt").write_text("an earlier result")
        target_path = folder / (target if name != "demo" else "d")
        runs[name] = {
            "argv": argv(SimpleNamespace(**vars(inputs), out=folder), str(target_path)),
            "folder": str(folder),
        }
        folder.chmod(0o555)
    try:
        results = _in_a_child_without_dac_override(runs)
    finally:
        for name in runs:
            (root / name).chmod(0o755)
    for name, run in runs.items():
        results[name]["before"] = {"keep.txt": (len("an earlier result"),)}
        results[name]["after"] = sorted(p.name for p in Path(run["folder"]).iterdir())
    return results


def _in_a_child_without_dac_override(runs: dict[str, Any]) -> dict[str, Any]:
    """Each run's exit code and stderr, invoked in a forked child that drops the capabilities that let root
    write anywhere (a user's process has none of them)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 1
        try:
            os.close(read_end)
            if os.geteuid() == 0:
                _drop_dac_capabilities()
            out = {}
            for name, run in runs.items():
                result = CliRunner().invoke(app, run["argv"])
                out[name] = {"code": result.exit_code, "stderr": result.stderr}
            payload, status = json.dumps(out), 0
        except BaseException as exc:
            payload = json.dumps({"child failed": repr(exc)})
        finally:
            with os.fdopen(write_end, "w") as pipe:
                pipe.write(payload)
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        results = json.loads(pipe.read())
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, results
    return results


def _drop_dac_capabilities() -> None:
    """Clear CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from this process (capset(2), as setpriv does)."""
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [(n, ctypes.c_uint32) for n in ("effective", "permitted", "inheritable")]

    libc = ctypes.CDLL(None, use_errno=True)
    header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    keep = ~((1 << 1) | (1 << 2))  # CAP_DAC_OVERRIDE = 1, CAP_DAC_READ_SEARCH = 2
    for field in ("effective", "permitted", "inheritable"):
        setattr(data[0], field, getattr(data[0], field) & keep)
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


@pytest.mark.parametrize("name", list(READ_ONLY))
def test_read_only_folder(name: str, read_only_results: dict[str, Any]) -> None:
    result = read_only_results[name]
    check_one_line(result["code"], result["stderr"], Case(name, lambda e: [], result["code"], "writ"))
    assert result["code"] in (EXIT_USER, EXIT_IO), result
    assert result["after"] == ["keep.txt"], result


# --- kills mid-write and racing writers ---------------------------------------------------------------------
def parts_in(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".part" in p.name]


@pytest.mark.slow  # a subprocess killed mid-write, then a rerun
def test_killed_index_build_keeps_the_old_pair_and_the_next_clears_its_part(
    analytics_cubes, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from landprompt import files
    from landprompt.index.build import build_index
    from landprompt.index.search import CubeIndex

    cube = tmp_path / "cube.zarr"
    shutil.copytree(analytics_cubes.mixture, cube)
    build_index(cube, progress=False, factory="Flat")
    body = f"""
        from landprompt.cli import app
        app(["index", "build", {str(cube)!r}, "--factory", "IVF8,Flat"])
    """
    run_killed(tmp_path, "faiss:write_index", 1, body)  # the new index written aside, not swapped in
    assert len(parts_in(tmp_path)) == 1
    assert CubeIndex.open(tmp_path / "cube.faiss", cube).info.factory == "Flat"  # the old pair, whole
    monkeypatch.setattr(files, "_CLEANED", set())  # the rerun below stands for a new process
    result = CliRunner().invoke(app, ["index", "build", str(cube), "--factory", "IVF8,Flat"])
    assert result.exit_code == 0, result.output
    assert parts_in(tmp_path) == []
    assert CubeIndex.open(tmp_path / "cube.faiss", cube).info.factory == "IVF8,Flat"


@pytest.mark.slow  # a subprocess killed mid-write, then a rerun
def test_killed_query_export_leaves_no_part_after_the_next_run(analytics_cubes: Any, tmp_path: Path) -> None:
    import yaml

    batch = tmp_path / "batch.yaml"
    batch.write_text(
        yaml.safe_dump(
            {
                "cube": str(analytics_cubes.mixture),
                "out": str(tmp_path / "maps"),
                "defaults": {"versus": ["a forest"], "formats": ["cog", "png"]},
                "concepts": ["sea", "olive groves"],
            }
        )
    )
    body = f"""
        from landprompt.cli import app
        app(["query", "export", {str(batch)!r}, "--no-progress"])
    """
    run_killed(tmp_path, "os:replace", 3, body, before=True, match=".part")  # two outputs done, one pending
    assert len(parts_in(tmp_path / "maps")) == 1
    result = CliRunner().invoke(app, ["query", "export", str(batch), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert parts_in(tmp_path / "maps") == []
    assert len([p for p in (tmp_path / "maps").rglob("*") if p.suffix in (".tif", ".png")]) == 4


def test_two_writers_of_one_cube_one_wins_the_other_is_told(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from landprompt.embedder.cube import open_cube, write_cube
    from landprompt.errors import BadInputError

    grid = Grid("EPSG:32632", Affine(10.0, 0, 680_000.0, 0, -10.0, 4_800_000.0), (32, 32))
    values = [np.zeros((32, 32, 8), np.float32) for _ in range(2)]
    for axis, embedding in enumerate(values):  # unit vectors on different axes: the winner is readable
        embedding[..., axis] = 1.0

    def write(embedding: np.ndarray) -> str:
        try:
            write_cube(tmp_path / "cube.zarr", embedding, grid, chunk=8)
        except BadInputError as exc:
            return str(exc)
        return "ok"

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(write, values))
    assert sorted(o == "ok" for o in outcomes) == [False, True], outcomes
    assert "already exists" in next(o for o in outcomes if o != "ok")
    winner = values[outcomes.index("ok")]
    stored = open_cube(tmp_path / "cube.zarr")["embedding"].values.astype(np.float32)
    assert np.allclose(stored / np.linalg.norm(stored, axis=-1, keepdims=True), winner, atol=1e-2)
    assert parts_in(tmp_path) == []


# --- the boundary itself, stale parts, the Python API -----------------------------------------------------
def _raise_in_reader(exc: BaseException, path: Path) -> None:
    """Raise ``exc`` from a reader that names the file it reads (as ``exc.filename``)."""
    from landprompt.errors import about_file

    with about_file(path):
        raise exc


def test_the_boundary_never_guesses_the_file_from_a_readers_variables() -> None:
    from landprompt.cli.boundary import user_error

    def reader(path: Path) -> None:
        json.loads("{")

    with pytest.raises(json.JSONDecodeError) as info:
        reader(Path("/data/region/other.json"))
    mapped = user_error(info.value)
    assert mapped is not None and mapped[0].startswith("is not valid JSON") and "other.json" not in mapped[0]


def test_a_damaged_stac_catalog_is_named_by_its_reader(tmp_path: Path) -> None:
    from landprompt.cli.boundary import user_error
    from landprompt.eo.stac import StaticCatalogClient

    (tmp_path / "catalog.json").write_text('{"type": "Catalog", "links": [')
    with pytest.raises(json.JSONDecodeError) as info:
        StaticCatalogClient(tmp_path)
    mapped = user_error(info.value)
    assert mapped is not None and mapped[1] == EXIT_DAMAGED
    assert mapped[0].startswith(f"{tmp_path / 'catalog.json'}: is not valid JSON"), mapped


@pytest.mark.parametrize(
    ("exc", "code", "says"),
    [
        (PermissionError(13, "Permission denied"), EXIT_IO, "permissions"),
        (IsADirectoryError(21, "Is a directory"), EXIT_IO, "folder"),
        (OSError(28, "No space left on device"), EXIT_IO, "disk is full"),
        (json.JSONDecodeError("Expecting value", "{", 1), EXIT_DAMAGED, "not valid JSON"),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), EXIT_DAMAGED, "UTF-8"),
        (MemoryError(), 1, "out of memory"),
    ],
    ids=["permission", "is-a-folder", "disk-full", "json", "unicode", "memory"],
)
def test_the_boundary_names_the_file_and_what_to_do(exc: BaseException, code: int, says: str) -> None:
    from landprompt.cli.boundary import user_error

    try:
        _raise_in_reader(exc, Path("/data/region/catalog.json"))
    except BaseException as caught:
        mapped = user_error(caught)
    assert mapped is not None and mapped[1] == code
    assert says in mapped[0] and ("/data/region/catalog.json" in mapped[0] or code == 1), mapped


def test_format_errors_of_libraries_are_damage_and_bugs_are_not(tmp_path: Path) -> None:
    import rasterio
    from PIL import Image, UnidentifiedImageError

    from landprompt.cli.boundary import user_error

    tif, jpg = tmp_path / "a.tif", tmp_path / "a.jpg"
    tif.write_bytes(b"II*\x00" + b"\x00" * 20)
    jpg.write_bytes(b"\xff\xd8\xff" + b"\x00" * 20)
    for path, opener in ((tif, rasterio.open), (jpg, Image.open)):
        with pytest.raises((rasterio.errors.RasterioIOError, UnidentifiedImageError)) as info:
            opener(path)
        mapped = user_error(info.value)
        assert mapped is not None and mapped[1] in (EXIT_DAMAGED, EXIT_IO) and str(path) in mapped[0], mapped
    for bug in (
        ZeroDivisionError(),
        KeyError("x"),
        ValueError("matmul"),
        RuntimeError("oops"),
        AttributeError(),
    ):
        assert user_error(bug) is None


def test_a_bug_keeps_its_traceback_and_debug_shows_user_errors_too(monkeypatch: pytest.MonkeyPatch) -> None:
    import landprompt.embedder.cube as cube

    def broken(*args: Any, **kwargs: Any) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cube, "open_cube", broken)
    result = CliRunner().invoke(app, ["cube", "info", "x.zarr"])
    assert isinstance(result.exception, ZeroDivisionError)
    monkeypatch.undo()
    from landprompt.errors import NotACubeError

    assert isinstance(CliRunner().invoke(app, ["--debug", "cube", "info", "x.zarr"]).exception, NotACubeError)
    quiet = CliRunner().invoke(app, ["cube", "info", "x.zarr"])
    assert quiet.exit_code == EXIT_USER and isinstance(quiet.exception, SystemExit)
    monkeypatch.setenv("LANDPROMPT_DEBUG", "1")
    assert isinstance(CliRunner().invoke(app, ["cube", "info", "x.zarr"]).exception, NotACubeError)


def test_only_parts_of_dead_writers_are_removed(tmp_path: Path) -> None:
    from landprompt.files import atomic_path, host_tag, remove_stale_parts

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".map.tif.{host_tag()}.{dead_pid}.abcd1234.part.tif"
    stale_store = tmp_path / f".cube.zarr.{host_tag()}.{dead_pid}.0123abcd.part"
    live = tmp_path / f".map.tif.{host_tag()}.{os.getpid()}.abcd1234.part.tif"
    other = tmp_path / ".hidden.part"
    for path in (stale, live, other):
        path.write_text("x")
    (stale_store / "c").mkdir(parents=True)
    assert sorted(remove_stale_parts(tmp_path)) == sorted([stale, stale_store])
    assert live.exists() and other.exists()
    with atomic_path(tmp_path / "new.txt") as tmp:
        assert f".{os.getpid()}." in tmp.name and tmp.name.endswith(".part.txt")
        tmp.write_text("done")
    assert (tmp_path / "new.txt").read_text() == "done"


@pytest.mark.parametrize(
    ("call", "says"),
    [
        (lambda c: lp.top_k(c, "sea", k=2.5), "whole number"),
        (lambda c: lp.top_k(c, "sea", k=True), "whole number"),
        (lambda c: lp.top_k(c, "sea", k=3, min_distance_m=float("nan")), "finite"),
        (lambda c: lp.probability_map(c, "sea", versus=np.zeros((0, 32))), "one row"),
        (
            lambda c: lp.probability_map(c, np.zeros((0, 32)), versus=["a forest"]),
            "one row",
        ),
        (lambda c: lp.probability_map(c, "sea", logit_scale=float("nan")), "logit"),
    ],
    ids=["k-fraction", "k-bool", "min-distance-nan", "versus-zero-rows", "concepts-zero-rows", "logit-nan"],
)
def test_edge_values_in_the_python_api(call: Callable[[Path], Any], says: str, analytics_cubes: Any) -> None:
    from landprompt.errors import BadInputError

    with pytest.raises(BadInputError, match=says):
        call(analytics_cubes.mixture)


def test_edge_values_of_evaluate_points_and_train(analytics_cubes: Any, tmp_path: Path) -> None:
    from landprompt.errors import BadInputError
    from landprompt.evaluate.points import evaluate_points
    from landprompt.train.loop import train

    for kwargs in ({"block_km": float("nan")}, {"n_folds": 1}, {"bins": 0}, {"n_folds": 2.5}):
        with pytest.raises(BadInputError):
            evaluate_points(analytics_cubes.mixture, "sea", tmp_path / "none.csv", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(BadInputError, match="stop step"):
        train(None, stop_at=-1)  # type: ignore[arg-type]
