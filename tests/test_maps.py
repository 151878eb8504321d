"""Map writers: COG validity and round trip, PNG quicklook, self-contained HTML, atomic writes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine
from PIL import Image
from rio_cogeo.cogeo import cog_validate

from landprompt.errors import BadInputError
from landprompt.files import atomic_path
from landprompt.geo import Grid
from landprompt.query import maps
from landprompt.query.maps import UINT8_SCALE, read_map, write_cog, write_html, write_png

GRID = Grid("EPSG:32632", Affine(10.0, 0, 680_000.0, 0, -10.0, 4_800_000.0), (600, 600))


def make_map(shape: tuple[int, int] = (120, 160), seed: int = 0) -> xr.DataArray:
    """A probability map on a window of GRID: random values in [0, 1], a NaN block top left."""
    grid = GRID.window(slice(0, shape[0]), slice(0, shape[1]))
    values = np.random.default_rng(seed).random(shape, dtype=np.float32)
    values[: shape[0] // 4, : shape[1] // 4] = np.nan
    da = xr.DataArray(
        values, dims=("y", "x"), coords={"y": grid.y_coords(), "x": grid.x_coords()}, name="probability"
    )
    return da.rio.write_crs(grid.crs).rio.write_transform(grid.transform)


def leftovers(folder: Path) -> list[str]:
    """Names in a folder (none if it was never created)."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --- COG -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_write_cog_is_a_valid_cog_with_overviews(tmp_path: Path, dtype: str) -> None:
    path = write_cog(make_map((600, 600)), tmp_path / "map.tif", dtype=dtype)  # type: ignore[arg-type]
    is_valid, errors, _ = cog_validate(str(path), quiet=True)
    assert is_valid, errors
    with rasterio.open(path) as src:
        assert src.overviews(1) == [2, 4]
        assert src.block_shapes[0] == (256, 256)
        assert src.dtypes[0] == dtype


def test_float32_cog_round_trip_keeps_values_nan_and_georeferencing(tmp_path: Path) -> None:
    da = make_map()
    back = read_map(write_cog(da, tmp_path / "map.tif"))
    np.testing.assert_array_equal(back.values, da.values)  # NaN positions included
    assert back.rio.crs == da.rio.crs
    assert back.rio.transform() == da.rio.transform()
    np.testing.assert_allclose(back.x, da.x)
    np.testing.assert_allclose(back.y, da.y)
    with rasterio.open(tmp_path / "map.tif") as src:
        assert np.isnan(src.nodata)


def test_uint8_cog_round_trip_within_half_a_step(tmp_path: Path) -> None:
    da = make_map()
    back = read_map(write_cog(da, tmp_path / "map.tif", dtype="uint8"))
    np.testing.assert_array_equal(np.isnan(back.values), np.isnan(da.values))
    assert np.nanmax(np.abs(back.values - da.values)) <= 1 / UINT8_SCALE / 2 + 1e-6
    assert back.rio.crs == da.rio.crs
    assert back.rio.transform() == da.rio.transform()
    with rasterio.open(tmp_path / "map.tif") as src:
        assert src.nodata == maps.UINT8_NODATA
        assert src.scales[0] == pytest.approx(1 / UINT8_SCALE)


def test_write_cog_rejects_an_unknown_dtype(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="float32 or uint8"):
        write_cog(make_map(), tmp_path / "map.tif", dtype="int16")  # type: ignore[arg-type]
    assert leftovers(tmp_path) == []


# --- PNG -------------------------------------------------------------------------------------------


def test_write_png_is_a_real_non_blank_png(tmp_path: Path) -> None:
    path = write_png(make_map(), tmp_path / "map.png", title="P(test)")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (770, 660)  # figsize (7, 6) at 110 dpi
        pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50


# --- HTML ------------------------------------------------------------------------------------------


def overlay_bounds(html: str) -> np.ndarray:
    """The [[south, west], [north, east]] bounds of the page's L.imageOverlay."""
    match = re.search(
        r'L\.imageOverlay\(\s*"data:image/png;base64,[^"]+",\s*(\[\[[^\]]+\],\s*\[[^\]]+\]\])', html
    )
    assert match, "no image overlay with a data-URI PNG"
    return np.array(eval(match.group(1)))  # a JSON list of numbers


