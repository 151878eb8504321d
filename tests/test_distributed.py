"""run_each: one loop for running tasks here or on a Dask cluster."""

from __future__ import annotations

import pytest

from landprompt.distributed import run_each


def _scaled(x: int, factor: int = 1) -> int:
    if x < 0:
        raise ValueError(f"negative {x}")
    return x * factor


def test_here_runs_in_order_with_the_shared_arguments() -> None:
    assert list(run_each(_scaled, [3, 1, 2], factor=10)) == [30, 10, 20]


def test_here_raises_without_a_handler_and_maps_errors_with_one() -> None:
    with pytest.raises(ValueError, match="negative -1"):
        list(run_each(_scaled, [1, -1]))
    results = list(run_each(_scaled, [1, -1], on_error=lambda item, exc: f"{item}: {exc}"))
    assert results == [1, "-1: negative -1"]


def test_a_local_cluster_yields_every_result_and_maps_errors() -> None:
    results = run_each(_scaled, [1, 2, -3], "local", factor=2, on_error=lambda item, exc: str(exc))
    assert sorted(map(str, results)) == ["2", "4", "negative -3"]


def _marked(item: tuple[str, int], folder: str) -> int:
    """Mark the start and (after a while) the end of a task in ``folder``; a negative number fails at once."""
    import time
    from pathlib import Path

    name, seconds = item
    if seconds < 0:
        raise ValueError(f"{name} failed")
    (Path(folder) / f"{name}.start").touch()
    time.sleep(seconds)
    (Path(folder) / f"{name}.end").touch()
    return seconds


@pytest.mark.slow  # over 1 s; the full suite (make test, CI) runs it
def test_a_failed_task_returns_only_once_no_other_task_runs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import logging
    import time

    from distributed import LocalCluster

    items = [("fails", -1), ("slow", 1), *((f"queued{n}", 1) for n in range(4))]
    with LocalCluster(  # a cluster that outlives the run's client, as a remote scheduler does
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None, silence_logs=logging.ERROR
    ) as cluster:
        with pytest.raises(ValueError, match="fails failed"):
            list(run_each(_marked, items, cluster.scheduler_address, folder=str(tmp_path)))
        seen = sorted(p.name for p in tmp_path.iterdir())
        started = {name.removesuffix(".start") for name in seen if name.endswith(".start")}
        assert "slow" in started and len(started) < 5  # the queued ones were cancelled, not all run
        assert {name.removesuffix(".end") for name in seen if name.endswith(".end")} == started
        time.sleep(1.2)
        assert sorted(p.name for p in tmp_path.iterdir()) == seen  # and nothing runs afterwards
