"""The fused int8 kernel (query/fused.py) against a float64 reference, and its place in the scoring path."""

import numpy as np
import pytest

from landprompt.query import fused, scoring
from landprompt.query.fused import padded_columns, probability_kernel_fn, score_int8
from landprompt.query.scoring import probability_kernel, score_values

W_LAST = 0.7  # the last code's norm weight (a basis with a bias); the others are 1


def unit_codes(codes: np.ndarray) -> np.ndarray:
    """float64 codes (n, width) over ``sqrt(sum_i w_i k_i^2)``, 0 for all-zero codes."""
    x = codes.reshape(-1, codes.shape[-1]).astype(np.float64)
    norms = np.sqrt(np.square(x).sum(1) + (W_LAST - 1) * x[:, -1] ** 2)[:, None]
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def random_codes(rng: np.random.Generator, rows: int, cols: int, width: int) -> np.ndarray:
    codes = rng.integers(-127, 128, (rows, cols, width)).astype(np.int8)
    codes[0, :3] = 0  # invalid pixels: all-zero codes
    return codes


def needs_kernel() -> None:
    if probability_kernel_fn(16, 0, 1) is None:
        pytest.skip("llvmlite cannot build the kernel here")


@pytest.fixture(params=["fma", "vnni"])
def path(request, monkeypatch) -> str:
    """The kernel's products: float32 FMA, or int16 by AVX512-VNNI (where this CPU has it)."""
    integer = request.param == "vnni"
    if integer and not (probability_kernel_fn(16, 0, 1) is not None and fused._vnni(*fused._host_cpu())):
        pytest.skip("no AVX512-VNNI here")
    monkeypatch.setattr(fused, "USE_VNNI", integer)
    return request.param


def as_read(fn, columns: np.ndarray) -> np.ndarray:
    """float64 columns (width, k) as the kernel ``fn`` multiplies them: dequantised int16 if integer.

    The integer kernel's int32 sums are exact: against a float64 reference of these columns it is held
    to the float32 path's 2e-6, which a coarser rounding of the query (bf16: 2^-9) would miss by far.
    """
    q = columns.astype(np.float64)
    if not fused.is_integer(fn):
        return q
    top = np.abs(q).max(0)
    scale = 32767.0 / np.where(top > 0, top, 1.0)
    return np.rint(columns * scale) * (1.0 / scale).astype(np.float32)


def compiled(width: int, concepts: int, background: int):
    needs_kernel()
    fn = probability_kernel_fn(width, concepts, background)
    assert fn is not None  # a shape the kernel takes
    return fn


