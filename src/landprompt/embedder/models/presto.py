"""Presto-compatible pixel time-series encoder.

A re-implementation of the encoder of Presto (Tseng et al., 2023; github.com/nasaharvest/presto, MIT)
whose parameter names and shapes match the official checkpoint, so the pretrained weights load unchanged
and reproduce the official embeddings.

Each monthly step of a pixel is split into one token per channel group (a linear projection of the group's
normalised channels), static groups (SRTM) give one token, and the Dynamic World class of each step gives
one more. A token's code is the concatenation ``[month, channel group, position]`` of three embeddings
(static tokens keep only the channel part), added to the token. A lat/lon token is prepended. Masked tokens
take no part in attention (the official code drops them; a key-padding mask gives the same result), and the
embedding is the final LayerNorm of the mean of the unmasked tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.functional import scaled_dot_product_attention

from landprompt.errors import BadInputError

BANDS: tuple[str, ...] = (
    "VV",
    "VH",
    "B2",
    "B3",
    "B4",
    "B5",
    "B6",
    "B7",
    "B8",
    "B8A",
    "B11",
    "B12",
    "temperature_2m",
    "total_precipitation",
    "elevation",
    "slope",
    "NDVI",
)
"""The 17 normalised input channels, in the order of the last axis of ``x``."""

CHANNEL_GROUPS: Mapping[str, tuple[int, ...]] = MappingProxyType(
    {
        "S1": (0, 1),
        "S2_RGB": (2, 3, 4),
        "S2_Red_Edge": (5, 6, 7),
        "S2_NIR_10m": (8,),
        "S2_NIR_20m": (9,),
        "S2_SWIR": (10, 11),
        "ERA5": (12, 13),
        "SRTM": (14, 15),
        "NDVI": (16,),
    }
)
"""Channel groups (one token per group and step) as indices into :data:`BANDS`; the order sets the
group's row of the channel embedding, the Dynamic World token taking the row after the last group."""

STATIC_GROUPS: tuple[str, ...] = ("SRTM",)
"""Groups that do not change over time: one token, taken from the first step."""

NORMALIZATION: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        **dict.fromkeys(("VV", "VH"), (25.0, 25.0)),
        **dict.fromkeys(("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"), (0.0, 10_000.0)),
        "temperature_2m": (-272.15, 35.0),
        "total_precipitation": (0.0, 0.03),
        "elevation": (0.0, 2000.0),
        "slope": (0.0, 50.0),
        "NDVI": (0.0, 1.0),
    }
)
"""Presto's normalisation ``(raw + shift) / div`` of each band of :data:`BANDS`, as ``(shift, div)``. Raw
units: S1 dB, S2 reflectance x 1e4, temperature K, precipitation m, elevation m, slope degrees."""


def normalize(raw: np.ndarray) -> np.ndarray:
    """Normalise raw values (..., 17) in :data:`BANDS` order as Presto does, into float32.

    The NDVI channel is recomputed from the normalised B8 and B4 as ``(B8 - B4) / (B8 + B4)`` (0 where both
    are 0), whatever the raw NDVI. NaN stays NaN.
    """
    if raw.shape[-1] != len(BANDS):
        raise BadInputError(f"raw values must have {len(BANDS)} channels {BANDS}, got shape {raw.shape}")
    shift, div = np.asarray([NORMALIZATION[band] for band in BANDS], dtype=np.float64).T
    out = ((raw + shift) / div).astype(np.float32)
    b8, b4 = out[..., BANDS.index("B8")], out[..., BANDS.index("B4")]
    total = b8 + b4
    with np.errstate(invalid="ignore", divide="ignore"):
        out[..., BANDS.index("NDVI")] = np.where(total == 0, 0.0, (b8 - b4) / total)
    return out


NUM_DW_CLASSES = 9
"""Dynamic World land-cover classes; the class index ``NUM_DW_CLASSES`` means missing (masked)."""

NUM_MONTHS = 12


