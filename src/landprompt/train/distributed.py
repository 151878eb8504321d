"""The process group of a training run: one process, or torchrun's DDP processes (NCCL on GPUs, gloo on CPUs).

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and the rendezvous variables); without them the run
is a single process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor

from landprompt.embedder.device import choose_device


@dataclass(frozen=True)
class DistEnv:
    """Rank, world size and device of this process.

    Attributes:
        rank: Global rank (0 = the process that logs and writes).
        world_size: Number of processes.
        local_rank: Rank on this node (picks the GPU).
        device: Where this process computes.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Whether this process logs and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether there is more than one process."""
        return self.world_size > 1


def init_distributed(device: str = "auto", timeout_s: float = 1800.0) -> DistEnv:
    """Join torchrun's process group when launched by it; otherwise a single process.

    Args:
        device: ``auto``, ``cpu`` or ``cuda`` (see :func:`~landprompt.embedder.device.choose_device`).
        timeout_s: Collective timeout.

    Returns:
        This process's :class:`DistEnv`.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = choose_device(device, local_rank)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        dist.init_process_group(
            backend, rank=rank, world_size=world_size, timeout=timedelta(seconds=timeout_s)
        )
    return DistEnv(rank, world_size, local_rank, resolved)


def shutdown_distributed(env: DistEnv) -> None:
    """Leave the process group (if this run joined one)."""
    if env.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    """Wait for every process (no-op for one)."""
    if env.distributed:
        dist.barrier()


def all_reduce_mean(value: Tensor, env: DistEnv) -> Tensor:
    """The mean of ``value`` over the processes (a copy; ``value`` is left unchanged)."""
    out = value.detach().clone()
    if env.distributed:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= env.world_size
    return out


def merge_statistics(statistics: Mapping[str, Tensor], env: DistEnv) -> dict[str, Tensor]:
    """Data statistics (:meth:`~landprompt.embedder.models.base.Encoder.statistics`) over every process.

    Every process calls it. Averages are replaced in place by their mean over the processes (exact for
    running averages over equal local batches), so every process goes on from the merged ones; counts
    (names ending in ``count``) stay per process, and the result holds them times ``world_size``.
    """
    merged = {}
    for name, value in statistics.items():
        if name.endswith("count"):
            merged[name] = value * env.world_size
        else:
            value.copy_(all_reduce_mean(value, env))
            merged[name] = value
    return merged


def all_gather_rows(value: Tensor, counts: list[int], env: DistEnv) -> Tensor:
    """Concatenate every process's rows, in rank order, when process ``r`` holds ``counts[r]`` rows.

    Rows are padded to the largest count for the collective and trimmed after.
    """
    if not env.distributed:
        return value
    longest = max(counts)
    padded = value.new_zeros((longest, *value.shape[1:]))
    padded[: value.shape[0]] = value
    parts = [torch.empty_like(padded) for _ in range(env.world_size)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[:count] for part, count in zip(parts, counts, strict=True)])
