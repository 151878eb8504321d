"""Score stored vectors against many query vectors at once, near memory speed: the one scoring path.

The queries (concepts and background) are projected once into the space the values live in (the
``r + 1`` code values of a cube in a basis, or the d values of a version-1 cube or of decoded
embeddings) as the columns of a :class:`Kernel`. Values are converted in cache-sized blocks into
per-thread buffers and scored with one matrix product against all columns by torch, then finished in
place (probabilities written straight into the output): no allocation per block. The probability of
one concept against a background set is ``1 / (1 + sum_j exp(l_j - l_c))`` (only the concept's
probability is needed; the row sum is a product with a column of ones); several concepts share the
background's log-sum-exp: ``sigmoid(l_i - logsumexp(l_background))``. Version-4 int8 codes against one
concept, or up to 16 concepts, against up to 32 background columns are scored instead by the fused kernel
of :mod:`landprompt.query.fused` (the same formulas in one pass over the codes; :data:`USE_FUSED`).

:func:`score_values` scores an array of values (points, decoded embeddings); :func:`iter_probabilities`
and :func:`iter_scores` stream a cube's raw chunks (read in the background, one block a thread).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np
import torch
import xarray as xr

from landprompt.embedder.cube import ChunkWindow, cube_basis, iter_raw_chunks
from landprompt.query.fused import kernel_columns, probability_kernel_fn, score_int8

#: Pixels scored per block, one block a thread: 1 MB of int8 codes (4 MB as float32) at r = 64, so
#: a block stays in a core's cache (measured best of 8192, 16384 and 65536).
BLOCK_PIXELS = 16384

#: Per-thread buffers the blocks are converted and scored in (grown on demand, reused).
_BUFFERS = threading.local()

#: Whether version-4 int8 codes are scored by the fused LLVM kernel (:mod:`landprompt.query.fused`)
#: where it takes the query; False scores everything by torch (benchmarks compare the two).
USE_FUSED = True


@dataclass(frozen=True, eq=False)
class Kernel:
    """Query columns in a value space and what a pixel's logits become.

    Attributes:
        columns: float32 (width, c): one column a query (a logit difference for ``one``).
        kind: ``cosine`` (the products themselves), ``one`` (one concept's probability from the
            differences ``l_j - l_c``) or ``many`` (the first ``outputs`` columns are concepts, the
            rest the background).
        outputs: Values a pixel gets.
    """

    columns: torch.Tensor
    kind: Literal["cosine", "one", "many"]
    outputs: int

    def finish(self, logits: torch.Tensor) -> torch.Tensor:
        """A block's outputs (n, outputs) from its logits (n, c), computed in place where it can."""
        if self.kind == "cosine":
            return logits
        if self.kind == "one":  # 1 / (1 + sum_j exp(d_j)); the row sum as a product with ones
            torch.exp(logits, out=logits)
            total = _buffer("total", logits.shape[0], 1)
            torch.mm(logits, _ones(logits.shape[1]), out=total)
            return total.add_(1).reciprocal_()
        # sigmoid(l_i - logsumexp(background)), the background shifted by its largest logit
        concepts, rest = logits[:, : self.outputs], logits[:, self.outputs :]
        top = _buffer("top", logits.shape[0], 1)
        torch.amax(rest, dim=1, keepdim=True, out=top)
        logits.sub_(top)
        weights = _buffer("weights", rest.shape[0], rest.shape[1])
        torch.exp(rest, out=weights)
        torch.mm(weights, _ones(rest.shape[1]), out=top)
        return concepts.sub_(top.log_()).sigmoid_()

    @cached_property
    def compiled(self) -> tuple[Callable[..., None], np.ndarray] | None:
        """The fused int8 kernel of these columns and its column layout, or None (torch scores)."""
        if self.kind == "cosine":
            return None
        columns = self.columns.numpy()
        concepts = None if self.kind == "one" else columns[:, : self.outputs]
        background = columns if concepts is None else columns[:, self.outputs :]
        m = 0 if concepts is None else concepts.shape[1]
        fn = probability_kernel_fn(len(columns), m, background.shape[1])
        return None if fn is None else (fn, kernel_columns(fn, concepts, background))


def cosine_kernel(vectors: np.ndarray) -> Kernel:
    """A kernel giving the products of values with each vector (m, width)."""
    vectors = np.atleast_2d(vectors)
    return Kernel(_columns(vectors.T), "cosine", len(vectors))


