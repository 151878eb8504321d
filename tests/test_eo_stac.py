import json
import shutil

import numpy as np
import planetary_computer
import pytest
import rasterio
import xarray as xr
from pystac_client.exceptions import APIError

from landprompt.eo.stac import (
    EARTH_SEARCH_URL,
    PLANETARY_COMPUTER_URL,
    StacSource,
    StaticCatalogClient,
    default_modifier,
    load_s1,
    load_s2,
    load_s2_scenes,
    search_items,
)
from landprompt.errors import BadInputError, ServiceUnavailableError

YEAR_2022 = "2022-01-01/2022-12-31"


def _api_error(status):
    error = APIError(f"HTTP {status}")
    error.status_code = status
    return error


class FlakyClient:
    """Fails ``failures`` times with ``error``, then searches the static catalog."""

    def __init__(self, catalog, failures, error):
        self.static = StaticCatalogClient(catalog)
        self.failures, self.error, self.calls = failures, error, 0

    def search(self, **kwargs):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return self.static.search(**kwargs)


def test_static_catalog_search_filters(stac_fixture):
    client = StaticCatalogClient(stac_fixture.catalog)
    bbox = list(stac_fixture.grid.bbox)
    ids = lambda **kw: sorted(i.id for i in client.search(bbox=bbox, **kw).items())  # noqa: E731
    assert ids(collections=["sentinel-2-l2a"], datetime=YEAR_2022) == [
        "S2_20220110",
        "S2_20220128",
        "S2_20220615",
    ]
    assert ids(collections="sentinel-1-rtc") == ["S1_20220115", "S1_20220620"]
    assert ids(collections=["sentinel-2-l2a"], datetime="2022-01-28") == ["S2_20220128"]
    assert ids(collections=["sentinel-2-l2a"], query={"eo:cloud_cover": {"lt": 15}}) == [
        "S2_20211230",
        "S2_20220110",
    ]
    assert ids(collections=["sentinel-2-l2a"], datetime="2022-06-01/..", max_items=5) == ["S2_20220615"]
    assert ids(collections="sentinel-3") == []
    assert list(client.search(bbox=[0, 0, 1, 1]).items()) == []


def test_search_retries_transient_errors_with_exponential_backoff(stac_fixture):
    delays: list[float] = []
    client = FlakyClient(stac_fixture.catalog, failures=2, error=_api_error(503))
    items = search_items(
        client,
        "sentinel-2-l2a",
        stac_fixture.grid.bbox,
        YEAR_2022,
        retries=3,
        backoff=0.5,
        sleep=delays.append,
    )
    assert len(items) == 3 and client.calls == 3
    assert delays == [0.5, 1.0]


def test_search_retries_connection_errors_when_opening(stac_fixture):
    attempts = []

    def open_client(url, modifier):
        attempts.append(url)
        if len(attempts) < 3:
            raise ConnectionError("connection reset")
        return StaticCatalogClient(stac_fixture.catalog, modifier)

    items = search_items(
        "https://stac.example.com/v1",
        "sentinel-1-rtc",
        stac_fixture.grid.bbox,
        YEAR_2022,
        open_client=open_client,
        sleep=lambda s: None,
    )
    assert len(items) == 2 and len(attempts) == 3


def test_search_gives_up_with_a_clear_error(stac_fixture):
    delays: list[float] = []
    client = FlakyClient(stac_fixture.catalog, failures=99, error=_api_error(502))
    with pytest.raises(ServiceUnavailableError, match=r"failed 4 times, last: HTTP 502; check the network"):
        search_items(
            client, "sentinel-2-l2a", stac_fixture.grid.bbox, YEAR_2022, retries=3, sleep=delays.append
        )
    assert delays == [1.0, 2.0, 4.0] and client.calls == 4


def test_search_does_not_retry_client_errors(stac_fixture):
    client = FlakyClient(stac_fixture.catalog, failures=1, error=_api_error(400))
    with pytest.raises(BadInputError, match="refused the search: HTTP 400"):
        search_items(client, "sentinel-2-l2a", stac_fixture.grid.bbox, YEAR_2022, sleep=pytest.fail)
    assert client.calls == 1


def test_no_items_is_an_error_unless_allowed(stac_fixture):
    with pytest.raises(BadInputError, match="no STAC items in sentinel-2-l2a"):
        search_items(
            str(stac_fixture.catalog), "sentinel-2-l2a", stac_fixture.grid.bbox, "2019-01-01/2019-12-31"
        )
    assert (
        search_items(stac_fixture.catalog, "sentinel-2-l2a", [0, 0, 1, 1], YEAR_2022, allow_empty=True) == []
    )
    with pytest.raises(BadInputError, match="does not exist"):
        search_items(stac_fixture.root / "nowhere", "sentinel-2-l2a", [0, 0, 1, 1], YEAR_2022)


def test_planetary_computer_items_are_signed(stac_fixture, monkeypatch):
    signed: list[str] = []
    monkeypatch.setattr(planetary_computer, "sign_inplace", lambda item: signed.append(item.id) or item)
    assert default_modifier(PLANETARY_COMPUTER_URL) is not None and default_modifier(EARTH_SEARCH_URL) is None
    opened = []

    def open_client(url, modifier):
        opened.append(url)
        return StaticCatalogClient(stac_fixture.catalog, modifier)

    source = StacSource.planetary_computer(open_client=open_client)
    ds = source.composite(stac_fixture.grid, stac_fixture.year)
    assert opened == [PLANETARY_COMPUTER_URL] * 2
    assert sorted(signed) == ["S1_20220115", "S1_20220620", "S2_20220110", "S2_20220128", "S2_20220615"]
    np.testing.assert_array_equal(ds["s2"].values, stac_fixture.expected_s2)

    signed.clear()
    earth = StacSource.earth_search(open_client=open_client)
    assert earth.collections == {"s2": "sentinel-2-l2a"}
    earth.search(stac_fixture.grid, stac_fixture.year, "s2")
    assert signed == []


