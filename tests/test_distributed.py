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
