"""Embedding cube: per-pixel embeddings on a :class:`~landprompt.geo.Grid`, stored as Zarr v3.

A cube is a Zarr v3 group that opens as an :class:`xarray.Dataset`:

- ``embedding`` [y, x, d]: float16, or int8 with a per-pixel float32 ``scale`` [y, x]
  (symmetric quantisation: ``q = round(v / scale)``, ``scale = max|v| / 127``; a zero vector has scale 0);
- ``valid`` bool [y, x]; invalid pixels store zeros;
- coords ``x``, ``y`` (pixel centres in the grid CRS) and a CF ``spatial_ref`` that rioxarray reads;
- attrs ``landprompt_format="embedding-cube"``, ``format_version``, ``dtype``, ``grid``
  (:meth:`Grid.to_dict`), ``complete`` and the caller's attrs (model id, checkpoint hash, CLIP model, ...).

Format version 4 (written when the writer is given a :class:`~landprompt.embedder.basis.Basis`) stores,
instead of ``embedding``, ``code`` [y, x, k] with ``k = r + 1`` (or ``r`` for a basis without offset)
values a pixel, int8 ``round(127 v / max|v|)`` or float16, nothing else a pixel, and once the basis
``basis`` [d, r] and ``offset`` [d] (float32) with the attr ``basis`` (kind, rank, provenance, sha256,
``norm_scale``, the norm ``weights`` w). A pixel's unit embedding is
``(basis @ v[:r] + offset * v[r]) / sqrt(sum_i w_i v_i^2)`` (see :mod:`landprompt.embedder.basis`).
Versions 2 and 3 (read only) stored ``k = r + 1`` codes with a per-pixel int8 ``scale`` (float32 and
float16). Readers decode every version to the same float32 embeddings; versions they do not know are
refused.

Arrays are chunked ``chunk x chunk x d``. A :class:`CubeWriter` writes one chunk at a time and marks it
finished with a file ``.landprompt_progress/<i>/<j>`` inside the store holding the chunk's digest, so a
killed run resumes where it stopped and ends bitwise identical to an uninterrupted one. Finishing combines
the chunk digests into the ``content_hash`` attr, which indexes use to tell when a cube has changed.
The run fingerprint (grid, dim, dtype, chunk, attrs) is the cube's own metadata: resuming compares it
with the arguments of the new run.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import os
import shutil
import uuid
import warnings
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, cast, get_args

import dask.array as da
import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
import zarr
from numcodecs import Zlib
from zarr.codecs import Crc32cCodec, ZstdCodec

from landprompt.embedder import integrity
from landprompt.embedder.basis import Basis
from landprompt.errors import BadInputError, DamagedCubeError, NotACubeError
from landprompt.files import (
    part_path,
    place_exclusively,
    remove_stale_parts_once,
    restore_set_aside,
    swap_into_place,
)
from landprompt.geo import Grid
from landprompt.progress import progress_bar

FORMAT_NAME = "embedding-cube"
FORMAT_VERSION = 1
#: Format version of cubes written in a basis (4: no per-pixel scale; 3 and 2, read only, had one).
BASIS_FORMAT_VERSION = 4
#: First format version whose int8 codes carry no per-pixel scale (the norm weights give it).
UNSCALED_VERSION = 4
#: Format versions of cubes stored in a basis that this landprompt reads.
BASIS_READ_VERSIONS = (2, 3, 4)
#: Format versions this landprompt reads.
READ_VERSIONS = (FORMAT_VERSION, *BASIS_READ_VERSIONS)
DEFAULT_CHUNK = 256
CubeDtype = Literal["fp16", "int8"]
#: Zarr layouts a cube can be written in: 3 (default; zstd + CRC32C chunks) or 2 (zlib chunks, which the
#: GDAL that rasterio ships reads, see :data:`GDAL_COMPRESSOR`).
ZarrFormat = Literal[2, 3]
#: Chunk compressor of the Zarr v2 (GDAL-readable) layout: zlib is built into every GDAL, and its stream
#: ends in an Adler-32 of the chunk, so a damaged chunk fails to decode instead of reading as data. Level 0
#: (stored blocks) keeps that check at the speed of the default layout, for ~10 % more disk than zstd
#: (``benchmarks/gdal_layout.py``).
GDAL_COMPRESSOR = Zlib(level=0)

_PROGRESS = ".landprompt_progress"
_RESERVED = frozenset(
    {
        "landprompt_format",
        "format_version",
        "dtype",
        "grid",
        "complete",
        "content_hash",
        "basis",
        integrity.INTEGRITY_ATTR,
    }
)
_FP16_MAX = float(np.finfo(np.float16).max)
_T = TypeVar("_T")


@dataclass(frozen=True)
class ChunkWindow:
    """One chunk of a cube: its index in the chunk grid and the pixel rows and columns it covers."""

    index: tuple[int, int]
    rows: slice
    cols: slice

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the window."""
        return self.rows.stop - self.rows.start, self.cols.stop - self.cols.start


# --- writing ---------------------------------------------------------------------------------------


