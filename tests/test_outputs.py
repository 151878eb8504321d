"""Every kind of output x (mode from the umask, opens in GDAL with the right CRS, provenance tags)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyogrio
import pytest
import rasterio
from typer.testing import CliRunner

from landprompt.cli import app
from landprompt.files import atomic_path
from landprompt.query.change import CLASS_COLOURS, GAIN, LOSS, NODATA

CONCEPT = "olive groves"
CUBE_CRS = "EPSG:32632"
#: Provenance tags every COG carries (GDAL metadata) and every GeoPackage's layer metadata.
PROVENANCE = (
    "landprompt_cube",
    "landprompt_cube_content_hash",
    "landprompt_encoder",
    "landprompt_clip_model",
    "landprompt_clip_weights",
    "landprompt_concept",
    "landprompt_background",
    "landprompt_style",
    "landprompt_calibration",
    "landprompt_version",
    "landprompt_created_utc",
)
#: Output kind -> (command builder, file it writes, how it is georeferenced).
RASTERS = ("map.tif", "map_u8.tif", "change.tif", "change_class.tif")
VECTORS = ("places.geojson", "places.gpkg", "places.fgb", "regions.geojson", "regions.gpkg", "regions.fgb")
TABLES = ("places.csv", "regions.csv")
PARQUET = (
    "places.parquet",
    "regions.parquet",
)  # GeoParquet: geopandas/pyarrow (no Parquet driver in pyogrio)
OTHERS = ("map.png", "map.html", "map.qml", "change.png")
SIDECARS = ("places.csv.crs.json", "regions.csv.crs.json")


# The second umask is slow (2.3 s: every output kind written again); the first already shows each kind's mode
# follows the umask, and `make test` runs both.
@pytest.fixture(
    scope="module",
    params=[pytest.param(0o022, id="umask022"), pytest.param(0o027, id="umask027", marks=pytest.mark.slow)],
)
def outputs(
    request: pytest.FixtureRequest, analytics_cubes: SimpleNamespace, tmp_path_factory, units_file: Any
) -> Iterator[Any]:
    """Every output kind written by the CLI under one umask."""
    c = analytics_cubes
    out = tmp_path_factory.mktemp(f"outputs{request.param:o}")
    units = units_file(tmp_path_factory.mktemp("units"), "units.geojson")
    runner = CliRunner()
    commands = [
        ["query", "map", c.mixture, CONCEPT, "-o", out / "map.tif", "--png", "--html", "--qml"],
        ["query", "map", c.mixture, CONCEPT, "-o", out / "map_u8.tif", "--dtype", "uint8"],
        ["query", "change", c.year1, c.year2, CONCEPT, "-o", out / "change.tif", "--png"],
        *(
            ["query", "topk", c.mixture, CONCEPT, "-k", "3", "-o", out / name]
            for name in (*VECTORS[:3], TABLES[0], PARQUET[0])
        ),
        *(
            [
                "query",
                "aggregate",
                c.mixture,
                CONCEPT,
                "--units",
                units,
                "--id-field",
                "NUTS_ID",
                "-o",
                out / name,
            ]
            for name in (*VECTORS[3:], TABLES[1], PARQUET[1])
        ),
    ]
    previous = os.umask(request.param)
    try:
        for args in commands:
            result = runner.invoke(app, [str(a) for a in args])
            assert result.exit_code == 0, result.output
    finally:
        os.umask(previous)
    yield SimpleNamespace(folder=out, umask=request.param)


@pytest.mark.parametrize("name", [*RASTERS, *VECTORS, *TABLES, *PARQUET, *OTHERS, *SIDECARS])
def test_mode_follows_the_umask(outputs: SimpleNamespace, name: str) -> None:
    mode = (outputs.folder / name).stat().st_mode & 0o777
    assert mode == 0o666 & ~outputs.umask, f"{name}: {mode:o}"


@pytest.mark.parametrize("name", RASTERS)
def test_cogs_open_in_gdal_with_crs_and_provenance(outputs: SimpleNamespace, name: str) -> None:
    with rasterio.open(outputs.folder / name) as src:
        assert src.crs.to_string() == CUBE_CRS and src.overviews(1)
        tags = src.tags()
    missing = [key for key in PROVENANCE if not tags.get(key)]
    assert not missing, f"{name} lacks {missing}"
    assert tags["landprompt_concept"] == CONCEPT
    assert tags["landprompt_clip_model"].startswith("landprompt-tiny/")
    assert len(tags["landprompt_cube_content_hash"]) == 64
    assert json.loads(tags["landprompt_background"])  # the shipped vocabulary, a JSON list


@pytest.mark.parametrize("name", VECTORS)
def test_vectors_open_in_ogr_with_crs(outputs: SimpleNamespace, name: str) -> None:
    path = outputs.folder / name
    info = pyogrio.read_info(path)
    assert info["crs"] == "EPSG:4326"
    assert info["driver"] == {".geojson": "GeoJSON", ".gpkg": "GPKG", ".fgb": "FlatGeobuf"}[path.suffix]
    assert info["features"] == (3 if name.startswith("places") else 2)
    fields = list(info["fields"])
    assert (
        ("score" in fields)
        if name.startswith("places")
        else ("mean_probability" in fields and "NUTS_ID" in fields)
    )
    if path.suffix == ".gpkg" and name.startswith("regions"):
        metadata = info["layer_metadata"] or {}
        assert all(metadata.get(key) for key in PROVENANCE), metadata


def test_geoparquet_reads_back_with_crs_and_values(outputs: SimpleNamespace) -> None:
    import geopandas as gpd
    import pandas as pd

    for name, table, columns in (
        ("places.parquet", "places.csv", ["rank", "lon", "lat", "x", "y", "score"]),
        ("regions.parquet", "regions.csv", ["NUTS_ID", "mean_probability", "pixels"]),
    ):
        frame = gpd.read_parquet(outputs.folder / name)
        expected = pd.read_csv(outputs.folder / table)
        assert frame.crs is not None and frame.crs.to_string() == "EPSG:4326", name
        pd.testing.assert_frame_equal(
            pd.DataFrame(frame[columns]), expected[columns], check_dtype=False, rtol=1e-6
        )
        assert frame.geometry.notna().all() and len(frame) == len(expected)
    places = gpd.read_parquet(outputs.folder / "places.parquet")
    np.testing.assert_allclose(places.geometry.x, places["lon"])
    np.testing.assert_allclose(places.geometry.y, places["lat"])


def _provenance(path: Path) -> dict[str, str]:
    """The provenance tags an output carries, read the way its format keeps them."""
    import re

    if path.suffix == ".tif":
        with rasterio.open(path) as src:
            return dict(src.tags())
    if path.suffix == ".png":
        from PIL import Image

        with Image.open(path) as image:
            return dict(image.text)  # type: ignore[attr-defined]
    if path.suffix == ".html":
        import html

        pairs = re.findall(r'<meta name="(landprompt_[^"]+)" content="([^"]*)">', path.read_text())
        return {key: html.unescape(value) for key, value in pairs}
    if path.suffix == ".csv":
        return dict(json.loads(path.with_name(path.name + ".crs.json").read_text())["provenance"])
    if path.suffix == ".geojson":
        return dict(json.loads(path.read_text())["landprompt"])
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return dict(json.loads(pq.read_schema(path).metadata[b"landprompt"]))
    return dict(pyogrio.read_info(path)["layer_metadata"] or {})


@pytest.mark.parametrize(
    "name", [*RASTERS, *VECTORS, *TABLES, *PARQUET, *(n for n in OTHERS if not n.endswith(".qml"))]
)
def test_every_output_carries_provenance(outputs: SimpleNamespace, name: str) -> None:
    tags = _provenance(outputs.folder / name)
    missing = [key for key in PROVENANCE if not tags.get(key)]
    assert not missing, f"{name} lacks {missing}"
    assert tags["landprompt_concept"] == CONCEPT and len(tags["landprompt_cube_content_hash"]) == 64
    assert tags["landprompt_cube"].endswith("mixture.zarr") != name.startswith("change")
    background = json.loads(tags["landprompt_background"])
    assert background == [] if name.startswith("places") else background  # a search has no background


def test_csv_names_its_crs(outputs: SimpleNamespace) -> None:
    sidecar = json.loads((outputs.folder / "places.csv.crs.json").read_text())
    assert sidecar["columns"] == {"lon,lat": "EPSG:4326", "x,y": CUBE_CRS}


def test_class_cog_is_uint8_with_colours_and_nearest_overviews(outputs: SimpleNamespace) -> None:
    with rasterio.open(outputs.folder / "change_class.tif") as src:
        assert src.dtypes[0] == "uint8" and src.nodata == NODATA
        colours = src.colormap(1)
        assert colours[GAIN] == CLASS_COLOURS[GAIN] and colours[LOSS] == CLASS_COLOURS[LOSS]
        full = src.read(1)
        factor = src.overviews(1)[0]
        overview = src.read(1, out_shape=(src.height // factor, src.width // factor))
    assert set(np.unique(overview)) <= set(np.unique(full)) <= {0, GAIN, LOSS, NODATA}


def test_atomic_path_mode_replaces_mkstemp_0600(tmp_path: Path) -> None:
    previous = os.umask(0o002)
    try:
        with atomic_path(tmp_path / "a.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(previous)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o664
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_cube_export_opens_in_rasterio_gdal(analytics_cubes: SimpleNamespace, tmp_path: Path) -> None:
    from landprompt.embedder.cube import open_cube, read_window

    c = analytics_cubes
    out = tmp_path / "cube.tif"
    result = CliRunner().invoke(app, ["cube", "export", str(c.mixture), str(out)])
    assert result.exit_code == 0, result.output
    ds = open_cube(c.mixture)
    embedding, valid = read_window(ds, slice(5, 6), slice(7, 8))
    with rasterio.open(out) as src:
        assert src.crs.to_string() == CUBE_CRS and src.transform == c.grid.transform
        assert src.count == ds.sizes["d"] and src.descriptions[0] == "embedding_000"
        assert src.tags()["landprompt_cube_content_hash"] == ds.attrs["content_hash"]
        pixel = src.read(window=((5, 6), (7, 8)))[:, 0, 0]
        assert np.isnan(src.read(1, window=((0, 1), (0, 4)))).all()  # row 0 is not valid
    assert valid[0, 0]
    np.testing.assert_allclose(pixel, embedding[0, 0], rtol=1e-6)
    assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert not list(tmp_path.glob(".*"))  # no staging file left


def test_cube_info_json(analytics_cubes: SimpleNamespace) -> None:
    result = CliRunner().invoke(app, ["cube", "info", str(analytics_cubes.mixture), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["crs"] == CUBE_CRS and summary["shape"] == [48, 48]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_qml_style_is_a_qgis_pseudocolour_ramp(outputs: SimpleNamespace) -> None:
    import xml.etree.ElementTree as ET

    root = ET.parse(outputs.folder / "map.qml").getroot()
    renderer = root.find("pipe/rasterrenderer")
    assert renderer is not None and renderer.get("type") == "singlebandpseudocolor"
    items = root.findall(".//colorrampshader/item")
    assert [float(i.get("value", "nan")) for i in items] == pytest.approx(np.linspace(0, 1, 11))
    assert items[0].get("color") == "#000004" and items[-1].get("color") == "#fcfdbf"  # magma


def test_aggregate_keeps_the_polygon_fields_on_request(
    analytics_cubes: SimpleNamespace, tmp_path: Path, units_file: Any
) -> None:
    import pyogrio.raw

    units = units_file(tmp_path, "units.geojson")
    args = ["query", "aggregate", str(analytics_cubes.mixture), CONCEPT, "--units", str(units)]
    for name, extra in (("plain.gpkg", []), ("named.gpkg", ["--keep-fields"])):
        result = CliRunner().invoke(app, [*args, "--id-field", "NUTS_ID", "-o", str(tmp_path / name), *extra])
        assert result.exit_code == 0, result.output
    assert "NAME" not in list(pyogrio.read_info(tmp_path / "plain.gpkg")["fields"])
    meta, _, _, values = pyogrio.raw.read(tmp_path / "named.gpkg")
    fields = list(meta["fields"])
    assert values[fields.index("NAME")].tolist() == ["North", "South"]
    assert values[fields.index("NUTS_ID")].tolist() == ["north", "south"]


@pytest.fixture(scope="module")
def gdal_cube(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The same embeddings written as an int8 cube in the Zarr v2 (GDAL) layout and in the default one."""
    from affine import Affine

    from landprompt.embedder.cube import write_cube
    from landprompt.geo import Grid

    grid = Grid(CUBE_CRS, Affine(10.0, 0, 680_000.0, 0, -10.0, 4_800_000.0), (20, 24))
    embedding = np.random.default_rng(5).normal(size=(*grid.shape, 8)).astype(np.float32)
    valid = np.ones(grid.shape, bool)
    valid[0] = False
    root = tmp_path_factory.mktemp("gdal_cube")
    paths = {
        fmt: write_cube(
            root / f"v{fmt}.zarr", embedding, grid, valid, "int8", chunk=16, attrs={"a": 1}, zarr_format=fmt
        )
        for fmt in (2, 3)
    }
    return SimpleNamespace(grid=grid, v2=paths[2], v3=paths[3], embedding=embedding, valid=valid)


