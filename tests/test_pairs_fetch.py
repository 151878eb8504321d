import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pystac
import pytest

from landprompt.eo.chips import ChipSet, CompositeChipReader, StacChipReader, StackChipReader, chip_reader
from landprompt.eo.items import ItemTable, write_item_table
from landprompt.eo.local import LocalSource
from landprompt.eo.stac import StacSource
from landprompt.errors import BadInputError
from landprompt.pairs.catalog import Catalog
from landprompt.pairs.fetch import fetch_samples, plan_samples
from landprompt.pairs.ingest import ingest
from landprompt.pairs.sources import TableColumns, TableSource
from landprompt.pairs.store import FORMAT_NAME, FORMAT_VERSION, SampleStore

# Chip centres (row, col) on the fixture's 64 x 64 grid: inside, at a corner, at the far edge, in the
# cloud of Jan 28 (rows/cols 8-23), in the June swath gap (cols < 16), in the S1 June gap (cols < 8).
PIXELS = np.array([[12, 22], [0, 0], [63, 62], [16, 16], [40, 5], [30, 50], [33, 33]])


def expected_chips(values: np.ndarray, size: int = 5) -> np.ndarray:
    """The fixture's composites [12, B, 64, 64] cut around PIXELS (NaN beyond the grid)."""
    half = size // 2
    pad = np.pad(values, ((0, 0), (0, 0), (half, half), (half, half)), constant_values=np.nan)
    return np.stack([pad[:, :, r : r + size, c : c + size] for r, c in PIXELS])


def assert_same(actual: np.ndarray, expected: np.ndarray, atol: float = 0.0) -> None:
    assert np.array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_allclose(np.nan_to_num(actual), np.nan_to_num(expected), atol=atol, rtol=0)


@pytest.fixture
def lonlat(stac_fixture):
    return stac_fixture.grid.rowcol_to_lonlat(PIXELS[:, 0], PIXELS[:, 1])


def test_chips_sit_on_the_utm_lattice(stac_fixture, lonlat):
    chips = ChipSet.around(*lonlat, size=5)
    assert chips.epsg == 32632
    np.testing.assert_allclose(chips.left, 500_000 + (PIXELS[:, 1] - 2) * 10.0)
    np.testing.assert_allclose(chips.top, 5_000_000 - (PIXELS[:, 0] - 2) * 10.0)
    assert chips.grid(0).shape == (5, 5) and chips.cover().shape == (68, 67)


def _item_table(stac_fixture, folder: Path) -> ItemTable:
    items = pystac.Catalog.from_file(str(stac_fixture.catalog)).get_items(recursive=True)
    return ItemTable(write_item_table(items, folder / "items.parquet"))


@pytest.mark.parametrize("kind", ["stack", "stac", "items", "composite"])
def test_chip_readers_give_the_fixture_composites(tmp_path, stac_fixture, lonlat, kind):
    readers = {
        "stack": lambda: chip_reader(LocalSource(stac_fixture.stack)),
        "stac": lambda: chip_reader(StacSource(catalog=stac_fixture.catalog, signer=None)),
        "items": lambda: chip_reader(StacSource(catalog=_item_table(stac_fixture, tmp_path), signer=None)),
        "composite": lambda: CompositeChipReader(LocalSource(stac_fixture.stack), window=32),
    }
    reader = readers[kind]()
    expected_type = {"stack": StackChipReader, "stac": StacChipReader, "items": StacChipReader}
    assert isinstance(reader, expected_type.get(kind, CompositeChipReader))
    s2, s1 = reader.read(ChipSet.around(*lonlat, size=5), stac_fixture.year)
    assert s2.shape == (len(PIXELS), 12, 10, 5, 5) and s1.shape == (len(PIXELS), 12, 2, 5, 5)
    assert_same(s2, expected_chips(stac_fixture.expected_s2))
    assert_same(s1, expected_chips(stac_fixture.expected_s1), atol=1e-4)


