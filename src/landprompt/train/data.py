"""Training pairs: sample-store windows and their photo targets, augmentations, deterministic sharding.

A sample is a row of the sample store (a P x P window of monthly Sentinel-1/2 series) and the photos of
its location. Its target is the renormalised mean of those photos' embeddings (``data.target: mean``), or
one of them drawn afresh at every visit (``sample``).

Everything random about a sample (augmentations, the photo drawn) is a function of ``(seed, epoch, store
row)`` through a counter-based generator (:func:`counter_uniform`), and the order of samples a function of
``(seed, epoch)``. So a batch does not depend on the number of data-loader workers, on the number of
processes a global batch is split over, or on whether the run was resumed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from landprompt.embedder.models.sits import presto_inputs
from landprompt.errors import BadInputError
from landprompt.train.config import AugmentConfig, Target

EVAL_EPOCH = -1
"""The epoch of keys that get no augmentation and the mean target (validation)."""

SampleKey = tuple[int, int]
"""``(epoch, sample index)``: what the batch sampler hands the dataset."""


# --------------------------------------------------------------------------------------------- randomness


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser of uint64 values (vectorised; wraps modulo 2**64)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def counter_uniform(seed: int, epoch: int, index: np.ndarray, count: int) -> np.ndarray:
    """Uniform [0, 1) numbers keyed by ``(seed, epoch, index, slot)``: a key always gives the same number.

    Args:
        seed: Run seed.
        epoch: Epoch (any integer).
        index: Sample indices [B].
        count: Numbers per sample.

    Returns:
        float64 [B, count].
    """
    with np.errstate(over="ignore"):
        key = _splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))
        key = _splitmix64(key ^ np.uint64(epoch & 0xFFFFFFFFFFFFFFFF))
        key = _splitmix64(key ^ np.asarray(index, dtype=np.int64).astype(np.uint64))
        bits = _splitmix64(key[:, None] + np.arange(count, dtype=np.uint64)[None, :])
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53


# --------------------------------------------------------------------------------------------------- data


class ArrayLike(Protocol):
    """What the dataset reads from: a NumPy array or a Zarr array."""

    shape: tuple[int, ...]

    def __getitem__(self, key: Any) -> Any:
        """Basic indexing."""
        ...


@dataclass(frozen=True)
class SampleArrays:
    """Sample-store arrays (see the Sample store format) and which of their rows form a split.

    Attributes:
        s2: uint16 [R, T, 10, P, P] reflectance x 1e4, 0 = nodata.
        s1: float16 [R, T, 2, P, P] dB, NaN = nodata.
        valid: bool [R, T, 2]: S2, S1 present that month.
        months: int [R, T]: month 0-11 of each step.
        latlon: float [R, 2] degrees.
        rows: int64 [n]: the arrays' rows that are samples ``0..n-1`` (None: every row, in order).
        keys: int64 [n]: the samples' randomness keys, their store rows (None: ``rows``, else ``0..n-1``).
    """

    s2: ArrayLike
    s1: ArrayLike
    valid: ArrayLike
    months: ArrayLike
    latlon: ArrayLike
    rows: np.ndarray | None = None
    keys: np.ndarray | None = None

    def __post_init__(self) -> None:
        r, steps, _, p, _ = self.s2.shape
        expected = {
            "s2": (r, steps, 10, p, p),
            "s1": (r, steps, 2, p, p),
            "valid": (r, steps, 2),
            "months": (r, steps),
            "latlon": (r, 2),
        }
        for name, shape in expected.items():
            found = tuple(getattr(self, name).shape)
            if found != shape:
                raise BadInputError(f"sample store array {name} has shape {found}, expected {shape}")
        if self.keys is not None and len(self.keys) != len(self):
            raise ValueError(f"{len(self.keys)} keys for {len(self)} samples")

    def __len__(self) -> int:
        return int(self.s2.shape[0]) if self.rows is None else len(self.rows)

    @property
    def window(self) -> int:
        """Side P of the stored windows."""
        return int(self.s2.shape[-1])

    @property
    def steps(self) -> int:
        """Monthly steps T."""
        return int(self.s2.shape[1])

    def sample_keys(self) -> np.ndarray:
        """Randomness keys of the samples (their store rows where known)."""
        if self.keys is not None:
            return np.asarray(self.keys, dtype=np.int64)
        if self.rows is not None:
            return np.asarray(self.rows, dtype=np.int64)
        return np.arange(len(self), dtype=np.int64)

    def take(self, index: np.ndarray, window: int) -> dict[str, np.ndarray]:
        """Read samples ``index`` (any order, repeats allowed), cropping the centre ``window`` pixels."""
        rows = np.asarray(index, dtype=np.int64) if self.rows is None else self.rows[index]
        lo = (self.window - window) // 2
        crop = slice(lo, lo + window)
        unique, inverse = np.unique(rows, return_inverse=True)
        out = {}
        for name in ("s2", "s1", "valid", "months", "latlon"):
            array = getattr(self, name)
            spatial = (crop, crop) if name in ("s2", "s1") else ()
            rest = (slice(None),) * (len(array.shape) - 1 - len(spatial)) + spatial
            if isinstance(array, np.ndarray):
                values = array[unique][(slice(None), *rest)]
            else:  # Zarr: one orthogonal read over the chunks the rows touch
                values = array.get_orthogonal_selection((unique, *rest))
            out[name] = np.asarray(values)[inverse]
        return out

    def load(self, window: int) -> SampleArrays:
        """The samples read into memory, cropped to the centre ``window`` pixels."""
        arrays = self.take(np.arange(len(self)), window)
        return SampleArrays(**arrays, keys=self.sample_keys())


class PhotoTargets:
    """The photo embeddings of each sample, in compressed-row form.

    Args:
        embeddings: float [m, D] photo embeddings (normalised again here).
        offsets: int [n + 1]: sample ``i``'s photos are ``photos[offsets[i]:offsets[i + 1]]``.
        photos: int [k]: rows of ``embeddings``.

    Raises:
        BadInputError: If a sample has no photo.
    """

    def __init__(self, embeddings: np.ndarray, offsets: np.ndarray, photos: np.ndarray) -> None:
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.photos = np.asarray(photos, dtype=np.int64)
        counts = np.diff(self.offsets)
        if (counts < 1).any():
            raise BadInputError(f"{int((counts < 1).sum())} samples have no photo to align with")
        self.embeddings = _unit(np.asarray(embeddings, dtype=np.float32))
        self.means = _unit(np.add.reduceat(self.embeddings[self.photos], self.offsets[:-1], axis=0))

    @property
    def dim(self) -> int:
        """Embedding width D."""
        return int(self.embeddings.shape[1])

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def mean(self, index: np.ndarray) -> np.ndarray:
        """The renormalised mean photo embedding of samples ``index``, float32 [B, D]."""
        return self.means[index]

    def draw(self, index: np.ndarray, uniform: np.ndarray) -> np.ndarray:
        """One photo embedding per sample, picked by ``uniform`` [B] in [0, 1); float32 [B, D]."""
        start, count = self.offsets[index], np.diff(self.offsets)[index]
        pick = start + np.minimum((uniform * count).astype(np.int64), count - 1)
        return self.embeddings[self.photos[pick]]


def _unit(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float32."""
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return (rows / np.maximum(norms, 1e-12)).astype(np.float32)