def sinusoid_table(num_positions: int, dim: int, base: float = 1000.0) -> Tensor:
    """Fixed sine/cosine position table (even columns sine, odd columns cosine), shape (positions, dim)."""
    position = torch.arange(num_positions, dtype=torch.float64)[:, None]
    exponent = 2 * (torch.arange(dim) // 2) / dim
    angle = position / base**exponent
    table = torch.where(torch.arange(dim) % 2 == 0, angle.sin(), angle.cos())
    return table.float()


def month_table(dim: int) -> Tensor:
    """Fixed month table (12, dim): ``dim / 2`` columns of sin(2 pi m / 12), then as many of the cosine."""
    if dim % 2:
        raise ValueError(f"the month embedding width must be even, got {dim}")
    angle = torch.arange(NUM_MONTHS, dtype=torch.float64)[:, None] * (2 * torch.pi / NUM_MONTHS)
    return torch.cat([angle.sin().expand(-1, dim // 2), angle.cos().expand(-1, dim // 2)], dim=1).float()


def latlon_to_xyz(latlon: Tensor) -> Tensor:
    """Map (..., 2) latitude/longitude in degrees to points (..., 3) on the unit sphere."""
    lat, lon = torch.deg2rad(latlon).unbind(-1)
    return torch.stack([lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()], dim=-1)


class Attention(nn.Module):
    """Multi-head self-attention (timm layout: fused ``qkv`` and ``proj``) with a key-padding mask."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, attend: Tensor | None = None) -> Tensor:
        """Attend over tokens ``x`` (B, N, D); ``attend`` (B, N) is True for keys that may be attended to."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        attn_mask = None if attend is None else attend[:, None, None, :]
        out = scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    """Two-layer GELU feed-forward network (timm layout: ``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the network token-wise."""
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block (timm layout: ``norm1``, ``attn``, ``norm2``, ``mlp``)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, attend: Tensor | None = None) -> Tensor:
        """Update tokens ``x`` (B, N, D), attending only to keys where ``attend`` (B, N) is True."""
        x = x + self.attn(self.norm1(x), attend)
        return x + self.mlp(self.norm2(x))


class PrestoEncoder(nn.Module):
    """Presto pixel time-series encoder; parameter names match the official checkpoint's ``encoder.*``.

    Inputs, for B pixels and T monthly steps: ``x`` (B, T, C) normalised channels (:data:`BANDS` by
    default), ``mask`` (B, T, C) true/1 where a value is missing, ``dynamic_world`` (B, T) class indices
    (``num_dw_classes`` = missing), ``latlon`` (B, 2) degrees, ``month`` the start month 0-11 (an int, a (B,)
    tensor) or the month of every step (a (B, T) tensor).

    Tokens are laid out as ``[lat/lon, group_1 x T, ..., static group x 1, ..., Dynamic World x T]``, in the
    order of ``channel_groups``.

    Args:
        embed_dim: token width.
        depth: number of transformer blocks.
        num_heads: attention heads per block.
        mlp_ratio: hidden width of the feed-forward networks relative to ``embed_dim``.
        channel_groups: group name -> channel indices of ``x``; one linear projection per group.
        static_groups: groups that are constant over time (one token from the first step).
        num_dw_classes: Dynamic World classes; index ``num_dw_classes`` marks a missing step.
        channel_embed_ratio: share of the token width taken by the channel-group embedding.
        month_embed_ratio: share of the token width taken by the month embedding.
        max_sequence_length: longest series the positional table covers.
    """

    def __init__(
        self,
        *,
        embed_dim: int = 128,
        depth: int = 2,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        channel_groups: Mapping[str, Sequence[int]] = CHANNEL_GROUPS,
        static_groups: Sequence[str] = STATIC_GROUPS,
        num_dw_classes: int = NUM_DW_CLASSES,
        channel_embed_ratio: float = 0.25,
        month_embed_ratio: float = 0.25,
        max_sequence_length: int = 24,
    ) -> None:
        super().__init__()
        unknown = set(static_groups) - set(channel_groups)
        if unknown:
            raise ValueError(f"static groups {sorted(unknown)} are not channel groups")
        self.channel_groups = {name: tuple(idx) for name, idx in channel_groups.items()}
        self.static_groups = frozenset(static_groups)
        self.in_chans = 1 + max(i for idx in self.channel_groups.values() for i in idx)
        self.embed_dim = embed_dim
        self.num_dw_classes = num_dw_classes
        self.max_sequence_length = max_sequence_length
        channel_dim = int(embed_dim * channel_embed_ratio)
        month_dim = int(embed_dim * month_embed_ratio)
        pos_dim = embed_dim - channel_dim - month_dim

        self.eo_patch_embed = nn.ModuleDict(
            {name: nn.Linear(len(idx), embed_dim) for name, idx in self.channel_groups.items()}
        )
        self.dw_embed = nn.Embedding(num_dw_classes + 1, embed_dim)
        self.latlon_embed = nn.Linear(3, embed_dim)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim)

        self.register_buffer("pos_embed", sinusoid_table(max_sequence_length, pos_dim)[None])
        self.month_embed = nn.Embedding.from_pretrained(month_table(month_dim), freeze=True)
        self.channel_embed = nn.Embedding(len(self.channel_groups) + 1, channel_dim)
        self.apply(self._init_weights)

    pos_embed: Tensor

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)

    def tokenize(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        dynamic_world: Tensor | None = None,
        latlon: Tensor | None = None,
        month: int | Tensor = 0,
    ) -> tuple[Tensor, Tensor]:
        """Embed the inputs into tokens.

        Returns:
            Tokens (B, N, D) and the token mask (B, N), True where a token is masked. Without ``latlon`` the
            lat/lon token is masked.
        """
        if x.ndim != 3 or x.shape[-1] != self.in_chans:
            raise BadInputError(f"x must have shape (batch, steps, {self.in_chans}), got {tuple(x.shape)}")
        b, t, _ = x.shape
        if t > self.max_sequence_length:
            raise BadInputError(f"{t} steps exceed the encoder's maximum of {self.max_sequence_length}")
        mask = torch.zeros_like(x, dtype=torch.bool) if mask is None else mask.bool()
        if mask.shape != x.shape:
            raise BadInputError(f"mask has shape {tuple(mask.shape)}, expected {tuple(x.shape)}")
        if dynamic_world is None:
            dynamic_world = torch.full((b, t), self.num_dw_classes, dtype=torch.long, device=x.device)
        elif dynamic_world.shape != (b, t):
            raise BadInputError(f"dynamic_world has shape {tuple(dynamic_world.shape)}, expected {(b, t)}")

        month_code = self.month_embed(self._month_index(month, b, t, x.device))
        pos_code = self.pos_embed[:, :t].expand(b, -1, -1)
        tokens, masks = [], []
        if latlon is None:
            tokens.append(x.new_zeros(b, 1, self.embed_dim))
            masks.append(torch.ones(b, 1, dtype=torch.bool, device=x.device))
        else:
            tokens.append(self.latlon_embed(latlon_to_xyz(latlon.to(x.dtype)))[:, None])
            masks.append(torch.zeros(b, 1, dtype=torch.bool, device=x.device))
        for group, (name, idx) in enumerate(self.channel_groups.items()):
            static = name in self.static_groups
            steps = slice(0, 1) if static else slice(None)
            code = self._code(group, month_code[:, steps], pos_code[:, steps], static=static)
            tokens.append(self.eo_patch_embed[name](x[:, steps, list(idx)]) + code)
            masks.append(mask[:, steps, list(idx)].any(dim=-1))
        tokens.append(
            self.dw_embed(dynamic_world.long()) + self._code(len(self.channel_groups), month_code, pos_code)
        )
        masks.append(dynamic_world == self.num_dw_classes)
        return torch.cat(tokens, dim=1), torch.cat(masks, dim=1)

    def forward_features(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        dynamic_world: Tensor | None = None,
        latlon: Tensor | None = None,
        month: int | Tensor = 0,
    ) -> tuple[Tensor, Tensor]:
        """Run the transformer blocks; arguments as in :meth:`forward`.

        Returns:
            Token features (B, N, D) before the final norm, zero at masked tokens, and the token mask (B, N).
        """
        tokens, token_mask = self.tokenize(x, mask, dynamic_world, latlon, month)
        # Tokens masked in every sample (absent ERA5, SRTM, Dynamic World) neither attend nor are attended:
        # leave them out of the blocks' work and put zeros back in their place.
        used = ~token_mask.all(dim=0)
        active, active_mask = tokens[:, used], token_mask[:, used]
        attend = ~active_mask
        attend |= ~attend.any(dim=1, keepdim=True)  # a sample with no valid token attends to all: no NaN
        for block in self.blocks:
            active = block(active, attend)
        features = tokens.new_zeros(tokens.shape)
        features[:, used] = active.masked_fill(active_mask[..., None], 0.0)
        return features, token_mask

    def pool(self, features: Tensor, token_mask: Tensor) -> Tensor:
        """Mean of the unmasked tokens (axis -2), then the final norm.

        To pool a window of pixels, concatenate their tokens (and masks) along the token axis first.
        """
        keep = (~token_mask)[..., None].to(features.dtype)
        mean = (features * keep).sum(dim=-2) / keep.sum(dim=-2).clamp_min(1.0)
        return self.norm(mean)

    def forward_tokens(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        dynamic_world: Tensor | None = None,
        latlon: Tensor | None = None,
        month: int | Tensor = 0,
    ) -> tuple[Tensor, Tensor]:
        """Per-token embeddings (B, N, D) after the final norm (Presto's ``eval_task=False``), token mask."""
        features, token_mask = self.forward_features(x, mask, dynamic_world, latlon, month)
        return self.norm(features), token_mask

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        dynamic_world: Tensor | None = None,
        latlon: Tensor | None = None,
        month: int | Tensor = 0,
    ) -> Tensor:
        """Pooled embedding (B, D) of each pixel time series (Presto's ``eval_task=True``).

        Args:
            x: normalised channels (B, T, C).
            mask: (B, T, C), true/1 where a value is missing; None means nothing is missing.
            dynamic_world: Dynamic World classes (B, T); None means missing everywhere.
            latlon: (B, 2) latitude and longitude in degrees; None leaves out the lat/lon token.
            month: start month 0-11 as an int or a (B,) tensor, or the month of each step as (B, T).
        """
        return self.pool(*self.forward_features(x, mask, dynamic_world, latlon, month))

    def _code(self, group: int, month_code: Tensor, pos_code: Tensor, static: bool = False) -> Tensor:
        """Concatenate ``[month, channel group, position]`` codes (B, T, D); static tokens get no time."""
        channel_code = self.channel_embed.weight[group].expand(*month_code.shape[:2], -1)
        if static:
            month_code, pos_code = torch.zeros_like(month_code), torch.zeros_like(pos_code)
        return torch.cat([month_code, channel_code, pos_code], dim=-1)

    @staticmethod
    def _month_index(month: int | Tensor, batch: int, steps: int, device: torch.device) -> Tensor:
        """Month 0-11 of every step (B, T) from a start month (int, (B,)) or per-step months (B, T)."""
        month = torch.as_tensor(month, device=device).long()
        if month.ndim == 2:
            if month.shape != (batch, steps):
                raise BadInputError(f"month has shape {tuple(month.shape)}, expected {(batch, steps)}")
            return month % NUM_MONTHS
        if month.ndim > 1 or month.numel() not in (1, batch):
            raise BadInputError(f"month must be an int, a ({batch},) or ({batch}, {steps}) tensor")
        start = month.reshape(-1, 1).expand(batch, 1)
        return (start + torch.arange(steps, device=device)) % NUM_MONTHS


