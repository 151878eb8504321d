"""A linear head's basis centred on the data: offset code along the mean embedding, moments from training."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from landprompt.embedder import basis as basis_module
from landprompt.embedder.basis import fit_pca, linear_head_basis
from landprompt.embedder.cube import open_cube, read_window
from landprompt.embedder.models import create_encoder, load_checkpoint, save_checkpoint
from landprompt.embedder.models.checkpoint import checkpoint_hash, checkpoint_paths
from landprompt.embedder.run import embed_run
from landprompt.eo.local import LocalSource
from landprompt.errors import BadInputError

DIM, RANK = 48, 16
TINY = {"clip_dim": 24, "embed_dim": 32, "depth": 1, "num_heads": 2, "head": "linear", "bottleneck": 8}


def clustered(seed: int, n: int = 2000, spread: float = 0.05) -> np.ndarray:
    """Features (n, RANK) around one large common part, as Presto's pixels are."""
    rng = np.random.default_rng(seed)
    return (np.random.default_rng(99).normal(size=RANK) + spread * rng.normal(size=(n, RANK))).astype(
        np.float32
    )


def head(bias: bool) -> tuple[np.ndarray, np.ndarray | None]:
    rng = np.random.default_rng(5)
    weight = rng.normal(size=(DIM, RANK)) / np.sqrt(RANK)
    return weight.astype(np.float32), (0.3 * rng.normal(size=DIM)).astype(np.float32) if bias else None


