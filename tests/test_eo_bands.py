from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from landprompt.eo.bands import (
    BANDS,
    S1_BAND_NAMES,
    S2_BAND_NAMES,
    S2_BANDS,
    band_spec,
    band_specs,
    db_to_linear,
    detect_provider,
    harmonize_s2,
    linear_to_db,
    normalize,
    s2_boa_offset,
)
from landprompt.errors import BadInputError


def test_s2_band_specs_follow_the_sample_store_order():
    assert S2_BAND_NAMES == ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
    assert S1_BAND_NAMES == ("VV", "VH")
    assert {b.name for b in S2_BANDS if b.resolution == 10} == {"B2", "B3", "B4", "B8"}
    assert all(b.resolution == 20 for b in S2_BANDS if b.name not in {"B2", "B3", "B4", "B8"})
    wavelengths = [b.wavelength_nm for b in S2_BANDS]
    assert wavelengths == sorted(wavelengths)  # type: ignore[type-var]
    assert band_spec("VV").wavelength_nm is None and band_spec("VV").units == "dB"


@pytest.mark.parametrize(
    ("band", "pc", "es"),
    [("B2", "B02", "blue"), ("B8A", "B8A", "nir08"), ("B11", "B11", "swir16"), ("B12", "B12", "swir22")],
)
def test_asset_keys_per_provider(band, pc, es):
    spec = band_spec(band)
    assert spec.asset("planetary-computer") == pc
    assert spec.asset("earth-search") == es


def test_band_lookup_accepts_variants_and_names_known_bands_on_error():
    assert band_spec("b02") is BANDS["B2"]
    assert band_spec("vh").name == "VH"
    with pytest.raises(BadInputError, match=r"unknown band 'B13': known bands are B2, B3.*B12, VV, VH"):
        band_spec("B13")
    with pytest.raises(BadInputError, match="not S2 bands"):
        band_specs(["B2", "VV"], sensor="s2")


def test_detect_provider():
    assert detect_provider(["B02", "SCL", "visual"]) == "planetary-computer"
    assert detect_provider(["blue", "scl", "thumbnail"]) == "earth-search"
    assert detect_provider(["vv", "vh"]) == "planetary-computer"


@pytest.mark.parametrize(
    ("properties", "offset"),
    [
        ({"s2:processing_baseline": "03.01"}, 0.0),
        ({"s2:processing_baseline": "04.00"}, -1000.0),
        ({"s2:processing_baseline": "05.11"}, -1000.0),
        ({"s2:processing_baseline": "04.00", "earthsearch:boa_offset_applied": True}, 0.0),
        ({"s2:processing_baseline": "04.00", "earthsearch:boa_offset_applied": False}, -1000.0),
        ({"sentinel:processing_baseline": "04.00", "sentinel:boa_offset_applied": True}, 0.0),
        ({"sentinel:processing_baseline": "04.00"}, -1000.0),
        ({}, 0.0),
    ],
)
def test_s2_boa_offset_rule(properties, offset):
    assert s2_boa_offset(properties) == offset


def test_s2_boa_offset_rejects_garbage():
    with pytest.raises(BadInputError, match="processing baseline"):
        s2_boa_offset({"s2:processing_baseline": "new"})


def test_harmonize_s2_removes_offset_and_keeps_nodata():
    dn = xr.DataArray(np.array([0, 500, 1000, 1001, 3000], dtype=np.uint16))
    out = harmonize_s2(dn, -1000.0)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out.values, [np.nan, 1, 1, 1, 2000])
    np.testing.assert_array_equal(harmonize_s2(dn, 0.0).values, [np.nan, 500, 1000, 1001, 3000])


def test_linear_to_db():
    linear = np.array([1.0, 0.1, 0.01, 0.0, -32768.0, np.nan], dtype=np.float32)
    db = linear_to_db(linear)
    assert db.dtype == np.float32
    np.testing.assert_allclose(db[:3], [0.0, -10.0, -20.0], atol=1e-5)
    assert np.isnan(db[3:]).all()
    np.testing.assert_allclose(db_to_linear(db[:3]), linear[:3], rtol=1e-6)
    da = linear_to_db(xr.DataArray(linear, dims="x"))
    np.testing.assert_array_equal(da.values, db)
    assert linear_to_db(np.array([10], dtype=np.uint16)).dtype == np.float32


def test_normalize_is_presto_shift_div():
    values = np.array([[-25.0, 0.0, 10_000.0, 5_000.0]], dtype=np.float32)
    out = normalize(values, ["VV", "VH", "B2", "B12"])
    np.testing.assert_allclose(out, [[0.0, 1.0, 1.0, 0.5]])
    assert out.dtype == np.float32
    da = xr.DataArray(
        values[0].reshape(1, 4), dims=("time", "s2_band"), coords={"s2_band": ["VV", "VH", "B2", "B12"]}
    )
    np.testing.assert_allclose(normalize(da).values, [[0.0, 1.0, 1.0, 0.5]])
    ds = xr.Dataset({"B4": ("x", np.array([2_000], dtype=np.uint16)), "VH": ("x", [-20.0])})
    normed = normalize(ds)
    assert float(normed["B4"][0]) == pytest.approx(0.2) and float(normed["VH"][0]) == pytest.approx(0.2)
    with pytest.raises(BadInputError, match="band names"):
        normalize(values)
    with pytest.raises(BadInputError, match="3 bands"):
        normalize(values, ["VV", "VH", "B2"])


def test_normalize_matches_the_official_presto_reference():
    reference = Path(__file__).parents[1].parent / "shared" / "data" / "presto" / "reference_small.npz"
    if not reference.is_file():
        pytest.skip(f"shared sample data not found at {reference} (see ../shared/data/README.md)")
    data = np.load(reference)
    raw, normalized = data["raw"], data["normalized"]  # raw: VV, VH, B2..B8A, B9, B11, B12, ...
    np.testing.assert_allclose(normalize(raw[..., :2], S1_BAND_NAMES), normalized[..., :2], atol=1e-6)
    s2 = np.delete(raw[..., 2:13], 8, axis=-1)  # Presto drops B9
    np.testing.assert_allclose(normalize(s2, S2_BAND_NAMES), normalized[..., 2:12], atol=1e-6)
