"""Symmetric InfoNCE between satellite embeddings and their photo targets, with a queue of past targets.

The in-batch part is open_clip's :class:`~open_clip.loss.ClipLoss` with ``local_loss=True`` and
``gather_with_grad=True``: under DDP each process scores its own rows against the targets and satellite
embeddings of every process (gathered with gradients), so the gradient averaged by DDP is the gradient
of the global-batch loss, at a memory cost linear in the global batch.

The queue (MoCo-style) holds the targets of the last ``queue_size`` samples of earlier steps. They are extra
negatives for the satellite -> photo direction only (a queued photo has no satellite embedding of the
current weights). Targets are fixed photo embeddings, so unlike MoCo's keys they never go stale.
"""

from __future__ import annotations

import math
import warnings

import torch
from open_clip.loss import ClipLoss, gather_features
from torch import Tensor, nn
from torch.nn.functional import cross_entropy

from landprompt.errors import BadInputError


class TargetQueue(nn.Module):
    """A first-in first-out ring of the last ``size`` target embeddings (buffers, so they travel with ``to``).

    Args:
        size: Capacity in embeddings (0 = no queue).
        dim: Embedding width.
    """

    embeddings: Tensor
    pointer: Tensor
    count: Tensor

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        if size < 0:
            raise BadInputError(f"loss.queue_size must be >= 0, got {size}")
        self.size = size
        self.register_buffer("embeddings", torch.zeros(size, dim))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def negatives(self) -> Tensor:
        """The queued embeddings (count, dim), in ring order."""
        return self.embeddings[: int(self.count)]

    @torch.no_grad()
    def push(self, targets: Tensor) -> None:
        """Enqueue ``targets`` (B, dim), dropping the oldest entries when full."""
        if self.size == 0:
            return
        targets = targets.detach().to(self.embeddings.dtype)[-self.size :]
        n, start = targets.shape[0], int(self.pointer)
        index = (start + torch.arange(n, device=targets.device)) % self.size
        self.embeddings[index] = targets
        self.pointer.fill_((start + n) % self.size)
        self.count.fill_(min(self.size, int(self.count) + n))


class ContrastiveLoss(ClipLoss):
    """Symmetric InfoNCE of satellite embeddings vs photo targets, cross-rank gathered, with a target queue.

    Without a queue and on one process it equals :class:`open_clip.loss.ClipLoss`.

    Args:
        dim: Embedding width.
        queue_size: Past targets kept as extra negatives (0 = none).
        rank: This process's rank.
        world_size: Number of processes.
    """

    def __init__(self, dim: int, queue_size: int = 0, rank: int = 0, world_size: int = 1) -> None:
        super().__init__(local_loss=True, gather_with_grad=True, rank=rank, world_size=world_size)
        self.queue = TargetQueue(queue_size, dim)

    def forward(self, features: Tensor, targets: Tensor, logit_scale: Tensor, enqueue: bool = True) -> Tensor:
        """Loss of this process's rows, whose DDP average is the global-batch loss.

        Args:
            features: Satellite embeddings (B, D) of this process, L2-normalised.
            targets: Their photo targets (B, D), L2-normalised.
            logit_scale: Exponentiated logit scale (a scalar tensor, learnable).
            enqueue: Push the global batch's targets onto the queue after scoring (training steps).

        Returns:
            The mean of the satellite -> photo and photo -> satellite cross-entropies (a scalar).
        """
        features, targets = features.float(), targets.float()
        if self.world_size > 1:
            with warnings.catch_warnings():  # open_clip gathers with torch.distributed.nn.all_gather
                warnings.filterwarnings("ignore", ".*all_gather is deprecated", FutureWarning)
                all_features, all_targets = gather_features(
                    features,
                    targets,
                    local_loss=True,
                    gather_with_grad=True,
                    rank=self.rank,
                    world_size=self.world_size,
                )
        else:
            all_features, all_targets = features, targets
        columns = all_targets
        if self.queue.size:
            columns = torch.cat([all_targets, self.queue.negatives()])
        logits_sat = logit_scale * features @ columns.T
        logits_photo = logit_scale * targets @ all_features.T
        labels = self.get_ground_truth(features.device, features.shape[0])
        loss = (cross_entropy(logits_sat, labels) + cross_entropy(logits_photo, labels)) / 2
        if enqueue:
            self.queue.push(all_targets)
        return loss


class LogitScale(nn.Module):
    """Learnable log logit scale (CLIP's inverse temperature), clamped to ``[0, log(max_scale)]``.

    Args:
        init_temperature: Starting temperature (logit scale ``1 / init_temperature``).
        learnable: Whether the optimiser updates it.
        max_scale: Upper bound of the exponentiated scale (CLIP's 100).
    """

    def __init__(
        self, init_temperature: float = 0.07, learnable: bool = True, max_scale: float = 100.0
    ) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)), requires_grad=learnable)
        self.max_log = math.log(max_scale)

    def forward(self) -> Tensor:
        """The exponentiated scale (a scalar tensor)."""
        return self.log_scale.exp()

    @torch.no_grad()
    def clamp_(self) -> None:
        """Clamp in place after an optimiser step."""
        self.log_scale.clamp_(0.0, self.max_log)
