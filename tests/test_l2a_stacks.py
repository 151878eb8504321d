"""Local L2A stacks as users have them: 12 bands, offset tags, baseline 04.00, stackstac descriptions."""

import logging

import numpy as np
import pytest
import rasterio

from landprompt.embedder.cube import open_cube, read_window
from landprompt.embedder.models import create_encoder, save_checkpoint
from landprompt.embedder.run import embed_run
from landprompt.eo.local import LocalSource, read_geotiff
from landprompt.errors import BadInputError


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    encoder = create_encoder("sits", clip_dim=8, embed_dim=16, depth=1, num_heads=2, pool_size=3)
    return save_checkpoint(encoder, tmp_path_factory.mktemp("ckpt") / "tiny")


def reference(l2a_fixture):
    return LocalSource(l2a_fixture.offset_free).composite(l2a_fixture.grid, 2022)


@pytest.mark.parametrize(
    ("folder", "setting"),
    [("offset_tag", "auto"), ("baseline_0400", "auto"), ("scale_tag", "auto"), ("stackstac", "-1000")],
)
def test_every_layout_reads_like_the_offset_free_stack(l2a_fixture, folder, setting):
    expected = reference(l2a_fixture)
    got = LocalSource(getattr(l2a_fixture, folder), l2a_offset=setting).composite(l2a_fixture.grid, 2022)
    np.testing.assert_array_equal(got["s2"].values, expected["s2"].values)
    assert np.isfinite(expected["s2"].values[0, :, 5:, 5:]).all()  # January has data past the corner
    assert np.isnan(expected["s2"].values[0, :, :3, :3]).all()  # nodata stays missing


def test_twelve_named_bands_keep_the_ten_and_drop_b1_b9(l2a_fixture):
    path = next(l2a_fixture.offset_free.glob("s2_20220110.tif"))
    scene = read_geotiff(path, l2a_fixture.grid, "s2")
    assert list(scene.data_vars) == ["B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"]
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(scene["B2"].values[5:, 5:], src.read(2)[5:, 5:])  # file band 2 is B2


def test_offset_left_in_is_refused_naming_the_file_and_flag(l2a_fixture):
    with pytest.raises(
        BadInputError,
        match=r"stackstac/s2_20220110.tif: no reflectance band goes below 1000.*--l2a-offset -1000",
    ):
        LocalSource(l2a_fixture.stackstac).composite(l2a_fixture.grid, 2022)
    with pytest.raises(BadInputError, match="l2a_offset must be one of auto, 0, -1000"):
        LocalSource(l2a_fixture.stackstac, l2a_offset="-999")


@pytest.fixture
def fresh_notes(monkeypatch):
    """Forget the notes this process already logged (each is logged once per process)."""
    import landprompt.eo.source

    monkeypatch.setattr(landprompt.eo.source, "_noted", set())


def test_stackstac_descriptions_fall_back_with_one_note(l2a_fixture, caplog, fresh_notes):
    with caplog.at_level(logging.WARNING):
        LocalSource(l2a_fixture.stackstac, l2a_offset="-1000").composite(l2a_fixture.grid, 2022)
        LocalSource(l2a_fixture.stackstac, l2a_offset="-1000").composite(l2a_fixture.grid, 2022)
    notes = [r.getMessage() for r in caplog.records if "not band names" in r.getMessage()]
    assert len(notes) == 1 and "B1 B2 B3 B4 B5 B6 B7 B8 B8A B9 B11 B12" in notes[0]


def test_no_scl_warns_once_and_is_recorded(l2a_fixture, tiny_checkpoint, tmp_path, caplog, fresh_notes):
    source = LocalSource(l2a_fixture.offset_free)
    with caplog.at_level(logging.WARNING):
        composite = source.composite(l2a_fixture.grid, 2022)
        cube = embed_run(
            l2a_fixture.grid, 2022, str(tiny_checkpoint), source, tmp_path / "c.zarr", chunk=8, progress=False
        )
    assert composite.attrs["cloud_mask"] == "none"
    assert open_cube(cube).attrs["cloud_mask"] == "none"
    lines = [r.getMessage() for r in caplog.records if "no SCL band" in r.getMessage()]
    assert len(lines) == 1 and str(l2a_fixture.offset_free) in lines[0]


def test_cube_from_offset_tagged_12_band_stack_equals_offset_free(l2a_fixture, tiny_checkpoint, tmp_path):
    cubes = [
        embed_run(
            l2a_fixture.grid,
            2022,
            str(tiny_checkpoint),
            LocalSource(folder),
            tmp_path / f"{name}.zarr",
            chunk=8,
            progress=False,
        )
        for name, folder in (("free", l2a_fixture.offset_free), ("tag", l2a_fixture.offset_tag))
    ]
    free, tagged = (read_window(open_cube(c), slice(None), slice(None)) for c in cubes)
    assert free[1].sum() > 0
    np.testing.assert_array_equal(free[0], tagged[0])
    np.testing.assert_array_equal(free[1], tagged[1])


def test_a_year_or_area_without_scenes_is_an_error_naming_the_dates(l2a_fixture, tiny_checkpoint, tmp_path):
    source = LocalSource(l2a_fixture.offset_free)
    with pytest.raises(
        BadInputError, match="holds no scene of 2021; the dates found are 2022-01-10, 2022-04-15, 2022-07-20"
    ):
        source.composite(l2a_fixture.grid, 2021)
    far = l2a_fixture.grid.window(slice(0, 8), slice(0, 8))
    from affine import Affine

    from landprompt.geo import Grid

    elsewhere = Grid(far.crs, Affine(10.0, 0.0, 700_000.0, 0.0, -10.0, 5_100_000.0), (8, 8))
    with pytest.raises(BadInputError, match=r"overlaps the area .* its scenes of 2022 \(2022-01-10"):
        embed_run(elsewhere, 2022, str(tiny_checkpoint), source, tmp_path / "x.zarr", progress=False)
    assert not (tmp_path / "x.zarr").exists()
