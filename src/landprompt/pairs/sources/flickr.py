"""The Flickr API: ``flickr.photos.search`` over a bounding box, paged, rate-limited and resumable.

Each page (``per_page`` photos, at most 500) is one batch; after a page is in the catalog, the next page
number is stored in the catalog cursor ``flickr:<query hash>`` in the same transaction, so a run stopped
anywhere resumes at the first page it had not stored. Requests go through a :class:`TokenBucket`
(default 1 per second, Flickr's limit is 3600 per hour per key); network failures and HTTP 408/429/5xx are
retried by the HTTP session, API errors 105/106 ("service unavailable") inside a 200 answer with backoff.

The key comes from ``api_key`` or the ``FLICKR_API_KEY`` environment variable. Flickr answers at most
4000 distinct photos per query: split large areas or long periods into several ingests (smaller bboxes,
``min_taken``/``max_taken`` windows); each keeps its own cursor.

Fields: ``id`` -> ``source_id``, ``owner`` -> ``user_id``, ``ownername`` -> ``author``, ``latitude``,
``longitude``, ``accuracy`` (rows below ``min_accuracy`` are skipped), ``datetaken`` -> ``taken_at``,
``license`` -> ``licence`` (ids resolved with ``flickr.photos.licenses.getInfo``), ``title``, ``tags``,
and the largest of ``url_l``, ``url_c``, ``url_z``, ``url_o`` -> ``url``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from landprompt.errors import BadInputError
from landprompt.geo import BBox, parse_bbox
from landprompt.pairs.http import FetchJson, TokenBucket, TransientError, http_get_json, with_retries
from landprompt.pairs.licences import FLICKR_LICENCES, UNKNOWN, normalise_licence
from landprompt.pairs.sources.base import PhotoSource, SourceBatch, photo_frame, text_sha256

REST_URL = "https://api.flickr.com/services/rest/"
API_KEY_ENV = "FLICKR_API_KEY"
EXTRAS = "geo,date_taken,license,owner_name,tags,url_l,url_c,url_z,url_o"
URL_SIZES = ("url_l", "url_c", "url_z", "url_o")
MAX_PER_PAGE = 500
TRANSIENT_CODES = frozenset({105, 106})
LICENCE_NOTE = "Flickr: each photo under the licence its owner chose (flickr.photos.licenses.getInfo)"


class FlickrSource(PhotoSource):
    """Geotagged Flickr photos in a bbox, optionally within capture dates.

    Args:
        bbox: Lon/lat box (``"minlon,minlat,maxlon,maxlat"``, a GeoJSON file, or a :class:`BBox`).
        api_key: Flickr API key; default ``$FLICKR_API_KEY``.
        min_taken: Earliest capture date (``YYYY-MM-DD``), or None.
        max_taken: Latest capture date, or None.
        per_page: Photos per page (at most 500).
        max_pages: Stop after this many pages in this run (None: all).
        min_accuracy: Lowest geo accuracy kept (16 street ... 1 world).
        licences: Flickr licence ids asked of the API (server-side filter), e.g. ``"4,9,10"``.
        fetch: ``(url, params) -> JSON``; tests pass recorded responses.
        bucket: Rate limit shared by all requests.
        sleep: Backoff sleep between retries.
    """

    name = "flickr"
    licence_note = LICENCE_NOTE

    def __init__(
        self,
        bbox: BBox | str,
        api_key: str | None = None,
        min_taken: str | None = None,
        max_taken: str | None = None,
        per_page: int = 250,
        max_pages: int | None = None,
        min_accuracy: int = 14,
        licences: str | None = None,
        fetch: FetchJson = http_get_json,
        bucket: TokenBucket | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.bbox = bbox if isinstance(bbox, BBox) else parse_bbox(bbox)
        key = api_key or os.environ.get(API_KEY_ENV, "")
        if not key.strip():
            raise BadInputError(
                f"the Flickr API needs a key: set {API_KEY_ENV} (get one at https://www.flickr.com/services/apps/create/)"
            )
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise BadInputError(f"per_page must be 1-{MAX_PER_PAGE}, got {per_page}")
        self.api_key = key.strip()
        self.query = {
            "method": "flickr.photos.search",
            "bbox": ",".join(f"{v:.6f}" for v in self.bbox),
            "has_geo": "1",
            "extras": EXTRAS,
            "per_page": str(per_page),
            "sort": "date-taken-asc",
            **({"min_taken_date": min_taken} if min_taken else {}),
            **({"max_taken_date": max_taken} if max_taken else {}),
            **({"license": licences} if licences else {}),
        }
        self.max_pages = max_pages
        self.min_accuracy = min_accuracy
        self.fetch = fetch
        self.bucket = bucket or TokenBucket(rate=1.0, capacity=5.0)
        self.sleep = sleep
        self.cursor_name = f"flickr:{text_sha256(self._canonical())[:16]}"
        self.requests = 0

    def _canonical(self) -> str:
        return json.dumps(self.query, sort_keys=True)

    def describe(self) -> tuple[str, str]:
        """The query (without the key) and its sha256."""
        return f"flickr.photos.search {self._canonical()}", text_sha256(self._canonical())

    def params(self) -> dict[str, Any]:
        """The accuracy threshold."""
        return {"min_accuracy": self.min_accuracy}

    def call(self, params: Mapping[str, str]) -> dict[str, Any]:
        """One rate-limited, retried REST call; returns the JSON answer (``stat`` ok).

        Raises:
            BadInputError: on an API error that retrying cannot fix (e.g. 100, invalid key).
            ServiceUnavailableError: after the retries.
        """
        full = {**params, "api_key": self.api_key, "format": "json", "nojsoncallback": "1"}

        def once() -> dict[str, Any]:
            self.bucket.acquire()
            self.requests += 1
            answer = self.fetch(REST_URL, full)
            if not isinstance(answer, dict):
                raise TransientError(f"Flickr answered {type(answer).__name__}, not a JSON object")
            if answer.get("stat") != "ok":
                code, message = answer.get("code"), answer.get("message", "no message")
                if code in TRANSIENT_CODES:
                    raise TransientError(f"Flickr error {code}: {message}")
                raise BadInputError(f"Flickr API error {code}: {message}")
            return answer

        return with_retries(once, f"Flickr {params.get('method')}", sleep=self.sleep)

    def licence_table(self) -> dict[str, str]:
        """Flickr licence id -> canonical id, from ``flickr.photos.licenses.getInfo`` (ids 0-10 built in)."""
        answer = self.call({"method": "flickr.photos.licenses.getInfo"})
        table = dict(FLICKR_LICENCES)
        for entry in answer.get("licenses", {}).get("license", []):
            lid = str(entry.get("id"))
            found = normalise_licence(entry.get("name"), entry.get("url"))
            if found != UNKNOWN or lid not in table:
                table[lid] = found
        return table

    def batches(self, cursor: dict[str, Any] | None = None) -> Iterator[SourceBatch]:
        """One batch per page, from the cursor's page on; the cursor after the last page says ``done``."""
        state = dict(cursor or {"page": 1})
        if state.get("done"):
            return
        licences = self.licence_table()
        fetched = 0
        while self.max_pages is None or fetched < self.max_pages:
            page = int(state["page"])
            answer = self.call({**self.query, "page": str(page)})
            photos = answer.get("photos", {})
            pages = int(photos.get("pages", 0) or 0)
            rows = list(photos.get("photo", []))
            done = page >= pages or not rows
            state = {
                "page": page + 1,
                "pages": pages,
                "total": int(photos.get("total", 0) or 0),
                "done": done,
            }
            fetched += 1
            yield self._batch(rows, licences, state)
            if done:
                return

    def _batch(
        self, rows: list[dict[str, Any]], licences: Mapping[str, str], cursor: dict[str, Any]
    ) -> SourceBatch:
        accuracy = [int(r.get("accuracy", 0) or 0) for r in rows]
        keep = [r for r, a in zip(rows, accuracy, strict=True) if a >= self.min_accuracy]
        frame = photo_frame(
            len(keep),
            source_id=[str(r["id"]) for r in keep],
            lat=[r.get("latitude") for r in keep],
            lon=[r.get("longitude") for r in keep],
            taken_at=[
                None if str(r.get("datetakenunknown", "0")) == "1" else r.get("datetaken") for r in keep
            ],
            url=[next((r[k] for k in URL_SIZES if r.get(k)), None) for r in keep],
            licence=[licences.get(str(r.get("license")), UNKNOWN) for r in keep],
            author=[r.get("ownername") for r in keep],
            user_id=[r.get("owner") for r in keep],
            title=[r.get("title") for r in keep],
            tags=[",".join(str(r.get("tags", "")).split()) for r in keep],
            metadata=[{"accuracy": r.get("accuracy"), "flickr_license": r.get("license")} for r in keep],
        )
        return SourceBatch(frame, {"low_accuracy": len(rows) - len(keep)}, cursor)
