from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch
import xarray as xr
from affine import Affine
from PIL import Image
from pyproj import CRS
from safetensors import safe_open

from landprompt.embedder.models import (
    checkpoint_hash,
    create_encoder,
    list_encoders,
    load_checkpoint,
    load_encoder,
    register_encoder,
    save_checkpoint,
)
from landprompt.embedder.models import registry as registry_module
from landprompt.embedder.models.base import S1_BANDS, S2_BANDS, box_mean
from landprompt.embedder.models.clip_rgb import ClipRgbEncoder
from landprompt.embedder.models.presto import PrestoEncoder, load_presto_encoder
from landprompt.embedder.models.sits import SitsEncoder, presto_inputs, series_from_composite
from landprompt.errors import BadInputError
from landprompt.geo import Grid

if TYPE_CHECKING:
    from landprompt.embedder.clip import ClipModel

PRESTO = Path(__file__).parents[1].parent / "shared" / "data" / "presto"
CLIP_DIM = 32  # the tiny CLIP's width
MONTHS = np.arange("2021-01", "2022-01", dtype="datetime64[M]").astype("datetime64[ns]")


def make_composite(height: int = 8, width: int = 8, seed: int = 0) -> xr.Dataset:
    """A composite chunk in the landprompt.eo layout, with clouds, a missing S1 month and one empty pixel."""
    rng = np.random.default_rng(seed)
    s2 = rng.uniform(100, 4000, (12, 10, height, width)).astype(np.float32)
    s1 = rng.uniform(-25, -5, (12, 2, height, width)).astype(np.float32)
    s2[[0, 1, 11]] = np.nan  # cloudy winter
    s2[5, :, 2:5, 3:6] = np.nan  # a cloud
    s1[3] = np.nan  # no acquisition
    s2[:, :, 0, 0] = s1[:, :, 0, 0] = np.nan  # no observation at all
    return xr.Dataset(
        {
            "s2": (("time", "s2_band", "y", "x"), s2),
            "s1": (("time", "s1_band", "y", "x"), s1),
        },
        coords={
            "time": MONTHS,
            "s2_band": list(S2_BANDS),
            "s1_band": list(S1_BANDS),
            "y": 5e6 - 10 * np.arange(height),
            "x": 5e5 + 10 * np.arange(width),
        },
    )


def make_latlon(height: int = 8, width: int = 8) -> np.ndarray:
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return np.stack([45.0 - 1e-4 * rows, 11.0 + 1e-4 * cols], axis=-1)


@pytest.fixture(scope="module")
def sits() -> SitsEncoder:
    torch.manual_seed(0)
    encoder = create_encoder("sits", clip_dim=CLIP_DIM, pool_size=3).eval()
    assert isinstance(encoder, SitsEncoder)
    return encoder


@pytest.fixture(scope="module")
def clip_rgb() -> ClipRgbEncoder:
    encoder = create_encoder("clip_rgb", clip_model="landprompt-tiny", clip_pretrained=None)
    assert isinstance(encoder, ClipRgbEncoder)
    return encoder


# --- registry ----------------------------------------------------------------------------------------


def test_registry_lists_and_filters() -> None:
    assert {"sits", "clip_rgb"} <= set(list_encoders())
    assert list_encoders("sit*") == ["sits"]


def test_unknown_name_lists_the_registered_ones() -> None:
    with pytest.raises(BadInputError, match=r"unknown encoder 'sitz'.*clip_rgb, sits.*Did you mean 'sits'"):
        create_encoder("sitz")


def test_unknown_argument_is_a_bad_input() -> None:
    with pytest.raises(BadInputError, match="clip_dimension"):
        create_encoder("sits", clip_dimension=32)


