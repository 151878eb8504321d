"""Integrity of embedding cubes: a damaged chunk or metadata file is an error, never data.

A cube written by :class:`~landprompt.embedder.cube.CubeWriter` records, in its ``integrity`` attr, the
chunked data arrays it wrote window by window (``embedding``, ``valid``, ``scale``, ...). For those arrays

- every chunk is stored (also all-zero ones), so a missing chunk file is damage, not fill;
- every chunk ends in a CRC32C checksum (the Zarr v3 ``crc32c`` codec), so a truncated or altered chunk
  fails its check; cubes in the Zarr v2 layout (for GDAL, which knows no ``crc32c`` codec) have zlib
  chunks instead, whose Adler-32 zlib checks on every decode (the cube readers turn a failure into the
  same named error);
- the per-chunk sha256 digests are kept in ``.landprompt_digests`` (their sha256 is the ``content_hash``).

Readers open cubes through :class:`CheckedStore`, which turns a missing or failing chunk into a
:class:`~landprompt.errors.DamagedCubeError` naming the cube, the chunk, its pixel window and lon/lat
box, at no cost beyond the read itself (the CRC is computed while the chunk is in memory).
:func:`verify_cube` recomputes every digest (``landprompt cube verify``).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import crc32c
import numpy as np
from zarr.abc.store import ByteRequest
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.storage import LocalStore

from landprompt.errors import DamagedCubeError
from landprompt.geo import Grid

INTEGRITY_ATTR = "integrity"
INTEGRITY_VERSION = 1
DIGESTS_FILE = ".landprompt_digests"
#: Key of the ``integrity`` attr listing the arrays checked per chunk but not digested (:class:`ChunkLayout`).
CRC_ONLY_KEY = "crc_only"
_DIGEST_LEN = 64  # hex sha256


@dataclass(frozen=True)
class ChunkLayout:
    """Where the recorded data arrays of a cube keep their chunks.

    Attributes:
        path: The cube directory.
        grid: The cube's grid.
        chunk: Chunk size in pixels along y and x.
        arrays: Names of the chunked data arrays the writer recorded.
        zarr_format: The store's Zarr layout: 3 (chunks under ``<array>/c/``, CRC32C) or 2 (for GDAL).
        crc_only: Arrays stored chunk by chunk with the same checks but outside the chunk digests (an
            overview level's ``valid_fraction``).
    """

    path: Path
    grid: Grid
    chunk: tuple[int, int]
    arrays: tuple[str, ...]
    zarr_format: int = 3
    crc_only: tuple[str, ...] = ()

    @property
    def chunk_prefix(self) -> tuple[str, ...]:
        """Key parts between an array's name and a chunk's indices: ``("c",)`` in Zarr v3, none in v2."""
        return ("c",) if self.zarr_format == 3 else ()

    @property
    def n_chunks(self) -> tuple[int, int]:
        """Chunks along y and x."""
        return -(-self.grid.rows // self.chunk[0]), -(-self.grid.cols // self.chunk[1])

    def locate(self, key: str) -> tuple[str, tuple[int, int]] | None:
        """The (array, chunk index) of a store key, or None if it is no chunk of a recorded array."""
        parts = key.split("/")
        n = len(self.chunk_prefix)
        names = (*self.arrays, *self.crc_only)
        if len(parts) < 3 + n or parts[0] not in names or tuple(parts[1 : 1 + n]) != self.chunk_prefix:
            return None
        try:
            return parts[0], (int(parts[1 + n]), int(parts[2 + n]))
        except ValueError:
            return None

    def window(self, index: tuple[int, int]) -> tuple[slice, slice]:
        """Pixel rows and columns of a chunk."""
        (i, j), (h, w) = index, self.chunk
        return slice(i * h, min((i + 1) * h, self.grid.rows)), slice(j * w, min((j + 1) * w, self.grid.cols))

    def where(self, index: tuple[int, int]) -> str:
        """A chunk's place in words: index, pixel window and lon/lat box."""
        rows, cols = self.window(index)
        try:
            box = self.grid.window(rows, cols).bbox
            lonlat = f"lon {box.minlon:.5f}..{box.maxlon:.5f}, lat {box.minlat:.5f}..{box.maxlat:.5f}"
        except Exception:  # a chunk index beyond the grid (an extra chunk) has no box
            lonlat = "outside the grid"
        return f"chunk {index} (rows {rows.start}:{rows.stop}, cols {cols.start}:{cols.stop}; {lonlat})"

    def damaged(self, name: str, index: tuple[int, int], what: str) -> DamagedCubeError:
        """The error for a damaged chunk of array ``name``."""
        return DamagedCubeError(
            f"cube {self.path} is damaged: {self.where(index)} of '{name}' {what}; "
            f"run 'landprompt cube verify {self.path} --repair-list' and rerun 'landprompt embed run' "
            "with the same arguments to rewrite it"
        )

    def key(self, name: str, index: tuple[int, int], ndim: int) -> str:
        """The store key of a chunk (default Zarr v3 chunk key encoding; v2 with ``/`` separators)."""
        return "/".join([name, *self.chunk_prefix, str(index[0]), str(index[1]), *["0"] * (ndim - 2)])

    def chunk_root(self, name: str) -> Path:
        """The folder holding an array's chunk files."""
        return self.path.joinpath(name, *self.chunk_prefix)

    def read_chunk(self, name: str, index: tuple[int, int], ndim: int) -> np.ndarray:
        """The bytes of an uncompressed chunk (bytes + CRC32C codecs) mapped from its file, checked.

        The file is mapped copy-on-write (no copy out of the page cache; writes stay private), which
        is safe because Zarr replaces chunk files whole (write, then rename) rather than in place.

        Raises:
            DamagedCubeError: if the chunk file is missing or fails its CRC32C.
        """
        try:
            data = _mapped(self.path / self.key(name, index, ndim))
        except FileNotFoundError:
            raise self.damaged(name, index, "is missing") from None
        if not crc_ok(data):
            raise self.damaged(name, index, "fails its checksum (truncated or altered)")
        return data[:-4]


def _mapped(path: Path) -> np.ndarray:
    """A file's bytes as a writeable copy-on-write memory map (an empty array for an empty file)."""
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size == 0:
            return np.zeros(0, np.uint8)
        # no MAP_POPULATE: on a private writeable map it copies every page (measured 3x the read)
        mapped = mmap.mmap(file.fileno(), size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    return np.frombuffer(mapped, dtype=np.uint8)


def crc_ok(data: bytes | memoryview | np.ndarray) -> bool:
    """Whether a stored chunk ends in the CRC32C of the bytes before it (the Zarr ``crc32c`` codec)."""
    raw = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes | memoryview) else data.reshape(-1)
    if len(raw) < 4:
        return False
    body = np.ascontiguousarray(raw[:-4]).data  # crc32c: hardware CRC32C, about 3x google-crc32c's speed
    return bytes(raw[-4:]) == np.uint32(crc32c.crc32c(body)).tobytes()


class CheckedStore(LocalStore):
    """A read-only local Zarr store in which a missing or failing chunk of a recorded array raises.

    Args:
        root: Cube directory.
        layout: The recorded arrays and chunking (:func:`layout_of`).
    """

    def __init__(self, root: Path | str, *, layout: ChunkLayout, read_only: bool = True) -> None:
        super().__init__(root, read_only=True)
        self.layout = layout

    def with_read_only(self, read_only: bool = False) -> CheckedStore:
        """The same store (always read-only)."""
        return type(self)(self.root, layout=self.layout)

    async def get(
        self, key: str, prototype: BufferPrototype | None = None, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        """Read a key; a recorded chunk must exist and pass its CRC32C."""
        buffer = await super().get(key, prototype, byte_range)
        located = self.layout.locate(key)
        if located is None:
            return buffer
        if buffer is None:
            raise self.layout.damaged(*located, "is missing")
        if byte_range is None and self.layout.zarr_format == 3 and not crc_ok(buffer.as_numpy_array()):
            raise self.layout.damaged(*located, "fails its checksum (truncated or altered)")
        return buffer


def integrity_attr(arrays: Iterable[str], zarr_format: int = 3) -> dict[str, Any]:
    """The ``integrity`` attr a writer records: the arrays it writes per chunk window and their check."""
    record = {"version": INTEGRITY_VERSION, "arrays": sorted(arrays), "all_chunks": True}
    if zarr_format == 3:
        return {**record, "checksum": "crc32c"}
    return {**record, "checksum": "zlib-adler32", "zarr_format": zarr_format}


def layout_of(path: Path, attrs: dict[str, Any], chunk: tuple[int, int]) -> ChunkLayout | None:
    """The chunk layout of a cube with integrity records, or None for a cube written without them."""
    record = attrs.get(INTEGRITY_ATTR)
    if not isinstance(record, dict) or record.get("version") != INTEGRITY_VERSION:
        return None
    zarr_format = int(record.get("zarr_format", 3))
    crc_only = tuple(record.get(CRC_ONLY_KEY, ()))
    grid = Grid.from_dict(attrs["grid"])
    return ChunkLayout(Path(path), grid, chunk, tuple(record["arrays"]), zarr_format, crc_only)


def check_metadata(path: Path) -> dict[str, Any] | None:
    """Parse the root and array ``zarr.json`` files of a store; a damaged one raises.

    Returns:
        The root metadata, or None if ``path`` has no ``zarr.json`` (not a Zarr v3 store).

    Raises:
        DamagedCubeError: if a metadata file is not valid JSON or disagrees with the consolidated copy.
    """
    root_file = Path(path) / "zarr.json"
    if not root_file.is_file():
        return None
    root = _read_json(root_file, path)
    consolidated = (root.get("consolidated_metadata") or {}).get("metadata") or {}
    for name, meta in consolidated.items():
        if meta.get("node_type") != "array":
            continue
        array_file = Path(path) / name / "zarr.json"
        if not array_file.is_file():
            raise DamagedCubeError(f"cube {path} is damaged: {array_file} is missing; rebuild the cube")
        stored = _read_json(array_file, path)
        if any(stored.get(k) != meta.get(k) for k in ("shape", "data_type", "codecs", "chunk_grid")):
            raise DamagedCubeError(
                f"cube {path} is damaged: {array_file} disagrees with the consolidated metadata; "
                "rebuild the cube"
            )
    return root


def _read_json(file: Path, cube: Path) -> dict[str, Any]:
    try:
        data = json.loads(file.read_bytes())
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        raise DamagedCubeError(
            f"cube {cube} is damaged: {file} is truncated or not JSON; restore it or rebuild the cube"
        )
    return data


# --- writing the records ------------------------------------------------------------------------------


def write_digests(path: Path, digests: Sequence[bytes]) -> str:
    """Keep the per-chunk digests (row-major) in the cube; returns their sha256, the content hash."""
    blob = b"".join(digests)
    tmp = Path(path) / f"{DIGESTS_FILE}.tmp"
    tmp.write_bytes(blob)
    os.replace(tmp, Path(path) / DIGESTS_FILE)
    return hashlib.sha256(blob).hexdigest()


def read_digests(path: Path, n: int) -> list[str] | None:
    """The recorded per-chunk digests, or None if the cube has no (whole) record of them."""
    file = Path(path) / DIGESTS_FILE
    if not file.is_file():
        return None
    blob = file.read_bytes()
    if len(blob) != n * _DIGEST_LEN:
        return None
    return [blob[k : k + _DIGEST_LEN].decode("ascii", "replace") for k in range(0, len(blob), _DIGEST_LEN)]


def files_fingerprint(path: str | os.PathLike[str], skip: Iterable[str] = ("overviews",)) -> str:
    """sha256 over the relative name, size and mtime (ns) of every file of a store, in name order.

    Cheap (one directory listing, no file read): an index records it at build time, and a differing
    fingerprint at open means a file was rewritten, added or removed since (or the cube was copied), so
    its chunk digests must decide whether the cube still is the one indexed.

    Args:
        path: Cube directory.
        skip: Top-level folders left out (the overview pyramid, which is built after the cube).
    """
    root = Path(path)
    entries = []
    for folder, dirs, files in os.walk(root):
        if Path(folder) == root:
            dirs[:] = [d for d in dirs if d not in set(skip)]
        for name in files:
            file = Path(folder) / name
            try:
                stat = file.stat()
            except FileNotFoundError:  # removed while listed: the fingerprint differs, the digests decide
                continue
            entries.append(f"{file.relative_to(root).as_posix()}\t{stat.st_size}\t{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest()


# --- verifying --------------------------------------------------------------------------------------


@dataclass
class ChunkProblem:
    """One damaged chunk: its index, what is wrong (missing, unreadable, changed, extra) and where."""

    index: tuple[int, int]
    status: str
    detail: str
    where: str


@dataclass
class VerifyReport:
    """What :func:`verify_cube` found."""

    cube: Path
    n_chunks: int
    problems: list[ChunkProblem] = field(default_factory=list)
    records: str = "ok"

    @property
    def ok(self) -> bool:
        """Whether the cube is intact."""
        return not self.problems and self.records == "ok"

    def counts(self) -> dict[str, int]:
        """Problems by status."""
        counts: dict[str, int] = {}
        for problem in self.problems:
            counts[problem.status] = counts.get(problem.status, 0) + 1
        return counts

    def summary(self) -> str:
        """One line: intact, or what is damaged and how to repair it."""
        if self.ok:
            return f"cube {self.cube}: all {self.n_chunks} chunks match their recorded digests"
        parts = [f"{n} {status}" for status, n in sorted(self.counts().items())]
        if self.records != "ok":
            parts.append(self.records)
        return (
            f"cube {self.cube} is damaged: {', '.join(parts)} of {self.n_chunks} chunks; "
            f"'landprompt cube verify {self.cube} --repair-list' marks them for 'landprompt embed run' "
            "with the same arguments to rewrite"
        )


def verify_cube(
    path: str | os.PathLike[str],
    digest: Callable[[dict[str, np.ndarray]], str],
    read_raw: Callable[[ChunkLayout, tuple[int, int]], dict[str, np.ndarray]],
    layout: ChunkLayout,
    content_hash: str | None,
    workers: int = 4,
    on_chunk: Callable[[], None] | None = None,
) -> VerifyReport:
    """Recompute every chunk's digest and compare with the records and the content hash.

    Use :func:`landprompt.embedder.cube.verify` (which supplies the cube's reader and digest).

    Args:
        path: Cube directory.
        digest: The writer's chunk digest (over the encoded arrays of a window).
        read_raw: Reads a chunk's encoded arrays (raises on a missing or failing chunk).
        layout: The cube's chunk layout.
        content_hash: The recorded content hash.
        workers: Chunks read at once.
        on_chunk: Called after each chunk (progress).
    """
    path = Path(path)
    n_rows, n_cols = layout.n_chunks
    indices = [(i, j) for i in range(n_rows) for j in range(n_cols)]
    recorded = read_digests(path, len(indices))
    report = VerifyReport(path, len(indices))

    def check(index: tuple[int, int]) -> tuple[str | None, ChunkProblem | None]:
        try:
            value = digest(read_raw(layout, index))
        except DamagedCubeError as exc:
            status = "missing" if "is missing" in str(exc) else "unreadable"
            return None, ChunkProblem(index, status, str(exc).split("; run")[0], layout.where(index))
        finally:
            if on_chunk is not None:
                on_chunk()
        return value, None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(check, indices))
    found: list[bytes] = []
    for k, (index, (value, problem)) in enumerate(zip(indices, results, strict=True)):
        if problem is not None:
            report.problems.append(problem)
            found.append(b"?" * _DIGEST_LEN)
            continue
        assert value is not None
        found.append(value.encode())
        if recorded is not None and value != recorded[k]:
            report.problems.append(
                ChunkProblem(
                    index, "changed", "its content differs from the recorded digest", layout.where(index)
                )
            )
    report.problems.extend(_extra_chunks(layout))
    if recorded is None:
        report.records = "no per-chunk digest records"
        if content_hash is not None and hashlib.sha256(b"".join(found)).hexdigest() != content_hash:
            report.records = "content hash differs (no per-chunk records to say which chunk)"
        elif content_hash is not None:
            report.records = "ok"
    elif hashlib.sha256("".join(recorded).encode()).hexdigest() != content_hash:
        report.records = "the digest records do not match the content hash"
    report.problems.sort(key=lambda p: (p.index, p.status))
    return report


def _extra_chunks(layout: ChunkLayout) -> list[ChunkProblem]:
    """Files under the recorded arrays' chunk folders that are no chunk of the grid."""
    n_rows, n_cols = layout.n_chunks
    extra = []
    for name in (*layout.arrays, *layout.crc_only):
        root = layout.chunk_root(name)
        if not root.is_dir():
            continue
        for file in root.rglob("*"):
            if not file.is_file() or file.name.startswith(".z"):  # v2 metadata lives beside the chunks
                continue
            located = layout.locate(f"{name}/{file.relative_to(layout.path / name).as_posix()}")
            inside = located is not None and located[1][0] < n_rows and located[1][1] < n_cols
            if inside and not file.name.endswith(".partial"):
                continue
            index = located[1] if located is not None else (-1, -1)
            extra.append(ChunkProblem(index, "extra", f"{file} is no chunk of '{name}'", str(file)))
    return extra


def mark_for_repair(report: VerifyReport, layout: ChunkLayout, progress_dir: str) -> list[tuple[int, int]]:
    """Turn a damaged cube back into a resumable run whose pending chunks are exactly the damaged ones.

    Intact chunks get progress markers holding their recorded digests; damaged and extra chunk files are
    removed and the cube is marked unfinished, so ``embed run`` with the same arguments rewrites them.

    Returns:
        The chunk indices left to rewrite.
    """
    n_rows, n_cols = layout.n_chunks
    recorded = read_digests(layout.path, n_rows * n_cols)
    if recorded is None:
        raise DamagedCubeError(
            f"cube {layout.path} has no per-chunk digest records: it cannot be repaired chunk by chunk; "
            "rebuild it"
        )
    damaged = {p.index for p in report.problems if p.status != "extra"}
    for problem in report.problems:
        if problem.status == "extra":
            Path(problem.where).unlink(missing_ok=True)
    for k, (i, j) in enumerate((i, j) for i in range(n_rows) for j in range(n_cols)):
        if (i, j) in damaged:
            for name in layout.arrays:
                row = layout.chunk_root(name) / str(i)
                for file in row.iterdir() if row.is_dir() else ():
                    if file.name != str(j) and not file.name.startswith(f"{j}."):
                        continue  # another chunk of the row ("1*" would match 10, 12, ...)
                    if file.is_dir():
                        for inner in file.rglob("*"):
                            if inner.is_file():
                                inner.unlink()
                    else:
                        file.unlink()
            continue
        marker = layout.path / progress_dir / str(i) / str(j)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(recorded[k])
    return sorted(damaged)
