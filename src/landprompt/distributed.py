"""Dask distributed clients for the stages that scale out (batch maps, embedding runs, pairs)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from landprompt.errors import BadInputError

if TYPE_CHECKING:
    from distributed import Client

#: How long :func:`stop_tasks` waits for cancelled tasks still running, and how often it looks.
STOP_TIMEOUT_S = 3600.0
STOP_POLL_S = 0.2
_I = TypeVar("_I")
_R = TypeVar("_R")


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


def run_each(
    func: Callable[..., _R],
    items: Sequence[_I],
    scheduler: str | None = None,
    *,
    threads: int = 2,
    on_error: Callable[[_I, Exception], _R] | None = None,
    **kwargs: Any,
) -> Generator[_R, None, None]:
    """Run ``func(item, **kwargs)`` for each item, here in order or as Dask tasks; yield each result.

    Args:
        func: The task (importable and picklable for a Dask cluster).
        items: One task per item.
        scheduler: ``None`` runs here, one after the other, in order; ``"local"`` or a scheduler
            address runs the tasks on :func:`dask_client` and yields them as they finish.
        threads: Worker threads of a local cluster.
        on_error: Turns an item's exception (e.g. a worker that died) into its result; default: raise.
        **kwargs: Passed to every call of ``func``.
    """
    if scheduler is None:
        for item in items:
            yield _result(partial(func, item, **kwargs), item, on_error)
        return
    from distributed import as_completed

    with dask_client(scheduler, threads=threads) as client:
        futures = client.map(func, items, pure=False, **kwargs)
        item_of = {future.key: item for future, item in zip(futures, items, strict=True)}
        try:
            for future in as_completed(futures):
                yield _result(future.result, item_of[future.key], on_error)
                future.release()
        finally:  # an error, or the caller stopped: nothing of this run may still run once it returns
            stop_tasks(client, futures)


def stop_tasks(client: Client, futures: Sequence[Any], timeout: float = STOP_TIMEOUT_S) -> None:
    """Cancel the unfinished ``futures`` and wait until none of them still runs on a worker.

    Cancelling drops queued tasks, but a task already running on a worker runs to its end (Dask cannot
    stop a thread): so its writes are awaited before the caller removes or rewrites what they touch.

    Args:
        client: The client the futures belong to.
        futures: The run's futures (finished ones are skipped).
        timeout: Seconds to wait for running tasks before giving up with a :class:`TimeoutError`.
    """
    outstanding = [future for future in futures if not future.done()]
    if not outstanding:
        return
    keys = {future.key for future in outstanding}
    client.cancel(outstanding)
    deadline = time.monotonic() + timeout
    while any(client.run(_running_keys, keys=keys, on_error="ignore").values()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(keys)} cancelled Dask tasks still run after {timeout:.0f} s")
        time.sleep(STOP_POLL_S)


def _running_keys(keys: set[Any], dask_worker: Any) -> list[Any]:
    """On a worker: which of ``keys`` occupy a thread now (cancelled tasks run to their end)."""
    return [ts.key for ts in dask_worker.state.all_running_tasks if ts.key in keys]


def _result(get: Callable[[], _R], item: _I, on_error: Callable[[_I, Exception], _R] | None) -> _R:
    """``get()``, or ``on_error(item, exc)`` when it raises and there is such a handler."""
    try:
        return get()
    except Exception as exc:
        if on_error is None:
            raise
        return on_error(item, exc)
