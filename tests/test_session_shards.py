"""Query sessions over a folder of shards (one text tower, merged top-k, mosaic maps) and the analytics as
session methods (change, aggregate; validation at points takes a session)."""

from __future__ import annotations

import io
import json
import shutil
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from affine import Affine

import landprompt
from landprompt.calibration import Calibration, calibration_path, save_calibration
from landprompt.embedder.cube import write_cube
from landprompt.errors import BadInputError
from landprompt.evaluate.points import evaluate_points
from landprompt.geo import Grid, mosaic_grid
from landprompt.index.build import build_index
from landprompt.query.aggregate import Units, aggregate
from landprompt.query.change import change_map
from landprompt.query.session import QuerySession, ShardedSession, open_session
from landprompt.query.topk import top_k_shards

CONCEPT, VERSUS = "olive groves", ["sea", "a forest"]


class Counting:
    """A CLIP model that records every prompt its text tower encodes."""

    def __init__(self, clip: Any) -> None:
        self._clip = clip
        self.encoded: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._clip, name)

    def encode_prompts(self, names: list[str], templates: Any) -> Any:
        self.encoded.extend(names)
        return self._clip.encode_prompts(names, templates)


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory, tiny_clip: Any, cube_data: Any) -> SimpleNamespace:
    return cube_data.side_by_side_shards(tmp_path_factory.mktemp("shards"), tiny_clip)


def window_bbox(grid: Grid, rows: slice, cols: slice) -> tuple[float, ...]:
    """A lon/lat bbox a little inside a pixel window (so it covers exactly that window)."""
    x0, y1 = grid.rowcol_to_xy(rows.start, cols.start)
    x1, y0 = grid.rowcol_to_xy(rows.stop - 1, cols.stop - 1)
    return tuple(Grid.from_bounds((x0, y0, x1, y1), grid.crs, 1.0).bbox)


def test_a_folder_of_shards_maps_as_its_one_cube_with_each_prompt_encoded_once(shards, tiny_clip) -> None:
    clip = Counting(tiny_clip)
    session = open_session(shards.folder, clip)
    assert isinstance(session, ShardedSession)
    assert [p.name for p in session.cubes] == ["east.zarr", "west.zarr"]
    assert session.shards[0].text is session.shards[1].text is session.text
    whole = QuerySession(shards.whole, tiny_clip)

    mosaic = session.probability_maps([CONCEPT, "sea"], versus=["a forest"])
    single = whole.probability_maps([CONCEPT, "sea"], versus=["a forest"])
    assert mosaic.dims == ("concept", "y", "x") and mosaic.shape == (2, 48, 48)
    np.testing.assert_allclose(mosaic.values, single.values, atol=1e-6)  # NaN in the same places
    assert np.isnan(mosaic.values[:, 0]).all() and np.isfinite(mosaic.values[:, 1:]).all()
    assert mosaic.rio.crs == single.rio.crs and mosaic.rio.transform() == single.rio.transform()
    np.testing.assert_array_equal(mosaic.x, single.x)
    assert list(mosaic.concept.values) == [CONCEPT, "sea"]

    one = session.probability_map(CONCEPT, versus=VERSUS)
    np.testing.assert_allclose(one.values, whole.probability_map(CONCEPT, versus=VERSUS).values, atol=1e-6)
    assert one.attrs["concept"] == CONCEPT and one.dims == ("y", "x")
    assert Counter(clip.encoded) == {CONCEPT: 1, "sea": 1, "a forest": 1}  # once for both shards


def test_a_bbox_maps_the_mosaic_of_the_shards_it_touches(shards, tiny_clip) -> None:
    session = open_session(shards.folder, tiny_clip)
    whole = QuerySession(shards.whole, tiny_clip)
    across = window_bbox(shards.grid, slice(5, 15), slice(12, 30))  # west cols 12:20 and east 20:30
    east_only = window_bbox(shards.grid, slice(30, 40), slice(25, 40))
    for bbox, shape in ((across, (10, 18)), (east_only, (10, 15))):
        mosaic = session.probability_map(CONCEPT, versus=VERSUS, bbox=bbox)
        single = whole.probability_map(CONCEPT, versus=VERSUS, bbox=bbox)
        assert mosaic.shape == single.shape == shape
        np.testing.assert_allclose(mosaic.values, single.values, atol=1e-6)
        assert mosaic.rio.transform() == single.rio.transform()
    module_level = landprompt.probability_map(
        shards.folder, CONCEPT, versus=VERSUS, bbox=across, clip=tiny_clip
    )
    np.testing.assert_allclose(
        module_level.values, whole.probability_map(CONCEPT, versus=VERSUS, bbox=across).values, atol=1e-6
    )
    with pytest.raises(BadInputError, match="outside every one of the 2 shards"):
        session.probability_map(CONCEPT, versus=VERSUS, bbox="20,50,20.1,50.1")


