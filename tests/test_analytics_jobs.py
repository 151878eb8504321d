"""Concept analytics from the command line and as batch-export job kinds, on the planted cubes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import typer
import yaml
from PIL import Image
from typer.testing import CliRunner

from landprompt.batch.jobs import AggregateJob, ChangeJob, PointsJob
from landprompt.batch.run import plan, run_jobs
from landprompt.batch.spec import load_jobs
from landprompt.calibration import calibration_path
from landprompt.cli import app
from landprompt.errors import BadInputError
from landprompt.query.change import GAIN, LOSS, NODATA, STABLE
from landprompt.query.maps import read_map

CONCEPT = "olive groves"
VERSUS = ["sea", "a forest"]


def expected_classes(c: SimpleNamespace) -> np.ndarray:
    codes = np.full(c.grid.shape, STABLE, np.uint8)
    codes[c.gain_block] = GAIN
    codes[c.loss_block] = LOSS
    codes[~(c.valid_a & c.valid_b)] = NODATA
    return codes


def points_file(c: SimpleNamespace, folder: Path, n: int = 400) -> Path:
    """Points on the mixture cube with labels drawn from a flatter truth than the maps."""
    rng = np.random.default_rng(4)
    rows, cols = rng.integers(1, 48, n), rng.integers(0, 48, n)
    lon, lat = c.grid.rowcol_to_lonlat(rows, cols)
    present = rng.random(n) < np.where(cols < 24, 0.3, 0.6)
    path = folder / "obs.csv"
    pd.DataFrame({"lon": lon, "lat": lat, "present": present.astype(int)}).to_csv(path, index=False)
    return path


@pytest.fixture
def own_mixture(analytics_cubes: SimpleNamespace, tmp_path: Path) -> Path:
    """A copy of the mixture cube under a test's own path, so calibrations saved next to it stay in the test.

    A copy, not a link: a calibration lives next to the resolved cube (:func:`calibration_path`).
    """
    return Path(shutil.copytree(analytics_cubes.mixture, tmp_path / "mixture.zarr"))


# --- command line --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli() -> typer.Typer:
    """The command line, whose query and evaluate groups register the analytics commands."""
    return app


def invoke(cli: typer.Typer, *args: Any) -> Any:
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_cli_change(cli, analytics_cubes, tmp_path) -> None:
    c = analytics_cubes
    out = tmp_path / "maps" / "change.tif"
    result = invoke(
        cli,
        "query",
        "change",
        c.year1,
        c.year2,
        CONCEPT,
        "--versus",
        "sea",
        "--versus",
        "a forest",
        "-o",
        out,
        "--png",
    )
    assert result.exit_code == 0, result.output
    assert "gain" in result.output and "1.3" in result.output  # 128 px = 1.28 ha
    assert sorted(p.name for p in out.parent.iterdir()) == ["change.png", "change.tif", "change_class.tif"]
    codes = np.nan_to_num(read_map(out.with_name("change_class.tif")).values, nan=NODATA)
    np.testing.assert_array_equal(codes, expected_classes(c))


def test_cli_change_refuses_other_grids_in_one_line(cli, analytics_cubes, tmp_path, tiny_clip) -> None:
    from affine import Affine

    from landprompt.embedder.cube import write_cube
    from landprompt.geo import Grid

    c = analytics_cubes
    grid = Grid("EPSG:32632", Affine(10.0, 0, 680_000.0, 0, -10.0, 4_800_000.0), (48, 40))
    other = write_cube(
        tmp_path / "other.zarr", np.ones((48, 40, 32), np.float32), grid, attrs={"clip_model": tiny_clip.name}
    )
    result = invoke(cli, "query", "change", c.year1, other, CONCEPT, "-o", tmp_path / "x.tif")
    assert result.exit_code == 2
    lines = [line for line in result.output.strip().splitlines() if not line.startswith("warning:")]
    assert lines[0].startswith("error: the two cubes are not on the same grid (shape (48, 48)")
    assert len(lines) == 1
    assert not list(tmp_path.glob("x*"))


def test_cli_aggregate_then_points_fit_then_calibrated_aggregate(
    cli, own_mixture, analytics_cubes, tmp_path, units_file
):
    units = units_file(tmp_path)
    out = tmp_path / "by_region.csv"
    args = (
        "query",
        "aggregate",
        own_mixture,
        CONCEPT,
        "--units",
        units,
        "--id-field",
        "NUTS_ID",
        "--versus",
        "sea",
        "--versus",
        "a forest",
    )
    result = invoke(cli, *args, "-o", out)
    assert result.exit_code == 0, result.output
    raw = pd.read_csv(out)
    assert raw.NUTS_ID.tolist() == ["north", "south"] and raw.pixels.tolist() == [100, 100]

    points = points_file(analytics_cubes, tmp_path)
    report = tmp_path / "report.json"
    result = invoke(
        cli,
        "evaluate",
        "points",
        own_mixture,
        CONCEPT,
        "--points",
        points,
        "--fit",
        "isotonic",
        "--block-km",
        "0.1",
        "--versus",
        "sea",
        "--versus",
        "a forest",
        "-o",
        report,
    )
    assert result.exit_code == 0, result.output
    assert "held out, isotonic" in result.output
    saved = json.loads(report.read_text())
    assert saved["cross_validation"]["method"] == "isotonic"
    assert saved["provenance"]["landprompt_concept"] == CONCEPT
    assert json.loads(saved["provenance"]["landprompt_background"]) == ["sea", "a forest"]
    with Image.open(tmp_path / "report_reliability.png") as png:  # provenance in its text chunks
        assert png.text["landprompt_cube_content_hash"] == saved["provenance"]["landprompt_cube_content_hash"]
    assert calibration_path(own_mixture, CONCEPT).is_file()

    result = invoke(cli, *args, "-o", tmp_path / "calibrated.geojson", "--calibrated")
    assert result.exit_code == 0, result.output
    features = json.loads((tmp_path / "calibrated.geojson").read_text())["features"]
    calibrated = [f["properties"]["mean_probability"] for f in features]
    assert calibrated != pytest.approx(raw.mean_probability.tolist())
    assert all(0.25 < p < 0.65 for p in calibrated)  # pulled to the observed frequencies


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--id-field", "NUTS"), "feature 0 has no property 'NUTS'; its properties: NUTS_ID"),
        (("-o", "x.xlsx"), r"indicators are written as .csv, .geojson"),
        (("--calibrated",), "no calibration at"),
    ],
)
def test_cli_aggregate_errors(cli, own_mixture, tmp_path, args, message, units_file) -> None:
    result = invoke(cli, "query", "aggregate", own_mixture, CONCEPT, "--units", units_file(tmp_path), *args)
    assert result.exit_code == 2 and message in " ".join(result.output.split())
    assert result.output.split("\n")[-2].startswith("error:")


def test_cli_points_errors(cli, own_mixture, analytics_cubes, tmp_path) -> None:
    points = points_file(analytics_cubes, tmp_path)
    result = invoke(cli, "evaluate", "points", own_mixture, CONCEPT, "--points", points, "--fit", "magic")
    assert result.exit_code == 2 and "'magic' is not one of 'platt', 'isotonic'" in result.output
    assert result.output.strip().splitlines()[-1].startswith("error:")
    result = invoke(
        cli, "evaluate", "points", own_mixture, CONCEPT, "--points", points, "--label-field", "seen"
    )
    assert result.exit_code == 2 and "no label column 'seen'" in result.output


# --- batch jobs ----------------------------------------------------------------------------------------


def write_batch(folder: Path, data: dict[str, Any]) -> Path:
    path = folder / "batch.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_change_jobs(analytics_cubes, tmp_path) -> None:
    c = analytics_cubes
    data = {
        "kind": "change",
        "cube": str(c.year1),
        "cube_b": str(c.year2),
        "out": "out",
        "defaults": {"versus": VERSUS, "threshold": 0.3},
        "concepts": [CONCEPT],
    }
    spec = load_jobs(write_batch(tmp_path, data))
    [job] = plan(spec)
    assert isinstance(job, ChangeJob) and job.threshold == 0.3 and job.key == "all/olive-groves"
    assert sorted(job.outputs) == ["class", "diff", "png"]
    report = run_jobs(spec, progress=False)
    assert report.done == ["all/olive-groves"], report.failed
    codes = np.nan_to_num(read_map(tmp_path / "out/all/olive-groves_class.tif").values, nan=NODATA)
    np.testing.assert_array_equal(codes, expected_classes(c))
    with Image.open(tmp_path / "out/all/olive-groves.png") as png:  # provenance in the PNG and the COGs
        assert png.text["landprompt_cube_b"] == str(Path(c.year2).resolve())
    assert read_map(tmp_path / "out/all/olive-groves.tif").attrs["landprompt_concept"] == CONCEPT
    assert run_jobs(spec, progress=False).skipped == ["all/olive-groves"]


def test_aggregate_jobs_on_a_local_dask_cluster(analytics_cubes, tmp_path, units_file) -> None:
    c = analytics_cubes
    units_file(tmp_path)
    data = {
        "kind": "aggregate",
        "cube": str(c.mixture),
        "units": "regions.geojson",
        "id_field": "NUTS_ID",
        "out": "out",
        "defaults": {"versus": VERSUS, "formats": ["csv", "geojson"]},
        "concepts": [CONCEPT, {"name": "sea", "prompt": "sea", "versus": ["a forest"]}],
    }
    spec = load_jobs(write_batch(tmp_path, data))
    jobs = plan(spec)
    assert all(isinstance(job, AggregateJob) and job.threshold == 0.5 for job in jobs)
    assert [job.key for job in jobs] == ["regions/olive-groves", "regions/sea"]
    report = run_jobs(spec, scheduler="local", progress=False)
    assert sorted(report.done) == ["regions/olive-groves", "regions/sea"], report.failed
    table = pd.read_csv(tmp_path / "out/regions/olive-groves.csv")
    assert table.NUTS_ID.tolist() == ["north", "south"] and table.valid_pixels.tolist() == [90, 100]
    sea = json.loads((tmp_path / "out/regions/sea.geojson").read_text())
    assert sea["landprompt"]["landprompt_concept"] == "sea"
    assert json.loads(sea["landprompt"]["landprompt_background"]) == ["a forest"]
    sidecar = json.loads((tmp_path / "out/regions/olive-groves.csv.crs.json").read_text())
    assert sidecar["provenance"]["landprompt_concept"] == CONCEPT


def test_points_jobs_then_calibrated_maps(analytics_cubes, own_mixture, tmp_path) -> None:
    points_file(analytics_cubes, tmp_path)
    defaults = {"versus": VERSUS, "fit": "platt", "block_km": 0.1}
    data = {
        "kind": "points",
        "cube": str(own_mixture),
        "points": "obs.csv",
        "out": "out",
        "defaults": defaults,
        "concepts": [CONCEPT],
    }
    spec = load_jobs(write_batch(tmp_path, data))
    [job] = plan(spec)
    assert isinstance(job, PointsJob) and job.outputs["calibration"] == calibration_path(own_mixture, CONCEPT)
    report = run_jobs(spec, progress=False)
    assert report.done == ["obs/olive-groves"], report.failed
    saved = json.loads((tmp_path / "out/obs/olive-groves.json").read_text())
    assert saved["cross_validation"]["after"]["ece"] < saved["cross_validation"]["before"]["ece"]
    assert saved["provenance"]["landprompt_concept"] == CONCEPT and saved["provenance"]["landprompt_version"]
    assert (tmp_path / "out/obs/olive-groves_reliability.png").is_file()

    maps = {
        "cube": str(own_mixture),
        "out": "maps",
        "concepts": [CONCEPT],
        "defaults": {"versus": VERSUS, "formats": ["cog"], "calibrated": True},
    }
    report = run_jobs(load_jobs(write_batch(tmp_path, maps)), progress=False)
    assert report.done == ["all/olive-groves"], report.failed
    calibrated = read_map(tmp_path / "maps/all/olive-groves.tif").values
    maps["defaults"] = {"versus": VERSUS, "formats": ["cog"]}
    maps["out"] = "raw"
    run_jobs(load_jobs(write_batch(tmp_path, maps)), progress=False)
    raw = read_map(tmp_path / "raw/all/olive-groves.tif").values
    assert np.nanstd(calibrated) < np.nanstd(raw)  # pulled towards the observed frequencies
    assert np.array_equal(np.isnan(calibrated), np.isnan(raw))


def base(c: SimpleNamespace, folder: Path, kind: str, units_file: Any) -> dict[str, Any]:
    units_file(folder)
    points_file(c, folder)
    extra = {
        "map": {},
        "change": {"cube_b": str(c.year2)},
        "aggregate": {"units": "regions.geojson", "id_field": "NUTS_ID"},
        "points": {"points": "obs.csv"},
    }[kind]
    return {
        "kind": kind,
        "cube": str(c.year1),
        "out": "out",
        **extra,
        "defaults": {"versus": VERSUS},
        "concepts": [CONCEPT],
    }


BAD = {
    "unknown kind": ("map", {"kind": "maps"}, r"kind: unknown job kind 'maps'; choose one of map, change"),
    "units on a map": ("map", {"units": "regions.geojson"}, r"units: applies to kind aggregate only"),
    "areas on points": ("points", {"areas": []}, r"areas: applies to kind map or change only"),
    "fit on a change": ("change", {"defaults": {"fit": "platt"}}, r"defaults.fit: applies to kind points"),
    "no cube_b": ("change", {"cube_b": None}, r"cube_b: required key is missing"),
    "other grid": ("change", {"cube_b": "OTHER"}, r"cube_b: the two cubes are not on the same grid"),
    "no id field": ("aggregate", {"id_field": "NUTS"}, r"units: .*feature 0 has no property 'NUTS'"),
    "no units": ("aggregate", {"units": "nowhere.gpkg"}, r"units: polygon file .*nowhere.gpkg does not"),
    "bad labels": ("points", {"label_field": "lon"}, r"points: .*labels must be 1/0"),
    "bad threshold": ("change", {"defaults": {"threshold": 1.5}}, r"defaults.threshold: must be a probab"),
    "bad fit": ("points", {"defaults": {"fit": "magic"}}, r"defaults.fit: unknown calibration method"),
    "bad block": ("points", {"defaults": {"block_km": 0}}, r"defaults.block_km: must be a positive number"),
    "html table": ("aggregate", {"defaults": {"formats": ["html"]}}, r"formats\[0\]: unknown format 'html'"),
    "no calibration": ("map", {"defaults": {"calibrated": True}}, r"defaults.calibrated: no calibration at"),
    "calibrated yes": ("map", {"defaults": {"calibrated": "yes"}}, r"defaults.calibrated: must be true or"),
}


@pytest.mark.parametrize(("kind", "change", "message"), BAD.values(), ids=BAD.keys())
def test_bad_analytics_batches_name_the_key(
    analytics_cubes, tmp_path, kind, change, message, units_file
) -> None:
    c = analytics_cubes
    data = base(c, tmp_path, kind, units_file)
    if change.get("cube_b") == "OTHER":
        change = {"cube_b": str(c.root / "other-grid.zarr")}
        if not (c.root / "other-grid.zarr").exists():
            from affine import Affine

            from landprompt.embedder.cube import write_cube
            from landprompt.geo import Grid

            grid = Grid("EPSG:32632", Affine(20.0, 0, 680_000.0, 0, -20.0, 4_800_000.0), (24, 24))
            write_cube(c.root / "other-grid.zarr", np.ones((24, 24, 32), np.float32), grid)
    data.update({k: v for k, v in change.items() if k != "defaults"})
    data["defaults"].update(change.get("defaults", {}))
    data = {k: v for k, v in data.items() if v is not None}
    path = write_batch(tmp_path, data)
    with pytest.raises(BadInputError, match=message):
        load_jobs(path)
    assert not (tmp_path / "out").exists()
