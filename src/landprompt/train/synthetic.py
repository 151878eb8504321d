"""Synthetic training pairs with a planted signal, for tests, benchmarks and a first look at the trainer.

:func:`planted_pairs` makes the arrays; :func:`write_planted_pairs` writes them as a pairs dataset (catalog,
sample store, photo embeddings) through :mod:`landprompt.pairs`, ready for ``landprompt train``.

Each sample belongs to one of ``classes`` latent classes. A class sets a distinct monthly reflectance
pattern over the Sentinel-2 bands and a backscatter pattern over VV/VH (plus per-pixel noise, missing
months and cloudy pixels); its photos are the class prototype in CLIP space plus noise. An encoder that
learns the class from the series retrieves the right photo among the ``n / classes`` of its class at best,
so validation R@1 tops out near ``classes / n_val`` against a chance level of ``1 / n_val``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from landprompt.embedder import photos as photo_format
from landprompt.pairs.catalog import Catalog
from landprompt.pairs.fetch import plan_samples
from landprompt.pairs.ingest import ingest
from landprompt.pairs.sources.table import TableColumns, TableSource
from landprompt.pairs.store import ChipArrays, SampleStore
from landprompt.train.data import PhotoTargets, SampleArrays

YEAR = 2022


@dataclass(frozen=True)
class PlantedPairs:
    """Planted samples and photos.

    Attributes:
        samples: Store arrays of every sample (row ``i`` = sample ``i``).
        labels: Class of each sample, int [n].
        photo_embeddings: float32 [m, dim], L2-normalised.
        photo_sample: The sample each photo shows, int [m] (sorted).
    """

    samples: SampleArrays
    labels: np.ndarray
    photo_embeddings: np.ndarray
    photo_sample: np.ndarray

    def targets(self, rows: np.ndarray | None = None) -> PhotoTargets:
        """Photo targets of samples ``rows`` (default all), in that order."""
        rows = np.arange(len(self.labels)) if rows is None else np.asarray(rows)
        counts = np.bincount(self.photo_sample, minlength=len(self.labels))
        starts = np.concatenate([[0], np.cumsum(counts)])
        photos = np.concatenate([np.arange(starts[r], starts[r + 1]) for r in rows])
        offsets = np.concatenate([[0], np.cumsum(counts[rows])])
        return PhotoTargets(self.photo_embeddings, offsets, photos)


def planted_pairs(
    n: int = 512,
    *,
    classes: int = 16,
    steps: int = 12,
    window: int = 3,
    dim: int = 16,
    photos_per_sample: tuple[int, int] = (1, 3),
    photo_noise: float = 0.6,
    missing_months: float = 0.15,
    cloudy_pixels: float = 0.05,
    seed: int = 0,
) -> PlantedPairs:
    """Samples whose series and photos share a latent class.

    Args:
        n: Samples.
        classes: Latent classes.
        steps: Monthly steps T (January first).
        window: Window side P in pixels.
        dim: Photo embedding width.
        photos_per_sample: Inclusive range of photos per sample.
        photo_noise: Norm of the noise added to a unit class prototype (before renormalising).
        missing_months: Probability that a sensor misses a month.
        cloudy_pixels: Probability that an S2 pixel-month is nodata (0).
        seed: Generator seed.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    s2_pattern = rng.uniform(300, 5000, (classes, steps, 10))
    s1_pattern = rng.uniform(-22, -6, (classes, steps, 2))
    pixels = (n, steps, 1, window, window)
    s2 = s2_pattern[labels][..., None, None] * rng.normal(1.0, 0.05, (n, steps, 10, window, window))
    s2 = np.clip(s2, 1, 10_000).astype(np.uint16)
    s2[np.broadcast_to(rng.random(pixels) < cloudy_pixels, s2.shape)] = 0
    s1 = (s1_pattern[labels][..., None, None] + rng.normal(0, 0.7, (n, steps, 2, window, window))).astype(
        np.float16
    )
    valid = rng.random((n, steps, 2)) >= missing_months
    valid[~valid.any(axis=(1, 2)), 0, 0] = True
    s1[~valid[:, :, 1]] = np.nan
    s2[~valid[:, :, 0]] = 0
    latlon = np.stack([rng.uniform(44, 52, n), rng.uniform(-1, 15, n)], axis=1)
    months = np.broadcast_to(np.arange(steps) % 12, (n, steps)).copy()

    prototypes = _unit(rng.normal(size=(classes, dim)))
    counts = rng.integers(photos_per_sample[0], photos_per_sample[1] + 1, n)
    photo_sample = np.repeat(np.arange(n), counts)
    noise = _unit(rng.normal(size=(len(photo_sample), dim))) * photo_noise
    photos = _unit(prototypes[labels[photo_sample]] + noise).astype(np.float32)
    samples = SampleArrays(s2=s2, s1=s1, valid=valid, months=months, latlon=latlon)
    return PlantedPairs(samples, labels, photos, photo_sample)


