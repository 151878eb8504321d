"""Concept analytics on planted cubes: change maps, indicators per polygon, validation at points."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import rasterio
from affine import Affine

from landprompt.calibration import (
    Calibration,
    QuerySettings,
    apply_calibration,
    calibration_path,
    load_calibration,
    save_calibration,
)
from landprompt.embedder.cube import open_cube, write_cube
from landprompt.errors import BadInputError
from landprompt.evaluate.metrics import binary_metrics, reliability, roc_auc
from landprompt.evaluate.points import (
    evaluate_points,
    read_points,
    spatial_folds,
    write_points_report,
    write_reliability_png,
)
from landprompt.evaluate.recalibration import fit_calibration, fit_isotonic, fit_platt
from landprompt.geo import Grid
from landprompt.query.aggregate import aggregate, read_units, write_indicators
from landprompt.query.change import GAIN, LOSS, NODATA, STABLE, change_map, change_paths, write_change
from landprompt.query.maps import read_map
from landprompt.query.probability import probability_map

X0, Y0 = 680_000.0, 4_800_000.0


def box(u0: float, v0: float, u1: float, v1: float) -> list[list[list[float]]]:
    """A rectangle ring in metres from the grid's top-left corner (u east, v south)."""
    ring = [(u0, v0), (u1, v0), (u1, v1), (u0, v1), (u0, v0)]
    return [[[X0 + u, Y0 - v] for u, v in ring]]


# --- change maps ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def change(analytics_cubes: SimpleNamespace, tiny_clip: Any):  # type: ignore[no-untyped-def]
    c = analytics_cubes
    return change_map(c.year1, c.year2, c.concept, versus=c.versus, clip=tiny_clip, logit_scale=100)


def test_change_is_gain_exactly_where_planted_in_year_two(change, analytics_cubes) -> None:
    c = analytics_cubes
    expected = np.full(c.grid.shape, STABLE, np.uint8)
    expected[c.gain_block] = GAIN
    expected[c.loss_block] = LOSS
    expected[~(c.valid_a & c.valid_b)] = NODATA
    np.testing.assert_array_equal(change["class"].values, expected)
    assert set(change.data_vars) == {"p_a", "p_b", "diff", "class"}
    np.testing.assert_allclose(change["diff"], change["p_b"] - change["p_a"])
    assert change.rio.crs == c.grid.crs and change.rio.transform() == c.grid.transform
    assert change.attrs["threshold"] == 0.2 and change.attrs["concept"] == "olive groves"


def test_change_in_a_bbox_and_written_outputs(analytics_cubes, tiny_clip, tmp_path) -> None:
    c = analytics_cubes
    lon, lat = c.grid.rowcol_to_lonlat(np.array([4, 19]), np.array([2, 21]))
    bbox = (lon[0], lat[1], lon[1], lat[0])
    ds = change_map(c.year1, c.year2, c.concept, c.versus, tiny_clip, bbox=bbox, logit_scale=100)
    assert ds["class"].shape == (16, 20)
    assert (ds["class"].values == GAIN).sum() == 8 * 16
    paths = change_paths(tmp_path / "change.tif")
    assert paths == {
        "diff": tmp_path / "change.tif",
        "class": tmp_path / "change_class.tif",
        "png": tmp_path / "change.png",
    }
    write_change(ds, paths)
    np.testing.assert_array_equal(read_map(paths["diff"]).values, ds["diff"].values)
    codes = read_map(paths["class"]).values
    np.testing.assert_array_equal(np.nan_to_num(codes, nan=NODATA), ds["class"].values)
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    with rasterio.open(paths["class"]) as src:
        assert "1 gain" in src.tags()["classes"]


def test_cubes_on_different_grids_are_refused(analytics_cubes, tiny_clip, tmp_path) -> None:
    c = analytics_cubes
    emb = np.ones((40, 48, tiny_clip.embed_dim), np.float32)
    shifted = Grid("EPSG:32633", Affine(10.0, 0, X0 + 5, 0, -10.0, Y0), (40, 48))
    other = write_cube(tmp_path / "other.zarr", emb, shifted, attrs={"clip_model": tiny_clip.name})
    with pytest.raises(BadInputError, match=r"not on the same grid \(CRS .*; transform .*; shape") as err:
        change_map(c.year1, other, c.concept, c.versus, tiny_clip)
    assert "\n" not in str(err.value)
    with pytest.raises(BadInputError, match=r"threshold must be in \[0, 1\)"):
        change_map(c.year1, c.year2, c.concept, c.versus, tiny_clip, threshold=1.5)
    with pytest.raises(BadInputError, match=r"\.tif file"):
        change_paths(tmp_path / "change.png")


