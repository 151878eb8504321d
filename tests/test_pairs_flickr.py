import json

import pytest

from landprompt.errors import BadInputError, ServiceUnavailableError
from landprompt.pairs.catalog import Catalog
from landprompt.pairs.http import TokenBucket
from landprompt.pairs.ingest import ingest
from landprompt.pairs.sources import FlickrSource

BBOX = "7,45.5,9,46.5"


class Recorded:
    """A fetch answering from recorded JSON files; optionally failing on some pages."""

    def __init__(self, folder, fail_pages=()):
        self.folder, self.fail_pages, self.calls = folder, set(fail_pages), []

    def __call__(self, url, params):
        assert url == "https://api.flickr.com/services/rest/"
        assert params["api_key"] == "test-key" and params["format"] == "json"
        self.calls.append(dict(params))
        if params["method"] == "flickr.photos.licenses.getInfo":
            return json.loads((self.folder / "licenses.json").read_text())
        assert params["bbox"] == "7.000000,45.500000,9.000000,46.500000" and params["has_geo"] == "1"
        assert "geo" in params["extras"] and "url_l" in params["extras"]
        page = int(params["page"])
        if page in self.fail_pages:
            return {"stat": "fail", "code": 105, "message": "Service currently unavailable"}
        return json.loads((self.folder / f"search-{page}.json").read_text())

    def pages(self):
        return [int(c["page"]) for c in self.calls if c["method"] == "flickr.photos.search"]


def source(fetch, **kwargs):
    clock = iter(range(0, 10**6)).__next__
    bucket = TokenBucket(rate=100.0, capacity=5.0, clock=lambda: float(clock()), sleep=lambda s: None)
    return FlickrSource(
        BBOX, api_key="test-key", per_page=3, fetch=fetch, bucket=bucket, sleep=lambda s: None, **kwargs
    )


def test_flickr_pages_into_the_catalog(tmp_path, pairs_data):
    pairs_data.record_flickr(tmp_path / "rec", n_photos=8, per_page=3)
    fetch = Recorded(tmp_path / "rec")
    with Catalog.open(tmp_path / "pairs.duckdb") as catalog:
        report = ingest(catalog, source(fetch))
        photos = catalog.query_df("SELECT * FROM photos ORDER BY photo_id")
        cursor = catalog.cursor(source(fetch).cursor_name)
    assert fetch.pages() == [1, 2, 3] and report.added_photos == 8 and report.batches == 3
    assert sorted(set(photos["licence"])) == ["CC-BY-2.0", "CC-BY-4.0", "CC0-1.0"]  # id 11 resolved by URL
    assert photos["url"].str.startswith("https://live.staticflickr.com/").all()
    assert photos["tags"].iat[0] == "alps,meadow" and photos["user_id"].iat[0] == "0@N01"
    assert cursor == {"done": True, "page": 4, "pages": 3, "total": 8}


def test_flickr_resumes_after_a_failure_without_refetching(tmp_path, pairs_data):
    pairs_data.record_flickr(tmp_path / "rec", n_photos=8, per_page=3)
    failing = Recorded(tmp_path / "rec", fail_pages={3})
    with Catalog.open(tmp_path / "pairs.duckdb") as catalog:
        with pytest.raises(ServiceUnavailableError, match="failed 5 times, last: Flickr error 105"):
            ingest(catalog, source(failing))
        assert catalog.counts()["photos"] == 6  # pages 1 and 2 were committed
        assert failing.pages() == [1, 2, 3, 3, 3, 3, 3]
        working = Recorded(tmp_path / "rec")
        report = ingest(catalog, source(working))
        assert working.pages() == [3] and report.added_photos == 2
        assert catalog.counts()["photos"] == 8
        finished = Recorded(tmp_path / "rec")
        assert ingest(catalog, source(finished)).added_photos == 0 and finished.calls == []


def test_flickr_max_pages_and_api_errors(tmp_path, pairs_data, monkeypatch):
    pairs_data.record_flickr(tmp_path / "rec", n_photos=8, per_page=3)
    fetch = Recorded(tmp_path / "rec")
    with Catalog.open(tmp_path / "pairs.duckdb") as catalog:
        assert ingest(catalog, source(fetch, max_pages=1)).added_photos == 3
        assert ingest(catalog, source(fetch, max_pages=1)).added_photos == 3
    assert fetch.pages() == [1, 2]
    monkeypatch.delenv("FLICKR_API_KEY", raising=False)
    with pytest.raises(BadInputError, match="FLICKR_API_KEY"):
        FlickrSource(BBOX)

    def refused(url, params):
        return {"stat": "fail", "code": 100, "message": "Invalid API Key (Key has invalid format)"}

    with (
        Catalog.open(tmp_path / "b.duckdb") as catalog,
        pytest.raises(BadInputError, match="Invalid API Key"),
    ):
        ingest(catalog, source(refused))


def test_token_bucket_spaces_requests():
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(rate=2.0, capacity=2.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(6):
        bucket.acquire()
    assert slept == pytest.approx([0.5, 0.5, 0.5, 0.5])  # 2 at once, then one every 1/rate seconds
    now[0] += 10
    bucket.acquire()
    assert len(slept) == 4  # refilled while idle
