"""Batch export: a planted cube, 2 concepts x 2 areas, re-runs, failures, Dask, and bad batch files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import rasterio
import yaml
from affine import Affine

from landprompt.batch import jobs
from landprompt.batch import spec as batch_spec
from landprompt.batch.run import JobReport, plan, run_jobs
from landprompt.batch.spec import ClipKeys, JobSpec, load_jobs, parse_batch
from landprompt.errors import BadInputError
from landprompt.geo import Grid
from landprompt.query.maps import read_map

if TYPE_CHECKING:
    from landprompt.embedder.clip import ClipModel

#: 64 x 96 pixels of 10 m in UTM 32N; "a lake" is planted left of column 48, "a forest" right of it.
GRID = Grid("EPSG:32632", Affine(10.0, 0, 680_000.0, 0, -10.0, 4_800_000.0), (64, 96))
PLANTED = ("a lake", "a forest")
BOUNDARY_X = GRID.transform.c + 48 * GRID.transform.a
KEYS = ["west/a-lake", "west/woods", "east/a-lake", "east/woods"]


@pytest.fixture(scope="module")
def cube(tmp_path_factory: pytest.TempPathFactory, tiny_clip: ClipModel) -> Path:
    from landprompt.demo import planted_embeddings
    from landprompt.embedder.cube import write_cube
    from landprompt.embedder.prompts import get_templates

    labels = np.zeros(GRID.shape, dtype=np.uint8)
    labels[:, 48:] = 1
    vectors = tiny_clip.encode_prompts(list(PLANTED), get_templates("ground"))
    embeddings = planted_embeddings(vectors, labels, noise=0.5, seed=0)
    attrs = {"clip_model": tiny_clip.name, "clip_pretrained": ""}
    return write_cube(tmp_path_factory.mktemp("cube") / "cube.zarr", embeddings, GRID, chunk=32, attrs=attrs)


def batch(cube: Path, folder: Path) -> dict[str, Any]:
    """A valid batch: 2 concepts (a string and a mapping) x 2 areas (a bbox string and a GeoJSON file)."""
    east = GRID.window(slice(0, 64), slice(32, 96)).bbox
    ring = [
        [east.minlon, east.minlat],
        [east.maxlon, east.minlat],
        [east.maxlon, east.maxlat],
        [east.minlon, east.minlat],
    ]
    (folder / "east.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))
    west = GRID.window(slice(0, 64), slice(0, 64)).bbox
    return {
        "cube": str(cube),
        "out": "maps",
        "defaults": {"versus": list(PLANTED), "style": "ground", "formats": ["cog", "png", "html"]},
        "concepts": ["a lake", {"name": "Woods", "prompt": "a forest"}],
        "areas": [
            {"name": "west", "bbox": ",".join(f"{v:.6f}" for v in west)},
            {"name": "East", "bbox": "east.geojson"},
        ],
    }


def write_batch(folder: Path, data: dict[str, Any]) -> Path:
    path = folder / "batch.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def outputs(spec: JobSpec) -> list[Path]:
    return sorted(path for job in plan(spec) for path in job.outputs.values())


def mtimes(spec: JobSpec) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in outputs(spec)}


@pytest.fixture(scope="module")
def exported(cube: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[JobSpec, JobReport]:
    """The batch, run once in process."""
    folder = tmp_path_factory.mktemp("batch")
    spec = load_jobs(write_batch(folder, batch(cube, folder)))
    return spec, run_jobs(spec, progress=False)


# --- planning --------------------------------------------------------------------------------------


def test_plan_makes_one_job_per_concept_and_area(cube: Path, tmp_path: Path) -> None:
    spec = load_jobs(write_batch(tmp_path, batch(cube, tmp_path)))
    assert spec.out == tmp_path / "maps"  # relative to the batch file
    assert spec.clip == ClipKeys(model="landprompt-tiny")  # from the cube's attrs
    planned = plan(spec)
    assert [job.key for job in planned] == KEYS
    assert dict(planned[1].outputs) == {
        "cog": tmp_path / "maps/west/woods.tif",
        "png": tmp_path / "maps/west/woods.png",
        "html": tmp_path / "maps/west/woods.html",
    }
    assert planned[1].prompt == "a forest" and planned[1].versus == PLANTED
    assert not (tmp_path / "maps").exists()  # loading and planning write nothing


def test_a_jobs_background_is_the_one_its_scorer_competes_with(cube: Path, tmp_path: Path) -> None:
    from landprompt.query.classes import background_prompts, default_vocabulary

    data = {**batch(cube, tmp_path), "concepts": ["a lake", {"prompt": "Olive Groves", "versus": None}]}
    planned = plan(load_jobs(write_batch(tmp_path, data)))
    assert planned[0].background == ["a forest"]  # the batch's versus but the concept
    vocabulary = [name for name in default_vocabulary() if name != "olive groves"]
    assert planned[1].background == vocabulary == background_prompts(["Olive Groves"])  # any case


def test_areas_left_out_map_the_whole_cube(cube: Path, tmp_path: Path) -> None:
    data = {
        **batch(cube, tmp_path),
        "defaults": {"versus": list(PLANTED), "formats": ["cog"], "dtype": "uint8"},
    }
    del data["areas"]
    spec = load_jobs(write_batch(tmp_path, data))
    report = run_jobs(spec, progress=False)
    assert report.done == ["all/a-lake", "all/woods"]
    path = tmp_path / "maps/all/a-lake.tif"
    with rasterio.open(path) as src:
        assert src.dtypes[0] == "uint8" and src.shape == GRID.shape
    planted = read_map(path).x.values < BOUNDARY_X
    np.testing.assert_array_equal(read_map(path).values > 0.5, np.broadcast_to(planted, GRID.shape))


# --- running ---------------------------------------------------------------------------------------


def test_run_writes_every_output(exported: tuple[JobSpec, JobReport]) -> None:
    spec, report = exported
    assert report.done == KEYS and report.skipped == [] and report.failed == {} and report.ok
    assert report.summary() == "4 done, 0 skipped, 0 failed"
    assert all(path.is_file() for path in outputs(spec))
    assert sorted(p.name for p in (spec.out / "east").iterdir()) == [
        "a-lake.html",
        "a-lake.png",
        "a-lake.tif",
        "woods.html",
        "woods.png",
        "woods.tif",
    ]


@pytest.mark.parametrize(("concept", "planted"), [("a-lake", True), ("woods", False)])
@pytest.mark.parametrize("area", ["west", "east"])
def test_maps_are_high_exactly_on_the_planted_half(
    exported: tuple[JobSpec, JobReport], area: str, concept: str, planted: bool
) -> None:
    spec, _ = exported
    da = read_map(spec.out / area / f"{concept}.tif")
    left = np.broadcast_to(da.x.values < BOUNDARY_X, da.shape)
    assert left.any() and (~left).any()  # each area holds both halves
    np.testing.assert_array_equal(da.values > 0.5, left if planted else ~left)
    assert da.rio.crs == GRID.crs


def test_png_and_html_outputs_are_real(exported: tuple[JobSpec, JobReport]) -> None:
    spec, _ = exported
    assert (spec.out / "west/woods.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (spec.out / "west/woods.html").read_text()
    assert "data:image/png;base64," in html and "P(a forest) - west" in html


def test_a_rerun_skips_every_job_and_touches_no_file(exported: tuple[JobSpec, JobReport]) -> None:
    spec, _ = exported
    before = mtimes(spec)
    report = run_jobs(spec, progress=False)
    assert report.skipped == KEYS and report.done == [] and report.failed == {}
    assert mtimes(spec) == before


def test_deleting_one_output_remakes_only_that_one(exported: tuple[JobSpec, JobReport]) -> None:
    spec, _ = exported
    gone = spec.out / "east/woods.png"
    gone.unlink()
    before = {path: path.stat().st_mtime_ns for path in outputs(spec) if path != gone}
    report = run_jobs(spec, progress=False)
    assert report.done == ["east/woods"]
    assert report.skipped == [key for key in KEYS if key != "east/woods"]
    assert gone.is_file()
    after = mtimes(spec)
    assert {path: after[path] for path in before} == before


def test_a_prompt_with_no_latin_letter_maps_when_not_calibrated(cube: Path, tmp_path: Path) -> None:
    data = {**batch(cube, tmp_path), "concepts": [{"name": "forest", "prompt": "δάσος"}]}
    data["defaults"] = {**data["defaults"], "formats": ["cog"]}
    report = run_jobs(load_jobs(write_batch(tmp_path, data)), progress=False)
    assert report.ok and report.done == ["west/forest", "east/forest"]


def test_overwrite_rewrites_every_output(cube: Path, tmp_path: Path) -> None:
    data = {**batch(cube, tmp_path), "concepts": ["a lake"]}
    data["defaults"] = {**data["defaults"], "formats": ["cog"]}
    spec = load_jobs(write_batch(tmp_path, data))
    run_jobs(spec, progress=False)
    before = mtimes(spec)
    report = run_jobs(spec, progress=False, overwrite=True)
    assert report.done == ["west/a-lake", "east/a-lake"]
    assert all(after > before[path] for path, after in mtimes(spec).items())


def test_a_local_dask_cluster_writes_identical_maps(
    exported: tuple[JobSpec, JobReport], tmp_path: Path
) -> None:
    spec, _ = exported
    dask_spec = spec.model_copy(update={"out": tmp_path / "maps"})
    report = run_jobs(dask_spec, scheduler="local", progress=False)
    assert sorted(report.done) == sorted(KEYS) and report.ok
    for path in outputs(spec):
        twin = dask_spec.out / path.relative_to(spec.out)
        assert twin.is_file()
        if path.suffix == ".tif":
            np.testing.assert_array_equal(read_map(twin).values, read_map(path).values)


@pytest.mark.parametrize("scheduler", [None, "local"])
def test_a_failing_job_is_reported_and_the_others_finish(
    cube: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheduler: str | None
) -> None:
    spec = load_jobs(write_batch(tmp_path, batch(cube, tmp_path)))
    real = jobs._probability

    def flaky(job: jobs.MapJob) -> Any:
        if job.prompt == "a forest":
            raise RuntimeError("out of forest")
        return real(job)

    monkeypatch.setattr(jobs, "_probability", flaky)
    report = run_jobs(spec, scheduler=scheduler, progress=False)
    assert sorted(report.done) == ["east/a-lake", "west/a-lake"]
    assert report.failed == {
        "west/woods": "RuntimeError: out of forest",
        "east/woods": "RuntimeError: out of forest",
    }
    assert not report.ok and report.summary() == "2 done, 0 skipped, 2 failed"
    assert not list(spec.out.rglob("woods*"))  # nothing half-written

    monkeypatch.setattr(jobs, "_probability", real)
    report = run_jobs(spec, scheduler=scheduler, progress=False)
    assert sorted(report.done) == ["east/woods", "west/woods"]
    assert sorted(report.skipped) == ["east/a-lake", "west/a-lake"]


def test_an_unreachable_scheduler_is_a_clear_error(
    cube: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = load_jobs(write_batch(tmp_path, batch(cube, tmp_path)))
    with pytest.raises(BadInputError, match="cannot reach the Dask scheduler"):
        run_jobs(spec, scheduler="inproc://nobody-home", progress=False)


# --- bad batch files -------------------------------------------------------------------------------


DELETE = object()


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change to a batch: set the value at a dotted path (list items by index); DELETE removes it."""

    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        key: Any = int(last) if isinstance(node, list) else last
        if value is DELETE:
            del node[key]
        else:
            node[key] = value

    return change