def test_create_records_name_arguments_and_spec() -> None:
    encoder = create_encoder("sits", clip_dim=16, head="mlp", pool_size=5, clip_model="ViT-B-32")
    assert encoder.registry_name == "sits"
    assert encoder.arguments is not None
    assert encoder.arguments["clip_dim"] == 16 and encoder.arguments["depth"] == 2
    assert "pretrained" not in encoder.arguments
    spec = encoder.spec
    assert (spec.input_kind, spec.embed_dim, spec.output_stride, spec.window) == (
        "pixel_timeseries",
        16,
        1,
        5,
    )
    assert spec.bands == S1_BANDS + S2_BANDS and spec.clip_model == "ViT-B-32"
    assert spec.normalization["VV"] == {"shift": 25.0, "div": 25.0}
    json.dumps(spec.to_dict())
    with pytest.raises(BadInputError, match="odd"):
        create_encoder("sits", pool_size=4)


def test_register_a_custom_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))

    @register_encoder("sits_small")
    def sits_small(pool_size: int = 1, pretrained: bool = True) -> SitsEncoder:
        return SitsEncoder(PrestoEncoder(embed_dim=32, depth=1, num_heads=2), torch.nn.Linear(32, 8))

    assert "sits_small" in list_encoders()
    assert create_encoder("sits_small").spec.embed_dim == 8
    with pytest.raises(ValueError, match="already registered"):
        register_encoder("sits_small")(registry_module.encoder_factory("sits"))

    def no_flag() -> SitsEncoder:
        return sits_small()

    with pytest.raises(ValueError, match="pretrained"):
        register_encoder("no_flag")(no_flag)


# --- sits ----------------------------------------------------------------------------------------------


def reference_composite(ref: dict[str, np.ndarray]) -> xr.Dataset:
    """The 16 reference series as a 4 x 4 composite (raw: VV VH B2..B8A B9 B11 B12 T P elevation slope)."""
    raw = ref["raw"].reshape(4, 4, 12, 18).transpose(2, 3, 0, 1).astype(np.float32)  # [time, band, y, x]
    return xr.Dataset(  # band dims without labels: bands in the documented order
        {
            "s1": (("time", "s1_band", "y", "x"), raw[:, 0:2]),
            "s2": (("time", "s2_band", "y", "x"), raw[:, [2, 3, 4, 5, 6, 7, 8, 9, 11, 12]]),
            "era5": (("time", "era5_band", "y", "x"), raw[:, 13:15]),
            "srtm": (("srtm_band", "y", "x"), raw[0, 15:17]),
        },
        coords={"time": MONTHS},
    )


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    if not PRESTO.is_dir():
        pytest.skip(f"shared sample data not found at {PRESTO} (see ../shared/data/README.md)")
    with np.load(PRESTO / "reference_small.npz") as npz:
        return {key: npz[key] for key in npz.files}


def test_inputs_match_presto_normalisation(reference: dict[str, np.ndarray]) -> None:
    series = series_from_composite(reference_composite(reference), reference["latlon"].reshape(4, 4, 2))
    expected = reference["normalized"].reshape(4, 4, 12, 17)
    np.testing.assert_allclose(series.x, expected, atol=2e-6)
    assert not series.mask.any()
    np.testing.assert_array_equal(series.month, np.arange(12))


def test_absent_sources_and_nan_are_masked() -> None:
    series = series_from_composite(make_composite())
    assert series.x.shape == (8, 8, 12, 17) and series.x.dtype == np.float32
    assert np.isfinite(series.x).all()
    assert series.mask[..., 12:16].all()  # ERA5, SRTM not given
    assert series.mask[2, 3, 5, 2:12].all() and not series.mask[2, 3, 5, :2].any()  # cloud: S2 only
    assert series.mask[..., 3, :2].all()  # no S1 that month
    np.testing.assert_array_equal(series.mask[..., 16], series.mask[..., 4] | series.mask[..., 8])  # NDVI
    assert series.valid.sum() == 63 and not series.valid[0, 0]
    shuffled = (
        make_composite().isel(s2_band=slice(None, None, -1)).transpose("y", "x", "s2_band", "time", ...)
    )
    np.testing.assert_array_equal(series_from_composite(shuffled).x, series.x)  # bands picked by label
    x, _ = presto_inputs(s2=np.full((1, 10), 1000.0), s1=np.full((1, 2), -25.0))
    assert x[0, 4] == pytest.approx(0.1) and x[0, 0] == 0.0 and x[0, 16] == 0.0