# --- indicators per polygon ----------------------------------------------------------------------------

#: Polygons in UTM 32N metres from the top-left corner; their pixels by the centre rule, counted by hand.
POLYGONS: dict[str, Any] = {
    "A": box(3, 3, 97, 97),  # rows 0-9, cols 0-9 (100 px; 16 go to B, which comes later)
    "B": box(56, 36, 144, 84),  # rows 4-7, cols 6-13 (32 px), overlaps A
    "C": box(144, 36, 200, 84),  # rows 4-7, cols 14-19 (24 px), shares an edge with B
    "D": box(203, 197, 255, 247),  # rows 20-24, cols 20-24 (+ col 25, whose centres lie on the edge)
    "E": box(255, 197, 303, 247),  # rows 20-24, cols 26-29 (+ col 25 if D does not take it)
    "T": [[[X0 + 300, Y0 - 300], [X0 + 405, Y0 - 300], [X0 + 300, Y0 - 405], [X0 + 300, Y0 - 300]]],
    "G": box(452, 3, 600, 37),  # rows 0-3, cols 45-47 inside the cube (12 px)
    "M": [box(403, 103, 437, 137), box(403, 203, 437, 227)],  # rows 10-13 and 20-22, cols 40-43 (28 px)
    "OUT": box(2000, 2000, 2100, 2100),  # off the cube
}


def hand_masks() -> dict[str, np.ndarray]:
    masks = {name: np.zeros((48, 48), bool) for name in POLYGONS}
    masks["A"][0:10, 0:10] = True
    masks["A"][4:8, 6:10] = False
    masks["B"][4:8, 6:14] = True
    masks["C"][4:8, 14:20] = True
    masks["T"][30:41, 30:41] = np.add.outer(np.arange(11), np.arange(11)) <= 9  # i + j <= 9: 55 px
    masks["G"][0:4, 45:48] = True
    masks["M"][10:14, 40:44] = masks["M"][20:23, 40:44] = True
    return masks


def write_units(path: Path, crs: str | None = "EPSG:32632", id_key: str = "code") -> Path:
    features = [
        {
            "type": "Feature",
            "properties": {id_key: name, "name": f"unit {name}"},
            "geometry": {"type": "MultiPolygon" if name == "M" else "Polygon", "coordinates": coords},
        }
        for name, coords in POLYGONS.items()
    ]
    data: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    if crs:
        data["crs"] = {"type": "name", "properties": {"name": crs}}
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def mixture_p(analytics_cubes, tiny_clip) -> np.ndarray:
    c = analytics_cubes
    return probability_map(c.mixture, c.concept, versus=c.versus, clip=tiny_clip).values


@pytest.fixture(scope="module")
def indicators(analytics_cubes, tiny_clip, tmp_path_factory) -> pd.DataFrame:
    c = analytics_cubes
    units = write_units(tmp_path_factory.mktemp("units") / "units.geojson")
    return aggregate(c.mixture, c.concept, units, id_field="code", versus=c.versus, clip=tiny_clip)


def test_indicators_match_a_hand_computation(indicators, mixture_p, analytics_cubes) -> None:
    table = indicators.set_index("code")
    valid = analytics_cubes.valid_a
    for name, mask in hand_masks().items():
        if name in ("D", "E"):
            continue
        row = table.loc[name]
        p = mixture_p[mask & valid]
        assert row.pixels == mask.sum(), name
        assert row.valid_pixels == (mask & valid).sum(), name
        assert row.area_ha == pytest.approx(mask.sum() * 0.01)
        assert row.expected_area_ha == pytest.approx(p.sum() * 0.01, rel=1e-5), name
        assert row.area_above_threshold_ha == pytest.approx((p > 0.5).sum() * 0.01), name
        if p.size:
            assert row.mean_probability == pytest.approx(p.mean(), rel=1e-5)
    assert table.loc["A"].pixels == 84 and table.loc["T"].pixels == 55 and table.loc["G"].pixels == 12
    assert table.loc["A"].valid_share == pytest.approx(74 / 84)
    assert table.loc["OUT"].pixels == 0 and np.isnan(table.loc["OUT"].mean_probability)
    assert list(indicators.columns) == [
        "code",
        "pixels",
        "area_ha",
        "valid_pixels",
        "valid_share",
        "mean_probability",
        "expected_area_ha",
        "area_above_threshold_ha",
    ]
    assert indicators.attrs["threshold"] == 0.5 and indicators.attrs["pixel_area_m2"] == 100


