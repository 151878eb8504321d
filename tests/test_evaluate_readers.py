"""Benchmark readers on the real samples in ../shared/data and on synthetic trees (tests/data/eval)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import rasterio

from landprompt.embedder.models.base import S1_BANDS, S2_BANDS
from landprompt.errors import BadInputError
from landprompt.evaluate.datasets import (
    EUROSAT_CLASSES,
    BigEarthNet,
    EuroSAT,
    EuroSATRGB,
    Lucas,
    bigearthnet19,
    gps_lonlat,
    open_benchmark,
    stratified_indices,
)
from landprompt.evaluate.resources import packaged_yaml

SHARED = Path(__file__).parents[1].parent / "shared" / "data"


def shared(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"shared sample data not found at {path} (see ../shared/data/README.md)")
    return path


def month_filled(values: np.ndarray) -> list[int]:
    """Months (1-12) of a [time, band, y, x] array that hold any value."""
    return [int(m) + 1 for m in np.flatnonzero(np.isfinite(values).any(axis=(1, 2, 3)))]


# --- EuroSAT ---------------------------------------------------------------------------------------------


def test_eurosat_sample_bands_order_and_labels() -> None:
    bench = EuroSAT(shared("eurosat-ms-sample"))
    assert bench.classes == EUROSAT_CLASSES and len(bench.classes) == 10
    assert [(s.id, s.labels) for s in bench] == [("AnnualCrop_1", (0,)), ("Forest_1", (1,))]
    for sample in bench:
        data = bench.load(sample)
        s2 = data.composite["s2"]
        assert s2.dims == ("time", "s2_band", "y", "x") and s2.shape == (12, 10, 64, 64)
        assert list(s2["s2_band"].values) == list(S2_BANDS)
        assert month_filled(s2.values) == [7] and month_filled(data.composite["s1"].values) == []
        with rasterio.open(sample.path) as src:
            raw = src.read().astype(np.float32)
        july = s2.isel(time=6)
        # EuroSAT's file order is B1..B12 then B8A: B8A is file band 13, B11 and B12 bands 11 and 12.
        for band, file_band in (("B2", 2), ("B4", 4), ("B8", 8), ("B8A", 13), ("B11", 11), ("B12", 12)):
            np.testing.assert_array_equal(july.sel(s2_band=band).values, raw[file_band - 1])
        assert raw[9].mean() < 100 < raw[12].mean()  # file band 10 is cirrus (B10), band 13 the NIR B8A
        assert data.latlon.shape == (64, 64, 2)
        assert 35 < data.latlon[..., 0].mean() < 60 and -10 < data.latlon[..., 1].mean() < 30


def test_eurosat_finds_class_folders_below_root(tmp_path: Path, eval_data: Any) -> None:
    eval_data.make_eurosat_ms(tmp_path / "ds" / "images" / "tif", per_class=2, classes=EUROSAT_CLASSES[:3])
    bench = open_benchmark("eurosat", tmp_path, month=3)
    assert bench.root == tmp_path / "ds" / "images" / "tif"
    assert [s.id for s in bench] == [f"{c}_{n}" for c in EUROSAT_CLASSES[:3] for n in (1, 2)]
    assert month_filled(bench.load(bench[0]).composite["s2"].values) == [3]


def test_eurosat_sample_order_is_numeric(tmp_path: Path, eval_data: Any) -> None:
    eval_data.make_eurosat_ms(tmp_path, per_class=11, classes=("Forest",))
    assert [s.id for s in EuroSAT(tmp_path)] == [f"Forest_{n}" for n in range(1, 12)]


def test_eurosat_rejects_unknown_class_and_rgb_files(tmp_path: Path, eval_data: Any) -> None:
    eval_data.make_eurosat_ms(tmp_path / "a", per_class=1, classes=("Forest", "Glacier"))
    with pytest.raises(BadInputError, match="unknown classes \\['Glacier'\\]"):
        EuroSAT(tmp_path / "a")
    with pytest.raises(BadInputError, match="no class folders"):
        EuroSATRGB(tmp_path / "a")
    with pytest.raises(BadInputError, match="month must be 1-12"):
        EuroSAT(tmp_path / "a", month=13)


def test_eurosat_rgb_reads_jpegs(tmp_path: Path, eval_data: Any) -> None:
    bench = EuroSATRGB(eval_data.make_eurosat_rgb(tmp_path, per_class=1, size=16))
    assert len(bench) == 10 and bench.name == "eurosat-rgb"
    image = bench.load(bench[0]).image
    assert image is not None and image.mode == "RGB" and image.size == (16, 16)


# --- BigEarthNet -----------------------------------------------------------------------------------------


def test_nomenclature_43_to_19() -> None:
    nomenclature = bigearthnet19()
    document = packaged_yaml("bigearthnet19.yaml")
    assert len(nomenclature.classes) == 19 and len(nomenclature.corine) == 43
    assert sum(index is None for index in nomenclature.corine.values()) == len(document["dropped"]) == 11
    assert sorted({i for i in nomenclature.corine.values() if i is not None}) == list(range(19))
    assert nomenclature.convert(["Continuous urban fabric", "Discontinuous urban fabric"]) == (0,)
    assert nomenclature.convert(["Rice fields", "Sea and ocean", "Airports"]) == (2, 18)
    assert nomenclature.classes[6].startswith("Land principally occupied by agriculture, with")
    with pytest.raises(BadInputError, match="unknown BigEarthNet CORINE label"):
        nomenclature.convert(["Glaciers and perpetual snow"])


def test_nomenclature_knows_every_label_of_the_sample_metadata() -> None:
    files = sorted(shared("bigearthnet-tiny").rglob("*_labels_metadata.json"))
    assert len(files) == 9
    for path in files:
        labels = json.loads(path.read_text())["labels"]
        assert all(label in bigearthnet19().corine for label in labels), path


def test_bigearthnet_sample_labels_shapes_and_s1_pairing() -> None:
    root = shared("bigearthnet-tiny")
    bench = BigEarthNet(root)
    s2_folders = sorted(p for p in (root / "s2-tiny").iterdir() if p.is_dir())
    assert [s.id for s in bench] == [p.name for p in s2_folders]
    nomenclature = bigearthnet19()
    for sample, folder in zip(bench, s2_folders, strict=True):
        labels = json.loads((folder / f"{folder.name}_labels_metadata.json").read_text())["labels"]
        expected = {nomenclature.classes[nomenclature.corine[label]] for label in labels}  # type: ignore[index]
        assert {bench.classes[i] for i in sample.labels} == expected
    assert dict(zip([s.id for s in bench], [s.labels for s in bench], strict=True)) == {
        "S2A_MSIL2A_20170617T113321_36_85": (2, 4),  # arable land, pastures
        "S2A_MSIL2A_20170617T113321_4_55": (4,),
        "S2A_MSIL2A_20171221T112501_56_35": (5, 6, 8, 13),
    }
    assert bench.settings()["samples_with_s1"] == 3

    sample = bench[2]  # 2017-12-21; its S1 partner was acquired the same day
    data = bench.load(sample)
    s2, s1 = data.composite["s2"], data.composite["s1"]
    assert s2.shape == (12, 10, 120, 120) and s1.shape == (12, 2, 120, 120)
    assert list(s1["s1_band"].values) == list(S1_BANDS)
    assert month_filled(s2.values) == [12] and month_filled(s1.values) == [12]
    december = s2.isel(time=11)
    with rasterio.open(sample.path / f"{sample.id}_B02.tif") as src:
        np.testing.assert_array_equal(december.sel(s2_band="B2").values, src.read(1))
    with rasterio.open(sample.path / f"{sample.id}_B11.tif") as src:  # 20 m -> 10 m, nearest
        raw = src.read(1)
        assert raw.shape == (60, 60)
        np.testing.assert_array_equal(december.sel(s2_band="B11").values, raw.repeat(2, 0).repeat(2, 1))
    partner = next((root / "s1-tiny").glob("*_29SND_56_35/*_VV.tif"))
    meta = json.loads(next(partner.parent.glob("*_labels_metadata.json")).read_text())
    assert meta["corresponding_s2_patch"] == sample.id
    with rasterio.open(partner) as src:
        np.testing.assert_array_equal(s1.isel(time=11).sel(s1_band="VV").values, src.read(1))
    assert data.latlon.shape == (120, 120, 2) and 36 < data.latlon[..., 0].mean() < 42


def test_bigearthnet_without_s1_and_with_a_split(tmp_path: Path) -> None:
    root = shared("bigearthnet-tiny")
    bench = BigEarthNet(root, use_s1=False)
    assert month_filled(bench.load(bench[0]).composite["s1"].values) == []
    split = tmp_path / "test.csv"
    split.write_text("S2A_MSIL2A_20170617T113321_4_55,S1A_x\nS2A_not_here,S1A_y\n")
    assert [s.id for s in BigEarthNet(root, split=split)] == ["S2A_MSIL2A_20170617T113321_4_55"]


def test_bigearthnet_synthetic_pairs_months_and_unlabelled(tmp_path: Path, eval_data: Any) -> None:
    root = eval_data.make_bigearthnet(tmp_path, size=12, with_s1=[0, 2])
    bench = BigEarthNet(root / "s2", s1_root=root / "s1")
    assert len(bench) == 6 and bench.settings()["patches_without_19_class_label"] == 1
    assert bench.settings()["samples_with_s1"] == 2
    by_id = {s.id: s for s in bench}
    data = bench.load(by_id[eval_data.ben_names(1)[0]])  # December, no S1 partner
    assert (
        month_filled(data.composite["s2"].values) == [12] and month_filled(data.composite["s1"].values) == []
    )
    assert np.all(data.composite["s2"].isel(time=11).values == eval_data.patch_code(1))
    data = bench.load(by_id[eval_data.ben_names(2)[0]])  # March 2018 with S1
    assert month_filled(data.composite["s1"].values) == [3]
    assert str(data.composite["time"].values[0])[:4] == "2018"


# --- LUCAS -----------------------------------------------------------------------------------------------


def test_lucas_sample_lc1_and_coordinates() -> None:
    root = shared("lucas-sample")
    bench = Lucas(root)
    assert bench.classes == tuple("ABCDEFGH") and bench.class_names[3] == "D Shrubland"
    [sample] = bench.samples
    assert sample.id == "31603628_2018" and bench.classes[sample.labels[0]] == "D"  # lc1 D10
    assert sample.location == pytest.approx((-8.108423, 54.43857))  # th_long is signed
    gps = Lucas(root / "metadata_2018.csv", coordinates="gps")
    assert gps[0].location == pytest.approx((-8.108829, 54.43836))  # gps_long 8.108829 with gps_ew West


def test_gps_convention() -> None:
    frame = pd.DataFrame(
        {
            "gps_lat": [50.0, 50.0, 50.0, 88.888888, 50.0],
            "gps_long": [5.0, 5.0, -5.0, 5.0, 5.0],
            "gps_ew": ["East", "West", "West", "East", "8"],
        }
    )
    lon, lat = gps_lonlat(frame)
    np.testing.assert_array_equal(lon[:3], [5.0, -5.0, -5.0])
    assert np.isnan(lon[3]) and np.isnan(lon[4]) and lat[0] == 50.0


def test_lucas_skips_other_codes_and_falls_back_to_th(tmp_path: Path, eval_data: Any) -> None:
    rows = [
        {"point_id": 1, "th_lat": 45.0, "th_long": 9.0, "lc1": "B11", "gps_lat": 45.001, "gps_long": 9.001},
        {"point_id": 2, "th_lat": 45.0, "th_long": 9.0, "lc1": "8"},
        {"point_id": 3, "th_lat": 45.0, "th_long": -2.0, "lc1": "g21"},
    ]
    path = eval_data.make_lucas(tmp_path / "lucas" / "metadata_2018.csv", rows)
    bench = Lucas(path.parent, coordinates="gps")
    assert [(s.id, bench.classes[s.labels[0]]) for s in bench] == [("1_2018", "B"), ("3_2018", "G")]
    assert bench.settings()["rows_skipped"]["lc1_not_a_class"] == 1
    assert bench.settings()["gps_fallbacks_to_th"] == 1  # point 3 has a placeholder fix
    np.testing.assert_allclose(bench.lonlat(), [[9.001, 45.001], [-2.0, 45.0]])
    (tmp_path / "bad.csv").write_text("point_id,lat\n1,2\n")
    with pytest.raises(BadInputError, match="lacks LUCAS column"):
        Lucas(tmp_path / "bad.csv")


# --- subsets ---------------------------------------------------------------------------------------------


def test_stratified_indices_are_proportional_and_deterministic() -> None:
    strata = np.repeat([0, 1, 2], [60, 30, 10])
    chosen = stratified_indices(strata, 10, seed=0)
    assert np.bincount(strata[chosen]).tolist() == [6, 3, 1]
    np.testing.assert_array_equal(chosen, stratified_indices(strata, 10, seed=0))
    assert not np.array_equal(chosen, stratified_indices(strata, 10, seed=1))
    rare = np.repeat([0, 1, 2], [97, 2, 1])
    assert np.bincount(rare[stratified_indices(rare, 3, seed=0)]).tolist() == [1, 1, 1]


def test_limit_keeps_order_and_counts(tmp_path: Path, eval_data: Any) -> None:
    bench = EuroSAT(eval_data.make_eurosat_ms(tmp_path, per_class=3, size=4))
    subset = bench.limit(10, seed=0)
    assert len(subset) == 10 and len(bench) == 30 and subset.available == 30
    assert subset.label_matrix().sum(axis=0).tolist() == [1] * 10
    ids = [s.id for s in bench]
    assert [ids.index(s.id) for s in subset] == sorted(ids.index(s.id) for s in subset)
    assert bench.limit(None) is not bench and len(bench.limit(100)) == 30
    with pytest.raises(BadInputError, match="positive"):
        bench.limit(0)


def test_open_benchmark_errors(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match=r"unknown benchmark 'eurosatt'.*Did you mean 'eurosat'"):
        open_benchmark("eurosatt", tmp_path)
    with pytest.raises(BadInputError, match="bigearthnet takes no option month"):
        open_benchmark("bigearthnet", tmp_path, month=3)
    with pytest.raises(BadInputError, match="no BigEarthNet Sentinel-2 patch"):
        open_benchmark("bigearthnet", tmp_path)
