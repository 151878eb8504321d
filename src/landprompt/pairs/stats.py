"""What a pairs build holds: counts per source, country, split and status, month coverage, a map.

Month coverage and the cloud-free fraction come from the sample store's ``valid`` array over samples
marked ``done`` or ``no_data``: coverage is, per month, the fraction of samples with an S2 (S1)
observation that month; the cloud-free fraction is the share of sample-months with a clear-sky S2
observation (any cloud-free pixel of the chip).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from landprompt.files import atomic_path
from landprompt.geo import EUROPE_BBOX
from landprompt.pairs.catalog import Catalog
from landprompt.pairs.store import SampleStore

SPLIT_COLOURS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c"}


@dataclass
class PairStats:
    """Counts of a pairs build (``to_dict`` for JSON)."""

    photos_by_source: dict[str, int]
    locations_by_source: dict[str, int]
    locations_by_country: dict[str, int]
    locations_by_split: dict[str, int]
    photos_by_licence: dict[str, int]
    photos_by_embed_status: dict[str, int]
    samples_by_status: dict[str, int]
    samples_by_split: dict[str, int]
    samples_by_year: dict[str, int]
    month_coverage: dict[str, list[float]] = field(default_factory=dict)
    cloud_free_fraction: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts."""
        return asdict(self)


def pair_stats(catalog: Catalog, store: str | Path | None = None) -> PairStats:
    """Counts from the catalog, and month coverage from the store when given."""

    def counts(sql: str) -> dict[str, int]:
        frame = catalog.query_df(sql)
        return {str(k): int(v) for k, v in zip(frame.iloc[:, 0], frame.iloc[:, 1], strict=True)}

    stats = PairStats(
        photos_by_source=counts("SELECT source, count(*) FROM photos GROUP BY 1 ORDER BY 1"),
        locations_by_source=counts("SELECT source, count(*) FROM locations GROUP BY 1 ORDER BY 1"),
        locations_by_country=counts(
            "SELECT coalesce(country, 'unknown'), count(*) FROM locations GROUP BY 1 ORDER BY 2 DESC, 1"
        ),
        locations_by_split=counts(
            "SELECT s.split, count(*) FROM locations l JOIN splits s USING (block_id) GROUP BY 1 ORDER BY 1"
        ),
        photos_by_licence=counts("SELECT licence, count(*) FROM photos GROUP BY 1 ORDER BY 2 DESC, 1"),
        photos_by_embed_status=counts("SELECT embed_status, count(*) FROM photos GROUP BY 1 ORDER BY 1"),
        samples_by_status=counts("SELECT status, count(*) FROM samples GROUP BY 1 ORDER BY 1"),
        samples_by_split=counts(
            "SELECT sp.split, count(*) FROM samples s JOIN locations l USING (loc_id) "
            "JOIN splits sp USING (block_id) GROUP BY 1 ORDER BY 1"
        ),
        samples_by_year=counts("SELECT CAST(year AS VARCHAR), count(*) FROM samples GROUP BY 1 ORDER BY 1"),
    )
    if store is not None:
        rows = catalog.query_df("SELECT store_row FROM samples WHERE status IN ('done', 'no_data')")
        rows = np.sort(rows["store_row"].to_numpy(np.int64))
        if len(rows):
            valid = SampleStore.open(store).read(rows)["valid"]  # [n, T, 2]
            stats.month_coverage = {
                "s2": [round(float(v), 4) for v in valid[:, :, 0].mean(axis=0)],
                "s1": [round(float(v), 4) for v in valid[:, :, 1].mean(axis=0)],
            }
            stats.cloud_free_fraction = round(float(valid[:, :, 0].mean()), 4)
    return stats


def plot_locations(catalog: Catalog, png: str | Path, max_points: int = 500_000) -> Path:
    """A PNG map of the places (lon/lat scatter coloured by split, Europe's frame; no basemap).

    Args:
        catalog: The catalog.
        png: Output file.
        max_points: Plot at most this many places (an even sample by place id).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    places = catalog.query_df(
        "SELECT l.lon, l.lat, s.split FROM locations l JOIN splits s USING (block_id) "
        "WHERE l.loc_id % greatest(1, (SELECT count(*) FROM locations) // ?) = 0",
        [max_points],
    )
    box = EUROPE_BBOX
    fig, ax = plt.subplots(figsize=(8, 7), dpi=120)
    for split, colour in SPLIT_COLOURS.items():
        sel = places[places["split"] == split]
        ax.scatter(sel["lon"], sel["lat"], s=4, c=colour, label=f"{split} ({len(sel):,})", linewidths=0)
    ax.set_xlim(box.minlon, box.maxlon)
    ax.set_ylim(box.minlat, box.maxlat)
    ax.set_aspect(1 / np.cos(np.radians((box.minlat + box.maxlat) / 2)))
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    ax.set_title(f"{len(places):,} places by split")
    ax.grid(True, lw=0.3, alpha=0.5)
    ax.legend(loc="lower left", markerscale=3, fontsize=8)
    out = Path(png)
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return out
