"""Dask distributed clients for the stages that scale out (batch maps, embedding runs, pairs)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from landprompt.errors import BadInputError

if TYPE_CHECKING:
    from distributed import Client


@contextmanager
def dask_client(scheduler: str, threads: int = 2) -> Iterator[Client]:
    """A Dask client: a new in-process local cluster for ``"local"``, else one connected to an address.

    Args:
        scheduler: ``"local"``, or a scheduler address such as ``tcp://host:8786``.
        threads: Worker threads of the local cluster (threads share loaded models; torch and numpy
            release the GIL in their kernels).

    Raises:
        BadInputError: if the scheduler cannot be reached.
    """
    from distributed import Client, LocalCluster

    if scheduler == "local":
        with (
            LocalCluster(
                n_workers=1,
                threads_per_worker=threads,
                processes=False,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    try:
        client = Client(scheduler, timeout="10s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise BadInputError(
            f"cannot reach the Dask scheduler at {scheduler!r} ({exc}): start it, or use --scheduler local"
        ) from None
    with client:
        yield client
