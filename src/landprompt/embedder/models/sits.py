"""``sits``: a Presto-compatible pixel time-series encoder with a projection head into CLIP's space.

The backbone is :class:`~landprompt.embedder.models.presto.PrestoEncoder` (optionally started from the
official Presto weights); its pooled per-pixel embedding is the *pixel feature*. A pixel model sees a
``pool_size`` x ``pool_size`` window, as a ground photo sees more than one 10 m pixel:

- training (:meth:`SitsEncoder.forward_window`): the mean of the pixel features of the window, then the head;
- inference (:meth:`SitsEncoder.embed_dense`): the same mean as a box filter over the pixel-feature map
  (:func:`~landprompt.embedder.models.base.box_mean`), then the head, so one pass serves the whole grid.

Pixels without any Sentinel-1 or Sentinel-2 observation in the year are invalid: they take no part in the
means and get a zero embedding. Inputs follow Presto's conventions (see :func:`presto_inputs`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.functional import normalize as l2_normalize

from landprompt.embedder.basis import Basis, linear_head_basis
from landprompt.embedder.models.base import (
    S1_BANDS,
    S2_BANDS,
    Encoder,
    EncoderSpec,
    autocast,
    box_mean,
    eval_mode,
    select_bands,
)
from landprompt.embedder.models.presto import (
    BANDS,
    CHANNEL_GROUPS,
    NORMALIZATION,
    PrestoEncoder,
    load_presto_encoder,
    normalize,
)
from landprompt.embedder.models.registry import register_encoder
from landprompt.errors import BadInputError

if TYPE_CHECKING:
    import xarray as xr

ERA5_BANDS: tuple[str, ...] = ("temperature_2m", "total_precipitation")
"""Bands of the optional ``era5`` composite variable [time, band, y, x] (K, m)."""

SRTM_BANDS: tuple[str, ...] = ("elevation", "slope")
"""Bands of the optional static ``srtm`` composite variable [band, y, x] (m, degrees)."""

OBSERVED_CHANNELS: tuple[int, ...] = tuple(
    i for name, idx in CHANNEL_GROUPS.items() if name.startswith(("S1", "S2")) for i in idx
)
"""Channels of :data:`~landprompt.embedder.models.presto.BANDS` that are satellite observations: a pixel
with none of them at any step is invalid."""

_PRESTO_ARCHITECTURE = {"embed_dim": 128, "depth": 2, "num_heads": 8, "mlp_ratio": 4.0}
HEAD_MOMENT_NAMES = ("mean", "moment", "count")
"""The running moments of a linear head's input ``z``: mean, second moment ``E[z z^T]``, samples seen."""
HEAD_MOMENTS_MOMENTUM = 0.01
"""Weight of the newest training batch in the running moments of a linear head's input once they have seen
``1 / HEAD_MOMENTS_MOMENTUM`` times its samples (before: every sample seen weighs the same)."""
CPU_PIXELS_PER_PASS = 128
"""Most pixels in one backbone pass on the CPU: about 11k tokens, whose activations stay in cache
(1.5x the pixels/s of 1024-pixel passes on 2 cores, ``benchmarks/embed.py``)."""


@dataclass(frozen=True)
class PixelSeries:
    """Presto inputs for every pixel of a chunk.

    Attributes:
        x: Normalised channels float32 [H, W, T, 17] in :data:`~landprompt.embedder.models.presto.BANDS`
            order, 0 where masked.
        mask: True where a value is missing, bool [H, W, T, 17].
        month: Month 0-11 of each step, int64 [T].
        latlon: Latitude and longitude in degrees of each pixel, float [H, W, 2], or None.
    """

    x: np.ndarray
    mask: np.ndarray
    month: np.ndarray
    latlon: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """Rows and columns."""
        return self.x.shape[0], self.x.shape[1]

    @property
    def valid(self) -> np.ndarray:
        """Pixels with at least one Sentinel-1 or Sentinel-2 value, bool [H, W]."""
        return any_observed(self.mask)


def any_observed(mask: np.ndarray) -> np.ndarray:
    """Whether a series (mask [..., T, 17]) has any satellite observation; bool [...]."""
    return np.asarray(~mask[..., list(OBSERVED_CHANNELS)].all(axis=(-2, -1)))


