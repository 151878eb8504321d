import numpy as np
import rasterio
import xarray as xr
from PIL import Image
from rio_cogeo.cogeo import cog_validate

from landprompt.demo import DEMO_GRID, LAND_COVERS, planted_land_cover, run_demo
from landprompt.embedder.cube import open_cube


def test_demo_cube_opens_with_plain_xarray_and_has_a_crs(demo_run):
    ds = xr.open_zarr(demo_run.cube)
    assert ds.rio.crs == DEMO_GRID.crs
    assert ds["embedding"].shape == (*DEMO_GRID.shape, 32)
    assert open_cube(demo_run.cube).attrs["clip_model"] == "landprompt-tiny"


def test_demo_map_is_a_valid_cog_matching_the_planting(demo_run):
    valid, errors, _ = cog_validate(str(demo_run.cog))
    assert valid, errors
    with rasterio.open(demo_run.cog) as src:
        assert src.crs == DEMO_GRID.crs
        assert src.transform == DEMO_GRID.transform
        assert src.overviews(1), "a COG carries overviews"
        prob = src.read(1)
    lake = planted_land_cover(*DEMO_GRID.shape) == LAND_COVERS.index("a lake")
    data = ~np.isnan(prob)
    assert data.sum() < prob.size  # the no-data corner
    np.testing.assert_array_equal((prob > 0.5)[data], lake[data])
    assert demo_run.agreement == 1.0
    assert demo_run.planted_pixels == int((lake & data).sum())


def bright_centroid(png) -> tuple[float, float]:
    """Centroid (x, y) as fractions of the image of the map's bright (p ~ 1, pale yellow) pixels."""
    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    bright = (rgb[..., 0] > 230) & (rgb[..., 1] > 200) & (rgb[..., 2] > 140) & (rgb[..., 2] < 230)
    ys, xs = np.nonzero(bright)
    assert len(xs) > 1000, "the PNG shows no bright planted shape"
    return xs.mean() / rgb.shape[1], ys.mean() / rgb.shape[0]


def test_demo_png_shows_the_planted_shape(demo_run, tmp_path):
    x, y = bright_centroid(demo_run.png)
    assert x < 0.45 and y < 0.45  # the lake: upper left
    village = run_demo(tmp_path, concept="a village")
    x, y = bright_centroid(village.png)
    assert x > 0.5 and y > 0.55  # the village: lower right
