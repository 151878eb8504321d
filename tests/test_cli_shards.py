"""The query commands on a folder of shards: ``query map``, ``query change`` and ``query aggregate`` give
what they give on the uncut cube, with provenance naming the folder and its shards."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import rasterio
from typer.testing import CliRunner

from landprompt.cli import app
from landprompt.geo import Grid

CONCEPT, VERSUS = "olive groves", ["--versus", "sea", "--versus", "a forest"]


def invoke(*args: object) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def error_line(result: Any) -> str:
    lines = [line for line in result.output.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory, tiny_clip: Any, cube_data: Any) -> SimpleNamespace:
    return cube_data.side_by_side_shards(tmp_path_factory.mktemp("shards"), tiny_clip)


@pytest.fixture(scope="module")
def later(tmp_path_factory: pytest.TempPathFactory, tiny_clip: Any, cube_data: Any) -> SimpleNamespace:
    """The same tiles a year later: other weights of olive groves, the same shard names."""
    return cube_data.side_by_side_shards(tmp_path_factory.mktemp("later"), tiny_clip, seed=6)


def read(path: Path) -> tuple[np.ndarray, dict[str, str], Any]:
    with rasterio.open(path) as src:
        return src.read(1), src.tags(), src.transform


def lonlat_box(grid: Grid, rows: slice, cols: slice) -> str:
    """A lon/lat bbox a little inside a pixel window (so it covers exactly that window)."""
    x0, y1 = grid.rowcol_to_xy(rows.start, cols.start)
    x1, y0 = grid.rowcol_to_xy(rows.stop - 1, cols.stop - 1)
    return ",".join(map(str, Grid.from_bounds((x0, y0, x1, y1), grid.crs, 1.0).bbox))


def test_a_folder_maps_as_its_uncut_cube_with_the_shards_in_its_provenance(shards, tmp_path) -> None:
    across = lonlat_box(shards.grid, slice(5, 15), slice(12, 30))  # straddles the west/east border
    for name, bbox in (("all", ["--png"]), ("across", ["--bbox", across])):
        out = {cube: tmp_path / f"{name}_{cube}.tif" for cube in ("folder", "whole")}
        for cube, path in ((shards.folder, out["folder"]), (shards.whole, out["whole"])):
            result = invoke("query", "map", cube, CONCEPT, *VERSUS, *bbox, "-o", path)
            assert result.exit_code == 0, result.output
        mosaic, tags, transform = read(out["folder"])
        single, single_tags, single_transform = read(out["whole"])
        np.testing.assert_allclose(mosaic, single, atol=1e-6)  # NaN (no-data) in the same places
        assert transform == single_transform and mosaic.shape == ((48, 48) if name == "all" else (10, 18))
        assert out["folder"].with_suffix(".png").is_file() == (name == "all")
    assert tags["landprompt_cube"] == str(shards.folder.resolve())
    assert json.loads(tags["landprompt_cube_shards"]) == ["east.zarr", "west.zarr"]
    hashes = json.loads(tags["landprompt_cube_content_hash"])
    assert len(hashes) == 2 and all(len(h) == 64 for h in hashes)
    assert "landprompt_cube_shards" not in single_tags
    assert {k: v for k, v in tags.items() if not k.startswith(("landprompt_cube", "landprompt_created"))} == {
        k: v for k, v in single_tags.items() if not k.startswith(("landprompt_cube", "landprompt_created"))
    }


def test_the_html_size_check_applies_to_the_mosaic(shards, tmp_path, monkeypatch) -> None:
    import landprompt.query.maps as maps

    check = maps.check_html_size
    monkeypatch.setattr(maps, "check_html_size", lambda shape, *_: check(shape, 2000))
    out = tmp_path / "m.tif"
    result = invoke("query", "map", shards.folder, CONCEPT, *VERSUS, "-o", out, "--html")
    assert result.exit_code == 2
    assert "the map is 48 x 48 pixels, more than the 2,000" in error_line(result)
    assert list(tmp_path.iterdir()) == []  # refused before scoring: nothing written
    east = lonlat_box(shards.grid, slice(0, 48), slice(shards.split, 48))  # one shard, 48 x 28 pixels
    result = invoke("query", "map", shards.folder, CONCEPT, *VERSUS, "--bbox", east, "-o", out, "--html")
    assert result.exit_code == 0, result.output
    assert out.with_suffix(".html").is_file()


def test_a_change_of_two_folders_is_the_change_of_the_uncut_cubes(shards, later, tmp_path) -> None:
    written = {}
    for name, a, b in (("folders", shards.folder, later.folder), ("whole", shards.whole, later.whole)):
        out = tmp_path / f"{name}.tif"
        result = invoke("query", "change", a, b, CONCEPT, *VERSUS, "--threshold", "0.1", "-o", out)
        assert result.exit_code == 0, result.output
        written[name] = (read(out), read(tmp_path / f"{name}_class.tif"))
    (diff, tags, transform), (classes, _, _) = written["folders"]
    (single, _, single_transform), (single_classes, _, _) = written["whole"]
    np.testing.assert_allclose(diff, single, atol=1e-6)
    np.testing.assert_array_equal(classes, single_classes)
    assert transform == single_transform and {1, 2} <= set(np.unique(classes))  # gains and losses
    assert (tags["landprompt_cube"], tags["landprompt_cube_b"]) == tuple(
        str(p.resolve()) for p in (shards.folder, later.folder)
    )
    assert json.loads(tags["landprompt_cube_b_shards"]) == ["east.zarr", "west.zarr"]
    assert len(json.loads(tags["landprompt_cube_b_content_hash"])) == 2


def test_a_folder_against_one_cube_is_refused_in_one_line(shards, later, tmp_path) -> None:
    out = tmp_path / "c.tif"
    for a, b in ((shards.folder, later.whole), (shards.whole, later.folder)):
        result = invoke("query", "change", a, b, CONCEPT, "-o", out)
        assert result.exit_code == 2
        line = error_line(result)
        assert "is a folder of shards but" in line and "is one cube: give two cubes, or two folders" in line
    assert list(tmp_path.iterdir()) == []


def units_geojson(grid: Grid, path: Path) -> Path:
    """Polygons in the grid's CRS (a 'crs' member): one straddling the shards, one in each, one past
    the grid's edge."""

    def polygon(*corners: tuple[float, float]) -> dict[str, Any]:
        ring = [list(grid.transform * corner) for corner in corners]
        return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}

    shapes = {
        "straddle": polygon((8, 3), (35, 10), (12, 40)),
        "west": polygon((2, 20), (10, 20), (10, 30), (2, 30)),
        "east": polygon((25, 2), (40, 2), (40, 12), (25, 12)),
        "past": polygon((30, 30), (52, 30), (52, 46), (30, 46)),
    }
    features = [
        {"type": "Feature", "properties": {"name": name}, "geometry": shape} for name, shape in shapes.items()
    ]
    crs = {"type": "name", "properties": {"name": grid.crs.to_string()}}
    path.write_text(json.dumps({"type": "FeatureCollection", "crs": crs, "features": features}))
    return path