BAD_BATCHES = {
    "unknown top key": (_set("concept", ["a lake"]), r"unknown key 'concept'; did you mean 'concepts'"),
    "unknown defaults key": (_set("defaults.colour", "red"), r"defaults: unknown key 'colour'"),
    "missing cube": (_set("cube", DELETE), r"cube: required key is missing"),
    "cube not there": (_set("cube", "nowhere.zarr"), r"cube: .*nowhere.zarr does not exist"),
    "missing out": (_set("out", DELETE), r"out: required key is missing"),
    "empty concept": (_set("concepts.1", "  "), r"concepts\[1\]\.prompt: .*non-empty"),
    "empty prompt": (_set("concepts.1.prompt", ""), r"concepts\[1\]\.prompt: .*non-empty"),
    "unknown concept key": (_set("concepts.1.colour", "red"), r"concepts\[1\]: unknown key 'colour'"),
    "no concepts": (_set("concepts", []), r"concepts: give a list of at least one concept"),
    "repeated concept": (_set("concepts.1", "A lake"), r"concepts: concept names must be unique"),
    "bad bbox": (_set("areas.0.bbox", "1,2,3"), r"areas\[0\]\.bbox: bbox needs 4 numbers"),
    "bbox not numbers": (_set("areas.0.bbox", ["a", 1, 2, 3]), r"areas\[0\]\.bbox: give 'minlon,minlat"),
    "bbox off the cube": (_set("areas.0.bbox", "20,50,21,51"), r"areas\[0\]\.bbox: .*outside the grid"),
    "geojson missing": (
        _set("areas.1.bbox", "west.geojson"),
        r"areas\[1\]\.bbox: .*west.geojson does not exist",
    ),
    "area without name": (_set("areas.0.name", DELETE), r"areas\[0\]\.name: required key is missing"),
    "repeated area": (_set("areas.1.name", "West"), r"areas: area names must be unique"),
    "unknown format": (
        _set("defaults.formats", ["cog", "tiff"]),
        r"defaults\.formats\[1\]: unknown format 'tiff'",
    ),
    "unknown dtype": (_set("defaults.dtype", "float64"), r"defaults\.dtype: unknown dtype 'float64'"),
    "unknown style": (_set("defaults.style", "cubist"), r"defaults\.style: unknown prompt style 'cubist'"),
    "empty versus": (_set("defaults.versus", []), r"defaults\.versus: give a list of background prompts"),
    "versus only self": (
        _set("concepts.1.versus", ["a forest"]),
        r"concepts\[1\]: .*nothing but the concept",
    ),
    "unknown clip": (
        _set("clip", {"model": "ViT-B-33"}),
        r"clip\.model: unknown CLIP model 'ViT-B-33'.*ViT-B-32",
    ),
    "clip key": (_set("clip", {"name": "ViT-B-32"}), r"clip: unknown key 'name'"),
}


