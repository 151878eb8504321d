"""Benchmark readers: EuroSAT (multispectral, RGB), BigEarthNet-MM (19 classes) and LUCAS points.

Example:
    >>> from landprompt.evaluate.datasets import open_benchmark
    >>> bench = open_benchmark("eurosat", "data/EuroSAT_MS").limit(500, seed=0)  # doctest: +SKIP
    >>> bench.load(bench[0]).composite  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from landprompt.errors import BadInputError, did_you_mean
from landprompt.evaluate.datasets.base import (
    Benchmark,
    RasterBenchmark,
    Sample,
    SampleInput,
    single_date_composite,
    stratified_indices,
)
from landprompt.evaluate.datasets.bigearthnet import BigEarthNet, Nomenclature, bigearthnet19
from landprompt.evaluate.datasets.eurosat import EUROSAT_CLASSES, EUROSAT_MS_BANDS, EuroSAT, EuroSATRGB
from landprompt.evaluate.datasets.lucas import Lucas, gps_lonlat, lucas_classes, point_embeddings

BENCHMARKS: dict[str, type[Benchmark]] = {cls.name: cls for cls in (EuroSAT, EuroSATRGB, BigEarthNet, Lucas)}
"""Benchmark readers by name."""


def open_benchmark(name: str, root: str | Path, **options: Any) -> Benchmark:
    """Open a benchmark by name.

    Args:
        name: One of :data:`BENCHMARKS` (``eurosat``, ``eurosat-rgb``, ``bigearthnet``, ``lucas``).
        root: Where its data is.
        **options: Reader options (``month``; ``s1_root``, ``use_s1``, ``split``; ``coordinates``);
            None values are ignored.

    Raises:
        BadInputError: If the name is unknown or the reader takes no such option.
    """
    if name not in BENCHMARKS:
        hint = did_you_mean(name, BENCHMARKS, before=" ", sentence=True)
        raise BadInputError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}.{hint}")
    reader = BENCHMARKS[name]
    accepted = set(inspect.signature(reader.__init__).parameters) - {"self", "root"}
    given = {key: value for key, value in options.items() if value is not None}
    unknown = sorted(set(given) - accepted)
    if unknown:
        raise BadInputError(
            f"{name} takes no option {', '.join(unknown)}; it takes {', '.join(sorted(accepted)) or 'none'}"
        )
    return reader(Path(root), **given)


__all__ = [
    "BENCHMARKS",
    "EUROSAT_CLASSES",
    "EUROSAT_MS_BANDS",
    "Benchmark",
    "BigEarthNet",
    "EuroSAT",
    "EuroSATRGB",
    "Lucas",
    "Nomenclature",
    "RasterBenchmark",
    "Sample",
    "SampleInput",
    "bigearthnet19",
    "gps_lonlat",
    "lucas_classes",
    "open_benchmark",
    "point_embeddings",
    "single_date_composite",
    "stratified_indices",
]