def load_presto_encoder(path: str | Path) -> PrestoEncoder:
    """Load Presto weights (the official ``default_model.pt`` or a ``.safetensors`` file) into an encoder.

    The file is read without unpickling (``torch.load(..., weights_only=True)``). A full Presto state dict
    (``encoder.*`` and ``decoder.*``) or an encoder-only one is accepted; decoder weights are ignored.

    Returns:
        The encoder with the default architecture, in eval mode, on the CPU.

    Raises:
        BadInputError: the file is missing, unreadable, or not a state dict of this encoder.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(
            f"Presto weights not found at {path}: "
            "download data/default_model.pt from github.com/nasaharvest/presto"
        )
    model = PrestoEncoder()
    model.load_state_dict(_encoder_state(_read_state_dict(path), model.state_dict(), path))
    return model.eval()


def _read_state_dict(path: Path) -> Mapping[str, Tensor]:
    """Read a state dict from a safetensors or (weights-only) PyTorch file."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path, device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise BadInputError(f"{path} is not a readable PyTorch or safetensors weights file: {err}") from err
    if not isinstance(state, Mapping) or not all(
        isinstance(key, str) and isinstance(value, Tensor) for key, value in state.items()
    ):
        raise BadInputError(f"{path} does not hold a state dict (a mapping of parameter names to tensors)")
    return state


def _encoder_state(
    state: Mapping[str, Tensor], expected: Mapping[str, Tensor], path: Path
) -> dict[str, Tensor]:
    """Select the encoder's entries of ``state`` and check them against ``expected`` names and shapes."""
    prefix = "encoder."
    if any(key.startswith(prefix) for key in state):
        state = {key.removeprefix(prefix): value for key, value in state.items() if key.startswith(prefix)}
    problems = state_dict_mismatch(state, expected)
    if problems:
        raise BadInputError(f"{path} is not a Presto encoder state dict ({'; '.join(problems)})")
    return dict(state)


def state_dict_mismatch(state: Mapping[str, Tensor], expected: Mapping[str, Tensor]) -> list[str]:
    """Describe how ``state`` differs from ``expected`` in names and shapes (an empty list if it does not)."""
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    wrong_shape = sorted(
        f"{key} {tuple(state[key].shape)} != {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    )
    return [
        f"{label}: {_shorten(keys)}"
        for label, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("wrong shapes", wrong_shape),
        )
        if keys
    ]


def _shorten(names: Sequence[str], limit: int = 8) -> str:
    """Join names, eliding all but the first ``limit``."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
