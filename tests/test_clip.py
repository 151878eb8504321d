from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from landprompt.embedder.clip import TINY_MODEL, ClipModel, load_clip
from landprompt.embedder.prompts import TEMPLATES, expand, get_templates
from landprompt.errors import BadInputError, MissingWeightsError

TEXTS = ["a forest", "a lake", "olive groves on a hillside", "a motorway junction", "vineyards", "snow"]
CLASSES = ["forest", "water", "cropland"]


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 256, (64, 32), dtype=np.uint8)),  # grayscale, portrait
        Image.fromarray(rng.integers(0, 256, (32, 32, 4), dtype=np.uint8)),  # RGBA
        Image.new("RGB", (300, 200), (30, 120, 40)),
    ]


def _sha12(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def _assert_unit_rows(x: np.ndarray) -> None:
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-6)


# --- tiny model --------------------------------------------------------------------------------------


def test_tiny_text_embeddings(tiny_clip: ClipModel) -> None:
    emb = tiny_clip.encode_text(TEXTS)
    assert emb.shape == (len(TEXTS), 32) and emb.dtype == np.float32
    _assert_unit_rows(emb)
    assert tiny_clip.embed_dim == 32
    # different texts, different embeddings; the same text twice, the same embedding
    assert np.abs(emb[0] - emb[1]).max() > 1e-3
    np.testing.assert_array_equal(tiny_clip.encode_text(TEXTS[:1]), tiny_clip.encode_text(TEXTS[:1]))


def test_tiny_image_embeddings(tiny_clip: ClipModel) -> None:
    emb = tiny_clip.encode_images(_images())
    assert emb.shape == (4, 32) and emb.dtype == np.float32
    _assert_unit_rows(emb)
    assert np.abs(emb[0] - emb[3]).max() > 1e-3


def test_batching_does_not_change_embeddings(tiny_clip: ClipModel) -> None:
    np.testing.assert_allclose(
        tiny_clip.encode_text(TEXTS, batch_size=1), tiny_clip.encode_text(TEXTS), atol=1e-5
    )
    np.testing.assert_allclose(
        tiny_clip.encode_images(_images(), batch_size=1), tiny_clip.encode_images(_images()), atol=1e-5
    )
    np.testing.assert_allclose(
        tiny_clip.encode_text(TEXTS, batch_size=4), tiny_clip.encode_text(TEXTS), atol=1e-5
    )


def test_empty_inputs_give_empty_arrays(tiny_clip: ClipModel) -> None:
    for emb in (tiny_clip.encode_text([]), tiny_clip.encode_images([]), tiny_clip.encode_prompts([], ["{}"])):
        assert emb.shape == (0, 32) and emb.dtype == np.float32


def test_random_init_provenance_and_logit_scale(tiny_clip: ClipModel) -> None:
    assert tiny_clip.is_random and tiny_clip.pretrained is None
    assert tiny_clip.id == "landprompt-tiny/random(0)"
    assert tiny_clip.logit_scale == pytest.approx(1 / 0.07, rel=1e-6)
    info = tiny_clip.describe()
    assert info["id"] == tiny_clip.id and info["embed_dim"] == 32 and info["is_random"] is True


def test_random_init_is_seeded_and_leaves_global_rng_alone(tiny_clip: ClipModel) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(99)
        state = torch.random.get_rng_state()
        again = load_clip(TINY_MODEL, device="cpu")
        assert torch.equal(state, torch.random.get_rng_state())
    np.testing.assert_array_equal(again.encode_text(TEXTS), tiny_clip.encode_text(TEXTS))
    np.testing.assert_array_equal(again.encode_images(_images()), tiny_clip.encode_images(_images()))
    other = load_clip(TINY_MODEL, device="cpu", seed=1)
    assert other.id == "landprompt-tiny/random(1)"
    assert np.abs(other.encode_text(TEXTS) - tiny_clip.encode_text(TEXTS)).max() > 1e-3


