import json
from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from landprompt.embedder.cube import write_cube
from landprompt.errors import BadInputError
from landprompt.geo import Grid
from landprompt.index import factory
from landprompt.index.build import build_index, default_index_path, sidecar_path
from landprompt.index.factory import check_factory, choose_factory, default_nprobe, make_index, nlist_for
from landprompt.index.search import CubeIndex
from landprompt.query.classes import (
    background_embeddings,
    class_matrix,
    concept_probability,
    default_vocabulary,
)
from landprompt.query.probability import probability_map
from landprompt.query.search import spatial_nms
from landprompt.query.topk import cube_paths, top_k, top_k_shards, write_places

GRID = Grid("EPSG:32632", Affine(10.0, 0, 680_000.0, 0, -10.0, 4_800_000.0), (200, 180))
DIM = 32
#: Top-left corners of the planted 3 x 3 pixel places, best first.
PLACES = [(20, 30), (40, 150), (120, 60), (170, 170), (90, 100)]


@pytest.fixture(scope="module")
def query_vector(unit) -> np.ndarray:
    return unit(np.random.default_rng(7).normal(size=DIM)).astype(np.float32)


@pytest.fixture(scope="module")
def planted_embeddings(cube_data):
    """``planted_embeddings(query, seed)``: background noise orthogonal to the query; 5 places of 3 x 3
    pixels close to it (``PLACES``), the first rows no-data (tests/data/cube/data.py)."""
    return lambda query, seed=0: cube_data.planted_places(query, GRID.shape, PLACES, seed)


@pytest.fixture(scope="module")
def cube(tmp_path_factory: pytest.TempPathFactory, query_vector: np.ndarray, planted_embeddings) -> Path:
    emb, valid = planted_embeddings(query_vector)
    path = tmp_path_factory.mktemp("query") / "planted.zarr"
    return write_cube(path, emb, GRID, valid=valid, chunk=64, attrs={"clip_model": "landprompt-tiny"})


def place_centres() -> set[tuple[int, int]]:
    return {(r + 1, c + 1) for r, c in PLACES}


def places_hit(places) -> list[int]:
    """Which planted place (index in PLACES) each result falls in; -1 for none."""
    return [
        next((i for i, (r, c) in enumerate(PLACES) if r <= row < r + 3 and c <= col < c + 3), -1)
        for row, col in zip(places.row, places.col, strict=True)
    ]


# --- top-k ---------------------------------------------------------------------------------------------


def test_top_k_exact_scan_returns_the_planted_places(cube, query_vector):
    places = top_k(cube, query_vector, k=5, min_distance_m=100, index=None)
    assert list(places.columns) == ["rank", "row", "col", "lon", "lat", "x", "y", "score"]
    assert set(zip(places.row, places.col, strict=True)) == place_centres()
    assert places["rank"].tolist() == [1, 2, 3, 4, 5]
    assert np.all(np.diff(places.score) <= 0)
    lon, lat = GRID.rowcol_to_lonlat(places.row.to_numpy(), places.col.to_numpy())
    np.testing.assert_allclose(places.lon, lon)
    np.testing.assert_allclose(places.lat, lat)


def test_without_nms_the_best_pixels_cluster_in_one_place(cube, query_vector):
    places = top_k(cube, query_vector, k=9, min_distance_m=0, index=None)
    assert len(set(zip(places.row, places.col, strict=True))) == 9  # distinct pixels
    # The 9 best pixels include neighbours of the planted centres: NMS is what spreads them out.
    assert not set(zip(places.row, places.col, strict=True)) <= place_centres()


# HNSW is left out: a needle in a background orthogonal to the query gives its greedy walk nothing to follow.
@pytest.mark.parametrize("factory", ["Flat", "IVF8,Flat", "IVF8,SQ8"])
def test_top_k_through_an_index_returns_the_planted_places(cube, query_vector, tmp_path, factory):
    out = tmp_path / "planted.faiss"
    info = build_index(cube, out, factory=factory, progress=False)
    assert info.ntotal == int((GRID.rows - 5) * GRID.cols)
    sidecar = json.loads(sidecar_path(out).read_text())
    assert sidecar["factory"] == factory and sidecar["id_rule"] == "id = row * cols + col"
    index = CubeIndex.open(out, cube)
    if factory.startswith("IVF"):
        index.nprobe = 8  # all lists
    places = top_k(cube, query_vector, k=5, min_distance_m=100, index=index)
    # Each result lies in a different planted place (quantised scores may pick a neighbour of the centre).
    assert sorted(places_hit(places)) == [0, 1, 2, 3, 4]
    if factory == "Flat":
        assert set(zip(places.row, places.col, strict=True)) == place_centres()


