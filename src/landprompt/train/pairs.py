"""Reading the pairs dataset for training: catalog splits, sample-store rows and photo embeddings.

A training sample is a catalog sample (a place and year, one row of the sample store) with status
``done`` in the requested split, together with every photo of its place whose embedding is ``done``
(and, optionally, taken within ``data.max_year_gap`` years of the sample). Splits are the catalog's
spatial blocks, so neighbouring places never straddle train and val. Stores and photo embeddings must
record the catalog's ``catalog_id``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from landprompt.embedder import photos as photo_format
from landprompt.errors import BadInputError
from landprompt.pairs.catalog import Catalog
from landprompt.pairs.store import SampleStore
from landprompt.train.config import AugmentConfig, DataConfig
from landprompt.train.data import PairDataset, PhotoTargets, SampleArrays


@dataclass
class TrainData:
    """Training and validation pairs and what the targets are.

    Attributes:
        train: Training pairs.
        val: Validation pairs (None: no validation).
        clip_model: The photo embeddings' open_clip model.
        clip_pretrained: Its pretrained tag.
        provenance: Where the pairs came from (recorded in checkpoints).
    """

    train: PairDataset
    val: PairDataset | None
    clip_model: str | None = None
    clip_pretrained: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        """Width of the photo embeddings."""
        return self.train.targets.dim


def open_photo_embeddings(path: str | Path) -> zarr.Group:
    """Open a photo-embeddings group (format of :mod:`landprompt.embedder.photos`), checking its format.

    Raises:
        BadInputError: If the path is missing or not photo embeddings of a known version.
    """
    path = Path(path)
    try:
        group = zarr.open_group(str(path), mode="r")
    except (FileNotFoundError, ValueError, KeyError, zarr.errors.GroupNotFoundError) as err:
        raise BadInputError(
            f"data.photo_embeddings: {path} is not a photo-embeddings group "
            "(make one with 'landprompt pairs photos')"
        ) from err
    attrs = dict(group.attrs)
    if attrs.get("landprompt_format") != photo_format.FORMAT_NAME or "embedding" not in group:
        raise BadInputError(f"data.photo_embeddings: {path} is a Zarr group but not photo embeddings")
    if attrs.get("format_version") != photo_format.FORMAT_VERSION:
        raise BadInputError(
            f"data.photo_embeddings: {path} is version {attrs.get('format_version')}; this landprompt "
            f"reads version {photo_format.FORMAT_VERSION}"
        )
    return group


def photo_embedding_info(path: str | Path) -> tuple[int, str | None, str | None]:
    """Width, open_clip model and pretrained tag of a photo-embeddings group."""
    group = open_photo_embeddings(path)
    embedding = group["embedding"]
    assert isinstance(embedding, zarr.Array)
    attrs = dict(group.attrs)
    return int(embedding.shape[1]), _text(attrs.get("clip_model")), _text(attrs.get("clip_pretrained"))


def split_pairs(
    catalog: Catalog, split: str, max_year_gap: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Store rows and photo ids of a split's usable pairs, sorted by store row then photo id.

    Usable: the sample is ``done`` and the photo's embedding is ``done`` (and the years are within
    ``max_year_gap`` when given).
    """
    sql = (
        "SELECT store_row, photo_id FROM pairs WHERE split = ? AND sample_status = 'done' "
        "AND embed_status = 'done'"
    )
    params: list[Any] = [split]
    if max_year_gap is not None:
        sql += " AND (year_gap IS NULL OR year_gap <= ?)"
        params.append(max_year_gap)
    frame = catalog.query_df(sql + " ORDER BY store_row, photo_id", params)
    return frame["store_row"].to_numpy(np.int64), frame["photo_id"].to_numpy(np.int64)


