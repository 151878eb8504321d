"""The one choice of torch device: CUDA when there is one, else the CPU, unless the user names one."""

from __future__ import annotations

import torch

from landprompt.errors import BadInputError


def choose_device(device: str | torch.device | None = None, local_rank: int = 0) -> torch.device:
    """The torch device to run on.

    Args:
        device: ``None`` or ``"auto"``: CUDA when available, else the CPU; ``"cuda"`` without an index:
            GPU ``local_rank``; anything else :class:`torch.device` takes (``"cpu"``, ``"cuda:1"``).
        local_rank: This process's GPU among the node's (torchrun's ``LOCAL_RANK``).

    Raises:
        BadInputError: If the name is not a device, or CUDA is asked for and not available here.
    """
    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise BadInputError(f"invalid device {device!r}: {err}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BadInputError(f"device {device!r} asked for, but CUDA is not available here; use auto or cpu")
    if dev.type == "cuda" and dev.index is None:
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return dev