def presto_inputs(
    s2: np.ndarray | None = None,
    s1: np.ndarray | None = None,
    era5: np.ndarray | None = None,
    srtm: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Presto inputs from raw values; an absent source, or a NaN value, is masked.

    Args:
        s2: Reflectance x 1e4 [..., T, 10] in :data:`~landprompt.embedder.models.base.S2_BANDS` order.
        s1: Backscatter in dB [..., T, 2] (VV, VH).
        era5: [..., T, 2] 2 m temperature (K) and total precipitation (m).
        srtm: Static [..., 2] elevation (m) and slope (degrees).

    Returns:
        ``x`` float32 [..., T, 17] normalised as Presto does (0 where masked) and ``mask`` bool [..., T, 17].
    """
    first = s2 if s2 is not None else s1
    if first is None:
        raise BadInputError("a composite needs Sentinel-2 or Sentinel-1 values (s2 or s1)")
    lead = first.shape[:-1]
    raw = np.full((*lead, len(BANDS)), np.nan, dtype=np.float64)
    for values, bands in ((s2, S2_BANDS), (s1, S1_BANDS), (era5, ERA5_BANDS), (srtm, SRTM_BANDS)):
        if values is None:
            continue
        expected = (*lead[:-1], len(bands)) if bands is SRTM_BANDS else (*lead, len(bands))
        if values.shape != expected:
            raise BadInputError(f"{bands} values have shape {values.shape}, expected {expected}")
        idx = [BANDS.index(b) for b in bands]
        raw[..., idx] = values[..., None, :] if bands is SRTM_BANDS else values
    x = normalize(raw)
    mask = np.isnan(x)
    x[mask] = 0.0
    return x, mask


def series_from_composite(composite: xr.Dataset, latlon: np.ndarray | None = None) -> PixelSeries:
    """Presto inputs of every pixel of a monthly composite chunk.

    Reads ``s2`` and ``s1`` (either may be absent, not both) and, when present, ``era5`` [time, band, y, x]
    and ``srtm`` [band, y, x]; other sources are masked. The month of each step comes from the ``time``
    coordinate (0 = January), or counts from January without one.

    Args:
        composite: The chunk (layout in :mod:`landprompt.embedder.models.base`).
        latlon: Pixel-centre latitude and longitude in degrees [y, x, 2], or None.
    """
    arrays: dict[str, np.ndarray] = {}
    for name, bands, static in (
        ("s2", S2_BANDS, False),
        ("s1", S1_BANDS, False),
        ("era5", ERA5_BANDS, False),
        ("srtm", SRTM_BANDS, True),
    ):
        if name in composite.data_vars:
            values = select_bands(composite, name, bands, static=static)
            arrays[name] = np.moveaxis(values, (-2, -1), (0, 1))  # [y, x, (time,) band]
    shapes = {name: a.shape[:2] for name, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        raise BadInputError(f"composite variables differ in their y, x sizes: {shapes}")
    x, mask = presto_inputs(**arrays)
    if latlon is not None and np.shape(latlon) != (*x.shape[:2], 2):
        raise BadInputError(
            f"latlon must have shape {(*x.shape[:2], 2)} (y, x, lat/lon), got {np.shape(latlon)}"
        )
    return PixelSeries(x, mask, _step_months(composite, x.shape[2]), latlon)


def _step_months(composite: xr.Dataset, steps: int) -> np.ndarray:
    """Month 0-11 of each step from a datetime ``time`` coordinate; 0, 1, ... without one."""
    if "time" in composite.coords and np.issubdtype(composite["time"].dtype, np.datetime64):
        return np.asarray(composite["time"].dt.month.values, dtype=np.int64) - 1
    return np.arange(steps, dtype=np.int64) % 12


class SitsEncoder(Encoder):
    """Presto backbone + projection head, pooling pixel features over a window.

    Args:
        backbone: The pixel time-series encoder.
        head: Maps pooled pixel features (B, backbone width) to CLIP's space (B, clip_dim).
        pool_size: Odd side of the pooled window in pixels (1 = single pixels).
        clip_model: open_clip model of the target space (metadata).
        clip_pretrained: Its pretrained tag or weights file (metadata).
    """

    def __init__(
        self,
        backbone: PrestoEncoder,
        head: nn.Module,
        *,
        pool_size: int = 5,
        clip_model: str | None = None,
        clip_pretrained: str | None = None,
    ) -> None:
        super().__init__()
        if pool_size < 1 or pool_size % 2 == 0:
            raise BadInputError(f"pool_size must be a positive odd number of pixels, got {pool_size}")
        self.backbone = backbone
        self.head = head
        self.pool_size = pool_size
        self.clip_model = clip_model
        self.clip_pretrained = clip_pretrained
        with torch.no_grad():
            self.clip_dim = int(head(torch.zeros(1, backbone.embed_dim)).shape[-1])
        layers = _linear_head_layers(head)
        if layers is not None:  # running moments of the last layer's input (head_moments); not weights
            width = layers[-1].in_features
            for name, shape in zip(HEAD_MOMENT_NAMES, ((width,), (width, width), ()), strict=True):
                self.register_buffer(f"head_input_{name}", torch.zeros(shape, dtype=torch.float64), False)

    @property
    def spec(self) -> EncoderSpec:
        """Presto bands and normalisation, ``clip_dim`` output, stride 1, window ``pool_size``."""
        bands = S1_BANDS + S2_BANDS
        norm: dict[str, Any] = {
            b: dict(zip(("shift", "div"), NORMALIZATION[b], strict=True))
            for b in bands + ERA5_BANDS + SRTM_BANDS
        }
        norm["NDVI"] = "(B8 - B4) / (B8 + B4) of the normalised bands"
        return EncoderSpec(
            input_kind="pixel_timeseries",
            bands=bands,
            normalization=norm,
            embed_dim=self.clip_dim,
            output_stride=1,
            window=self.pool_size,
            clip_model=self.clip_model,
            clip_pretrained=self.clip_pretrained,
            optional_bands=ERA5_BANDS + SRTM_BANDS,
        )

    def pixel_features(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        dynamic_world: Tensor | None = None,
        latlon: Tensor | None = None,
        month: int | Tensor = 0,
    ) -> Tensor:
        """Backbone embedding (B, D) of each pixel series; arguments as in :meth:`PrestoEncoder.forward`."""
        return self.backbone(x, mask, dynamic_world, latlon, month)

    @property
    def has_linear_head(self) -> bool:
        """Whether :meth:`head_basis` gives a basis (a linear head, no wider in than out), unbuilt."""
        return _linear_head_layers(self.head) is not None

    def head_basis(self) -> Basis | None:
        """The exact basis of a linear head (with or without a bottleneck), or None for another head.

        The head's last Linear layer ``e = W z + b`` is the basis; ``z`` (:meth:`head_features`) is the
        pooled backbone feature (r = backbone width) or the bottleneck's output (r = bottleneck). Where
        training recorded the moments of ``z`` (:meth:`head_moments`), the basis's offset code lies along
        the data's mean embedding (``info``: ``offset: data_mean``, ``mean_samples``), else along the bias
        (see :func:`~landprompt.embedder.basis.linear_head_basis`).
        """
        layers = _linear_head_layers(self.head)
        if layers is None:
            return None
        last = layers[-1]
        bias = None if last.bias is None else last.bias.detach().cpu().numpy()
        info: dict[str, Any] = {
            "layers": len(layers),
            "features": "bottleneck" if len(layers) > 1 else "backbone",
        }
        moments = self.head_moments()
        if moments is None:
            return linear_head_basis(last.weight.detach().cpu().numpy(), bias, info)
        mean, covariance, info["mean_samples"] = moments
        return linear_head_basis(
            last.weight.detach().cpu().numpy(), bias, info, mean=mean, covariance=covariance
        )

    def head_moments(self) -> tuple[np.ndarray, np.ndarray, int] | None:
        """The mean (r,) and covariance (r, r) of a linear head's input over training, and the samples seen.

        Training (:meth:`forward_window` in train mode) keeps them as running averages (the plain mean
        until :data:`HEAD_MOMENTS_MOMENTUM` takes over); checkpoints keep them (:meth:`statistics`).
        None for another head, or before any training batch (an untrained head, an old checkpoint).
        """
        buffers = self._moment_buffers()
        if not buffers or float(buffers["count"]) <= 0:
            return None
        mean, moment = (buffers[name].detach().cpu().numpy() for name in ("mean", "moment"))
        return mean, moment - np.outer(mean, mean), int(buffers["count"])

    def _moment_buffers(self) -> dict[str, Tensor]:
        """The buffers of the running moments (:data:`HEAD_MOMENT_NAMES`) by name; empty for another head."""
        found = {name: getattr(self, f"head_input_{name}", None) for name in HEAD_MOMENT_NAMES}
        return {name: buffer for name, buffer in found.items() if isinstance(buffer, Tensor)}

    @torch.no_grad()
    def _record_head_input(self, pooled: Tensor) -> None:
        """Fold a training batch of pooled features into the running moments of the head's input."""
        buffers = self._moment_buffers()
        with torch.autocast(pooled.device.type, enabled=False):
            z = self.head_features(pooled.float()).double()
        seen = buffers["count"] + len(z)
        weight = (len(z) / seen).clamp(min=HEAD_MOMENTS_MOMENTUM)
        buffers["mean"].lerp_(z.mean(dim=0), weight)
        buffers["moment"].lerp_(z.T @ z / len(z), weight)
        buffers["count"].copy_(seen)

    def statistics(self) -> dict[str, Tensor]:
        """The running moments of a linear head's input (``head_input.*``), once training recorded any."""
        if self.head_moments() is None:
            return {}
        return {f"head_input.{name}": buffer for name, buffer in self._moment_buffers().items()}

    def load_statistics(self, tensors: Mapping[str, Tensor]) -> None:
        """Restore :meth:`statistics` read from a checkpoint (a checkpoint without them keeps none).

        Raises:
            BadInputError: if they do not fit the head or hold NaN, infinite or negative counts.
        """
        if not tensors:
            return
        buffers = {f"head_input.{name}": buffer for name, buffer in self._moment_buffers().items()}
        if set(tensors) != set(buffers) or any(tensors[k].shape != b.shape for k, b in buffers.items()):
            raise BadInputError(
                f"the checkpoint's statistics ({', '.join(sorted(tensors))}) do not fit this encoder's head"
            )
        if (
            not all(torch.isfinite(t).all() for t in tensors.values())
            or float(tensors["head_input.count"]) < 0
        ):
            raise BadInputError("the checkpoint's head input moments hold NaN, infinite or negative values")
        for key, buffer in buffers.items():
            buffer.copy_(tensors[key])

    def head_features(self, pooled: Tensor) -> Tensor:
        """The input ``z`` (B, r) of a linear head's last layer: the pooled features through the others."""
        layers = list(self.head) if isinstance(self.head, nn.Sequential) else [self.head]
        for layer in layers[:-1]:
            pooled = layer(pooled)
        return pooled

    def project(self, features: Tensor, normalize: bool = True) -> Tensor:
        """Map pooled features (B, D) into CLIP's space (B, clip_dim), L2-normalised unless told not to."""
        out = self.head(features)
        return l2_normalize(out.float(), dim=-1) if normalize else out

    def forward_window(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        dynamic_world: Tensor | None = None,
        latlon: Tensor | None = None,
        month: int | Tensor = 0,
        normalize: bool = True,
    ) -> Tensor:
        """Embed windows of pixels: the mean of their valid pixels' features, then the head.

        Args:
            x: Normalised channels (B, N, T, C) of the N = P x P pixels of each window.
            mask: (B, N, T, C), True where missing; pixels with no S1/S2 value are left out of the mean.
            dynamic_world: Classes (B, N, T); None = missing.
            latlon: Degrees, per pixel (B, N, 2) or per window (B, 2); None leaves out the location token.
            month: Start month (int or (B,)) or the month of every step (B, T).
            normalize: L2-normalise the output.

        Returns:
            Embeddings (B, clip_dim).
        """
        if x.ndim != 4:
            raise BadInputError(f"x must have shape (windows, pixels, steps, channels), got {tuple(x.shape)}")
        b, n, t, c = x.shape
        mask = torch.zeros_like(x, dtype=torch.bool) if mask is None else mask.bool()
        if latlon is not None and latlon.ndim == 2:
            latlon = latlon[:, None].expand(b, n, 2)
        month = torch.as_tensor(month, device=x.device)
        if month.ndim > 0:
            month = month.repeat_interleave(n, dim=0)
        features = self.pixel_features(
            x.reshape(b * n, t, c),
            mask.reshape(b * n, t, c),
            None if dynamic_world is None else dynamic_world.reshape(b * n, t),
            None if latlon is None else latlon.reshape(b * n, 2),
            month,
        ).view(b, n, -1)
        keep = (~mask[..., list(OBSERVED_CHANNELS)]).flatten(-2).any(-1)[..., None].to(features.dtype)
        pooled = (features * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1.0)
        if self.training and self._moment_buffers():
            self._record_head_input(pooled.detach())
        return self.project(pooled, normalize)

    forward = forward_window

    def embed_dense(
        self,
        composite: xr.Dataset,
        latlon: np.ndarray | None = None,
        batch_size: int = 1024,
        features: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embed every pixel of a composite chunk (see :meth:`Encoder.embed_dense`).

        ``latlon`` [y, x, 2] gives each pixel's location token; None masks that token everywhere.
        ``features`` returns the linear head's input ``z`` instead (see :meth:`head_basis`).
        """
        return self.embed_series(series_from_composite(composite, latlon), batch_size, features)

    @torch.inference_mode()
    def embed_series(
        self, series: PixelSeries, batch_size: int = 1024, features: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embed prepared inputs: pixel features, box mean over ``pool_size``, head, L2 norm.

        ``batch_size`` pixels go through the backbone at a time, at most :data:`CPU_PIXELS_PER_PASS` on the
        CPU (the results do not depend on it beyond float rounding).

        Args:
            series: Prepared inputs.
            batch_size: Pixels a forward pass.
            features: Return the linear head's input ``z`` [H, W, r] (unnormalised) instead of the
                embeddings: what a cube in the head's basis stores (:meth:`head_basis`).

        Returns:
            Embeddings float32 [H, W, clip_dim] (zero where invalid) and validity bool [H, W].
        """
        layers = _linear_head_layers(self.head)
        if features and layers is None:
            raise BadInputError("head features need a linear head (head: linear)")
        if batch_size < 1:
            raise BadInputError(f"batch_size must be at least 1, got {batch_size}")
        (h, w), steps = series.shape, series.x.shape[2]
        valid = series.valid
        device = self.device
        rows = torch.from_numpy(np.flatnonzero(valid)).to(device)
        x = torch.from_numpy(series.x).view(h * w, steps, -1)
        mask = torch.from_numpy(series.mask).view(h * w, steps, -1)
        latlon = (
            None if series.latlon is None else torch.as_tensor(series.latlon, dtype=torch.float32).view(-1, 2)
        )
        month = torch.from_numpy(series.month).to(device)
        width = layers[-1].in_features if features and layers is not None else self.clip_dim
        out = torch.zeros(h * w, width, device=device)
        backbone_out = torch.zeros(h * w, self.backbone.embed_dim, device=device)
        per_pass = min(batch_size, CPU_PIXELS_PER_PASS) if device.type == "cpu" else batch_size
        with eval_mode(self):
            for batch in rows.split(per_pass):
                cpu = batch.cpu()
                with autocast(device):
                    f = self.pixel_features(
                        x[cpu].to(device),
                        mask[cpu].to(device),
                        latlon=None if latlon is None else latlon[cpu].to(device),
                        month=month.expand(len(batch), steps),
                    )
                backbone_out[batch] = f.float()
            pooled = box_mean(backbone_out.view(h, w, -1), torch.from_numpy(valid).to(device), self.pool_size)
            pooled = pooled.view(h * w, -1)
            for batch in rows.split(batch_size):
                if features:  # float32: the cube stores them exactly
                    out[batch] = self.head_features(pooled[batch].float())
                    continue
                with autocast(device):
                    out[batch] = self.project(pooled[batch])
        return out.view(h, w, -1).cpu().numpy(), valid


def _linear_head_layers(head: nn.Module) -> list[nn.Linear] | None:
    """The layers of a linear head (Linear layers only, the last no wider in than out), else None."""
    layers = list(head) if isinstance(head, nn.Sequential) else [head]
    if not layers or not all(isinstance(layer, nn.Linear) for layer in layers):
        return None
    linear = [layer for layer in layers if isinstance(layer, nn.Linear)]
    return linear if linear[-1].in_features <= linear[-1].out_features else None  # else nothing to gain


def build_head(
    in_dim: int,
    out_dim: int,
    kind: Literal["linear", "mlp"] = "linear",
    hidden: int | None = None,
    bottleneck: int | None = None,
    bottleneck_bias: bool = False,
) -> nn.Module:
    """Projection head: a Linear layer, or Linear-GELU-Linear with ``hidden`` (default ``out_dim``) units.

    A linear head with a ``bottleneck`` is Linear(in, bottleneck) then Linear(bottleneck, out) (without
    bias unless ``bottleneck_bias``), trained end to end: still linear, so a cube stores exactly the
    ``bottleneck`` values a pixel (format version 4; ``bottleneck + 1`` with a bias).
    """
    if bottleneck is not None:
        if kind != "linear":
            raise BadInputError(f"a head bottleneck needs head 'linear', got {kind!r}")
        if not isinstance(bottleneck, int) or not 1 <= bottleneck <= out_dim:
            raise BadInputError(
                f"bottleneck must be a whole number from 1 to clip_dim {out_dim}, got {bottleneck}"
            )
        return nn.Sequential(
            nn.Linear(in_dim, bottleneck), nn.Linear(bottleneck, out_dim, bias=bottleneck_bias)
        )
    if kind == "linear":
        return nn.Sequential(nn.Linear(in_dim, out_dim))
    if kind == "mlp":
        width = hidden or out_dim
        return nn.Sequential(nn.Linear(in_dim, width), nn.GELU(), nn.Linear(width, out_dim))
    raise BadInputError(f"unknown head {kind!r}; use 'linear' or 'mlp'")


@register_encoder("sits")
def sits(
    *,
    clip_dim: int = 512,
    head: Literal["linear", "mlp"] = "linear",
    head_hidden: int | None = None,
    bottleneck: int | None = None,
    bottleneck_bias: bool = False,
    pool_size: int = 5,
    presto_weights: str | Path | None = None,
    embed_dim: int = 128,
    depth: int = 2,
    num_heads: int = 8,
    mlp_ratio: float = 4.0,
    clip_model: str | None = None,
    clip_pretrained: str | None = None,
    pretrained: bool = True,
) -> SitsEncoder:
    """Presto-compatible pixel time-series encoder with a head into a ``clip_dim`` CLIP space.

    Args:
        clip_dim: Output width (CLIP's embedding dimension, e.g. 512 for ViT-B-32).
        head: ``"linear"`` or ``"mlp"`` projection head.
        head_hidden: Hidden width of the ``"mlp"`` head (default ``clip_dim``).
        bottleneck: Width of a ``"linear"`` head's bottleneck (e.g. 64): the cube of such an encoder
            stores ``bottleneck`` values a pixel exactly (see :meth:`SitsEncoder.head_basis`).
        bottleneck_bias: Give the bottleneck's up-projection a bias (as checkpoints written before this
            argument have; their cubes store one more value a pixel).
        pool_size: Odd side in pixels of the window whose pixel features are averaged.
        presto_weights: Official Presto weights (``default_model.pt`` or ``.safetensors``) to start the
            backbone from; needs the default backbone size.
        embed_dim: Backbone width.
        depth: Backbone transformer blocks.
        num_heads: Attention heads per block.
        mlp_ratio: Feed-forward width relative to ``embed_dim``.
        clip_model: open_clip model whose space the head targets (metadata for checkpoints and cubes).
        clip_pretrained: Its pretrained tag or weights file (metadata).
        pretrained: Load ``presto_weights`` (False builds the architecture only).
    """
    architecture = {"embed_dim": embed_dim, "depth": depth, "num_heads": num_heads, "mlp_ratio": mlp_ratio}
    if presto_weights is not None and architecture != _PRESTO_ARCHITECTURE:
        raise BadInputError(
            f"presto_weights need the Presto backbone {_PRESTO_ARCHITECTURE}, got {architecture}; "
            "leave presto_weights unset for another size"
        )
    if presto_weights is not None and pretrained:
        backbone = load_presto_encoder(presto_weights).train()
    else:
        backbone = PrestoEncoder(embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio)
    return SitsEncoder(
        backbone,
        build_head(embed_dim, clip_dim, head, head_hidden, bottleneck, bottleneck_bias),
        pool_size=pool_size,
        clip_model=clip_model,
        clip_pretrained=clip_pretrained,
    )
