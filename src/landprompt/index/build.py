"""Build a FAISS index over an embedding cube, streaming it chunk by chunk.

The cube is never held in memory: one pass draws a reproducible training sample (for IVF indexes) and
one pass adds every valid pixel under its id ``row * cols + col``. The index file is written next to a
JSON sidecar recording the factory string, the metric, the cube's path, content hash and file fingerprint
(names, sizes, mtimes of its files) and the id rule;
the sidecar is written last, so an index without one is unfinished.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import xarray as xr

from landprompt.embedder.cube import (
    ChunkWindow,
    content_hash,
    cube_basis,
    cube_grid,
    iter_chunks,
    iter_raw_chunks,
    open_cube,
    require_intact,
    stored_values,
)
from landprompt.embedder.integrity import files_fingerprint
from landprompt.errors import BadInputError
from landprompt.files import atomic_path, require_writable, write_json
from landprompt.index.factory import check_factory, choose_factory, default_nprobe, make_index, train_size_for
from landprompt.progress import progress_bar

INDEX_FORMAT = "landprompt-index"
INDEX_FORMAT_VERSION = 1
ID_RULE = "id = row * cols + col"
#: Training vectors are capped so the sample stays under this many bytes of float32.
TRAIN_BYTES_MAX = 1 << 28


@dataclass
class IndexInfo:
    """The JSON sidecar of an index."""

    factory: str
    metric: str
    dim: int
    ntotal: int
    cube: str
    cube_hash: str
    grid: dict[str, Any]
    nprobe: int
    train_size: int
    seed: int
    cube_verified: bool = False
    #: :func:`~landprompt.embedder.integrity.files_fingerprint` of the cube when the build began.
    cube_files: str = ""
    id_rule: str = ID_RULE
    #: ``"embedding"`` (d-dim vectors) or ``"code"`` (a version-2 cube's r + 1 code values; queries are
    #: projected into the cube's basis before searching).
    space: str = "embedding"
    faiss_version: str = field(default_factory=lambda: faiss.__version__)
    format: str = INDEX_FORMAT
    format_version: int = INDEX_FORMAT_VERSION

    def save(self, path: Path, expect: bytes | None = None) -> None:
        """Write the sidecar atomically; with ``expect``, only over a sidecar that still holds those bytes.

        Raises:
            ChangedMeanwhileError: if ``expect`` is given and the sidecar changed (see
                :func:`~landprompt.files.write_json`).
        """
        write_json(path, asdict(self), expect=expect)

    @classmethod
    def load(cls, path: Path) -> IndexInfo:
        """Read a sidecar, refusing other formats and versions."""
        if not path.is_file():
            raise BadInputError(
                f"{path} not found: the index is missing or unfinished; run 'landprompt index build'"
            )
        return cls.from_bytes(path.read_bytes(), path)

    @classmethod
    def from_bytes(cls, raw: bytes, path: Path) -> IndexInfo:
        """Parse a sidecar's bytes (read from ``path``, named in errors) as :meth:`load` does."""
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            data = None
        if (
            not isinstance(data, dict)
            or data.get("format") != INDEX_FORMAT
            or data.get("format_version") != INDEX_FORMAT_VERSION
        ):
            raise BadInputError(
                f"{path} is not a landprompt index sidecar of format version {INDEX_FORMAT_VERSION} "
                "(damaged, or written by another version): rebuild it with 'landprompt index build CUBE'"
            )
        try:
            return cls(**data)
        except TypeError as exc:
            raise BadInputError(f"{path} is a damaged index sidecar ({exc}); rebuild the index") from exc


def default_index_path(cube_path: str | Path) -> Path:
    """Where an index of a cube lives by default: ``region.zarr`` -> ``region.faiss``."""
    return Path(cube_path).with_suffix(".faiss")


def sidecar_path(index_path: str | Path) -> Path:
    """The JSON sidecar of an index file."""
    return Path(str(index_path) + ".json")