def test_stac_source_composite_matches_the_truth(stac_fixture):
    ds = StacSource(stac_fixture.catalog).composite(stac_fixture.grid, stac_fixture.year)
    np.testing.assert_array_equal(ds["s2"].values, stac_fixture.expected_s2)
    np.testing.assert_array_equal(ds["s1"].values, stac_fixture.expected_s1)
    s2 = ds["s2"].sel(s2_band="B4")
    january, june = s2.sel(time="2022-01-01").values, s2.sel(time="2022-06-01").values
    assert np.isnan(january[56:, :16]).all()  # snow on Jan 10, cirrus on Jan 28
    assert not np.isnan(january[:56]).any()  # the Jan 28 cloud is filled by Jan 10
    assert np.isnan(june[:, :16]).all() and not np.isnan(june[:, 16:]).any()  # outside the June swath
    months_with_data = (~np.isnan(ds["s2"]).all(["s2_band", "y", "x"])).values
    assert months_with_data.tolist() == [m in (0, 5) for m in range(12)]
    assert np.isnan(ds["s1"].sel(time="2022-06-01").values[:, :, :8]).all()  # S1 nodata -32768


def test_baseline_offset_is_removed(stac_fixture):
    items = [
        i for i in StaticCatalogClient(stac_fixture.catalog).search(collections="sentinel-2-l2a").items()
    ]
    scenes = load_s2_scenes(items, stac_fixture.grid, ["B2"])
    assert list(scenes.data_vars) == ["B2", "SCL"] and scenes.sizes["time"] == 4
    with rasterio.open(items[2].assets["B02"].href) as src:  # 2022-01-28, baseline 04.00
        dn = src.read(1)
    np.testing.assert_array_equal(scenes["B2"].sel(time="2022-01-28").values[0], dn - 1000)


def test_load_s2_and_s1_functions(stac_fixture):
    client = StaticCatalogClient(stac_fixture.catalog)
    s2_items = list(client.search(collections="sentinel-2-l2a", datetime=YEAR_2022).items())
    s1_items = list(client.search(collections="sentinel-1-rtc").items())
    s2 = load_s2(s2_items, stac_fixture.grid, stac_fixture.year, ["B2", "B12"])
    assert s2.dims == ("time", "s2_band", "y", "x") and s2.shape == (12, 2, 64, 64)
    np.testing.assert_array_equal(s2.values, stac_fixture.expected_s2[:, [0, 9]])
    s1 = load_s1(s1_items, stac_fixture.grid, stac_fixture.year)
    np.testing.assert_array_equal(s1.values, stac_fixture.expected_s1)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # rasterio, in dask threads
def test_dilation_and_lazy_loading(stac_fixture):
    eager = StacSource(stac_fixture.catalog, dilate=1).composite(stac_fixture.grid, stac_fixture.year)
    assert np.isnan(eager["s2"]).sum() > np.isnan(stac_fixture.expected_s2).sum()
    lazy = StacSource(stac_fixture.catalog, dilate=1, chunks={"x": 32, "y": 32})
    ds = lazy.composite(stac_fixture.grid, stac_fixture.year)
    assert ds["s2"].chunks is not None
    xr.testing.assert_identical(ds.compute(), eager)


def test_missing_asset_and_no_items_errors(stac_fixture):
    client = StaticCatalogClient(stac_fixture.catalog)
    items = list(client.search(collections="sentinel-2-l2a").items())
    del items[1].assets["B05"]
    with pytest.raises(BadInputError, match=r"S2_20220110 lacks asset\(s\) for band B5 \(B05\)"):
        load_s2_scenes(items, stac_fixture.grid)
    with pytest.raises(BadInputError, match="no STAC items"):
        StacSource(stac_fixture.catalog).composite(stac_fixture.grid, 2019)
    empty = StacSource(stac_fixture.catalog, allow_empty=True).composite(stac_fixture.grid, 2019)
    assert (
        np.isnan(empty["s2"]).all() and np.isnan(empty["s1"]).all() and empty["s2"].shape == (12, 10, 64, 64)
    )


@pytest.mark.parametrize("answer", ["503", "hang up"])
def test_a_failing_stac_api_is_tried_retries_plus_one_times_in_all(answer):
    """One retry layer: a failing server sees retries + 1 requests, not retries inside retries."""
    import http.server
    import threading

    requests_seen = []

    class Failing(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests_seen.append(self.path)
            if answer == "503":
                self.send_response(503)
                self.end_headers()
            else:  # close the connection without an answer: a network error to the client
                self.close_connection = True

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/stac"
        with pytest.raises(ServiceUnavailableError, match="failed 3 times"):
            search_items(url, "sentinel-2-l2a", [0, 0, 1, 1], YEAR_2022, retries=2, sleep=lambda s: None)
    finally:
        server.shutdown()
        server.server_close()
    assert len(requests_seen) == 3


def test_a_damaged_item_of_a_static_catalog_is_one_line_naming_it(stac_fixture, tmp_path):
    root = tmp_path / "stack"
    shutil.copytree(stac_fixture.catalog.parent, root)
    items = [p for p in root.rglob("*.json") if p.name != "catalog.json" and "collection" not in p.name]
    item = sorted(items)[0]
    item.write_text(json.dumps({"type": "Feature", "stac_version": "1.0.0", "id": "x"}))
    with pytest.raises(BadInputError, match=rf"STAC catalog .*catalog\.json: .*{item.name}.* STAC object"):
        StaticCatalogClient(root / "catalog.json").search()
