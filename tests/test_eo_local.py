import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine
from rasterio.windows import Window

from landprompt.eo.local import (
    LocalSource,
    aligned_window,
    list_geotiff_stack,
    read_geotiff,
    read_geotiff_stack,
    write_geotiff_stack,
    write_scene_cube,
)
from landprompt.eo.stac import StacSource
from landprompt.errors import BadInputError
from landprompt.geo import Grid, reproject_bounds


@pytest.fixture(scope="module")
def stac_composite(stac_fixture):
    return StacSource(stac_fixture.catalog).composite(stac_fixture.grid, stac_fixture.year)


def test_stack_listing_follows_the_naming_convention(stac_fixture):
    files = list_geotiff_stack(stac_fixture.stack)
    assert [f.path.name for f in files][:2] == ["s1_20220115.tif", "s1_20220620.tif"]
    assert [f.sensor for f in files].count("s2") == 4
    assert len(list_geotiff_stack(stac_fixture.stack, year=2022)) == 5  # 2021-12-30 left out


def test_local_stack_equals_the_stac_catalog(stac_fixture, stac_composite):
    """The same data as a local GeoTIFF stack and as a STAC catalog give identical composites."""
    local = LocalSource(stac_fixture.stack).composite(stac_fixture.grid, stac_fixture.year)
    xr.testing.assert_identical(local, stac_composite)
    np.testing.assert_array_equal(local["s2"].values, stac_fixture.expected_s2)
    np.testing.assert_array_equal(local["s1"].values, stac_fixture.expected_s1)


@pytest.mark.parametrize("suffix", [".zarr", ".nc"])
def test_scene_cube_round_trip(stac_fixture, stac_composite, tmp_path, suffix):
    scenes = StacSource(stac_fixture.catalog).scenes(stac_fixture.grid, stac_fixture.year)
    path = write_scene_cube(scenes, tmp_path / f"scenes{suffix}")
    source = LocalSource(path)
    assert source.kind == "cube"
    xr.testing.assert_identical(source.composite(stac_fixture.grid, stac_fixture.year), stac_composite)


def test_fetched_stack_round_trip(stac_fixture, stac_composite, tmp_path):
    scenes = StacSource(stac_fixture.catalog).scenes(stac_fixture.grid, stac_fixture.year)
    files = write_geotiff_stack(scenes, tmp_path / "fetched")
    assert [f.name for f in files] == [
        "s2_20220110.tif",
        "s2_20220128.tif",
        "s2_20220615.tif",
        "s1_20220115.tif",
        "s1_20220620.tif",
    ]
    with rasterio.open(files[0]) as src:
        assert src.descriptions[-1] == "SCL" and src.dtypes[0] == "uint16" and src.nodata == 0
    xr.testing.assert_identical(
        LocalSource(files[0].parent).composite(stac_fixture.grid, 2022), stac_composite
    )


@pytest.mark.parametrize("crs", ["EPSG:32632", "EPSG:3035"])
def test_other_grids_match_stac_too(stac_fixture, crs):
    """Warped onto a coarser grid in another CRS, both sources still agree pixel for pixel."""
    bounds = reproject_bounds(stac_fixture.grid.window(slice(4, 60), slice(2, 50)).bounds, "EPSG:32632", crs)
    grid = Grid.from_bounds(bounds, crs, 20)
    stac = StacSource(stac_fixture.catalog).composite(grid, stac_fixture.year)
    local = LocalSource(stac_fixture.stack).composite(grid, stac_fixture.year)
    assert np.isfinite(stac["s2"]).any()
    xr.testing.assert_identical(local, stac)


def test_tiles_of_one_date_are_fused(stac_fixture, tmp_path):
    grid = stac_fixture.grid
    with rasterio.open(stac_fixture.stack / "s1_20220115.tif") as src:
        data, profile = src.read(), src.profile
    west, east = data.copy(), data.copy()
    west[:, :, 32:], east[:, :, :32] = np.nan, np.nan
    for name, part in (("s1_20220115_a.tif", west), ("s1_20220115_b.tif", east)):
        with rasterio.open(tmp_path / name, "w", **profile) as dst:
            dst.write(part)
            dst.descriptions = ("VV", "VH")
    scenes = read_geotiff_stack(tmp_path, grid, 2022)
    assert scenes.s2 is None and scenes.s1 is not None and scenes.s1.sizes["time"] == 1
    np.testing.assert_array_equal(scenes.s1["VV"].values[0], data[0])