def load_train_data(config: DataConfig, augment: AugmentConfig, window: int, seed: int) -> TrainData:
    """Training and validation pairs of the catalog's splits.

    Args:
        config: The ``data`` section.
        augment: Training augmentations.
        window: The encoder's pooling window (the centre of each stored chip it sees).
        seed: Run seed (order and augmentations).

    Raises:
        BadInputError: If a file is missing or of the wrong kind, the three do not belong together, or
            the training split holds no usable pair.
    """
    try:
        catalog = Catalog.open(config.catalog, read_only=True)
    except BadInputError as err:
        raise BadInputError(f"data.catalog: {err}") from err
    try:
        store = _open_store(config.store, catalog.catalog_id)
        group = open_photo_embeddings(config.photo_embeddings)
        found = group.attrs.get("catalog_id")
        if found != catalog.catalog_id:
            raise BadInputError(
                f"data.photo_embeddings: {config.photo_embeddings} belongs to catalog {found}, not to "
                f"{config.catalog} ({catalog.catalog_id})"
            )
        splits: dict[str, PairDataset | None] = {}
        counts: dict[str, dict[str, int]] = {}
        for name, split, training in ((config.train_split, "train", True), (config.val_split, "val", False)):
            rows, photos = split_pairs(catalog, name, config.max_year_gap)
            if not training and config.max_val_samples is not None:
                rows, photos = _subsample(rows, photos, config.max_val_samples)
            if len(rows) == 0:
                if training:
                    raise BadInputError(
                        f"data.train_split {name!r} of {config.catalog} has no sample with status done and "
                        "an embedded photo"
                    )
                splits[split] = None
                continue
            samples, targets = _split_arrays(store, group, rows, photos, config.in_memory, window)
            splits[split] = PairDataset(
                samples,
                targets,
                window=window,
                augment=augment if training else None,
                target=config.target,
                seed=seed,
                use_latlon=config.use_latlon,
            )
            counts[split] = {"samples": len(samples), "photos": len(photos)}
        dim, clip_model, clip_pretrained = photo_embedding_info(config.photo_embeddings)
        provenance = {
            "data": {
                "store": str(config.store),
                "catalog": str(config.catalog),
                "catalog_id": catalog.catalog_id,
                "photo_embeddings": str(config.photo_embeddings),
                "splits": {"train": config.train_split, "val": config.val_split},
                "counts": counts,
            }
        }
    finally:
        catalog.close()
    train = splits["train"]
    assert train is not None
    if train.targets.dim != dim:
        raise BadInputError(f"data.photo_embeddings: {train.targets.dim}-d rows but a {dim}-d array")
    return TrainData(train, splits["val"], clip_model, clip_pretrained, provenance)


def _open_store(path: Path, catalog_id: str) -> SampleStore:
    try:
        store = SampleStore.open(path)
    except BadInputError as err:
        raise BadInputError(f"data.store: {err}") from err
    if store.catalog_id != catalog_id:
        raise BadInputError(f"data.store: {path} belongs to catalog {store.catalog_id}, not {catalog_id}")
    return store


def _split_arrays(
    store: SampleStore, group: zarr.Group, rows: np.ndarray, photos: np.ndarray, in_memory: bool, window: int
) -> tuple[SampleArrays, PhotoTargets]:
    """Store arrays and photo targets of the pairs ``(rows[i], photos[i])`` (sorted by row)."""
    sample_rows, first = np.unique(rows, return_index=True)
    offsets = np.append(first, len(rows)).astype(np.int64)
    ids, inverse = np.unique(photos, return_inverse=True)
    embedding = group["embedding"]
    assert isinstance(embedding, zarr.Array)
    if len(ids) and ids.max() >= embedding.shape[0]:
        raise BadInputError(
            f"data.photo_embeddings holds {embedding.shape[0]} rows but the catalog has photo {ids.max()}: "
            "embed the new photos first"
        )
    vectors = np.asarray(embedding.get_orthogonal_selection((ids, slice(None))), dtype=np.float32)
    samples = SampleArrays(
        s2=store.array("s2"),
        s1=store.array("s1"),
        valid=store.array("valid"),
        months=store.array("months"),
        latlon=store.array("latlon"),
        rows=sample_rows,
    )
    if in_memory:
        samples = samples.load(window)
    return samples, PhotoTargets(vectors, offsets, inverse.astype(np.int64))


def _subsample(rows: np.ndarray, photos: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The pairs of at most ``limit`` samples, evenly spaced over the sorted store rows."""
    unique = np.unique(rows)
    if len(unique) <= limit:
        return rows, photos
    keep = unique[np.linspace(0, len(unique) - 1, limit).round().astype(np.int64)]
    mask = np.isin(rows, keep)
    return rows[mask], photos[mask]


def _text(value: Any) -> str | None:
    return str(value) if value else None
