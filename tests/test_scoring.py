"""The one scoring path: maps, sessions and the analytics' scorer against a float64 reference."""

import numpy as np
import pytest
import torch
import zarr
from affine import Affine

from landprompt.embedder.basis import fit_pca
from landprompt.embedder.cube import cube_basis, open_cube, write_cube
from landprompt.errors import BadInputError
from landprompt.geo import Grid
from landprompt.query import fused
from landprompt.query.classes import class_matrix, concept_probability
from landprompt.query.probability import probability_map
from landprompt.query.scorer import ConceptScorer
from landprompt.query.scoring import probability_kernel, score_values
from landprompt.query.session import open_session

GRID = Grid(3035, Affine(10.0, 0.0, 4_000_000.0, 0.0, -10.0, 3_000_000.0), (40, 44))
DIM, RANK, SCALE = 48, 16, 100.0


@pytest.fixture(scope="module")
def int8_cube(tmp_path_factory, unit):
    """A PCA-16 int8 cube (chunks of 16: edge chunks too) with an invalid corner."""
    rng = np.random.default_rng(0)
    mean, axes = unit(rng.normal(size=DIM)), np.linalg.qr(rng.normal(size=(DIM, RANK)))[0]
    emb = unit(mean + (rng.normal(size=(*GRID.shape, RANK)) * np.linspace(0.4, 0.05, RANK)) @ axes.T)
    valid = np.ones(GRID.shape, bool)
    valid[:5, :7] = False
    basis = fit_pca(emb.reshape(-1, DIM), RANK + 1, min_variance=None)
    path = tmp_path_factory.mktemp("scoring") / "c.zarr"
    return write_cube(path, emb.astype(np.float32), GRID, valid, dtype="int8", chunk=16, basis=basis)


def unit_codes(path) -> np.ndarray:
    """float64 codes (rows, cols, k) of a version-4 cube over their weighted norms (0 where all zero)."""
    basis = cube_basis(open_cube(path))
    assert basis is not None and basis.weights is not None  # format version 4: unit codes, no scale
    codes = np.asarray(zarr.open_group(path, mode="r")["code"][:], np.float64)
    norms = np.sqrt(np.square(codes) @ basis.weights.astype(np.float64))[..., None]
    return np.divide(codes, norms, out=np.zeros_like(codes), where=norms > 0)  # zero codes: invalid


@pytest.fixture(params=["fma", "vnni"])
def path(request, monkeypatch):
    """The fused kernel's products: float32 FMA or int16 (AVX512-VNNI, where this CPU has it)."""
    integer = request.param == "vnni"
    if integer and (fused.probability_kernel_fn(16, 0, 1) is None or not fused._vnni(*fused._host_cpu())):
        pytest.skip("no AVX512-VNNI here")
    monkeypatch.setattr(fused, "USE_VNNI", integer)
    return request.param


@pytest.fixture
def rounded_query(path, monkeypatch):
    """``rounded_query(path, m, k)``: the integer kernel's own probabilities in float64, or None (FMA).

    The integer kernel rounds its query columns to int16 (15 bits a column) and sums exactly: held to a
    float64 reference of that rounded query (recorded as :func:`~landprompt.query.fused.integer_columns`
    makes it), it keeps the float32 tolerance, which the FMA path meets against the exact query.
    """
    made = []

    def record(columns):
        made.append(integer := integer_columns(columns))
        return integer

    integer_columns = fused.integer_columns
    monkeypatch.setattr(fused, "integer_columns", record)

    def probabilities(cube, m: int, k: int) -> np.ndarray | None:
        if path == "fma":
            return None
        assert made  # the integer kernel scored
        columns = made[-1]
        scales = columns[0].view(np.float32).astype(np.float64)
        pairs = columns[1:].view(np.int16).reshape(*columns[1:].shape, 2)
        q = pairs.transpose(0, 3, 1, 2).reshape(-1, *columns.shape[1:]) * scales  # (codes, parts, 16)
        x = unit_codes(cube)
        q = q[: x.shape[-1]]
        if m == 0:  # one concept: the differences l_j - l_c
            return 1 / (1 + np.exp(x @ q[:, :].reshape(len(q), -1)[:, :k]).sum(-1))
        background = x @ q[:, 1:].reshape(len(q), -1)[:, :k]
        top = background.max(-1, keepdims=True)
        lse = top + np.log(np.exp(background - top).sum(-1, keepdims=True))
        return 1 / (1 + np.exp(lse - x @ q[:, 0, :m]))

    return probabilities