def test_local_errors(stac_fixture, tmp_path):
    grid = stac_fixture.grid
    with pytest.raises(BadInputError, match="does not exist"):
        LocalSource(tmp_path / "missing")
    with pytest.raises(BadInputError, match=r"neither a folder of s2_YYYYMMDD\.tif"):
        LocalSource(tmp_path).composite(grid, 2022)

    profile = {"driver": "GTiff", "width": 8, "height": 8, "count": 2, "dtype": "uint16", "nodata": 0}
    no_crs = tmp_path / "no_crs"
    no_crs.mkdir()
    with rasterio.open(no_crs / "s2_20220101.tif", "w", transform=grid.transform, **profile) as dst:
        dst.write(np.ones((2, 8, 8), np.uint16))
    with pytest.raises(BadInputError, match="has no CRS"):
        LocalSource(no_crs).composite(grid, 2022)

    unknown = tmp_path / "unknown"
    unknown.mkdir()
    georef = {"crs": grid.crs.to_wkt(), "transform": grid.transform}
    with rasterio.open(unknown / "s2_20220101.tif", "w", **georef, **profile) as dst:
        dst.write(np.ones((2, 8, 8), np.uint16))
        dst.descriptions = ("B2", "B13")
    with pytest.raises(
        BadInputError,
        match=r"s2_20220101.tif has 2 bands whose descriptions \(.B2., .B13.\) are not all band",
    ):
        LocalSource(unknown).composite(grid, 2022)

    missing = tmp_path / "missing_band"
    missing.mkdir()
    with rasterio.open(missing / "s2_20220101.tif", "w", **georef, **profile) as dst:
        dst.write(np.ones((2, 8, 8), np.uint16))
        dst.descriptions = ("B2", "B3")
    with pytest.raises(BadInputError, match=r"missing_band/s2_20220101.tif lacks band\(s\) B4, B5"):
        LocalSource(missing).composite(grid, 2022)

    geographic = Grid("EPSG:4326", Affine(0.001, 0, 9, 0, -0.001, 45.2), (8, 8))
    with pytest.raises(BadInputError, match="not projected in metres"):
        LocalSource(stac_fixture.stack).composite(geographic, 2022)


def test_cube_without_crs_is_refused(tmp_path, stac_fixture):
    cube = xr.DataArray(np.zeros((1, 1, 2, 2), np.float32), dims=("time", "band", "y", "x"), name="data")
    cube = cube.assign_coords(time=[np.datetime64("2022-01-01")], band=["VV"], y=[1.0, 0.0], x=[0.0, 1.0])
    cube.to_dataset().to_netcdf(tmp_path / "cube.nc")
    with pytest.raises(BadInputError, match="has no CRS"):
        LocalSource(tmp_path / "cube.nc").composite(stac_fixture.grid, 2022)


def test_aligned_window_reads_without_warping(stac_fixture):
    grid = stac_fixture.grid
    path = sorted(stac_fixture.stack.glob("s2_*.tif"))[0]
    with rasterio.open(path) as src:
        assert aligned_window(src, grid) == Window(0, 0, grid.cols, grid.rows)
        inner = grid.window(slice(3, 20), slice(5, 30))
        assert aligned_window(src, inner) == Window(5, 3, 25, 17)
        half = Grid(grid.crs, grid.transform @ Affine.translation(0.5, 0), grid.shape)
        beyond = Grid(grid.crs, grid.transform @ Affine.translation(-1, 0), grid.shape)
        other = Grid("EPSG:3035", grid.transform, grid.shape)
        assert aligned_window(src, half) is None and aligned_window(src, beyond) is None
        assert aligned_window(src, other) is None
    # the window read and the warp (a grid one column west of the file) agree on every shared pixel
    fast = read_geotiff(path, grid, "s2").isel(x=slice(0, -1))
    warped = read_geotiff(path, beyond, "s2").isel(x=slice(1, None))
    assert np.isnan(read_geotiff(path, beyond, "s2")["B4"].values[:, 0]).all()
    for band in fast.data_vars:
        np.testing.assert_array_equal(fast[band].values, warped[band].values)