def test_overlapping_and_adjacent_polygons_split_pixels_once(indicators) -> None:
    table = indicators.set_index("code")
    assert table.loc["A"].pixels + table.loc["B"].pixels == 100 + 32 - 16  # overlap: B (later) wins
    assert table.loc["B"].pixels + table.loc["C"].pixels == 56  # shared edge between pixel centres
    assert table.loc["D"].pixels + table.loc["E"].pixels == 50  # shared edge through pixel centres
    assert table.loc["D"].pixels in (25, 30)


def test_wgs84_geojson_and_geopackage_give_the_same_pixels(analytics_cubes, tiny_clip, tmp_path) -> None:
    import pyogrio.raw
    import shapely
    from rasterio.warp import transform_geom

    c = analytics_cubes
    exact = aggregate(
        c.mixture, c.concept, write_units(tmp_path / "utm.geojson"), "code", 0.5, c.versus, tiny_clip
    )
    wgs84 = json.loads((tmp_path / "utm.geojson").read_text())
    del wgs84["crs"]
    for feature in wgs84["features"]:
        feature["geometry"] = transform_geom("EPSG:32632", "EPSG:4326", feature["geometry"])
    (tmp_path / "wgs84.geojson").write_text(json.dumps(wgs84))
    lonlat = aggregate(c.mixture, c.concept, tmp_path / "wgs84.geojson", "code", 0.5, c.versus, tiny_clip)
    pd.testing.assert_frame_equal(lonlat, exact)

    geometries = [shapely.geometry.shape(f["geometry"]) for f in wgs84["features"]]
    codes = np.array([f["properties"]["code"] for f in wgs84["features"]], dtype=object)
    gpkg = tmp_path / "units.gpkg"
    pyogrio.raw.write(
        gpkg,
        shapely.to_wkb(geometries),
        [codes],
        fields=["code"],
        crs="EPSG:4326",
        geometry_type="MultiPolygon",
        driver="GPKG",
    )
    table = aggregate(c.mixture, c.concept, gpkg, "code", 0.5, c.versus, tiny_clip)
    pd.testing.assert_frame_equal(table, exact)
    nocrs = tmp_path / "nocrs.gpkg"
    with pytest.warns(UserWarning, match="'crs' was not provided"):
        pyogrio.raw.write(
            nocrs,
            shapely.to_wkb(geometries),
            [codes],
            fields=["code"],
            geometry_type="MultiPolygon",
            driver="GPKG",
        )
    with pytest.raises(BadInputError, match="has no CRS"):
        read_units(nocrs, "code")
    with pytest.raises(BadInputError, match=r"no field 'NUTS_ID'; its fields: code"):
        read_units(gpkg, "NUTS_ID")


def test_indicator_outputs(indicators, tmp_path) -> None:
    units = read_units(write_units(tmp_path / "u.geojson"), "code")
    csv = write_indicators(indicators, tmp_path / "ind.csv")
    pd.testing.assert_frame_equal(pd.read_csv(csv, keep_default_na=True), indicators, check_dtype=False)
    collection = json.loads(write_indicators(indicators, tmp_path / "ind.geojson", units).read_text())
    first = collection["features"][0]
    assert first["properties"]["code"] == "A" and first["properties"]["pixels"] == 84
    assert collection["features"][-1]["properties"]["mean_probability"] is None  # NaN -> null
    lon, lat = first["geometry"]["coordinates"][0][0]
    assert 9 < lon < 12 and 43 < lat < 44  # written in WGS84
    with pytest.raises(BadInputError, match=r"written as \.csv, \.geojson"):
        write_indicators(indicators, tmp_path / "ind.xlsx")