def probability_kernel(concepts: np.ndarray, background: np.ndarray, logit_scale: float) -> Kernel:
    """A kernel giving each concept's probability against the background at ``logit_scale``.

    Args:
        concepts: Concept vectors (m, width) in the values' space.
        background: Background vectors (k, width) in the same space.
        logit_scale: Softmax temperature.
    """
    concepts, background = np.atleast_2d(concepts), np.atleast_2d(background)
    classes = np.concatenate([concepts, background]).astype(np.float64) * float(logit_scale)
    m = len(concepts)
    if m == 1:
        return Kernel(_columns((classes[1:] - classes[:1]).T), "one", 1)
    return Kernel(_columns(classes.T), "many", m)


def score_values(
    values: np.ndarray,
    kernel: Kernel,
    multiplier: np.ndarray | None = None,
    pool: ThreadPoolExecutor | None = None,
    out: np.ndarray | None = None,
    norm_weights: np.ndarray | None = None,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """Score an array of values block by block: float32 ``(..., kernel.outputs)``.

    Args:
        values: Values (..., width) of any dtype torch converts (int8 codes, float16, float32).
        kernel: The queries, from :func:`probability_kernel` or :func:`cosine_kernel`.
        multiplier: Per-value factor (...) of the logits (an int8 cube's per-pixel scale), or None.
        pool: Threads scoring blocks side by side (see :func:`block_workers`); None scores here.
        out: A float32 array (..., outputs) to write into (a view of a larger map, say); returned.
        norm_weights: A version-4 cube's per-code norm weights ``w`` (width,): without a ``multiplier``,
            each value's logits are multiplied by ``1 / sqrt(sum_i w_i k_i^2)`` (its decoded embedding is a
            unit vector), 0 for all-zero (invalid) codes.
        valid: Where the values are valid (...), bool or uint8: the outputs elsewhere are NaN (set block
            by block in the scoring threads).
    """
    lead = values.shape[:-1]
    grid = values if values.ndim == 3 else values.reshape(-1, 1, values.shape[-1])
    scale = None if multiplier is None else np.asarray(multiplier).reshape(grid.shape[:2])
    if not grid.flags.writeable:  # torch only wraps writeable arrays
        grid = grid.copy()
    if scale is not None and not scale.flags.writeable:
        scale = scale.copy()
    if out is None:
        out = np.empty((*lead, kernel.outputs), np.float32)
    if out.shape != (*lead, kernel.outputs) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 {(*lead, kernel.outputs)}, got {out.dtype} {out.shape}")
    result = out if out.ndim == 3 else out.reshape(*grid.shape[:2], kernel.outputs)  # a view
    step = max(1, BLOCK_PIXELS // max(grid.shape[1], 1))
    mask = None if valid is None else np.asarray(valid).reshape(grid.shape[:2])
    if mask is not None and (mask.itemsize != 1 or mask.strides[1] != 1):
        mask = np.ascontiguousarray(mask, dtype=bool)
    fused = _fused(kernel, grid, scale, result, norm_weights)

    def block(start: int) -> None:
        rows = slice(start, start + step)
        if fused is not None:
            fused(grid[rows], result[rows], None if mask is None else mask[rows])
            return
        _score_block(grid[rows], None if scale is None else scale[rows], kernel, result[rows], norm_weights)
        if mask is not None:
            result[rows][~mask[rows].astype(bool, copy=False)] = np.nan

    starts = range(0, grid.shape[0], step)
    if pool is None:
        for start in starts:
            block(start)
    else:
        list(pool.map(block, starts))
    return out


def _fused(
    kernel: Kernel,
    grid: np.ndarray,
    scale: np.ndarray | None,
    out: np.ndarray,
    norm_weights: np.ndarray | None,
) -> Callable[[np.ndarray, np.ndarray, np.ndarray | None], None] | None:
    """A block scorer by the fused kernel for version-4 int8 codes ``grid`` (r, c, width), or None.

    It takes pixels contiguous within rows (of the codes and of ``out``), norm weights 1 but for the last
    code's (as :class:`~landprompt.embedder.basis.Basis` makes them), one a code, and a query it was built
    for, of as many codes (else torch scores, and raises on a width mismatch).
    """
    if not USE_FUSED or grid.dtype != np.int8 or scale is not None or norm_weights is None:
        return None
    width, outputs = grid.shape[2], out.shape[2]
    if not width == kernel.columns.shape[0] == len(norm_weights):
        return None
    if grid.strides[1:] != (width, 1) or out.strides[1:] != (4 * outputs, 4):
        return None
    if np.any(norm_weights[:-1] != 1):
        return None
    compiled = kernel.compiled
    if compiled is None:
        return None
    fn, columns = compiled
    w_last = float(norm_weights[-1])

    def run(codes: np.ndarray, part: np.ndarray, valid: np.ndarray | None) -> None:
        if (
            codes.flags.c_contiguous
            and part.flags.c_contiguous
            and (valid is None or valid.flags.c_contiguous)
        ):
            codes, part = codes.reshape(1, -1, width), part.reshape(1, -1, outputs)  # one row, not short ones
            valid = None if valid is None else valid.reshape(1, -1)
        score_int8(fn, codes, columns, w_last, part, valid)

    return run


def _norm_weights(ds: xr.Dataset) -> np.ndarray | None:
    """The norm weights (k,) of a version-4 cube's codes, or None (versions 1-3)."""
    basis = cube_basis(ds)
    return None if basis is None else basis.weights


def query_space(ds: xr.Dataset, vectors: np.ndarray) -> np.ndarray:
    """Unit query vectors (m, d) in the cube's stored space: (m, r + 1) for version 2, else themselves."""
    basis = cube_basis(ds)
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    return vectors if basis is None else basis.project(vectors)


def iter_scores(
    ds: xr.Dataset, vectors: np.ndarray, rows: slice | None = None, cols: slice | None = None
) -> Iterator[tuple[ChunkWindow, np.ndarray, np.ndarray]]:
    """Cosine of every pixel with each unit query vector, chunk by chunk.

    Yields:
        The window, float32 scores (h, w, m) (0 where invalid) and the valid mask (h, w).
    """
    kernel = cosine_kernel(query_space(ds, vectors))
    for window, scores, valid in _iter_chunk_outputs(ds, kernel, rows, cols, None, nan_invalid=False):
        scores[~valid] = 0
        yield window, scores, valid


def iter_probabilities(
    ds: xr.Dataset,
    concepts: np.ndarray,
    background: np.ndarray,
    logit_scale: float,
    rows: slice | None = None,
    cols: slice | None = None,
    out: np.ndarray | None = None,
) -> Iterator[tuple[ChunkWindow, np.ndarray]]:
    """Probability of each concept against the background at every pixel, chunk by chunk.

    Args:
        ds: A cube from :func:`~landprompt.embedder.cube.open_cube`.
        concepts: Unit concept vectors (m, d).
        background: Unit background vectors (k, d).
        logit_scale: Softmax temperature.
        rows: Rows of a window (positions in ``ds``).
        cols: Columns of a window.
        out: float32 (rows, cols, m) of the whole window to write the chunks straight into (every
            pixel of it is written); each yielded array is then a view of it.

    Yields:
        The window and float32 probabilities (h, w, m), NaN where the cube is not valid.
    """
    concepts = np.atleast_2d(np.asarray(concepts, np.float32))
    classes = query_space(ds, np.concatenate([concepts, np.atleast_2d(background)]).astype(np.float32))
    kernel = probability_kernel(classes[: len(concepts)], classes[len(concepts) :], logit_scale)
    for window, probabilities, _ in _iter_chunk_outputs(ds, kernel, rows, cols, out, nan_invalid=True):
        yield window, probabilities


def _iter_chunk_outputs(
    ds: xr.Dataset,
    kernel: Kernel,
    rows: slice | None,
    cols: slice | None,
    out: np.ndarray | None,
    nan_invalid: bool,
) -> Iterator[tuple[ChunkWindow, np.ndarray, np.ndarray]]:
    """``(window, kernel outputs (h, w, outputs), valid (h, w))`` of each raw chunk of a cube.

    With ``out`` (the whole window's outputs), each chunk's outputs are written into their part of it;
    with ``nan_invalid``, the outputs of invalid pixels are NaN.
    """
    r0 = 0 if rows is None or rows.start is None else rows.start
    c0 = 0 if cols is None or cols.start is None else cols.start
    weights = _norm_weights(ds)
    with block_workers() as pool:
        for window, raw in iter_raw_chunks(ds, rows, cols):
            values = raw["code"] if "code" in raw else raw["embedding"]
            part = None
            if out is not None:
                part = out[
                    window.rows.start - r0 : window.rows.stop - r0,
                    window.cols.start - c0 : window.cols.stop - c0,
                ]
            valid = raw["valid"].astype(bool, copy=False)
            mask = valid if nan_invalid else None
            scores = score_values(values, kernel, raw.get("scale"), pool, part, weights, mask)
            yield window, scores, valid


@dataclass
class _Workers:
    """The process's block-scoring threads, shared by every caller (requests of ``serve`` included)."""

    lock: threading.Lock
    pool: ThreadPoolExecutor | None = None
    size: int = 0
    active: int = 0  # callers inside block_workers()
    torch_threads: int = 1  # torch's thread count before the first of them came in


_WORKERS = _Workers(threading.Lock())


@contextmanager
def block_workers() -> Iterator[ThreadPoolExecutor]:
    """Threads that score blocks side by side, each running torch single-threaded meanwhile.

    One block a thread needs no hand-over between threads inside every torch call, so the scoring keeps
    its pace on a CPU shared with other work (torch's own threads wait for each other at every call).
    The pool is made once and shared: callers at the same time (``serve``'s requests) queue their blocks
    on it, torch goes to one thread when the first comes in and back when the last leaves, and each
    thread keeps its block buffers from call to call.
    """
    workers = _WORKERS
    with workers.lock:
        if workers.active == 0:
            workers.torch_threads = torch.get_num_threads()
            if workers.pool is None or workers.size != workers.torch_threads:
                if workers.pool is not None:
                    workers.pool.shutdown(wait=False)
                workers.pool = ThreadPoolExecutor(workers.torch_threads, "landprompt-score")
                workers.size = workers.torch_threads
            torch.set_num_threads(1)
        workers.active += 1
        pool = workers.pool
    assert pool is not None
    try:
        yield pool
    finally:
        with workers.lock:
            workers.active -= 1
            if workers.active == 0:
                torch.set_num_threads(workers.torch_threads)


def _score_block(
    values: np.ndarray,
    multiplier: np.ndarray | None,
    kernel: Kernel,
    out: np.ndarray,
    norm_weights: np.ndarray | None = None,
) -> None:
    """Score one block of rows (r, c, width) into ``out`` (r, c, outputs; any strides) in thread buffers."""
    r, c, width = values.shape
    n = r * c
    source = torch.from_numpy(values)
    if source.dtype == torch.float32 and source.is_contiguous():
        x = source.view(n, width)
    else:  # int8 / float16 -> float32, in cache
        x = _buffer("values", n, width)
        x.view(r, c, width).copy_(source)
    logits = _buffer("logits", n, kernel.columns.shape[1])
    torch.mm(x, kernel.columns, out=logits)
    if multiplier is not None or norm_weights is not None:  # the per-pixel multiplier: applied here only
        scale = _buffer("scale", n, 1)
        if multiplier is not None:
            scale.view(r, c).copy_(torch.from_numpy(multiplier))
        else:
            _inverse_norms(x, norm_weights, scale)  # type: ignore[arg-type]
        logits.mul_(scale)
    torch.from_numpy(out).copy_(kernel.finish(logits).view(r, c, kernel.outputs))


def _inverse_norms(x: torch.Tensor, weights: np.ndarray, out: torch.Tensor) -> None:
    """``1 / sqrt(sum_i w_i x_i^2)`` (n, 1) of version-4 codes ``x`` (n, width) into ``out`` (0: zero codes).

    The weights are 1 but for the last code's (:class:`~landprompt.embedder.basis.Basis` checks it), so the
    sum is one vector norm and a correction (measured 2.5x faster than ``x^2 @ w``).
    """
    torch.linalg.vector_norm(x, dim=1, keepdim=True, out=out)
    out.square_()
    if weights[-1] != 1:
        out.addcmul_(x[:, -1:], x[:, -1:], value=float(weights[-1]) - 1.0)
    out.rsqrt_().nan_to_num_(posinf=0.0)


def _buffer(name: str, rows: int, cols: int) -> torch.Tensor:
    """This thread's float32 buffer ``name`` as a (rows, cols) tensor (reused, grown when too small)."""
    buffer = getattr(_BUFFERS, name, None)
    if buffer is None or buffer.numel() < rows * cols:
        buffer = torch.empty(rows * cols, dtype=torch.float32)
        setattr(_BUFFERS, name, buffer)
    return buffer[: rows * cols].view(rows, cols)


def _ones(n: int) -> torch.Tensor:
    """This thread's float32 column of ``n`` ones."""
    ones = getattr(_BUFFERS, "ones", None)
    if ones is None or ones.shape[0] != n:
        ones = torch.ones(n, 1)
        _BUFFERS.ones = ones
    return ones


def _columns(columns: np.ndarray) -> torch.Tensor:
    """Query columns (k, c) as a contiguous float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(columns, dtype=np.float32))
