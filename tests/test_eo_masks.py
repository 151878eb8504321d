import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

from landprompt.eo.masks import SCL, SCL_INVALID, dilate_mask, mask_scenes, scl_valid
from landprompt.errors import BadInputError


def test_scl_invalid_classes():
    assert {0, 1, 3, 8, 9, 10, 11} == SCL_INVALID
    scl = np.arange(12, dtype=np.uint8)
    valid = scl_valid(scl)
    assert valid.tolist() == [c not in SCL_INVALID for c in range(12)]
    assert valid[[SCL.DARK_AREA, SCL.VEGETATION, SCL.WATER, SCL.UNCLASSIFIED]].all()


def test_scl_nan_and_unknown_values_are_invalid():
    scl = np.array([4.0, np.nan, 12.0, 6.0])
    assert scl_valid(scl).tolist() == [True, False, False, True]


def test_dilation_grows_by_n_pixels():
    scl = np.full((9, 9), SCL.VEGETATION, dtype=np.uint8)
    scl[4, 4] = SCL.CLOUD_HIGH_PROBABILITY
    for n in (0, 1, 2):
        invalid = ~scl_valid(scl, dilate=n)
        assert invalid.sum() == (2 * n + 1) ** 2
        assert invalid[4 - n : 5 + n, 4 - n : 5 + n].all()
    with pytest.raises(BadInputError, match="dilate"):
        scl_valid(scl, dilate=-1)


def test_dilation_is_per_scene_and_chunk_independent():
    rng = np.random.default_rng(0)
    scl = rng.choice([4, 4, 4, 4, 9], size=(3, 40, 40)).astype(np.uint8)
    expected = dilate_mask(scl == 9, 2)
    lazy = dilate_mask(dsa.from_array(scl, chunks=(1, 16, 16)) == 9, 2)
    np.testing.assert_array_equal(lazy.compute(), expected)
    assert not (expected[0] & ~dilate_mask(scl[0] == 9, 2)).any()  # no bleeding across time


def test_mask_scenes_sets_nan_and_drops_scl():
    scl = np.array([[[4, 9], [3, 6]]], dtype=np.uint8)
    scenes = xr.Dataset(
        {"B2": (("time", "y", "x"), np.full((1, 2, 2), 500, np.uint16)), "SCL": (("time", "y", "x"), scl)}
    )
    out = mask_scenes(scenes)
    assert list(out.data_vars) == ["B2"] and out["B2"].dtype == np.float32
    np.testing.assert_array_equal(out["B2"].values, [[[500, np.nan], [np.nan, 500]]])
    lazy = mask_scenes(scenes.chunk({"x": 1}))
    np.testing.assert_array_equal(lazy["B2"].values, out["B2"].values)
    assert mask_scenes(scenes.drop_vars("SCL")) is not None
