import numpy as np
import pandas as pd
import pytest
import xarray as xr
from affine import Affine
from pyproj import CRS

from landprompt.eo.aoi import MAX_PIXELS, check_grid
from landprompt.eo.bands import S1_BAND_NAMES, S2_BAND_NAMES
from landprompt.eo.composite import month_starts, monthly_composites, monthly_median
from landprompt.eo.masks import mask_scenes
from landprompt.errors import BadInputError
from landprompt.geo import Grid

GRID = Grid(CRS.from_epsg(32633), Affine(10, 0, 400_000, 0, -10, 5_100_000), (4, 5))


def _scenes(dates, values, bands=S2_BAND_NAMES, scl=None):
    """Scenes with one constant value per date for every band (NaN allowed)."""
    shape = (len(dates), *GRID.shape)
    data = np.broadcast_to(np.asarray(values, np.float32)[:, None, None], shape)
    ds = xr.Dataset(
        {b: (("time", "y", "x"), data.copy()) for b in bands},
        coords={"time": pd.to_datetime(dates), "y": GRID.y_coords(), "x": GRID.x_coords()},
    )
    if scl is not None:
        ds["SCL"] = (
            ("time", "y", "x"),
            np.broadcast_to(np.asarray(scl, np.uint8)[:, None, None], shape).copy(),
        )
    return ds


def test_month_starts():
    months = month_starts(2021)
    assert (
        len(months) == 12
        and months[0] == pd.Timestamp("2021-01-01")
        and months[-1] == pd.Timestamp("2021-12-01")
    )


def test_monthly_median_values_and_missing_months():
    scenes = _scenes(
        ["2022-01-03", "2022-01-13", "2022-01-23", "2022-03-05", "2021-12-31", "2023-01-01"],
        [100, 300, np.nan, 700, 9_999, 9_999],
    )
    out = monthly_median(scenes, 2022)
    assert out.sizes["time"] == 12
    assert (out["time"].values == month_starts(2022).values).all()
    b2 = out["B2"].values[:, 0, 0]
    assert b2[0] == 200  # median of 100, 300 (NaN skipped)
    assert b2[2] == 700
    assert np.isnan(np.delete(b2, [0, 2])).all()  # Feb and Apr-Dec; other years ignored


def test_monthly_composites_layout():
    s2 = _scenes(["2022-05-02", "2022-05-12"], [1000, 2000])
    s1 = _scenes(["2022-05-04"], [-12.5], bands=S1_BAND_NAMES)
    ds = monthly_composites(s2, s1, 2022, GRID)
    assert ds["s2"].dims == ("time", "s2_band", "y", "x") and ds["s2"].shape == (12, 10, 4, 5)
    assert ds["s1"].dims == ("time", "s1_band", "y", "x") and ds["s1"].shape == (12, 2, 4, 5)
    assert ds["s2"].dtype == np.float32 and ds["s1"].dtype == np.float32
    assert list(ds["s2_band"].values) == list(S2_BAND_NAMES) and list(ds["s1_band"].values) == ["VV", "VH"]
    assert ds.rio.crs.to_epsg() == 32633
    np.testing.assert_array_equal(ds["x"].values, GRID.x_coords())
    assert float(ds["s2"].sel(time="2022-05-01", s2_band="B8")[0, 0]) == 1500
    assert float(ds["s1"].sel(time="2022-05-01", s1_band="VH")[0, 0]) == -12.5
    valid = ~np.isnan(ds["s2"]).any(["s2_band", "y", "x"])
    assert valid.values.tolist() == [m == 4 for m in range(12)]


def test_all_cloud_year_is_all_nan_not_an_error():
    s2 = mask_scenes(_scenes(["2022-02-01", "2022-07-01"], [900, 800], scl=[9, 8]))
    ds = monthly_composites(s2, None, 2022, GRID)
    assert np.isnan(ds["s2"]).all() and np.isnan(ds["s1"]).all()
    assert ds["s2"].shape == (12, 10, 4, 5)
    empty = monthly_composites(s2.isel(time=[]), None, 2022, GRID)
    assert np.isnan(empty["s2"]).all()


def test_dask_scenes_give_the_same_composite():
    s2 = _scenes(["2022-01-03", "2022-01-13", "2022-08-05"], [100, 300, 50])
    eager = monthly_composites(s2, None, 2022, GRID)
    lazy = monthly_composites(s2.chunk({"time": 1, "x": 2}), None, 2022, GRID)
    assert lazy["s2"].chunks is not None
    xr.testing.assert_identical(lazy.compute(), eager)


def test_missing_band_is_named():
    s2 = _scenes(["2022-01-03"], [100], bands=[b for b in S2_BAND_NAMES if b != "B5"])
    with pytest.raises(BadInputError, match=r"lacks band\(s\) B5"):
        monthly_composites(s2, None, 2022, GRID)


def test_grid_checks():
    assert check_grid(GRID) is GRID
    with pytest.raises(BadInputError, match="EPSG:4326 is not projected in metres"):
        check_grid(Grid(CRS.from_epsg(4326), Affine(0.0001, 0, 10, 0, -0.0001, 45), (10, 10)))
    huge = Grid(CRS.from_epsg(3035), Affine(10, 0, 0, 0, -10, 0), (20_000, 20_000))
    assert huge.rows * huge.cols > MAX_PIXELS
    with pytest.raises(BadInputError, match="force=True"):
        check_grid(huge)
    assert check_grid(huge, force=True) is huge


def test_nanmedian_equals_numpy() -> None:
    import warnings

    from landprompt.eo.composite import nanmedian

    rng = np.random.default_rng(3)
    values = rng.normal(size=(5, 3, 40, 30)).astype(np.float32)
    values[rng.random(values.shape) < 0.4] = np.nan
    values[:, :, :4] = np.nan  # all-NaN pixels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmedian(values, axis=0)
    np.testing.assert_array_equal(nanmedian(values, axis=0), expected)
    np.testing.assert_array_equal(nanmedian(values[:1], axis=0), values[0])
    # a long axis (np.sort path) and another axis
    long = rng.normal(size=(3, 20, 40)).astype(np.float32)
    long[rng.random(long.shape) < 0.3] = np.nan
    long[:, :, :2] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for axis in (0, 1, 2):  # 3 steps: sorting network; 20 and 40: np.sort
            np.testing.assert_array_equal(nanmedian(long, axis=axis), np.nanmedian(long, axis=axis))
