import json

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from landprompt.cli.common import LandpromptGroup
from landprompt.cli.pairs import app as pairs_app
from landprompt.eo.local import LocalSource
from landprompt.pairs.catalog import Catalog
from landprompt.pairs.fetch import fetch_samples
from landprompt.pairs.ingest import ingest
from landprompt.pairs.sources import TableColumns, TableSource
from landprompt.pairs.stats import pair_stats, plot_locations

root = typer.Typer(cls=LandpromptGroup, pretty_exceptions_enable=False)
root.add_typer(pairs_app, name="pairs")
runner = CliRunner()


def invoke(*args):
    return runner.invoke(root, ["pairs", *map(str, args)])


def test_cli_ingest_lucas_twice_and_stats_with_a_map(tmp_path, lucas_sample):
    catalog = tmp_path / "pairs.duckdb"
    first = invoke("ingest", "lucas", lucas_sample, "--catalog", catalog, "--json")
    assert first.exit_code == 0, first.output
    report = json.loads(first.output)
    assert report["added_photos"] == 6 and report["catalog"]["locations"] == 1
    second = json.loads(invoke("ingest", "lucas", lucas_sample, "--catalog", catalog, "--json").output)
    assert second["added_photos"] == 0 and second["catalog"] == report["catalog"]
    result = invoke("stats", "--catalog", catalog, "--png", tmp_path / "map.png", "--json")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["photos_by_source"] == {"lucas": 6} and stats["locations_by_country"] == {"UK": 1}
    assert sum(stats["locations_by_split"].values()) == 1
    assert (tmp_path / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = invoke("stats", "--catalog", catalog)
    assert table.exit_code == 0 and "photos_by_source" in table.output


def test_a_first_ingest_failing_after_a_commit_keeps_the_catalog(tmp_path, lucas_sample, monkeypatch):
    def interrupted(self, *args):
        raise KeyboardInterrupt  # after ingest() committed its batches

    monkeypatch.setattr(Catalog, "finish_ingest", interrupted)
    catalog = tmp_path / "pairs.duckdb"
    assert invoke("ingest", "lucas", lucas_sample, "--catalog", catalog).exit_code != 0
    with Catalog.open(catalog, read_only=True, create=False) as cat:
        assert int(cat.scalar("SELECT count(*) FROM photos")) == 6  # a rerun resumes from here


def test_cli_errors_are_one_line(tmp_path):
    result = invoke("ingest", "lucas", tmp_path / "missing.csv", "--catalog", tmp_path / "c.duckdb")
    assert (
        result.exit_code == 2
        and result.output.strip().startswith("error:")
        and "does not exist" in result.output
    )
    result = invoke("stats", "--catalog", tmp_path / "none.duckdb")
    assert result.exit_code == 2 and "no pairs catalog" in result.output
    result = invoke(
        "ingest", "yfcc", tmp_path / "x.tsv", "--catalog", tmp_path / "c.duckdb", "--licence", "GPL"
    )
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1


def test_cli_fetch_and_stats_month_coverage(tmp_path, stac_fixture):
    lon, lat = stac_fixture.grid.rowcol_to_lonlat(np.array([10, 30, 50]), np.array([10, 40, 60]))
    table = tmp_path / "points.csv"
    pd.DataFrame({"lat": lat, "lon": lon, "when": "2022-07-01"}).to_csv(table, index=False)
    catalog = tmp_path / "pairs.duckdb"
    result = invoke(
        "ingest", "table", table, "--catalog", catalog, "--time", "when", "--default-licence", "CC0"
    )
    assert result.exit_code == 0, result.output
    result = invoke(
        "fetch",
        "--catalog",
        catalog,
        "--store",
        tmp_path / "s.zarr",
        "--source",
        stac_fixture.stack,
        "--no-progress",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["done"] == 3
    stats = json.loads(invoke("stats", "--catalog", catalog, "--store", tmp_path / "s.zarr", "--json").output)
    assert stats["samples_by_status"] == {"done": 3} and stats["photos_by_licence"] == {"CC0-1.0": 3}
    coverage = stats["month_coverage"]["s2"]
    # January everywhere; June only east of column 16 (the first chip is west of it); nothing else
    assert (
        coverage[0] == 1.0
        and coverage[5] == pytest.approx(2 / 3, abs=1e-3)
        and sum(coverage) == pytest.approx(5 / 3, abs=1e-3)
    )
    assert stats["cloud_free_fraction"] == pytest.approx(5 / 36, abs=1e-3)


def test_stats_and_map_in_python(tmp_path, stac_fixture):
    lon, lat = stac_fixture.grid.rowcol_to_lonlat(np.array([5, 20]), np.array([5, 20]))
    table = tmp_path / "p.csv"
    pd.DataFrame({"lat": lat, "lon": lon, "t": "2022-03-03"}).to_csv(table, index=False)
    with Catalog.open(tmp_path / "pairs.duckdb") as catalog:
        ingest(catalog, TableSource(table, TableColumns(time="t")))
        fetch_samples(catalog, tmp_path / "s.zarr", LocalSource(stac_fixture.stack), progress=False)
        stats = pair_stats(catalog, tmp_path / "s.zarr")
        png = plot_locations(catalog, tmp_path / "maps" / "places.png")
    assert stats.samples_by_year == {"2022": 2} and len(stats.month_coverage["s1"]) == 12
    assert png.is_file() and png.stat().st_size > 1000