def test_encode_prompts_is_renormalised_template_mean(tiny_clip: ClipModel) -> None:
    templates = get_templates("satellite")
    got = tiny_clip.encode_prompts(CLASSES, templates)
    assert got.shape == (3, 32) and got.dtype == np.float32
    _assert_unit_rows(got)
    mean = np.stack([tiny_clip.encode_text([t.format(c) for t in templates]).mean(axis=0) for c in CLASSES])
    np.testing.assert_allclose(got, mean / np.linalg.norm(mean, axis=1, keepdims=True), atol=1e-5)
    # the ensemble is not just one of its prompts
    assert np.abs(got[0] - tiny_clip.encode_text([templates[0].format(CLASSES[0])])[0]).max() > 1e-4
    # the default template is the bare class name
    np.testing.assert_allclose(tiny_clip.encode_prompts(CLASSES), tiny_clip.encode_text(CLASSES), atol=1e-6)


@dataclass
class _NotATensor:
    payload: str = "anything torch.load(weights_only=True) must refuse to unpickle"


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_tiny_weights_file_round_trip(tmp_path: Path, tiny_clip: ClipModel, suffix: str) -> None:
    source = load_clip(TINY_MODEL, device="cpu", seed=7)
    path = tmp_path / f"tiny{suffix}"
    state = source.model.state_dict()
    if suffix == ".safetensors":
        save_file(state, path)
    else:
        torch.save(state, path)

    loaded = load_clip(TINY_MODEL, pretrained=path, device="cpu")  # seeded with 0, then overwritten
    assert not loaded.is_random and loaded.pretrained == str(path)
    assert loaded.id == f"landprompt-tiny/file:{_sha12(path)}"
    np.testing.assert_array_equal(loaded.encode_text(TEXTS), source.encode_text(TEXTS))
    np.testing.assert_array_equal(loaded.encode_images(_images()), source.encode_images(_images()))
    assert np.abs(loaded.encode_text(TEXTS) - tiny_clip.encode_text(TEXTS)).max() > 1e-3
    assert load_clip(TINY_MODEL, pretrained=str(path), device="cpu").id == loaded.id


def test_pickled_objects_are_never_unpickled(tmp_path: Path, tiny_clip: ClipModel) -> None:
    path = tmp_path / "checkpoint.pt"
    torch.save({"state_dict": tiny_clip.model.state_dict(), "extra": _NotATensor()}, path)
    with pytest.raises(BadInputError, match="cannot load weights file"):
        load_clip(TINY_MODEL, pretrained=path, device="cpu")