def test_write_html_embeds_the_map_as_a_data_uri_within_the_right_bounds(tmp_path: Path) -> None:
    da = make_map()
    path = write_html(da, tmp_path / "map.html", title="P(olive groves) <2024>")
    html = path.read_text()
    assert html.count("data:image/png;base64,") == 1
    (south, west), (north, east) = overlay_bounds(html)
    minlon, minlat, maxlon, maxlat = da.rio.transform_bounds("EPSG:4326", densify_pts=21)
    tolerance = 10 / 111_000  # about one 10 m pixel, in degrees
    assert (south, west, north, east) == pytest.approx((minlat, minlon, maxlat, maxlon), abs=2 * tolerance)
    assert "fitBounds" in html
    assert "L.control.layers" in html
    assert "probability" in html  # the legend's caption
    assert "P(olive groves) &lt;2024&gt;" in html  # the title, escaped


def test_write_html_overlay_is_transparent_where_there_is_no_data(tmp_path: Path) -> None:
    import base64
    import io

    html = write_html(make_map(), tmp_path / "map.html").read_text()
    encoded = re.search(r"data:image/png;base64,([^\"]+)", html).group(1)  # type: ignore[union-attr]
    with Image.open(io.BytesIO(base64.b64decode(encoded))) as image:
        rgba = np.asarray(image.convert("RGBA"))
    rows, cols = rgba.shape[:2]
    assert rgba[rows // 16, cols // 16, 3] == 0  # the NaN block (top left)
    assert rgba[rows // 2, cols // 2, 3] == 255
    assert 1 / 16 < (rgba[..., 3] == 0).mean() < 1 / 8  # the block, plus slivers from the reprojection


def test_write_html_refuses_a_map_too_large_to_embed(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="COG"):
        write_html(make_map((120, 160)), tmp_path / "map.html", max_pixels=120 * 160 - 1)
    assert leftovers(tmp_path) == []


# --- errors and atomic writes ----------------------------------------------------------------------

WRITERS = {"cog": write_cog, "png": write_png, "html": write_html}


@pytest.mark.parametrize("writer", WRITERS.values(), ids=WRITERS.keys())
def test_writers_reject_a_3d_array(tmp_path: Path, writer) -> None:  # type: ignore[no-untyped-def]
    cube = make_map().expand_dims(band=2)
    with pytest.raises(BadInputError, match="2-D"):
        writer(cube, tmp_path / "map")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("writer", WRITERS.values(), ids=WRITERS.keys())
def test_writers_reject_a_map_without_crs(tmp_path: Path, writer) -> None:  # type: ignore[no-untyped-def]
    bare = xr.DataArray(np.zeros((4, 5), np.float32), dims=("y", "x"))
    with pytest.raises(BadInputError, match="no CRS"):
        writer(bare, tmp_path / "map")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("writer", "target"),
    [(write_cog, "cog_translate"), (write_html, "_png_data_uri"), (write_html, "html_page.leaflet_page")],
)
def test_an_error_while_writing_leaves_no_file_behind(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    writer,
    target: str,  # type: ignore[no-untyped-def]
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    if target == "html_page.leaflet_page":
        from landprompt.query import html_page

        monkeypatch.setattr(html_page, "leaflet_page", boom)
    else:
        monkeypatch.setattr(maps, target, boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        writer(make_map(), tmp_path / "out" / "map")
    assert leftovers(tmp_path / "out") == []


def test_an_error_while_writing_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_cog(make_map(seed=1), tmp_path / "map.tif")
    before = path.read_bytes()
    monkeypatch.setattr(maps, "cog_translate", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("killed")))
    with pytest.raises(RuntimeError):
        write_cog(make_map(seed=2), path)
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == ["map.tif"]


def test_atomic_path_replaces_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.txt"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_text("new")
    assert target.read_text() == "new"
    with pytest.raises(KeyError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise KeyError("stop")
    assert target.read_text() == "new"
    assert leftovers(target.parent) == ["file.txt"]