@dataclass(frozen=True)
class PairsPaths:
    """The files of a pairs dataset."""

    catalog: Path
    store: Path
    photo_embeddings: Path


def write_planted_pairs(
    folder: str | Path,
    pairs: PlantedPairs,
    *,
    split_seed: int = 0,
    split_fractions: tuple[float, float, float] = (0.75, 0.25, 0.0),
    block_m: float = 10_000.0,
    chunk_rows: int = 256,
) -> PairsPaths:
    """Write planted pairs as a catalog, a sample store and photo embeddings in ``folder``.

    Photos go through a CSV table and :func:`~landprompt.pairs.ingest.ingest`; samples are planned by
    :func:`~landprompt.pairs.fetch.plan_samples` (year 2022) and their chips written with
    :class:`~landprompt.pairs.store.SampleStore`; the embeddings are written in the
    :mod:`landprompt.embedder.photos` format (:func:`write_photo_embeddings`) and synced into the catalog.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = PairsPaths(folder / "catalog.duckdb", folder / "samples.zarr", folder / "photos.zarr")
    table = folder / "photos.csv"
    counts = np.bincount(pairs.photo_sample, minlength=len(pairs.labels))
    latlon = np.asarray(pairs.samples.latlon)
    with table.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "lat", "lon", "time"])
        for photo, sample in enumerate(pairs.photo_sample):
            lat, lon = latlon[sample]
            writer.writerow(
                [f"photo-{photo}", f"{lat:.6f}", f"{lon:.6f}", f"{YEAR}-07-01T10:{photo % 60:02d}:00"]
            )
    with Catalog.open(
        paths.catalog, split_seed=split_seed, split_fractions=split_fractions, block_m=block_m
    ) as catalog:
        ingest(catalog, TableSource(table, TableColumns(id="id", time="time"), licence="CC0-1.0"))
        planned = plan_samples(catalog, year=YEAR)
        links = catalog.query_df(
            "SELECT p.photo_id, p.source_id, pl.loc_id FROM photos p JOIN photo_locations pl USING (photo_id)"
        )
        source_photo = links["source_id"].str.removeprefix("photo-").astype(np.int64).to_numpy()
        loc_sample = dict(zip(links["loc_id"], pairs.photo_sample[source_photo], strict=False))
        if len(planned) != int((counts > 0).sum()):
            raise RuntimeError(f"planned {len(planned)} samples for {int((counts > 0).sum())} places")
        sample = np.array([loc_sample[loc] for loc in planned["loc_id"]], dtype=np.int64)
        rows = planned["store_row"].to_numpy(np.int64)
        store = SampleStore.create(
            paths.store, chip=pairs.samples.window, catalog_id=catalog.catalog_id, chunk_rows=chunk_rows
        )
        store.resize(catalog.next_store_row())
        store.write_places(
            rows, planned["lat"].to_numpy(), planned["lon"].to_numpy(), planned["year"].to_numpy()
        )
        arrays = pairs.samples.take(sample, pairs.samples.window)
        store.write_chips(rows, ChipArrays(arrays["s2"], arrays["s1"], arrays["valid"]))
        catalog.mark_samples(rows, ["done"] * len(rows), [None] * len(rows))
        embeddings = np.zeros((len(links), pairs.photo_embeddings.shape[1]), np.float32)
        embeddings[links["photo_id"].to_numpy()] = pairs.photo_embeddings[source_photo]
        write_photo_embeddings(paths.photo_embeddings, embeddings, catalog.catalog_id, "synthetic", "planted")
        photo_format.sync_status(catalog, paths.photo_embeddings)
    return paths


def write_photo_embeddings(
    out: str | Path,
    embeddings: np.ndarray,
    catalog_id: str,
    clip_model: str,
    clip_pretrained: str = "",
    chunk_rows: int = photo_format.DEFAULT_CHUNK_ROWS,
) -> Path:
    """Write precomputed embeddings [N_photos, D] (row = photo id) in the photo-embeddings format, all done.

    A thin writer for embeddings that were not computed by :func:`landprompt.embedder.photos.embed_photos`
    (synthetic ones here); follow it with :func:`landprompt.embedder.photos.sync_status`.
    """
    out = Path(out)
    rows, dim = embeddings.shape
    attrs = {
        "landprompt_format": photo_format.FORMAT_NAME,
        "format_version": photo_format.FORMAT_VERSION,
        "clip_model": clip_model,
        "clip_pretrained": clip_pretrained,
        "clip_id": f"{clip_model}:{clip_pretrained}",
        "embed_dim": dim,
        "catalog_id": catalog_id,
    }
    group = zarr.open_group(str(out), mode="w-", zarr_format=3)
    group.attrs.update(attrs)
    embedding = group.create_array("embedding", shape=(rows, dim), chunks=(chunk_rows, dim), dtype="float16")
    embedding[:] = _unit(embeddings).astype(np.float16)
    embedding.attrs.update(attrs)
    status = group.create_array("status", shape=(rows,), chunks=(chunk_rows,), dtype="uint8")
    status[:] = photo_format.STATUS["done"]
    return out


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)