def test_dilated_masks_read_a_halo(stac_fixture, lonlat):
    chips = ChipSet.around(*lonlat, size=5)
    grid = chips.cover()
    s2, _ = StackChipReader(str(stac_fixture.stack), dilate=2).read(chips, 2022)
    composite = LocalSource(stac_fixture.stack, dilate=2).composite(grid, 2022)["s2"].values
    for i in range(len(chips)):
        row = round((grid.transform.f - chips.top[i]) / 10)
        col = round((chips.left[i] - grid.transform.c) / 10)
        assert_same(s2[i], composite[:, :, row : row + 5, col : col + 5])


def _ingest_points(catalog: Catalog, folder: Path, lonlat, year: str = "2022-05-01") -> None:
    lon, lat = lonlat
    table = folder / "points.csv"
    pd.DataFrame({"id": [f"p{i}" for i in range(len(lon))], "lat": lat, "lon": lon, "t": year}).to_csv(
        table, index=False
    )
    ingest(catalog, TableSource(table, TableColumns(id="id", time="t")))


def _store_arrays(path: Path) -> dict[str, bytes]:
    store = SampleStore.open(path)
    return {n: np.ascontiguousarray(v).tobytes() for n, v in store.read(slice(None)).items()}


def test_fetch_fills_the_store_with_the_fixture_chips(tmp_path, stac_fixture, lonlat):
    with Catalog.open(tmp_path / "pairs.duckdb") as catalog:
        _ingest_points(catalog, tmp_path, lonlat)
        report = fetch_samples(
            catalog,
            tmp_path / "store.zarr",
            LocalSource(stac_fixture.stack),
            task_rows=3,
            batch_rows=4,
            progress=False,
        )
        samples = catalog.query_df("SELECT s.*, l.lat, l.lon FROM samples s JOIN locations l USING (loc_id)")
        again = fetch_samples(
            catalog, tmp_path / "store.zarr", LocalSource(stac_fixture.stack), progress=False
        )
    assert (report.planned, report.done, report.failed) == (7, 7, 0) and again.planned == again.pending == 0
    assert (samples["status"] == "done").all() and (samples["year"] == 2022).all()
    store = SampleStore.open(tmp_path / "store.zarr")
    assert store.n_rows == 7 and store.group.attrs["landprompt_format"] == FORMAT_NAME
    data = store.read(samples["store_row"].to_numpy())
    order = [int(np.flatnonzero(np.isclose(lonlat[0], lon))[0]) for lon in samples["lon"]]
    s2 = expected_chips(stac_fixture.expected_s2)[order]
    s1 = expected_chips(stac_fixture.expected_s1)[order]
    assert data["s2"].dtype == np.uint16 and data["s1"].dtype == np.float16
    np.testing.assert_array_equal(
        data["s2"], np.where(np.isnan(s2), 0, np.rint(np.nan_to_num(s2))).astype(np.uint16)
    )
    np.testing.assert_array_equal(data["s1"].view(np.uint16), s1.astype(np.float16).view(np.uint16))
    np.testing.assert_array_equal(data["valid"][..., 0], (~np.isnan(s2)).all(axis=2).any(axis=(-1, -2)))
    np.testing.assert_array_equal(data["valid"][..., 1], (~np.isnan(s1)).all(axis=2).any(axis=(-1, -2)))
    assert data["valid"][:, 0, 0].all() and not data["valid"][:, 2, :].any()  # January yes, March no data
    np.testing.assert_array_equal(data["months"], np.tile(np.arange(12), (7, 1)))
    np.testing.assert_allclose(data["latlon"], samples[["lat", "lon"]].to_numpy())
    assert (data["year"] == 2022).all()


def test_plan_clamps_years_and_orders_rows_by_partition(tmp_path, stac_fixture, lonlat):
    with Catalog.open(tmp_path / "pairs.duckdb") as catalog:
        _ingest_points(catalog, tmp_path, lonlat, year="2015-07-01")
        plan = plan_samples(catalog, max_year=2023)
        assert (plan["year"] == 2017).all() and list(plan["store_row"]) == list(range(7))
        assert (plan["part"] == "32632/5/49/2017").all()
        assert plan_samples(catalog, max_year=2023).empty
        forced = plan_samples(catalog, year=2022)
        assert list(forced["store_row"]) == list(range(7, 14)) and (forced["year"] == 2022).all()
        with pytest.raises(BadInputError, match="before 2017"):
            plan_samples(catalog, year=2016)