def recording(calls: list[tuple[int, int]]) -> Any:
    """A progress callback that appends each ``(done, total)`` to ``calls``."""
    return lambda done, total: calls.append((done, total))


def test_the_module_level_map_is_the_session_map_with_its_progress_and_concept_attr(
    shards, tiny_clip
) -> None:
    import xarray as xr

    from landprompt.embedder.cube import open_cube
    from landprompt.query.session import DatasetSession

    whole = QuerySession(shards.whole, tiny_clip)
    for concept, name in ((CONCEPT, CONCEPT), (whole.encode(CONCEPT)[0], "embedding")):
        calls: list[tuple[int, int]] = []
        mapped = whole.probability_map(concept, versus=VERSUS, progress=recording(calls))
        assert mapped.attrs["concept"] == name and mapped.dims == ("y", "x")
        assert calls[-1] == (48 * 48, 48 * 48) and [d for d, _ in calls] == sorted({d for d, _ in calls})
        for same in (
            landprompt.probability_map(shards.whole, concept, versus=VERSUS, clip=tiny_clip),
            landprompt.probability_map(open_cube(shards.whole), concept, versus=VERSUS, clip=tiny_clip),
            DatasetSession(open_cube(shards.whole), tiny_clip).probability_map(concept, versus=VERSUS),
        ):
            xr.testing.assert_identical(same, mapped)  # values, coordinates, CRS and attrs

    calls = []
    west = window_bbox(shards.grid, slice(5, 15), slice(12, 20))  # inside the west shard only
    mosaic = landprompt.probability_map(
        shards.folder, CONCEPT, versus=VERSUS, clip=tiny_clip, progress=recording(calls)
    )
    assert mosaic.attrs["concept"] == CONCEPT and calls[-1] == (48 * 48, 48 * 48)
    assert [d for d, _ in calls] == sorted({d for d, _ in calls}) and {t for _, t in calls} == {48 * 48}
    calls = []
    open_session(shards.folder, tiny_clip).probability_map(
        CONCEPT, versus=VERSUS, bbox=west, progress=recording(calls)
    )
    assert calls[-1] == (10 * 8, 10 * 8)


def test_shards_write_their_windows_in_place_and_overlaps_keep_the_later_valid_pixels(
    shards, tiny_clip, cube_data, tmp_path, monkeypatch
) -> None:
    windows: list[np.ndarray] = []
    scored = QuerySession.probability_window
    monkeypatch.setattr(
        QuerySession, "probability_window", lambda *a, **k: windows.append(scored(*a, **k)) or windows[-1]
    )
    mosaic = ShardedSession(shards.folder, tiny_clip).probability_maps([CONCEPT, "sea"], versus=VERSUS)
    assert len(windows) == 2 and all(np.shares_memory(w, mosaic.values) for w in windows)  # no copies

    grid, emb, valid, rows = shards.grid, shards.emb, shards.valid, slice(0, 48)
    west, east = slice(0, 24), slice(16, 48)  # overlapping in columns 16-23
    east_emb, east_valid = emb[:, east].copy(), valid[:, east].copy()
    east_emb[:, :4] = emb[:, 40:44]  # columns 16-19: the later shard holds other valid pixels: they win
    east_valid[:, 4:8] = False  # columns 20-23: the later shard has none: the earlier one's stay
    folder = tmp_path / "overlap"
    for name, cols, values, ok in (
        ("a.zarr", west, emb[:, west], valid[:, west]),
        ("b.zarr", east, east_emb, east_valid),
    ):
        write_cube(
            folder / name,
            values,
            grid.window(rows, cols),
            valid=ok,
            chunk=16,
            attrs=cube_data.clip_attrs(tiny_clip),
        )
    windows.clear()
    got = ShardedSession(folder, tiny_clip).probability_map(CONCEPT, versus=VERSUS).values
    a, b = (
        QuerySession(folder / f"{n}.zarr", tiny_clip).probability_map(CONCEPT, versus=VERSUS).values
        for n in "ab"
    )
    assert np.isnan(b[:, 4:8]).all() and not np.allclose(a[1:, 16:20], b[1:, :4])  # the overlap matters
    expected = np.concatenate([a[:, :16], b[:, :4], a[:, 20:], b[:, 8:]], axis=1)
    np.testing.assert_array_equal(got, expected)
    assert np.shares_memory(windows[0], got) and not np.shares_memory(windows[1], got)


