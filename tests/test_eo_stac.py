import json
import re
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
from scripted_http import serve

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


def test_search_does_not_retry_client_errors(stac_fixture):
    client = FlakyClient(stac_fixture.catalog, failures=1, error=_api_error(400))
    with pytest.raises(BadInputError, match="refused the search: HTTP 400"):
        search_items(client, "sentinel-2-l2a", stac_fixture.grid.bbox, YEAR_2022)
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


def stac_api_route(method, path, body, base):
    """A two-page STAC API: ``GET /`` the landing page, ``POST /search`` page 1, its next link page 2."""
    if method == "GET":
        return "landing", lambda: _landing(base)
    page = str(body.get("token", "1"))
    return f"page {page}", lambda: _page(base, int(page))


def _landing(base):
    return {
        "type": "Catalog",
        "id": "test-api",
        "description": "a local STAC API",
        "stac_version": "1.0.0",
        "conformsTo": ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"],
        "links": [
            {"rel": "self", "href": f"{base}/"},
            {"rel": "root", "href": f"{base}/"},
            {"rel": "search", "href": f"{base}/search", "type": "application/geo+json", "method": "POST"},
        ],
    }


def _page(base, page):
    features = [
        {
            "type": "Feature",
            "stac_version": "1.0.0",
            "id": f"S2_page{page}_{i}",
            "collection": "sentinel-2-l2a",
            "geometry": {"type": "Point", "coordinates": [0.5, 0.5]},
            "bbox": [0.5, 0.5, 0.5, 0.5],
            "properties": {"datetime": f"2022-0{page}-1{i}T10:00:00Z"},
            "links": [],
            "assets": {},
        }
        for i in range(2)
    ]
    links = [
        {"rel": "next", "href": f"{base}/search", "method": "POST", "body": {"token": "2"}, "merge": True}
    ]
    return {"type": "FeatureCollection", "features": features, "links": links if page == 1 else []}


@pytest.fixture
def stac_api():
    """``(url, answers, seen)`` of a local STAC API (:func:`stac_api_route`) serving in a thread."""
    with serve(stac_api_route) as server:
        yield f"{server.url}/", server.answers, server.seen


def _search(url, **kwargs):
    return search_items(url, "sentinel-2-l2a", [0, 0, 1, 1], YEAR_2022, backoff=0.0, **kwargs)


def test_a_503_on_page_2_retries_page_2_only(stac_api):
    url, answers, seen = stac_api
    answers["page 2"] = [503, 502, 200]
    items = _search(url)
    assert [i.id for i in items] == ["S2_page1_0", "S2_page1_1", "S2_page2_0", "S2_page2_1"]
    assert seen == [("GET", "landing"), ("POST", "page 1")] + [("POST", "page 2")] * 3


def test_a_permanent_404_fails_at_once_in_one_line(stac_api):
    url, answers, seen = stac_api
    answers["page 1"] = [404]
    with pytest.raises(BadInputError, match=r"refused the search: HTTP 404: page 1 answer 404$") as error:
        _search(url)
    assert "\n" not in str(error.value)
    assert seen == [("GET", "landing"), ("POST", "page 1")]


@pytest.mark.parametrize("answer", [503, "hang up"])
def test_a_failing_stac_api_is_tried_retries_plus_one_times_in_all(stac_api, answer):
    """One retry layer: each request is tried retries + 1 times, not retries inside retries."""
    url, answers, seen = stac_api
    answers["landing"] = [answer]
    with pytest.raises(ServiceUnavailableError, match=r"failed 3 times, last: .*; check") as error:
        _search(url, retries=2)
    assert seen == [("GET", "landing")] * 3
    assert "\n" not in str(error.value) and (
        answer != 503 or "last: HTTP 503: landing answer 503" in str(error.value)
    )


def test_a_page_that_keeps_failing_gives_up_on_that_page(stac_api):
    url, answers, seen = stac_api
    answers["page 2"] = [504]
    with pytest.raises(ServiceUnavailableError, match=r"failed 4 times, last: HTTP 504: page 2 answer 504;"):
        _search(url)
    assert seen == [("GET", "landing"), ("POST", "page 1")] + [("POST", "page 2")] * 4


def test_a_damaged_item_of_a_static_catalog_is_one_line_naming_it(stac_fixture, tmp_path):
    root = tmp_path / "stack"
    shutil.copytree(stac_fixture.catalog.parent, root)
    items = [p for p in root.rglob("*.json") if p.name != "catalog.json" and "collection" not in p.name]
    item = sorted(items)[0]
    item.write_text(json.dumps({"type": "Feature", "stac_version": "1.0.0", "id": "x"}))
    with pytest.raises(BadInputError, match=rf"STAC catalog .*catalog\.json: .*{item.name}.* STAC object"):
        StaticCatalogClient(root / "catalog.json").search()


def test_a_page_whose_body_breaks_off_is_tried_again(stac_api):
    """urllib3 retries up to the headers; a page cut off while it downloads is retried on its own."""
    url, answers, seen = stac_api
    answers["page 2"] = ["cut off", 200]
    assert len(_search(url)) == 4
    assert seen == [("GET", "landing"), ("POST", "page 1")] + [("POST", "page 2")] * 2
    answers["page 2"] = ["cut off"]
    seen.clear()
    with pytest.raises(
        ServiceUnavailableError, match=r"STAC request POST .*/search failed 3 times, last: "
    ) as e:
        _search(url)
    assert seen == [("GET", "landing"), ("POST", "page 1")] + [("POST", "page 2")] * 3
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("script", "tries", "last"),
    [
        (["cut off", 503], 4, "HTTP 503: page 2 answer 503"),  # 1 cut off, then 3 503s spend the session's
        ([503, "cut off"] * 3, 6, ""),  # each of the 3 body tries is a 503 retried, then a cut off
    ],
    ids=["session-retries-after-a-body-retry", "body-retries-after-session-retries"],
)
def test_the_give_up_message_counts_every_try_of_both_retry_layers(stac_api, script, tries, last):
    url, answers, seen = stac_api
    answers["page 2"] = list(script)
    with pytest.raises(ServiceUnavailableError) as error:
        _search(url, retries=2)
    assert seen == [("GET", "landing"), ("POST", "page 1")] + [("POST", "page 2")] * tries
    assert re.search(rf"STAC request POST .*/search failed {tries} times, last: {last}", str(error.value))
