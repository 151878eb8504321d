r"""Photo embeddings: CLIP image embeddings of the catalog's photos, batched, resumable, sharded by rank.

Format ``photo-embeddings`` version 1, a Zarr v3 group:

=============  ==============  ==============================================================
array          dtype, shape    values
=============  ==============  ==============================================================
``embedding``  float16 [N, D]  L2-normalised CLIP image embedding; row = ``photos.photo_id``;
                               zeros where not embedded
``status``     uint8 [N]       0 pending, 1 done, 2 missing (no file, URL failed), 3 corrupt
                               (not a decodable image)
=============  ==============  ==============================================================

Both are chunked ``chunk_rows`` rows. Attributes (on the group and on ``embedding``):
``landprompt_format``, ``format_version``, ``clip_model``, ``clip_pretrained``, ``clip_id``,
``embed_dim``, ``catalog_id``. Error messages are appended to ``.landprompt_errors/rank-<r>.jsonl``
inside the group. Photos are read from their local ``path``, else downloaded from their ``url`` once
into an on-disk cache (``cache_dir``, default ``<out>.cache``) through an injectable ``fetch``.

**Several GPUs.** Rows are sharded by chunk: chunk ``c`` belongs to rank ``c % world_size``, so ranks
never write the same chunk. Run one process per GPU with torchrun, which sets ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK``::

    torchrun --nproc-per-node 4 --no-python landprompt pairs photos --catalog pairs.duckdb \\
        --out photos.zarr --clip ViT-B-32 --pretrained laion2b_s34b_b79k

Every rank reads the catalog read-only; with ``WORLD_SIZE`` > 1 the statuses are copied into the
catalog's ``photos.embed_status`` afterwards, by ``landprompt pairs photos ... --sync-only`` (with one
process this happens at the end of the run). A killed run resumes from the ``status`` array.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr
from PIL import Image, ImageOps, UnidentifiedImageError

from landprompt.embedder.clip import ClipModel
from landprompt.errors import BadInputError
from landprompt.files import atomic_path
from landprompt.pairs.catalog import Catalog
from landprompt.pairs.http import FetchBytes, http_get_photo
from landprompt.progress import progress_bar

FORMAT_NAME = "photo-embeddings"
FORMAT_VERSION = 1
STATUS = {"pending": 0, "done": 1, "missing": 2, "corrupt": 3}
STATUS_NAMES = {v: k for k, v in STATUS.items()}
DEFAULT_CHUNK_ROWS = 1024
_ERRORS = ".landprompt_errors"


class PhotoError(Exception):
    """A photo that cannot be embedded; ``status`` is ``missing`` or ``corrupt``."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class EmbedReport:
    """What one rank embedded."""

    rank: int
    world_size: int
    assigned: int = 0
    already: int = 0
    done: int = 0
    missing: int = 0
    corrupt: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report (with photos per second)."""
        rate = (self.done + self.missing + self.corrupt) / self.seconds if self.seconds else 0.0
        return {**self.__dict__, "photos_per_s": round(rate, 2)}


def rank_and_world(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """Rank and world size: the arguments, else ``RANK``/``WORLD_SIZE`` (torchrun), else 0 and 1."""
    r = int(os.environ.get("RANK", "0")) if rank is None else rank
    w = int(os.environ.get("WORLD_SIZE", "1")) if world_size is None else world_size
    if w < 1 or not 0 <= r < w:
        raise BadInputError(f"rank {r} is not in 0..{w - 1} (world size {w})")
    return r, w


def embed_photos(
    catalog: Catalog | str | Path,
    out: str | Path,
    clip: ClipModel,
    *,
    batch_size: int = 64,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    cache_dir: str | Path | None = None,
    fetch: FetchBytes = http_get_photo,
    rank: int | None = None,
    world_size: int | None = None,
    threads: int = 8,
    retry_missing: bool = False,
    sync: bool | None = None,
    progress: bool = True,
) -> EmbedReport:
    """Embed this rank's pending photos into ``out`` (see the module docstring).

    Args:
        catalog: An open catalog, or its path (opened read-only while embedding).
        out: The embeddings group (``.zarr``), created on first use.
        clip: The CLIP model.
        batch_size: Images per forward pass (and per write).
        chunk_rows: Rows per chunk (new arrays only; the unit of rank sharding).
        cache_dir: Download cache for photos with a URL only.
        fetch: ``url -> bytes`` for downloads (default: one quick retry, then the photo is missing).
        rank: This process's rank (default ``$RANK`` or 0).
        world_size: Number of processes (default ``$WORLD_SIZE`` or 1).
        threads: Threads loading and decoding images.
        retry_missing: Try photos marked missing again (e.g. after a network outage).
        sync: Copy statuses into the catalog at the end (default: when ``world_size`` is 1).
        progress: Show a progress bar.
    """
    rank, world = rank_and_world(rank, world_size)
    started = time.perf_counter()
    photos, catalog_id = _photo_rows(catalog)
    n_rows = int(photos["photo_id"].max()) + 1 if len(photos) else 0
    group = _open_or_create(Path(out), n_rows, clip, catalog_id, chunk_rows)
    embedding, status = group["embedding"], group["status"]
    assert isinstance(embedding, zarr.Array) and isinstance(status, zarr.Array)
    chunk = int(embedding.chunks[0])
    mine = photos[(photos["photo_id"] // chunk) % world == rank].sort_values("photo_id")
    current = np.asarray(status[:]) if len(mine) else np.zeros(0, np.uint8)
    redo = {STATUS["pending"], STATUS["missing"]} if retry_missing else {STATUS["pending"]}
    todo = mine[np.isin(current[mine["photo_id"].to_numpy()], list(redo))] if len(mine) else mine
    report = EmbedReport(rank, world, assigned=len(mine), already=len(mine) - len(todo))
    cache = Path(cache_dir) if cache_dir is not None else Path(f"{out}.cache")
    log = Path(out) / _ERRORS / f"rank-{rank}.jsonl"
    with (
        ThreadPoolExecutor(max(1, threads)) as pool,
        progress_bar("embedding photos", len(todo), progress) as advance,
    ):
        for batch in _batches(todo, batch_size):
            loaded = list(pool.map(lambda r: _load(r, cache, fetch), batch.itertuples(index=False)))
            _write_batch(batch["photo_id"].to_numpy(np.int64), loaded, clip, embedding, status, log, report)
            advance(len(batch))
    report.seconds = time.perf_counter() - started
    if sync if sync is not None else world == 1:
        sync_status(catalog, out)
    return report


def _photo_rows(catalog: Catalog | str | Path) -> tuple[pd.DataFrame, str]:
    sql = "SELECT photo_id, path, url FROM photos ORDER BY photo_id"
    if isinstance(catalog, Catalog):
        return catalog.query_df(sql), catalog.catalog_id
    with Catalog.open(catalog, read_only=True) as opened:
        return opened.query_df(sql), opened.catalog_id


def _open_or_create(out: Path, n_rows: int, clip: ClipModel, catalog_id: str, chunk_rows: int) -> zarr.Group:
    attrs: dict[str, Any] = {
        "landprompt_format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "clip_model": clip.name,
        "clip_pretrained": clip.pretrained or "",
        "clip_id": clip.id,
        "embed_dim": clip.embed_dim,
        "catalog_id": catalog_id,
    }
    if out.exists():
        group = zarr.open_group(str(out), mode="r+")
        found = dict(group.attrs)
        if found.get("landprompt_format") != FORMAT_NAME:
            raise BadInputError(f"{out} exists and is not a photo-embeddings array: choose another path")
        for key in ("clip_id", "catalog_id"):
            if found.get(key) != attrs[key]:
                raise BadInputError(
                    f"{out} holds embeddings with {key} {found.get(key)!r}, not {attrs[key]!r}: "
                    "use the same CLIP model and catalog, or a new output path"
                )
    else:
        group = zarr.open_group(str(out), mode="a", zarr_format=3)
        group.attrs.update(attrs)
    for name, dtype, tail in (("embedding", "float16", (clip.embed_dim,)), ("status", "uint8", ())):
        array = _array(group, name, (n_rows, *tail), (chunk_rows, *tail), dtype)
        if array.shape[0] < n_rows:
            array.resize((n_rows, *tail))
    group["embedding"].attrs.update(attrs)
    return group


def _array(
    group: zarr.Group, name: str, shape: tuple[int, ...], chunks: tuple[int, ...], dtype: str
) -> zarr.Array:
    """The group's array ``name``, created if missing (another rank creating it at once is fine)."""
    if name not in group:
        with contextlib.suppress(zarr.errors.ContainsArrayError):
            group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=0)
    array = group[name]
    assert isinstance(array, zarr.Array)
    return array