def test_zarr_v2_cube_opens_in_rasterio_gdal(gdal_cube: SimpleNamespace) -> None:
    from landprompt.embedder.cube import open_cube, read_window

    raw = open_cube(gdal_cube.v2)
    compressors = {json.loads(f.read_text())["compressor"]["id"] for f in gdal_cube.v2.rglob(".zarray")}
    assert compressors == {"zlib"}  # every array, coordinates too: zlib is built into every GDAL
    with rasterio.open(f'ZARR:"{gdal_cube.v2}":/embedding') as src:  # the GDAL in rasterio's wheel
        assert src.crs.to_string() == CUBE_CRS and src.transform == gdal_cube.grid.transform
        assert (src.count, src.height, src.width) == (8, 20, 24)
        codes = src.read(window=((5, 6), (7, 8)))[:, 0, 0]
    with rasterio.open(f'ZARR:"{gdal_cube.v2}":/scale') as src:
        scale = src.read(1, window=((5, 6), (7, 8)))[0, 0]
    np.testing.assert_array_equal(codes, raw["embedding"][5, 7].to_numpy())  # the stored int8 codes
    embedding, _ = read_window(raw, slice(5, 6), slice(7, 8))
    np.testing.assert_allclose(codes * scale, embedding[0, 0], rtol=1e-6)
    np.testing.assert_allclose(embedding[0, 0], gdal_cube.embedding[5, 7], atol=0.02)