def reference_logits(path, vectors: np.ndarray, columns=None) -> tuple[np.ndarray, np.ndarray]:
    """float64 ``SCALE * cos`` (rows, cols, m) of what the cube stores, and its valid mask.

    ``columns`` replaces the float64 projection of the vectors (m, k) when given.
    """
    ds = open_cube(path)
    group = zarr.open_group(path, mode="r")
    basis = cube_basis(ds)
    assert basis is not None
    codes = unit_codes(path)
    v = np.asarray(vectors, np.float64)
    if columns is None:
        columns = v @ basis.matrix.astype(np.float64)
        if basis.code_size > basis.rank:
            columns = np.concatenate([columns, (v @ basis.offset.astype(np.float64))[:, None]], axis=1)
    return SCALE * codes @ np.asarray(columns, np.float64).T, np.asarray(group["valid"][:], bool)


def softmax0(logits: np.ndarray) -> np.ndarray:
    """Probability of class 0 over the last axis, float64."""
    logits = logits - logits.max(axis=-1, keepdims=True)
    return np.exp(logits[..., 0]) / np.exp(logits).sum(axis=-1)


@pytest.fixture(scope="module")
def queries(unit):
    """``queries(seed, m, k)``: ``m`` concept and ``k`` background unit vectors (float32)."""

    def draw(seed: int, m: int = 1, k: int = 16) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        return unit(rng.normal(size=(m, DIM))), unit(rng.normal(size=(k, DIM)))

    return draw


def test_probability_map_of_int8_codes_has_float32_precision(int8_cube, queries, rounded_query):
    concept, background = queries(1)
    got = probability_map(int8_cube, concept[0], versus=background, logit_scale=SCALE).to_numpy()
    classes = np.concatenate([concept, background])
    logits, valid = reference_logits(int8_cube, classes)
    want = softmax0(logits)
    own = rounded_query(int8_cube, 0, 16)
    assert np.isnan(got[~valid]).all() and not np.isnan(got[valid]).any()
    assert np.abs(got[valid] - (want if own is None else own)[valid]).max() < 2e-5
    # the tolerance catches bfloat16 query columns (a plain bf16 product): they miss it by far
    ds = open_cube(int8_cube)
    projected = cube_basis(ds).project(classes).astype(np.float32)  # type: ignore[union-attr]
    rounded = torch.from_numpy(projected).to(torch.bfloat16).to(torch.float64).numpy()
    bf16_error = np.abs(softmax0(reference_logits(int8_cube, classes, rounded)[0]) - want)[valid].max()
    assert bf16_error > 1e-3


def test_many_concepts_in_one_pass_have_float32_precision(int8_cube, queries, rounded_query):
    concepts, background = queries(2, m=5, k=7)
    window = open_session(int8_cube).probability_window(
        slice(3, 37), slice(2, 41), concepts, background, SCALE
    )
    logits, valid = reference_logits(int8_cube, np.concatenate([concepts, background]))
    logits, valid = logits[3:37, 2:41], valid[3:37, 2:41]
    own = rounded_query(int8_cube, 5, 7)
    for i in range(len(concepts)):
        want = softmax0(np.concatenate([logits[..., i : i + 1], logits[..., len(concepts) :]], axis=-1))
        want = want if own is None else own[3:37, 2:41, i]
        assert np.abs(window[..., i] - want)[valid].max() < 2e-5
        assert np.isnan(window[..., i][~valid]).all()


