import json

import numpy as np
import pytest
from affine import Affine
from pyproj import CRS

from landprompt.errors import BadInputError
from landprompt.geo import (
    EUROPE_CRS,
    BBox,
    Grid,
    europe_grid,
    parse_bbox,
    reproject_bounds,
    transform_points,
    utm_crs,
)


def test_parse_bbox_string_and_sequence():
    assert parse_bbox("11.0,43.1,11.5,43.4") == BBox(11.0, 43.1, 11.5, 43.4)
    assert parse_bbox(" 11, 43.1 ,11.5,43.4") == BBox(11.0, 43.1, 11.5, 43.4)
    assert parse_bbox([-3.7, 40.3, -3.6, 40.5]).minlon == -3.7


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("11,43,11.5", "4 numbers"),
        ("a,b,c,d", "neither"),
        ("11.5,43,11,44", "minlon < maxlon"),
        ("11,95,12,96", "latitudes"),
        ("nan,1,2,3", "non-finite"),
        ("missing.geojson", "does not exist"),
    ],
)
def test_parse_bbox_errors(text, message):
    with pytest.raises(BadInputError, match=message):
        parse_bbox(text)


def test_parse_bbox_geojson(tmp_path):
    collection = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [2.0, 48.5]}},
            {
                "type": "Feature",
                "properties": {},
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[2.1, 48.7], [2.6, 48.7], [2.6, 49.0], [2.1, 48.7]]],
                },
            },
        ],
    }
    path = tmp_path / "aoi.geojson"
    path.write_text(json.dumps(collection))
    assert parse_bbox(str(path)) == BBox(2.0, 48.5, 2.6, 49.0)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(BadInputError, match="not valid GeoJSON"):
        parse_bbox(bad)


def test_utm_crs():
    assert utm_crs(11.2, 43.3) == CRS.from_epsg(32632)
    assert utm_crs(-3.7, 40.4) == CRS.from_epsg(32630)
    assert utm_crs(-70.0, -33.0) == CRS.from_epsg(32719)


def test_grid_from_bbox_covers_bbox_on_a_snapped_utm_grid():
    grid = Grid.from_bbox("11.0,43.1,11.05,43.14", resolution=10)
    assert grid.crs == CRS.from_epsg(32632)
    left, bottom, right, top = grid.bounds
    assert left % 10 == 0 and top % 10 == 0
    inner = reproject_bounds((11.0, 43.1, 11.05, 43.14), 4326, grid.crs)
    assert left <= inner[0] and bottom <= inner[1] and right >= inner[2] and top >= inner[3]
    assert grid.shape == (round((top - bottom) / 10), round((right - left) / 10))


def test_grid_pixel_conversions_round_trip():
    grid = Grid("EPSG:32632", Affine(10, 0, 680_000, 0, -10, 4_800_000), (100, 200))
    rows, cols = np.array([0, 5, 99]), np.array([0, 17, 199])
    x, y = grid.rowcol_to_xy(rows, cols)
    np.testing.assert_allclose(x, [680_005, 680_175, 681_995])
    np.testing.assert_allclose(y, [4_799_995, 4_799_945, 4_799_005])
    back = grid.xy_to_rowcol(x, y)
    np.testing.assert_array_equal(back[0], rows)
    np.testing.assert_array_equal(back[1], cols)
    lon, lat = grid.rowcol_to_lonlat(rows, cols)
    assert np.all((lon > 11) & (lon < 12) & (lat > 43) & (lat < 44))
    r2, c2 = grid.lonlat_to_rowcol(lon, lat)
    np.testing.assert_array_equal(r2, rows)
    np.testing.assert_array_equal(c2, cols)
    np.testing.assert_allclose(grid.x_coords()[[0, -1]], [680_005, 681_995])
    np.testing.assert_allclose(grid.y_coords()[[0, -1]], [4_799_995, 4_799_005])
    assert grid.contains([0, 100, -1], [0, 0, 0]).tolist() == [True, False, False]


def test_grid_window_and_bbox_slices():
    grid = Grid("EPSG:32632", Affine(10, 0, 680_000, 0, -10, 4_800_000), (100, 200))
    sub = grid.window(slice(10, 20), slice(50, 80))
    assert sub.shape == (10, 30)
    assert sub.transform.c == 680_500 and sub.transform.f == 4_799_900
    lon, lat = grid.rowcol_to_lonlat(np.array([10, 19]), np.array([50, 79]))
    rows, cols = grid.slices_of_bbox((lon[0], lat[1], lon[1], lat[0]))
    # The lon/lat box of pixel centres, reprojected, covers those pixels and at most one more each side.
    assert 9 <= rows.start <= 10 and 20 <= rows.stop <= 21
    assert 49 <= cols.start <= 50 and 80 <= cols.stop <= 81
    rows, cols = grid.slices_of_bbox("0,0,30,60")  # larger than the grid: clipped
    assert (rows, cols) == (slice(0, 100), slice(0, 200))
    with pytest.raises(BadInputError, match="outside the grid"):
        grid.slices_of_bbox("0,0,1,1")
    with pytest.raises(BadInputError, match="empty"):
        grid.window(slice(5, 5), slice(0, 10))


def test_grid_validation_and_serialisation():
    grid = Grid(32632, Affine(10, 0, 0, 0, -10, 100), (10, 10))
    assert Grid.from_dict(json.loads(json.dumps(grid.to_dict()))) == grid
    with pytest.raises(BadInputError, match="north-up"):
        Grid(32632, Affine(10, 0, 0, 0, 10, 100), (10, 10))
    with pytest.raises(BadInputError, match="shape"):
        Grid(32632, Affine(10, 0, 0, 0, -10, 100), (0, 10))
    with pytest.raises(BadInputError, match="unknown CRS"):
        Grid("EPSG:99999999", Affine(10, 0, 0, 0, -10, 100), (10, 10))
    assert grid.pixel_area_m2 == 100.0


def test_europe_grid_is_laea_and_covers_europe():
    grid = europe_grid(resolution=100)
    assert grid.crs == EUROPE_CRS
    assert grid.resolution == (100, 100)
    left, bottom, _, top = grid.bounds
    assert left % 10_000 == 0 and bottom % 10_000 == 0 and top % 10_000 == 0
    # Cities from Lisbon to Helsinki and Athens fall inside.
    lon = np.array([-9.14, 24.94, 23.73, -21.9])
    lat = np.array([38.72, 60.17, 37.98, 64.15])
    assert grid.contains(*grid.lonlat_to_rowcol(lon, lat)).all()
    # Resolutions nest: a 10 m grid shares the 100 m grid's origin.
    fine = europe_grid(resolution=10)
    assert (fine.transform.c, fine.transform.f) == (grid.transform.c, grid.transform.f)
    assert fine.shape == (grid.rows * 10, grid.cols * 10)


def test_transform_points_matches_known_laea_origin():
    # EPSG:3035's natural origin (10E, 52N) maps to its false easting/northing.
    x, y = transform_points([10.0], [52.0], 4326, 3035)
    np.testing.assert_allclose([x[0], y[0]], [4_321_000.0, 3_210_000.0], atol=1e-3)