def test_zarr_v2_cube_reads_like_the_default_layout(gdal_cube: SimpleNamespace) -> None:
    from landprompt.embedder.cube import open_cube, read_window, verify

    v2, v3 = open_cube(gdal_cube.v2), open_cube(gdal_cube.v3)
    assert v2.attrs["content_hash"] == v3.attrs["content_hash"]  # same chunk digests: same content
    assert (
        v2.attrs["integrity"]["checksum"] == "zlib-adler32" and v3.attrs["integrity"]["checksum"] == "crc32c"
    )
    whole = (slice(0, 20), slice(0, 24))
    for a, b in zip(read_window(v2, *whole), read_window(v3, *whole), strict=True):
        np.testing.assert_array_equal(a, b)
    assert verify(gdal_cube.v2, progress=False).ok


def test_zarr_v2_cube_damage_is_an_error(gdal_cube: SimpleNamespace, tmp_path: Path) -> None:
    import shutil

    from landprompt.embedder.cube import open_cube, read_window, verify
    from landprompt.errors import DamagedCubeError

    cube = shutil.copytree(gdal_cube.v2, tmp_path / "cube.zarr")
    (cube / "embedding" / "1" / "0" / "0").unlink()
    with pytest.raises(DamagedCubeError, match=r"chunk \(1, 0\) .* is missing"):
        read_window(open_cube(cube), slice(16, 20), slice(0, 4))
    chunk = cube / "embedding" / "0" / "1" / "0"
    chunk.write_bytes(chunk.read_bytes()[:-9])  # truncated: zlib's stream check fails, never data
    with pytest.raises(DamagedCubeError, match=r"chunk \(0, 1\) .* fails its zlib check"):
        read_window(open_cube(cube), slice(0, 4), slice(16, 20))
    assert verify(cube, progress=False).counts() == {"missing": 1, "unreadable": 1}


