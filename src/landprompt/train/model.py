"""The trained module: a registry encoder plus the learnable logit scale, and its AdamW parameter groups."""

from __future__ import annotations

from typing import Any, Protocol, cast, runtime_checkable

from torch import Tensor, nn

from landprompt.embedder.models import Encoder, create_encoder
from landprompt.errors import BadInputError
from landprompt.train.config import LossConfig, ModelConfig
from landprompt.train.loss import LogitScale


@runtime_checkable
class WindowEncoder(Protocol):
    """An encoder of pixel windows (like :class:`~landprompt.embedder.models.sits.SitsEncoder`)."""

    pool_size: int

    def forward_window(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        dynamic_world: Tensor | None = None,
        latlon: Tensor | None = None,
        month: int | Tensor = 0,
        normalize: bool = True,
    ) -> Tensor:
        """Embed windows (B, N, T, C) into (B, D)."""
        ...


class ContrastiveModel(nn.Module):
    """Satellite encoder + logit scale: what DDP wraps and the optimiser updates.

    Args:
        encoder: A registry encoder with ``forward_window`` (saved on its own as the checkpoint).
        logit_scale: The learnable temperature.
    """

    def __init__(self, encoder: Encoder, logit_scale: LogitScale) -> None:
        super().__init__()
        if not isinstance(encoder, WindowEncoder):
            raise BadInputError(
                f"model.name {encoder.registry_name!r} does not embed pixel windows (no forward_window); "
                "train a pixel time-series encoder such as 'sits'"
            )
        self.encoder = encoder
        self.logit_scale = logit_scale

    @property
    def window_encoder(self) -> WindowEncoder:
        """The encoder, typed as a window encoder."""
        return cast(WindowEncoder, self.encoder)

    def forward(
        self, x: Tensor, mask: Tensor, month: Tensor, latlon: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """L2-normalised embeddings (B, D) of windows ``x`` (B, N, T, C) and the exponentiated logit scale."""
        features = self.window_encoder.forward_window(x, mask, latlon=latlon, month=month)
        return features, self.logit_scale()


def build_model(
    model: ModelConfig,
    loss: LossConfig,
    clip_dim: int,
    clip_model: str | None = None,
    clip_pretrained: str | None = None,
) -> ContrastiveModel:
    """Build the encoder named by ``model`` into CLIP's ``clip_dim`` space, plus the logit scale.

    Args:
        model: Registry name, arguments and optional Presto weights.
        loss: Temperature settings.
        clip_dim: Width of the photo embeddings.
        clip_model: The photo embeddings' CLIP model (recorded in the checkpoint).
        clip_pretrained: Its pretrained tag.

    Raises:
        BadInputError: If the arguments do not fit the encoder or disagree with the photo embeddings.
    """
    arguments: dict[str, Any] = dict(model.arguments)
    if arguments.setdefault("clip_dim", clip_dim) != clip_dim:
        raise BadInputError(
            f"model.arguments.clip_dim is {arguments['clip_dim']}, but the photo embeddings are "
            f"{clip_dim}-d; "
            "leave it unset to follow the photo embeddings"
        )
    if clip_model is not None:
        arguments.setdefault("clip_model", clip_model)
        arguments.setdefault("clip_pretrained", clip_pretrained)
    if model.presto_weights is not None:
        arguments["presto_weights"] = model.presto_weights
    try:
        encoder = create_encoder(model.name, **arguments)
    except BadInputError as err:
        raise BadInputError(f"model ({model.name}): {err}") from err
    return ContrastiveModel(
        encoder, LogitScale(loss.init_temperature, loss.learn_temperature, loss.max_logit_scale)
    )


def parameter_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups as open_clip makes them: no decay for biases, norms, gains and the logit scale.

    Frozen parameters are left out.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        exclude = param.ndim < 2 or "norm" in name or "bias" in name or "logit_scale" in name
        (no_decay if exclude else decay).append(param)
    return [
        {"params": no_decay, "weight_decay": 0.0},
        {"params": decay, "weight_decay": weight_decay},
    ]