@dataclass(frozen=True)
class WindowBatch:
    """A batch of windows and their targets, as the model eats them.

    Attributes:
        x: float32 [B, N, T, 17] Presto-normalised channels (0 where masked).
        mask: bool [B, N, T, 17], True where missing.
        month: int64 [B, T] month 0-11 of each step.
        latlon: float32 [B, 2] degrees, or None.
        target: float32 [B, D] L2-normalised photo targets.
        index: int64 [B] sample indices in their split.
    """

    x: Tensor
    mask: Tensor
    month: Tensor
    latlon: Tensor | None
    target: Tensor
    index: Tensor

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def _map(self, fn: Any) -> WindowBatch:
        values: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            values[f.name] = None if value is None else fn(value)
        return WindowBatch(**values)

    def to(self, device: torch.device, non_blocking: bool = False) -> WindowBatch:
        """The batch on ``device``."""
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> WindowBatch:
        """The batch in pinned memory (the data loader calls this when ``pin_memory=True``)."""
        return self._map(lambda t: t.pin_memory())


class PairDataset(Dataset[WindowBatch]):
    """Windows of the sample store and their photo targets, fetched a batch at a time.

    Keys are ``(epoch, index)`` pairs (:class:`StepBatchSampler` makes them). Epoch :data:`EVAL_EPOCH` means
    no augmentation and the mean target.

    Args:
        samples: The split's store arrays.
        targets: The split's photo embeddings.
        window: Side of the centre window fed to the model (the encoder's pooling window).
        augment: Dropout probabilities (None = no augmentation).
        target: ``mean`` or ``sample`` (one photo per visit).
        seed: Run seed.
        use_latlon: Feed the location token.
    """

    def __init__(
        self,
        samples: SampleArrays,
        targets: PhotoTargets,
        *,
        window: int,
        augment: AugmentConfig | None = None,
        target: Target = "mean",
        seed: int = 0,
        use_latlon: bool = True,
    ) -> None:
        if len(samples) != len(targets):
            raise BadInputError(f"{len(samples)} samples but photo targets for {len(targets)}")
        if window > samples.window:
            raise BadInputError(
                f"the model pools {window} x {window} pixels, but the sample store holds "
                f"{samples.window} x {samples.window} windows; lower model.arguments.pool_size"
            )
        self.samples = samples
        self.targets = targets
        self.window = window
        self.augment = augment or AugmentConfig(0.0, 0.0, 0.0)
        self.target = target
        self.seed = seed
        self.use_latlon = use_latlon
        self._keys = samples.sample_keys()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: SampleKey) -> WindowBatch:
        return self.__getitems__([key])

    def __getitems__(self, keys: Sequence[SampleKey]) -> WindowBatch:
        """Read, augment and normalise the samples of ``keys`` (all of one epoch) into a batch."""
        epochs = {epoch for epoch, _ in keys}
        if len(epochs) != 1:
            raise ValueError(f"a batch mixes epochs {sorted(epochs)}")
        epoch = epochs.pop()
        index = np.fromiter((i for _, i in keys), dtype=np.int64, count=len(keys))
        raw = self.samples.take(index, self.window)
        s2, s1 = _with_nodata(raw["s2"], raw["s1"], raw["valid"])
        steps, pixels = s2.shape[1], self.window**2
        uniform = counter_uniform(self.seed, epoch, self._keys[index], steps + pixels + 3)
        if epoch != EVAL_EPOCH:
            s2, s1 = augment(s2, s1, self.augment, uniform[:, : steps + pixels + 2])
        # [B, T, C, P, P] -> [B, P*P, T, C]
        x, mask = presto_inputs(s2=_pixels_last(s2), s1=_pixels_last(s1))
        if self.target == "sample" and epoch != EVAL_EPOCH:
            target = self.targets.draw(index, uniform[:, -1])
        else:
            target = self.targets.mean(index)
        month = np.asarray(raw["months"], dtype=np.int64) % 12
        latlon = torch.from_numpy(np.asarray(raw["latlon"], dtype=np.float32)) if self.use_latlon else None
        return WindowBatch(
            x=torch.from_numpy(x),
            mask=torch.from_numpy(mask),
            month=torch.from_numpy(month),
            latlon=latlon,
            target=torch.from_numpy(target),
            index=torch.from_numpy(index),
        )