class CubeWriter:
    """Writes a cube chunk by chunk; creating it on an unfinished run's path resumes that run.

    Several processes may write different chunks of the same cube at once (e.g. Dask workers).

    Args:
        path: Cube directory (``*.zarr``). Created if missing.
        grid: Pixel grid of the cube.
        dim: Embedding dimension.
        dtype: ``"fp16"`` or ``"int8"`` (with a per-pixel scale).
        chunk: Chunk size in pixels along y and x.
        attrs: JSON-able attributes to store (model id, checkpoint hash, CLIP model, time range, ...).
        basis: Store the cube in this basis (format version 4, in the basis's
            :meth:`~landprompt.embedder.basis.Basis.diagonal` form); ``dim`` must equal its d.
        zarr_format: 3 (default) or 2, the layout the GDAL in rasterio's wheels (3.10) and QGIS read
            (zlib chunks without the CRC32C codec; see :mod:`landprompt.embedder.integrity`).

    Raises:
        BadInputError: if an argument is invalid or ``path`` holds something other than this run.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        grid: Grid,
        dim: int,
        dtype: CubeDtype = "fp16",
        chunk: int = DEFAULT_CHUNK,
        attrs: dict[str, Any] | None = None,
        basis: Basis | None = None,
        zarr_format: ZarrFormat = 3,
    ) -> None:
        self.path = Path(path)
        self.grid, self.dim, self.dtype, self.chunk = grid, int(dim), dtype, int(chunk)
        self.attrs = _check_run_args(self.dim, dtype, self.chunk, attrs)
        if basis is not None and basis.dim != self.dim:
            raise BadInputError(f"the basis has d = {basis.dim} but the cube's embeddings have {self.dim}")
        self.basis = None if basis is None else basis.diagonal()
        if zarr_format not in get_args(ZarrFormat):
            raise BadInputError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
        self.zarr_format = zarr_format
        self.version = FORMAT_VERSION if basis is None else BASIS_FORMAT_VERSION
        self._windows = chunk_windows(grid.shape, self.chunk)
        self._arrays: dict[str, Any] = {}
        if _is_empty_or_missing(self.path):
            self._create()
        self._check_fingerprint()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": {}}  # open zarr arrays stay in their process

    # --- state -------------------------------------------------------------------------------------
    def windows(self) -> list[ChunkWindow]:
        """All chunk windows, row-major."""
        return list(self._windows)

    def pending(self) -> list[ChunkWindow]:
        """Chunk windows not finished yet, row-major."""
        done = self._done_indices()
        return [w for w in self._windows if w.index not in done]

    @property
    def n_done(self) -> int:
        """Number of finished chunks."""
        return len(self._done_indices())

    @property
    def done(self) -> bool:
        """Whether every chunk is finished."""
        return self.n_done == len(self._windows)

    # --- writing -----------------------------------------------------------------------------------
    def write_chunk(
        self,
        window: ChunkWindow,
        embedding: np.ndarray,
        valid: np.ndarray | None = None,
        *,
        features: bool = False,
    ) -> None:
        """Write one chunk, then mark it finished.

        Args:
            window: One of :meth:`windows`.
            embedding: float [h, w, dim]; pixels with a non-finite value become invalid.
            valid: Optional bool [h, w]; ``False`` marks a pixel invalid.
            features: ``embedding`` holds the basis features [h, w, basis.feature_width] (a cube in a
                basis only; exact).
        """
        i, j = window.index
        if not (0 <= i < self._n_chunks[0] and 0 <= j < self._n_chunks[1]) or window != self._window(i, j):
            raise BadInputError(f"{window} is not a chunk window of this cube; use CubeWriter.windows()")
        if self.basis is None:
            if features:
                raise BadInputError("features need a cube stored in a basis (format version 4)")
            data = _encode(embedding, valid, window.shape, self.dim, self.dtype)
        else:
            data = _encode_codes(embedding, valid, window.shape, self.basis, self.dtype, features)
        for name, values in data.items():
            _remove_partials(self.path, name, window.index, values.ndim, self.zarr_format)
            self._array(name)[window.rows, window.cols] = values
        self._mark_done(window, _digest(data))

    def finalize(self) -> Path:
        """Check every chunk is finished, mark the cube complete and drop the progress markers.

        Returns:
            The cube path.

        Raises:
            BadInputError: if chunks are missing.
        """
        if not self._is_complete():
            missing = len(self.pending())
            if missing:
                raise BadInputError(
                    f"{missing} of {len(self._windows)} chunks of {self.path} are not written yet; "
                    "write CubeWriter.pending() first"
                )
            for stray in self.path.glob("*.partial"):  # metadata writes cut short by a kill
                stray.unlink(missing_ok=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # v3 consolidated metadata; the progress folder
                zarr.consolidate_metadata(str(self.path))
                _update_attrs(self.path, {"content_hash": self._combined_digest(), "complete": True})
        shutil.rmtree(self.path / _PROGRESS, ignore_errors=True)
        return self.path

    # --- internals ---------------------------------------------------------------------------------
    @property
    def _n_chunks(self) -> tuple[int, int]:
        return math.ceil(self.grid.rows / self.chunk), math.ceil(self.grid.cols / self.chunk)

    def _window(self, i: int, j: int) -> ChunkWindow:
        return self._windows[i * self._n_chunks[1] + j]

    def _create(self) -> None:
        """Lay out the store (metadata, coords, spatial_ref) in a temp sibling and rename it into place."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_parts_once(self.path.parent)
        tmp = part_path(self.path)
        try:
            template, encoding = _template(
                self.grid, self.dim, self.dtype, self.chunk, self.attrs, self.basis, self.zarr_format
            )
            template.to_zarr(
                str(tmp),
                mode="w-",
                compute=False,
                zarr_format=self.zarr_format,
                consolidated=False,
                encoding=encoding,
            )
            if self.basis is not None:
                group = zarr.open_group(str(tmp), mode="r+")
                group["basis"][...] = self.basis.matrix  # type: ignore[index]
                group["offset"][...] = self.basis.offset  # type: ignore[index]
            try:
                os.replace(tmp, self.path)  # an empty directory at path is replaced
            except OSError:
                if _is_empty_or_missing(self.path):
                    raise
                # another process laid out the same path first: use theirs (fingerprint checked next)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _check_fingerprint(self) -> None:
        group = _open_group(self.path)
        if group is None or group.attrs.get("landprompt_format") != FORMAT_NAME:
            raise BadInputError(
                f"{self.path} exists and is not a landprompt embedding cube: use another path or delete it"
            )
        if group.attrs.get("format_version") != self.version:
            raise BadInputError(
                f"{self.path} holds a cube of format version {group.attrs.get('format_version')!r}, not "
                f"{self.version}: use another path or delete it"
            )
        stored = _stored_fingerprint(group)
        wanted = {
            "grid": self.grid,
            "dim": self.dim,
            "dtype": self.dtype,
            "chunk": (min(self.chunk, self.grid.rows), min(self.chunk, self.grid.cols)),
            "attrs": self.attrs,
            "basis": None if self.basis is None else basis_attrs(self.basis),
            "zarr_format": self.zarr_format,
        }
        differ = [k for k in wanted if stored.get(k) != wanted[k]]
        if differ:
            raise BadInputError(
                f"{self.path} holds another run (different {', '.join(differ)}): "
                "use another path or delete it"
            )

    def _array(self, name: str) -> Any:
        """The store's array ``name``, opened on first use."""
        if name not in self._arrays:
            array = cast(zarr.Array, zarr.open_group(str(self.path), mode="r+")[name])
            # every chunk is stored, so a missing chunk file is damage (see embedder.integrity)
            self._arrays[name] = array.with_config({"write_empty_chunks": True})
        return self._arrays[name]

    def _marker(self, window: ChunkWindow) -> Path:
        return self.path / _PROGRESS / str(window.index[0]) / str(window.index[1])

    def _mark_done(self, window: ChunkWindow, digest: str) -> None:
        marker = self._marker(window)
        marker.parent.mkdir(parents=True, exist_ok=True)
        tmp = marker.with_name(f".{marker.name}.{uuid.uuid4().hex[:8]}")
        tmp.write_text(digest)
        os.replace(tmp, marker)

    def _combined_digest(self) -> str:
        """sha256 over the chunk digests in row-major order: the cube's content hash.

        The digests are kept in the cube (:func:`integrity.write_digests`) for ``cube verify``.
        """
        return integrity.write_digests(self.path, [self._marker(w).read_bytes() for w in self._windows])

    def _is_complete(self) -> bool:
        group = _open_group(self.path)
        return group is not None and group.attrs.get("complete") is True

    def _done_indices(self) -> set[tuple[int, int]]:
        if self._is_complete():
            return {w.index for w in self._windows}
        done: set[tuple[int, int]] = set()
        root = self.path / _PROGRESS
        if root.is_dir():
            for row in os.scandir(root):
                if row.is_dir() and row.name.isdigit():
                    done.update(
                        (int(row.name), int(f.name)) for f in os.scandir(row.path) if f.name.isdigit()
                    )
        n_rows, n_cols = self._n_chunks
        return {(i, j) for i, j in done if i < n_rows and j < n_cols}


