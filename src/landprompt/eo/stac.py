"""Sentinel-1/2 from STAC APIs (Planetary Computer, Earth Search) or static catalogs, via odc-stac.

:func:`search_items` finds the items, each request (page) retrying transient failures in the HTTP
session (:func:`~landprompt.retry.http_retry`) and a body that breaks off (:data:`BODY_RETRIES`), and
signs Planetary Computer asset URLs;
:func:`load_s2_scenes` / :func:`load_s1_scenes` read them onto a :class:`~landprompt.geo.Grid` pixel for
pixel (odc-stac with the grid's GeoBox, ``groupby="solar_day"``);
:class:`StacSource` ties both to monthly composites.

Earth Search serves no calibrated Sentinel-1 backscatter (``sentinel-1-grd`` holds uncalibrated DNs), so
:meth:`StacSource.earth_search` loads Sentinel-2 only and its ``s1`` is all NaN; use Planetary Computer's
``sentinel-1-rtc`` for Sentinel-1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol

import planetary_computer
import pystac
import requests
import xarray as xr
from odc.stac import load as odc_load
from pystac_client import Client
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from requests.exceptions import ChunkedEncodingError, ContentDecodingError
from urllib3.exceptions import MaxRetryError

from landprompt.eo.aoi import check_grid, grid_geobox, on_grid
from landprompt.eo.bands import (
    S1_BAND_NAMES,
    S2_BAND_NAMES,
    SCL_ASSETS,
    SCL_BAND,
    Provider,
    Sensor,
    band_specs,
    detect_provider,
    harmonize_s2,
    linear_to_db,
    s2_boa_offset,
)
from landprompt.eo.composite import monthly_composites
from landprompt.eo.masks import mask_scenes
from landprompt.eo.source import Scenes, SceneSource
from landprompt.errors import BadInputError, ServiceUnavailableError, about_file
from landprompt.geo import BBox, Grid
from landprompt.retry import TRANSIENT_STATUS, CountedRetry, gave_up, http_retry, one_line, with_backoff

PLANETARY_COMPUTER_URL = "https://planetarycomputer.microsoft.com/api/stac/v1"
EARTH_SEARCH_URL = "https://earth-search.aws.element84.com/v1"
TIMEOUT_S = 60.0
"""Seconds a STAC API request may take (connect and read) before it counts as failed and is retried."""
BODY_RETRIES = 2
"""Further tries of a STAC API request whose body broke off after its headers (a reset, a truncated page)."""

Modifier = Callable[[Any], Any]


class ItemSource(Protocol):
    """Anything with pystac-client's ``search(**keywords)`` whose result has ``.items()``."""

    @property
    def search(self) -> Callable[..., Any]:
        """``search(collections=..., bbox=..., datetime=..., query=..., max_items=...)``."""


# --- catalogs ---------------------------------------------------------------------------------------
def is_planetary_computer(catalog: object) -> bool:
    """Whether a catalog URL is Microsoft's Planetary Computer (its assets need signing)."""
    return isinstance(catalog, str) and "planetarycomputer.microsoft.com" in catalog


def default_modifier(catalog: object) -> Modifier | None:
    """``planetary_computer.sign_inplace`` for the Planetary Computer, else None (Earth Search is public)."""
    return _sign_inplace if is_planetary_computer(catalog) else None


def _sign_inplace(obj: Any) -> Any:
    """Sign Planetary Computer hrefs in place (looked up at call time, so tests can patch it)."""
    return planetary_computer.sign_inplace(obj)


def open_catalog(
    catalog: str | Path, modifier: Modifier | None = None, *, retries: int = 3, backoff: float = 1.0
) -> ItemSource:
    """A searchable catalog: a local static catalog file/folder, or a STAC API URL (pystac-client).

    An API's session retries each request (the landing page, each page of a search) up to ``retries`` times
    on connection errors and :data:`~landprompt.retry.TRANSIENT_STATUS`, with urllib3's backoff of
    ``backoff`` seconds; requests time out after :data:`TIMEOUT_S`.
    """
    text = str(catalog)
    if "://" not in text or text.startswith("file://"):
        return StaticCatalogClient(text.removeprefix("file://"), modifier=modifier)
    stac_io = _BodyRetryingStacApiIO(http_retry(retries, backoff, counted=True), backoff)
    return Client.open(text, modifier=modifier, stac_io=stac_io)