def test_cli_writes_the_gdal_layout(analytics_cubes: SimpleNamespace, tmp_path: Path) -> None:
    out = tmp_path / "v2.zarr"
    args = ["cube", "convert", str(analytics_cubes.mixture), str(out), "--rank", "4", "--exact-rank"]
    result = CliRunner().invoke(app, [*args, "--zarr-format", "2"])
    assert result.exit_code == 0, result.output
    with rasterio.open(f'ZARR:"{out}":/code') as src:
        assert src.crs.to_string() == CUBE_CRS and src.transform == analytics_cubes.grid.transform
    result = CliRunner().invoke(app, ["query", "map", str(out), CONCEPT, "-o", str(tmp_path / "m.tif")])
    assert result.exit_code == 0, result.output


def test_chunk_loops_report_progress(
    analytics_cubes: SimpleNamespace, tiny_clip: Any, units_file: Any, tmp_path: Path
) -> None:
    from landprompt.query.aggregate import aggregate
    from landprompt.query.change import change_map
    from landprompt.query.probability import probability_map
    from landprompt.query.topk import top_k, top_k_shards

    c = analytics_cubes
    calls: dict[str, list[tuple[int, int]]] = {
        name: [] for name in ("map", "change", "aggregate", "topk", "shards")
    }

    def recorder(name: str) -> Any:
        return lambda done, total: calls[name].append((done, total))

    probability_map(c.mixture, CONCEPT, clip=tiny_clip, progress=recorder("map"))
    change_map(c.year1, c.year2, CONCEPT, clip=tiny_clip, progress=recorder("change"))
    aggregate(
        c.mixture,
        CONCEPT,
        units_file(tmp_path, "u.geojson"),
        "NUTS_ID",
        clip=tiny_clip,
        progress=recorder("aggregate"),
    )
    top_k(c.mixture, CONCEPT, k=3, clip=tiny_clip, index=None, progress=recorder("topk"))
    top_k_shards([c.year1, c.year2], CONCEPT, k=3, clip=tiny_clip, progress=recorder("shards"))
    for name in ("map", "change", "topk"):  # 48 x 48 pixels in chunks of 16: 9 chunks
        assert [done for done, _ in calls[name]] == [256 * n for n in range(1, 10)], name
        assert {total for _, total in calls[name]} == {48 * 48}, name
    done, total = calls["aggregate"][-1]
    assert done == total > 0 and len(calls["aggregate"]) > 1
    assert calls["shards"] == [(1, 2), (2, 2)]