def test_top_k_over_a_folder_merges_the_shards_as_one_cube(shards, tiny_clip) -> None:
    vector = shards.emb[30, 40]
    places = landprompt.top_k(shards.folder, vector, k=5, min_distance_m=50)
    single = landprompt.top_k(shards.whole, vector, k=5, min_distance_m=50, index=None)
    np.testing.assert_allclose(places[["lon", "lat"]], single[["lon", "lat"]])
    np.testing.assert_allclose(places["score"], single["score"], rtol=1e-5)
    assert places["rank"].tolist() == [1, 2, 3, 4, 5] and places.loc[0, "cube"] == str(shards.east)
    assert open_session(shards.folder) is open_session(shards.folder)  # the cached session
    west = window_bbox(shards.grid, slice(0, 48), slice(0, 20))
    inside = landprompt.top_k(shards.folder, vector, k=3, bbox=west)
    assert set(inside["cube"]) == {str(shards.west)}
    assert (inside["col"] < shards.split).all() and inside["score"].is_monotonic_decreasing
    listed = top_k_shards([shards.west, shards.east], vector, k=5, min_distance_m=50)
    pd.testing.assert_frame_equal(listed.drop(columns="cube"), places.drop(columns="cube"))
    with pytest.raises(BadInputError, match="its own index"):
        landprompt.top_k(shards.folder, vector, index="some.faiss")
    with pytest.raises(BadInputError, match="no cubes"):
        top_k_shards([], vector)


def test_shards_keep_their_own_index_and_the_folder_session_notices_changes(tmp_path, tiny_clip, cube_data):
    data = cube_data.side_by_side_shards(tmp_path, tiny_clip)
    first = open_session(data.folder, tiny_clip)
    vector = data.emb[10, 5]
    exact = first.top_k(vector, k=4, index=None)
    build_index(data.east, progress=False)
    assert first.stale  # a shard's index appeared
    second = open_session(data.folder)
    assert second is not first and isinstance(second, ShardedSession)
    assert second.shards[0].index is not None and second.shards[1].index is None  # east, west
    assert second.shards[1] is first.shards[1] and second.shards[0] is not first.shards[0]  # west kept open
    assert second.text is first.text  # the prompts encoded so far are kept
    pd.testing.assert_frame_equal(second.top_k(vector, k=4), exact)
    shutil.copytree(data.west, data.folder / "zz.zarr")  # a shard added to the folder
    assert second.stale
    third = open_session(data.folder)
    assert [p.name for p in third.cubes] == ["east.zarr", "west.zarr", "zz.zarr"]
    assert third.shards[:2] == second.shards  # only the new shard is opened


