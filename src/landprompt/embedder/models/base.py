"""The common encoder interface: what an encoder eats (:class:`EncoderSpec`) and how it embeds a region.

Every satellite encoder is an :class:`Encoder`: a ``torch.nn.Module`` with a :attr:`~Encoder.spec` and an
:meth:`~Encoder.embed_dense` that turns one composite chunk (the ``landprompt.eo`` layout) into an
embedding map, so the embedding run treats a trained time-series model and the zero-training CLIP
baseline alike.

Dense input convention (one chunk of a monthly composite, an ``xarray.Dataset``, as ``landprompt.eo``
writes it):

- ``s2`` [time, s2_band, y, x] float32, Sentinel-2 L2A reflectance x 1e4, bands B2, B3, B4, B5, B6, B7,
  B8, B8A, B11, B12;
- ``s1`` [time, s1_band, y, x] float32, Sentinel-1 backscatter in dB, bands VV, VH;
- the band dimension may have any name; bands are picked by its coordinate's labels when it has them,
  else taken in this order; NaN marks a missing value (cloud, no acquisition); ``time`` holds the first
  day of each month (month 0 = January for the model).

Dense output: ``(embeddings, valid)``, embeddings float32 [rows, cols, embed_dim] L2-normalised on the
encoder's output grid (:meth:`Encoder.output_grid`), zero where ``valid`` [rows, cols] is False.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from affine import Affine
from torch import Tensor, nn
from torch.nn.functional import avg_pool2d

from landprompt.errors import BadInputError
from landprompt.geo import Grid

if TYPE_CHECKING:
    import xarray as xr

InputKind = Literal["pixel_timeseries", "rgb_composite"]

S2_BANDS: tuple[str, ...] = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
"""Sentinel-2 bands of the composite's ``s2`` variable, in order (reflectance x 1e4)."""

S1_BANDS: tuple[str, ...] = ("VV", "VH")
"""Sentinel-1 bands of the composite's ``s1`` variable, in order (dB)."""


@dataclass(frozen=True)
class EncoderSpec:
    """What an encoder eats and what it emits; saved with every checkpoint.

    Attributes:
        input_kind: ``"pixel_timeseries"`` (monthly series of every pixel) or ``"rgb_composite"`` (a
            true-colour image of the year).
        bands: Composite bands the encoder reads, in the order it reads them.
        normalization: How raw band values become model inputs (per band, or a named stretch).
        embed_dim: Width of the output embeddings (CLIP's joint space).
        output_stride: Input pixels per output pixel along each axis (1 for pixel models).
        window: Side in input pixels of the square each embedding summarises (pool or patch size).
        clip_model: open_clip model whose space the embeddings live in, if known.
        clip_pretrained: That model's pretrained tag or weights file, if known.
        optional_bands: Bands used when the composite carries them and masked as absent otherwise.
    """

    input_kind: InputKind
    bands: tuple[str, ...]
    normalization: Mapping[str, Any]
    embed_dim: int
    output_stride: int
    window: int
    clip_model: str | None = None
    clip_pretrained: str | None = None
    optional_bands: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        return to_jsonable(asdict(self))