def test_sits_dense_embeddings(sits: SitsEncoder) -> None:
    embeddings, valid = sits.embed_dense(make_composite(), make_latlon(), batch_size=16)
    assert embeddings.shape == (8, 8, CLIP_DIM) and embeddings.dtype == np.float32
    assert valid.shape == (8, 8) and valid.dtype == bool
    assert np.isfinite(embeddings).all()
    assert not valid[0, 0] and valid.sum() == 63
    np.testing.assert_array_equal(embeddings[0, 0], 0.0)
    np.testing.assert_allclose(np.linalg.norm(embeddings[valid], axis=-1), 1.0, atol=1e-5)
    again, _ = sits.embed_dense(make_composite(), make_latlon(), batch_size=64)
    np.testing.assert_allclose(again, embeddings, atol=1e-6)


def window(series: Any, rows: slice, cols: slice) -> dict[str, Any]:
    """forward_window inputs of one window of a PixelSeries."""
    x, mask = series.x[rows, cols], series.mask[rows, cols]
    n = x.shape[0] * x.shape[1]
    return {
        "x": torch.from_numpy(x).reshape(1, n, 12, 17),
        "mask": torch.from_numpy(mask).reshape(1, n, 12, 17),
        "latlon": torch.as_tensor(series.latlon[rows, cols], dtype=torch.float32).reshape(1, n, 2),
        "month": torch.from_numpy(series.month)[None],
    }


@pytest.mark.parametrize(
    ("pixel", "rows", "cols"),
    [
        ((1, 1), slice(0, 3), slice(0, 3)),  # interior; its window holds the empty pixel
        ((3, 4), slice(2, 5), slice(3, 6)),  # interior, under the cloud
        ((0, 5), slice(0, 2), slice(4, 7)),  # top edge: the window is clipped to the map
    ],
)
def test_box_filter_equals_forward_window(
    sits: SitsEncoder, pixel: tuple[int, int], rows: slice, cols: slice
) -> None:
    composite, latlon = make_composite(), make_latlon()
    embeddings, _ = sits.embed_dense(composite, latlon)
    with torch.inference_mode():
        expected = sits.forward_window(**window(series_from_composite(composite, latlon), rows, cols))
    np.testing.assert_allclose(embeddings[pixel], expected[0].numpy(), atol=1e-5)


def test_box_mean_skips_zero_weights_and_padding() -> None:
    features = torch.arange(12, dtype=torch.float32).reshape(3, 4, 1)
    weights = torch.ones(3, 4, dtype=torch.bool)
    weights[1, 1] = False
    pooled = box_mean(features, weights, 3)
    assert pooled[0, 0, 0] == pytest.approx((0 + 1 + 4) / 3)
    assert pooled[1, 1, 0] == pytest.approx((0 + 1 + 2 + 4 + 6 + 8 + 9 + 10) / 8)


def test_presto_weights_reuse_the_presto_encoder(reference: dict[str, np.ndarray]) -> None:
    weights = PRESTO / "default_model.pt"
    encoder = create_encoder("sits", presto_weights=weights, clip_dim=CLIP_DIM).eval()
    presto = load_presto_encoder(weights)
    assert isinstance(encoder, SitsEncoder) and type(encoder.backbone) is PrestoEncoder
    series = series_from_composite(reference_composite(reference), reference["latlon"].reshape(4, 4, 2))
    inputs = {
        "x": torch.from_numpy(series.x.reshape(16, 12, 17)),
        "mask": torch.from_numpy(series.mask.reshape(16, 12, 17) | (reference["mask"] > 0)),
        "dynamic_world": torch.from_numpy(reference["dynamic_world"]),
        "latlon": torch.from_numpy(reference["latlon"]),
        "month": torch.from_numpy(reference["month"]),
    }
    with torch.inference_mode():
        features = encoder.pixel_features(**inputs)
        torch.testing.assert_close(features, presto(**inputs), atol=0, rtol=0)
        torch.testing.assert_close(features, torch.from_numpy(reference["embedding"]), atol=1e-4, rtol=0)
    with pytest.raises(BadInputError, match="Presto backbone"):
        create_encoder("sits", presto_weights=weights, depth=4)