def exact(z: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    e = z.astype(np.float64) @ weight.T + (0 if bias is None else bias)
    return e / np.linalg.norm(e, axis=-1, keepdims=True)


def int8(codes: np.ndarray) -> np.ndarray:
    """Codes as a version-4 int8 cube stores them: round(127 v / max|v|)."""
    return np.rint(127 * codes / np.abs(codes).max(axis=1, keepdims=True))


@pytest.mark.parametrize("bias", [True, False])
def test_a_centred_head_basis_is_exact_keeps_the_code_count_and_spends_int8_on_the_differences(bias):
    weight, b = head(bias)
    held_out, z = clustered(1), clustered(2)  # moments from other pixels than the scored ones
    basis = linear_head_basis(weight, b, mean=held_out.mean(0), covariance=np.cov(held_out.T))
    plain = linear_head_basis(weight, b)
    assert basis.kind == "linear_head" and basis.info["offset"] == "data_mean" and "offset" not in plain.info
    assert basis.code_size == plain.code_size == RANK + int(bias)  # r codes without a bias: still r
    assert basis.rank == RANK + int(bias) - 1
    assert np.allclose(basis.weights[:-1], 1) and basis.weights[-1] == pytest.approx(
        basis.offset @ basis.offset
    )
    mean_embedding = weight.astype(np.float64) @ held_out.mean(0) + (0 if b is None else b)
    cosine = basis.offset @ mean_embedding / np.linalg.norm(basis.offset) / np.linalg.norm(mean_embedding)
    assert cosine == pytest.approx(1, abs=1e-6)
    want = exact(z, weight, b)
    np.testing.assert_allclose(basis.decode(basis.codes_from_features(z)), want, atol=2e-6)
    np.testing.assert_allclose(basis.decode(basis.codes_from_embeddings(want)), want, atol=2e-6)
    # int8: the scores' differences between pixels (what top-k ranks) come out far closer to exact
    query = np.random.default_rng(3).normal(size=DIM)
    errors = [
        np.abs((basis_.decode(int8(basis_.codes_from_features(z))) - want) @ query).mean()
        for basis_ in (basis, plain)
    ]
    assert errors[0] < errors[1] / 3


@pytest.mark.parametrize(
    ("moments", "message"),
    [
        ({"mean": np.zeros(RANK)}, "needs both the features' mean and covariance"),
        ({"mean": np.zeros(RANK + 1), "covariance": np.eye(RANK)}, r"shapes \(16,\) and \(16, 16\)"),
        ({"mean": np.zeros(RANK), "covariance": np.eye(RANK - 1)}, r"got \(16,\) and \(15, 15\)"),
        ({"mean": np.full(RANK, np.nan), "covariance": np.eye(RANK)}, "NaN or infinite"),
        ({"mean": np.zeros(RANK), "covariance": np.full((RANK, RANK), np.inf)}, "NaN or infinite"),
    ],
)
def test_bad_moments_are_refused_in_one_line(moments, message):
    with pytest.raises(BadInputError, match=message) as info:
        linear_head_basis(*head(True), **moments)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("bias", [True, False])
def test_features_centred_on_zero_keep_the_bias_split(bias):
    weight, b = head(bias)
    plain = linear_head_basis(weight, b)
    held_out = np.random.default_rng(1).normal(size=(4000, RANK))  # no common part: its mean is noise
    basis = linear_head_basis(weight, b, mean=held_out.mean(0), covariance=np.cov(held_out.T))
    assert basis.info["offset"] == ("bias" if bias else "none") and basis.code_size == RANK + int(bias)
    np.testing.assert_array_equal(basis.matrix, plain.matrix)
    np.testing.assert_array_equal(basis.offset, plain.offset)
    exactly_zero = linear_head_basis(weight, None, mean=np.zeros(RANK), covariance=np.eye(RANK))
    assert exactly_zero.code_size == RANK and "offset" not in exactly_zero.info
    # a tiny mean embedding (|m|^2 underflows float32) holds no common part either: plain, no crash
    tiny = 1e-24 * held_out.mean(0)
    tiny_mean = linear_head_basis(weight, None, mean=tiny, covariance=np.cov(held_out.T))
    assert tiny_mean.code_size == RANK and "offset" not in tiny_mean.info


def test_the_gain_and_the_choice_of_split_do_not_hang_on_the_last_bits(monkeypatch):
    """Tiny floating-point differences (another machine's BLAS) keep the same gain and the same split."""
    x = np.random.default_rng(0).normal(size=(500, 32)) + 3
    gains = {fit_pca(x * (1 + eps), 8, None).norm_scale for eps in (0, 1e-12, -3e-12, 1e-11)}
    assert len(gains) == 1 and gains == {float(f"{next(iter(gains)):.6g}")}
    weight, b = head(True)
    moments = {"mean": clustered(1).mean(0), "covariance": np.cov(clustered(1).T)}
    for ratio, offset in ((0.995, "bias"), (0.98, "data_mean")):  # the data split must win by 1 %
        monkeypatch.setattr(
            basis_module, "_int8_error", lambda basis, _, r=ratio: r if "offset" in basis.info else 1.0
        )
        assert linear_head_basis(weight, b, **moments).info["offset"] == offset


def test_the_centred_basis_does_not_hang_on_the_eigenvectors_signs(monkeypatch):
    """LAPACK builds return eigenvectors with other signs: the sample, gain and codes stay the same."""
    weight, b = head(True)
    moments = {"mean": clustered(1).mean(0), "covariance": np.cov(clustered(1).T)}
    first = linear_head_basis(weight, b, **moments)
    eigh = np.linalg.eigh

    def flipped(a):
        values, vectors = eigh(a)
        return values, vectors * np.where(np.arange(len(values)) % 2, -1.0, 1.0)

    monkeypatch.setattr(np.linalg, "eigh", flipped)
    other = linear_head_basis(weight, b, **moments)
    assert other.norm_scale == first.norm_scale and other.info == first.info
    np.testing.assert_array_equal(other.matrix, first.matrix)
    np.testing.assert_array_equal(other.offset, first.offset)


def trained(seed: int = 0, batches: int = 3):
    """A tiny sits with a bias-free bottleneck of 8, after ``batches`` training forwards; its inputs."""
    torch.manual_seed(seed)
    encoder = create_encoder("sits", pool_size=1, **TINY).train()
    inputs = [torch.randn(6, 1, 3, 17) for _ in range(batches)]
    for x in inputs:
        encoder.forward_window(x, month=0)
    return encoder, inputs


def test_training_records_the_head_input_moments_and_the_head_basis_centres_on_them():
    encoder, inputs = trained()
    with torch.no_grad():
        z = torch.cat([encoder.head_features(encoder.pixel_features(x[:, 0], month=0)) for x in inputs])
    z = z.double().numpy()
    mean, covariance, samples = encoder.head_moments()
    assert samples == 18  # every sample weighs the same until HEAD_MOMENTS_MOMENTUM takes over
    np.testing.assert_allclose(mean, z.mean(0), atol=1e-6)
    np.testing.assert_allclose(covariance, np.cov(z.T, bias=True), atol=1e-6)
    basis = encoder.head_basis()
    assert basis.info["offset"] == "data_mean" and basis.info["mean_samples"] == 18
    assert basis.code_size == 8 and basis.rank == 7  # the bottleneck cube keeps 8 codes a pixel
    with torch.no_grad():
        want = encoder.head[1](torch.from_numpy(z[:5]).float()).double().numpy()
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(basis.decode(basis.codes_from_features(z[:5])), want, atol=2e-6)
    encoder.eval()(inputs[0], month=0)  # evaluation records nothing
    assert encoder.head_moments()[2] == 18


def test_checkpoints_keep_the_moments_and_older_checkpoints_fall_back_to_the_bias(tmp_path: Path):
    encoder, _ = trained()
    path = save_checkpoint(encoder, tmp_path / "trained")
    weights = checkpoint_paths(path)[0]
    assert {k for k in load_file(weights) if k.startswith("statistics.")} == {
        "statistics.head_input.mean",
        "statistics.head_input.moment",
        "statistics.head_input.count",
    }
    loaded = load_checkpoint(path, device="cpu")
    for got, want in zip(loaded.head_moments(), encoder.head_moments(), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(loaded.head_basis().matrix, encoder.head_basis().matrix)

    # a checkpoint without moments (untrained, or written before them): today's split along the bias
    fresh = create_encoder("sits", pool_size=1, **TINY, bottleneck_bias=True)
    old = load_checkpoint(save_checkpoint(fresh, tmp_path / "fresh"), device="cpu")
    assert not any(k.startswith("statistics.") for k in load_file(tmp_path / "fresh.safetensors"))
    assert old.head_moments() is None and old.statistics() == {}
    basis = old.head_basis()
    assert "offset" not in basis.info and basis.code_size == 9
    last = old.head[1]
    reference = linear_head_basis(last.weight.detach().numpy(), last.bias.detach().numpy(), basis.info)
    np.testing.assert_array_equal(basis.matrix, reference.matrix)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda s: s.update(
                {"statistics.head_input.mean": torch.full((8,), torch.nan, dtype=torch.float64)}
            ),
            "NaN",
        ),
        (
            lambda s: s.update({"statistics.head_input.mean": torch.zeros(9, dtype=torch.float64)}),
            "do not fit",
        ),
        (lambda s: s.pop("statistics.head_input.count"), "do not fit"),
    ],
)
def test_bad_moments_in_a_checkpoint_are_refused_in_one_line(tmp_path: Path, change, message):
    path = save_checkpoint(trained()[0], tmp_path / "trained")
    weights, config = checkpoint_paths(path)
    state = load_file(weights)
    change(state)
    save_file(state, str(weights))
    document = json.loads(config.read_text())
    document["weights"]["sha256"] = checkpoint_hash(weights)
    config.write_text(json.dumps(document))
    with pytest.raises(BadInputError, match=message) as info:
        load_checkpoint(path, device="cpu")
    assert "\n" not in str(info.value)