@pytest.mark.parametrize(("change", "message"), BAD_BATCHES.values(), ids=BAD_BATCHES.keys())
def test_a_bad_batch_file_names_the_key_and_writes_nothing(
    cube: Path, tmp_path: Path, change: Any, message: str
) -> None:
    data = batch(cube, tmp_path)
    change(data)
    path = write_batch(tmp_path, data)
    with pytest.raises(BadInputError, match=message) as error:
        load_jobs(path)
    assert str(error.value).startswith(f"{path}: ")
    assert not (tmp_path / "maps").exists()


def test_a_damaged_cube_keeps_its_error_and_exit_code(cube: Path, tmp_path: Path) -> None:
    import shutil

    from landprompt.errors import DamagedCubeError

    damaged = shutil.copytree(cube, tmp_path / "damaged.zarr")
    (damaged / "zarr.json").write_text("{")
    path = write_batch(tmp_path, {**batch(cube, tmp_path), "cube": str(damaged)})
    with pytest.raises(DamagedCubeError, match=r"batch\.yaml: cube: cube .*damaged") as error:
        load_jobs(path)
    assert error.value.exit_code == 4


def test_an_area_too_large_for_html_is_refused_up_front(
    cube: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch_spec, "HTML_MAX_PIXELS", 1000)
    with pytest.raises(BadInputError, match=r"areas\[0\]: the map is .* drop html from defaults.formats"):
        load_jobs(write_batch(tmp_path, batch(cube, tmp_path)))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cube: [unclosed", "is not valid YAML"),
        ("- just\n- a list", "must be a mapping"),
        ("", "must be a mapping"),
    ],
)
def test_a_batch_file_that_is_not_a_mapping_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "batch.yaml"
    path.write_text(text)
    with pytest.raises(BadInputError, match=message):
        load_jobs(path)
    with pytest.raises(BadInputError, match="does not exist"):
        load_jobs(tmp_path / "missing.yaml")