def test_fetch_on_a_dask_cluster_matches_a_local_run(tmp_path, stac_fixture, lonlat):
    stores = {}
    for name, source, scheduler in (
        ("here", LocalSource(stac_fixture.stack), None),
        ("dask", StacSource(catalog=stac_fixture.catalog, signer=None), "local"),
    ):
        with Catalog.open(tmp_path / f"{name}.duckdb") as catalog:
            _ingest_points(catalog, tmp_path, lonlat)
            report = fetch_samples(
                catalog, tmp_path / f"{name}.zarr", source, task_rows=2, scheduler=scheduler, progress=False
            )
            assert report.done == 7
        stores[name] = _store_arrays(tmp_path / f"{name}.zarr")
    assert stores["here"] == stores["dask"]


class _Failing:
    def read(self, chips, year):
        raise OSError("the COG server went away")


def test_failed_and_no_data_samples(tmp_path, stac_fixture, lonlat):
    far = (np.append(lonlat[0], 9.5), np.append(lonlat[1], 45.5))  # in Europe, off the stack
    with Catalog.open(tmp_path / "pairs.duckdb") as catalog:
        _ingest_points(catalog, tmp_path, far)
        failed = fetch_samples(catalog, tmp_path / "s.zarr", _Failing(), progress=False)
        assert failed.failed == 8 and "OSError: the COG server went away" in failed.errors[0]
        assert fetch_samples(catalog, tmp_path / "s.zarr", _Failing(), progress=False).pending == 0
        retried = fetch_samples(
            catalog, tmp_path / "s.zarr", LocalSource(stac_fixture.stack), retry_failed=True, progress=False
        )
        statuses = catalog.query_df("SELECT status, count(*) AS n FROM samples GROUP BY 1 ORDER BY 1")
    assert (retried.done, retried.no_data) == (7, 1)
    assert dict(zip(statuses["status"], statuses["n"], strict=True)) == {"done": 7, "no_data": 1}


def test_store_belongs_to_one_catalog_and_chip_size(tmp_path, stac_fixture, lonlat):
    with Catalog.open(tmp_path / "a.duckdb") as catalog:
        _ingest_points(catalog, tmp_path, lonlat)
        fetch_samples(catalog, tmp_path / "s.zarr", LocalSource(stac_fixture.stack), progress=False)
        with pytest.raises(BadInputError, match="not 3: keep chip=5"):
            fetch_samples(
                catalog, tmp_path / "s.zarr", LocalSource(stac_fixture.stack), chip=3, progress=False
            )
    with (
        Catalog.open(tmp_path / "b.duckdb") as other,
        pytest.raises(BadInputError, match="belongs to catalog"),
    ):
        fetch_samples(other, tmp_path / "s.zarr", LocalSource(stac_fixture.stack), progress=False)
    with pytest.raises(BadInputError, match="not a sample store"):
        SampleStore.open(tmp_path / "missing.zarr")
    assert SampleStore.open(tmp_path / "s.zarr").group.attrs["format_version"] == FORMAT_VERSION


KILLED_RUN = """
import sys, time
from landprompt.pairs.catalog import Catalog
from landprompt.eo.chips import StackChipReader
from landprompt.pairs.fetch import fetch_samples

class SlowReader(StackChipReader):
    def read(self, chips, year):
        out = super().read(chips, year)
        time.sleep(2.0)
        return out

def announce(report):
    print(f"batch {report.batches}", flush=True)

with Catalog.open(sys.argv[1]) as catalog:
    fetch_samples(catalog, sys.argv[2], SlowReader(sys.argv[3]), task_rows=2, batch_rows=2, progress=False,
                  on_batch=announce)
print("finished", flush=True)
"""


