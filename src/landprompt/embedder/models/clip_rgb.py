"""``clip_rgb``: CLIP's image tower on Sentinel-2 true-colour composites, a zero-training baseline.

The year's median of B4, B3, B2 (red, green, blue) is stretched to 8-bit RGB (:func:`true_colour`)::

    rgb = round(255 * clip(median_reflectance / rgb_max, 0, 1) ** (1 / gamma))   # rgb_max 3000, gamma 1

and cut into ``patch`` x ``patch`` pixel patches (16 at 10 m: 160 m), each resized by CLIP's own eval
transform and embedded by the image tower. Output stride = ``patch``: the embeddings live on the input grid
coarsened by the patch (:meth:`~landprompt.embedder.models.base.Encoder.output_grid`); partial patches at
the right and bottom edges count their missing pixels as invalid. A patch is valid when at least
``min_valid`` of its pixels have a median for all three bands; its invalid pixels are filled with the mean
colour of its valid ones.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import open_clip
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image
from torch.nn.functional import normalize as l2_normalize

from landprompt.embedder.clip import ClipModel, load_clip
from landprompt.embedder.models.base import Encoder, EncoderSpec, autocast, eval_mode, select_bands
from landprompt.embedder.models.registry import register_encoder
from landprompt.errors import BadInputError

if TYPE_CHECKING:
    import xarray as xr

RGB_BANDS: tuple[str, ...] = ("B4", "B3", "B2")
"""Sentinel-2 bands read as red, green, blue."""


def stretch(reflectance: np.ndarray, rgb_max: float = 3000.0, gamma: float = 1.0) -> np.ndarray:
    """Reflectance x 1e4 to uint8: ``round(255 * clip(r / rgb_max, 0, 1) ** (1 / gamma))``; NaN -> 0."""
    scaled = np.clip(np.nan_to_num(reflectance / rgb_max, nan=0.0), 0.0, 1.0) ** (1.0 / gamma)
    return np.round(255.0 * scaled).astype(np.uint8)


def true_colour(
    composite: xr.Dataset, rgb_max: float = 3000.0, gamma: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """The year's median true-colour image of a composite chunk.

    Returns:
        RGB uint8 [y, x, 3] (0 where invalid) and validity bool [y, x]: all three bands have a median.
    """
    rgb = select_bands(composite, "s2", RGB_BANDS)  # [time, 3, y, x]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: their median is NaN
        median = np.nanmedian(rgb, axis=0).transpose(1, 2, 0)
    valid = np.isfinite(median).all(axis=-1)
    return stretch(median, rgb_max, gamma), valid


def rgb_patches(rgb: np.ndarray, valid: np.ndarray, patch: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut an image into ``patch`` x ``patch`` patches, padding the right and bottom edges.

    Args:
        rgb: uint8 [H, W, 3].
        valid: bool [H, W].
        patch: Patch side in pixels.

    Returns:
        Patches uint8 [rows, cols, patch, patch, 3] with invalid pixels filled by the mean colour of the
        patch's valid pixels, and the valid fraction of each patch float [rows, cols].
    """
    h, w = valid.shape
    rows, cols = math.ceil(h / patch), math.ceil(w / patch)
    pad = ((0, rows * patch - h), (0, cols * patch - w))
    image = np.pad(rgb, (*pad, (0, 0))).reshape(rows, patch, cols, patch, 3).swapaxes(1, 2)
    keep = np.pad(valid, pad).reshape(rows, patch, cols, patch).swapaxes(1, 2)[..., None]
    count = keep.sum(axis=(2, 3))
    mean = (image * keep).sum(axis=(2, 3)) / np.maximum(count, 1)
    filled = np.where(keep, image, np.round(mean).astype(np.uint8)[:, :, None, None, :])
    return filled, count[..., 0] / patch**2