def test_embed_run_writes_a_trained_checkpoint_s_cube_centred_and_exact(stac_fixture, tmp_path: Path):
    encoder, _ = trained()
    path = save_checkpoint(encoder, tmp_path / "trained")
    corner = stac_fixture.grid.window(slice(0, 32), slice(0, 32))
    source = LocalSource(stac_fixture.stack)

    def embed(name: str, **kwargs):
        return open_cube(
            embed_run(corner, 2022, str(path), source, tmp_path / name, progress=False, chunk=16, **kwargs)
        )

    cube, full = embed("auto.zarr", dtype="fp16"), embed("v1.zarr", dtype="fp16", basis="none")
    info = cube.attrs["basis"]["info"]
    assert info["offset"] == "data_mean" and info["mean_samples"] == 18
    assert cube.sizes["k"] == 8 and cube.sizes["r"] == 7
    ea, va = read_window(cube, slice(None), slice(None))
    eb, vb = read_window(full, slice(None), slice(None))
    np.testing.assert_array_equal(va, vb)
    assert va.any() and np.abs(ea[va] - eb[vb]).max() < 2e-3  # fp16 both


def test_a_centred_bottleneck_cube_scores_through_the_kernel_like_exact_embeddings(tmp_path: Path, unit):
    from affine import Affine

    from landprompt.embedder.cube import CubeWriter
    from landprompt.geo import Grid
    from landprompt.query.classes import class_matrix, concept_probability
    from landprompt.query.probability import probability_map

    grid = Grid(3035, Affine(10.0, 0.0, 4_000_000.0, 0.0, -10.0, 3_000_000.0), (32, 40))
    weight, _ = head(False)
    held_out, z = clustered(1), clustered(2, n=32 * 40).reshape(32, 40, RANK)
    basis = linear_head_basis(weight, None, mean=held_out.mean(0), covariance=np.cov(held_out.T))
    writer = CubeWriter(tmp_path / "c.zarr", grid, DIM, "int8", chunk=16, basis=basis)
    for w in writer.windows():
        writer.write_chunk(w, z[w.rows, w.cols], features=True)
    ds = open_cube(writer.finalize())
    assert ds.sizes["k"] == RANK and ds.attrs["basis"]["info"]["offset"] == "data_mean"  # k = r, offset code
    rng = np.random.default_rng(1)
    concept, versus = unit(rng.normal(size=DIM)), unit(rng.normal(size=(3, DIM)))
    got = probability_map(ds, concept, versus=versus, logit_scale=10.0).to_numpy()
    want = concept_probability(exact(z, weight, None).astype(np.float32), class_matrix(concept, versus), 10.0)
    np.testing.assert_allclose(got, want, atol=2e-3)