def test_concept_scorer_streams_chunks_through_the_map_kernel(int8_cube, queries, rounded_query):
    concept, background = queries(3, k=4)
    scorer = ConceptScorer(class_matrix(concept, background), query=_query())
    ds = open_cube(int8_cube)
    got = np.full(GRID.shape, -1.0)
    for window, p in scorer.iter_chunks(ds, slice(0, 40), slice(5, 44)):
        got[window.rows, window.cols] = p
    want = softmax0(reference_logits(int8_cube, np.concatenate([concept, background]))[0])
    own = rounded_query(int8_cube, 0, 4)
    want = want if own is None else own
    valid = open_cube(int8_cube)["valid"].to_numpy().astype(bool)
    assert (got[:, :5] == -1).all()
    inside = valid.copy()
    inside[:, :5] = False
    assert np.abs(got - want)[inside].max() < 2e-5 and np.isnan(got[~valid & (got != -1)]).all()


def test_points_score_like_a_float64_softmax_with_any_leading_shape(unit, queries):
    rng = np.random.default_rng(4)
    emb = unit(rng.normal(size=(3, 7, DIM))).astype(np.float32)
    concept, background = queries(5, k=9)
    classes = class_matrix(concept, background)
    want = softmax0(SCALE * emb.astype(np.float64) @ classes.astype(np.float64).T)
    got = concept_probability(emb, classes, SCALE)
    assert got.shape == (3, 7) and got.dtype == np.float32
    assert np.abs(got - want).max() < 2e-6
    scorer = ConceptScorer(classes, query=_query())
    valid = np.ones((3, 7), bool)
    valid[1, 2] = False
    scored = scorer.score(emb, valid)
    assert np.isnan(scored[1, 2]) and np.abs(scored - want)[valid].max() < 2e-6
    # saturated logits give 0 and 1, not NaN
    far = score_values(
        np.array([[1.0, 0.0], [-1.0, 0.0]], np.float32),
        probability_kernel(np.array([[1.0, 0.0]]), np.array([[-1.0, 0.0]]), 1000.0),
    )
    np.testing.assert_array_equal(far[:, 0], [1.0, 0.0])


def test_scorer_from_text_resolves_the_logit_scale(tiny_clip):
    scorer = ConceptScorer.from_text("olive groves", versus=["water"], clip=tiny_clip)
    assert scorer.query.logit_scale == pytest.approx(float(tiny_clip.logit_scale))
    assert ConceptScorer.from_text("olive groves", ["water"], tiny_clip, logit_scale=7).query.logit_scale == 7
    with pytest.raises(BadInputError, match=r"the logit scale must be a positive number, got -1\.0"):
        ConceptScorer.from_text("olive groves", versus=["water"], clip=tiny_clip, logit_scale=-1)


def _query():
    from landprompt.calibration import QuerySettings

    return QuerySettings("a concept", None, "ground", SCALE, None)


def test_overlapping_callers_share_the_workers_and_restore_torch_threads() -> None:
    import threading

    from landprompt.query.scoring import block_workers

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        inside, release, seen = threading.Barrier(2), threading.Event(), []

        def request() -> None:
            with block_workers() as pool:
                seen.append((pool._max_workers, pool.submit(torch.get_num_threads).result()))
                inside.wait()  # both callers in at once, as two serve requests
                release.wait(5)

        def run_requests(n: int) -> None:
            callers = [threading.Thread(target=request) for _ in range(n)]
            for caller in callers:
                caller.start()
            if n == 2:
                while len(seen) < 2:
                    pass
                release.set()
            for caller in callers:
                caller.join()

        run_requests(2)
        inside, seen = threading.Barrier(1), []
        run_requests(1)  # a later request, on a new thread, after the overlap
        assert seen == [(2, 1)]  # two block workers, each running torch on one thread
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