class ClipRgbEncoder(Encoder):
    """CLIP's image tower on true-colour patches of the year's median composite.

    Args:
        clip: The CLIP model; its image tower becomes this module's ``visual``.
        patch: Patch side in pixels (the output stride).
        rgb_max: Reflectance x 1e4 mapped to 255 (see :func:`stretch`).
        gamma: Gamma of the stretch (1 = linear).
        min_valid: Smallest valid fraction of a patch's pixels for the patch to be valid.
        image_preprocess: open_clip preprocessing config overriding ``clip.preprocess`` (used when rebuilding
            from a checkpoint, whose weights may come from a tag with its own mean and std).
        clip_pretrained: Pretrained tag or weights file recorded in the spec (default ``clip.pretrained``).
    """

    def __init__(
        self,
        clip: ClipModel,
        *,
        patch: int = 16,
        rgb_max: float = 3000.0,
        gamma: float = 1.0,
        min_valid: float = 0.5,
        image_preprocess: Mapping[str, Any] | None = None,
        clip_pretrained: str | None = None,
    ) -> None:
        super().__init__()
        if patch < 1:
            raise BadInputError(f"patch must be a positive number of pixels, got {patch}")
        if rgb_max <= 0 or gamma <= 0:
            raise BadInputError(f"rgb_max and gamma must be positive, got {rgb_max}, {gamma}")
        if not 0 < min_valid <= 1:
            raise BadInputError(f"min_valid must be in (0, 1], got {min_valid}")
        self.visual = clip.model.visual
        self.patch, self.rgb_max, self.gamma, self.min_valid = patch, rgb_max, gamma, min_valid
        self.clip_model = clip.name
        self.clip_pretrained = clip_pretrained if clip_pretrained is not None else clip.pretrained
        self.clip_dim = clip.embed_dim
        if image_preprocess is None:
            self.preprocess = clip.preprocess
            self.preprocess_cfg = dict(open_clip.get_model_preprocess_cfg(clip.model))
        else:
            cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in image_preprocess.items()}
            self.preprocess = image_transform_v2(PreprocessCfg(**cfg), is_train=False)
            self.preprocess_cfg = cfg

    @property
    def spec(self) -> EncoderSpec:
        """B4, B3, B2 with the stretch, ``clip_dim`` output, stride and window ``patch``."""
        return EncoderSpec(
            input_kind="rgb_composite",
            bands=RGB_BANDS,
            normalization={
                "composite": "median over time",
                "stretch": "round(255 * clip(reflectance / rgb_max, 0, 1) ** (1 / gamma))",
                "rgb_max": self.rgb_max,
                "gamma": self.gamma,
                "image_mean": self.preprocess_cfg.get("mean"),
                "image_std": self.preprocess_cfg.get("std"),
            },
            embed_dim=self.clip_dim,
            output_stride=self.patch,
            window=self.patch,
            clip_model=self.clip_model,
            clip_pretrained=self.clip_pretrained,
        )

    def resolved_arguments(self) -> dict[str, Any]:
        """The image preprocessing, so that a rebuild from random weights preprocesses alike."""
        return {"image_preprocess": self.preprocess_cfg}

    def embed_images(self, images: list[Image.Image]) -> torch.Tensor:
        """Embed PIL images (B, clip_dim), L2-normalised, through CLIP's eval transform and image tower."""
        batch = torch.stack([self.preprocess(image) for image in images]).to(self.device)
        with autocast(self.device):
            features = self.visual(batch)
        return l2_normalize(features.float(), dim=-1)

    @torch.inference_mode()
    def embed_dense(
        self, composite: xr.Dataset, latlon: np.ndarray | None = None, batch_size: int = 256
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embed every ``patch`` x ``patch`` patch of a composite chunk (``latlon`` is not used).

        Returns:
            Embeddings float32 [ceil(H / patch), ceil(W / patch), clip_dim] (zero where invalid) and
            validity bool: the patch has at least ``min_valid`` valid pixels.
        """
        if batch_size < 1:
            raise BadInputError(f"batch_size must be at least 1, got {batch_size}")
        patches, fraction = rgb_patches(*true_colour(composite, self.rgb_max, self.gamma), self.patch)
        valid = fraction >= self.min_valid
        out = np.zeros((*valid.shape, self.clip_dim), dtype=np.float32)
        cells = np.argwhere(valid)
        with eval_mode(self):
            for start in range(0, len(cells), batch_size):
                rows, cols = cells[start : start + batch_size].T
                images = [Image.fromarray(patches[r, c]) for r, c in zip(rows, cols, strict=True)]
                out[rows, cols] = self.embed_images(images).cpu().numpy()
        return out, valid


@register_encoder("clip_rgb")
def clip_rgb(
    *,
    clip_model: str = "ViT-B-32",
    clip_pretrained: str | Path | None = "laion2b_s34b_b79k",
    patch: int = 16,
    rgb_max: float = 3000.0,
    gamma: float = 1.0,
    min_valid: float = 0.5,
    seed: int = 0,
    image_preprocess: Mapping[str, Any] | None = None,
    pretrained: bool = True,
) -> ClipRgbEncoder:
    """CLIP image tower on S2 true-colour patches (see :class:`ClipRgbEncoder`).

    Args:
        clip_model: open_clip model name.
        clip_pretrained: Its pretrained tag or a local weights file; None for seeded random weights.
        patch: Patch side in pixels (output stride).
        rgb_max: Reflectance x 1e4 mapped to 255.
        gamma: Gamma of the stretch.
        min_valid: Smallest valid fraction of a patch.
        seed: Seed of a random initialisation.
        image_preprocess: open_clip preprocessing config overriding the model's.
        pretrained: Load ``clip_pretrained`` (False: random weights, to be replaced by a checkpoint's).
    """
    tag = None if clip_pretrained is None else str(clip_pretrained)
    clip = load_clip(clip_model, tag if pretrained else None, device="cpu", seed=seed)
    return ClipRgbEncoder(
        clip,
        patch=patch,
        rgb_max=rgb_max,
        gamma=gamma,
        min_valid=min_valid,
        image_preprocess=image_preprocess,
        clip_pretrained=tag,
    )