# --- clip_rgb ------------------------------------------------------------------------------------------


def test_clip_rgb_dense_embeddings(clip_rgb: ClipRgbEncoder, tiny_clip: ClipModel) -> None:
    composite = make_composite(40, 48, seed=1)  # 16-pixel patches: 3 x 3, the last row half outside
    composite["s2"][:, :, 16:32, 32:48] = np.nan  # patch (1, 2): no S2 at all
    composite["s2"][:, :, 0:7, 16:32] = np.nan  # patch (0, 1): 7/16 invalid, still valid
    embeddings, valid = clip_rgb.embed_dense(composite)
    assert embeddings.shape == (3, 3, CLIP_DIM) and valid.shape == (3, 3)
    assert valid.tolist() == [[True, True, True], [True, True, False], [True, True, True]]
    np.testing.assert_array_equal(embeddings[1, 2], 0.0)
    np.testing.assert_allclose(np.linalg.norm(embeddings[valid], axis=-1), 1.0, atol=1e-5)

    reflectance = composite["s2"].sel(s2_band=["B4", "B3", "B2"]).values[:, :, 16:32, 0:16]  # patch (1, 0)
    median = np.nanmedian(reflectance, axis=0).transpose(1, 2, 0)
    rgb = np.round(255 * np.clip(median / 3000, 0, 1)).astype(np.uint8)
    expected = tiny_clip.encode_images([Image.fromarray(rgb)])[0]
    np.testing.assert_allclose(embeddings[1, 0], expected, atol=1e-5)


def test_clip_rgb_output_grid(clip_rgb: ClipRgbEncoder) -> None:
    grid = Grid(CRS.from_epsg(32632), Affine(10, 0, 500_000, 0, -10, 5_000_000), (40, 48))
    coarse = clip_rgb.output_grid(grid)
    assert coarse.shape == (3, 3) == clip_rgb.output_shape(40, 48)
    assert coarse.resolution == (160, 160) and coarse.bounds[0] == 500_000 and coarse.bounds[3] == 5_000_000
    assert clip_rgb.spec.output_stride == 16 and clip_rgb.spec.input_kind == "rgb_composite"


# --- checkpoints ---------------------------------------------------------------------------------------


def test_sits_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    encoder = create_encoder("sits", clip_dim=CLIP_DIM, head="mlp", pool_size=3, clip_model="landprompt-tiny")
    config_path = save_checkpoint(encoder, tmp_path, config={"lr": 1e-4}, provenance={"pairs": "test"})
    weights = tmp_path / "sits.safetensors"
    assert config_path == tmp_path / "sits.json" and weights.is_file()
    document = json.loads(config_path.read_text())
    assert document["encoder"] == "sits" and document["embed_dim"] == CLIP_DIM
    assert document["clip"] == {"model": "landprompt-tiny", "pretrained": None}
    assert document["spec"]["bands"] == list(S1_BANDS + S2_BANDS)
    assert document["weights"]["sha256"] == checkpoint_hash(weights)
    assert document["provenance"] == {"pairs": "test"} and document["config"] == {"lr": 1e-4}
    with safe_open(str(weights), framework="pt") as f:  # a safetensors file, self-describing
        assert f.metadata()["landprompt_encoder"] == "sits"

    loaded = load_checkpoint(config_path, device="cpu")
    assert loaded.checkpoint == {"path": str(config_path), "sha256": checkpoint_hash(weights)}
    assert loaded.describe()["model"] == f"sits:{checkpoint_hash(weights)[:12]}"
    composite, latlon = make_composite(), make_latlon()
    expected = encoder.eval().embed_dense(composite, latlon)
    for other in (loaded, load_encoder(tmp_path / "sits", device="cpu")):
        actual = other.embed_dense(composite, latlon)
        np.testing.assert_array_equal(actual[0], expected[0])
        np.testing.assert_array_equal(actual[1], expected[1])


