"""FAISS index types: which one a cube of a given size gets, and validated factory strings."""

from __future__ import annotations

import math

import faiss

from landprompt.errors import BadInputError

#: Up to this many vectors an exact (flat) inner-product index is fast enough.
EXACT_MAX = 200_000
#: IVF lists keep float32 vectors (exact, the fastest lists to scan) while they fit in this many bytes ...
FLAT_BYTES_MAX = 1 << 30
#: IVF lists keep float16 vectors (near-exact) while they fit in this many bytes ...
FP16_BYTES_MAX = 4 << 30
#: ... then 8-bit scalar-quantised vectors up to this many bytes, then product quantisation.
SQ8_BYTES_MAX = 8 << 30


def nlist_for(n: int) -> int:
    """Number of IVF lists for ``n`` vectors: about sqrt(n), a power of two in [64, 65536].

    sqrt(n) keeps k-means training affordable on a CPU (10^7 vectors -> 4096 lists); pass a factory
    string for more lists on a GPU.
    """
    return int(min(65_536, max(64, 2 ** round(math.log2(math.sqrt(max(n, 1)))))))


def choose_factory(n: int, dim: int) -> str:
    """The FAISS factory string for ``n`` vectors of dimension ``dim``, chosen by size.

    * ``n <= EXACT_MAX``: ``Flat`` (exact inner product);
    * vectors up to :data:`FLAT_BYTES_MAX` as float32 (e.g. 10^6 version-2 codes): ``IVF{nlist},Flat``,
      whose lists scan about 3x faster than float16 ones;
    * vectors up to :data:`FP16_BYTES_MAX` as float16: ``IVF{nlist},SQfp16``;
    * up to :data:`SQ8_BYTES_MAX` at one byte per dimension: ``IVF{nlist},SQ8``;
    * larger: ``IVF{nlist},PQ{m}``, ``m = dim / 4`` bytes per vector (Europe-scale shards).
    """
    if n <= EXACT_MAX:
        return "Flat"
    if n * dim * 4 <= FLAT_BYTES_MAX:
        return f"IVF{nlist_for(n)},Flat"
    if n * dim * 2 <= FP16_BYTES_MAX:
        return f"IVF{nlist_for(n)},SQfp16"
    if n * dim <= SQ8_BYTES_MAX:
        return f"IVF{nlist_for(n)},SQ8"
    m = max(m for m in (8, 16, 32, 48, 64, 96, 128) if dim % m == 0 and m <= max(8, dim // 4))
    return f"IVF{nlist_for(n)},PQ{m}"


def default_nprobe(factory: str) -> int:
    """IVF lists probed per query by default: 1/128 of the lists, at least 8 (0 for non-IVF)."""
    nlist = _ivf_lists(factory)
    return 0 if nlist is None else min(nlist, max(8, nlist // 128))


def _ivf_lists(factory: str) -> int | None:
    head = factory.split(",")[0]
    if head.startswith("IVF") and head[3:].isdigit():
        return int(head[3:])
    return None


def make_index(factory: str, dim: int) -> faiss.Index:
    """Create an empty inner-product index that accepts our pixel ids (``add_with_ids``).

    Raises:
        BadInputError: if FAISS cannot parse the factory string.
    """
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise BadInputError(
            f"unknown FAISS factory string {factory!r}: use e.g. 'Flat', 'IVF1024,SQ8', 'IVF4096,PQ32' "
            "or 'HNSW32'"
        ) from exc
    if faiss.try_extract_index_ivf(index) is None and not isinstance(index, faiss.IndexIDMap):
        index = faiss.IndexIDMap2(index)
    return index


def check_factory(factory: str, n: int, dim: int) -> None:
    """Refuse, before any work, a factory string that cannot serve ``n`` vectors of dimension ``dim``.

    Raises:
        BadInputError: if the string does not parse, asks for more IVF lists than vectors, or a product
            quantiser whose sub-vector count does not divide ``dim``.
    """
    nlist = _ivf_lists(factory)
    if nlist is not None and nlist > n:  # before parsing: FAISS allocates the lists' centroids up front
        raise BadInputError(
            f"factory {factory!r} asks for {nlist:,} IVF lists but the cube has {n:,} vectors "
            f"(at most one list per vector): use IVF{nlist_for(n)} or 'Flat'"
        )
    for part in factory.split(","):  # before FAISS, whose own refusal reads "unknown factory"
        m = part[2:].split("x")[0] if part.startswith("PQ") else ""
        if m.isdigit() and (int(m) == 0 or dim % int(m)):
            raise BadInputError(
                f"factory {factory!r}: PQ{m} needs a sub-vector count dividing the dimension {dim}"
            )
    make_index(factory, dim)


def train_size_for(factory: str, n: int) -> int:
    """Training vectors for an index: 64 per IVF list (at most 1,000,000 and at most ``n``)."""
    nlist = _ivf_lists(factory)
    wanted = 64 * nlist if nlist else 0
    if "PQ" in factory:
        wanted = max(wanted, 256 * 64)
    return min(n, 1_000_000, wanted)