def test_zarr_v2_cube_run_resumes_and_refuses_another_layout(
    gdal_cube: SimpleNamespace, tmp_path: Path
) -> None:
    from landprompt.embedder.cube import CubeWriter, open_cube
    from landprompt.errors import BadInputError

    path, embedding = tmp_path / "run.zarr", gdal_cube.embedding
    first = CubeWriter(path, gdal_cube.grid, 8, "int8", chunk=16, attrs={"a": 1}, zarr_format=2)
    window = first.pending()[0]
    valid = gdal_cube.valid
    first.write_chunk(window, embedding[window.rows, window.cols], valid[window.rows, window.cols])  # killed
    with pytest.raises(BadInputError, match="different zarr_format"):
        CubeWriter(path, gdal_cube.grid, 8, "int8", chunk=16, attrs={"a": 1})
    resumed = CubeWriter(path, gdal_cube.grid, 8, "int8", chunk=16, attrs={"a": 1}, zarr_format=2)
    assert len(resumed.pending()) == len(resumed.windows()) - 1
    for window in resumed.pending():
        resumed.write_chunk(window, embedding[window.rows, window.cols], valid[window.rows, window.cols])
    resumed.finalize()
    assert open_cube(path).attrs["content_hash"] == open_cube(gdal_cube.v2).attrs["content_hash"]
    assert open_cube(path).attrs["complete"] is True  # the consolidated .zmetadata says so too


def test_change_and_shard_tags_name_each_cubes_content_hash(analytics_cubes, tiny_clip) -> None:  # type: ignore[no-untyped-def]
    from landprompt.embedder.cube import open_cube
    from landprompt.query.provenance import provenance_tags, search_tags, with_cube_b

    c = analytics_cubes
    hash_a, hash_b = (open_cube(p).attrs["content_hash"] for p in (c.year1, c.year2))
    assert hash_a != hash_b
    tags = with_cube_b(provenance_tags(c.year1, tiny_clip, CONCEPT), c.year2)
    assert (tags["landprompt_cube_content_hash"], tags["landprompt_cube_b_content_hash"]) == (hash_a, hash_b)
    shards = search_tags([c.year1, c.year2], tiny_clip, CONCEPT)
    assert json.loads(shards["landprompt_cube_content_hash"]) == [hash_a, hash_b]
    assert provenance_tags(open_cube(c.year2), tiny_clip, CONCEPT)["landprompt_cube_content_hash"] == hash_b