def build_index(
    cube: str | Path,
    out: str | Path | None = None,
    factory: str | None = None,
    seed: int = 0,
    train_size: int | None = None,
    gpu: bool | None = None,
    progress: bool = True,
    verify: bool = True,
) -> IndexInfo:
    """Build a FAISS inner-product index over the valid pixels of a cube.

    Args:
        cube: Embedding cube path.
        out: Index file (default: :func:`default_index_path`); the sidecar is ``<out>.json``.
        factory: FAISS factory string; default chosen by size (:func:`choose_factory`).
        seed: Seed of the training sample.
        train_size: Training vectors for IVF/PQ indexes (default by factory and memory).
        gpu: Train and add on GPUs (default: when FAISS sees one).
        progress: Show a progress bar.
        verify: Check every chunk against its recorded digest first (:func:`require_intact`); the
            sidecar records whether this was done.

    Returns:
        The sidecar's contents.
    """
    cube_files = files_fingerprint(cube)  # before any read: a cube edited during the build is stale
    ds = open_cube(cube)
    out = Path(out) if out is not None else default_index_path(cube)
    require_writable(out)
    require_writable(sidecar_path(out))
    grid = cube_grid(ds)
    space = "code" if "code" in ds else "embedding"
    dim = int(ds.sizes["k"] if space == "code" else ds.sizes["d"])
    if factory is not None:  # against the pixel count first: refused before the verify pass
        check_factory(factory, grid.rows * grid.cols, dim)
    if verify:
        require_intact(cube, progress)
    n = int(ds["valid"].sum().compute())
    if n == 0:
        raise BadInputError(f"cube {cube} has no valid pixel to index")
    factory = factory or choose_factory(n, dim)
    check_factory(factory, n, dim)
    index = make_index(factory, dim)
    use_gpu = faiss.get_num_gpus() > 0 if gpu is None else gpu
    n_train = 0
    if not index.is_trained:
        n_train = min(train_size or train_size_for(factory, n), TRAIN_BYTES_MAX // (4 * dim), n)
        sample = training_sample(ds, n_train, seed, progress, codes=space == "code")
        _on_device(index, use_gpu).train(sample)
    for ids, vectors in _valid_vectors(ds, grid.cols, progress, "adding to the index", space == "code"):
        index.add_with_ids(vectors, ids)
    info = IndexInfo(
        factory=factory,
        metric="inner_product",
        dim=dim,
        ntotal=int(index.ntotal),
        cube=str(Path(cube).resolve()),
        cube_hash=content_hash(ds),
        grid=grid.to_dict(),
        nprobe=default_nprobe(factory),
        train_size=n_train,
        seed=seed,
        cube_verified=verify,
        cube_files=cube_files,
        space=space,
    )
    with atomic_path(out) as tmp:  # index and sidecar are replaced as one unit: never a mismatched pair
        faiss.write_index(index, str(tmp))
        sidecar_path(out).unlink(missing_ok=True)  # the old pair stops counting just before the swap
    info.save(sidecar_path(out))
    return info


def training_sample(
    ds: xr.Dataset, size: int, seed: int, progress: bool = True, codes: bool = False
) -> np.ndarray:
    """A reproducible uniform sample of ``size`` valid vectors, drawn in one streaming pass.

    With ``codes``, the vectors are a version-2 cube's code values (r + 1), else embeddings (d).

    Each valid pixel gets a random key from a generator seeded by (seed, chunk); the ``size`` smallest
    keys win, so the sample does not depend on how the cube is chunked in memory or on the order of
    reads beyond the chunk grid.
    """
    keys = np.empty(0)
    ids = np.empty(0, dtype=np.int64)
    vectors = np.empty((0, int(ds.sizes["k" if codes else "d"])), dtype=np.float32)
    cols = int(ds.sizes["x"])
    for chunk_ids, chunk_vectors in _valid_vectors(ds, cols, progress, "sampling training vectors", codes):
        chunk_keys = np.random.default_rng([seed, int(chunk_ids[0])]).random(len(chunk_ids))
        keys = np.concatenate([keys, chunk_keys])
        ids = np.concatenate([ids, chunk_ids])
        vectors = np.concatenate([vectors, chunk_vectors])
        if len(keys) > size:
            keep = np.argpartition(keys, size - 1)[:size]
            keys, ids, vectors = keys[keep], ids[keep], vectors[keep]
    return vectors[np.argsort(ids)]


def _valid_vectors(
    ds: xr.Dataset, cols: int, progress: bool, label: str, codes: bool = False
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (ids, vectors) of the valid pixels of each chunk, in chunk order (codes: r + 1 values)."""
    chunks = iter_chunks(ds) if not codes else _code_chunks(ds)
    with progress_bar(label, _n_chunks(ds), progress, transient=True) as advance:
        for window, embedding, valid in chunks:
            rows, cols_ = np.nonzero(valid)
            if len(rows):
                ids = (rows + window.rows.start).astype(np.int64) * cols + (cols_ + window.cols.start)
                yield ids, np.ascontiguousarray(embedding[rows, cols_], dtype=np.float32)
            advance()


def _code_chunks(ds: xr.Dataset) -> Iterator[tuple[ChunkWindow, np.ndarray, np.ndarray]]:
    """A version-2 cube's chunks as (window, float32 codes [h, w, r + 1], valid)."""
    basis = cube_basis(ds)
    for window, raw in iter_raw_chunks(ds):
        yield window, stored_values(raw, basis), raw["valid"].astype(bool)


def _n_chunks(ds: xr.Dataset) -> int:
    chunk_y, chunk_x = ds["valid"].encoding.get("chunks", (ds.sizes["y"], ds.sizes["x"]))[:2]
    return -(-int(ds.sizes["y"]) // int(chunk_y)) * -(-int(ds.sizes["x"]) // int(chunk_x))


def _on_device(index: faiss.Index, use_gpu: bool) -> faiss.Index:
    """The index itself, or for training a GPU clone of its coarse quantizer when GPUs are used."""
    if not use_gpu:
        return index
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:  # train the coarse quantizer's k-means on the GPU; the index stays on the CPU
        ivf.clustering_index = faiss.index_cpu_to_all_gpus(faiss.IndexFlatIP(ivf.d))
    return index