def test_an_explicit_clip_replaces_the_cubes(cube: Path, tmp_path: Path) -> None:
    data = {**batch(cube, tmp_path), "clip": {"model": "landprompt-tiny", "pretrained": None}}
    assert load_jobs(write_batch(tmp_path, data)).clip == ClipKeys(model="landprompt-tiny")


def test_the_example_batch_file_is_valid(tmp_path: Path, cube: Path) -> None:
    example = Path(__file__).parents[1] / "examples" / "batch_maps.yaml"
    data = yaml.safe_load(example.read_text())
    data.pop("areas")  # the example's areas lie on the demo region, not on this cube
    spec = parse_batch({**data, "cube": str(cube), "out": str(tmp_path)}, example.parent)
    assert [c.slug for c in spec.concepts] == ["a-lake", "woods", "village"]
    assert spec.formats == ("cog", "png", "html") and spec.defaults.style == "ground"
    assert spec.defaults.dtype == "float32"


def test_set_overrides_keys_of_the_batch_file(cube: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from landprompt.cli import app

    path = write_batch(tmp_path, batch(cube, tmp_path))
    args = [
        "query",
        "export",
        str(path),
        "--no-progress",
        "--set",
        "out=other",
        "--set",
        "defaults.formats=[cog]",
    ]
    result = CliRunner().invoke(app, [*args, "--set", "concepts=[a lake]"])
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "other").rglob("*.*")) == [
        "other/east/a-lake.tif",
        "other/west/a-lake.tif",
    ]
    assert not (tmp_path / "maps").exists()
    with pytest.raises(BadInputError, match=r"batch\.yaml: defaults\.formats\[0\]: unknown format 'jpg'"):
        load_jobs(path, ["defaults.formats=[jpg]"])