def test_aggregate_over_a_folder_is_the_uncut_cubes(shards, tmp_path) -> None:
    units = units_geojson(shards.grid, tmp_path / "units.geojson")
    tables = {}
    for name, cube in (("folder", shards.folder), ("whole", shards.whole)):
        out = tmp_path / f"{name}.csv"
        result = invoke(
            "query", "aggregate", cube, CONCEPT, *VERSUS, "--units", units, "--id-field", "name", "-o", out
        )
        assert result.exit_code == 0, result.output
        tables[name] = pd.read_csv(out)
    pd.testing.assert_frame_equal(tables["folder"], tables["whole"], rtol=1e-6)
    assert list(tables["folder"]["name"]) == ["straddle", "west", "east", "past"]
    assert (tables["folder"]["pixels"] > 0).all()


# --- batch files ----------------------------------------------------------------------------------


def run_batch(tmp_path: Path, name: str, **keys: Any) -> Path:
    """Run a batch of one concept (``keys`` complete it) in ``tmp_path/name``; its output folder."""
    from landprompt.batch.run import run_jobs
    from landprompt.batch.spec import parse_batch

    data = {"out": name, "concepts": [{"prompt": CONCEPT, "versus": ["sea", "a forest"]}], **keys}
    report = run_jobs(parse_batch(data, tmp_path), progress=False)
    assert report.ok, report.failed
    return tmp_path / name