@pytest.mark.slow
def test_killed_fetch_resumes_to_the_same_store(tmp_path, stac_fixture, lonlat):
    with Catalog.open(tmp_path / "ref.duckdb") as catalog:
        _ingest_points(catalog, tmp_path, lonlat)
        fetch_samples(catalog, tmp_path / "ref.zarr", LocalSource(stac_fixture.stack), progress=False)
    with Catalog.open(tmp_path / "run.duckdb") as catalog:
        _ingest_points(catalog, tmp_path, lonlat)
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(KILLED_RUN))
    args = [
        sys.executable,
        str(script),
        str(tmp_path / "run.duckdb"),
        str(tmp_path / "run.zarr"),
        str(stac_fixture.stack),
    ]
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 120
    line = process.stdout.readline()
    while line and not line.startswith("batch 1") and time.monotonic() < deadline:
        line = process.stdout.readline()
    assert line.startswith("batch 1"), process.stderr.read() if process.stderr else ""
    process.kill()  # SIGKILL after the first batch, while the second is being read
    process.wait(30)
    with Catalog.open(tmp_path / "run.duckdb") as catalog:
        statuses = catalog.query_df("SELECT status, count(*) AS n FROM samples GROUP BY 1")
        assert dict(zip(statuses["status"], statuses["n"], strict=True)) == {"done": 2, "pending": 5}
        report = fetch_samples(
            catalog, tmp_path / "run.zarr", LocalSource(stac_fixture.stack), progress=False
        )
        assert (report.planned, report.pending, report.done) == (0, 5, 5)
        samples = catalog.query_df("SELECT store_row, status FROM samples")
    assert (samples["status"] == "done").all() and sorted(samples["store_row"]) == list(range(7))
    assert SampleStore.open(tmp_path / "run.zarr").n_rows == 7
    assert _store_arrays(tmp_path / "run.zarr") == _store_arrays(tmp_path / "ref.zarr")


def test_files_off_the_lattice_are_warped_like_composites(tmp_path, stac_fixture, lonlat):
    import rasterio
    from affine import Affine

    shifted = tmp_path / "shifted"
    shifted.mkdir()
    for path in sorted(Path(stac_fixture.stack).glob("*.tif")):
        with rasterio.open(path) as src:
            profile = src.profile | {
                "transform": src.transform * Affine.translation(0.6, 0.7),
                "driver": "GTiff",
            }
            with rasterio.open(shifted / path.name, "w", **profile) as dst:
                dst.write(src.read())
                dst.descriptions = src.descriptions
    chips = ChipSet.around(*lonlat, size=5)
    warped = StackChipReader(str(shifted)).read(chips, 2022)
    composites = CompositeChipReader(LocalSource(shifted), window=4096).read(chips, 2022)  # one cover grid
    for ours, reference in zip(warped, composites, strict=True):
        assert_same(ours, reference)
    assert not np.array_equal(
        np.nan_to_num(warped[0]), np.nan_to_num(expected_chips(stac_fixture.expected_s2))
    )


def test_item_tables_search_like_a_stac_api(tmp_path, stac_fixture):
    table = _item_table(stac_fixture, tmp_path)
    box = list(stac_fixture.grid.bbox)
    found = table.search(collections="sentinel-2-l2a", bbox=box, datetime="2022-01-01/2022-12-31").items()
    assert [i.id for i in found] == ["S2_20220110", "S2_20220128", "S2_20220615"]
    cloudy = table.search(collections=["sentinel-2-l2a"], query={"eo:cloud_cover": {"gte": 20}}).items()
    assert [i.id for i in cloudy] == ["S2_20220128", "S2_20220615"]
    assert list(table.search(bbox=[20.0, 50.0, 21.0, 51.0]).items()) == []
    item = next(table.search(collections="sentinel-1-rtc", max_items=1).items())
    assert Path(item.assets["vv"].href).is_file() and item.properties["datetime"] == "2022-01-15T05:40:00Z"