BAD_UNITS = {
    "missing id field": ({"id_field": "NUTS_ID"}, None, r"feature 0 has no property 'NUTS_ID'; .*code, name"),
    "repeated ids": (
        {"id_field": "name"},
        lambda d: d["features"][1]["properties"].update(name="unit A"),
        r"ids must be unique .*'unit A'",
    ),
    "a point": (
        {},
        lambda d: d["features"][0].update(geometry={"type": "Point", "coordinates": [0, 0]}),
        r"is a Point, not a Polygon",
    ),
    "projected without crs": ({}, lambda d: d.pop("crs"), r"outside lon/lat range: GeoJSON is WGS84"),
    "unknown crs": ({}, lambda d: d["crs"]["properties"].update(name="EPSG:99999"), r"unknown CRS"),
}


@pytest.mark.parametrize(("kwargs", "change", "message"), BAD_UNITS.values(), ids=BAD_UNITS.keys())
def test_bad_polygon_files_are_refused(tmp_path, kwargs, change, message) -> None:
    path = write_units(tmp_path / "u.geojson")
    if change is not None:
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))
    with pytest.raises(BadInputError, match=message):
        read_units(path, **kwargs)


def test_aggregate_errors(analytics_cubes, tiny_clip, tmp_path) -> None:
    c = analytics_cubes
    far = {"type": "Polygon", "coordinates": [[[20, 50], [21, 50], [21, 51], [20, 50]]]}
    (tmp_path / "far.geojson").write_text(json.dumps(far))
    with pytest.raises(BadInputError, match=r"none of the 1 polygons .* overlaps the cube"):
        aggregate(c.mixture, c.concept, tmp_path / "far.geojson", versus=c.versus, clip=tiny_clip)
    with pytest.raises(BadInputError, match=r"threshold must be in \[0, 1\)"):
        aggregate(c.mixture, c.concept, tmp_path / "far.geojson", threshold=1, clip=tiny_clip)
    with pytest.raises(BadInputError, match="does not exist"):
        read_units(tmp_path / "missing.geojson")


# --- validation at points ------------------------------------------------------------------------------


def points_csv(path: Path, grid: Grid, rows: np.ndarray, cols: np.ndarray, labels: Any) -> Path:
    lon, lat = grid.rowcol_to_lonlat(rows, cols)
    pd.DataFrame({"lon": lon, "lat": lat, "present": labels}).to_csv(path, index=False)
    return path


def test_a_perfectly_separating_concept_scores_auc_one(analytics_cubes, tiny_clip, tmp_path) -> None:
    c = analytics_cubes
    rows, cols = np.meshgrid(np.arange(0, 48, 3), np.arange(2, 48, 3), indexing="ij")  # col 47: no data
    rows, cols = rows.ravel(), cols.ravel()
    planted = np.zeros((48, 48), bool)
    planted[c.gain_block] = True
    labels = np.where(planted[rows, cols], "yes", "no")
    path = points_csv(tmp_path / "obs.csv", c.grid, rows, cols, labels)
    with path.open("a") as f:
        f.write("20.0,50.0,no\n")  # outside the cube
    report = evaluate_points(c.year2, c.concept, path, versus=c.versus, clip=tiny_clip)
    m = report["metrics"]
    assert m["auc"] == 1.0 and m["average_precision"] == 1.0
    assert report["counts"] == {
        "points": 257,
        "used": 240,
        "outside_cube": 1,
        "on_nodata": 16,
        "present": 15,
        "absent": 225,
    }


def test_a_random_concept_scores_auc_near_half(analytics_cubes, tiny_clip, tmp_path) -> None:
    c = analytics_cubes
    rng = np.random.default_rng(5)
    rows, cols = rng.integers(1, 48, 400), rng.integers(0, 48, 400)
    path = points_csv(tmp_path / "obs.csv", c.grid, rows, cols, rng.integers(0, 2, 400))
    report = evaluate_points(c.mixture, c.concept, path, versus=c.versus, clip=tiny_clip)
    print(f"\nrandom labels: AUC {report['metrics']['auc']:.3f} (chance 0.5)")  # the record (pytest -s)
    assert 0.4 < report["metrics"]["auc"] < 0.6
    assert report["counts"]["used"] == 400 and "cross_validation" not in report