def _with_nodata(s2: np.ndarray, s1: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 copies of the stored arrays with NaN wherever a value is missing (0 in S2, or not valid)."""
    s2f = s2.astype(np.float32)
    s2f[s2 == 0] = np.nan
    s2f[~valid[:, :, 0].astype(bool)] = np.nan
    s1f = s1.astype(np.float32)
    s1f[~valid[:, :, 1].astype(bool)] = np.nan
    return s2f, s1f


def _pixels_last(a: np.ndarray) -> np.ndarray:
    """[B, T, C, P, P] -> [B, P*P, T, C]."""
    b, t, c, p, q = a.shape
    return a.reshape(b, t, c, p * q).transpose(0, 3, 1, 2)


def augment(
    s2: np.ndarray, s1: np.ndarray, config: AugmentConfig, uniform: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Drop months, a whole sensor and pixels of a batch (in place, by setting NaN); never every observation.

    Each observed month is dropped with ``month_dropout``; then, where both sensors remain, one of them (S1 or
    S2, even odds) with ``sensor_dropout``; then each observed pixel with ``pixel_dropout``. Where a dropout
    would leave a sample without any observation, the month or pixel with the smallest draw stays.

    Args:
        s2: float32 [B, T, 10, P, P], NaN = missing.
        s1: float32 [B, T, 2, P, P], NaN = missing.
        config: The probabilities.
        uniform: [B, T + P*P + 2] numbers in [0, 1): months, pixels, sensor (whether, which).

    Returns:
        ``(s2, s1)``.
    """
    b, steps = s2.shape[:2]
    pixels = s2.shape[-1] * s2.shape[-2]
    u_month, u_pixel = uniform[:, :steps], uniform[:, steps : steps + pixels]
    u_sensor, u_which = uniform[:, steps + pixels], uniform[:, steps + pixels + 1]

    def observed(axis: tuple[int, ...]) -> np.ndarray:
        return ~np.isnan(s2).all(axis=axis) | ~np.isnan(s1).all(axis=axis)

    if config.month_dropout > 0:
        seen = observed((2, 3, 4))  # [B, T]
        drop = _keep_one(seen & (u_month < config.month_dropout), seen, u_month)
        s2[drop], s1[drop] = np.nan, np.nan
    if config.sensor_dropout > 0:
        both = ~np.isnan(s2).all(axis=(1, 2, 3, 4)) & ~np.isnan(s1).all(axis=(1, 2, 3, 4))
        drop = both & (u_sensor < config.sensor_dropout)
        s2[drop & (u_which < 0.5)] = np.nan
        s1[drop & (u_which >= 0.5)] = np.nan
    if config.pixel_dropout > 0:
        seen = observed((1, 2)).reshape(b, pixels)  # [B, P*P]
        drop = _keep_one(seen & (u_pixel < config.pixel_dropout), seen, u_pixel)
        drop = drop.reshape(b, *s2.shape[-2:])
        s2.transpose(0, 3, 4, 1, 2)[drop] = np.nan
        s1.transpose(0, 3, 4, 1, 2)[drop] = np.nan
    return s2, s1


def _keep_one(drop: np.ndarray, seen: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """``drop`` [B, K], except that in rows where it covers every ``seen`` entry the lowest draw stays."""
    emptied = seen.any(axis=1) & ~(seen & ~drop).any(axis=1)
    keep = np.argmin(np.where(seen, uniform, np.inf), axis=1)
    drop = drop.copy()
    drop[np.flatnonzero(emptied), keep[emptied]] = False
    return drop


# ------------------------------------------------------------------------------------------------ batching


class StepBatchSampler(Sampler[list[SampleKey]]):
    """This process's share of the global batch of every step from ``start_step`` to ``steps``.

    Epoch ``e`` visits the samples in the order of a permutation seeded by ``(seed, e)``; step ``s`` takes the
    global batch ``s mod batches_per_epoch`` of epoch ``s // batches_per_epoch`` (an incomplete last batch is
    dropped), and process ``r`` of ``W`` takes its ``r``-th contiguous slice. The batches depend on the step
    alone: a resumed run picks up where it stopped, and ``W`` processes see exactly the batches one process
    would.

    Args:
        num_samples: Samples in the split.
        global_batch: Samples per step over all processes (divisible by ``world_size``).
        seed: Run seed.
        start_step: First step to yield.
        steps: Step to stop before.
        rank: This process's rank.
        world_size: Number of processes.
    """

    def __init__(
        self,
        num_samples: int,
        global_batch: int,
        *,
        seed: int = 0,
        start_step: int = 0,
        steps: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if global_batch % world_size:
            raise BadInputError(
                f"data.batch_size ({global_batch}) must be divisible by the number of processes "
                f"({world_size})"
            )
        if num_samples < global_batch:
            raise BadInputError(
                f"the training split has {num_samples} samples, fewer than data.batch_size ({global_batch})"
            )
        self.num_samples = num_samples
        self.global_batch = global_batch
        self.local_batch = global_batch // world_size
        self.seed = seed
        self.start_step = start_step
        self.steps = steps
        self.rank = rank
        self.batches_per_epoch = num_samples // global_batch
        self._cached: tuple[int, np.ndarray] = (-1, np.arange(0))

    def __len__(self) -> int:
        return max(0, self.steps - self.start_step)

    def permutation(self, epoch: int) -> np.ndarray:
        """The visiting order of epoch ``epoch``."""
        if self._cached[0] != epoch:
            self._cached = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.num_samples))
        return self._cached[1]

    def keys(self, step: int) -> list[SampleKey]:
        """This process's keys at ``step``."""
        epoch, batch = divmod(step, self.batches_per_epoch)
        start = batch * self.global_batch + self.rank * self.local_batch
        return [(epoch, int(i)) for i in self.permutation(epoch)[start : start + self.local_batch]]

    def __iter__(self) -> Iterator[list[SampleKey]]:
        for step in range(self.start_step, self.steps):
            yield self.keys(step)


def shard_range(num_samples: int, rank: int, world_size: int) -> tuple[range, list[int]]:
    """This process's contiguous share of ``num_samples`` evaluation samples and every process's count."""
    bounds = np.linspace(0, num_samples, world_size + 1).round().astype(int)
    counts = np.diff(bounds).tolist()
    return range(int(bounds[rank]), int(bounds[rank + 1])), counts


def eval_batches(indices: range, batch_size: int) -> list[list[SampleKey]]:
    """Keys of unaugmented evaluation batches over ``indices``."""
    keys = [(EVAL_EPOCH, i) for i in indices]
    return [keys[i : i + batch_size] for i in range(0, len(keys), batch_size)]


def collate_batch(batch: Any) -> Any:
    """The data loader's ``collate_fn``: the dataset already returns whole :class:`WindowBatch` es."""
    return batch


def make_loader(
    dataset: PairDataset,
    batches: Sampler[list[SampleKey]] | Sequence[list[SampleKey]],
    *,
    num_workers: int = 0,
    pin_memory: bool = False,
    seed: int = 0,
) -> DataLoader[WindowBatch]:
    """A data loader over whole batches (``dataset.__getitems__``), in the order ``batches`` gives."""
    return DataLoader(
        dataset,
        batch_sampler=batches,
        collate_fn=collate_batch,
        num_workers=num_workers,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(seed),
        prefetch_factor=4 if num_workers else None,
    )