def test_default_index_is_used_and_a_stale_one_refused(tmp_path, query_vector, planted_embeddings):
    emb, valid = planted_embeddings(query_vector)
    path = write_cube(tmp_path / "c.zarr", emb, GRID, valid=valid, chunk=64)
    build_index(path, progress=False)
    assert default_index_path(path).is_file()
    assert CubeIndex.for_cube(path) is not None
    places = top_k(path, query_vector, k=5, min_distance_m=100)  # index="auto"
    assert set(zip(places.row, places.col, strict=True)) == place_centres()
    emb2, _ = planted_embeddings(query_vector, seed=1)
    write_cube(path, emb2, GRID, valid=valid, chunk=64, overwrite=True)
    with pytest.raises(BadInputError, match="stale"):
        top_k(path, query_vector, k=5)


def test_top_k_in_a_bbox(cube, query_vector):
    (r0, c0), (r1, c1) = (15, 20), (50, 160)  # covers the first two places only
    lon, lat = GRID.rowcol_to_lonlat(np.array([r0, r1]), np.array([c0, c1]))
    bbox = (lon[0], lat[1], lon[1], lat[0])
    places = top_k(cube, query_vector, k=2, min_distance_m=100, bbox=bbox)
    assert set(zip(places.row, places.col, strict=True)) == {(21, 31), (41, 151)}


def test_top_k_errors(cube, query_vector, tmp_path):
    with pytest.raises(BadInputError, match="k must be"):
        top_k(cube, query_vector, k=0)
    with pytest.raises(BadInputError, match="shape"):
        top_k(cube, query_vector[:5], k=3)
    with pytest.raises(BadInputError, match="outside the grid"):
        top_k(cube, query_vector, k=3, bbox="0,0,1,1")
    with pytest.raises(BadInputError, match="unknown FAISS factory"):
        build_index(cube, tmp_path / "x.faiss", factory="IVFbogus", progress=False)
    assert not (tmp_path / "x.faiss").exists()


def test_spatial_nms_keeps_the_best_of_each_neighbourhood():
    rows = np.array([10, 11, 10, 30, 31, 10])
    cols = np.array([10, 10, 12, 30, 30, 10])
    assert spatial_nms(rows, cols, k=5, radius=5) == [0, 3]
    assert spatial_nms(rows, cols, k=5, radius=0) == [0, 1, 2, 3, 4]  # the repeated pixel is dropped
    assert spatial_nms(rows, cols, k=1, radius=0) == [0]


def test_write_places(cube, query_vector, tmp_path):
    places = top_k(cube, query_vector, k=3, min_distance_m=100, index=None)
    csv = write_places(places, tmp_path / "p.csv")
    assert csv.read_text().splitlines()[0] == "rank,row,col,lon,lat,x,y,score"
    geojson = json.loads(write_places(places, tmp_path / "p.geojson").read_text())
    assert len(geojson["features"]) == 3
    assert geojson["features"][0]["geometry"]["coordinates"] == [places.lon[0], places.lat[0]]
    with pytest.raises(BadInputError, match=r"written as \.csv, \.geojson"):
        write_places(places, tmp_path / "p.txt")


def test_factory_choice_by_size():
    assert choose_factory(10_000, 512) == "Flat"
    assert choose_factory(1_000_000, 65) == "IVF1024,Flat"  # version-2 codes: 260 MB as float32
    assert choose_factory(1_000_000, 512) == "IVF1024,SQfp16"  # 1 GB as float16
    assert choose_factory(10_000_000, 512) == "IVF4096,SQ8"  # 5 GB as bytes
    assert choose_factory(100_000_000, 512).endswith(",PQ128")
    assert default_nprobe("IVF4096,SQ8") == 32 and default_nprobe("IVF64,Flat") == 8
    assert default_nprobe("Flat") == 0
    assert nlist_for(1_000_000) == 1024 and nlist_for(10_000_000) == 4096
    assert make_index("Flat", 8).ntotal == 0


def test_absurd_ivf_list_counts_are_refused_before_faiss_builds_anything(monkeypatch):
    def must_not_build(*args):
        raise AssertionError("FAISS asked to build the index (it allocates every list's centroid)")

    monkeypatch.setattr(factory, "make_index", must_not_build)
    with pytest.raises(BadInputError, match="asks for 2,000,000,000 IVF lists but the cube has 100 vectors"):
        check_factory("IVF2000000000,Flat", 100, 64)
    with pytest.raises(BadInputError, match="PQ3 needs a sub-vector count dividing the dimension 10"):
        check_factory("IVF4,PQ3", 100, 10)


