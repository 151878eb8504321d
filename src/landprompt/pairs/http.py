"""HTTP for photo sources: injectable fetch callables, a token-bucket rate limit and retries.

Sources never call the network directly: they take ``fetch_json(url, params) -> object`` and
``fetch_bytes(url) -> bytes`` callables, so tests pass recorded responses and a cluster can pass a
shared session. The defaults use ``requests`` with a timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from landprompt.errors import ServiceUnavailableError
from landprompt.retry import TRANSIENT_STATUS, with_backoff

FetchJson = Callable[[str, Mapping[str, str]], Any]
"""``(url, query parameters) -> parsed JSON``; raises on HTTP or network errors."""
FetchBytes = Callable[[str], bytes]
"""``url -> body bytes``; raises on HTTP or network errors."""

USER_AGENT = "landprompt (https://github.com/landprompt)"
_T = TypeVar("_T")


class TransientError(Exception):
    """A failure worth retrying (network trouble, timeouts, HTTP 408/429/5xx, API 'try later')."""


def http_get_json(url: str, params: Mapping[str, str]) -> Any:
    """GET ``url`` with query ``params`` and parse JSON (requests, 60 s timeout)."""
    return _get(url, params).json()


def http_get_bytes(url: str) -> bytes:
    """GET ``url`` and return the body (requests, 60 s timeout)."""
    return bytes(_get(url, {}).content)


def _get(url: str, params: Mapping[str, str]) -> Any:
    import requests

    try:
        response = requests.get(url, params=dict(params), timeout=60, headers={"User-Agent": USER_AGENT})
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TransientError(f"{type(exc).__name__}: {exc}") from exc
    if response.status_code in TRANSIENT_STATUS:
        raise TransientError(f"HTTP {response.status_code} from {url}")
    response.raise_for_status()
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
    """Run ``call``, retrying :class:`TransientError` with exponential backoff.

    Raises:
        ServiceUnavailableError: after ``retries`` retries, naming ``what`` and the last failure.
    """

    def give_up(error: BaseException) -> Exception:
        return ServiceUnavailableError(
            f"{what} failed {retries + 1} times, last: {error}; check the network or try later "
            "(the run resumes where it stopped)"
        )

    return with_backoff(
        call, is_transient=_is_transient, give_up=give_up, retries=retries, backoff=backoff, sleep=sleep
    )


def _is_transient(error: BaseException) -> bool:
    return isinstance(error, TransientError | ConnectionError | TimeoutError)