class _BodyRetryingStacApiIO(StacApiIO):
    """pystac-client's HTTP, each request also retried when its body breaks off (:data:`BODY_RETRIES`).

    The session's ``urllib3.Retry`` covers a request up to its headers only: pystac-client reads the body
    inside ``Session.send``, and a reset, a truncated body or a read timeout there is a status-less
    ``APIError``. A request that keeps failing gives up in one line counting its tries in all: those of
    the body retries and, within each, those the session's retry granted (it counts them,
    :class:`~landprompt.retry.CountedRetry`; requests go one at a time, as a search pages).

    Args:
        retry: The session's retry policy.
        backoff: Seconds before the first body retry, doubling after each.
    """

    def __init__(self, retry: CountedRetry, backoff: float = 1.0) -> None:
        super().__init__(max_retries=retry, timeout=TIMEOUT_S)
        self.retry, self.backoff = retry, backoff

    def request(
        self,
        href: str,
        method: str | None = None,
        headers: dict[str, str] | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> str:
        """:meth:`StacApiIO.request`, retried (per request, not per search) while the body breaks off.

        Raises:
            ServiceUnavailableError: If the body kept breaking off, or the session's retries were spent
                on transient failures (:func:`is_transient`); other ``APIError`` s propagate.
        """
        granted_before, attempts = self.retry.granted[0], 0

        def attempt() -> str:
            nonlocal attempts
            attempts += 1
            return super(_BodyRetryingStacApiIO, self).request(href, method, headers, parameters)

        def give_up(error: BaseException) -> Exception:
            tries = attempts + self.retry.granted[0] - granted_before
            what = f"STAC request {method or 'GET'} {href}"
            return ServiceUnavailableError(gave_up(what, tries, _describe(error)))

        try:
            return with_backoff(
                attempt,
                is_transient=_body_broke_off,
                give_up=give_up,
                retries=BODY_RETRIES,
                backoff=self.backoff,
            )
        except APIError as error:
            if is_transient(error):  # the session's retries are spent
                raise give_up(error) from error
            raise


def _body_broke_off(error: BaseException) -> bool:
    """Whether a status-less ``APIError`` is a body that broke off (not a connection urllib3 retried)."""
    if not isinstance(error, APIError) or getattr(error, "status_code", None) is not None:
        return False
    cause = error.__context__
    if isinstance(cause, ChunkedEncodingError | ContentDecodingError):
        return True
    return isinstance(cause, requests.ConnectionError) and not (
        cause.args and isinstance(cause.args[0], MaxRetryError)
    )


class StaticCatalogClient:
    """Item search over a static STAC catalog (no API), for offline stacks and tests.

    Implements the subset of pystac-client's ``search`` that landprompt uses: ``collections``, ``bbox``
    (lon/lat, intersecting), ``datetime`` (``start/end``, ``..`` open), ``query`` (``eq``, ``neq``,
    ``lt``, ``lte``, ``gt``, ``gte``, ``in``) and ``max_items``.
    """

    def __init__(self, catalog: str | Path | pystac.Catalog, modifier: Modifier | None = None) -> None:
        if isinstance(catalog, pystac.Catalog):
            self.catalog = catalog
        else:
            path = Path(catalog)
            if path.is_dir():
                path = path / "catalog.json"
            if not path.is_file():
                raise BadInputError(f"STAC catalog {path} does not exist: give a catalog.json or an API URL")
            self.catalog = pystac.Catalog.from_file(str(path), stac_io=_NamingStacIO())
        self.modifier = modifier

    def search(
        self,
        *,
        collections: Iterable[str] | str | None = None,
        bbox: Sequence[float] | None = None,
        datetime: str | None = None,
        query: Mapping[str, Any] | None = None,
        max_items: int | None = None,
        **_: Any,
    ) -> _StaticSearch:
        """Items matching every given filter.

        Raises:
            BadInputError: If an item or child of the catalog is not a STAC object (naming its file).
        """
        wanted = {collections} if isinstance(collections, str) else set(collections or ())
        interval = parse_interval(datetime)
        found: list[pystac.Item] = []
        for item in self._items():
            if wanted and item.collection_id not in wanted:
                continue
            if bbox is not None and not _intersects(item.bbox, bbox):
                continue
            if not _in_interval(item, interval) or not matches_query(item.properties, query or {}):
                continue
            found.append(item.clone())
            if max_items is not None and len(found) >= max_items:
                break
        if self.modifier is not None:
            for item in found:
                self.modifier(item)
        return _StaticSearch(found)

    def _items(self) -> Iterator[pystac.Item]:
        """Every item of the catalog, its children's included; a damaged one is a one-line error."""
        try:
            yield from self.catalog.get_items(recursive=True)
        except pystac.STACError as err:  # "HREF: '.../item.json' does not resolve to a STAC object"
            raise BadInputError(f"STAC catalog {self.catalog.get_self_href()}: {err}") from None


class _NamingStacIO(pystac.stac_io.DefaultStacIO):
    """pystac's file reader, naming the file (catalog, child or item) a read or decode error is about."""

    def read_json(self, source: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Read a STAC JSON file; an error carries its path as ``filename``."""
        with about_file(str(source)):
            return super().read_json(source, *args, **kwargs)


@dataclass(frozen=True)
class _StaticSearch:
    found: list[pystac.Item]

    def items(self) -> Iterator[pystac.Item]:
        return iter(self.found)


def parse_interval(value: str | None) -> tuple[datetime | None, datetime | None]:
    """Start and end of a STAC ``datetime`` search value (``a/b``, ``a/..`` or one instant); None is open."""
    if not value:
        return None, None
    start, _, end = value.partition("/") if "/" in value else (value, "", value)
    return _parse_instant(start, end=False), _parse_instant(end, end=True)


def _parse_instant(text: str, end: bool) -> datetime | None:
    text = text.strip()
    if text in ("", ".."):
        return None
    try:
        if len(text) == 10:  # a date: the whole day
            day = datetime.fromisoformat(text).replace(tzinfo=UTC)
            return day.replace(hour=23, minute=59, second=59, microsecond=999999) if end else day
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadInputError(
            f"datetime {text!r} is not ISO 8601 (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _in_interval(item: pystac.Item, interval: tuple[datetime | None, datetime | None]) -> bool:
    props = item.properties
    start = item.datetime or _parse_instant(props.get("start_datetime", ""), end=False)
    stop = item.datetime or _parse_instant(props.get("end_datetime", ""), end=True)
    lo, hi = interval
    start = start.replace(tzinfo=start.tzinfo or UTC) if start else None
    stop = stop.replace(tzinfo=stop.tzinfo or UTC) if stop else None
    return not (
        (lo is not None and stop is not None and stop < lo)
        or (hi is not None and start is not None and start > hi)
    )


def _intersects(a: Sequence[float] | None, b: Sequence[float]) -> bool:
    if a is None:
        return True
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


_QUERY_OPS: Mapping[str, Callable[[Any, Any], bool]] = {
    "eq": lambda v, x: v == x,
    "neq": lambda v, x: v != x,
    "lt": lambda v, x: v is not None and v < x,
    "lte": lambda v, x: v is not None and v <= x,
    "gt": lambda v, x: v is not None and v > x,
    "gte": lambda v, x: v is not None and v >= x,
    "in": lambda v, x: v in x,
}


def matches_query(properties: Mapping[str, Any], query: Mapping[str, Any]) -> bool:
    """Whether an item's properties pass a STAC API ``query`` (``{"eo:cloud_cover": {"lt": 20}}``)."""
    for key, condition in query.items():
        conditions = condition if isinstance(condition, Mapping) else {"eq": condition}
        for op, operand in conditions.items():
            if op not in _QUERY_OPS:
                raise BadInputError(f"query operator {op!r} is not one of {', '.join(_QUERY_OPS)}")
            if not _QUERY_OPS[op](properties.get(key), operand):
                return False
    return True


# --- search -----------------------------------------------------------------------------------------
def is_transient(error: BaseException) -> bool:
    """Whether a failed search is the service's fault (network, timeouts, 408/429/5xx), not the query's."""
    if isinstance(error, APIError):
        status = getattr(error, "status_code", None)
        return status is None or status in TRANSIENT_STATUS
    return isinstance(error, requests.ConnectionError | requests.Timeout | ConnectionError | TimeoutError)


def search_items(
    catalog: str | Path | pystac.Catalog | ItemSource,
    collections: str | Sequence[str],
    bbox: BBox | Sequence[float],
    datetime: str,
    query: Mapping[str, Any] | None = None,
    max_items: int | None = None,
    retries: int = 3,
    backoff: float = 1.0,
    *,
    modifier: Modifier | Literal["auto"] | None = "auto",
    open_client: Callable[[str | Path, Modifier | None], ItemSource] | None = None,
    allow_empty: bool = False,
) -> list[pystac.Item]:
    """Search a STAC catalog; each request (page) of an API search retries transient failures on its own.

    Args:
        catalog: A STAC API URL, a static catalog path or :class:`pystac.Catalog`, or a client with
            pystac-client's ``search``.
        collections: Collection id(s), e.g. ``"sentinel-2-l2a"``.
        bbox: Lon/lat bounds (minlon, minlat, maxlon, maxlat).
        datetime: ISO 8601 interval, e.g. ``"2022-01-01/2022-12-31"``.
        query: STAC API query extension filter, e.g. ``{"eo:cloud_cover": {"lt": 80}}``.
        max_items: Stop after this many items.
        retries: Further attempts of a request after a transient failure (see :func:`open_catalog`).
        backoff: urllib3's backoff factor in seconds.
        modifier: Applied to every item (URL signing); ``"auto"`` signs Planetary Computer URLs only.
        open_client: ``(url_or_path, modifier) -> client``; default :func:`open_catalog` with ``retries``
            and ``backoff``; tests pass a fake.
        allow_empty: Return ``[]`` instead of raising when nothing matches.

    Raises:
        ServiceUnavailableError: if a request still fails after ``retries`` retries.
        BadInputError: if no item matches (unless ``allow_empty``), or on a non-transient API error.
    """
    if modifier == "auto":
        modifier = default_modifier(catalog)
    if isinstance(catalog, pystac.Catalog):
        catalog = StaticCatalogClient(catalog, modifier)
    wanted = [collections] if isinstance(collections, str) else list(collections)
    search: dict[str, Any] = {
        "collections": wanted,
        "bbox": list(bbox),
        "datetime": datetime,
        "query": query,
        "max_items": max_items,
    }
    opener = open_client or partial(open_catalog, retries=retries, backoff=backoff)
    try:
        client = opener(catalog, modifier) if isinstance(catalog, str | Path) else catalog
        items = list(client.search(**{k: v for k, v in search.items() if v is not None}).items())
    except (APIError, requests.RequestException, ConnectionError, TimeoutError) as error:
        what, last = f"STAC API {_name(catalog)}", _describe(error)
        if is_transient(error):
            raise ServiceUnavailableError(gave_up(what, max(0, retries) + 1, last)) from error
        raise BadInputError(f"{what} refused the search: {one_line(last)}") from error
    if not items and not allow_empty:
        raise BadInputError(
            f"no STAC items in {', '.join(wanted)} for bbox {tuple(round(v, 5) for v in bbox)} and "
            f"{datetime} at {_name(catalog)}: check the area, the dates and the collection"
        )
    return items


def _name(catalog: object) -> str:
    return str(catalog) if isinstance(catalog, str | Path) else type(catalog).__name__


def _describe(error: BaseException) -> str:
    """An API error as ``HTTP <status>: <body>``; other errors as their text."""
    status = getattr(error, "status_code", None)
    text = one_line(error) if str(error).strip() else ""
    if status is None:
        return text or type(error).__name__
    return f"HTTP {status}: {text}" if text else f"HTTP {status}"


# --- load -------------------------------------------------------------------------------------------
def _assets(items: Sequence[pystac.Item], names: Sequence[str], sensor: Sensor) -> dict[str, str]:
    """Band name -> asset key for the items' provider; raises if an item lacks one."""
    provider: Provider = detect_provider(items[0].assets)
    keys = {s.name: s.asset(provider) for s in band_specs(names, sensor)}
    if sensor == "s2":
        keys[SCL_BAND] = SCL_ASSETS[provider]
    for item in items:
        missing = [f"{name} ({key})" for name, key in keys.items() if key not in item.assets]
        if missing:
            has = ", ".join(item.assets)
            raise BadInputError(
                f"STAC item {item.id} lacks asset(s) for band {', '.join(missing)}; it has {has}"
            )
    return keys


def _odc_load(
    items: Sequence[pystac.Item],
    grid: Grid,
    keys: Mapping[str, str],
    dtypes: Mapping[str, tuple[str, float]],
    chunks: Mapping[str, int] | None,
    resampling: str,
) -> xr.Dataset:
    """odc-stac load of ``keys`` (band -> asset) onto the grid, variables renamed to band names."""
    config = {"*": {"assets": {keys[b]: {"data_type": d, "nodata": n} for b, (d, n) in dtypes.items()}}}
    data = odc_load(
        items,
        bands=list(keys.values()),
        geobox=grid_geobox(grid),
        groupby="solar_day",
        resampling=resampling,
        chunks=dict(chunks) if chunks is not None else None,
        stac_cfg=config,
    )
    return on_grid(data.rename({key: name for name, key in keys.items()}), grid)


def load_s2_scenes(
    items: Sequence[pystac.Item],
    grid: Grid,
    bands: Sequence[str] = S2_BAND_NAMES,
    *,
    chunks: Mapping[str, int] | None = None,
    resampling: str = "nearest",
) -> xr.Dataset:
    """Sentinel-2 L2A items read onto ``grid``, one scene per solar day (see :class:`Scenes`).

    Items are loaded in groups of equal baseline offset (:func:`~landprompt.eo.bands.s2_boa_offset`), so
    each DN gets its own item's offset; the ``SCL`` classes come along, unmasked.
    """
    if not items:
        raise BadInputError("no Sentinel-2 items to load")
    keys = _assets(items, bands, "s2")
    dtypes = {name: ("uint16", 0.0) for name in keys} | {SCL_BAND: ("uint8", 0.0)}
    by_offset: dict[float, list[pystac.Item]] = {}
    for item in items:
        by_offset.setdefault(s2_boa_offset(item.properties), []).append(item)
    parts = []
    for offset, group in by_offset.items():
        raw = _odc_load(group, grid, keys, dtypes, chunks, resampling)
        parts.append(raw.map(_harmonize_band, offset=offset))
    return xr.concat(parts, dim="time").sortby("time") if len(parts) > 1 else parts[0]


def _harmonize_band(band: xr.DataArray, offset: float) -> xr.DataArray:
    return band if band.name == SCL_BAND else harmonize_s2(band, offset)


def load_s1_scenes(
    items: Sequence[pystac.Item],
    grid: Grid,
    bands: Sequence[str] = S1_BAND_NAMES,
    *,
    chunks: Mapping[str, int] | None = None,
    resampling: str = "nearest",
) -> xr.Dataset:
    """Sentinel-1 items (linear backscatter, e.g. Planetary Computer RTC) read onto ``grid``, in dB."""
    if not items:
        raise BadInputError("no Sentinel-1 items to load")
    keys = _assets(items, bands, "s1")
    dtypes = {name: ("float32", float("nan")) for name in keys}
    return linear_to_db(_odc_load(items, grid, keys, dtypes, chunks, resampling))


def load_s2(
    items: Sequence[pystac.Item],
    grid: Grid,
    year: int,
    bands: Sequence[str] = S2_BAND_NAMES,
    *,
    dilate: int = 0,
    chunks: Mapping[str, int] | None = None,
    resampling: str = "nearest",
) -> xr.DataArray:
    """Cloud-masked monthly median Sentinel-2 composite [time=12, s2_band, y, x] of ``year``."""
    scenes = mask_scenes(load_s2_scenes(items, grid, bands, chunks=chunks, resampling=resampling), dilate)
    return monthly_composites(scenes, None, year, grid, s2_bands=bands)["s2"]


def load_s1(
    items: Sequence[pystac.Item],
    grid: Grid,
    year: int,
    bands: Sequence[str] = S1_BAND_NAMES,
    *,
    chunks: Mapping[str, int] | None = None,
    resampling: str = "nearest",
) -> xr.DataArray:
    """Monthly median Sentinel-1 composite [time=12, s1_band, y, x] of ``year`` in dB."""
    scenes = load_s1_scenes(items, grid, bands, chunks=chunks, resampling=resampling)
    return monthly_composites(None, scenes, year, grid, s1_bands=bands)["s1"]


# --- source -----------------------------------------------------------------------------------------
@dataclass
class StacSource(SceneSource):
    """Sentinel-1/2 monthly composites from a STAC catalog.

    Args:
        catalog: STAC API URL, static catalog path, or a client with ``search``.
        collections: Collection per sensor (``"s2"``, ``"s1"``); None or absent: that sensor is all NaN.
        signer: Item modifier; ``"auto"`` signs Planetary Computer assets, None signs nothing.
        query: Extra STAC query per sensor, e.g. ``{"s2": {"eo:cloud_cover": {"lt": 80}}}``.
        dilate: Pixels by which SCL masks grow.
        chunks: odc-stac chunks (e.g. ``{"x": 512, "y": 512}``) for lazy dask loading; None loads now.
        resampling: Resampling of bands whose pixels differ from the grid's.
        allow_empty: A sensor without items gives NaN instead of raising.
        max_items: Cap on items per sensor search.
        retries: Retries of each failed request of a search.
        backoff: urllib3's backoff factor in seconds.
        open_client: ``(catalog, modifier) -> client``, for tests; default :func:`open_catalog`.
    """

    catalog: str | Path | ItemSource = PLANETARY_COMPUTER_URL
    collections: Mapping[str, str | None] = field(
        default_factory=lambda: {"s2": "sentinel-2-l2a", "s1": "sentinel-1-rtc"}
    )
    signer: Modifier | Literal["auto"] | None = "auto"
    query: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    dilate: int = 0
    chunks: Mapping[str, int] | None = None
    resampling: str = "nearest"
    allow_empty: bool = False
    max_items: int | None = None
    retries: int = 3
    backoff: float = 1.0
    open_client: Callable[[str | Path, Modifier | None], ItemSource] | None = None

    @classmethod
    def planetary_computer(cls, **kwargs: Any) -> StacSource:
        """Microsoft Planetary Computer: ``sentinel-2-l2a`` and ``sentinel-1-rtc``, signed."""
        return cls(catalog=PLANETARY_COMPUTER_URL, **kwargs)

    @classmethod
    def earth_search(cls, **kwargs: Any) -> StacSource:
        """Element 84 Earth Search: ``sentinel-2-l2a`` only (no calibrated Sentinel-1), unsigned."""
        kwargs.setdefault("collections", {"s2": "sentinel-2-l2a"})
        return cls(catalog=EARTH_SEARCH_URL, signer=None, **kwargs)

    def search(self, grid: Grid, year: int, sensor: Sensor) -> list[pystac.Item]:
        """Items of ``sensor`` over the grid in ``year`` ([] when the sensor has no collection)."""
        collection = self.collections.get(sensor)
        if collection is None:
            return []
        return search_items(
            self.catalog,
            collection,
            grid.bbox,
            f"{year:04d}-01-01/{year:04d}-12-31",
            query=self.query.get(sensor),
            max_items=self.max_items,
            retries=self.retries,
            backoff=self.backoff,
            modifier=self.signer,
            open_client=self.open_client,
            allow_empty=self.allow_empty,
        )

    def scenes(self, grid: Grid, year: int, *, force: bool = False) -> Scenes:
        """Search and load the year's scenes onto ``grid``."""
        check_grid(grid, force=force)
        s2_items, s1_items = self.search(grid, year, "s2"), self.search(grid, year, "s1")
        chunks, resampling = self.chunks, self.resampling
        return Scenes(
            load_s2_scenes(s2_items, grid, chunks=chunks, resampling=resampling) if s2_items else None,
            load_s1_scenes(s1_items, grid, chunks=chunks, resampling=resampling) if s1_items else None,
        )


__all__ = [
    "EARTH_SEARCH_URL",
    "PLANETARY_COMPUTER_URL",
    "ItemSource",
    "StacSource",
    "StaticCatalogClient",
    "default_modifier",
    "is_planetary_computer",
    "is_transient",
    "load_s1",
    "load_s1_scenes",
    "load_s2",
    "load_s2_scenes",
    "open_catalog",
    "search_items",
]