def test_weights_of_another_architecture(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_file({"not_a_clip_weight": torch.zeros(3)}, path)
    with pytest.raises(BadInputError, match=r"cannot load weights file .* into landprompt-tiny"):
        load_clip(TINY_MODEL, pretrained=path, device="cpu")


# --- errors ------------------------------------------------------------------------------------------


def test_unknown_model_name() -> None:
    with pytest.raises(BadInputError, match=r"open_clip\.list_models\(\)") as info:
        load_clip("ViT-B-33", device="cpu")
    assert "ViT-B-32" in str(info.value)  # close matches are suggested


def test_unknown_tag_lists_valid_tags() -> None:
    with pytest.raises(BadInputError, match="unknown pretrained tag 'laion5b_made_up'") as info:
        load_clip("ViT-B-32", pretrained="laion5b_made_up", device="cpu")
    assert "laion2b_s34b_b79k" in str(info.value) and "openai" in str(info.value)
    with pytest.raises(BadInputError, match="no pretrained tags"):
        load_clip(TINY_MODEL, pretrained="openai", device="cpu")


def test_offline_missing_tag_names_what_to_download(hub_offline: Path) -> None:
    with pytest.raises(MissingWeightsError) as info:
        load_clip("ViT-B-32", pretrained="laion2b_s34b_b79k", device="cpu", cache_dir=hub_offline)
    msg = str(info.value)
    assert "ViT-B-32/laion2b_s34b_b79k" in msg
    assert "https://huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in msg
    assert "--pretrained /path/to/file" in msg and "\n" not in msg
    assert not list(hub_offline.rglob("*.safetensors"))


def test_offline_missing_quickgelu_tag_says_which_model_name(hub_offline: Path) -> None:
    with pytest.raises(MissingWeightsError) as info:
        load_clip("ViT-B-32", pretrained="openai", device="cpu")  # default cache, patched to be empty
    msg = str(info.value)
    assert "timm/vit_base_patch32_clip_224.openai" in msg and "ViT-B-32-quickgelu" in msg


def test_offline_missing_hub_repo(hub_offline: Path) -> None:
    with pytest.raises(MissingWeightsError, match="local-dir:/path/to/folder") as info:
        load_clip("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", device="cpu")
    assert "https://huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in str(info.value)
    with pytest.raises(BadInputError, match="leave pretrained unset"):
        load_clip("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", pretrained="openai")


def test_missing_weights_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(MissingWeightsError, match=r"weights file not found: .*nope\.safetensors"):
        load_clip(TINY_MODEL, pretrained=missing, device="cpu")
    with pytest.raises(MissingWeightsError):
        load_clip(TINY_MODEL, pretrained=str(missing), device="cpu")
    with pytest.raises(BadInputError, match="got a directory"):
        load_clip(TINY_MODEL, pretrained=tmp_path, device="cpu")


def test_bad_text_inputs(tiny_clip: ClipModel) -> None:
    with pytest.raises(BadInputError, match="empty prompt at position 1"):
        tiny_clip.encode_text(["a forest", "   "])
    with pytest.raises(BadInputError, match="empty prompt"):
        tiny_clip.encode_prompts(["forest", ""], ["a photo of {}."])
    with pytest.raises(BadInputError, match="single string"):
        tiny_clip.encode_text("a forest")
    with pytest.raises(BadInputError, match="batch_size"):
        tiny_clip.encode_text(TEXTS, batch_size=0)
    with pytest.raises(BadInputError, match="exactly once"):
        tiny_clip.encode_prompts(["forest"], ["a photo of forests"])


# --- prompts -----------------------------------------------------------------------------------------


def test_templates_by_style() -> None:
    assert set(TEMPLATES) == {"classname", "ground", "satellite", "aerial"}
    assert get_templates("classname") == ["{}"]
    assert all(t.count("{}") == 1 for ts in TEMPLATES.values() for t in ts)
    assert get_templates(" Satellite ") == list(TEMPLATES["satellite"])
    get_templates("aerial").clear()  # a copy: the module's templates stay intact
    assert len(TEMPLATES["aerial"]) >= 3
    with pytest.raises(BadInputError, match="known styles: classname, ground, satellite, aerial"):
        get_templates("oblique")


def test_expand() -> None:
    assert expand("olive groves", ["a photo of {}.", "{}"]) == ["a photo of olive groves.", "olive groves"]
    assert expand(" {weird} name ", ["an aerial photo of {}."]) == ["an aerial photo of {weird} name."]
    with pytest.raises(BadInputError, match="non-empty list"):
        expand("forest", [])
    with pytest.raises(BadInputError, match="non-empty list"):
        expand("forest", "a photo of {}.")


# --- the real ViT-B-32 architecture (random weights) -------------------------------------------------


@dataclass(frozen=True)
class _Reference:
    files: dict[str, Path]
    text: np.ndarray
    image: np.ndarray


@pytest.fixture(scope="module")
def vitb32(tmp_path_factory: pytest.TempPathFactory) -> _Reference:
    """Random ViT-B-32 weights saved as .safetensors and .pt, with open_clip's own embeddings of them."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)  # not load_clip's seed: loading must really read the file
        model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    model.eval()
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    with torch.inference_mode():
        text = torch.nn.functional.normalize(model.encode_text(tokenizer(TEXTS)), dim=-1).numpy()
        pixels = torch.stack([preprocess(im) for im in _images()])
        image = torch.nn.functional.normalize(model.encode_image(pixels), dim=-1).numpy()
    folder = tmp_path_factory.mktemp("vitb32")
    files = {".safetensors": folder / "vitb32.safetensors", ".pt": folder / "vitb32.pt"}
    save_file(model.state_dict(), files[".safetensors"])
    torch.save(model.state_dict(), files[".pt"])
    return _Reference(files, text, image)


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_vitb32_file_matches_open_clip_exactly(vitb32: _Reference, suffix: str) -> None:
    path = vitb32.files[suffix]
    clip = load_clip("ViT-B-32", pretrained=path, device="cpu")
    assert clip.id == f"ViT-B-32/file:{_sha12(path)}" and clip.embed_dim == 512
    np.testing.assert_array_equal(clip.encode_text(TEXTS), vitb32.text)
    np.testing.assert_array_equal(clip.encode_images(_images()), vitb32.image)


def _fake_hub_cache(cache: Path, repo: str, weights: Path) -> None:
    """Lay out ``weights`` in a Hugging Face cache as if ``repo`` had been downloaded earlier."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "snapshots" / commit).mkdir(parents=True)
    (root / "snapshots" / commit / "open_clip_model.safetensors").symlink_to(weights)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)


