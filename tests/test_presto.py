from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from landprompt.embedder.models.presto import (
    BANDS,
    CHANNEL_GROUPS,
    PrestoEncoder,
    load_presto_encoder,
)
from landprompt.errors import BadInputError

DATA = Path(__file__).parents[1].parent / "shared" / "data"
PRESTO = DATA / "presto"
TOLERANCE = 1e-4
MASKED = slice(8, 16)  # reference samples with masked steps


@pytest.fixture(scope="module")
def weights() -> Path:
    if not PRESTO.is_dir():
        pytest.skip(f"shared sample data not found at {PRESTO} (see ../shared/data/README.md)")
    return PRESTO / "default_model.pt"


@pytest.fixture(scope="module")
def encoder(weights: Path) -> PrestoEncoder:
    return load_presto_encoder(weights)


@pytest.fixture(scope="module")
def reference(weights: Path) -> dict[str, torch.Tensor]:
    with np.load(PRESTO / "reference_small.npz") as npz:
        return {key: torch.from_numpy(npz[key]) for key in npz.files}


def inputs(ref: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {
        "x": ref["normalized"],
        "mask": ref["mask"],
        "dynamic_world": ref["dynamic_world"],
        "latlon": ref["latlon"],
        "month": ref["month"],
    }


def embed(model: PrestoEncoder, **kwargs: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(**kwargs)


def test_constants_describe_the_input() -> None:
    assert len(BANDS) == 17
    covered = sorted(i for idx in CHANNEL_GROUPS.values() for i in idx)
    assert covered == list(range(len(BANDS)))


def test_parity_with_reference(encoder: PrestoEncoder, reference: dict[str, torch.Tensor]) -> None:
    diff = (embed(encoder, **inputs(reference)) - reference["embedding"]).abs()
    assert diff.max().item() <= TOLERANCE


def test_parity_on_masked_samples(encoder: PrestoEncoder, reference: dict[str, torch.Tensor]) -> None:
    assert reference["mask"][MASKED].sum(dim=(1, 2)).min() > 0
    out = embed(encoder, **inputs(reference))
    diff = (out[MASKED] - reference["embedding"][MASKED]).abs()
    assert diff.max().item() <= TOLERANCE


def test_sample_alone_equals_batched(encoder: PrestoEncoder, reference: dict[str, torch.Tensor]) -> None:
    batch = inputs(reference)
    alone = embed(encoder, **{key: value[9:10] for key, value in batch.items()})
    torch.testing.assert_close(alone[0], embed(encoder, **batch)[9], atol=1e-5, rtol=0)


def test_empty_mask_equals_no_mask(encoder: PrestoEncoder, reference: dict[str, torch.Tensor]) -> None:
    batch = inputs(reference)
    batch["mask"] = torch.zeros_like(batch["x"], dtype=torch.bool)
    with_mask = embed(encoder, **batch)
    batch.pop("mask")
    torch.testing.assert_close(with_mask, embed(encoder, **batch), atol=0, rtol=0)


def test_month_forms_agree(encoder: PrestoEncoder, reference: dict[str, torch.Tensor]) -> None:
    batch = {key: value[:4] for key, value in inputs(reference).items()}
    batch["month"] = torch.full((4,), 5)
    from_vector = embed(encoder, **batch)
    batch["month"] = (5 + torch.arange(12)).expand(4, -1)  # per-step months, wrapping past December
    from_steps = embed(encoder, **batch)
    with torch.inference_mode():
        from_int = encoder(batch["x"], batch["mask"], batch["dynamic_world"], batch["latlon"], month=5)
    torch.testing.assert_close(from_vector, from_steps, atol=0, rtol=0)
    torch.testing.assert_close(from_vector, from_int, atol=0, rtol=0)


def test_tokens_and_pooling(encoder: PrestoEncoder, reference: dict[str, torch.Tensor]) -> None:
    batch = inputs(reference)
    with torch.inference_mode():
        features, token_mask = encoder.forward_features(**batch)
        tokens, _ = encoder.forward_tokens(**batch)
        pooled = encoder(**batch)
    steps = batch["x"].shape[1]
    n_tokens = 1 + (len(CHANNEL_GROUPS) - 1) * steps + 1 + steps  # lat/lon, dynamic groups, SRTM, DW
    assert features.shape == tokens.shape == (16, n_tokens, encoder.embed_dim)
    assert not token_mask[:, 0].any()
    assert token_mask[:8].sum() == (batch["dynamic_world"][:8] == 9).sum()
    torch.testing.assert_close(encoder.pool(features, token_mask), pooled)
    # pooling a window of pixels = pooling their concatenated tokens
    window = encoder.pool(features[:2].flatten(0, 1), token_mask[:2].flatten())
    assert window.shape == (encoder.embed_dim,)


def test_missing_inputs_give_finite_embeddings(encoder: PrestoEncoder) -> None:
    x = torch.randn(3, 6, len(BANDS))
    mask = torch.zeros_like(x, dtype=torch.bool)
    mask[0] = True  # everything missing and no location: no valid token at all
    out = embed(encoder, x=x, mask=mask)
    assert out.shape == (3, encoder.embed_dim)
    assert torch.isfinite(out).all()


def test_bad_input_shapes(encoder: PrestoEncoder) -> None:
    with pytest.raises(BadInputError, match="shape"):
        embed(encoder, x=torch.zeros(2, 12, 5))
    with pytest.raises(BadInputError, match="maximum"):
        embed(encoder, x=torch.zeros(2, 30, len(BANDS)))


def test_loader_names_missing_keys(weights: Path, tmp_path: Path) -> None:
    state = torch.load(weights, map_location="cpu", weights_only=True)
    del state["encoder.blocks.1.mlp.fc2.weight"], state["encoder.latlon_embed.bias"]
    broken = tmp_path / "broken.pt"
    torch.save(state, broken)
    with pytest.raises(BadInputError, match=r"missing keys: blocks\.1\.mlp\.fc2\.weight, latlon_embed\.bias"):
        load_presto_encoder(broken)


def test_loader_refuses_other_files(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="not found"):
        load_presto_encoder(tmp_path / "absent.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(BadInputError, match="not a readable"):
        load_presto_encoder(garbage)
    tensors = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], tensors)
    with pytest.raises(BadInputError, match="does not hold a state dict"):
        load_presto_encoder(tensors)
    other = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(2)}, other)
    with pytest.raises(BadInputError, match="not a Presto encoder state dict"):
        load_presto_encoder(other)


def test_safetensors_round_trip(
    encoder: PrestoEncoder, reference: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    path = tmp_path / "presto.safetensors"
    save_file(encoder.state_dict(), path)
    batch = inputs(reference)
    torch.testing.assert_close(
        embed(load_presto_encoder(path), **batch), embed(encoder, **batch), atol=0, rtol=0
    )