def test_clip_rgb_checkpoint_round_trip(clip_rgb: ClipRgbEncoder, tmp_path: Path) -> None:
    save_checkpoint(clip_rgb, tmp_path / "baseline")
    loaded = load_checkpoint(tmp_path / "baseline.safetensors", device="cpu")
    assert isinstance(loaded, ClipRgbEncoder) and loaded.spec == clip_rgb.spec
    composite = make_composite(32, 32, seed=2)
    np.testing.assert_array_equal(loaded.embed_dense(composite)[0], clip_rgb.embed_dense(composite)[0])


def test_loading_never_unpickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_checkpoint(create_encoder("sits", clip_dim=8), tmp_path / "model")
    assert (tmp_path / "model.safetensors").read_bytes()[8:9] == b"{"  # safetensors: u64 length + JSON header

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    assert load_checkpoint(path, device="cpu").spec.embed_dim == 8


def edit_json(path: Path, **changes: Any) -> None:
    document = json.loads(path.read_text())
    for key, value in changes.items():
        if key == "arguments":
            document["arguments"].update(value)
        else:
            document[key] = value
    path.write_text(json.dumps(document))


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return save_checkpoint(create_encoder("sits", clip_dim=8), tmp_path / "model")


def test_checkpoint_naming_an_unknown_model(saved: Path) -> None:
    edit_json(saved, encoder="presto_xl")
    with pytest.raises(BadInputError, match=r"unknown encoder 'presto_xl'.*clip_rgb, sits"):
        load_checkpoint(saved, device="cpu")


def test_checkpoint_naming_another_model(saved: Path) -> None:
    edit_json(saved, encoder="clip_rgb")
    with pytest.raises(BadInputError, match=r"encoder 'clip_rgb'.*clip_dim"):
        load_checkpoint(saved, device="cpu")


def test_checkpoint_of_another_shape(saved: Path) -> None:
    edit_json(saved, arguments={"clip_dim": 16})
    with pytest.raises(
        BadInputError, match=r"checkpoint of another model.*head\.0\.weight \(8, 128\) != \(16, 128\)"
    ):
        load_checkpoint(saved, device="cpu")


def test_checkpoint_with_swapped_weights(saved: Path, tmp_path: Path) -> None:
    other = save_checkpoint(create_encoder("sits", clip_dim=16), tmp_path / "other")
    other.with_suffix(".safetensors").replace(saved.with_suffix(".safetensors"))
    with pytest.raises(BadInputError, match="sha256"):
        load_checkpoint(saved, device="cpu")


def test_checkpoint_with_pickled_weights(saved: Path) -> None:
    weights = saved.with_suffix(".safetensors")
    torch.save({"head.0.weight": torch.zeros(8, 128)}, weights)
    edit_json(saved, weights={"file": weights.name, "sha256": checkpoint_hash(weights)})
    with pytest.raises(BadInputError, match="not a safetensors"):
        load_checkpoint(saved, device="cpu")


def test_load_encoder_by_name_and_unknown(tmp_path: Path) -> None:
    encoder = load_encoder("sits", device="cpu", clip_dim=8)
    assert isinstance(encoder, SitsEncoder) and not encoder.training
    with pytest.raises(BadInputError, match="neither a registered encoder"):
        load_encoder(str(tmp_path / "missing"))


def test_save_needs_a_registered_encoder(tmp_path: Path) -> None:
    bare = SitsEncoder(PrestoEncoder(), torch.nn.Linear(128, 8))
    with pytest.raises(BadInputError, match="create_encoder"):
        save_checkpoint(bare, tmp_path)