@pytest.mark.slow
def test_vitb32_tags_from_offline_cache(vitb32: _Reference, hub_offline: Path) -> None:
    weights = vitb32.files[".safetensors"]
    _fake_hub_cache(hub_offline, "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", weights)
    clip = load_clip("ViT-B-32", pretrained="LAION2B-s34b-b79k", device="cpu")  # open_clip normalises tags
    assert clip.id == "ViT-B-32/laion2b_s34b_b79k" and not clip.is_random
    np.testing.assert_array_equal(clip.encode_text(TEXTS), vitb32.text)

    # The openai tag was trained with QuickGELU: loading it as ViT-B-32 must switch QuickGELU on, giving
    # exactly what open_clip's own ViT-B-32-quickgelu config gives with the same weights.
    _fake_hub_cache(hub_offline, "timm/vit_base_patch32_clip_224.openai", weights)
    openai = load_clip("ViT-B-32", pretrained="openai", device="cpu").encode_text(TEXTS)
    quickgelu = load_clip("ViT-B-32-quickgelu", pretrained=weights, device="cpu").encode_text(TEXTS)
    np.testing.assert_array_equal(openai, quickgelu)
    assert np.abs(openai - vitb32.text).max() > 1e-3


def test_weights_file_gets_the_preprocessing_its_tags_agree_on(
    tmp_path: Path, tiny_clip: ClipModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tiny.safetensors"
    save_file(tiny_clip.model.state_dict(), path)
    siglip_like = {"hf_hub": "org/repo/", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
    siglip_like |= {"interpolation": "bicubic", "resize_mode": "squash"}
    tags = open_clip.pretrained._PRETRAINED
    monkeypatch.setitem(tags, TINY_MODEL, {"a": siglip_like, "b": dict(siglip_like)})
    agreed = load_clip(TINY_MODEL, pretrained=path, device="cpu").preprocess
    assert agreed.transforms[-1].mean == (0.5, 0.5, 0.5)
    assert agreed.transforms[0].size == (32, 32)  # squash: resize both sides, no crop

    monkeypatch.setitem(tags, TINY_MODEL, {"a": siglip_like, "b": {**siglip_like, "mean": (0.4, 0.4, 0.4)}})
    default = load_clip(TINY_MODEL, pretrained=path, device="cpu")
    assert default.preprocess.transforms[-1].mean == open_clip.OPENAI_DATASET_MEAN
    np.testing.assert_array_equal(default.encode_images(_images()), tiny_clip.encode_images(_images()))


def test_bad_device() -> None:
    with pytest.raises(BadInputError, match="invalid device"):
        load_clip(TINY_MODEL, device="floppy")
    if not torch.cuda.is_available():
        with pytest.raises(BadInputError, match="CUDA is not available"):
            load_clip(TINY_MODEL, device="cuda:0")