def write_cube(
    path: str | os.PathLike[str],
    embedding: np.ndarray,
    grid: Grid,
    valid: np.ndarray | None = None,
    dtype: CubeDtype = "fp16",
    chunk: int = DEFAULT_CHUNK,
    attrs: dict[str, Any] | None = None,
    overwrite: bool = False,
    basis: Basis | None = None,
    zarr_format: ZarrFormat = 3,
) -> Path:
    """Write a whole embedding array as a cube.

    The cube is written into a temp sibling directory and renamed into place: an error leaves nothing behind.

    Args:
        path: Cube directory (``*.zarr``).
        embedding: float [rows, cols, dim] on ``grid``; pixels with a non-finite value become invalid.
        grid: Pixel grid of the cube.
        valid: Optional bool [rows, cols]; ``False`` marks a pixel invalid.
        dtype: ``"fp16"`` or ``"int8"`` (with a per-pixel scale).
        chunk: Chunk size in pixels along y and x.
        attrs: JSON-able attributes to store.
        overwrite: Replace an existing ``path``.
        basis: Store the cube in this basis (format version 4).
        zarr_format: 3 (default) or 2 (readable by the GDAL rasterio ships; see :class:`CubeWriter`).

    Returns:
        The cube path.
    """
    path = Path(path)
    embedding = np.asarray(embedding)
    if embedding.ndim != 3 or embedding.shape[:2] != grid.shape:
        raise BadInputError(
            f"embedding must have shape (rows, cols, dim) = {grid.shape} + (dim,), got {embedding.shape}"
        )
    if valid is not None and np.shape(valid) != grid.shape:
        raise BadInputError(f"valid mask must have shape {grid.shape}, got {np.shape(valid)}")
    _check_run_args(embedding.shape[2], dtype, chunk, attrs)
    if dtype == "fp16" and basis is None:
        _check_fp16_range(embedding)
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise BadInputError(f"{path} already exists: choose another path or overwrite it (overwrite=True)")
    tmp = part_path(path)
    try:
        writer = CubeWriter(tmp, grid, embedding.shape[2], dtype, chunk, attrs, basis, zarr_format)
        for w in writer.windows():
            writer.write_chunk(w, embedding[w.rows, w.cols], None if valid is None else valid[w.rows, w.cols])
        writer.finalize()
        if overwrite:
            swap_into_place(tmp, path)
        else:
            place_exclusively(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def chunk_windows(shape: tuple[int, int], chunk: int) -> list[ChunkWindow]:
    """Row-major chunk windows of ``chunk x chunk`` pixels covering ``shape`` (edge windows are smaller)."""
    rows, cols = shape
    return [
        ChunkWindow((i, j), slice(r, min(r + chunk, rows)), slice(c, min(c + chunk, cols)))
        for i, r in enumerate(range(0, rows, chunk))
        for j, c in enumerate(range(0, cols, chunk))
    ]


# --- reading ---------------------------------------------------------------------------------------


def open_cube(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open a finished cube lazily (dask-backed); ``ds.rio.crs`` gives its CRS.

    Raises:
        NotACubeError: if ``path`` is missing, not a Zarr store, not a cube, of another format version, or
            an unfinished run.
    """
    path = Path(path)
    if not path.exists() and restore_set_aside(path) is None:  # a swap killed half-way is undone
        raise NotACubeError(f"{path} does not exist: give the path of an embedding cube (.zarr)")
    integrity.check_metadata(path)  # a truncated zarr.json is damage, not "not a store"
    group = _open_group(path)
    if group is None:
        raise NotACubeError(f"{path} is not a Zarr store: give the path of an embedding cube (.zarr)")
    attrs = group.attrs
    if attrs.get("landprompt_format") != FORMAT_NAME:
        raise NotACubeError(
            f"{path} is a Zarr store but not a landprompt embedding cube (no landprompt_format attr)"
        )
    version = attrs.get("format_version")
    if version not in READ_VERSIONS:
        raise NotACubeError(
            f"{path} has embedding-cube format version {version!r}; this landprompt "
            f"reads versions {', '.join(map(str, READ_VERSIONS))}: upgrade landprompt or rebuild the cube"
        )
    if version in BASIS_READ_VERSIONS and not all(name in group for name in ("code", "basis", "offset")):
        raise NotACubeError(
            f"{path} is a version-{version} cube without its basis (basis, offset or code arrays "
            "missing): rebuild it"
        )
    if attrs.get("complete") is not True:
        raise NotACubeError(f"{path} is an unfinished cube run: resume it by running the same command again")
    ds = _open_checked(path, attrs)
    if version in BASIS_READ_VERSIONS:
        try:
            cube_basis(ds)
        except BadInputError as exc:
            raise NotACubeError(f"{path} has a bad stored basis: {exc}; rebuild the cube") from exc
    return ds


def _open_checked(path: Path, attrs: Any) -> xr.Dataset:
    """Open a cube through :class:`integrity.CheckedStore` when it has integrity records."""
    layout = _layout(path, dict(attrs), group=None)
    store: Any = str(path) if layout is None else integrity.CheckedStore(path, layout=layout)
    try:
        ds = xr.open_zarr(store, chunks={}, zarr_format=_zarr_format(path))
    except DamagedCubeError:
        raise
    except Exception as exc:  # metadata zarr itself cannot parse
        raise DamagedCubeError(f"cube {path} is damaged: {exc}; rebuild the cube") from exc
    ds.encoding["source"] = str(path)
    for name in ("basis", "offset"):  # small: kept in memory so queries do not read them again
        if name in ds:
            ds[name].load()
    grid = Grid.from_dict(ds.attrs["grid"])
    if not (
        np.allclose(ds["x"].to_numpy(), grid.x_coords()) and np.allclose(ds["y"].to_numpy(), grid.y_coords())
    ):
        raise DamagedCubeError(
            f"cube {path} is damaged: its x/y coordinates disagree with its grid; rebuild it"
        )
    return ds


def _layout(path: Path, attrs: dict[str, Any], group: Any) -> integrity.ChunkLayout | None:
    """The integrity layout of a cube (None for a cube written without integrity records)."""
    group = group if group is not None else _open_group(path)
    try:
        chunks = group["valid"].chunks
    except (KeyError, TypeError):
        return None
    return integrity.layout_of(path, attrs, (int(chunks[0]), int(chunks[1])))


def cube_basis(ds: xr.Dataset) -> Basis | None:
    """The stored basis of a cube in a basis (versions 2-4), or None for a version-1 cube.

    Raises:
        BadInputError: if the basis or (version 4) its norm weights are missing, malformed or NaN.
    """
    if "basis" not in ds:
        return None
    if "landprompt_basis" not in ds.encoding:  # read and checked once per opened cube, not per query
        ds.encoding["landprompt_basis"] = _read_basis(ds)
    return cast(Basis, ds.encoding["landprompt_basis"])


def _read_basis(ds: xr.Dataset) -> Basis:
    info = ds.attrs.get("basis") or {}
    weights = None
    if ds.attrs.get("format_version", 0) >= UNSCALED_VERSION:
        weights = info.get("weights")
        if not isinstance(weights, list) or len(weights) != ds.sizes["k"]:
            raise BadInputError(f"the basis attr needs norm weights, one a code ({ds.sizes['k']})")
    try:
        norm_scale = float(info.get("norm_scale", 1.0))
        weights = None if weights is None else np.asarray(weights, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"the basis attr is malformed: {exc}") from exc
    return Basis(
        ds["basis"].to_numpy(),
        ds["offset"].to_numpy(),
        str(info.get("kind", "")),
        dict(info.get("info", {})),
        norm_scale=norm_scale,
        weights=weights,
    )


def basis_attrs(basis: Basis) -> dict[str, Any]:
    """The ``basis`` attr of a cube in a basis: kind, rank, provenance, the sha256 of B and b, the weights."""
    digest = hashlib.sha256(basis.matrix.tobytes() + basis.offset.tobytes()).hexdigest()
    attrs = {
        "kind": basis.kind,
        "rank": basis.rank,
        "dim": basis.dim,
        "info": basis.info,
        "sha256": digest,
        "norm_scale": basis.norm_scale,
        **({} if basis.weights is None else {"weights": basis.weights.tolist()}),
    }
    return dict(json.loads(json.dumps(attrs)))


def cube_grid(ds: xr.Dataset) -> Grid:
    """The grid of a cube, or of a window of one (``ds.isel(y=..., x=...)``)."""
    if "grid" not in ds.attrs:
        raise NotACubeError(
            "dataset has no 'grid' attribute: open it with landprompt.embedder.cube.open_cube"
        )
    full = Grid.from_dict(ds.attrs["grid"])
    shape = (ds.sizes["y"], ds.sizes["x"])
    row, col = (int(v) for v in full.xy_to_rowcol(float(ds["x"][0]), float(ds["y"][0])))
    if shape == full.shape and (row, col) == (0, 0):
        return full
    return full.window(slice(row, row + shape[0]), slice(col, col + shape[1]))


def read_window(ds: xr.Dataset, rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray]:
    """Decode a window of a cube.

    Args:
        ds: A cube from :func:`open_cube`.
        rows: Rows (positions in ``ds``).
        cols: Columns (positions in ``ds``).

    Returns:
        float32 embeddings [h, w, d] (zeros where invalid) and the bool valid mask [h, w].
    """
    return _reader(ds)(rows, cols)


def iter_chunks(
    ds: xr.Dataset,
    rows: slice | None = None,
    cols: slice | None = None,
    windows: list[ChunkWindow] | None = None,
) -> Iterator[tuple[ChunkWindow, np.ndarray, np.ndarray]]:
    """Stream a cube (or a window of it) chunk by chunk, so the whole cube is never in memory.

    The next chunk is read and decoded in a background thread while the caller works on the current
    one, so reading overlaps with the caller's computation. ``windows`` (some of :func:`cube_windows`)
    reads only those chunks, instead of every one of ``rows`` and ``cols``.

    Yields:
        The chunk window (clipped to ``rows``/``cols``; positions in ``ds``), its float32 embeddings [h, w, d]
        and valid mask [h, w], as :func:`read_window` gives them.

    Raises:
        ValueError: If both ``windows`` and ``rows``/``cols`` are given.
    """
    if windows is not None and (rows is not None or cols is not None):
        raise ValueError("give the chunk windows or rows/cols to clip to, not both")
    read = _reader(ds)
    for window, data in read_ahead(cube_windows(ds, rows, cols) if windows is None else windows, read):
        yield window, *data


def iter_raw_chunks(
    ds: xr.Dataset, rows: slice | None = None, cols: slice | None = None
) -> Iterator[tuple[ChunkWindow, dict[str, np.ndarray]]]:
    """Stream a cube's stored arrays undecoded, chunk by chunk, the next chunk read in the background.

    Yields:
        The chunk window and its raw arrays: ``code`` (versions 2-4) or ``embedding`` (version 1),
        ``valid`` and, for int8 cubes of versions 1-3, ``scale`` (see :func:`stored_values`).
    """
    read = raw_reader(ds)
    yield from read_ahead(cube_windows(ds, rows, cols), read)


def cube_windows(ds: xr.Dataset, rows: slice | None = None, cols: slice | None = None) -> list[ChunkWindow]:
    """The cube's chunk windows (its own chunking, dask's or Zarr's) clipped to ``rows`` and ``cols``."""
    r0, r1 = _span(rows, ds.sizes["y"])
    c0, c1 = _span(cols, ds.sizes["x"])
    row_edges, col_edges = (_chunk_edges(ds, dim) for dim in ("y", "x"))
    return [
        ChunkWindow(
            (i, j),
            slice(max(row_edges[i], r0), min(row_edges[i + 1], r1)),
            slice(max(col_edges[j], c0), min(col_edges[j + 1], c1)),
        )
        for i in _overlapping(row_edges, r0, r1)
        for j in _overlapping(col_edges, c0, c1)
    ]


def _overlapping(edges: list[int], start: int, stop: int) -> range:
    """Indices of the chunks between consecutive ``edges`` that overlap ``[start, stop)``, by bisection."""
    if start >= stop:
        return range(0)
    return range(
        max(bisect.bisect_right(edges, start) - 1, 0), min(bisect.bisect_left(edges, stop), len(edges) - 1)
    )


def read_ahead(
    windows: list[ChunkWindow], read: Callable[[slice, slice], _T]
) -> Iterator[tuple[ChunkWindow, _T]]:
    """``(window, read(window.rows, window.cols))`` in order, the next read in a thread meanwhile.

    One thread for the whole list: make ``read`` once (e.g. :func:`raw_reader`) and stream every window.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(read, windows[0].rows, windows[0].cols) if windows else None
        for n, window in enumerate(windows):
            assert pending is not None
            data = pending.result()
            if n + 1 < len(windows):
                pending = pool.submit(read, windows[n + 1].rows, windows[n + 1].cols)
            yield window, data


def raw_reader(ds: xr.Dataset) -> Callable[[slice, slice], dict[str, np.ndarray]]:
    """A reader of windows of a cube's stored arrays, undecoded (as :func:`iter_raw_chunks` yields them).

    Make it once and call it for every window: it opens the arrays and the chunk layout once, straight
    from Zarr when ``ds`` is a whole cube, else through xarray. A window inside one chunk of an
    uncompressed array is read from the chunk file itself (one read, its CRC32C checked, no copy through
    Zarr's codec pipeline).
    """
    values = "code" if "code" in ds else "embedding"
    names = [values, "valid"] + (["scale"] if "scale" in ds else [])
    arrays = _zarr_arrays(ds, names)
    layout = _layout(Path(ds.encoding["source"]), dict(ds.attrs), None) if arrays is not None else None
    raw_files = {
        name: array for name, array in (arrays or {}).items() if layout is not None and _is_raw(array)
    }

    def read(rows: slice, cols: slice) -> dict[str, np.ndarray]:
        if arrays is None:
            sub = ds[names].isel(y=rows, x=cols).compute()
            return {name: sub[name].to_numpy() for name in names}
        out = {}
        for name, array in arrays.items():
            direct = _read_in_chunk(layout, name, array, rows, cols) if name in raw_files else None
            out[name] = array[rows, cols] if direct is None else direct
        return out

    source = ds.encoding.get("source")
    return _zlib_checked(read, ds, names) if source and _zarr_format(Path(source)) == 2 else read


def _zlib_checked(
    read: Callable[[slice, slice], _T], ds: xr.Dataset, names: list[str]
) -> Callable[[slice, slice], _T]:
    """``read`` of a Zarr v2 cube, whose zlib chunks fail their Adler-32 on decode: damage, named."""

    def checked(rows: slice, cols: slice) -> _T:
        try:
            return read(rows, cols)
        except zlib.error as exc:
            source = Path(ds.encoding["source"])
            layout = _layout(source, dict(ds.attrs), group=None)
            if layout is None:
                raise DamagedCubeError(f"cube {source} is damaged: {exc}; rebuild it") from exc
            index = (rows.start // layout.chunk[0], cols.start // layout.chunk[1])
            what = f"fails its zlib check, truncated or altered ({exc})"
            raise layout.damaged("/".join(names), index, what) from exc

    return checked


def _is_raw(array: Any) -> bool:
    """Whether a Zarr array stores its chunks as plain little-endian bytes followed by a CRC32C."""
    codecs = getattr(array.metadata, "codecs", None)  # Zarr v2 arrays have compressors, not codecs
    return (
        codecs is not None
        and len(codecs) == 2
        and isinstance(codecs[1], Crc32cCodec)
        and (array.dtype.itemsize == 1 or getattr(codecs[0], "endian", None) in (None, "little"))
        and np.little_endian
        and type(codecs[0]).__name__ == "BytesCodec"
    )


def _read_in_chunk(
    layout: integrity.ChunkLayout | None, name: str, array: Any, rows: slice, cols: slice
) -> np.ndarray | None:
    """A window of an uncompressed array read from its chunk file, or None if it spans several chunks."""
    (r0, r1, r_step), (c0, c1, c_step) = rows.indices(array.shape[0]), cols.indices(array.shape[1])
    ch, cw = array.chunks[:2]
    i, j = r0 // ch, c0 // cw
    if layout is None or r_step != 1 or c_step != 1 or r1 <= r0 or c1 <= c0:
        return None
    if (r1 - 1) // ch != i or (c1 - 1) // cw != j:
        return None
    data = layout.read_chunk(name, (i, j), array.ndim)
    if data.size != math.prod(array.chunks) * array.dtype.itemsize:
        raise layout.damaged(name, (i, j), f"holds {data.size} bytes, not a whole chunk")
    data = data.view(array.dtype).reshape(array.chunks)
    return data[r0 - i * ch : r1 - i * ch, c0 - j * cw : c1 - j * cw]


def _reader(ds: xr.Dataset) -> Callable[[slice, slice], tuple[np.ndarray, np.ndarray]]:
    """A window decoder to float32 embeddings [h, w, d] (version 2: through the stored basis)."""
    read_raw = raw_reader(ds)
    basis = cube_basis(ds)

    def read(rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray]:
        raw = read_raw(rows, cols)
        valid = raw["valid"].astype(bool)
        values = stored_values(raw, basis)  # version 4: unit codes, decoded without a second normalisation
        embedding = values if basis is None else basis.decode(values, unit=True)
        embedding[~valid] = 0
        return embedding, valid

    return read


def stored_values(raw: dict[str, np.ndarray], basis: Basis | None) -> np.ndarray:
    """float32 values (h, w, k) of a window's raw arrays: the int8 scale applied, version-4 codes unit.

    Args:
        raw: From :func:`iter_raw_chunks`.
        basis: The cube's :func:`cube_basis`.
    """
    values = raw["code" if "code" in raw else "embedding"].astype(np.float32)
    if "scale" in raw:
        values *= raw["scale"].astype(np.float32)[..., None]
    elif basis is not None and basis.weights is not None:
        values *= basis.unit_scale(values)[..., None]
    return values


def _zarr_arrays(ds: xr.Dataset, names: list[str]) -> dict[str, Any] | None:
    """The cube's Zarr arrays if ``ds`` is a whole cube opened from ``ds.encoding['source']``."""
    source = ds.encoding.get("source")
    cache = ds.encoding.setdefault("landprompt_arrays", {})  # opened once per Dataset, not per read
    key = (tuple(names), ds.sizes["y"], ds.sizes["x"])
    if key not in cache:
        cache[key] = _open_zarr_arrays(ds, source, names)
    return cache[key]


def _open_zarr_arrays(ds: xr.Dataset, source: str | None, names: list[str]) -> dict[str, Any] | None:
    group = _open_group(Path(source)) if source else None
    if group is None or any(name not in group for name in names):
        return None
    layout = _layout(Path(source), dict(group.attrs), group)  # type: ignore[arg-type]
    if layout is not None:
        group = zarr.open_group(integrity.CheckedStore(Path(str(source)), layout=layout), mode="r")
    arrays = {name: group[name] for name in names}
    if arrays["valid"].shape != (ds.sizes["y"], ds.sizes["x"]):  # type: ignore[union-attr]
        return None  # a window of a cube: positions differ from the store's
    return arrays


def content_hash(ds: xr.Dataset) -> str:
    """The cube's content hash (sha256 over its chunks' digests), recorded when the run finished."""
    value = ds.attrs.get("content_hash")
    if not isinstance(value, str):
        raise NotACubeError("the cube has no content_hash attr: open it with open_cube, or rewrite it")
    return value


def verify(path: str | os.PathLike[str], progress: bool = True) -> integrity.VerifyReport:
    """Recompute every chunk's digest of a cube against its records and content hash (``cube verify``).

    Other stages (``index build``, ``cube convert``) call this before trusting a cube; see
    :func:`require_intact`.

    Raises:
        NotACubeError: if ``path`` is no finished cube (a damaged metadata file raises DamagedCubeError).
    """
    ds = open_cube(path)
    path = Path(path)
    layout = _layout(path, dict(ds.attrs), group=None)
    if layout is None:  # a cube written before integrity records: its content hash is all there is
        group = _open_group(path)
        chunks = group["valid"].chunks
        names = [n for n in ("embedding", "scale", "valid") if n in group]
        layout = integrity.ChunkLayout(path, cube_grid(ds), (int(chunks[0]), int(chunks[1])), tuple(names))
        plain = True
    else:
        plain = False
    arrays: dict[str, Any] = {}

    def read_raw(layout: integrity.ChunkLayout, index: tuple[int, int]) -> dict[str, np.ndarray]:
        if not arrays:
            store: Any = str(path) if plain else integrity.CheckedStore(path, layout=layout)
            group = zarr.open_group(store, mode="r")
            arrays.update({name: group[name] for name in layout.arrays})
        rows, cols = layout.window(index)
        try:
            return {name: np.asarray(array[rows, cols]) for name, array in arrays.items()}
        except DamagedCubeError:
            raise
        except Exception as exc:  # a codec failing on a damaged chunk
            raise layout.damaged(layout.arrays[0], index, f"cannot be decoded ({exc})") from exc

    with progress_bar("verifying chunks", math.prod(layout.n_chunks), progress, transient=True) as advance:
        return integrity.verify_cube(
            path, _digest, read_raw, layout, ds.attrs.get("content_hash"), on_chunk=advance
        )


def require_intact(path: str | os.PathLike[str], progress: bool = True) -> None:
    """Raise :class:`~landprompt.errors.DamagedCubeError` (one line) unless :func:`verify` finds it intact."""
    report = verify(path, progress)
    if not report.ok:
        raise DamagedCubeError(report.summary())


def mark_for_repair(path: str | os.PathLike[str], report: integrity.VerifyReport) -> list[tuple[int, int]]:
    """Make a damaged cube a resumable run whose pending chunks are exactly those ``report`` lists.

    ``embed run`` (or a :class:`CubeWriter`) with the same arguments then rewrites just those chunks.

    Returns:
        The chunk indices to rewrite.
    """
    path = Path(path)
    layout = _layout(path, dict(_open_group(path).attrs), group=None)
    if layout is None:
        raise DamagedCubeError(f"cube {path} has no integrity records: it cannot be repaired chunk by chunk")
    pending = integrity.mark_for_repair(report, layout, _PROGRESS)
    _update_attrs(path, {"complete": False})
    return pending


def describe(ds: xr.Dataset) -> dict[str, Any]:
    """A JSON-able summary of a cube (for ``landprompt cube info``)."""
    grid = cube_grid(ds)
    chunks = [int(_chunk_edges(ds, dim)[1]) for dim in ("y", "x")]
    basis = cube_basis(ds)
    return {
        "shape": list(grid.shape),
        "dim": int(ds.sizes["d"]),
        "format_version": int(ds.attrs["format_version"]),
        "rank": None if basis is None else basis.rank,
        "dtype": ds.attrs["dtype"],
        "crs": grid.crs.to_string(),
        "bounds": list(grid.bounds),
        "resolution": list(grid.resolution),
        "chunk": [*chunks, int(ds.sizes["d"] if basis is None else ds.sizes["k"])],
        "valid_fraction": float(ds["valid"].mean().compute()),  # dask: chunk by chunk
        "attrs": {k: v for k, v in ds.attrs.items() if k != "grid"},
    }


# --- helpers ---------------------------------------------------------------------------------------


def _check_run_args(dim: int, dtype: str, chunk: int, attrs: dict[str, Any] | None) -> dict[str, Any]:
    """Validate run arguments; return the attrs as they read back from JSON."""
    if dim <= 0:
        raise BadInputError(f"embedding dim must be positive, got {dim}")
    if dtype not in get_args(CubeDtype):
        raise BadInputError(f"cube dtype must be one of {get_args(CubeDtype)}, got {dtype!r}")
    if chunk <= 0:
        raise BadInputError(f"chunk size must be positive, got {chunk}")
    attrs = dict(attrs or {})
    clash = sorted(_RESERVED & attrs.keys())
    if clash:
        raise BadInputError(f"attrs {clash} are reserved by the cube format; rename them")
    try:
        return dict(json.loads(json.dumps(attrs, allow_nan=False)))
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"cube attrs must be JSON-serialisable: {exc}") from exc


def _digest(data: dict[str, np.ndarray]) -> str:
    """sha256 of a chunk's encoded arrays (names, dtypes, shapes and bytes)."""
    digest = hashlib.sha256()
    for name in sorted(data):
        values = np.ascontiguousarray(data[name])
        digest.update(f"{name}:{values.dtype.str}:{values.shape}".encode())
        digest.update(values.tobytes())
    return digest.hexdigest()


def _check_fp16_range(embedding: np.ndarray) -> None:
    with np.errstate(invalid="ignore"):
        too_big = np.isfinite(embedding) & (np.abs(embedding) > _FP16_MAX)
    if too_big.any():
        raise BadInputError(f"embedding values exceed the float16 range (±{_FP16_MAX:g}): use dtype='int8'")


def _encode(
    embedding: np.ndarray, valid: np.ndarray | None, shape: tuple[int, int], dim: int, dtype: CubeDtype
) -> dict[str, np.ndarray]:
    """Encode one window: zero invalid pixels, quantise; deterministic for the same input."""
    emb, ok = _checked_window(embedding, valid, (*shape, dim), "embedding")
    return {**_quantise(emb, dtype, "embedding"), "valid": ok}


def _checked_window(
    values: np.ndarray, valid: np.ndarray | None, shape: tuple[int, int, int], what: str
) -> tuple[np.ndarray, np.ndarray]:
    """float32 values with invalid (or non-finite) pixels zeroed, and the valid mask."""
    arr = np.asarray(values, dtype=np.float32)
    if arr.shape != shape:
        raise BadInputError(f"chunk {what} must have shape {shape}, got {arr.shape}")
    ok = np.asarray(np.isfinite(arr).all(axis=-1))
    if valid is not None:
        if np.shape(valid) != shape[:2]:
            raise BadInputError(f"chunk valid mask must have shape {shape[:2]}, got {np.shape(valid)}")
        ok &= np.asarray(valid, dtype=bool)
    return np.where(ok[..., None], arr, np.float32(0)), ok


def _quantise(values: np.ndarray, dtype: CubeDtype, name: str) -> dict[str, np.ndarray]:
    """float16 values, or int8 with a per-pixel scale ``max|v| / 127`` (scale 0 for a zero vector)."""
    if dtype == "fp16":
        _check_fp16_range(values)
        return {name: values.astype(np.float16)}
    scale = np.abs(values).max(axis=-1) / np.float32(127)
    q = np.rint(values / np.where(scale > 0, scale, np.float32(1))[..., None])
    return {name: np.clip(q, -127, 127).astype(np.int8), "scale": scale.astype(np.float32)}


def _encode_codes(
    values: np.ndarray,
    valid: np.ndarray | None,
    shape: tuple[int, int],
    basis: Basis,
    dtype: CubeDtype,
    features: bool,
) -> dict[str, np.ndarray]:
    """Encode one window of a cube in a basis from embeddings [h, w, d] or features [h, w, r]."""
    width = basis.feature_width if features else basis.dim
    arr, ok = _checked_window(values, valid, (*shape, width), "features" if features else "embedding")
    codes = basis.codes_from_features(arr) if features else basis.codes_from_embeddings(arr)
    codes[~ok] = 0
    ok &= np.any(codes != 0, axis=-1)  # B z + b = 0 has no direction
    if dtype == "int8":  # version 4: the scale follows from the codes (their norm weights)
        peak = np.abs(codes).max(axis=-1, keepdims=True)
        codes = np.rint(codes * (np.float32(127) / np.where(peak > 0, peak, np.float32(1))))
        return {"code": np.clip(codes, -127, 127).astype(np.int8), "valid": ok}
    return {"code": codes.astype(np.float16), "valid": ok}


def _template(
    grid: Grid,
    dim: int,
    dtype: CubeDtype,
    chunk: int,
    attrs: dict[str, Any],
    basis: Basis | None = None,
    zarr_format: ZarrFormat = 3,
) -> tuple[xr.Dataset, dict[str, dict[str, Any]]]:
    """A lazy (all-zero) dataset with the cube's layout, and its Zarr encoding."""
    rows, cols = grid.shape

    def lazy(np_dtype: Any, *extra: int) -> Any:
        return da.zeros((rows, cols, *extra), dtype=np_dtype, chunks=(chunk, chunk, *extra))

    values_dtype = np.float16 if dtype == "fp16" else np.int8
    data_vars: dict[str, Any] = {"valid": (("y", "x"), lazy(bool))}
    if basis is None:
        data_vars["embedding"] = (("y", "x", "d"), lazy(values_dtype, dim))
    else:
        data_vars["code"] = (("y", "x", "k"), lazy(values_dtype, basis.code_size))
        data_vars["basis"] = (("d", "r"), da.zeros(basis.matrix.shape, dtype=np.float32))
        data_vars["offset"] = (("d",), da.zeros(basis.offset.shape, dtype=np.float32))
    if basis is None and dtype == "int8":  # version 1; version 4 int8 codes need no scale
        data_vars["scale"] = (("y", "x"), lazy(np.float32))
    cube_attrs = {
        "landprompt_format": FORMAT_NAME,
        "format_version": FORMAT_VERSION if basis is None else BASIS_FORMAT_VERSION,
        "dtype": dtype,
        "grid": grid.to_dict(),
        "complete": False,
        integrity.INTEGRITY_ATTR: integrity.integrity_attr(
            (n for n in data_vars if n not in ("basis", "offset")), zarr_format
        ),
        **({} if basis is None else {"basis": basis_attrs(basis)}),
        **attrs,
    }
    ds = xr.Dataset(data_vars, coords={"y": grid.y_coords(), "x": grid.x_coords()}, attrs=cube_attrs)
    for axis in ("x", "y"):  # CF names: GDAL takes these dims as the raster's x and y
        ds[axis].attrs.update(axis=axis.upper(), standard_name=f"projection_{axis}_coordinate")
    ds = ds.rio.write_crs(grid.crs).rio.write_transform(grid.transform)
    encoding: dict[str, dict[str, Any]] = {}
    for name, var in ds.data_vars.items():
        if name in ("basis", "offset"):
            encoding[str(name)] = {"chunks": var.shape, "fill_value": 0, "_FillValue": None}
            continue
        var.attrs["coordinates"] = "spatial_ref"  # so plain xr.open_zarr makes spatial_ref a coordinate
        encoding[str(name)] = {
            **var.encoding,
            "chunks": var.data.chunksize,
            "fill_value": 0,
            "compressors": _compressors(str(name), var.dtype),
        }
        if var.dtype.kind == "f":
            encoding[str(name)]["_FillValue"] = None  # no CF masking: zeros are data
    if zarr_format == 2:  # every array, coordinates too, in zlib, which every GDAL reads
        for name in [*ds.data_vars, *ds.coords]:
            values = encoding.setdefault(str(name), {})
            values.pop("fill_value", None)  # v2: missing chunks read as 0 all the same; every chunk is stored
            values.update(_FillValue=None, compressors=(GDAL_COMPRESSOR,))
            values["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
    return ds, encoding


def _compressors(name: str, dtype: np.dtype[Any]) -> tuple[Any, ...]:
    """Every chunk carries a CRC32C; only the mask and float16 values are worth compressing.

    int8 values and float32 scales hardly compress (zstd keeps > 99 % of their bytes) but cost a
    decompression on every read, so they are stored raw: a chunk file is the array's bytes and its CRC32C.
    """
    if name == "valid" or dtype == np.float16:
        return (ZstdCodec(), Crc32cCodec())
    return (Crc32cCodec(),)


def user_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """The caller's attrs of a cube: everything but the format's own."""
    return {k: v for k, v in attrs.items() if k not in _RESERVED}


def _stored_fingerprint(group: Any) -> dict[str, Any]:
    """The run fingerprint of an existing cube: its grid, dim, dtype, chunk and caller attrs."""
    attrs = dict(group.attrs)
    try:
        values = group["embedding"] if "embedding" in group else group["code"]
        return {
            "grid": Grid.from_dict(attrs["grid"]),
            "dim": int(values.shape[2] if "embedding" in group else group["basis"].shape[0]),
            "dtype": attrs["dtype"],
            "chunk": (int(values.chunks[0]), int(values.chunks[1])),  # clipped to a small grid
            "attrs": user_attrs(attrs),
            "basis": attrs.get("basis"),
            "zarr_format": int(group.metadata.zarr_format),
        }
    except (KeyError, IndexError, TypeError, ValueError):
        return {}


def _open_group(path: Path) -> Any:
    """The Zarr group at ``path``, or None if there is none."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return zarr.open_group(str(path), mode="r")
    except (FileNotFoundError, ValueError, KeyError, NotADirectoryError):
        return None


def _zarr_format(path: Path) -> ZarrFormat:
    """The Zarr layout of the store at ``path``: 2 when it has v2 metadata, else 3."""
    return 2 if (path / ".zgroup").is_file() else 3


def _update_attrs(path: Path, values: dict[str, Any]) -> None:
    """Update a finished store's root attrs (a v2 store's consolidated copy, ``.zmetadata``, too)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.open_group(str(path), mode="r+").attrs.update(values)
        if _zarr_format(path) == 2 and (path / ".zmetadata").is_file():
            zarr.consolidate_metadata(str(path))


def _is_empty_or_missing(path: Path) -> bool:
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def _remove_partials(
    root: Path, name: str, index: tuple[int, int], ndim: int, zarr_format: ZarrFormat = 3
) -> None:
    """Remove temp files a killed Zarr write left for this chunk (the chunk is rewritten whole)."""
    key = root / name / ("c" if zarr_format == 3 else "") / str(index[0]) / str(index[1])
    if ndim == 3:
        key = key / "0"
    if key.parent.is_dir():
        for stray in key.parent.glob(f"{key.name}.*.partial"):
            stray.unlink(missing_ok=True)


def _span(sel: slice | None, size: int) -> tuple[int, int]:
    start, stop, step = (sel or slice(None)).indices(size)
    if step != 1:
        raise BadInputError(f"window slices must have step 1, got {sel}")
    return start, max(start, stop)


def _chunk_edges(ds: xr.Dataset, dim: str) -> list[int]:
    """Chunk boundaries of ``ds`` along ``dim`` (dask chunks, else the Zarr chunks, else one chunk)."""
    size = ds.sizes[dim]
    sizes = ds["valid"].chunksizes.get(dim)
    if sizes is None:
        step = int(ds["valid"].encoding.get("preferred_chunks", {}).get(dim, size))
        sizes = tuple(min(step, size - s) for s in range(0, size, step))
    return [0, *np.cumsum(sizes).tolist()]