# --- probability maps --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def concept_cube(tmp_path_factory, tiny_clip, cube_data):
    """Left half planted as 'olive groves', right half as the vocabulary's 'sea'; top rows invalid."""
    dual = cube_data.concept_duals(tiny_clip, ["olive groves", "sea"])
    emb = cube_data.plant(dual, cube_data.halves(GRID.shape, 90, 0, 1), np.random.default_rng(3))
    valid = np.ones(GRID.shape, bool)
    valid[:5] = False
    path = tmp_path_factory.mktemp("concept") / "concept.zarr"
    return write_cube(path, emb, GRID, valid=valid, chunk=64, attrs={"clip_model": "landprompt-tiny"})


def test_probability_map_exceeds_half_exactly_on_the_planted_pixels(concept_cube, tiny_clip):
    prob = probability_map(concept_cube, "olive groves", versus=["sea"], clip=tiny_clip, logit_scale=100)
    assert prob.dims == ("y", "x") and prob.shape == GRID.shape
    assert prob.rio.crs == GRID.crs
    assert prob.rio.transform() == GRID.transform
    planted = np.zeros(GRID.shape, bool)
    planted[5:, :90] = True
    assert np.isnan(prob.values[:5]).all()
    np.testing.assert_array_equal(prob.values[5:] > 0.5, planted[5:])
    assert prob.attrs["concept"] == "olive groves" and prob.attrs["n_background"] == 1


def test_probability_map_bbox_and_default_vocabulary(concept_cube, tiny_clip):
    lon, lat = GRID.rowcol_to_lonlat(np.array([50, 99]), np.array([60, 119]))
    prob = probability_map(
        concept_cube, "olive groves", bbox=(lon[0], lat[1], lon[1], lat[0]), clip=tiny_clip
    )
    vocabulary = default_vocabulary()
    assert "olive groves" in vocabulary
    assert prob.attrs["n_background"] == len(vocabulary) - 1  # the concept itself is left out
    full = probability_map(concept_cube, "olive groves", clip=tiny_clip)
    # float32 matmuls over different block shapes round differently: equal to float32 precision
    np.testing.assert_allclose(prob.values, full.sel(x=prob.x, y=prob.y).values, rtol=1e-5, atol=1e-7)


def test_probability_is_a_softmax(unit):
    classes = unit(np.eye(3, 4, dtype=np.float32))
    emb = unit(np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]], np.float32))
    p = concept_probability(emb, classes, logit_scale=10.0)
    expected0 = np.exp(10) / (np.exp(10) + 2)
    np.testing.assert_allclose(p, [expected0, 1 / (np.exp(10) + 2)], rtol=1e-6)


def test_probability_errors(concept_cube, tiny_clip):
    with pytest.raises(BadInputError, match="empty prompt"):
        probability_map(concept_cube, "  ", clip=tiny_clip)
    with pytest.raises(BadInputError, match="empty"):
        background_embeddings(tiny_clip, "sea", versus=["sea", " "])
    with pytest.raises(BadInputError, match="outside the grid"):
        probability_map(concept_cube, "olive groves", bbox="0,0,1,1", clip=tiny_clip)
    narrow, wide = np.ones(8, np.float32), np.ones((2, 32), np.float32)
    for refused in (
        lambda: probability_map(concept_cube, narrow, versus=wide),
        lambda: class_matrix(narrow, wide),
    ):
        with pytest.raises(BadInputError, match=r"^concept has dimension 8 but the background has 32$"):
            refused()


def test_top_k_across_shards_equals_one_cube(cube, query_vector, tmp_path, planted_embeddings):
    emb, valid = planted_embeddings(query_vector)
    shards = tmp_path / "shards"
    for name, cols in (("west", slice(0, 100)), ("east", slice(100, 180))):
        write_cube(
            shards / f"{name}.zarr", emb[:, cols], GRID.window(slice(0, 200), cols), valid=valid[:, cols]
        )
    assert [p.name for p in cube_paths(shards)] == ["east.zarr", "west.zarr"]
    assert cube_paths(cube) == [cube]
    merged = top_k_shards(cube_paths(shards), query_vector, k=5, min_distance_m=100)
    single = top_k(cube, query_vector, k=5, min_distance_m=100, index=None)
    np.testing.assert_allclose(merged[["lon", "lat"]], single[["lon", "lat"]])
    np.testing.assert_allclose(merged.score, single.score)
    assert merged["rank"].tolist() == [1, 2, 3, 4, 5]
    assert set(merged.cube) == {str(shards / "west.zarr"), str(shards / "east.zarr")}
    with pytest.raises(BadInputError, match="no cubes"):
        top_k_shards([], query_vector)