@pytest.mark.parametrize(
    ("width", "background"), [(16, 16), (17, 16), (65, 16), (65, 17), (16, 32), (65, 32)]
)
def test_one_concept_matches_a_float64_softmax_in_a_strided_window(width, background, path):
    rng = np.random.default_rng(width + background)
    codes = random_codes(rng, 5, 29, width)  # 29 pixels a row: groups of 8 and single pixels
    diffs = (rng.normal(size=(width, background)) * 2).astype(np.float32)  # logit differences up to ~+-100
    out = np.full((5, 31, 1), -1.0, np.float32)
    valid = rng.random((5, 29)) > 0.2
    fn = compiled(width, 0, background)
    score_int8(fn, codes[:, 2:], padded_columns(None, diffs), W_LAST, out[:, 1:28], valid[:, 2:])
    want = (1 / (1 + np.exp(unit_codes(codes) @ as_read(fn, diffs)).sum(1))).reshape(5, 29)[:, 2:]
    got = out[:, 1:28, 0]
    np.testing.assert_allclose(got[valid[:, 2:]], want[valid[:, 2:]], rtol=2e-6, atol=1e-7)
    assert np.isnan(got[~valid[:, 2:]]).all()  # invalid pixels: NaN
    assert (out[:, [0, 28, 29, 30]] == -1).all()  # nothing outside the window written
    score_int8(fn, codes[:, 2:], padded_columns(None, diffs), W_LAST, out[:, 1:28])  # no mask: all scored
    np.testing.assert_allclose(out[:, 1:28, 0], want, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize(("concepts", "background"), [(16, 16), (5, 7), (1, 3), (16, 32), (3, 17), (2, 25)])
def test_many_concepts_match_a_float64_softmax_against_the_background(concepts, background, path):
    rng = np.random.default_rng(concepts + background)
    width = 65
    codes = random_codes(rng, 3, 21, width)
    a = (rng.normal(size=(width, concepts)) * 2).astype(np.float32)
    b = (rng.normal(size=(width, background)) * 2).astype(np.float32)
    out = np.empty((3, 21, concepts), np.float32)
    valid = np.ones((3, 21), np.uint8)
    valid[1, 4] = 0
    fn = compiled(width, concepts, background)
    score_int8(fn, codes, padded_columns(a, b), W_LAST, out, valid)
    x = unit_codes(codes)
    lb = x @ as_read(fn, b)
    lse = lb.max(1, keepdims=True) + np.log(np.exp(lb - lb.max(1, keepdims=True)).sum(1, keepdims=True))
    want = (1 / (1 + np.exp(lse - x @ as_read(fn, a)))).reshape(3, 21, concepts)
    assert np.isnan(out[1, 4]).all()
    valid[1, 4] = 1
    out[1, 4] = want[1, 4]
    np.testing.assert_allclose(out, want, rtol=2e-6, atol=1e-7)


def test_saturated_logits_give_zero_and_one_not_nan(path):
    codes = np.zeros((1, 2, 16), np.int8)
    codes[0, 0, 0], codes[0, 1, 0] = 127, -127
    diffs = np.zeros((16, 1), np.float32)
    diffs[0] = 1000.0  # l_1 - l_c = +-1000
    out = np.empty((1, 2, 1), np.float32)
    score_int8(compiled(16, 0, 1), codes, padded_columns(None, diffs), 1.0, out)
    np.testing.assert_allclose(out[0, :, 0], [0.0, 1.0], atol=1e-30)


def test_shapes_it_does_not_take_are_left_to_torch():
    assert probability_kernel_fn(15, 0, 4) is None  # fewer codes than a vector
    assert probability_kernel_fn(64, 0, 33) is None  # more background columns than two vectors' lanes
    assert probability_kernel_fn(64, 4, 33) is None
    assert probability_kernel_fn(64, 17, 4) is None  # more concepts than lanes


def test_the_shipped_vocabulary_is_scored_by_the_fused_kernel(path):
    from landprompt.query.classes import background_prompts

    rng = np.random.default_rng(11)
    background = background_prompts(["hedgerows"])  # a concept not in it: all 17 prompts compete
    assert len(background) == 17
    vectors = rng.normal(size=(1 + len(background), 65))
    for kernel in (
        probability_kernel(vectors[:1], vectors[1:], 30.0),  # one concept: 17 columns of differences
        probability_kernel(np.concatenate([vectors[:1], -vectors[:1]]), vectors[1:], 30.0),  # two
    ):
        needs_kernel()
        assert kernel.compiled is not None
        fn, columns = kernel.compiled
        assert fn.args == (max(kernel.outputs, 1) if kernel.kind == "many" else 0, 17)
        rows = 1 + 33 if path == "vnni" else 65  # the scales, then pairs of codes; or the codes
        assert columns.shape == (rows, 2 if kernel.kind == "one" else 3, 16)
        assert fused.is_integer(fn) is (path == "vnni")


def test_columns_laid_out_for_other_counts_are_refused(path):
    rng = np.random.default_rng(12)
    codes = random_codes(rng, 2, 9, 40)
    diffs = rng.normal(size=(40, 17)).astype(np.float32)
    out = np.empty((2, 9, 1), np.float32)
    with pytest.raises(ValueError, match="0 concepts and 17 background columns needs"):  # 16 columns only
        score_int8(compiled(40, 0, 17), codes, padded_columns(None, diffs[:, :16]), 1.0, out)
    with pytest.raises(ValueError, match=r"3 outputs a pixel, got .* and 1 outputs"):  # written past out
        score_int8(compiled(40, 3, 14), codes, padded_columns(diffs[:, :3], diffs[:, 3:]), 1.0, out)


def test_score_values_uses_the_fused_kernel_and_agrees_with_the_torch_path(monkeypatch, path):
    """The fused kernel scores what torch does: to float32 rounding, or with an int16 query (VNNI) to its
    15 bits: each logit off by at most ``sum_i |x_i| max_i |q_ij| / 65534 <= sqrt(65) 60 / 65534`` (unit
    codes, differences of unit columns at logit scale 30), each probability by a quarter of twice that
    (2e-3; the kernel's own sums are held to 2e-6 of a float64 reference of its query above)."""
    tolerance = {"rtol": 1e-5, "atol": 1e-7} if path == "fma" else {"rtol": 0, "atol": 2e-3}
    rng = np.random.default_rng(7)
    codes = random_codes(rng, 40, 50, 65)
    weights = np.ones(65, np.float32)
    weights[-1] = W_LAST
    kernel = probability_kernel(rng.normal(size=(1, 65)), rng.normal(size=(16, 65)), 30.0)
    calls = []
    monkeypatch.setattr(scoring, "score_int8", lambda *a: (calls.append(a[1].shape), fused.score_int8(*a)))
    got = score_values(codes, kernel, norm_weights=weights)
    assert calls  # the fused kernel scored the blocks
    monkeypatch.setattr(scoring, "USE_FUSED", False)
    calls.clear()
    torch_path = score_values(codes, kernel, norm_weights=weights)
    assert not calls
    np.testing.assert_allclose(got, torch_path, **tolerance)
    # several concepts, and points (a 2-D array) too
    kernel = probability_kernel(rng.normal(size=(3, 65)), rng.normal(size=(5, 65)), 30.0)
    points = codes.reshape(-1, 65)
    monkeypatch.setattr(scoring, "USE_FUSED", True)
    got = score_values(points, kernel, norm_weights=weights)
    monkeypatch.setattr(scoring, "USE_FUSED", False)
    np.testing.assert_allclose(got, score_values(points, kernel, norm_weights=weights), **tolerance)


def test_without_llvmlite_there_is_no_kernel_and_torch_scores(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "llvmlite.binding", None)  # import fails as if not installed
    monkeypatch.setattr(fused, "_COMPILED", {})
    assert probability_kernel_fn(40, 0, 4) is None
    rng = np.random.default_rng(9)
    kernel = probability_kernel(rng.normal(size=(1, 40)), rng.normal(size=(4, 40)), 10.0)
    codes = random_codes(rng, 4, 6, 40)
    weights = np.ones(40, np.float32)
    weights[-1] = W_LAST
    got = score_values(codes, kernel, norm_weights=weights)
    want = 1 / (1 + np.exp(unit_codes(codes) @ kernel.columns.numpy().astype(np.float64)).sum(1))
    np.testing.assert_allclose(got.reshape(-1), want, rtol=1e-5, atol=1e-7)


def test_columns_of_another_width_or_unaligned_are_refused(path):
    rng = np.random.default_rng(3)
    codes = random_codes(rng, 2, 9, 40)
    out = np.empty((2, 9, 1), np.float32)
    fn = compiled(40, 0, 4)
    diffs = rng.normal(size=(40, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="codes' width 40"):  # the kernel would read 65 codes a pixel
        score_int8(fn, codes, padded_columns(None, rng.normal(size=(65, 4)).astype(np.float32)), 1.0, out)
    columns = fused.kernel_columns(fn, None, diffs)
    shifted = np.empty(columns.size + 1, columns.dtype)[1:].reshape(columns.shape)  # 4 bytes past 64
    shifted[...] = columns
    with pytest.raises(ValueError, match="64-byte aligned"):
        score_int8(fn, codes, shifted, 1.0, out)
    with pytest.raises(ValueError, match=r"outputs \(2, 8\)"):  # the kernel would write past out
        score_int8(fn, codes, columns, W_LAST, out[:, :8])
    with pytest.raises(ValueError, match="uint8 codes"):
        score_int8(fn, codes.view(np.uint8), columns, W_LAST, out)
    with pytest.raises(ValueError, match=r"valid \(2, 8\)"):
        score_int8(fn, codes, columns, W_LAST, out, np.ones((2, 8), np.uint8))
    score_int8(fn, codes, columns, W_LAST, out)  # the columns themselves: scored
    want = 1 / (1 + np.exp(unit_codes(codes) @ as_read(fn, diffs)).sum(1))
    np.testing.assert_allclose(out.reshape(-1), want, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("codes_width", [64, 66])
def test_codes_of_another_width_than_the_query_fail_as_in_torch(codes_width):
    rng = np.random.default_rng(4)
    weights = np.ones(65, np.float32)
    kernel = probability_kernel(rng.normal(size=(1, 65)), rng.normal(size=(4, 65)), 10.0)
    codes = random_codes(rng, 8, 8, codes_width)
    with pytest.raises(RuntimeError, match="cannot be multiplied"):  # not read past the codes, silently
        score_values(codes, kernel, norm_weights=np.ones(codes_width, np.float32))
    assert scoring._fused(kernel, codes, None, np.empty((8, 8, 1), np.float32), weights) is None


@pytest.mark.parametrize(
    ("triple", "features", "fast"),
    [
        ("x86_64-unknown-linux-gnu", {"fma": False, "avx2": False, "avx": True}, False),  # Sandy Bridge
        ("x86_64-unknown-linux-gnu", {"fma": True, "avx2": False, "avx512f": False}, False),
        ("x86_64-unknown-linux-gnu", {"fma": True, "avx2": True}, True),
        ("x86_64-pc-windows-msvc", {"fma": True, "avx2": False, "avx512f": True}, True),
        ("aarch64-unknown-linux-gnu", {"neon": True}, True),
        ("arm64-apple-macosx14.0.0", {}, True),
        ("powerpc64le-unknown-linux-gnu", {"vsx": True}, False),
    ],
)
def test_vector_fma_is_read_from_the_cpu_features(triple, features, fast):
    assert fused._fast_fma(triple, features) is fast


def test_a_cpu_without_vector_fma_is_left_to_torch(monkeypatch):
    compiled(40, 0, 4)  # llvmlite builds here
    triple = fused._host_cpu()[0]
    monkeypatch.setattr(fused, "_COMPILED", {})
    monkeypatch.setattr(fused, "_host_cpu", lambda: (triple, {"fma": False, "avx": True}))
    assert probability_kernel_fn(40, 0, 4) is None
    rng = np.random.default_rng(5)
    kernel = probability_kernel(rng.normal(size=(1, 40)), rng.normal(size=(4, 40)), 10.0)
    assert kernel.compiled is None
    codes = random_codes(rng, 4, 6, 40)
    weights = np.ones(40, np.float32)
    weights[-1] = W_LAST
    monkeypatch.setattr(scoring, "score_int8", lambda *a: pytest.fail("the fused kernel scored"))
    got = score_values(codes, kernel, norm_weights=weights)
    want = 1 / (1 + np.exp(unit_codes(codes) @ kernel.columns.numpy().astype(np.float64)).sum(1))
    np.testing.assert_allclose(got.reshape(-1), want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("triple", "features", "vnni"),
    [
        ("x86_64-unknown-linux-gnu", {"avx512vnni": True, "avx512bw": True}, True),
        ("x86_64-unknown-linux-gnu", {"avxvnni": True, "avx2": True}, False),  # 256-bit VNNI only
        ("aarch64-unknown-linux-gnu", {"dotprod": True}, False),
    ],
)
def test_integer_products_are_read_from_the_cpu_features(triple, features, vnni):
    assert fused._vnni(triple, features) is vnni


def test_integer_columns_keep_15_bits_and_the_tolerance_catches_a_bf16_query():
    rng = np.random.default_rng(13)
    width = 65
    diffs = (rng.normal(size=(width, 17)) * 2).astype(np.float32)
    diffs[:, 3] = 0  # a column of zeros stays zeros
    columns = fused.integer_columns(padded_columns(None, diffs))
    assert columns.shape == (1 + 33, 2, 16) and columns.dtype == np.int32 and columns.ctypes.data % 64 == 0
    scales = columns[0].view(np.float32).reshape(-1)[:17]
    values = columns[1:].view(np.int16).reshape(33, 2, 16, 2).transpose(0, 3, 1, 2).reshape(66, 32)[:width]
    top = np.abs(diffs).max(0)
    np.testing.assert_allclose(scales[top > 0], top[top > 0] / 32767, rtol=1e-7)
    assert np.abs(values[:, :17]).max(0).tolist() == [32767 if t > 0 else 0 for t in top]
    assert (values[:, 17:] == 0).all() and (columns[1:][-1].view(np.int16)[..., 1] == 0).all()  # padding
    error = np.abs(values[:, :17] * scales.astype(np.float64) - diffs)
    assert (error <= top / 65534 * (1 + 1e-6)).all()  # half a step of 15 bits
    # the kernel is held to 2e-6 of a reference of its own query; a bf16 query would be off by far more
    codes = random_codes(rng, 1, 50, width)
    x = unit_codes(codes)
    exact = 1 / (1 + np.exp(x @ as_read(partial_integer(), diffs)).sum(1))
    bf16 = (diffs.view(np.uint32) + 0x8000 & 0xFFFF0000).view(np.float32).astype(np.float64)
    rounded = 1 / (1 + np.exp(x @ bf16).sum(1))
    assert np.max(np.abs(rounded - exact) / exact) > 100 * 2e-6


def partial_integer():
    """A stand-in integer kernel for :func:`as_read` (whatever this CPU has)."""
    fused._INTEGER.add(id(partial_integer))
    return partial_integer


@pytest.mark.slow  # over 1 s; the full suite (make test, CI) runs it
def test_codes_past_the_int32_range_are_scored_by_fma(path):
    needs_kernel()
    assert fused.INTEGER_MAX_WIDTH * 128 * 32767 < 2**31 <= (fused.INTEGER_MAX_WIDTH + 1) * 128 * 32767
    assert not fused.is_integer(compiled(fused.INTEGER_MAX_WIDTH + 1, 0, 1))
    assert fused.is_integer(compiled(fused.INTEGER_MAX_WIDTH, 0, 1)) is (path == "vnni")