class Encoder(nn.Module, ABC):
    """Base of satellite encoders: a spec, dense embedding of a composite chunk, device handling.

    Encoders built by :func:`~landprompt.embedder.models.registry.create_encoder` carry their registry
    name and constructor arguments, so they can be saved as checkpoints; encoders loaded from a
    checkpoint also carry its path and sha256 (:attr:`checkpoint`).
    """

    registry_name: str | None = None
    arguments: dict[str, Any] | None = None
    checkpoint: dict[str, str] | None = None

    @property
    @abstractmethod
    def spec(self) -> EncoderSpec:
        """What the encoder eats and emits."""

    @abstractmethod
    def embed_dense(
        self, composite: xr.Dataset, latlon: np.ndarray | None = None, batch_size: int = 1024
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embed one composite chunk.

        Args:
            composite: Monthly composite (see the module docstring for the layout).
            latlon: Latitude and longitude in degrees of each pixel centre, [y, x, 2] (see
                :func:`pixel_latlon`); encoders that do not use location ignore it.
            batch_size: Samples (pixels or patches) per forward pass.

        Returns:
            Embeddings float32 [rows, cols, embed_dim] on :meth:`output_grid`, L2-normalised and zero where
            invalid, and the validity mask bool [rows, cols].
        """

    def statistics(self) -> dict[str, torch.Tensor]:
        """Data statistics a checkpoint keeps beside the weights (not in the state dict; none here).

        Names ending in ``count`` are sample counts, the others averages over those samples (so a training
        run over several processes merges them: :func:`~landprompt.train.distributed.merge_statistics`).
        """
        return {}

    def load_statistics(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Restore :meth:`statistics` read from a checkpoint.

        Raises:
            BadInputError: if the encoder keeps no such statistics.
        """
        if tensors:
            raise BadInputError(
                f"{type(self).__name__} keeps no statistics; got {', '.join(sorted(tensors))}"
            )

    def resolved_arguments(self) -> dict[str, Any]:
        """Arguments resolved at build time that a rebuild without pretrained weights needs (none here)."""
        return {}

    @property
    def device(self) -> torch.device:
        """Device of the encoder's parameters (CPU for an encoder without any)."""
        tensor = next(self.parameters(), None)
        return torch.device("cpu") if tensor is None else tensor.device

    def output_grid(self, grid: Grid) -> Grid:
        """The grid of :meth:`embed_dense`'s output for an input chunk on ``grid``."""
        return coarsen_grid(grid, self.spec.output_stride)

    def output_shape(self, height: int, width: int) -> tuple[int, int]:
        """Rows and columns of :meth:`embed_dense`'s output for an input of ``height`` x ``width`` pixels."""
        stride = self.spec.output_stride
        return math.ceil(height / stride), math.ceil(width / stride)

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable provenance for cube attributes: name, arguments, spec, checkpoint."""
        ckpt = self.checkpoint or {}
        name = self.registry_name or type(self).__name__
        return {
            "model": f"{name}:{ckpt['sha256'][:12]}" if "sha256" in ckpt else name,
            "encoder": self.registry_name,
            "arguments": to_jsonable(self.arguments),
            "spec": self.spec.to_dict(),
            "checkpoint": ckpt.get("path"),
            "checkpoint_sha256": ckpt.get("sha256"),
        }


def coarsen_grid(grid: Grid, stride: int) -> Grid:
    """The grid whose pixels are ``stride`` x ``stride`` blocks of ``grid``'s (partial edge blocks included).

    Raises:
        BadInputError: If ``stride`` is not a positive integer.
    """
    if stride < 1:
        raise BadInputError(f"stride must be a positive integer, got {stride}")
    if stride == 1:
        return grid
    shape = (math.ceil(grid.rows / stride), math.ceil(grid.cols / stride))
    return Grid(grid.crs, grid.transform @ Affine.scale(stride), shape)


def pixel_latlon(grid: Grid) -> np.ndarray:
    """Latitude and longitude in degrees of every pixel centre of ``grid``, float64 [rows, cols, 2]."""
    rows, cols = np.meshgrid(np.arange(grid.rows), np.arange(grid.cols), indexing="ij")
    lon, lat = grid.rowcol_to_lonlat(rows, cols)
    return np.stack([lat, lon], axis=-1)


def box_mean(features: Tensor, weights: Tensor, size: int) -> Tensor:
    """Weighted mean of ``features`` over the ``size`` x ``size`` window centred on every pixel.

    Pixels outside the map and pixels of zero weight take no part in the mean (``count_include_pad=False``
    semantics at the edges: the padded sums are divided by the padded weight sums); where the whole window
    has zero weight the mean is zero.

    Args:
        features: Feature map [H, W, D].
        weights: Pixel weights [H, W], e.g. the validity mask.
        size: Odd window side in pixels.

    Returns:
        The pooled map [H, W, D], float32.
    """
    if size < 1 or size % 2 == 0:
        raise BadInputError(f"the pooling window must be a positive odd number of pixels, got {size}")
    w = weights.to(torch.float32)
    if size == 1:
        return features.float() * (w > 0)[..., None]
    weighted = (features.float() * w[..., None]).permute(2, 0, 1)[None]  # [1, D, H, W]
    total = avg_pool2d(weighted, size, stride=1, padding=size // 2)[0].permute(1, 2, 0)
    count = avg_pool2d(w[None, None], size, stride=1, padding=size // 2)[0, 0]
    return torch.where(count[..., None] > 0, total / count.clamp_min(1e-12)[..., None], 0.0)


def autocast(device: torch.device) -> AbstractContextManager[Any]:
    """bf16 autocast on CUDA; a no-op elsewhere."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


def select_bands(composite: xr.Dataset, variable: str, bands: tuple[str, ...], static: bool = False) -> Any:
    """Read ``composite[variable]`` as a float32 array [time, band, y, x] (or [band, y, x] if ``static``).

    The band dimension is the one besides ``time``, ``y`` and ``x``, whatever its name (``landprompt.eo``
    calls it ``s2_band``, ``s1_band``). Bands are picked by its coordinate's labels when it has them, else
    taken in order.

    Raises:
        BadInputError: If the variable has other dimensions or lacks a band.
    """
    array = composite[variable]
    spatial = ("y", "x") if static else ("time", "y", "x")
    others = [d for d in array.dims if d not in spatial]
    if array.ndim != len(spatial) + 1 or len(others) != 1:
        raise BadInputError(
            f"composite variable {variable!r} must have dims ({', '.join(spatial)}, <band>), got {array.dims}"
        )
    band_dim = others[0]
    array = array.transpose(*spatial[:-2], band_dim, "y", "x")
    labelled = band_dim in array.coords and array[band_dim].dtype.kind in "UO"
    if labelled:
        labels = [str(b) for b in array[band_dim].values]
        missing = [b for b in bands if b not in labels]
        if missing:
            raise BadInputError(f"composite variable {variable!r} lacks bands {missing} (it has {labels})")
        array = array.isel({band_dim: [labels.index(b) for b in bands]})
    elif array.sizes[band_dim] != len(bands):
        raise BadInputError(
            f"composite variable {variable!r} has {array.sizes[band_dim]} bands, expected {bands}"
        )
    return np.asarray(array.values, dtype=np.float32)


def to_jsonable(value: Any) -> Any:
    """Paths to strings and tuples to lists, recursively, so that ``json.dumps`` accepts the value."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Put ``module`` in eval mode for the block, then restore its training flag."""
    training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(training)