@pytest.fixture(scope="module")
def miscalibrated(analytics_cubes, mixture_p, tmp_path_factory) -> Path:
    """Labels drawn from a flatter truth than the maps at logit scale 100, which are overconfident."""
    c = analytics_cubes
    rng = np.random.default_rng(8)
    rows, cols = rng.integers(1, 48, 600), rng.integers(0, 48, 600)
    labels = (rng.random(600) < 0.2 + 0.6 * mixture_p[rows, cols]).astype(int)
    return points_csv(tmp_path_factory.mktemp("points") / "olive.csv", c.grid, rows, cols, labels)


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_recalibration_lowers_the_held_out_calibration_error(
    analytics_cubes, tiny_clip, miscalibrated, method, tmp_path
) -> None:
    c = analytics_cubes
    cube = shutil.copytree(c.mixture, tmp_path / "mixture.zarr")  # its calibration stays in the test
    report = evaluate_points(
        cube,
        c.concept,
        miscalibrated,
        fit=method,
        block_km=0.1,
        versus=c.versus,
        clip=tiny_clip,
        logit_scale=100,
    )
    cv = report["cross_validation"]
    print(f"\n{method}: held-out ECE {cv['before']['ece']:.3f} -> {cv['after']['ece']:.3f}")  # pytest -s
    assert cv["blocks"] == 25 and cv["folds"] == 5
    assert cv["before"]["ece"] > 0.15
    assert cv["after"]["ece"] < 0.5 * cv["before"]["ece"]
    assert cv["after"]["brier"] < cv["before"]["brier"]
    saved = json.loads(calibration_path(cube, c.concept).read_text())
    assert calibration_path(cube, c.concept) == tmp_path / "mixture.zarr.calibration" / "olive-groves.json"
    assert saved["method"] == method and saved["n_points"] == 600 and saved["created"]
    assert saved["query"]["logit_scale"] == 100 and saved["query"]["versus"] == c.versus
    assert saved["metrics"]["held_out"]["after"]["ece"] == pytest.approx(cv["after"]["ece"])
    assert report["calibration"]["path"] == str(calibration_path(cube, c.concept))
    write_points_report(report, tmp_path / "report.json")
    assert json.loads((tmp_path / "report.json").read_text())["counts"]["used"] == 600
    assert write_reliability_png(report, tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"

    # the saved calibration applies to later maps and indicators of the same query, and to no other
    calibration = load_calibration(calibration_path(cube, c.concept))
    raw = probability_map(cube, c.concept, versus=c.versus, clip=tiny_clip, logit_scale=100)
    calibrated = apply_calibration(raw, calibration)
    np.testing.assert_array_equal(calibrated.values, calibration.apply(raw.values))
    assert np.isnan(calibrated.values[0]).all() and calibrated.attrs["calibration"] == method
    units = {"type": "Polygon", "coordinates": box(3, 13, 477, 477)}  # rows 1-47, every column
    (tmp_path / "all.geojson").write_text(
        json.dumps({**units, "crs": {"type": "name", "properties": {"name": "EPSG:32632"}}})
    )
    table = aggregate(
        cube,
        c.concept,
        tmp_path / "all.geojson",
        versus=c.versus,
        clip=tiny_clip,
        logit_scale=100,
        calibration=True,
    )
    assert table.expected_area_ha[0] == pytest.approx(np.nansum(calibrated.values) * 0.01, rel=1e-5)
    with pytest.raises(BadInputError, match=r"fitted for another query \(logit_scale 100.0 vs 14.2857"):
        apply_calibration(probability_map(cube, c.concept, versus=c.versus, clip=tiny_clip), calibration)
    with pytest.raises(BadInputError, match=r"another query \(versus"):
        aggregate(
            cube,
            c.concept,
            tmp_path / "all.geojson",
            versus=["sea"],
            clip=tiny_clip,
            logit_scale=100,
            calibration=True,
        )


def test_points_errors(analytics_cubes, tiny_clip, tmp_path) -> None:
    c = analytics_cubes
    rows, cols = np.arange(1, 21), np.arange(20)
    ones = points_csv(tmp_path / "ones.csv", c.grid, rows, cols, ["true"] * 20)
    with pytest.raises(BadInputError, match=r"all 20 usable points are present: ROC AUC.* undefined"):
        evaluate_points(c.mixture, c.concept, ones, versus=c.versus, clip=tiny_clip)
    far = tmp_path / "far.csv"
    far.write_text("lat,lon,present\n50,20,1\n51,21,0\n")
    with pytest.raises(BadInputError, match=r"none of the 2 points .* \(2 outside the cube, 0 on no-data\)"):
        evaluate_points(c.mixture, c.concept, far, versus=c.versus, clip=tiny_clip)
    nodata = points_csv(tmp_path / "nodata.csv", c.grid, np.zeros(4, int), np.arange(4), [1, 0, 1, 0])
    with pytest.raises(BadInputError, match=r"\(0 outside the cube, 4 on no-data\)"):
        evaluate_points(c.mixture, c.concept, nodata, versus=c.versus, clip=tiny_clip)
    bad = tmp_path / "bad.csv"
    bad.write_text("longitude,latitude,seen\n11,43,maybe\n")
    with pytest.raises(BadInputError, match=r"row 1 has seen 'maybe'; labels must be 1/0"):
        read_points(bad, "seen")
    with pytest.raises(
        BadInputError, match=r"no label column 'present'; its columns: longitude, latitude, seen"
    ):
        read_points(bad)
    with pytest.raises(BadInputError, match="leave out --calibrated"):
        evaluate_points(c.mixture, c.concept, ones, fit="platt", calibrated=True, clip=tiny_clip)
    with pytest.raises(BadInputError, match=r"no calibration at .*mixture.zarr.calibration/olive-groves"):
        evaluate_points(c.mixture, c.concept, ones, calibrated=True, versus=c.versus, clip=tiny_clip)
    table = read_points(ones)
    assert table.present.all() and list(table.columns) == ["lon", "lat", "present"]


# --- metrics and calibration functions -----------------------------------------------------------------


def test_auc_counts_ties_half() -> None:
    rng = np.random.default_rng(0)
    y, s = rng.integers(0, 2, 300).astype(bool), rng.integers(0, 6, 300).astype(float)
    pairs = s[y][:, None] - s[~y][None, :]
    assert roc_auc(y, s) == pytest.approx(((pairs > 0) + 0.5 * (pairs == 0)).mean())
    assert roc_auc(y, np.zeros(300)) == 0.5
    assert np.isnan(roc_auc(np.ones(3, bool), np.arange(3.0)))


def test_expected_calibration_error_by_hand() -> None:
    p = np.array([0.05, 0.05, 0.95, 0.95, 1.0])
    y = np.array([0, 1, 1, 1, 0])
    # bin 0: mean p 0.05, observed 0.5 (2 points); bin 9 (holds 1.0): mean p 0.9667, observed 2/3 (3 points)
    expected = (2 * 0.45 + 3 * abs(2 / 3 - (0.95 + 0.95 + 1.0) / 3)) / 5
    assert binary_metrics(y, p)["ece"] == pytest.approx(expected)
    table = reliability(y, p, bins=10)
    assert table["count"].tolist() == [2, 0, 0, 0, 0, 0, 0, 0, 0, 3] and np.isnan(table.observed[1])
    edges = reliability(np.ones(3), np.array([0.3, 0.6, 0.7]), bins=10)  # i/bins <= p: 0.3 opens bin 3
    assert np.flatnonzero(edges["count"]).tolist() == [3, 6, 7]


def test_isotonic_pools_violators_and_ties() -> None:
    knots = fit_isotonic(np.array([0.1, 0.2, 0.3, 0.4, 0.4]), np.array([0, 1, 0, 1, 0]))
    assert knots == {"x": [0.1, 0.2, 0.4], "y": [0.0, 0.5, 0.5]}  # 0.2-0.4 pooled; 0.4 tied first
    calibration = Calibration("isotonic", knots)
    np.testing.assert_allclose(
        calibration.apply(np.array([0.0, 0.15, 0.3, 0.9, np.nan])), [0, 0.25, 0.5, 0.5, np.nan], rtol=1e-6
    )  # float32 probabilities in and out


def test_platt_is_finite_on_separable_data_and_never_decreasing() -> None:
    p = np.array([0.1, 0.2, 0.8, 0.9])
    params = fit_platt(p, np.array([0, 0, 1, 1]))
    assert 0 < params["a"] < 50 and np.isfinite(params["b"])
    flipped = fit_platt(p, np.array([1, 1, 0, 0]))
    assert flipped["a"] == 0 and flipped["b"] == pytest.approx(0.0)
    rng = np.random.default_rng(1)
    z = rng.normal(0, 3, 5000)
    y = rng.random(5000) < 1 / (1 + np.exp(-(0.5 * z - 1)))
    fitted = fit_platt(1 / (1 + np.exp(-z)), y)
    assert fitted["a"] == pytest.approx(0.5, abs=0.07) and fitted["b"] == pytest.approx(-1, abs=0.1)


def test_calibration_files_round_trip(tmp_path) -> None:
    query = QuerySettings("olive groves", ("sea",), "ground", 100.0, "landprompt-tiny/random(0)")
    calibration = fit_calibration(np.array([0.2, 0.7, 0.9]), np.array([0, 1, 1]), "platt", query, "c.zarr")
    path = save_calibration(calibration, calibration_path(tmp_path / "c.zarr", "Olive groves!"))
    assert path == tmp_path / "c.zarr.calibration" / "olive-groves.json"
    assert load_calibration(path) == calibration
    path.write_text(json.dumps({**calibration.to_dict(), "method": "magic"}))
    with pytest.raises(BadInputError, match="unknown calibration method 'magic'"):
        load_calibration(path)
    path.write_text("{}")
    with pytest.raises(BadInputError, match="not a landprompt calibration file"):
        load_calibration(path)


def test_spatial_folds_keep_blocks_together() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.uniform(0, 50_000, 500), rng.uniform(0, 30_000, 500)
    folds, n_blocks = spatial_folds(x, y, 10_000, n_folds=5)
    assert n_blocks == 15 and set(folds) == {0, 1, 2, 3, 4}
    blocks = np.floor(x / 10_000) * 100 + np.floor(y / 10_000)
    for block in np.unique(blocks):
        assert len(set(folds[blocks == block])) == 1
    with pytest.raises(BadInputError, match="all points lie in one block"):
        spatial_folds(x, y, 1e9)


def test_probability_maps_calibrate_like_the_scorer(analytics_cubes, tiny_clip) -> None:
    c = analytics_cubes
    prob = probability_map(open_cube(c.mixture), c.concept, versus=c.versus, clip=tiny_clip)
    calibration = Calibration("platt", {"a": 0.5, "b": 0.1})  # no query: applies to any map
    out = apply_calibration(prob, calibration)
    expected = 1 / (1 + np.exp(-(0.5 * np.log(prob.values / (1 - prob.values)) + 0.1)))
    np.testing.assert_allclose(out.values, expected, rtol=1e-5)
    assert out.rio.crs == prob.rio.crs


def test_a_calibration_is_checked_against_the_query_the_map_was_scored_with(
    analytics_cubes, tiny_clip
) -> None:
    c = analytics_cubes
    raw = probability_map(c.mixture, c.concept, versus=c.versus, clip=tiny_clip)
    fitted = Calibration("platt", {"a": 2.0, "b": 0.0}, QuerySettings.from_attrs(raw.attrs))
    assert fitted.query is not None and fitted.query.versus == tuple(c.versus)
    assert fitted.query.clip == tiny_clip.id
    calibrated = apply_calibration(raw, fitted)
    assert calibrated.dtype == np.float32 and calibrated.attrs["calibration"] == "platt"
    other = probability_map(c.mixture, c.concept, versus=["sea"], clip=tiny_clip)  # another background
    with pytest.raises(BadInputError, match=r"fitted for another query \(versus") as refused:
        apply_calibration(other, fitted)
    assert "\n" not in str(refused.value)
    unrecorded = raw.copy()
    del unrecorded.attrs["versus"]
    with pytest.raises(BadInputError, match=r"does not record the query it was scored with \(no versus"):
        apply_calibration(unrecorded, fitted)


def test_calibration_file_of_format_version_1_loads_and_applies(tmp_path) -> None:
    document = {
        "format": "landprompt-calibration",
        "format_version": 1,
        "method": "platt",
        "parameters": {"a": 2.0, "b": -1.0},
        "query": {"concept": "olive groves", "versus": None, "style": "ground", "logit_scale": 100.0},
        "n_points": 40,
        "metrics": {},
        "created": "2026-01-01T00:00:00+00:00",
        "cube": "c.zarr",
    }
    path = tmp_path / "olive-groves.json"
    path.write_text(json.dumps(document))
    calibration = load_calibration(path)
    # sigmoid(2 logit(p) - 1): p = 0.5 -> sigmoid(-1); p = 0.8 -> sigmoid(2 ln 4 - 1) = 16 / (16 + e)
    np.testing.assert_allclose(
        calibration.apply(np.array([0.5, 0.8, np.nan])), [1 / (1 + np.e), 16 / (16 + np.e), np.nan], rtol=1e-6
    )
    assert calibration.to_dict() == {**document, "query": {**document["query"], "clip": None}}
