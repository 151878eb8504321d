"""``landprompt serve``: tiles, top-k, points, exports and errors on a planted cube (FastAPI TestClient)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import morecantile
import numpy as np
import pytest
import rasterio
from PIL import Image

from landprompt.geo import transform_points

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

TMS = morecantile.tms.get("WebMercatorQuad")
QUERY = {"concept": "olive groves", "versus": ["sea", "a forest"]}


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory, tiny_clip, cube_data):  # type: ignore[no-untyped-def]
    return cube_data.served_cube(tmp_path_factory.mktemp("served"), tiny_clip)


@pytest.fixture(scope="module")
def served(planted, tiny_clip):  # type: ignore[no-untyped-def]
    from landprompt.serve.layer import ServedCube

    return ServedCube(planted.path, tiny_clip)


@pytest.fixture(scope="module")
def client(served) -> TestClient:  # type: ignore[no-untyped-def]
    from landprompt.serve.app import create_app

    return TestClient(create_app([served]), raise_server_exceptions=False)


def tile_of(grid, row: float, col: float, z: int) -> morecantile.Tile:  # type: ignore[no-untyped-def]
    lon, lat = grid.rowcol_to_lonlat(row, col)
    return TMS.tile(float(lon), float(lat), z)


def base_pixels(grid, tile: morecantile.Tile) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """Base-grid row and column under each pixel centre of a tile."""
    left, _, right, top = TMS.xy_bounds(tile)
    centres = (np.arange(256) + 0.5) * (right - left) / 256
    mx, my = np.meshgrid(left + centres, top - centres)
    return grid.xy_to_rowcol(*transform_points(mx, my, "EPSG:3857", grid.crs))


@pytest.mark.parametrize(("z", "level"), [(10, 2), (12, 1), (14, 0)])  # overviews used automatically
def test_tiles_are_bright_exactly_over_the_planted_area(client, planted, served, z: int, level: int) -> None:  # type: ignore[no-untyped-def]
    tile = tile_of(planted.grid, 96, 160, z)
    assert served.footprint(z, tile.x, tile.y).level == level
    response = client.get(f"/tiles/WebMercatorQuad/{z}/{tile.x}/{tile.y}.npy", params=QUERY)
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-binary"
    values, alpha = np.load(io.BytesIO(response.content))
    rows, cols = base_pixels(planted.grid, tile)
    inside = planted.grid.contains(rows, cols)
    assert inside.any() and (~inside).any() if z < 14 else inside.all()
    margin = 2 ** (level + 1)  # coarser levels mix the pixels along the block's edge
    r, c = np.clip(rows, 0, 255), np.clip(cols, 0, 255)
    block = planted.planted
    near_edge = np.zeros_like(inside)
    for dr in range(-margin, margin + 1):
        for dc in (-margin, 0, margin):
            near_edge |= block[np.clip(r + dr, 0, 255), np.clip(c + dc, 0, 255)] != block[r, c]
    valid = inside & planted.valid[r, c] & (rows > margin)
    assert np.all(values[valid & block[r, c] & ~near_edge] > 0.9)
    assert np.all(values[valid & ~block[r, c] & ~near_edge] < 0.1)
    assert np.all(np.isnan(values[~inside])) and np.all(alpha[~inside] == 0)
    assert np.all(alpha[valid & ~near_edge] > 0)
    assert (valid & block[r, c] & ~near_edge).sum() > 0


def test_png_tile_uses_the_quicklook_colours_and_transparent_nodata(client, planted) -> None:  # type: ignore[no-untyped-def]
    from matplotlib import colormaps

    tile = tile_of(planted.grid, 96, 160, 13)
    response = client.get(f"/tiles/WebMercatorQuad/13/{tile.x}/{tile.y}.png", params=QUERY)
    assert response.headers["content-type"] == "image/png"
    rgba = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGBA"))
    values, _ = np.load(
        io.BytesIO(client.get(f"/tiles/WebMercatorQuad/13/{tile.x}/{tile.y}.npy", params=QUERY).content)
    )
    finite = np.isfinite(values)
    expected = colormaps["magma"](np.rint(values[finite] * 255).astype(int), bytes=True)[:, :3]
    assert np.array_equal(rgba[finite][:, :3], expected)
    assert np.all(rgba[~finite][:, 3] == 0)


def test_geotiff_tile_is_georeferenced(client, planted) -> None:  # type: ignore[no-untyped-def]
    tile = tile_of(planted.grid, 96, 160, 14)
    response = client.get(f"/tiles/WebMercatorQuad/14/{tile.x}/{tile.y}.tif", params=QUERY)
    assert response.status_code == 200
    with rasterio.MemoryFile(response.content) as memfile, memfile.open() as src:
        assert src.crs.to_epsg() == 3857 and src.dtypes[0] == "float32"
        assert np.allclose(src.bounds, TMS.xy_bounds(tile))


def test_topk_finds_the_planted_places(client, planted) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/topk", params={"concept": "olive groves", "k": 5, "min_distance": 100})
    assert response.status_code == 200
    features = response.json()["features"]
    assert len(features) == 5
    for feature in features:
        row, col = feature["properties"]["row"], feature["properties"]["col"]
        assert planted.planted[row, col]


def test_point_probability(client, planted) -> None:  # type: ignore[no-untyped-def]
    def ask(row: int, col: int) -> dict:
        lon, lat = planted.grid.rowcol_to_lonlat(row, col)
        return client.get("/point", params={**QUERY, "lon": float(lon), "lat": float(lat)}).json()

    assert ask(96, 160)["probability"] > 0.9 and ask(96, 160)["score"] > 0
    assert ask(200, 40)["probability"] < 0.1
    assert ask(0, 10)["probability"] is None and ask(0, 10)["valid"] is False


def test_export_writes_the_view_as_a_cog(client, planted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    west, south = planted.grid.rowcol_to_lonlat(127, 128)
    east, north = planted.grid.rowcol_to_lonlat(64, 191)
    bbox = f"{float(west)},{float(south)},{float(east)},{float(north)}"
    response = client.get("/export.tif", params={**QUERY, "bbox": bbox})
    assert response.status_code == 200
    path = tmp_path / "view.tif"
    path.write_bytes(response.content)
    with rasterio.open(path) as src:
        values = src.read(1)
        assert src.crs.to_epsg() == 32632 and src.overviews(1) is not None
    assert np.nanmedian(values) > 0.9


def test_a_failed_export_leaves_no_temporary_folder(client, planted, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import tempfile

    import landprompt.query.maps as maps

    def disk_full(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(maps, "write_cog", disk_full)
    west, south = planted.grid.rowcol_to_lonlat(127, 128)
    east, north = planted.grid.rowcol_to_lonlat(64, 191)
    bbox = f"{float(west)},{float(south)},{float(east)},{float(north)}"
    assert client.get("/export.tif", params={**QUERY, "bbox": bbox}).status_code >= 500
    assert not list(tmp_path.glob("landprompt-export-*"))


def test_cubes_and_openapi(client) -> None:  # type: ignore[no-untyped-def]
    cubes = client.get("/cubes").json()
    assert cubes[0]["name"] == "planted" and cubes[0]["crs"] == "EPSG:32632" and cubes[0]["dim"] == 32
    assert cubes[0]["overview_levels"] == 2 and cubes[0]["clip_model"] == "landprompt-tiny"
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/tiles/WebMercatorQuad/{z}/{x}/{y}.{fmt}", "/topk", "/point", "/cubes", "/export.tif"} <= set(
        paths
    )
    assert client.get("/docs").status_code == 200
    page = client.get("/").text
    assert "assets/leaflet.js" in page and "unpkg" not in page and "cdn" not in page.lower()
    assert client.get("/assets/leaflet.js").status_code == 200


@pytest.mark.parametrize(
    ("path", "params", "status", "words"),
    [
        ("/tiles/WebMercatorQuad/3/100/1.png", {"concept": "x"}, 400, "out of range"),
        ("/tiles/WebMercatorQuad/30/1/1.png", {"concept": "x"}, 400, "out of range"),
        ("/tiles/WebMercatorQuad/3/1/1.png", {"concept": "x"}, 404, "does not touch"),
        ("/tiles/WebMercatorQuad/3/1/1.jpg", {"concept": "x"}, 400, "format"),
        ("/point", {"concept": "x", "lon": 0, "lat": 0, "cube": "nope"}, 404, "no cube named"),
        ("/point", {"concept": "x", "lon": 0, "lat": 0}, 404, "outside"),
        ("/point", {"concept": " ", "lon": 0, "lat": 0}, 400, "empty prompt"),
        ("/topk", {"concept": "x" * 201}, 400, "at most 200 characters"),
        ("/topk", {"concept": "x", "k": 100_000}, 400, "k may be at most"),
        ("/point", {"concept": "x", "lon": 11.23, "lat": 43.32, "calibrated": True}, 400, "no calibration"),
        ("/export.tif", {"concept": "x", "bbox": "0,0,1,1"}, 400, "outside the grid"),
        ("/assets/..%2F..%2Fsession.py", {}, 404, ""),
    ],
)
def test_errors_are_one_line_json(client, path: str, params: dict, status: int, words: str) -> None:  # type: ignore[no-untyped-def]
    response = client.get(path, params=params)
    assert response.status_code == status
    detail = response.json()["detail"]
    assert words in detail and "\n" not in detail and "Traceback" not in detail


def test_point_query_validation_is_json(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/point", params={"concept": "x", "lon": 500, "lat": 0})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "lon"]


def test_prompts_are_encoded_once(
    planted, tiny_clip, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from landprompt.serve.app import create_app
    from landprompt.serve.layer import ServedCube

    calls: list[list[str]] = []
    original = tiny_clip.encode_prompts

    def counting(names, templates):  # type: ignore[no-untyped-def]
        calls.append(list(names))
        return original(names, templates)

    monkeypatch.setattr(tiny_clip, "encode_prompts", counting)
    cube = ServedCube(shutil.copytree(planted.path, tmp_path / "planted.zarr"), tiny_clip)  # a new session
    client = TestClient(create_app([cube]))
    tile = tile_of(planted.grid, 96, 160, 14)
    for z, t in ((14, tile), (13, tile_of(planted.grid, 96, 160, 13))):
        assert client.get(f"/tiles/WebMercatorQuad/{z}/{t.x}/{t.y}.png", params=QUERY).status_code == 200
    assert sorted(n for names in calls for n in names) == ["a forest", "olive groves", "sea"]


def test_a_damaged_chunk_is_a_json_error_naming_it(planted, tiny_clip, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from landprompt.serve.app import create_app
    from landprompt.serve.layer import ServedCube

    cube = shutil.copytree(planted.path, tmp_path / "planted.zarr")
    client = TestClient(create_app([ServedCube(cube, tiny_clip)]), raise_server_exceptions=False)
    chunk = cube / "code" / "c" / "1" / "2" / "0"  # rows 64:128, cols 128:192: the planted block
    chunk.write_bytes(chunk.read_bytes()[:-10])
    tile = tile_of(planted.grid, 96, 160, 15)
    response = client.get(f"/tiles/WebMercatorQuad/15/{tile.x}/{tile.y}.png", params=QUERY)
    assert response.status_code == 500
    detail = response.json()["detail"]
    assert "damaged" in detail and "chunk (1, 2)" in detail and "'code'" in detail and "\n" not in detail


def test_a_damaged_fraction_chunk_is_a_json_error_naming_it(planted, tiny_clip, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from landprompt.serve.app import create_app
    from landprompt.serve.layer import ServedCube

    cube = shutil.copytree(planted.path, tmp_path / "planted.zarr")
    client = TestClient(create_app([ServedCube(cube, tiny_clip)]), raise_server_exceptions=False)
    chunk = cube / "overviews" / "1" / "valid_fraction" / "c" / "0" / "1"  # level-1 rows 0:64, cols 64:128
    chunk.write_bytes(chunk.read_bytes()[:-3])
    tile = tile_of(planted.grid, 96, 160, 12)  # a level-1 tile over that chunk
    response = client.get(f"/tiles/WebMercatorQuad/12/{tile.x}/{tile.y}.png", params=QUERY)
    assert response.status_code == 500
    detail = response.json()["detail"]
    assert "damaged" in detail and "chunk (0, 1)" in detail and "'valid_fraction'" in detail
    assert "\n" not in detail


def test_served_cubes_come_only_from_the_start(planted, tiny_clip) -> None:  # type: ignore[no-untyped-def]
    from landprompt.errors import BadInputError
    from landprompt.serve.app import create_app

    with pytest.raises(BadInputError, match="nothing to serve"):
        create_app([])


def test_serve_cli_refuses_a_non_cube(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from landprompt.cli.main import app

    result = CliRunner().invoke(app, ["serve", str(tmp_path / "missing.zarr")])
    assert result.exit_code != 0 and "does not exist" in result.output


def test_calibrated_tiles_apply_the_cubes_calibration(planted, tiny_clip, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from landprompt.calibration import Calibration, calibration_path, save_calibration
    from landprompt.serve.app import create_app
    from landprompt.serve.layer import ServedCube

    cube = shutil.copytree(planted.path, tmp_path / "planted.zarr")
    calibration = Calibration("platt", {"a": 0.5, "b": -1.0})
    save_calibration(calibration, calibration_path(cube, "olive groves"))
    client = TestClient(create_app([ServedCube(cube, tiny_clip)]))
    tile = tile_of(planted.grid, 96, 160, 14)
    url = f"/tiles/WebMercatorQuad/14/{tile.x}/{tile.y}.npy"
    raw = np.load(io.BytesIO(client.get(url, params=QUERY).content))[0]
    calibrated = np.load(io.BytesIO(client.get(url, params={**QUERY, "calibrated": True}).content))[0]
    assert np.allclose(calibrated, calibration.apply(raw), equal_nan=True)
    assert not np.allclose(calibrated, raw, equal_nan=True)


def test_a_calibration_fitted_for_the_served_query_is_accepted(planted, tiny_clip, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The served query names its CLIP model by id (model/weights), as every fitted calibration does."""
    from landprompt.calibration import Calibration, QuerySettings, calibration_path, save_calibration
    from landprompt.query.classes import DEFAULT_STYLE, resolve_logit_scale
    from landprompt.serve.app import create_app
    from landprompt.serve.layer import ServedCube

    cube = shutil.copytree(planted.path, tmp_path / "planted.zarr")
    served = ServedCube(cube, tiny_clip)
    scale = resolve_logit_scale(served.session.ds, tiny_clip, None)
    versus = tuple(QUERY["versus"])
    for clip_id, status in ((tiny_clip.id, 200), ("another-model/its-weights", 400)):
        query = QuerySettings("olive groves", versus, DEFAULT_STYLE, scale, clip_id)
        fitted = Calibration("platt", {"a": 0.5, "b": -1.0}, query)
        save_calibration(fitted, calibration_path(cube, "olive groves"))
        client = TestClient(create_app([ServedCube(cube, tiny_clip)]), raise_server_exceptions=False)
        response = client.get("/point", params={**QUERY, "lon": 11.23, "lat": 43.32, "calibrated": True})
        assert response.status_code == status, response.text


def test_without_overviews_coarse_tiles_are_refused(planted, tiny_clip, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from landprompt.serve import layer
    from landprompt.serve.app import create_app

    cube = shutil.copytree(
        planted.path, tmp_path / "planted.zarr", ignore=shutil.ignore_patterns("overviews")
    )
    served = layer.ServedCube(cube, tiny_clip)
    assert served.levels == [] and served.needs_overviews
    # the 256 x 256 test cube stands in for a big one
    monkeypatch.setattr(layer, "MAX_TILE_PIXELS", 200 * 200)
    client = TestClient(create_app([served]), raise_server_exceptions=False)
    coarse, fine = tile_of(planted.grid, 96, 160, 10), tile_of(planted.grid, 96, 160, 14)
    response = client.get(f"/tiles/WebMercatorQuad/10/{coarse.x}/{coarse.y}.png", params=QUERY)
    assert response.status_code == 400 and "landprompt cube overviews" in response.json()["detail"]
    fine_response = client.get(f"/tiles/WebMercatorQuad/14/{fine.x}/{fine.y}.png", params=QUERY)
    assert fine_response.status_code == 200, fine_response.text