def small_cube(path: Path, transform: Affine, crs: object = "EPSG:32632", **attrs: Any) -> Path:
    emb = np.random.default_rng(len(path.name)).normal(size=(8, 10, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
    return write_cube(path, emb, Grid(crs, transform, (8, 10)), chunk=8, attrs=attrs)


def test_shards_of_another_clip_space_or_grid_are_refused_in_one_line(tmp_path, monkeypatch) -> None:
    from landprompt.query.session import QuerySession

    closed: list[str] = []
    close = QuerySession.close
    monkeypatch.setattr(QuerySession, "close", lambda self: closed.append(self.path.name) or close(self))
    t = Affine(10.0, 0, 680_000.0, 0, -10.0, 4_800_000.0)
    concepts, background = np.eye(8, dtype=np.float32)[:1], np.eye(8, dtype=np.float32)[1:4]

    mixed = tmp_path / "mixed"
    small_cube(mixed / "a.zarr", t, clip_model="ViT-B-32")
    small_cube(mixed / "b.zarr", t * Affine.translation(10, 0), clip_model="RN50")
    with pytest.raises(BadInputError, match=r"shards a.zarr and b.zarr differ in CLIP model") as err:
        open_session(mixed)
    assert "\n" not in str(err.value)
    assert sorted(closed) == ["a.zarr", "b.zarr"]  # the shards opened before the refusal are released

    gap = tmp_path / "gap"  # aligned shards with two empty columns between them
    small_cube(gap / "a.zarr", t)
    small_cube(gap / "b.zarr", t * Affine.translation(12, 0))
    maps = open_session(gap).probability_maps(concepts, background)
    assert maps.shape == (1, 8, 22) and maps.rio.transform() == t
    assert np.isnan(maps.values[0, :, 10:12]).all() and np.isfinite(maps.values[0, :, :10]).all()

    for name, transform, crs, match in (
        ("crs", t, "EPSG:32633", "different CRSs"),
        ("res", Affine(20.0, 0, 680_200.0, 0, -20.0, 4_800_000.0), "EPSG:32632", "differ in resolution"),
        ("shift", t * Affine.translation(10.5, 0), "EPSG:32632", "do not line up"),
    ):
        small_cube(tmp_path / name / "a.zarr", t)
        small_cube(tmp_path / name / "b.zarr", transform, crs)
        session = open_session(tmp_path / name)
        with pytest.raises(BadInputError, match=match):
            session.probability_maps(concepts, background)
        assert len(session.top_k(concepts[0], k=3)) == 3  # top-k merges in EPSG:3035: any grids


def test_mosaic_grid_offsets() -> None:
    t = Affine(10.0, 0, 100.0, 0, -10.0, 1000.0)
    grid, offsets = mosaic_grid([Grid(3035, t * Affine.translation(5, 2), (4, 3)), Grid(3035, t, (2, 2))])
    assert grid.transform == t and grid.shape == (6, 8) and offsets == [(2, 5), (0, 0)]


def test_the_analytics_score_with_the_sessions_prompts(analytics_cubes, tiny_clip, units_file, tmp_path):
    c = analytics_cubes
    clip = Counting(tiny_clip)
    session = QuerySession(c.year1, clip)

    change = session.change(c.year2, c.concept, versus=c.versus, logit_scale=100)
    expected = change_map(c.year1, c.year2, c.concept, versus=c.versus, clip=tiny_clip, logit_scale=100)
    for name in ("p_a", "p_b", "diff", "class"):
        np.testing.assert_array_equal(change[name].values, expected[name].values)
    assert change.attrs == expected.attrs
    later = QuerySession(c.year2, tiny_clip)
    again = session.change(later, c.concept, versus=c.versus, logit_scale=100)
    np.testing.assert_array_equal(again["class"].values, expected["class"].values)

    units = units_file(tmp_path)
    table = session.aggregate(c.concept, units, "NUTS_ID", versus=c.versus)
    pd.testing.assert_frame_equal(
        table, aggregate(c.year1, c.concept, units, "NUTS_ID", versus=c.versus, clip=tiny_clip)
    )
    assert table.attrs["concept"] == c.concept

    rows, cols = (a.ravel() for a in np.meshgrid(np.arange(1, 48, 3), np.arange(0, 48, 3), indexing="ij"))
    lon, lat = c.grid.rowcol_to_lonlat(rows, cols)
    planted = np.zeros((48, 48), bool)
    planted[c.loss_block] = True
    points = pd.DataFrame({"lon": lon, "lat": lat, "present": planted[rows, cols]})
    report = evaluate_points(session, c.concept, points, versus=c.versus, save=False)
    direct = evaluate_points(c.year1, c.concept, points, versus=c.versus, clip=tiny_clip, save=False)
    assert json.dumps(report, sort_keys=True) == json.dumps(direct, sort_keys=True)  # NaN bins alike
    assert report["metrics"]["auc"] == 1.0
    assert Counter(clip.encoded) == {c.concept: 1, "sea": 1, "a forest": 1}  # once for all three


def test_the_cli_searches_a_folder_of_shards_inside_a_bbox(shards) -> None:
    from typer.testing import CliRunner

    from landprompt.cli import app

    east = window_bbox(shards.grid, slice(0, 48), slice(shards.split, 48))
    args = ["query", "topk", str(shards.folder), CONCEPT, "-k", "3", "--format", "csv"]
    result = CliRunner().invoke(app, [*args, "--bbox", ",".join(map(str, east))])
    assert result.exit_code == 0, result.output
    places = pd.read_csv(io.StringIO(result.stdout))
    assert len(places) == 3 and set(places["cube"]) == {str(shards.east)}


def test_a_folder_keeps_a_bounded_number_of_shard_indexes_loaded(shards, tiny_clip, monkeypatch) -> None:
    import landprompt.query.session as session_module

    monkeypatch.setattr(session_module, "MAX_SHARD_INDEXES", 1)
    vector = shards.emb[30, 40]
    session = open_session(shards.folder)
    first = landprompt.top_k(shards.folder, vector, k=5)
    loaded = [shard._index is not session_module._UNSET for shard in session.shards]
    assert loaded.count(True) == 1  # the other shard's index was released after its search
    pd.testing.assert_frame_equal(landprompt.top_k(shards.folder, vector, k=5), first)  # loaded again


# --- the analytics over a folder of shards --------------------------------------------------------


@pytest.fixture(scope="module")
def later_shards(tmp_path_factory: pytest.TempPathFactory, tiny_clip: Any, cube_data: Any) -> SimpleNamespace:
    """The same tiles a year later: other weights of olive groves, the same shard names."""
    return cube_data.side_by_side_shards(tmp_path_factory.mktemp("later"), tiny_clip, seed=6)


def polygon(grid: Grid, *corners: tuple[float, float]) -> dict[str, Any]:
    """A GeoJSON polygon in the grid's CRS through (column, row) pixel-edge positions."""
    ring = [list(grid.transform * corner) for corner in corners]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


def shard_units(grid: Grid) -> Units:
    """The whole grid (where no later polygon is), a triangle straddling the west/east border, one
    square in each shard, one reaching past the grid's edge and an empty geometry."""
    return Units(
        ["rest", "straddle", "west", "east", "past", "empty"],
        [
            polygon(grid, (0, 0), (48, 0), (48, 48), (0, 48)),
            polygon(grid, (8, 3), (35, 10), (12, 40)),
            polygon(grid, (2, 20), (10, 20), (10, 30), (2, 30)),
            polygon(grid, (25, 2), (40, 2), (40, 12), (25, 12)),
            polygon(grid, (30, 30), (52, 30), (52, 46), (30, 46)),
            None,
        ],
        grid.crs,
        id_field="name",
    )


def test_aggregate_over_shards_equals_the_uncut_cube_with_polygons_straddling_them(shards, tiny_clip) -> None:
    units = shard_units(shards.grid)
    session = open_session(shards.folder, tiny_clip)
    calls: list[tuple[int, int]] = []
    table = session.aggregate(
        CONCEPT, units, versus=VERSUS, threshold=0.3, progress=lambda *a: calls.append(a)
    )
    single = QuerySession(shards.whole, tiny_clip).aggregate(CONCEPT, units, versus=VERSUS, threshold=0.3)
    pd.testing.assert_frame_equal(table, single, rtol=1e-6)
    assert table.attrs == single.attrs and table.attrs["concept"] == CONCEPT
    rows = table.set_index("name")
    assert rows["pixels"].sum() == 48 * 48 and rows["valid_pixels"].sum() == 47 * 48  # each pixel once
    assert rows.loc["empty", "pixels"] == 0 and rows.loc["past", "pixels"] == 16 * 18
    assert 0 < rows.loc["straddle", "area_above_threshold_ha"] < rows.loc["straddle", "area_ha"]
    parts = [
        aggregate(cube, CONCEPT, units, versus=VERSUS, clip=tiny_clip) for cube in (shards.west, shards.east)
    ]
    straddle = [part.set_index("name").loc["straddle", "pixels"] for part in parts]
    assert min(straddle) > 0 and sum(straddle) == rows.loc["straddle", "pixels"]  # both shards add to it
    assert calls[-1][0] == calls[-1][1] and [done for done, _ in calls] == sorted(done for done, _ in calls)

    inside = Units(["west"], [units.geometries[2]], units.crs, id_field="name")
    tracked: list[tuple[int, int]] = []
    session.aggregate(CONCEPT, inside, versus=VERSUS, progress=lambda *a: tracked.append(a))
    assert tracked[-1] == (10 * 8, 10 * 8)  # only the window of its bounds in the west shard is read
    far = Units(["far"], [polygon(shards.grid, (60, 0), (70, 0), (70, 5))], units.crs)
    with pytest.raises(
        BadInputError, match=r"none of the 1 polygons of the units overlaps any of the 2 shards"
    ):
        session.aggregate(CONCEPT, far, versus=VERSUS)


def test_overlapping_shards_count_each_pixel_once_the_later_valid_one_winning(
    shards, tiny_clip, cube_data, tmp_path
) -> None:
    emb, grid = shards.emb, shards.grid
    valid = shards.valid.copy()
    valid[5:8, 18:21] = False  # no-data in both shards: counted once, as not valid
    attrs = cube_data.clip_attrs(tiny_clip)
    later_emb, later_valid = emb[::-1, 15:].copy(), valid[::-1, 15:].copy()  # other values, row 47 no-data
    later_valid[5:12, 3:10] = False  # holes in the overlap (columns 15-29): the earlier shard's pixels count
    folder = tmp_path / "overlap"
    for name, cols, values, mask in (
        ("a", slice(0, 30), emb[:, :30], valid[:, :30]),
        ("b", slice(15, 48), later_emb, later_valid),
    ):
        write_cube(
            folder / f"{name}.zarr",
            values,
            grid.window(slice(0, 48), cols),
            valid=mask,
            chunk=16,
            attrs=attrs,
        )
    mosaic_emb, mosaic_valid = emb.copy(), valid.copy()  # what the mosaic rule makes of them
    mosaic_emb[:, 15:][later_valid] = later_emb[later_valid]
    mosaic_valid[:, 15:] |= later_valid
    mosaic_valid[:, 30:] = later_valid[:, 15:]
    expected = write_cube(
        tmp_path / "mosaic.zarr", mosaic_emb, grid, valid=mosaic_valid, chunk=16, attrs=attrs
    )
    assert not mosaic_valid[5:8, 18:21].any() and mosaic_valid[5:12, 21:25].all()

    session = open_session(folder, tiny_clip)
    units = shard_units(grid)
    table = session.aggregate(CONCEPT, units, versus=VERSUS, threshold=0.3)
    single = QuerySession(expected, tiny_clip).aggregate(CONCEPT, units, versus=VERSUS, threshold=0.3)
    pd.testing.assert_frame_equal(table, single, rtol=1e-6)
    assert table["pixels"].sum() == 48 * 48  # not 48 * (48 + 15)
    maps = session.probability_map(CONCEPT, versus=VERSUS)  # the same rule as the maps' mosaic
    np.testing.assert_allclose(
        maps.values,
        QuerySession(expected, tiny_clip).probability_map(CONCEPT, versus=VERSUS).values,
        atol=1e-6,
    )


def test_aggregate_over_shards_calibrates_each_shard_or_all_alike(tmp_path, tiny_clip, cube_data) -> None:
    data = cube_data.side_by_side_shards(tmp_path, tiny_clip)
    units = shard_units(data.grid)
    session = open_session(data.folder, tiny_clip)
    for b, cube in ((0.5, data.west), (-1.0, data.east)):
        save_calibration(Calibration("platt", {"a": 1.0, "b": b}), calibration_path(cube, CONCEPT))
    own = session.aggregate(CONCEPT, units, versus=VERSUS, calibration=True).set_index("name")
    parts = [
        aggregate(cube, CONCEPT, units, versus=VERSUS, clip=tiny_clip, calibration=True).set_index("name")
        for cube in (data.west, data.east)
    ]
    np.testing.assert_allclose(
        own["expected_area_ha"], parts[0]["expected_area_ha"] + parts[1]["expected_area_ha"]
    )
    assert own.attrs["calibration"] == "platt"
    given = Calibration("platt", {"a": 2.0, "b": 0.0})
    table = session.aggregate(CONCEPT, units, versus=VERSUS, calibration=given)
    whole = aggregate(data.whole, CONCEPT, units, versus=VERSUS, clip=tiny_clip, calibration=given)
    pd.testing.assert_frame_equal(table, whole, rtol=1e-6)


def test_a_symlinked_shard_finds_the_calibration_saved_by_its_link(tmp_path, tiny_clip, cube_data) -> None:
    data = cube_data.side_by_side_shards(tmp_path / "real", tiny_clip)
    links = tmp_path / "links"
    links.mkdir()
    for cube in (data.west, data.east):
        (links / cube.name).symlink_to(cube.resolve(), target_is_directory=True)
    for b, name in ((0.5, "west.zarr"), (-1.0, "east.zarr")):  # saved as `evaluate points --fit` saves
        path = save_calibration(
            Calibration("platt", {"a": 1.0, "b": b}), calibration_path(links / name, CONCEPT)
        )
        assert path == calibration_path((links / name).resolve(), CONCEPT)  # one rule: next to the target
    units = shard_units(data.grid)
    linked = open_session(links, tiny_clip).aggregate(CONCEPT, units, versus=VERSUS, calibration=True)
    real = open_session(data.folder, tiny_clip).aggregate(CONCEPT, units, versus=VERSUS, calibration=True)
    pd.testing.assert_frame_equal(linked, real)
    assert linked.attrs["calibration"] == "platt"


def test_change_over_two_folders_is_the_change_of_the_uncut_cubes(shards, later_shards, tiny_clip) -> None:
    session = open_session(shards.folder, tiny_clip)
    whole = QuerySession(shards.whole, tiny_clip)
    across = window_bbox(shards.grid, slice(5, 15), slice(12, 30))
    for later, bbox in ((later_shards.folder, None), (open_session(later_shards.folder), across)):
        change = session.change(later, CONCEPT, versus=VERSUS, threshold=0.1, bbox=bbox)
        single = whole.change(later_shards.whole, CONCEPT, versus=VERSUS, threshold=0.1, bbox=bbox)
        for name in ("p_a", "p_b", "diff"):
            np.testing.assert_allclose(change[name].values, single[name].values, atol=1e-6)
        np.testing.assert_array_equal(change["class"].values, single["class"].values)
        assert change.rio.transform() == single.rio.transform() and change.rio.crs == single.rio.crs
        assert {k: v for k, v in change.attrs.items() if not k.startswith("cube_")} == {
            k: v for k, v in single.attrs.items() if not k.startswith("cube_")
        }
        assert change.attrs["cube_b"] == str(later_shards.folder.resolve())
    assert {1, 2} <= set(np.unique(change["class"].values))  # gains and losses both mapped
    given = Calibration("platt", {"a": 2.0, "b": -0.5})  # one calibration for every shard of both years
    calibrated = session.change(later_shards.folder, CONCEPT, versus=VERSUS, calibration=given)
    single = whole.change(later_shards.whole, CONCEPT, versus=VERSUS, calibration=given)
    np.testing.assert_allclose(calibrated["diff"].values, single["diff"].values, atol=1e-6)
    raw = session.change(later_shards.folder, CONCEPT, versus=VERSUS)
    np.testing.assert_allclose(calibrated["p_b"].values, given.apply(raw["p_b"].values), atol=1e-6)


def test_change_refuses_a_later_folder_of_other_shards_in_one_line(shards, later_shards, tmp_path) -> None:
    session = open_session(shards.folder)
    renamed = tmp_path / "renamed"
    shutil.copytree(later_shards.west, renamed / "west.zarr")
    shutil.copytree(later_shards.east, renamed / "north.zarr")
    with pytest.raises(BadInputError, match=r"only earlier: east.zarr; only later: north.zarr") as err:
        session.change(renamed, CONCEPT, versus=VERSUS)
    assert "\n" not in str(err.value)
    refused = "is a folder of shards but .*whole.zarr is one cube: give two cubes, or two folders of shards"
    with pytest.raises(BadInputError, match=refused):
        session.change(later_shards.whole, CONCEPT, versus=VERSUS)
    with pytest.raises(BadInputError, match=refused):  # one cube's session refuses a later folder alike
        QuerySession(shards.whole).change(later_shards.folder, CONCEPT, versus=VERSUS)


def test_aggregate_reads_only_the_chunks_of_the_shards_a_polygon_reaches(
    shards, tiny_clip, cube_data, tmp_path, monkeypatch
) -> None:
    from landprompt.embedder import cube as cube_module

    folder, attrs = tmp_path / "thirds", cube_data.clip_attrs(tiny_clip)
    for name, cols in (("a", slice(0, 16)), ("b", slice(16, 32)), ("c", slice(32, 48))):
        window = shards.grid.window(slice(0, 48), cols)
        values, valid = shards.emb[:, cols], shards.valid[:, cols]
        write_cube(folder / f"{name}.zarr", values, window, valid=valid, chunk=16, attrs=attrs)
    corners = {"top": (2, 2), "bottom": (2, 38), "far": (38, 38)}  # the middle shard lies between them
    units = Units(
        list(corners),
        [polygon(shards.grid, (c, r), (c + 8, r), (c + 8, r + 8), (c, r + 8)) for c, r in corners.values()],
        shards.grid.crs,
        id_field="name",
    )
    read: list[int] = []
    raw_reader = cube_module.raw_reader

    def counting(ds: Any) -> Any:
        reader = raw_reader(ds)
        return lambda rows, cols: (
            read.append((rows.stop - rows.start) * (cols.stop - cols.start)) or reader(rows, cols)
        )

    monkeypatch.setattr(cube_module, "raw_reader", counting)
    calls: list[tuple[int, int]] = []
    table = open_session(folder, tiny_clip).aggregate(
        CONCEPT, units, versus=VERSUS, progress=lambda *a: calls.append(a)
    )
    # shard a: its chunks of rows 0-15 and 32-47 within the rows 2-45 of its polygons (not rows 16-31);
    # shard b: nothing; shard c: the window of the far square
    assert sorted(read) == [8 * 8, 14 * 8, 14 * 8] and calls[-1] == (sum(read), sum(read))
    single = QuerySession(shards.whole, tiny_clip).aggregate(CONCEPT, units, versus=VERSUS)
    pd.testing.assert_frame_equal(table, single, rtol=1e-6)
    assert table["pixels"].tolist() == [64, 64, 64]


def test_overlapping_shard_pairs_take_each_pixel_of_a_change_from_one_pair(
    shards, later_shards, tiny_clip, cube_data, tmp_path
) -> None:
    grid, attrs = shards.grid, cube_data.clip_attrs(tiny_clip)
    west, east = slice(0, 30), slice(15, 48)  # overlapping in columns 15-29
    years = {"early": shards.emb, "late": later_shards.emb}
    for year, emb in years.items():
        for name, cols in (("west", west), ("z_east", east)):  # in this order
            values, valid = emb[:, cols].copy(), shards.valid[:, cols].copy()
            if name == "z_east":
                values = values[::-1]  # other values than the west shard's in the overlap
                valid = valid[::-1]
                if year == "late":
                    valid[:, :8] = False  # columns 15-22: the later east shard has none
            write_cube(
                tmp_path / year / f"{name}.zarr",
                values,
                grid.window(slice(0, 48), cols),
                valid=valid,
                chunk=16,
                attrs=attrs,
            )
    got = open_session(tmp_path / "early", tiny_clip).change(tmp_path / "late", CONCEPT, versus=VERSUS)
    pairs = [
        QuerySession(tmp_path / "early" / f"{n}.zarr", tiny_clip).change(
            tmp_path / "late" / f"{n}.zarr", CONCEPT, versus=VERSUS
        )
        for n in ("west", "z_east")
    ]
    w, e = pairs
    assert not np.allclose(w["p_a"].values[:, 15:23], e["p_a"].values[:, :8], equal_nan=True)
    assert np.isnan(e["p_b"].values[:, :8]).all() and np.isfinite(e["p_a"].values[:-1, :8]).all()
    keep = np.isfinite(e["p_a"].values) & np.isfinite(e["p_b"].values)  # the east pair's whole pixels
    assert keep[1:-1, 8:].all() and not keep[:, :8].any()
    for name in ("p_a", "p_b", "diff"):  # each pixel of one pair: the east one's where both its maps hold it
        expected = np.full((48, 48), np.nan, dtype=np.float32)
        expected[:, west] = w[name].values
        expected[:, east][keep] = e[name].values[keep]
        np.testing.assert_allclose(got[name].values, expected, atol=1e-6)


def test_a_change_over_shards_reads_a_given_calibration_file_once(
    shards, later_shards, tiny_clip, tmp_path, monkeypatch
) -> None:
    from landprompt import calibration as calibration_module

    path = tmp_path / "given.json"
    save_calibration(Calibration("platt", {"a": 2.0, "b": -0.5}), path)
    loads: list[Path] = []
    load = calibration_module.load_calibration
    monkeypatch.setattr(calibration_module, "load_calibration", lambda p: loads.append(Path(p)) or load(p))
    session = open_session(shards.folder, tiny_clip)
    got = session.change(later_shards.folder, CONCEPT, versus=VERSUS, calibration=path)
    assert loads == [path]  # not once for each shard of each year
    single = change_map(shards.whole, later_shards.whole, session.scorer(CONCEPT, VERSUS), calibration=path)
    assert loads == [path, path]  # not once for each cube
    np.testing.assert_allclose(got["diff"].values, single["diff"].values, atol=1e-6)
