"""Search a cube's FAISS index, refusing an index whose cube has changed since it was built."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import faiss
import numpy as np
import xarray as xr

from landprompt.embedder.basis import Basis
from landprompt.embedder.cube import content_hash, cube_basis, open_cube, verify
from landprompt.embedder.integrity import files_fingerprint
from landprompt.errors import BadInputError
from landprompt.geo import Grid
from landprompt.index.build import IndexInfo, default_index_path, sidecar_path

#: Candidates HNSW explores per query (at least k).
HNSW_EF_SEARCH = 128


@dataclass
class Hits:
    """Search results for ``m`` queries: scores (cosine), rows and cols, each (m, k); row -1 = no hit."""

    scores: np.ndarray
    rows: np.ndarray
    cols: np.ndarray


class CubeIndex:
    """A FAISS index over one cube, with its sidecar."""

    def __init__(self, index: faiss.Index, info: IndexInfo, basis: Basis | None = None) -> None:
        if info.space == "code" and basis is None:
            raise BadInputError("an index over a cube's codes needs the cube's basis to project queries")
        self.index = index
        self.info = info
        self.basis = basis if info.space == "code" else None
        self.grid = Grid.from_dict(info.grid)
        self.nprobe = info.nprobe
        self.ef_search = HNSW_EF_SEARCH
        self._ivf = faiss.try_extract_index_ivf(index) is not None
        self._hnsw = "HNSW" in info.factory

    @classmethod
    def open(cls, path: str | Path, cube: str | Path | None = None, check: bool = True) -> CubeIndex:
        """Open an index file; with ``check``, refuse it if its cube changed since the build.

        Args:
            path: Index file (``.faiss``); its sidecar is ``<path>.json``.
            cube: The cube it should belong to (default: the path recorded in the sidecar).
            check: Refuse the index if its cube changed since the build (:func:`_require_fresh`).
        """
        path = Path(path)
        info = IndexInfo.load(sidecar_path(path))
        if not path.is_file():
            raise BadInputError(f"index file {path} is missing: run 'landprompt index build'")
        ds = open_cube(cube or info.cube) if check or info.space == "code" else None
        if check and ds is not None:
            _require_fresh(path, info, ds, Path(cube or info.cube))
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise BadInputError(
                f"index {path} cannot be read (damaged or not a FAISS file: "
                f"{str(exc).splitlines()[0][:80]}); rebuild it with "
                f"'landprompt index build {cube or info.cube}'"
            ) from exc
        ip = index.metric_type == faiss.METRIC_INNER_PRODUCT
        metric = "inner_product" if ip else f"metric {index.metric_type}"
        if index.ntotal != info.ntotal or index.d != info.dim or metric != info.metric:
            raise BadInputError(
                f"index {path} disagrees with its sidecar ({index.ntotal} vectors of {index.d}-d, {metric}; "
                f"sidecar says {info.ntotal} of {info.dim}-d, {info.metric}); rebuild it with "
                f"'landprompt index build {cube or info.cube}'"
            )
        return cls(index, info, None if ds is None else cube_basis(ds))

    @classmethod
    def for_cube(cls, cube: str | Path) -> CubeIndex | None:
        """The fresh default index of a cube, or None if it has none (a stale one raises)."""
        path = default_index_path(cube)
        if not sidecar_path(path).is_file():
            if path.exists():
                raise BadInputError(
                    f"{path} has no sidecar {sidecar_path(path).name} (an unfinished build, or copied "
                    f"without it): rebuild it with 'landprompt index build {cube}', "
                    "or delete it to scan exactly"
                )
            return None
        return cls.open(path, cube)

    def search(self, queries: np.ndarray, k: int) -> Hits:
        """The ``k`` best pixels for each query vector (m, d) by inner product.

        For an index over a version-2 cube's codes the queries are projected into its basis first.
        """
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if self.basis is not None:
            queries = self.basis.project(queries)
        queries = np.ascontiguousarray(queries)
        if queries.shape[1] != self.info.dim:
            raise BadInputError(f"query has dimension {queries.shape[1]}, the index {self.info.dim}")
        params = None
        if self.nprobe and self._ivf:
            params = faiss.SearchParametersIVF(nprobe=self.nprobe)
        elif self._hnsw:
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k))
        k = min(k, int(self.index.ntotal))
        scores, ids = self.index.search(queries, k, params=params)
        rows, cols = np.divmod(ids, self.grid.cols)
        missing = ids < 0
        rows[missing] = cols[missing] = -1
        return Hits(scores=scores, rows=rows, cols=cols)


#: ``(cube path, content hash, file fingerprint)`` of cubes this process verified whole: a sidecar that
#: cannot record the fingerprint (a read-only folder, another index's cube) costs one verify a process.
_VERIFIED: set[tuple[str, str, str]] = set()
_VERIFIED_MAX = 1024


def _require_fresh(path: Path, info: IndexInfo, ds: xr.Dataset, cube: Path) -> None:
    """Refuse an index whose cube changed since it was built.

    The content hash catches a cube rewritten by landprompt; the file fingerprint (names, sizes, mtimes)
    catches a chunk edited in place. A cube whose fingerprint differs (edited, or only copied) is
    accepted only if every chunk still matches its recorded digest (a full :func:`verify`); once it
    passes, the process remembers it and the sidecar records the cube's new fingerprint
    (:func:`_record_fingerprint`), so the next open of a copied cube is cheap again.
    """
    stale = content_hash(ds) != info.cube_hash
    if not stale:
        files = files_fingerprint(cube)  # before the verify: a file changed during it differs next time
        key = (str(cube.resolve()), info.cube_hash, files) if files != info.cube_files else None
        if key is not None and key not in _VERIFIED:
            stale = not verify(cube, progress=False).ok
            if not stale:
                if len(_VERIFIED) >= _VERIFIED_MAX:
                    _VERIFIED.clear()
                _VERIFIED.add(key)
                _record_fingerprint(path, info, cube, files)
    if stale:
        raise BadInputError(
            f"index {path} is stale: its cube {cube} changed since it was built; "
            f"rebuild it with 'landprompt index build {cube}'"
        )


def _record_fingerprint(path: Path, info: IndexInfo, cube: Path, files: str) -> None:
    """Record a verified cube's file fingerprint in the index's sidecar (compare-and-swap, atomic).

    Only for the sidecar's own cube, or a cube whose default index this is (a cube copied with its
    index): the recorded cube path is never changed, so opening an index against a copy of its cube
    leaves the sidecar naming the original. Skipped when the sidecar changed since it was read (a
    rebuild won, before or during this write) or cannot be written (a read-only folder): the index
    still serves, and the process remembers the verify.
    """
    resolved = cube.resolve()
    if resolved != Path(info.cube).resolve() and default_index_path(resolved) != path.resolve():
        return
    sidecar = sidecar_path(path)
    try:
        before = sidecar.read_bytes()
        if IndexInfo.from_bytes(before, sidecar) != info:
            return
        replace(info, cube_files=files).save(sidecar, expect=before)
    except (OSError, BadInputError):
        return