def test_a_batch_on_folders_writes_the_uncut_cubes_outputs(shards, later, tmp_path) -> None:
    units = units_geojson(shards.grid, tmp_path / "units.geojson")
    across = {"name": "across", "bbox": lonlat_box(shards.grid, slice(5, 15), slice(12, 30))}
    cog = {"formats": ["cog"]}
    for cube, cube_b, name in (
        (shards.folder, later.folder, "folders"),
        (shards.whole, later.whole, "whole"),
    ):
        run_batch(tmp_path, f"map-{name}", cube=str(cube), areas=[across], defaults=cog)
        run_batch(tmp_path, f"change-{name}", kind="change", cube=str(cube), cube_b=str(cube_b), defaults=cog)
        run_batch(
            tmp_path, f"agg-{name}", kind="aggregate", cube=str(cube), units=str(units), id_field="name"
        )
    for made in (
        "map-{}/across/olive-groves.tif",
        "change-{}/all/olive-groves.tif",
        "change-{}/all/olive-groves_class.tif",
    ):
        mosaic, tags, transform = read(tmp_path / made.format("folders"))
        single, _, single_transform = read(tmp_path / made.format("whole"))
        np.testing.assert_allclose(mosaic, single, atol=1e-6)
        assert transform == single_transform and np.isfinite(mosaic).any()
    assert json.loads(tags["landprompt_cube_b_shards"]) == ["east.zarr", "west.zarr"]
    tables = [pd.read_csv(tmp_path / f"agg-{name}/units/olive-groves.csv") for name in ("folders", "whole")]
    pd.testing.assert_frame_equal(*tables, rtol=1e-6)
    assert len(tables[0]) == 4 and (tables[0]["pixels"] > 0).all()


def test_a_batch_refuses_a_folder_where_it_takes_one_cube_in_one_line(shards, later, tmp_path) -> None:
    from landprompt.batch.spec import parse_batch
    from landprompt.errors import BadInputError

    base = {"out": "o", "concepts": [CONCEPT]}
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    (renamed / "west.zarr").symlink_to(later.west, target_is_directory=True)
    (renamed / "north.zarr").symlink_to(later.east, target_is_directory=True)
    refused = {
        "folder of shards: kind points takes one cube": {
            "kind": "points",
            "cube": shards.folder,
            "points": "p.csv",
        },
        "cube_b: .*shards is a folder of shards but .*whole.zarr is one cube: give two cubes": {
            "kind": "change",
            "cube": shards.folder,
            "cube_b": later.whole,
        },
        "cube_b: .*later.* is a folder of shards but .*whole.zarr is one cube": {
            "kind": "change",
            "cube": shards.whole,
            "cube_b": later.folder,
        },
        "cube_b: the later shards are not named as the earlier ones": {
            "kind": "change",
            "cube": shards.folder,
            "cube_b": renamed,
        },
    }
    for message, keys in refused.items():
        with pytest.raises(BadInputError, match=message) as err:
            parse_batch({**base, **{k: str(v) for k, v in keys.items()}}, tmp_path)
        assert "\n" not in str(err.value)
    assert not (tmp_path / "o").exists()


def test_a_batch_job_on_a_folder_opens_each_shard_once(shards, tmp_path, monkeypatch) -> None:
    """The job's provenance reads the hashes from the session's open shards, once for all formats."""
    import landprompt.embedder.cube as cube_module
    import landprompt.query.session as session_module
    from landprompt.batch.run import run_jobs
    from landprompt.batch.spec import parse_batch

    units = units_geojson(shards.grid, tmp_path / "units.geojson")
    keys = {"kind": "aggregate", "cube": str(shards.folder), "units": str(units), "id_field": "name"}
    data = {"out": "o", "concepts": [CONCEPT], "defaults": {"formats": ["csv", "geojson"]}, **keys}
    monkeypatch.setattr(session_module, "_SESSIONS", type(session_module._SESSIONS)())  # none cached
    spec = parse_batch(data, tmp_path)
    opened: list[str] = []

    def counting(path: Any) -> Any:
        opened.append(Path(path).name)
        return real(path)

    real = cube_module.open_cube
    monkeypatch.setattr(cube_module, "open_cube", counting)
    monkeypatch.setattr(session_module, "open_cube", counting)
    report = run_jobs(spec, progress=False)
    assert report.ok, report.failed
    assert sorted(opened) == ["east.zarr", "west.zarr"]  # the job's session (with the batch's CLIP model)
    made = json.loads((tmp_path / "o/units/olive-groves.geojson").read_text())
    assert json.loads(made["landprompt"]["landprompt_cube_shards"]) == ["east.zarr", "west.zarr"]


def test_query_map_checks_its_outputs_before_opening_the_cubes_or_loading_clip(
    shards, tmp_path, monkeypatch
) -> None:
    import landprompt.cli.query as query_cli

    def no_session(*args: Any) -> Any:
        raise AssertionError("the session (and the CLIP model of --clip) was loaded before the checks")

    monkeypatch.setattr(query_cli, "query_session", no_session)
    out = tmp_path / "m.tif"
    out.with_suffix(".png").mkdir()
    for cube in (shards.folder, shards.whole):
        result = invoke("query", "map", cube, CONCEPT, "-o", out, "--png", "--clip", "ViT-B-32")
        assert result.exit_code == 2, result.output
        assert "m.png is a folder: give a file path" in error_line(result)
    assert not out.exists()