def _batches(frame: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    for start in range(0, len(frame), max(1, size)):
        yield frame.iloc[start : start + size]


def _load(row: Any, cache: Path, fetch: FetchBytes) -> Image.Image | PhotoError:
    """The photo of a catalog row as an RGB image (EXIF orientation applied), or why not."""
    try:
        data = _photo_bytes(row.path, row.url, cache, fetch)
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            return ImageOps.exif_transpose(opened).convert("RGB")
    except PhotoError as exc:
        return exc
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        return PhotoError("corrupt", f"{type(exc).__name__}: {exc}")


def _photo_bytes(path: Any, url: Any, cache: Path, fetch: FetchBytes) -> bytes:
    if isinstance(path, str) and path:
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            if not (isinstance(url, str) and url):
                raise PhotoError("missing", f"{type(exc).__name__}: {exc}") from exc
    if isinstance(url, str) and url:
        return cached_fetch(url, cache, fetch)
    raise PhotoError("missing", "the photo has neither a readable path nor a URL")


def cached_fetch(url: str, cache: Path, fetch: FetchBytes) -> bytes:
    """The bytes of ``url``, downloaded once into ``cache/<sha256[:2]>/<sha256>`` (atomic writes).

    Raises:
        PhotoError: ``missing`` when the download fails.
    """
    key = hashlib.sha256(url.encode()).hexdigest()
    path = cache / key[:2] / key
    if path.is_file():
        return path.read_bytes()
    try:
        data = fetch(url)
    except Exception as exc:
        raise PhotoError("missing", f"download of {url} failed: {type(exc).__name__}: {exc}") from exc
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return data


def _write_batch(
    ids: np.ndarray,
    loaded: Sequence[Image.Image | PhotoError],
    clip: ClipModel,
    embedding: zarr.Array,
    status: zarr.Array,
    log: Path,
    report: EmbedReport,
) -> None:
    """Embed the good images of a batch; write embeddings, statuses and errors of every row."""
    good = [i for i, item in enumerate(loaded) if isinstance(item, Image.Image)]
    vectors = np.zeros((len(ids), clip.embed_dim), np.float16)
    if good:
        images = [loaded[i] for i in good]
        vectors[good] = clip.encode_images(images, batch_size=len(images)).astype(np.float16)  # type: ignore[arg-type]
    codes = np.array(
        [STATUS["done"] if isinstance(x, Image.Image) else STATUS[x.status] for x in loaded], np.uint8
    )
    failures = [(int(i), x) for i, x in zip(ids, loaded, strict=True) if isinstance(x, PhotoError)]
    if failures:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as f:
            for photo_id, error in failures:
                f.write(
                    json.dumps({"photo_id": photo_id, "status": error.status, "error": str(error)[:500]})
                    + "\n"
                )
    for index, rows in _runs(ids):
        embedding[rows] = vectors[index]
        status[rows] = codes[index]
    report.done += int((codes == STATUS["done"]).sum())
    report.missing += int((codes == STATUS["missing"]).sum())
    report.corrupt += int((codes == STATUS["corrupt"]).sum())


def _runs(ids: np.ndarray) -> Iterator[tuple[np.ndarray, slice]]:
    """(positions, slice) of each run of consecutive ids (ids sorted and unique)."""
    breaks = np.flatnonzero(np.diff(ids) != 1) + 1
    for index in np.split(np.arange(len(ids)), breaks):
        if len(index):
            yield index, slice(int(ids[index[0]]), int(ids[index[-1]]) + 1)


def sync_status(catalog: Catalog | str | Path, out: str | Path) -> dict[str, int]:
    """Copy the statuses (and error messages) of ``out`` into the catalog's ``photos.embed_status``.

    Returns:
        Photos per status after the sync.
    """
    group = zarr.open_group(str(out), mode="r")
    status = np.asarray(group["status"][:])  # type: ignore[index]
    errors: dict[int, str] = {}
    for log in sorted((Path(out) / _ERRORS).glob("rank-*.jsonl")):
        for line in log.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                errors[int(entry["photo_id"])] = f"{entry['status']}: {entry['error']}"
    ids = np.flatnonzero(status != STATUS["pending"])
    names = [STATUS_NAMES[int(c)] for c in status[ids]]
    messages = [errors.get(int(i)) if n != "done" else None for i, n in zip(ids, names, strict=True)]
    opened = catalog if isinstance(catalog, Catalog) else Catalog.open(catalog, create=False)
    try:
        opened.set_photo_status(ids, names, messages)
        counts = opened.query_df("SELECT embed_status, count(*) AS n FROM photos GROUP BY embed_status")
    finally:
        if opened is not catalog:
            opened.close()
    return dict(zip(counts["embed_status"], counts["n"].astype(int), strict=True))
