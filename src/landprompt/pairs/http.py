"""HTTP for photo sources: injectable fetch callables, a token-bucket rate limit and retries.

Sources never call the network directly: they take ``fetch_json(url, params) -> object`` and
``fetch_bytes(url) -> bytes`` callables, so tests pass recorded responses and a cluster can pass a
shared session. The defaults use a ``requests`` session per thread whose adapter retries connection errors
and :data:`~landprompt.retry.TRANSIENT_STATUS` answers (:func:`~landprompt.retry.retrying_session`);
:func:`with_retries` is only for failures inside a 200 answer (an API's "try later" code).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import requests

from landprompt.errors import BadInputError, ServiceUnavailableError
from landprompt.retry import TRANSIENT_STATUS, gave_up, retrying_session, with_backoff

FetchJson = Callable[[str, Mapping[str, str]], Any]
"""``(url, query parameters) -> parsed JSON``; raises on HTTP or network errors."""
FetchBytes = Callable[[str], bytes]
"""``url -> body bytes``; raises on HTTP or network errors."""

USER_AGENT = "landprompt (https://github.com/landprompt)"
HTTP_RETRIES = 4
"""Further tries of a failed request (connection error, timeout, 408/429/5xx)."""
HTTP_BACKOFF = 2.0
"""urllib3's backoff factor: waits of 0, 4, 8, 16 s before the retries."""
PHOTO_RETRIES = 1
"""Further tries of a photo download: a photo that still fails is marked missing, for ``--retry-missing``."""
PHOTO_BACKOFF = 0.5
TIMEOUT_S = 60.0
_RESUME = " (the run resumes where it stopped)"
_MISSING = " (the photo is marked missing; --retry-missing tries it again)"
_T = TypeVar("_T")
_local = threading.local()


class TransientError(Exception):
    """A failure worth retrying that HTTP cannot see (an API's "service unavailable" code in a 200 answer)."""


def http_session() -> requests.Session:
    """This thread's retrying session (a ``requests.Session`` is not shared between threads)."""
    return _thread_session("session", HTTP_RETRIES, HTTP_BACKOFF)


def photo_session() -> requests.Session:
    """This thread's session for photo downloads: one quick retry, so a dead host costs seconds per photo.

    A ``Retry-After`` header is not waited for (it may ask for hours): the photo is marked missing instead.
    """
    return _thread_session("photo_session", PHOTO_RETRIES, PHOTO_BACKOFF, retry_after=False)


def _thread_session(key: str, retries: int, backoff: float, retry_after: bool = True) -> requests.Session:
    session: requests.Session | None = getattr(_local, key, None)
    if session is None:
        session = retrying_session(retries, backoff, {"User-Agent": USER_AGENT}, retry_after)
        setattr(_local, key, session)
    return session


def http_get_json(url: str, params: Mapping[str, str], *, session: requests.Session | None = None) -> Any:
    """GET ``url`` with query ``params``, parsed as JSON (retried in ``session``, default per thread)."""
    return _get(url, params, session or http_session()).json()


def http_get_bytes(url: str, *, session: requests.Session | None = None) -> bytes:
    """GET ``url`` and return the body (retried in ``session``, default :func:`http_session`)."""
    return bytes(_get(url, {}, session or http_session()).content)


def http_get_photo(url: str) -> bytes:
    """GET a photo's bytes in :func:`photo_session` (the default ``fetch`` of photo embedding)."""
    return bytes(_get(url, {}, photo_session(), _MISSING).content)


def _get(
    url: str, params: Mapping[str, str], session: requests.Session, hint: str = _RESUME
) -> requests.Response:
    """One GET whose retries the session makes; what is left after them is a one-line project error.

    ``hint`` ends the message of a service that kept failing (what happens next).

    Raises:
        ServiceUnavailableError: on a connection error, timeout or transient status after every retry.
        BadInputError: on another error status (404, 403, ...), at once.
    """
    retry = getattr(session.get_adapter(url), "max_retries", None)
    tries = (getattr(retry, "total", 0) or 0) + 1
    try:
        response = session.get(url, params=dict(params), timeout=TIMEOUT_S)
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise ServiceUnavailableError(gave_up(f"GET {url}", tries, exc, hint)) from exc
    if response.status_code in TRANSIENT_STATUS:
        last = f"HTTP {response.status_code} {response.reason}"
        raise ServiceUnavailableError(gave_up(f"GET {url}", tries, last, hint))
    if response.status_code >= 400:
        raise BadInputError(f"GET {url} was refused: HTTP {response.status_code} {response.reason}")
    return response


@dataclass
class TokenBucket:
    """A token-bucket rate limit: ``rate`` requests per second on average, bursts of ``capacity``.

    Thread-safe; ``clock`` and ``sleep`` are injectable so tests run without waiting.
    """

    rate: float = 1.0
    capacity: float = 5.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    _tokens: float = field(init=False, default=-1.0)
    _last: float = field(init=False, default=0.0)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock, repr=False)

    def acquire(self) -> float:
        """Take one token, sleeping until one is available; returns the seconds slept."""
        with self._lock:
            now = self.clock()
            if self._tokens < 0:
                self._tokens, self._last = self.capacity, now
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            wait = 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate
            if wait:
                self.sleep(wait)
                self._tokens, self._last = 1.0, self._last + wait
            self._tokens -= 1
            return wait


def with_retries(
    call: Callable[[], _T],
    what: str,
    retries: int = 4,
    backoff: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> _T:
    """Run ``call``, retrying :class:`TransientError` with exponential backoff (HTTP is the session's job).

    Raises:
        ServiceUnavailableError: after ``retries`` retries, naming ``what`` and the last failure.
    """

    def give_up(error: BaseException) -> Exception:
        return ServiceUnavailableError(gave_up(what, retries + 1, error, _RESUME))

    return with_backoff(
        call, is_transient=_is_transient, give_up=give_up, retries=retries, backoff=backoff, sleep=sleep
    )


def _is_transient(error: BaseException) -> bool:
    return isinstance(error, TransientError)
